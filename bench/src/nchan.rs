//! nginx with the nchan module: the native pub/sub server a user would
//! otherwise pick (issue 16), served beside the gateway in the same run.
//!
//! Subscribers open the gateway's own path (`/api/v1/events/executions/{id}`
//! is an nchan EventSource location keyed by `{id}`), so the stream client
//! is the same; events are the same bytes the gateway gets through Redis,
//! POSTed to `/pub/{id}` over one keep-alive connection (pipelined, a
//! reader thread taking the replies). nchan has no JWT, no ownership check
//! and no execution records: what it is measured on is holding streams and
//! delivering messages.

use crate::redis::{event, pace_limit, paced_writes, Payload, Published};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Debian paths (`nginx`, `libnginx-mod-nchan`).
pub const NGINX: &str = "/usr/sbin/nginx";
pub const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// nginx and the nchan module when both are installed, else why not.
pub fn find(nginx: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
    let nginx = nginx
        .map(Path::to_path_buf)
        .or_else(|| crate::procs::which("nginx"))
        .unwrap_or_else(|| NGINX.into());
    if !nginx.is_file() {
        return Err(format!(
            "no nginx at {} (apt-get install nginx libnginx-mod-nchan)",
            nginx.display()
        ));
    }
    let module = PathBuf::from(MODULE);
    if !module.is_file() {
        return Err(format!(
            "no nchan module at {} (apt-get install libnginx-mod-nchan)",
            module.display()
        ));
    }
    Ok((nginx, module))
}

/// `nginx.conf` for one worker in `dir` (pid file, logs and temp paths
/// inside it) listening on `addr`; messages in nchan's memory store, or in
/// Redis when `redis` is given (`nchan-redis`). Heartbeat comments every
/// `ping_s` seconds, as the gateway's; `max_conns` is the worker's file
/// limit. Its connection table is twice that: with 19,800 slots nginx ran
/// out ("worker_connections are not enough") at ~18,560 subscribers.
pub fn config(
    dir: &Path,
    module: &Path,
    addr: SocketAddr,
    redis: Option<SocketAddr>,
    ping_s: u64,
    max_conns: usize,
) -> String {
    let d = dir.display();
    let (upstream, pass) = match redis {
        Some(r) => (
            format!("  upstream bench_redis {{ nchan_redis_server redis://{r}; }}\n"),
            "      nchan_redis_pass bench_redis;\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "# Written by sse-bench for one run (see docs/PERFORMANCE.md).
load_module {module};
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {files};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {slots}; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 3600s;
{upstream}  server {{
    listen {addr} backlog=4096;
    location = /api/v1/events/health/ready {{ return 200 \"ok\\n\"; }}
    location ~ ^/api/v1/events/executions/([^/]+)$ {{
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message oldest;
      nchan_eventsource_ping_interval {ping_s};
{pass}    }}
    location ~ ^/pub/([^/]+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
{pass}    }}
  }}
}}
",
        module = module.display(),
        files = max_conns + 64,
        slots = max_conns * 2,
    )
}

/// Publishes `count` events round-robin over `ids` at `rate`/s by POST
/// (`receivers`: the sum of nchan's "active subscribers" replies).
pub fn publish(
    addr: SocketAddr,
    ids: &[String],
    payload: Payload,
    rate: f64,
    count: u64,
) -> io::Result<Published> {
    requests(addr, count, rate, |out, seq| {
        let id = &ids[(seq % ids.len() as u64) as usize];
        post(out, addr, id, &event(payload, id, seq));
    })
}

/// One status event into each channel before its subscribers open: what
/// a new subscriber gets first (`nchan_subscriber_first_message oldest`),
/// as the gateway's first event comes from the execution record.
pub fn prime(addr: SocketAddr, ids: &[String]) -> io::Result<()> {
    requests(addr, ids.len() as u64, f64::INFINITY, |out, seq| {
        let id = &ids[seq as usize];
        let body = format!(r#"{{"event_type":"status","execution_id":"{id}"}}"#);
        post(out, addr, id, body.as_bytes());
    })
    .map(drop)
}

/// Deletes the channels: nchan ends their subscribers (`:410 Gone`, then
/// the connection closes), as the gateway ends a stream on a terminal event.
pub fn delete(addr: SocketAddr, ids: &[String]) -> io::Result<()> {
    requests(addr, ids.len() as u64, f64::INFINITY, |out, seq| {
        let id = &ids[seq as usize];
        out.extend_from_slice(
            format!("DELETE /pub/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
    })
    .map(drop)
}

fn post(out: &mut Vec<u8>, addr: SocketAddr, id: &str, body: &[u8]) {
    out.extend_from_slice(
        format!(
            "POST /pub/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// `count` pipelined requests on one connection at `rate`/s; a thread reads
/// the replies (any status ≥ 500 is an error; 404 is a channel that was
/// already gone).
fn requests(
    addr: SocketAddr,
    count: u64,
    rate: f64,
    encode: impl FnMut(&mut Vec<u8>, u64),
) -> io::Result<Published> {
    let mut writer = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    writer.set_nodelay(true)?;
    let mut reader = writer.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_secs(30)))?;
    let replies = std::thread::spawn(move || -> io::Result<u64> {
        let mut parser = Replies::default();
        let mut buf = vec![0u8; 64 * 1024];
        while parser.done < count {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::other("nginx closed the publisher connection"));
            }
            parser.feed(&buf[..n])?;
        }
        Ok(parser.subscribers)
    });
    let mut result = Published::default();
    let sent = paced_writes(&mut writer, count, rate, &mut result, encode)?;
    result.commands = sent;
    if sent < count {
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = replies.join();
        return Err(io::Error::other(format!(
            "posted {sent} of {count} in {:?}",
            pace_limit(count, rate)
        )));
    }
    result.receivers = replies
        .join()
        .map_err(|_| io::Error::other("reply reader panicked"))??;
    Ok(result)
}

/// Incremental parser of nginx's replies (status line, headers with a
/// `Content-Length`, body).
#[derive(Default)]
struct Replies {
    buf: Vec<u8>,
    done: u64,
    subscribers: u64,
}

impl Replies {
    fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if self.buf.len() < end + 4 + len {
                return Ok(());
            }
            let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
            if status == 0 || status >= 500 {
                return Err(io::Error::other(format!(
                    "nchan publisher replied {status}: {body}"
                )));
            }
            self.subscribers += body
                .lines()
                .find_map(|l| l.strip_prefix("active subscribers:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            self.done += 1;
            self.buf.drain(..end + 4 + len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_anywhere() {
        let body = "queued messages: 1\r\nlast requested: 0 sec. ago\r\n\
                    active subscribers: 7\r\nlast message id: 1:0";
        let one = format!(
            "HTTP/1.1 202 Accepted\r\nServer: nginx\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let wire = format!("{one}{one}HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        for cut in 0..wire.len() {
            let mut r = Replies::default();
            r.feed(&wire.as_bytes()[..cut]).unwrap();
            r.feed(&wire.as_bytes()[cut..]).unwrap();
            assert_eq!((r.done, r.subscribers), (3, 14), "cut {cut}");
        }
    }

    #[test]
    fn server_error_is_an_error() {
        let mut r = Replies::default();
        assert!(r
            .feed(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
            .is_err());
    }
}
