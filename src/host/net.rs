//! TCP (and TLS) to Redis over `wasi:sockets`, with deadlines from `wasi:clocks`.
//!
//! Owns sockets and their streams and nothing else: what to send and what
//! the bytes mean is [`crate::session::Session`]'s job, TLS records are
//! [`crate::tls::TlsSession`]'s and DNS messages [`crate::dns::Lookup`]'s.

use super::clock;
use crate::config::RedisTarget;
use crate::dns::{self, Plan};
use crate::session::{Incoming, Session};
use crate::tls::{TlsClient, TlsSession};
use std::net::{IpAddr, SocketAddr};
use wasi::io::poll::{poll, Pollable};
use wasi::io::streams::{InputStream, OutputStream, StreamError};
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasi::sockets::tcp::TcpSocket;
use wasi::sockets::{ip_name_lookup, tcp_create_socket};

/// Why talking to Redis failed; the shell turns any of these into a 503 or
/// a stream close, and logs the text (which never holds a password).
#[derive(Debug)]
pub struct NetError(pub String);

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail(what: impl Into<String>) -> NetError {
    NetError(what.into())
}

/// Bytes read from Redis per `read` call. Small on purpose: wasmtime-wasi
/// allocates and zeroes the full length on every read, and a typical event
/// is a few hundred bytes (64 KiB cost ~7 % CPU per event, docs/PERFORMANCE.md).
const READ_CHUNK: u64 = 8 * 1024;

/// One TCP connection. Field order is drop order: the streams are children
/// of the socket and must go first.
struct Tcp {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
}

impl Tcp {
    fn connect(ip: IpAddr, port: u16, deadline: u64) -> Result<Tcp, NetError> {
        let network = instance_network();
        let (family, address) = socket_address(ip, port);
        let socket = tcp_create_socket::create_tcp_socket(family)
            .map_err(|e| fail(format!("socket: {}", e.name())))?;
        let refused = |e: ErrorCode| {
            let hint = if e == ErrorCode::AccessDenied {
                " (on Spin: not covered by allowed_outbound_hosts)"
            } else {
                ""
            };
            fail(format!(
                "connect to {}: {}{hint}",
                SocketAddr::new(ip, port),
                e.name()
            ))
        };
        socket.start_connect(&network, address).map_err(refused)?;
        let ready = socket.subscribe();
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) => {
                    if !wait_until(&ready, deadline) {
                        return Err(fail(format!(
                            "connect to {} timed out",
                            SocketAddr::new(ip, port)
                        )));
                    }
                }
                Err(e) => return Err(refused(e)),
            }
        };
        drop(ready);
        Ok(Tcp {
            input,
            output,
            _socket: socket,
        })
    }

    /// Writes all of `bytes` (commands and records are small).
    fn write(&self, bytes: &[u8]) -> Result<(), NetError> {
        for chunk in bytes.chunks(4096) {
            self.output
                .blocking_write_and_flush(chunk)
                .map_err(|e| fail(format!("write: {}", stream_error(e))))?;
        }
        Ok(())
    }

    /// What has arrived, without blocking (possibly nothing).
    fn read(&self) -> Result<Vec<u8>, NetError> {
        self.input
            .read(READ_CHUNK)
            .map_err(|e| fail(format!("read: {}", stream_error(e))))
    }

    /// Waits for bytes (or the peer's close) until `deadline`.
    fn wait_readable(&self, deadline: u64) -> bool {
        wait_until(&self.input.subscribe(), deadline)
    }
}

fn socket_address(ip: IpAddr, port: u16) -> (IpAddressFamily, IpSocketAddress) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port,
                    address: (a, b, c, d),
                }),
            )
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port,
                    flow_info: 0,
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: 0,
                }),
            )
        }
    }
}

/// An open connection to Redis, TLS when the target says so. Dropping it
/// closes the TCP connection, which is how a subscription is released.
pub struct Conn {
    tcp: Tcp,
    tls: Option<TlsSession>,
    /// `host:port`, for error texts.
    peer: String,
    /// The protocol state of this connection.
    pub session: Session,
}

impl Conn {
    /// Resolves the host, connects (trying each address in turn) and
    /// completes the TLS handshake within `deadline` (monotonic ns), then
    /// sends the session's queued handshake.
    pub fn open(target: &RedisTarget, session: Session, deadline: u64) -> Result<Conn, NetError> {
        let addresses = resolve(target, deadline)?;
        let mut last = None;
        let mut tcp = None;
        for ip in addresses {
            match Tcp::connect(ip, target.port, deadline) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(tcp), _) => tcp,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(fail(format!("resolve {}: no address", target.host))),
        };
        let tls = match &target.tls {
            Some(client) => Some(handshake(&tcp, client, target, deadline)?),
            None => None,
        };
        let peer = format!("{}:{}", target.host, target.port);
        let mut conn = Conn {
            tcp,
            tls,
            peer,
            session,
        };
        conn.flush()?;
        Ok(conn)
    }

    /// Writes whatever the session has queued.
    pub fn flush(&mut self) -> Result<(), NetError> {
        let mut bytes = self.session.take_outgoing();
        if let Some(tls) = &mut self.tls {
            tls.write(&bytes).map_err(fail)?;
            bytes = tls.take_outgoing();
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.tcp
            .write(&bytes)
            .map_err(|e| fail(format!("redis {} {e}", self.peer)))
    }

    /// Ready when Redis has sent bytes (or closed).
    pub fn readable(&self) -> Pollable {
        self.tcp.input.subscribe()
    }

    /// Reads what is available without blocking and decodes it into `out`.
    pub fn read_available(&mut self, out: &mut Vec<Incoming>) -> Result<(), NetError> {
        let mut bytes = self
            .tcp
            .read()
            .map_err(|e| fail(format!("redis {} {e}", self.peer)))?;
        if let Some(tls) = &mut self.tls {
            let mut plain = Vec::new();
            let received = tls.receive(&bytes, &mut plain);
            // Alerts, key updates: whatever TLS wants to say goes out now.
            let reply = tls.take_outgoing();
            if !reply.is_empty() {
                let _ = self.tcp.write(&reply);
            }
            received.map_err(|e| fail(format!("redis {} TLS: {e}", self.peer)))?;
            bytes = plain;
        }
        self.session
            .receive(&bytes, out)
            .map_err(|e| fail(format!("redis protocol: {e}")))
    }

    /// Blocks until at least one item arrives or `deadline` passes.
    pub fn next_batch(&mut self, out: &mut Vec<Incoming>, deadline: u64) -> Result<(), NetError> {
        while out.is_empty() {
            if !self.tcp.wait_readable(deadline) {
                return Err(fail("redis did not answer in time"));
            }
            self.read_available(out)?;
        }
        Ok(())
    }
}

