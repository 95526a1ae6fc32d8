//! A machine's Redis connection over `wasi:sockets` ([`Link`]), and a
//! one-shot [`Command`] run to its outcome by doing what
//! [`Command::next_io`] says.

use super::net::Conn;
use super::{clock, print};
use crate::machine::command::Io;
use crate::machine::own::OwnConnection;
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
    pub fn connect_and_transmit(&mut self, m: &mut OwnConnection) {
        while let Some(target) = m.poll_connect() {
            self.ready = None;
            self.conn = None;
            match Conn::open(&target, m.connect_deadline(clock::now())) {
                Ok(c) => {
                    self.ready = Some(c.readable());
                    self.conn = Some(c);
                }
                Err(e) => m.handle_redis_failure(&e, clock::now()),
            }
        }
        let bytes = m.poll_transmit();
        if !bytes.is_empty() {
            if let Some(Err(e)) = self.conn.as_mut().map(|c| c.write(&bytes)) {
                m.handle_redis_failure(&e, clock::now());
            }
        }
    }
}

/// Runs `cmd` to its outcome (blocking; one instance serves one request).
/// Its log lines are the caller's to print, once it has read the reply.
pub fn run(cmd: &mut Command) {
    let mut conn: Option<Conn> = None;
    loop {
        match cmd.next_io() {
            Io::Done => return,
            Io::Connect(target, by) => {
                conn = None;
                match Conn::open(&target, by) {
                    Ok(c) => conn = Some(c),
                    Err(e) => cmd.failed(&e),
                }
            }
            Io::Write(bytes) => match conn.as_mut().map(|c| c.write(&bytes)) {
                Some(Ok(())) => {}
                Some(Err(e)) => cmd.failed(&e),
                None => cmd.failed("no connection"),
            },
            // The read's own deadline error is `failure::SILENT`.
            Io::Read(by) => match conn.as_mut().map(|c| c.read_until(by)) {
                Some(Ok(bytes)) => cmd.receive(&bytes),
                Some(Err(e)) => cmd.failed(&e),
                None => cmd.failed("no connection"),
            },
        }
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
