//! What a process costs, from Linux' `/proc`: resident memory, CPU time,
//! open files, for one process or a host and its descendants (`spin up`
//! serves from a `spin trigger http` child).

use std::fs;

/// `pid` and every descendant, `pid` first (from
/// `/proc/PID/task/*/children`).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let kids = children(all[i]);
        all.extend(kids);
        i += 1;
    }
    all
}

/// The direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let text = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// Resident set size of one process in KiB (`VmRSS`), 0 if unreadable.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// [`rss_kib`] of a process and its descendants.
pub fn tree_rss_kib(pid: u32) -> u64 {
    tree(pid).into_iter().map(rss_kib).sum()
}

/// `/proc/PID/stat` fields after the command name (field 3 is index 0).
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Clock ticks per second (`utime` and `stime` are in them).
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU time (user + system, including exited threads) of one process, in
/// microseconds; 0 if unreadable.
pub fn cpu_us(pid: u32) -> u64 {
    let tck = clk_tck();
    stat_fields(pid)
        .and_then(|f| {
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) * 1_000_000 / tck)
        })
        .unwrap_or(0)
}

/// [`cpu_us`] of a process and its descendants.
pub fn tree_cpu_us(pid: u32) -> u64 {
    tree(pid).into_iter().map(cpu_us).sum()
}

/// Open file descriptors of a process and its descendants.
pub fn tree_fd_count(pid: u32) -> usize {
    tree(pid)
        .into_iter()
        .map(|p| {
            fs::read_dir(format!("/proc/{p}/fd"))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_costs_memory_cpu_and_files_and_has_a_child_when_it_spawns_one() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        let spin_until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < spin_until {}
        assert!(cpu_us(me) > 0);
        assert!(tree_fd_count(me) >= 3);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(tree(me).contains(&child.id()), "{:?}", tree(me));
        assert!(tree_rss_kib(me) >= rss_kib(me));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(rss_kib(u32::MAX), 0);
    }
}
