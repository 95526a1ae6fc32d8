//! The `redis-server` the e2e tests and the benchmark start: which binary,
//! and the flags every one of them wants (loopback only, in the
//! foreground, no snapshots, its files in a directory of the caller's).
//! Persistence and limits are each caller's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `$REDIS_SERVER`, else `redis-server` on the `PATH`.
pub fn binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A `redis-server` on `127.0.0.1:port` writing its files under `dir`;
/// the caller adds its own flags and spawns it.
pub fn command(port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--dir",
    ])
    .arg(dir);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_listens_on_loopback_only_and_saves_nothing() {
        let cmd = command(6400, Path::new("/tmp/r"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
        assert_eq!(after("--port"), "6400");
        assert_eq!(after("--bind"), "127.0.0.1");
        assert_eq!(after("--save"), "");
        assert_eq!(after("--dir"), "/tmp/r");
    }
}
