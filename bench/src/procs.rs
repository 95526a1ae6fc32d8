//! Child processes (redis-server, wasmtime serve, spin, the native baseline)
//! and what the tool reads about them from /proc.
//!
//! Every child is registered so that a panic hook or a Ctrl-C handler can
//! kill it, is killed on drop, and gets `PR_SET_PDEATHSIG(SIGKILL)` so even
//! a `kill -9` of the tool leaves nothing running. Children must be spawned
//! from the main thread (the death signal follows the spawning thread).

pub use sse_gateway_testkit::proc_stats::{cpu_us, tree, tree_cpu_us, tree_fd_count, tree_rss_kib};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every registered child (panic hook, Ctrl-C, normal exit).
pub fn kill_all() {
    let pids = match CHILDREN.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for pid in pids {
        kill_tree(pid);
    }
}

/// SIGKILL `pid` and its descendants: `spin up` runs the component in a
/// `spin trigger http` child that outlives a killed parent.
fn kill_tree(pid: u32) {
    for p in tree(pid) {
        // SAFETY: plain syscall on a pid this process spawned or its child.
        unsafe {
            libc::kill(p as i32, libc::SIGKILL);
        }
    }
}

fn unregister(pid: u32) {
    if let Ok(mut g) = CHILDREN.lock() {
        g.retain(|p| *p != pid);
    }
}

/// A running child, killed when dropped.
pub struct Child {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    child: std::process::Child,
}

impl Child {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> io::Result<Child> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = File::create(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        sse_gateway_testkit::child::die_with_parent(&mut cmd);
        let child = cmd.spawn()?;
        let pid = child.id();
        if let Ok(mut g) = CHILDREN.lock() {
            g.push(pid);
        }
        Ok(Child {
            name: name.to_string(),
            pid,
            log: log.to_path_buf(),
            child,
        })
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// The last `max` bytes of the child's log, for error messages.
    pub fn log_tail(&self, max: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(max);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        kill_tree(self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.pid);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Raises the soft open-file limit to the hard limit; returns (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Waits until `addr` accepts TCP connections, or `timeout`.
pub fn wait_listening(
    addr: SocketAddr,
    timeout: Duration,
    child: &mut Child,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.exited() {
            return Err(format!(
                "{} exited ({status}) before listening on {addr}:\n{}",
                child.name,
                child.log_tail(4000)
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{} did not listen on {addr} within {:?}:\n{}",
        child.name,
        timeout,
        child.log_tail(4000)
    ))
}

/// A blocking `GET` that returns the status code (readiness checks).
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {text:?}")))
}

/// CPU time of a process tree's live threads in microseconds, from
/// `/proc/PID/task/TID/schedstat` (ns resolution; threads that exit drop
/// out, so use it for short windows only). Falls back to [`tree_cpu_us`].
pub fn cpu_us_fine(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .map(|p| schedstat_us(p).unwrap_or_else(|| cpu_us(p)))
        .sum()
}

fn schedstat_us(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()? / 1000;
    }
    Some(total)
}

/// One mapping of /proc/PID/smaps.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    /// The process of the tree it belongs to (0 in a grouped kind).
    #[serde(default)]
    pub pid: u32,
    pub start: u64,
    pub size_kib: u64,
    pub rss_kib: u64,
    pub name: String,
}

/// The mappings of a process tree (/proc/PID/smaps of each: `spin up`
/// serves from a child) with their resident size.
pub fn smaps(pid: u32) -> Vec<Mapping> {
    tree(pid).into_iter().flat_map(process_smaps).collect()
}

fn process_smaps(pid: u32) -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let name = parts.nth(4).unwrap_or("[anon]").to_string();
                out.push(Mapping {
                    pid,
                    start: a,
                    size_kib: (b - a) / 1024,
                    rss_kib: 0,
                    name,
                });
                continue;
            }
        }
        if first == "Rss:" {
            if let Some(m) = out.last_mut() {
                m.rss_kib = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    out
}

/// Resident growth between two snapshots, grouped by mapping kind (name
/// and size): the pooling allocator gives every instance mappings of the
/// same size (linear memory stack, data image, heap; fiber stack), so one
/// kind with `count` ≈ streams is one per-stream cost. Largest first; the
/// `name` of each entry ends with `×count`.
pub fn rss_growth(before: &[Mapping], after: &[Mapping], top: usize) -> Vec<Mapping> {
    let mut kinds: Vec<(String, u64, u64, u64)> = Vec::new();
    for m in after {
        let was = before
            .iter()
            .find(|b| (b.pid, b.start, b.size_kib) == (m.pid, m.start, m.size_kib))
            .map_or(0, |b| b.rss_kib);
        let grew = m.rss_kib.saturating_sub(was);
        if grew == 0 {
            continue;
        }
        match kinds
            .iter_mut()
            .find(|k| k.0 == m.name && k.1 == m.size_kib)
        {
            Some(k) => {
                k.2 += grew;
                k.3 += 1;
            }
            None => kinds.push((m.name.clone(), m.size_kib, grew, 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.2));
    let rest: u64 = kinds.iter().skip(top).map(|k| k.2).sum();
    let mut out: Vec<Mapping> = kinds
        .into_iter()
        .take(top)
        .map(|(name, size_kib, rss_kib, count)| Mapping {
            pid: 0,
            start: 0,
            size_kib,
            rss_kib,
            name: format!("{name} ×{count}"),
        })
        .collect();
    if rest > 0 {
        out.push(Mapping {
            pid: 0,
            start: 0,
            size_kib: 0,
            rss_kib: rest,
            name: "(other kinds)".into(),
        });
    }
    out
}

/// (Pss, private = Private_Clean + Private_Dirty) of a process tree in
/// KiB, from /proc/PID/smaps_rollup. Unlike VmRSS these count a page shared
/// by many mappings once: wasmtime maps the component's data image
/// copy-on-write into every instance, and VmRSS counts each mapping.
pub fn pss_private_kib(pid: u32) -> (u64, u64) {
    let mut pss = 0;
    let mut private = 0;
    for p in tree(pid) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let key = parts.next().unwrap_or("");
            let kib: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match key {
                "Pss:" => pss += kib,
                "Private_Clean:" | "Private_Dirty:" => private += kib,
                _ => {}
            }
        }
    }
    (pss, private)
}

/// The first line a command prints (versions).
pub fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            if t.trim().is_empty() {
                t = String::from_utf8_lossy(&o.stderr).into_owned();
            }
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

/// `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Local ports of the established TCP connections that a process tree
/// holds to `remote_port` on loopback (its Redis connections), from
/// /proc/PID/fd socket inodes and /proc/net/tcp{,6}: which `CLIENT LIST`
/// entries are this server's when several servers share one Redis.
pub fn tcp_ports_to(pid: u32, remote_port: u16) -> std::collections::HashSet<u16> {
    let mut inodes = std::collections::HashSet::new();
    for p in tree(pid) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in dir.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(n) = n.parse::<u64>() {
                        inodes.insert(n);
                    }
                }
            }
        }
    }
    let mut ports = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
            };
            let inode: u64 = f[9].parse().unwrap_or(0);
            if port(f[2]) == Some(remote_port) && inodes.contains(&inode) {
                if let Some(local) = port(f[1]) {
                    ports.insert(local);
                }
            }
        }
    }
    ports
}
