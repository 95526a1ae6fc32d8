//! One driver for the instance's shared Redis connections (the hub's
//! subscription connection, [`super::link`], and the command pipeline,
//! [`super::commands`]): it opens the socket, then runs a reader, a writer
//! and a timer until one of them ends the connection. What the bytes mean,
//! when a deadline is due and when the connection is no longer needed are
//! the core object's answers ([`Driven`]); the driver only moves them.

use super::{clock, net};
use crate::redis::target::RedisTarget;
use futures::future::{self, Either};
use std::pin::pin;
use std::task::{Poll, Waker};

/// A shared connection's core object, as its driver sees it.
pub trait Driven {
    /// Feeds bytes read from Redis and hands on what they resolved; an
    /// error ends the connection.
    fn read(&self, bytes: &[u8]) -> Result<(), String>;
    /// Bytes for Redis; `None` once nobody needs the connection (it
    /// closes); pending with `waker` kept until there is more.
    fn poll_write(&self, waker: &Waker) -> Poll<Option<Vec<u8>>>;
    /// The next deadline; `None` keeps `waker` until there is one.
    fn poll_deadline(&self, waker: &Waker) -> Option<u64>;
    /// A deadline passed; an error ends the connection.
    fn timeout(&self, now: u64) -> Result<(), String>;
}

/// Connects to `target` (by `open_by`) and drives `conn` on it until it
/// breaks (the error) or is no longer needed (`Ok`).
pub async fn drive(conn: &impl Driven, target: &RedisTarget, open_by: u64) -> Result<(), String> {
    let net::Conn {
        mut rx,
        mut tx,
        wire,
        socket: _socket,
        done: _done,
    } = net::Conn::open(target, open_by).await?;
    let reader = pin!(async {
        loop {
            conn.read(&net::read(&mut rx, &wire).await?)?;
        }
    });
    let writer = pin!(async {
        loop {
            let Some(plain) = future::poll_fn(|cx| conn.poll_write(cx.waker())).await else {
                return Ok(()); // nobody left: close
            };
            net::write(&mut tx, &wire, plain).await?;
        }
    });
    let timer = pin!(async {
        loop {
            let due = future::poll_fn(|cx| match conn.poll_deadline(cx.waker()) {
                Some(due) => Poll::Ready(due),
                None => Poll::Pending,
            })
            .await;
            clock::until(due).await;
            conn.timeout(clock::now())?;
        }
    });
    let io = future::select(reader, writer);
    match future::select(io, timer).await {
        Either::Left((Either::Left((r, _)) | Either::Right((r, _)), _)) => r,
        Either::Right((r, _)) => r,
    }
}
