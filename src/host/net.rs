//! TCP (and TLS) to Redis over `wasi:sockets`, with deadlines from `wasi:clocks`.
//!
//! Owns sockets and their streams and nothing else: what to send and what
//! the bytes mean is the core machines' job, how a connection is opened
//! (resolver, addresses in turn, TLS handshake) [`crate::redis::dial::Dial`]'s and
//! TLS records [`crate::redis::tls::TlsSession`]'s.

use super::clock;
use crate::redis::dial::{self, Dial, Step};
use crate::redis::failure;
use crate::redis::target::RedisTarget;
use crate::redis::tls::Wire;
use std::net::{IpAddr, SocketAddr};
use wasi::io::poll::{poll, Pollable};
use wasi::io::streams::{InputStream, OutputStream, StreamError};
use wasi::sockets::instance_network::instance_network;
use wasi::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasi::sockets::tcp::TcpSocket;
use wasi::sockets::{ip_name_lookup, tcp_create_socket};

/// Bytes read from Redis per `read` call (why so few: the constant's doc).
const READ_CHUNK: u64 = crate::machine::READ_CHUNK as u64;

/// One TCP connection. Field order is drop order: the streams are children
/// of the socket and must go first.
struct Tcp {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
}

impl Tcp {
    fn connect(peer: SocketAddr, deadline: u64) -> Result<Tcp, String> {
        let (ip, port) = (peer.ip(), peer.port());
        let network = instance_network();
        let refused = |e: ErrorCode| dial::connect_error(peer, e.name());
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
        Err(failure::SILENT.into())
    }
}

/// An open connection to Redis, TLS when the target says so. Dropping it
/// closes the TCP connection, which is how a subscription is released.
/// Errors are texts for the log (never holding a password); the machines
/// turn them into a 503 or a stream close.
pub struct Conn {
    wire: Wire,
    tcp: Tcp,
}

impl Conn {
    /// Opens a connection as [`Dial`] says (resolve, connect to each
    /// address in turn, TLS handshake), all within `deadline` (monotonic ns).
    pub fn open(target: &RedisTarget, deadline: u64) -> Result<Conn, String> {
        let mut dial = Dial::new(target, wasi::random::random::get_random_u64() as u16);
        let mut tcp: Option<Tcp> = None;
        loop {
            match dial.step() {
                Step::Lookup(host) => {
                    dial.resolved(ask_host(&host, deadline).map_err(|e| e.name()))
                }
                Step::Connect(peer) => {
                    tcp = None;
                    match Tcp::connect(peer, deadline) {
                        Ok(t) => {
                            tcp = Some(t);
                            dial.connected();
                        }
                        Err(e) => dial.connect_failed(e),
                    }
                }
                Step::Exchange(bytes) => dial.received(match &tcp {
                    Some(t) => t.write(&bytes).and_then(|()| t.read_until(deadline)),
                    None => Err("not connected".into()),
                }),
                Step::Write(bytes) => {
                    let _ = tcp.as_ref().map(|t| t.write(&bytes));
                }
                Step::Open(wire) => {
                    let tcp = tcp.ok_or("not connected")?;
                    return Ok(Conn { wire, tcp });
                }
                Step::Failed(why) => return Err(why),
            }
        }
    }

    /// Writes `bytes` (commands are small).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.tcp.write(&self.wire.seal(bytes)?)
    }

    /// Ready when Redis has sent bytes (or closed).
    pub fn readable(&self) -> Pollable {
        self.tcp.input.subscribe()
    }

    /// Reads what is available without blocking (maybe nothing).
    pub fn read_available(&mut self) -> Result<Vec<u8>, String> {
        let bytes = self.tcp.read()?;
        self.open_records(&bytes)
    }

    /// Blocks until bytes arrive or `deadline` passes.
    pub fn read_until(&mut self, deadline: u64) -> Result<Vec<u8>, String> {
        loop {
            let bytes = self.tcp.read_until(deadline)?;
            let plain = self.open_records(&bytes)?;
            if !plain.is_empty() {
                return Ok(plain);
            }
        }
    }

    /// The plaintext in `bytes`; whatever TLS answers (alerts, key
    /// updates) goes out at once.
    fn open_records(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let (plain, reply) = self.wire.open(bytes);
        let _ = self.tcp.write(&reply);
        plain
    }
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
