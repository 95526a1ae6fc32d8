//! TCP (and TLS) to Redis over `wasi:sockets`, with deadlines from `wasi:clocks`.
//!
//! Owns sockets and their streams and nothing else: what to send and what
//! the bytes mean is the core machines' job, TLS records are
//! [`crate::tls::TlsSession`]'s and DNS messages [`crate::dns::Lookup`]'s.

use super::clock;
use crate::config::RedisTarget;
use crate::dns::{self, Plan};
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

/// Bytes read from Redis per `read` call (why so few: the constant's doc).
const READ_CHUNK: u64 = crate::machine::READ_CHUNK as u64;

/// What an `access-denied` connect means on Spin.
const SPIN_DENIED: &str = " (on Spin: not in allowed_outbound_hosts)";

/// One TCP connection. Field order is drop order: the streams are children
/// of the socket and must go first.
struct Tcp {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
}

impl Tcp {
    fn connect(ip: IpAddr, port: u16, deadline: u64) -> Result<Tcp, String> {
        let peer = SocketAddr::new(ip, port);
        let network = instance_network();
        let refused = |e: ErrorCode| {
            let denied = (e == ErrorCode::AccessDenied).then_some(SPIN_DENIED);
            format!("connect to {peer}: {}{}", e.name(), denied.unwrap_or(""))
        };
        let (family, address) = match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                let address = (a, b, c, d);
                let v4 = Ipv4SocketAddress { port, address };
                (IpAddressFamily::Ipv4, IpSocketAddress::Ipv4(v4))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let address = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
                let (flow_info, scope_id) = (0, 0);
                let v6 = Ipv6SocketAddress {
                    port,
                    flow_info,
                    address,
                    scope_id,
                };
                (IpAddressFamily::Ipv6, IpSocketAddress::Ipv6(v6))
            }
        };
        let socket = tcp_create_socket::create_tcp_socket(family)
            .map_err(|e| format!("socket: {}", e.name()))?;
        socket.start_connect(&network, address).map_err(refused)?;
        let ready = socket.subscribe();
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) if wait_until(&ready, deadline) => {}
                Err(ErrorCode::WouldBlock) => return Err(format!("connect to {peer} timed out")),
                Err(e) => return Err(refused(e)),
            }
        };
        drop(ready);
        let _socket = socket;
        Ok(Tcp {
            input,
            output,
            _socket,
        })
    }

    /// Writes all of `bytes` (commands and records are small).
    fn write(&self, bytes: &[u8]) -> Result<(), String> {
        for chunk in bytes.chunks(4096) {
            self.output
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("write to redis: {}", stream_error(e)))?;
        }
        Ok(())
    }

    /// What has arrived, without blocking (maybe nothing).
    fn read(&self) -> Result<Vec<u8>, String> {
        self.input
            .read(READ_CHUNK)
            .map_err(|e| format!("read from redis: {}", stream_error(e)))
    }

    /// Blocks until bytes arrive or `deadline` passes.
    fn read_until(&self, deadline: u64) -> Result<Vec<u8>, String> {
        while wait_until(&self.input.subscribe(), deadline) {
            let bytes = self.read()?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
        }
        Err("redis did not answer in time".into())
    }
}

/// An open connection to Redis, TLS when the target says so. Dropping it
/// closes the TCP connection, which is how a subscription is released.
pub struct Conn {
    tls: Option<TlsSession>,
    tcp: Tcp,
    /// `host:port`, for error texts.
    peer: String,
}

impl Conn {
    /// Resolves the host, connects (each address in turn) and, for
    /// `rediss://`, verifies the server, all within `deadline` (monotonic ns).
    pub fn open(target: &RedisTarget, deadline: u64) -> Result<Conn, NetError> {
        let mut last = format!("resolve {}: no address", target.host);
        for ip in resolve(target, deadline).map_err(fail)? {
            match Tcp::connect(ip, target.port, deadline) {
                Ok(tcp) => {
                    let tls = match &target.tls {
                        Some(c) => Some(handshake(&tcp, c, target, deadline).map_err(fail)?),
                        None => None,
                    };
                    let peer = format!("{}:{}", target.host, target.port);
                    return Ok(Conn { tls, tcp, peer });
                }
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }

    /// Writes `bytes` (commands are small).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        match &mut self.tls {
            Some(tls) => self.tcp.write(&tls.seal(bytes).map_err(fail)?),
            None => self.tcp.write(bytes),
        }
        .map_err(fail)
    }

