//! TCP to Redis over `wasi:sockets`, with deadlines from `wasi:clocks`.
//!
//! Owns the socket and its streams and nothing else: what to send and what
//! the bytes mean is the core machines' job.

use super::clock;
use crate::config::RedisTarget;
use std::net::IpAddr;
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

/// An open connection. Field order is drop order: the streams are children
/// of the socket and must go first. Dropping it closes the TCP connection,
/// which is how a subscription is released.
pub struct Conn {
    input: InputStream,
    output: OutputStream,
    _socket: TcpSocket,
}

impl Conn {
    /// Connects within `deadline` (monotonic ns).
    pub fn open(target: &RedisTarget, deadline: u64) -> Result<Conn, NetError> {
        let network = instance_network();
        let ip = resolve(&network, &target.host, deadline)?;
        let (family, address) = match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                (
                    IpAddressFamily::Ipv4,
                    IpSocketAddress::Ipv4(Ipv4SocketAddress {
                        port: target.port,
                        address: (a, b, c, d),
                    }),
                )
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                (
                    IpAddressFamily::Ipv6,
                    IpSocketAddress::Ipv6(Ipv6SocketAddress {
                        port: target.port,
                        flow_info: 0,
                        address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                        scope_id: 0,
                    }),
                )
            }
        };
        let socket = tcp_create_socket::create_tcp_socket(family)
            .map_err(|e| fail(format!("socket: {e:?}")))?;
        socket
            .start_connect(&network, address)
            .map_err(|e| fail(format!("connect to {ip}:{}: {e:?}", target.port)))?;
        let ready = socket.subscribe();
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) => {
                    if !wait_until(&ready, deadline) {
                        return Err(fail(format!("connect to {ip}:{} timed out", target.port)));
                    }
                }
                Err(e) => return Err(fail(format!("connect to {ip}:{}: {e:?}", target.port))),
            }
        };
        drop(ready);
        Ok(Conn {
            input,
            output,
            _socket: socket,
        })
    }

    /// Writes `bytes` (commands are small).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        for chunk in bytes.chunks(4096) {
            self.output
                .blocking_write_and_flush(chunk)
                .map_err(|e| fail(format!("write to redis: {}", stream_error(e))))?;
        }
        Ok(())
    }

    /// Ready when Redis has sent bytes (or closed).
    pub fn readable(&self) -> Pollable {
        self.input.subscribe()
    }

    /// Reads what is available without blocking (maybe nothing).
    pub fn read_available(&mut self) -> Result<Vec<u8>, NetError> {
        self.input
            .read(READ_CHUNK)
            .map_err(|e| fail(format!("read from redis: {}", stream_error(e))))
    }

    /// Blocks until bytes arrive or `deadline` passes.
    pub fn read_until(&mut self, deadline: u64) -> Result<Vec<u8>, NetError> {
        loop {
            let readable = self.readable();
            if !wait_until(&readable, deadline) {
                return Err(fail("redis did not answer in time"));
            }
            let bytes = self.read_available()?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
        }
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

fn resolve(
    network: &wasi::sockets::network::Network,
    host: &str,
    deadline: u64,
) -> Result<IpAddr, NetError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let lookup = ip_name_lookup::resolve_addresses(network, host)
        .map_err(|e| fail(format!("resolve {host}: {e:?}")))?;
    let ready = lookup.subscribe();
    let mut first_v6 = None;
    loop {
        match lookup.resolve_next_address() {
            Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => return Ok(IpAddr::from([a, b, c, d])),
            Ok(Some(IpAddress::Ipv6(s))) => {
                first_v6.get_or_insert(IpAddr::from([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7]));
            }
            Ok(None) => return first_v6.ok_or_else(|| fail(format!("resolve {host}: no address"))),
            Err(ErrorCode::WouldBlock) => {
                if !wait_until(&ready, deadline) {
                    return Err(fail(format!("resolve {host} timed out")));
                }
            }
            Err(e) => return Err(fail(format!("resolve {host}: {e:?}"))),
        }
    }
}
