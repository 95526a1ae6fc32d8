//! Child processes that cannot outlive the test or the benchmark that
//! started them.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Kill the child (SIGKILL) when the thread that spawned it dies: a test
/// thread that is killed or a run that is interrupted, even by `kill -9`,
/// leaves no redis-server or host behind.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
