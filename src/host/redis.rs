//! A machine's Redis connection over `wasi:sockets` ([`Link`]), and a
//! one-shot [`Command`] pumped to its outcome: connect where it says (again
//! after a Cluster redirect), write, read until it is done.

use super::net::Conn;
use super::{clock, print};
use crate::dial::Wired;
use crate::machine::Command;
use wasi::io::poll::Pollable;

/// A machine's Redis connection and its readiness pollable (subscribed
/// once per connection: re-subscribing every turn costs two host calls per
/// event).
#[derive(Default)]
pub struct Link {
    // Field order is drop order: the pollable is a child of the stream.
    pub ready: Option<Pollable>,
    pub conn: Option<Conn>,
}

impl Link {
    /// (Re)connects where the machine asks and writes what it queued.
    pub fn connect_and_transmit(&mut self, m: &mut impl Wired) {
        while let Some(target) = m.connect_to() {
            self.ready = None;
            self.conn = None;
            match Conn::open(&target, m.connect_deadline(clock::now())) {
                Ok(c) => {
                    self.ready = Some(c.readable());
                    self.conn = Some(c);
                }
                Err(e) => m.link_failed(&e, clock::now()),
            }
        }
        let bytes = m.transmit();
        if !bytes.is_empty() {
            if let Some(Err(e)) = self.conn.as_mut().map(|c| c.write(&bytes)) {
                m.link_failed(&e, clock::now());
            }
        }
    }
}

/// Runs `cmd` to its outcome (blocking; one instance serves one request).
/// Its log lines are the caller's to print, once it has read the reply.
pub fn run(cmd: &mut Command) {
    let mut link = Link::default();
    link.connect_and_transmit(cmd);
    while !cmd.done() {
        match link.conn.as_mut().map(|c| c.read_until(cmd.deadline())) {
            Some(Ok(bytes)) => cmd.receive(&bytes),
            Some(Err(e)) => cmd.failed(&e),
            None => cmd.failed("no connection"),
        }
        link.connect_and_transmit(cmd);
    }
}

/// Runs `cmd` and reads its reply with `read`; the log lines are printed
/// after the read, so one the read adds (a reply of the wrong type) is too.
pub fn reply<T>(mut cmd: Command, read: impl FnOnce(&mut Command) -> T) -> T {
    run(&mut cmd);
    let value = read(&mut cmd);
    print(cmd.logs());
    value
}
