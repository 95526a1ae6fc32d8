//! Opening a connection to Redis, without doing I/O: how the host name
//! becomes addresses (`dns::plan`: an IP, the configured resolver over TCP,
//! or the host's lookup), which address to try next, the TLS handshake, and
//! what each failure is called. The shell performs each [`Step`] (lookup,
//! connect, write, read) and reports what happened.

use crate::redis::dns::{self, Plan};
use crate::redis::target::RedisTarget;
use crate::redis::tls::{TlsSession, Wire};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// What the shell does next.
pub enum Step {
    /// Ask the host's lookup for this name, then [`Dial::resolved`].
    Lookup(String),
    /// Open TCP to this address (dropping any connection before), then
    /// [`Dial::connected`] or [`Dial::connect_failed`].
    Connect(SocketAddr),
    /// Write these bytes, then read what arrives before the deadline, then
    /// [`Dial::received`] (a failed write or read is reported there too).
    Exchange(Vec<u8>),
    /// Write these bytes and go on whether that works or not (a TLS alert
    /// before giving up, the handshake's last flight).
    Write(Vec<u8>),
    /// The connection is open: plain, or TLS with the agreed session.
    Open(Wire),
    /// It could not be opened; the text names the server and what failed.
    Failed(String),
}

/// Where the opening is.
enum State {
    /// Nothing asked yet.
    Start,
    /// The host's lookup was asked.
    Looking,
    /// The configured resolver: connecting, then exchanging messages.
    Resolver(SocketAddr, dns::Lookup),
    /// Connecting to one of the addresses.
    Connecting,
    /// The TLS handshake with the connected address (boxed: a session is
    /// large, the other states small).
    Handshake(Box<TlsSession>),
    /// Steps already decided (then the next address, or the end).
    Queued,
}

/// One opening of a connection to `target`.
pub struct Dial<'a> {
    target: &'a RedisTarget,
    /// The DNS message id, should the resolver be asked.
    dns_id: u16,
    state: State,
    /// Addresses not tried yet, in order.
    addresses: VecDeque<IpAddr>,
    /// Steps to hand out before deciding anything else.
    queued: VecDeque<Step>,
    /// Why the last address failed, for when none is left.
    last: String,
}

