//! TCP to Redis over `wasi:sockets@0.3.0`: resolve, connect, and the
//! socket's byte streams.

use crate::config::RedisTarget;
use spin_sdk7::wasip3;
use std::net::IpAddr;
use std::task::{Poll, Waker};
use wasip3::sockets::types::ErrorCode;
use wasip3::sockets::types::{
    IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress, TcpSocket,
};
use wasip3::wit_bindgen::{FutureReader, StreamReader, StreamWriter};
use wasip3::wit_stream;

/// How a socket's byte stream ended.
type Done = FutureReader<Result<(), ErrorCode>>;

/// One connection: what Redis sends (`rx`) and what we send (`tx`).
pub struct Conn {
    pub rx: StreamReader<u8>,
    pub tx: StreamWriter<u8>,
    /// Kept (with the streams' completion futures) for the connection's life.
    pub socket: TcpSocket,
    pub done: (Done, Done),
}

impl Conn {
    /// Connects to `target`.
    pub async fn open(target: &RedisTarget) -> Result<Conn, String> {
        let socket = connect(target).await?;
        let (rx, rx_done) = socket.receive();
        let (tx, tx_reader) = wit_stream::new::<u8>();
        let tx_done = socket.send(tx_reader);
        Ok(Conn {
            rx,
            tx,
            socket,
            done: (rx_done, tx_done),
        })
    }
}

async fn connect(target: &RedisTarget) -> Result<TcpSocket, String> {
    let ip = resolve(&target.host).await?;
    let (family, address) = match ip {
        IpAddr::V4(v4) => (
            IpAddressFamily::Ipv4,
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: target.port,
                address: v4.octets().into(),
            }),
        ),
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
    let socket = TcpSocket::create(family).map_err(|e| format!("socket: {e:?}"))?;
    socket
        .connect(address)
        .await
        .map_err(|e| format!("connect to {ip}:{}: {e:?}", target.port))?;
    Ok(socket)
}

async fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let found = wasip3::sockets::ip_name_lookup::resolve_addresses(host.to_string())
        .await
        .map_err(|e| format!("resolve {host}: {e:?}"))?;
    let ip = |a: &wasip3::sockets::types::IpAddress| match *a {
        wasip3::sockets::types::IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
        wasip3::sockets::types::IpAddress::Ipv6(s) => {
            IpAddr::from([s.0, s.1, s.2, s.3, s.4, s.5, s.6, s.7])
        }
    };
    found
        .iter()
        .map(ip)
        .find(IpAddr::is_ipv4)
        .or_else(|| found.first().map(ip))
        .ok_or_else(|| format!("resolve {host}: no address"))
}

/// Writes what `next` hands out until it says nobody is left (`None`, then
/// the connection closes); `next` keeps the waker for when it has more.
/// The writer task of the instance's hub and command connections.
pub async fn write_until_idle(
    tx: &mut StreamWriter<u8>,
    mut next: impl FnMut(&Waker) -> Poll<Option<Vec<u8>>>,
) -> Result<(), String> {
    loop {
        let Some(bytes) = std::future::poll_fn(|cx| next(cx.waker())).await else {
            return Ok(()); // nobody left: close
        };
        if !tx.write_all(bytes).await.is_empty() {
            return Err("redis stopped taking writes".into());
        }
    }
}
