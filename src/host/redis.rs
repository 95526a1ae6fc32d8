//! Reaching Redis: connections that follow Redis Cluster `MOVED`
//! redirects to the slot owner, and one-shot commands.

use super::clock;
use super::net::Conn;
use super::unavailable;
use crate::cluster;
use crate::config::Config;
use crate::error::ApiError;
use crate::resp::Value;
use crate::session::{Incoming, Session, Tag};

/// Redirects followed before giving up (a stable cluster needs one).
const MAX_REDIRECTS: usize = 3;

/// Opens a connection, sends what `make` queues and waits for the first
/// output. On Redis Cluster a `MOVED` reply reconnects to the named owner
/// (resolved and, with `rediss://`, verified by its own name) and sends the
/// same commands again.
pub fn connect(
    cfg: &Config,
    make: impl Fn() -> Session,
    deadline: u64,
) -> Result<(Conn, Vec<Incoming>), String> {
    let mut target = cfg.redis.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut conn = Conn::open(&target, make(), deadline).map_err(|e| e.0)?;
        let mut first = Vec::new();
        match conn.next_batch(&mut first, deadline) {
            Ok(()) => return Ok((conn, first)),
            Err(e) => match cfg
                .redis_cluster
                .then(|| cluster::parse_moved(&e.0))
                .flatten()
            {
                Some(moved) => {
                    if !moved.host.is_empty() {
                        target.host = moved.host;
                    }
                    target.port = moved.port;
                }
                None => return Err(e.0),
            },
        }
    }
    Err("too many cluster redirects".into())
}

/// Runs one command on a fresh connection (routed to the key's owner on a
/// cluster) and returns its reply; any trouble is a logged 503.
pub fn command(cfg: &Config, tag: Tag, args: &[Vec<u8>]) -> Result<Value, ApiError> {
    let deadline = clock::after_ms(cfg.redis_timeout_ms);
    let make = || {
        let mut session = Session::handshake(&cfg.redis);
        session.command_owned(tag, args);
        session
    };
    let (mut conn, mut batch) = connect(cfg, make, deadline).map_err(|e| unavailable(&e))?;
    loop {
        for item in batch.drain(..) {
            if let Incoming::Reply(t, v) = item {
                if t == tag {
                    return Ok(v);
                }
            }
        }
        conn.next_batch(&mut batch, deadline)
            .map_err(|e| unavailable(&e.0))?;
    }
}
