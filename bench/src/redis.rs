//! A blocking Redis client for setup (execution records) and the publisher
//! thread, on the gateway's own RESP encoder and decoder (`sse_gateway::redis::resp`):
//! one parser in the project, and the load tool's replies are plain RESP2.

use crate::stats::now_ns;
use sse_gateway::redis::resp::{encode_command, Decoder, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest reply the load tool reads: replies are counts and `OK`s.
const MAX_REPLY_BYTES: usize = 1 << 20;

pub struct Redis {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    decoder: Decoder,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Redis {
    pub fn connect(addr: SocketAddr) -> io::Result<Redis> {
        Redis::connect_with_limit(addr, MAX_REPLY_BYTES)
    }

    /// As [`Redis::connect`], reading replies up to `max_reply` bytes.
    pub fn connect_with_limit(addr: SocketAddr, max_reply: usize) -> io::Result<Redis> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Redis {
            stream,
            decoder: Decoder::new(max_reply),
        })
    }

    /// Sends every command as one pipeline and returns the replies in order.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Value>> {
        let mut out = Vec::new();
        for cmd in cmds {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            encode_command(&mut out, &args);
        }
        self.stream.write_all(&out)?;
        let mut replies = Vec::with_capacity(cmds.len());
        self.read_replies(cmds.len(), &mut replies)?;
        Ok(replies)
    }

    fn read_replies(&mut self, n: usize, into: &mut Vec<Value>) -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        let want = into.len() + n;
        while into.len() < want {
            if let Some(value) = self.decoder.next().map_err(other)? {
                into.push(value);
                continue;
            }
            let got = self.stream.read(&mut chunk)?;
            if got == 0 {
                return Err(other("redis closed the connection"));
            }
            self.decoder.feed(&chunk[..got]);
        }
        Ok(())
    }
}

/// Creates the execution records `exec:{id}` (owner `user`, status running).
pub fn create_records(addr: SocketAddr, records: &[(String, String)]) -> io::Result<()> {
    let mut r = Redis::connect(addr)?;
    for batch in records.chunks(1000) {
        let cmds: Vec<Vec<Vec<u8>>> = batch
            .iter()
            .map(|(id, user)| {
                [
                    "HSET",
                    &format!("exec:{id}"),
                    "user_id",
                    user,
                    "status",
                    "running",
                    "updated_at",
                    "2025-01-01T00:00:00Z",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect()
            })
            .collect();
        for v in r.pipeline(&cmds)? {
            if let Value::Error(e) = v {
                return Err(other(e));
            }
        }
    }
    Ok(())
}

/// Client connections Redis has from the local `ports` (one server's, see
/// `procs::tcp_ports_to`): (all, those holding a subscription), from
/// `CLIENT LIST`.
pub fn clients(
    addr: SocketAddr,
    ports: &std::collections::HashSet<u16>,
) -> io::Result<(usize, usize)> {
    // ~300 bytes a client: 20,000 streams of p2 builds are ~6 MB.
    let mut r = Redis::connect_with_limit(addr, 64 << 20)?;
    let cmd = |args: &[&str]| args.iter().map(|a| a.as_bytes().to_vec()).collect();
    let replies = r.pipeline(&[cmd(&["CLIENT", "ID"]), cmd(&["CLIENT", "LIST"])])?;
    let me = match replies.first() {
        Some(Value::Int(id)) => format!("id={id} "),
        other => return Err(other_reply(other)),
    };
    let list = match replies.get(1) {
        Some(Value::Bulk(b)) => String::from_utf8_lossy(b).into_owned(),
        other => return Err(other_reply(other)),
    };
    let (mut all, mut subs) = (0, 0);
    let from_ports = |line: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("addr="))
            .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok())
            .is_some_and(|p| ports.contains(&p))
    };
    for line in list
        .lines()
        .filter(|l| !l.starts_with(&me) && from_ports(l))
    {
        all += 1;
        let held = ["sub=", "psub=", "ssub="].iter().any(|k| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .is_some_and(|v| v != "0")
        });
        subs += usize::from(held);
    }
    Ok((all, subs))
}

