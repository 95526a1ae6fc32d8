//! Resolving the Redis host name where the host cannot.
//!
//! Spin links no `wasi:sockets/ip-name-lookup` and checks every connect
//! against `allowed_outbound_hosts` by IP, so a Redis reached by name needs
//! the gateway's own lookup: with `dns_server` set, it asks that resolver
//! over TCP (one connection, an `A` query, then `AAAA` if there was no IPv4
//! address). This module decides how a name is resolved and builds and
//! checks the DNS messages; `host::net` only moves the bytes.

use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// How a Redis host is turned into addresses to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// An IP literal: connect to it.
    Address(IpAddr),
    /// Ask the configured resolver over TCP.
    Server(SocketAddr),
    /// Ask the host (`wasi:sockets/ip-name-lookup`); `localhost` names fall
    /// back to loopback where the host has no lookup (Spin).
    Host,
}

/// Chooses how to resolve `host`. Names under `localhost` never go to a
/// DNS server (RFC 6761 §6.3): with a resolver configured they are
/// loopback at once.
pub fn plan(host: &str, dns_server: Option<SocketAddr>) -> Plan {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Plan::Address(ip);
    }
    match dns_server {
        Some(_) if is_localhost(host) => Plan::Address(LOOPBACK),
        Some(server) => Plan::Server(server),
        None => Plan::Host,
    }
}

/// Where `localhost` names point.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `localhost` or a name under it (case-insensitive, trailing dot allowed).
pub fn is_localhost(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// What the host's lookup (`Err`: its error code's name) means for
/// `host`: the addresses, IPv4 first; loopback for a `localhost` name the
/// host could not resolve (Spin has no lookup); else why, with the way
/// round a host that offers no lookup.
pub fn host_answer(host: &str, answer: Result<Vec<IpAddr>, &str>) -> Result<Vec<IpAddr>, String> {
    let why = match answer {
        Ok(mut found) if !found.is_empty() => {
            found.sort_by_key(IpAddr::is_ipv6);
            return Ok(found);
        }
        Ok(_) => "no address",
        Err(code) => code,
    };
    if is_localhost(host) {
        return Ok(vec![LOOPBACK]);
    }
    let hint = match why {
        "permanent-resolver-failure" | "not-supported" | "access-denied" => {
            " (this host offers no name lookup: set dns_server to a resolver's IP)"
        }
        _ => "",
    };
    Err(format!("resolve {host}: {why}{hint}"))
}

/// Parses `dns_server`: `tcp://IP[:port]` or `IP[:port]` (port 53 by
/// default, IPv6 in brackets). The `tcp://` form is also a valid Spin
/// `allowed_outbound_hosts` entry, so spin.toml can allow it verbatim.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let rest = text.strip_prefix("tcp://").unwrap_or(text);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bad =
        || "must be an IP address with an optional port, e.g. tcp://10.96.0.10:53".to_string();
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = rest.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| bad())
}

/// One name's lookup over a DNS-over-TCP connection (RFC 7766): each
/// message is preceded by its length as two bytes.
#[derive(Debug)]
pub struct Lookup {
    name: String,
    id: u16,
    qtype: TYPE,
    outgoing: Vec<u8>,
    incoming: Vec<u8>,
}

/// Most CNAME hops followed within one answer.
const MAX_CNAMES: usize = 8;

impl Lookup {
    /// Starts a lookup of `name` with message id `id` (random, from the
    /// shell); the `A` query is queued at once.
    pub fn new(name: &str, id: u16) -> Result<Lookup, String> {
        let name = name.strip_suffix('.').unwrap_or(name);
        Name::new(name).map_err(|e| format!("{name:?} is not a valid host name: {e}"))?;
        let mut lookup = Lookup {
            name: name.to_string(),
            id,
            qtype: TYPE::A,
            outgoing: Vec::new(),
            incoming: Vec::new(),
        };
        lookup.queue()?;
        Ok(lookup)
    }

