//! TCP (and TLS) to Redis over `wasi:sockets@0.3.0`: the opening
//! [`Dial`] plans (configured resolver, addresses in turn, TLS handshake),
//! and the socket's byte streams with their records sealed and opened by
//! the connection's [`Wire`]. What the bytes mean is the core's job.

use super::clock;
use crate::machine::READ_CHUNK;
use crate::redis::dial::{self, Dial, Step};
use crate::redis::failure;
use crate::redis::target::RedisTarget;
use crate::redis::tls::Wire;
use spin_sdk7::wasip3;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use wasip3::sockets::types::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
    TcpSocket,
};
use wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult, StreamWriter};
use wasip3::wit_stream;

/// How a socket's byte stream ended.
type Done = FutureReader<Result<(), ErrorCode>>;

/// One connection: what Redis sends (`rx`), what we send (`tx`) and the
/// records' protection (`wire`), shared by the connection's reader and
/// writer tasks.
pub struct Conn {
    pub rx: StreamReader<u8>,
    pub tx: StreamWriter<u8>,
    pub wire: Records,
    /// Kept (with the streams' completion futures) for the connection's life.
    pub socket: TcpSocket,
    pub done: (Done, Done),
}

/// The connection's [`Wire`], and what TLS answered on its own (alerts,
/// key updates) for the next write to carry first.
pub struct Records {
    wire: RefCell<Wire>,
    replies: RefCell<Vec<u8>>,
}

impl Records {
    /// The bytes to write for `plain`.
    pub fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut wire = self.wire.borrow_mut();
        if let Wire::Plain = *wire {
            return Ok(plain);
        }
        let mut out = std::mem::take(&mut *self.replies.borrow_mut());
        out.extend(wire.seal(&plain)?);
        Ok(out)
    }

    /// The plaintext in `bytes` read from the socket.
    pub fn open(&self, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut wire = self.wire.borrow_mut();
        if let Wire::Plain = *wire {
            return Ok(bytes);
        }
        let (plain, reply) = wire.open(&bytes);
        self.replies.borrow_mut().extend(reply);
        plain
    }
}

impl Conn {
    /// Opens a connection to `target` as [`Dial`] says (resolve, connect
    /// to each address in turn, TLS handshake), all within `deadline`
    /// (monotonic ns): each step gives up at it with a text naming it.
    pub async fn open(target: &RedisTarget, deadline: u64) -> Result<Conn, String> {
        let dns_id = wasip3::random::random::get_random_u64() as u16;
        let mut dial = Dial::new(target, dns_id);
        let mut conn: Option<Conn> = None;
        loop {
            match dial.step() {
                Step::Lookup(host) => match clock::before(deadline, lookup(&host)).await {
                    Some(Ok(found)) => dial.resolved(Ok(found)),
                    Some(Err(code)) => dial.resolved(Err(&code)),
                    None => dial.resolved(Err("timeout")),
                },
                Step::Connect(peer) => {
                    conn = None;
                    match clock::before(deadline, Conn::connect(peer)).await {
                        Some(Ok(c)) => {
                            conn = Some(c);
                            dial.connected();
                        }
                        Some(Err(why)) => dial.connect_failed(why),
                        None => dial.connect_failed(format!("connect to {peer} timed out")),
                    }
                }
                Step::Exchange(bytes) => dial.received(match conn.as_mut() {
                    Some(c) => c.exchange(bytes, deadline).await,
                    None => Err("not connected".into()),
                }),
                Step::Write(bytes) => {
                    if let Some(c) = conn.as_mut() {
                        let _ = c.tx.write_all(bytes).await;
                    }
                }
                Step::Open(wire) => {
                    let mut c = conn.ok_or("not connected")?;
                    c.wire.wire = RefCell::new(wire);
                    return Ok(c);
                }
                Step::Failed(why) => return Err(why),
            }
        }
    }

    async fn connect(peer: SocketAddr) -> Result<Conn, String> {
        let (family, address) = match peer.ip() {
            IpAddr::V4(v4) => (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: peer.port(),
                    address: v4.octets().into(),
                }),
            ),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                (
                    IpAddressFamily::Ipv6,
                    IpSocketAddress::Ipv6(Ipv6SocketAddress {
                        port: peer.port(),
                        flow_info: 0,
                        address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                        scope_id: 0,
                    }),
                )
            }
        };
        let socket = TcpSocket::create(family).map_err(|e| format!("socket: {}", wit_name(&e)))?;
        socket
            .connect(address)
            .await
            .map_err(|e| dial::connect_error(peer, &wit_name(&e)))?;
        let (rx, rx_done) = socket.receive();
        let (tx, tx_reader) = wit_stream::new::<u8>();
        let tx_done = socket.send(tx_reader);
        Ok(Conn {
            rx,
            tx,
            wire: Records {
                wire: RefCell::new(Wire::Plain),
                replies: RefCell::new(Vec::new()),
            },
            socket,
            done: (rx_done, tx_done),
        })
    }

    /// Writes `bytes` as they are, then reads what arrives by `deadline`.
    async fn exchange(&mut self, bytes: Vec<u8>, deadline: u64) -> Result<Vec<u8>, String> {
        if !self.tx.write_all(bytes).await.is_empty() {
            return Err("redis stopped taking writes".into());
        }
        let read = self.rx.read(Vec::with_capacity(READ_CHUNK));
        match clock::before(deadline, read).await {
            Some((StreamResult::Complete(_), bytes)) => Ok(bytes),
            Some(_) => Err("connection closed".into()),
            None => Err(failure::SILENT.into()),
        }
    }

    /// Writes `plain` (sealed when TLS).
    pub async fn write(&mut self, plain: Vec<u8>) -> Result<(), String> {
        write(&mut self.tx, &self.wire, plain).await
    }
}

/// The next plaintext from Redis (maybe empty while a TLS record is still
/// incomplete), or why the connection is over.
pub async fn read(rx: &mut StreamReader<u8>, wire: &Records) -> Result<Vec<u8>, String> {
    match rx.read(Vec::with_capacity(READ_CHUNK)).await {
        (StreamResult::Complete(_), bytes) => wire.open(bytes),
        (StreamResult::Dropped | StreamResult::Cancelled, _) => {
            Err("redis closed the connection".into())
        }
    }
}

/// The host's lookup (`wasi:sockets/ip-name-lookup`), in its order; an
/// error is its WIT name.
async fn lookup(host: &str) -> Result<Vec<IpAddr>, String> {
    let found = wasip3::sockets::ip_name_lookup::resolve_addresses(host.to_string())
        .await
        .map_err(|e| wit_name(&e))?;
    Ok(found
        .iter()
        .map(|a| match *a {
            IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
            IpAddress::Ipv6(s) => IpAddr::from([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7]),
        })
        .collect())
}

/// An error code's WIT name ([`dial::wit_name`]); the p3 bindings only
/// derive `Debug`.
fn wit_name(code: &impl std::fmt::Debug) -> String {
    dial::wit_name(&format!("{code:?}"))
}

/// Writes `plain` whole, sealed as the connection's records say.
pub async fn write(
    tx: &mut StreamWriter<u8>,
    wire: &Records,
    plain: Vec<u8>,
) -> Result<(), String> {
    if !tx.write_all(wire.seal(plain)?).await.is_empty() {
        return Err("redis stopped taking writes".into());
    }
    Ok(())
}
