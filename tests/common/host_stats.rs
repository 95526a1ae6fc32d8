//! What the host process costs (from /proc) and what Redis still holds for
//! a user: for tests of memory, CPU and slot release.

use super::*;
use std::time::{Duration, Instant};

// Each test crate uses only some of the harness (dead_code covers fns, not re-exports).
#[allow(unused_imports)]
pub use sse_gateway_testkit::proc_stats::rss_kib;

/// CPU time `pid` has used so far (user + system).
pub fn cpu_time(pid: u32) -> Duration {
    Duration::from_micros(sse_gateway_testkit::proc_stats::cpu_us(pid))
}

/// The per-user stream slot set (`sse:streams:<user>`).
pub fn slot_key(user: &str) -> String {
    format!("sse:streams:{user}")
}

/// How many stream slots `user` holds.
pub fn slots_held(redis: &RedisServer, user: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(slot_key(user))
        .query(&mut redis.conn())
        .unwrap()
}

/// Waits until `user` holds no stream slot; panics after `timeout`.
pub fn expect_slots_released(redis: &RedisServer, user: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = slots_held(redis, user);
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ZCARD {} = {n} after {timeout:?}: a stream slot is still held",
            slot_key(user)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback TCP connection whose receive buffer is set to `rcvbuf`
/// bytes before connecting (so the window stays small): a browser that
/// stops reading then really stops the host's writes, instead of the
/// kernel taking megabytes for it.
pub fn connect_small_window(addr: std::net::SocketAddr, rcvbuf: i32) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("IPv4 loopback expected, got {addr}");
    };
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket()");
        let size = rcvbuf;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect to {addr}");
        std::net::TcpStream::from_raw_fd(fd)
    }
}
