//! Pumps a one-shot [`Command`] over `wasi:sockets`: connect where it says
//! (again after a Cluster redirect), write, read until it is done.

use super::net::Conn;
use crate::machine::Command;

/// Runs `cmd` to its outcome (blocking; one instance serves one request).
pub fn run(cmd: &mut Command) {
    let mut conn = None;
    while !cmd.done() {
        if let Some(target) = cmd.connect_to() {
            conn = None;
            match Conn::open(&target, cmd.deadline()) {
                Ok(c) => conn = Some(c),
                Err(e) => cmd.failed(&e.0),
            }
            continue;
        }
        let Some(c) = conn.as_mut() else {
            return cmd.failed("no connection");
        };
        let result = c
            .write(&cmd.transmit())
            .and_then(|()| c.read_until(cmd.deadline()));
        match result {
            Ok(bytes) => cmd.receive(&bytes),
            Err(e) => cmd.failed(&e.0),
        }
    }
    super::print(cmd.logs());
}

/// Runs `cmd` and returns it, for a caller that reads its outcome.
pub fn ran(mut cmd: Command) -> Command {
    run(&mut cmd);
    cmd
}