    /// Ready when Redis has sent bytes (or closed).
    pub fn readable(&self) -> Pollable {
        self.tcp.input.subscribe()
    }

    /// Reads what is available without blocking (maybe nothing).
    pub fn read_available(&mut self) -> Result<Vec<u8>, NetError> {
        let bytes = self.tcp.read().map_err(fail)?;
        self.open_records(&bytes)
    }

    /// Blocks until bytes arrive or `deadline` passes.
    pub fn read_until(&mut self, deadline: u64) -> Result<Vec<u8>, NetError> {
        loop {
            let bytes = self.tcp.read_until(deadline).map_err(fail)?;
            let plain = self.open_records(&bytes)?;
            if !plain.is_empty() {
                return Ok(plain);
            }
        }
    }

    /// The plaintext in `bytes`; whatever TLS answers (alerts, key
    /// updates) goes out at once.
    fn open_records(&mut self, bytes: &[u8]) -> Result<Vec<u8>, NetError> {
        let Some(tls) = &mut self.tls else {
            return Ok(bytes.to_vec());
        };
        let mut plain = Vec::new();
        let received = tls.receive(bytes, &mut plain);
        let _ = self.tcp.write(&tls.take_outgoing());
        received.map_err(|e| fail(format!("redis {} TLS: {e}", self.peer)))?;
        Ok(plain)
    }
}

/// Verifies the server and agrees keys; the error names the server and
/// what failed (unknown issuer, wrong name, expired, ...).
fn handshake(
    tcp: &Tcp,
    client: &TlsClient,
    target: &RedisTarget,
    deadline: u64,
) -> Result<TlsSession, String> {
    let failed = |why: String| format!("TLS handshake with {}:{}: {why}", target.host, target.port);
    let mut tls = client.connect(&target.host).map_err(failed)?;
    // Redis never speaks first, so no plaintext arrives during the handshake.
    let mut early = Vec::new();
    while tls.is_handshaking() {
        tcp.write(&tls.take_outgoing()).map_err(failed)?;
        let bytes = tcp.read_until(deadline).map_err(failed)?;
        let received = tls.receive(&bytes, &mut early);
        let _ = tcp.write(&tls.take_outgoing());
        received.map_err(failed)?;
    }
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

/// The addresses to try for the target's host, in order (the choice of
/// resolver and the `localhost` rule are [`dns::plan`]'s).
fn resolve(target: &RedisTarget, deadline: u64) -> Result<Vec<IpAddr>, String> {
    let host = &target.host;
    match dns::plan(host, target.dns_server) {
        Plan::Address(ip) => Ok(vec![ip]),
        Plan::Server(server) => ask_server(server, host, deadline)
            .map_err(|why| format!("resolve {host} via DNS server {server}: {why}")),
        Plan::Host => dns::host_answer(host, ask_host(host, deadline).map_err(|e| e.name())),
    }
}

/// One lookup over TCP to the configured resolver.
fn ask_server(server: SocketAddr, host: &str, deadline: u64) -> Result<Vec<IpAddr>, String> {
    let mut lookup = dns::Lookup::new(host, wasi::random::random::get_random_u64() as u16)?;
    let tcp = Tcp::connect(server.ip(), server.port(), deadline)?;
    loop {
        tcp.write(&lookup.take_outgoing())?;
        if let Some(addresses) = lookup.receive(&tcp.read_until(deadline)?)? {
            return Ok(addresses);
        }
    }
}

/// The host's lookup (`wasi:sockets/ip-name-lookup`), in its order.
fn ask_host(host: &str, deadline: u64) -> Result<Vec<IpAddr>, ErrorCode> {
    let lookup = ip_name_lookup::resolve_addresses(&instance_network(), host)?;
    let ready = lookup.subscribe();
    let mut found = Vec::new();
    loop {
        match lookup.resolve_next_address() {
            Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => found.push(IpAddr::from([a, b, c, d])),
            Ok(Some(IpAddress::Ipv6(s))) => {
                found.push(IpAddr::from([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7]))
            }
            Ok(None) => return Ok(found),
            Err(ErrorCode::WouldBlock) if wait_until(&ready, deadline) => {}
            Err(ErrorCode::WouldBlock) => return Err(ErrorCode::Timeout),
            Err(e) => return Err(e),
        }
    }
}