    fn queue(&mut self) -> Result<(), String> {
        let mut packet = Packet::new_query(self.id);
        packet.set_flags(PacketFlag::RECURSION_DESIRED);
        packet.questions.push(Question::new(
            Name::new_unchecked(&self.name),
            QTYPE::TYPE(self.qtype),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let message = packet
            .build_bytes_vec()
            .map_err(|e| format!("building the DNS query: {e}"))?;
        self.outgoing
            .extend_from_slice(&(message.len() as u16).to_be_bytes());
        self.outgoing.extend_from_slice(&message);
        Ok(())
    }

    /// Bytes to send to the resolver now.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    /// Feeds bytes read from the resolver. `Ok(None)`: more bytes are
    /// needed (or a follow-up query was queued); `Ok(Some)`: the addresses,
    /// never empty; `Err`: why the name did not resolve.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<Vec<IpAddr>>, String> {
        self.incoming.extend_from_slice(bytes);
        let Some(len) = self
            .incoming
            .get(..2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]))
        else {
            return Ok(None);
        };
        let end = 2 + len as usize;
        if self.incoming.len() < end {
            return Ok(None);
        }
        let message: Vec<u8> = self.incoming.drain(..end).skip(2).collect();
        let addresses = self.answer(&message)?;
        if !addresses.is_empty() {
            return Ok(Some(addresses));
        }
        if self.qtype == TYPE::A {
            self.qtype = TYPE::AAAA;
            self.id = self.id.wrapping_add(1);
            self.queue()?;
            return Ok(None);
        }
        Err("no address (the name has no A or AAAA record)".into())
    }

    /// The addresses of the queried type in one reply, following CNAMEs
    /// from the queried name.
    fn answer(&self, message: &[u8]) -> Result<Vec<IpAddr>, String> {
        let packet = Packet::parse(message).map_err(|e| format!("malformed DNS reply: {e}"))?;
        if packet.id() != self.id || !packet.has_flags(PacketFlag::RESPONSE) {
            return Err("the DNS server's reply does not match the query".into());
        }
        match packet.rcode() {
            RCODE::NoError => {}
            RCODE::NameError => return Err("no such host (NXDOMAIN)".into()),
            RCODE::ServerFailure => return Err("the DNS server failed (SERVFAIL)".into()),
            RCODE::Refused => return Err("the DNS server refused the query (REFUSED)".into()),
            other => return Err(format!("the DNS server answered {other:?}")),
        }
        let mut target = Name::new_unchecked(&self.name);
        for _ in 0..MAX_CNAMES {
            let alias = packet.answers.iter().find_map(|rr| match &rr.rdata {
                RData::CNAME(cname) if rr.name == target => Some(cname.0.clone()),
                _ => None,
            });
            match alias {
                Some(next) => target = next,
                None => break,
            }
        }
        Ok(packet
            .answers
            .iter()
            .filter(|rr| rr.name == target)
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) if self.qtype == TYPE::A => Some(IpAddr::from(a.address.to_be_bytes())),
                RData::AAAA(a) if self.qtype == TYPE::AAAA => {
                    Some(IpAddr::from(a.address.to_be_bytes()))
                }
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use simple_dns::rdata::{A, AAAA, CNAME};
    use simple_dns::ResourceRecord;
    use std::net::Ipv6Addr;

    /// The query the lookup sent, parsed back (length prefix checked).
    fn sent(lookup: &mut Lookup) -> (u16, String, QTYPE) {
        let bytes = lookup.take_outgoing();
        let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
        assert_eq!(len, bytes.len() - 2);
        let p = Packet::parse(&bytes[2..]).unwrap();
        assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
        assert!(!p.has_flags(PacketFlag::RESPONSE));
        let q = &p.questions[0];
        (p.id(), q.qname.to_string(), q.qtype)
    }

    /// A framed reply to query `id` with `answers` and `rcode`.
    pub(crate) fn reply(id: u16, rcode: RCODE, answers: Vec<ResourceRecord<'static>>) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        *p.rcode_mut() = rcode;
        p.answers = answers;
        let m = p.build_bytes_vec().unwrap();
        let mut out = (m.len() as u16).to_be_bytes().to_vec();
        out.extend(m);
        out
    }

    fn rr(name: &'static str, rdata: RData<'static>) -> ResourceRecord<'static> {
        ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, 60, rdata)
    }

    pub(crate) fn a(name: &'static str, ip: [u8; 4]) -> ResourceRecord<'static> {
        rr(
            name,
            RData::A(A {
                address: u32::from_be_bytes(ip),
            }),
        )
    }

    #[test]
    fn plans() {
        let dns: SocketAddr = "10.96.0.10:53".parse().unwrap();
        assert_eq!(
            plan("10.0.0.5", Some(dns)),
            Plan::Address("10.0.0.5".parse().unwrap())
        );
        assert_eq!(plan("::1", None), Plan::Address("::1".parse().unwrap()));
        assert_eq!(plan("redis.svc", Some(dns)), Plan::Server(dns));
        assert_eq!(plan("redis.svc", None), Plan::Host);
        assert_eq!(plan("LocalHost.", Some(dns)), Plan::Address(LOOPBACK));
        assert_eq!(plan("a.localhost", Some(dns)), Plan::Address(LOOPBACK));
        assert_eq!(plan("localhost", None), Plan::Host);
        assert!(!is_localhost("notlocalhost"));
        assert!(!is_localhost("localhost.example"));
    }

    #[test]
    fn host_answers() {
        let v6: IpAddr = "::1".parse().unwrap();
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(host_answer("r", Ok(vec![v6, v4])), Ok(vec![v4, v6]));
        // Spin: no lookup at all, yet `localhost` works.
        let spin = || Err("permanent-resolver-failure");
        assert_eq!(host_answer("localhost", spin()), Ok(vec![LOOPBACK]));
        assert_eq!(host_answer("localhost", Ok(vec![])), Ok(vec![LOOPBACK]));
        let e = host_answer("redis.svc", spin()).unwrap_err();
        assert!(
            e.contains("redis.svc") && e.contains("set dns_server"),
            "{e}"
        );
        assert_eq!(
            host_answer("redis.svc", Err("name-unresolvable")),
            Err("resolve redis.svc: name-unresolvable".into())
        );
        assert_eq!(
            host_answer("redis.svc", Ok(vec![])),
            Err("resolve redis.svc: no address".into())
        );
    }

    #[test]
    fn server_addresses() {
        let want: SocketAddr = "10.96.0.10:53".parse().unwrap();
        for text in [
            "tcp://10.96.0.10:53",
            "10.96.0.10:53",
            "10.96.0.10",
            " tcp://10.96.0.10/ ",
        ] {
            assert_eq!(parse_server(text), Ok(want), "{text}");
        }
        assert_eq!(
            parse_server("tcp://[fd00::a]:5353"),
            Ok("[fd00::a]:5353".parse().unwrap())
        );
        assert_eq!(parse_server("fd00::a"), Ok("[fd00::a]:53".parse().unwrap()));
        for bad in ["kube-dns:53", "udp://10.0.0.1:53", "10.0.0.1:x", ""] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record() {
        let mut l = Lookup::new("redis.test.", 7).unwrap();
        assert_eq!(
            sent(&mut l),
            (7, "redis.test".to_string(), QTYPE::TYPE(TYPE::A))
        );
        let r = reply(
            7,
            RCODE::NoError,
            vec![
                a("redis.test", [10, 1, 2, 3]),
                a("redis.test", [10, 1, 2, 4]),
            ],
        );
        // Byte by byte: nothing until the whole message is in.
        for b in &r[..r.len() - 1] {
            assert_eq!(l.receive(std::slice::from_ref(b)), Ok(None));
        }
        assert_eq!(
            l.receive(&r[r.len() - 1..]),
            Ok(Some(vec![
                "10.1.2.3".parse().unwrap(),
                "10.1.2.4".parse().unwrap()
            ]))
        );
    }

    #[test]
    fn cname_chain_and_case() {
        let mut l = Lookup::new("Cache.Example", 1).unwrap();
        sent(&mut l);
        let answers = vec![
            // An unrelated address first: only the chain's end counts.
            a("other.example", [9, 9, 9, 9]),
            rr(
                "cache.example",
                RData::CNAME(CNAME(Name::new_unchecked("node.aws"))),
            ),
            rr(
                "node.aws",
                RData::CNAME(CNAME(Name::new_unchecked("ip.aws"))),
            ),
            a("ip.aws", [172, 16, 0, 9]),
        ];
        assert_eq!(
            l.receive(&reply(1, RCODE::NoError, answers)),
            Ok(Some(vec!["172.16.0.9".parse().unwrap()]))
        );
    }

    #[test]
    fn ipv6_only_names_get_a_second_query() {
        let mut l = Lookup::new("v6.test", 100).unwrap();
        sent(&mut l);
        assert_eq!(l.receive(&reply(100, RCODE::NoError, vec![])), Ok(None));
        let (id, _, qtype) = sent(&mut l);
        assert_eq!((id, qtype), (101, QTYPE::TYPE(TYPE::AAAA)));
        let six = rr(
            "v6.test",
            RData::AAAA(AAAA {
                address: u128::from(Ipv6Addr::LOCALHOST),
            }),
        );
        assert_eq!(
            l.receive(&reply(101, RCODE::NoError, vec![six])),
            Ok(Some(vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]))
        );
    }

    #[test]
    fn failures_say_why() {
        let mut l = Lookup::new("gone.test", 5).unwrap();
        let e = l.receive(&reply(5, RCODE::NameError, vec![])).unwrap_err();
        assert!(e.contains("NXDOMAIN"), "{e}");

        let mut l = Lookup::new("x.test", 5).unwrap();
        let e = l
            .receive(&reply(5, RCODE::ServerFailure, vec![]))
            .unwrap_err();
        assert!(e.contains("SERVFAIL"), "{e}");

        let mut l = Lookup::new("x.test", 5).unwrap();
        let e = l.receive(&reply(6, RCODE::NoError, vec![])).unwrap_err();
        assert!(e.contains("does not match"), "{e}");

        let mut l = Lookup::new("x.test", 5).unwrap();
        assert_eq!(l.receive(&reply(5, RCODE::NoError, vec![])), Ok(None));
        let e = l.receive(&reply(6, RCODE::NoError, vec![])).unwrap_err();
        assert!(e.contains("no A or AAAA"), "{e}");

        let mut l = Lookup::new("x.test", 5).unwrap();
        let e = l.receive(&[0, 3, 1, 2, 3]).unwrap_err();
        assert!(e.contains("malformed"), "{e}");

        let long = "a".repeat(64);
        assert!(Lookup::new(&long, 1).is_err());
    }

    #[test]
    fn cname_loops_end() {
        let mut l = Lookup::new("a.test", 2).unwrap();
        let answers = vec![
            rr("a.test", RData::CNAME(CNAME(Name::new_unchecked("b.test")))),
            rr("b.test", RData::CNAME(CNAME(Name::new_unchecked("a.test")))),
        ];
        // No address at the end of a loop: on to AAAA, then a clear error.
        assert_eq!(
            l.receive(&reply(2, RCODE::NoError, answers.clone())),
            Ok(None)
        );
        assert!(l.receive(&reply(3, RCODE::NoError, answers)).is_err());
    }
}