/// Verifies the server and agrees keys; the error names the server and
/// what failed (unknown issuer, wrong name, expired, ...).
fn handshake(
    tcp: &Tcp,
    client: &TlsClient,
    target: &RedisTarget,
    deadline: u64,
) -> Result<TlsSession, NetError> {
    let server = format!("{}:{}", target.host, target.port);
    let failed = |why: String| fail(format!("TLS handshake with {server}: {why}"));
    let mut tls = client.connect(&target.host).map_err(failed)?;
    // Redis never speaks first, so nothing arrives before the handshake ends.
    let mut early = Vec::new();
    while tls.is_handshaking() {
        tcp.write(&tls.take_outgoing())
            .map_err(|e| failed(e.to_string()))?;
        if !tcp.wait_readable(deadline) {
            return Err(failed("timed out".into()));
        }
        let bytes = tcp.read().map_err(|e| failed(e.to_string()))?;
        if let Err(why) = tls.receive(&bytes, &mut early) {
            let _ = tcp.write(&tls.take_outgoing());
            return Err(failed(why));
        }
    }
    tcp.write(&tls.take_outgoing())
        .map_err(|e| failed(e.to_string()))?;
    Ok(tls)
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "connection closed".into(),
        StreamError::LastOperationFailed(err) => err.to_debug_string(),
    }
}

/// Waits for `p` or the deadline; true when `p` is ready.
fn wait_until(p: &Pollable, deadline: u64) -> bool {
    let timer = clock::timer_at(deadline);
    let ready = poll(&[p, &timer]);
    ready.contains(&0)
}

/// The addresses to try for the target's host, in order.
fn resolve(target: &RedisTarget, deadline: u64) -> Result<Vec<IpAddr>, NetError> {
    let host = &target.host;
    match dns::plan(host, target.dns_server) {
        Plan::Address(ip) => Ok(vec![ip]),
        Plan::Server(server) => ask_server(server, host, deadline)
            .map_err(|why| fail(format!("resolve {host} via DNS server {server}: {why}"))),
        Plan::Host => match ask_host(host, deadline) {
            Ok(addresses) => Ok(addresses),
            Err(_) if dns::is_localhost(host) => Ok(vec![dns::LOOPBACK]),
            Err(why) => Err(fail(format!("resolve {host}: {why}"))),
        },
    }
}

/// One lookup over TCP to the configured resolver.
fn ask_server(server: SocketAddr, host: &str, deadline: u64) -> Result<Vec<IpAddr>, String> {
    let id = wasi::random::random::get_random_u64() as u16;
    let mut lookup = dns::Lookup::new(host, id)?;
    let tcp = Tcp::connect(server.ip(), server.port(), deadline).map_err(|e| e.0)?;
    loop {
        tcp.write(&lookup.take_outgoing()).map_err(|e| e.0)?;
        if !tcp.wait_readable(deadline) {
            return Err("timed out".into());
        }
        let bytes = tcp.read().map_err(|e| e.0)?;
        if let Some(addresses) = lookup.receive(&bytes)? {
            return Ok(addresses);
        }
    }
}

/// The host's lookup (`wasi:sockets/ip-name-lookup`): IPv4 addresses first.
fn ask_host(host: &str, deadline: u64) -> Result<Vec<IpAddr>, String> {
    let no_lookup = |e: ErrorCode| {
        let hint = match e {
            ErrorCode::PermanentResolverFailure
            | ErrorCode::NotSupported
            | ErrorCode::AccessDenied => {
                " (this host offers no name lookup: set dns_server to a resolver's IP)"
            }
            _ => "",
        };
        format!("{}{hint}", e.name())
    };
    let lookup = ip_name_lookup::resolve_addresses(&instance_network(), host).map_err(no_lookup)?;
    let ready = lookup.subscribe();
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    loop {
        match lookup.resolve_next_address() {
            Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => v4.push(IpAddr::from([a, b, c, d])),
            Ok(Some(IpAddress::Ipv6(s))) => {
                v6.push(IpAddr::from([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7]))
            }
            Ok(None) if v4.is_empty() && v6.is_empty() => return Err("no address".into()),
            Ok(None) => return Ok(v4.into_iter().chain(v6).collect()),
            Err(ErrorCode::WouldBlock) => {
                if !wait_until(&ready, deadline) {
                    return Err("timed out".into());
                }
            }
            Err(e) => return Err(no_lookup(e)),
        }
    }
}