/// Commands Redis has run since it started, those inside scripts included
/// (`INFO commandstats`, every command's `calls=` summed; `INFO` itself
/// left out, so reading it twice measures only the others).
pub fn command_calls(addr: SocketAddr) -> io::Result<u64> {
    let mut r = Redis::connect(addr)?;
    let info = vec![b"INFO".to_vec(), b"commandstats".to_vec()];
    let text = match r.pipeline(&[info])?.first() {
        Some(Value::Bulk(b)) => String::from_utf8_lossy(b).into_owned(),
        other => return Err(other_reply(other)),
    };
    Ok(text
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

fn other_reply(v: Option<&Value>) -> io::Error {
    other(format!("unexpected reply {v:?}"))
}

/// What a publisher run did.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// PUBLISH commands sent.
    pub commands: u64,
    /// Sum of PUBLISH replies: deliveries Redis made to subscribers.
    pub receivers: u64,
    /// `now_ns` of the first and last write.
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Which payload to publish.
#[derive(Debug, Clone, Copy)]
pub enum Payload {
    /// A non-terminal execution event carrying `"ts"` (the send time).
    Live,
    /// `result_stored`: ends an execution stream.
    Terminal,
    /// A `Live` event padded to this many bytes (a `"pad"` field).
    Padded(usize),
}

/// The body of event `seq` on execution `id` (the same bytes whether it
/// goes through Redis to the gateway or by HTTP POST to nchan).
pub fn event(payload: Payload, id: &str, seq: u64) -> Vec<u8> {
    match payload {
        Payload::Live => format!(
            r#"{{"event_type":"pod_running","execution_id":"{id}","seq":{seq},"ts":{}}}"#,
            now_ns()
        ),
        Payload::Terminal => {
            format!(r#"{{"event_type":"result_stored","execution_id":"{id}","seq":{seq}}}"#)
        }
        Payload::Padded(bytes) => {
            let mut e = event(Payload::Live, id, seq);
            // `}` out, `,"pad":"` + x… + `"}` in: 9 bytes besides the x's.
            let pad = bytes.saturating_sub(e.len() + 9);
            e.pop();
            e.extend_from_slice(br#","pad":""#);
            e.resize(e.len() + pad, b'x');
            e.extend_from_slice(br#""}"#);
            return e;
        }
    }
    .into_bytes()
}

/// How a burst reaches Redis: plain `PUBLISH`, as the Python producers
/// do, or the gateway's history publish script (`XADD` + `PUBLISH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Publish,
    Script,
}

/// Publishes `count` events of `payload` on execution `id` at once: every
/// command in one pipeline (one write), then every reply read.
/// `receivers` sums the `PUBLISH` replies (the script's are entry ids).
pub fn burst(
    addr: SocketAddr,
    id: &str,
    payload: Payload,
    count: u64,
    via: Via,
) -> io::Result<Published> {
    use sse_gateway::config::HistoryLimits;
    use sse_gateway::rules::history;
    let channel = format!("sse:exec:{id}");
    let key = history::key("history:", &channel);
    let limits = HistoryLimits {
        max_len: 1000,
        ttl_seconds: 3600,
    };
    let cmds: Vec<Vec<Vec<u8>>> = (0..count)
        .map(|seq| {
            let e = event(payload, id, seq);
            match via {
                Via::Publish => vec![b"PUBLISH".to_vec(), channel.clone().into_bytes(), e],
                Via::Script => {
                    let text = String::from_utf8_lossy(&e);
                    let cap = sse_gateway::config::MAX_EVENT_BYTES_LIMIT;
                    history::publish_command(&key, &channel, &text, limits, false, cap)
                }
            }
        })
        .collect();
    let mut r = Redis::connect(addr)?;
    let mut result = Published {
        first_ns: now_ns(),
        ..Published::default()
    };
    let replies = r.pipeline(&cmds)?;
    result.last_ns = now_ns();
    for v in replies {
        match v {
            Value::Int(n) => result.receivers += n.max(0) as u64,
            Value::Error(e) => return Err(other(e)),
            _ => {}
        }
        result.commands += 1;
    }
    Ok(result)
}

/// Wall-time bound of a paced run: `count / rate + 30 s` (60 s at once).
pub fn pace_limit(count: u64, rate: f64) -> Duration {
    if rate.is_finite() {
        Duration::from_secs_f64(count as f64 / rate + 30.0)
    } else {
        Duration::from_secs(60)
    }
}

/// Writes `count` requests to `writer` at `rate` per second
/// (`f64::INFINITY`: as fast as the socket takes them), at most 10,000 per
/// write, `encode(out, seq)` appending request `seq`; bounded by
/// [`pace_limit`]. Records the first and last write times in `result` and
/// returns how many were sent (short of `count` only on the time limit).
pub fn paced_writes(
    writer: &mut TcpStream,
    count: u64,
    rate: f64,
    result: &mut Published,
    mut encode: impl FnMut(&mut Vec<u8>, u64),
) -> io::Result<u64> {
    let started = Instant::now();
    let limit = pace_limit(count, rate);
    let mut sent = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    while sent < count && started.elapsed() < limit {
        let due = if rate.is_finite() {
            ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(count)
        } else {
            count
        };
        // At most 10,000 commands per write keep the pipeline bounded.
        let upto = due.min(sent + 10_000);
        out.clear();
        for seq in sent..upto {
            encode(&mut out, seq);
        }
        if upto > sent {
            let now = now_ns();
            if result.first_ns == 0 {
                result.first_ns = now;
            }
            writer.write_all(&out)?;
            result.last_ns = now_ns();
            sent = upto;
        }
        if sent < due {
            continue;
        }
        if rate.is_finite() && sent < count {
            // Sleep to the next event's due time, at most 1 ms.
            let next = Duration::from_secs_f64(sent as f64 / rate);
            let wait = next.saturating_sub(started.elapsed());
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
    }
    Ok(sent)
}

/// Publishes `count` events round-robin over execution `ids` at `rate` per
/// second (`f64::INFINITY`: as one pipeline), bounded by `count`, and by
/// `count / rate + 30 s` of wall time. Writes and reply reads run on two
/// threads so a slow reply never delays a send.
pub fn publish(
    addr: SocketAddr,
    ids: &[String],
    payload: Payload,
    rate: f64,
    count: u64,
) -> io::Result<Published> {
    let conn = Redis::connect(addr)?;
    let mut writer = conn.stream.try_clone()?;
    let mut reader = conn;
    let replies = std::thread::spawn(move || -> io::Result<u64> {
        let mut sum = 0;
        let mut got = Vec::with_capacity(1024);
        let mut left = count as usize;
        while left > 0 {
            let n = left.min(1024);
            got.clear();
            reader.read_replies(n, &mut got)?;
            sum += got
                .iter()
                .map(|f| match f {
                    Value::Int(n) => *n,
                    _ => 0,
                })
                .sum::<i64>() as u64;
            left -= n;
        }
        Ok(sum)
    });
    let mut result = Published::default();
    let sent = paced_writes(&mut writer, count, rate, &mut result, |out, seq| {
        let id = &ids[(seq % ids.len() as u64) as usize];
        let channel = format!("sse:exec:{id}");
        encode_command(
            out,
            &[b"PUBLISH", channel.as_bytes(), &event(payload, id, seq)],
        );
    })?;
    let limit = pace_limit(count, rate);
    result.commands = sent;
    if sent < count {
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = replies.join();
        return Err(other(format!("published {sent} of {count} in {limit:?}")));
    }
    result.receivers = replies
        .join()
        .map_err(|_| other("reply reader panicked"))??;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_events_have_the_size_asked_and_stay_json() {
        for bytes in [2000, 20_000] {
            let e = event(Payload::Padded(bytes), "exec-1", 7);
            assert_eq!(e.len(), bytes);
            let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
            assert_eq!(v["seq"], 7);
            assert!(v["ts"].is_u64());
        }
        // Smaller than the event itself: the event, with an empty pad.
        let e = event(Payload::Padded(10), "exec-1", 7);
        assert!(serde_json::from_slice::<serde_json::Value>(&e).is_ok());
    }
}