impl<'a> Dial<'a> {
    /// Starts opening `target`; `dns_id` is a random message id.
    pub fn new(target: &'a RedisTarget, dns_id: u16) -> Dial<'a> {
        Dial {
            target,
            dns_id,
            state: State::Start,
            addresses: VecDeque::new(),
            queued: VecDeque::new(),
            last: format!("resolve {}: no address", target.host),
        }
    }

    /// What to do now.
    pub fn step(&mut self) -> Step {
        if let Some(step) = self.queued.pop_front() {
            return step;
        }
        let host = &self.target.host;
        match std::mem::replace(&mut self.state, State::Queued) {
            State::Start => match dns::plan(host, self.target.dns_server) {
                Plan::Address(ip) => self.try_addresses(vec![ip]),
                Plan::Host => {
                    self.state = State::Looking;
                    Step::Lookup(host.clone())
                }
                Plan::Server(server) => match dns::Lookup::new(host, self.dns_id) {
                    Ok(lookup) => {
                        self.state = State::Resolver(server, lookup);
                        Step::Connect(server)
                    }
                    Err(why) => Step::Failed(self.resolver_failed(server, why)),
                },
            },
            State::Queued => self.next_address(),
            // Waiting for a report: the shell skipped one; say so, not hang.
            other => {
                self.state = other;
                Step::Failed("redis connection opening out of order".into())
            }
        }
    }

    /// The host's lookup answered (`Err`: its error code's name).
    pub fn resolved(&mut self, answer: Result<Vec<IpAddr>, &str>) {
        let step = match dns::host_answer(&self.target.host, answer) {
            Ok(found) => self.try_addresses(found),
            Err(why) => Step::Failed(why),
        };
        self.queued.push_back(step);
    }

    /// The TCP connection asked for is open.
    pub fn connected(&mut self) {
        let step = match std::mem::replace(&mut self.state, State::Queued) {
            State::Resolver(server, mut lookup) => {
                let query = lookup.take_outgoing();
                self.state = State::Resolver(server, lookup);
                Step::Exchange(query)
            }
            _ => match &self.target.tls {
                None => Step::Open(Wire::Plain),
                Some(client) => match client.connect(&self.target.host) {
                    Ok(tls) => {
                        let mut tls = Box::new(tls);
                        let hello = tls.take_outgoing();
                        self.state = State::Handshake(tls);
                        Step::Exchange(hello)
                    }
                    Err(why) => Step::Failed(self.handshake_failed(&why)),
                },
            },
        };
        self.queued.push_back(step);
    }

    /// The TCP connection asked for could not be opened (why).
    pub fn connect_failed(&mut self, why: String) {
        let step = match std::mem::replace(&mut self.state, State::Queued) {
            State::Resolver(server, _) => Step::Failed(self.resolver_failed(server, why)),
            _ => {
                self.last = why;
                return;
            }
        };
        self.queued.push_back(step);
    }

    /// What the read after an [`Step::Exchange`] brought (or why the write
    /// or read failed).
    pub fn received(&mut self, bytes: Result<Vec<u8>, String>) {
        let state = std::mem::replace(&mut self.state, State::Queued);
        let steps = match (state, bytes) {
            (State::Resolver(server, _), Err(why)) => {
                vec![Step::Failed(self.resolver_failed(server, why))]
            }
            (State::Resolver(server, mut lookup), Ok(bytes)) => match lookup.receive(&bytes) {
                Ok(Some(found)) => vec![self.try_addresses(found)],
                Ok(None) => {
                    let more = lookup.take_outgoing();
                    self.state = State::Resolver(server, lookup);
                    vec![Step::Exchange(more)]
                }
                Err(why) => vec![Step::Failed(self.resolver_failed(server, why))],
            },
            (State::Handshake(_), Err(why)) => vec![Step::Failed(self.handshake_failed(&why))],
            (State::Handshake(mut tls), Ok(bytes)) => {
                // Redis never speaks first: no plaintext during the handshake.
                let received = tls.receive(&bytes, &mut Vec::new());
                let reply = tls.take_outgoing();
                match received {
                    Err(why) => vec![
                        Step::Write(reply),
                        Step::Failed(self.handshake_failed(&why)),
                    ],
                    Ok(()) if tls.is_handshaking() => {
                        self.state = State::Handshake(tls);
                        vec![Step::Exchange(reply)]
                    }
                    Ok(()) => {
                        let t = self.target;
                        let peer = format!("{}:{}", t.host, t.port);
                        let wire = Wire::Tls { session: tls, peer };
                        vec![Step::Write(reply), Step::Open(wire)]
                    }
                }
            }
            (_, _) => vec![Step::Failed("redis connection opening out of order".into())],
        };
        self.queued.extend(steps);
    }

    /// Connects to the first of `found` (the rest after it).
    fn try_addresses(&mut self, found: Vec<IpAddr>) -> Step {
        self.addresses = found.into();
        self.next_address()
    }

    fn next_address(&mut self) -> Step {
        match self.addresses.pop_front() {
            Some(ip) => {
                self.state = State::Connecting;
                Step::Connect(SocketAddr::new(ip, self.target.port))
            }
            None => Step::Failed(self.last.clone()),
        }
    }

    fn resolver_failed(&self, server: SocketAddr, why: String) -> String {
        format!(
            "resolve {} via DNS server {server}: {why}",
            self.target.host
        )
    }

    fn handshake_failed(&self, why: &str) -> String {
        let t = self.target;
        format!("TLS handshake with {}:{}: {why}", t.host, t.port)
    }
}

/// Why a TCP connect to `peer` failed, from the host's error code name;
/// on Spin `access-denied` means the address is not allowed.
pub fn connect_error(peer: SocketAddr, code: &str) -> String {
    let hint = match code {
        "access-denied" => " (on Spin: not in allowed_outbound_hosts)",
        _ => "",
    };
    format!("connect to {peer}: {code}{hint}")
}

/// When the opening of a connection that streams share (WASIp3: the
/// instance's subscription and command connections) gives up: a tenth of
/// `timeout_ms` before the streams waiting on it would, so their 503 and
/// log line name its cause (a dead resolver, a silent TLS peer) rather
/// than only their own timeout.
pub fn shared_open_deadline(now: u64, timeout_ms: u64) -> u64 {
    let timeout = timeout_ms.saturating_mul(1_000_000);
    now.saturating_add(timeout - timeout / 10)
}

/// The WIT name (`access-denied`, `name-unresolvable`) of an error code
/// from its Rust `Debug` text (`ErrorCode::AccessDenied`,
/// `ErrorCode::Other(Some(..))`): the texts and hints above go by WIT
/// names, and bindings without `name()` (WASIp3) only derive `Debug`.
pub fn wit_name(debug: &str) -> String {
    let variant = debug.split('(').next().unwrap_or(debug);
    let variant = variant.rsplit("::").next().unwrap_or(variant).trim();
    let mut name = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::dns::tests::{a, reply};
    use crate::redis::target::parse_redis_url;
    use simple_dns::RCODE;

    #[test]
    fn a_shared_opening_gives_up_before_its_streams() {
        assert_eq!(shared_open_deadline(5, 3_000), 5 + 2_700_000_000);
        assert_eq!(shared_open_deadline(u64::MAX - 1, 3_000), u64::MAX);
    }

    #[test]
    fn wit_names_from_debug_texts() {
        assert_eq!(wit_name("ErrorCode::AccessDenied"), "access-denied");
        assert_eq!(wit_name("NameUnresolvable"), "name-unresolvable");
        assert_eq!(wit_name("ErrorCode::Other(Some(\"a::B\"))"), "other");
        assert_eq!(
            connect_error(
                "10.0.0.1:6379".parse().unwrap(),
                &wit_name("ErrorCode::AccessDenied")
            ),
            "connect to 10.0.0.1:6379: access-denied (on Spin: not in allowed_outbound_hosts)"
        );
    }

    fn target(url: &str, dns_server: Option<&str>) -> RedisTarget {
        let mut t = parse_redis_url(url).unwrap();
        t.dns_server = dns_server.map(|s| s.parse().unwrap());
        t
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ip_without_tls_is_one_connect() {
        let t = target("redis://10.0.0.1:6380", None);
        let mut d = Dial::new(&t, 1);
        assert!(matches!(d.step(), Step::Connect(a) if a == addr("10.0.0.1:6380")));
        d.connected();
        assert!(matches!(d.step(), Step::Open(Wire::Plain)));
    }

    #[test]
    fn each_address_in_turn_then_the_last_error() {
        let t = target("redis://redis.svc:6379", None);
        let mut d = Dial::new(&t, 1);
        assert!(matches!(d.step(), Step::Lookup(h) if h == "redis.svc"));
        let ips = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        d.resolved(Ok(ips));
        assert!(matches!(d.step(), Step::Connect(a) if a == addr("10.0.0.1:6379")));
        d.connect_failed("connect to 10.0.0.1:6379: connection-refused".into());
        assert!(matches!(d.step(), Step::Connect(a) if a == addr("10.0.0.2:6379")));
        d.connect_failed("connect to 10.0.0.2:6379 timed out".into());
        assert!(
            matches!(d.step(), Step::Failed(why) if why == "connect to 10.0.0.2:6379 timed out")
        );
    }

    #[test]
    fn a_failed_lookup_says_why() {
        let t = target("redis://redis.svc:6379", None);
        let mut d = Dial::new(&t, 1);
        let _ = d.step();
        d.resolved(Err("name-unresolvable"));
        let Step::Failed(why) = d.step() else {
            panic!("a lookup error ends the opening")
        };
        assert!(
            why.contains("redis.svc") && why.contains("name-unresolvable"),
            "{why}"
        );
    }

    #[test]
    fn the_configured_resolver_then_the_address() {
        let t = target("redis://redis.test:6379", Some("10.96.0.10:53"));
        let mut d = Dial::new(&t, 7);
        assert!(matches!(d.step(), Step::Connect(a) if a == addr("10.96.0.10:53")));
        d.connected();
        let Step::Exchange(query) = d.step() else {
            panic!("the query goes out")
        };
        assert!(query.len() > 12);
        // The answer in two reads: the lookup asks for more in between.
        let answer = reply(7, RCODE::NoError, vec![a("redis.test", [10, 1, 2, 3])]);
        d.received(Ok(answer[..5].to_vec()));
        assert!(matches!(d.step(), Step::Exchange(more) if more.is_empty()));
        d.received(Ok(answer[5..].to_vec()));
        assert!(matches!(d.step(), Step::Connect(a) if a == addr("10.1.2.3:6379")));
        d.connected();
        assert!(matches!(d.step(), Step::Open(Wire::Plain)));
    }

    #[test]
    fn resolver_failures_name_the_resolver() {
        let t = target("redis://redis.test:6379", Some("10.96.0.10:53"));
        let expected = "resolve redis.test via DNS server 10.96.0.10:53: ";
        let mut d = Dial::new(&t, 7);
        let _ = d.step();
        d.connect_failed("connect to 10.96.0.10:53: timeout".into());
        assert!(matches!(d.step(), Step::Failed(why) if why.starts_with(expected)));
        let mut d = Dial::new(&t, 7);
        let _ = d.step();
        d.connected();
        let _ = d.step();
        d.received(Err("redis did not answer in time".into()));
        assert!(
            matches!(d.step(), Step::Failed(why) if why == format!("{expected}redis did not answer in time"))
        );
    }

    #[test]
    fn a_broken_handshake_sends_the_alert_then_names_the_server() {
        let t = target("rediss://10.0.0.1:6380", None);
        let mut d = Dial::new(&t, 1);
        let _ = d.step();
        d.connected();
        let Step::Exchange(hello) = d.step() else {
            panic!("the client hello goes out")
        };
        assert_eq!(hello[0], 0x16, "a TLS handshake record");
        d.received(Ok(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()));
        assert!(matches!(d.step(), Step::Write(_)));
        let Step::Failed(why) = d.step() else {
            panic!("a handshake error ends the opening")
        };
        assert!(
            why.starts_with("TLS handshake with 10.0.0.1:6380: "),
            "{why}"
        );
        // A read that times out ends it too.
        let mut d = Dial::new(&t, 1);
        let _ = d.step();
        d.connected();
        let _ = d.step();
        d.received(Err("redis did not answer in time".into()));
        assert!(
            matches!(d.step(), Step::Failed(why) if why.ends_with("redis did not answer in time"))
        );
    }

    #[test]
    fn a_denied_connect_points_at_the_spin_allowlist() {
        let peer = addr("10.0.0.1:6379");
        assert_eq!(
            connect_error(peer, "access-denied"),
            "connect to 10.0.0.1:6379: access-denied (on Spin: not in allowed_outbound_hosts)"
        );
        assert_eq!(
            connect_error(peer, "connection-refused"),
            "connect to 10.0.0.1:6379: connection-refused"
        );
    }

    #[test]
    fn a_skipped_report_is_an_error_not_a_hang() {
        let t = target("redis://10.0.0.1:6380", None);
        let mut d = Dial::new(&t, 1);
        let _ = d.step();
        assert!(matches!(d.step(), Step::Failed(_)));
    }
}
