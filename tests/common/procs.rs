//! Paths, log files, loopback ports and child processes shared by every
//! helper that starts a server.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn e2e_dir() -> PathBuf {
    crate_dir().join("target").join("e2e")
}

pub fn log_dir() -> PathBuf {
    let dir = e2e_dir().join("logs");
    fs::create_dir_all(&dir).expect("create target/e2e/logs");
    dir
}

/// A process-unique tag: used for log file names.
pub fn unique_tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[allow(unused_imports)]
pub use sse_gateway_testkit::child::die_with_parent;

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A loopback port nobody listens on right now, unique within this process.
/// Taken below the Linux ephemeral range so outgoing connections don't race
/// for it.
pub fn free_port() -> u16 {
    const LOW: u32 = 15_000;
    const SPAN: u32 = 17_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new((std::process::id() * 211) % SPAN));
    for _ in 0..SPAN {
        let port = (LOW + next.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Waits until the host `child` serves `port`: its log says it is serving
/// on that port (both `wasmtime serve` and `spin up` print "Serving ...
/// 127.0.0.1:PORT" once bound) and the port accepts. A connect alone is not
/// enough: while the host still compiles the component, another process
/// may hold the port (the host then exits with "in use" and is retried).
pub fn wait_for_port(
    port: u16,
    deadline: Instant,
    child: &mut Child,
    log: &Path,
) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let serving = format!("127.0.0.1:{port}");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        let ours = text
            .lines()
            .any(|l| l.contains("Serving") && l.contains(&serving));
        if ours && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("timed out waiting for the host to serve its port".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// Each test crate uses only some of the harness (dead_code covers fns, not re-exports).
#[allow(unused_imports)]
pub use sse_gateway_testkit::proc_stats::children;

/// Like [`kill_child`], and every descendant too: `spin up` runs the
/// component in a `spin trigger http` child that would outlive a SIGKILL of
/// its parent.
pub fn kill_tree(child: &mut Option<Child>) {
    let Some(c) = child.as_ref() else { return };
    let mut pending = vec![c.id()];
    let mut descendants = Vec::new();
    while let Some(pid) = pending.pop() {
        for kid in children(pid) {
            descendants.push(kid);
            pending.push(kid);
        }
    }
    kill_child(child);
    for pid in descendants {
        // SAFETY: plain kill(2) of a process id we just read from /proc.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}
