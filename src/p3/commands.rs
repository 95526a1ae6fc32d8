//! Commands to Redis from the p3 shell: the instance's shared command
//! connection (the core [`Pipeline`]) that every stream machine's
//! [`Run`]s go out on, and one-shot [`Command`]s (publish, readiness)
//! on a connection of their own.
//!
//! The first request opens the shared connection and runs its reader and
//! writer as tasks; later ones are queued on it. A stream's answers wait in
//! its mailbox until its pump takes them. When the connection breaks (or
//! its oldest command is overdue) every waiting command fails with a 503
//! and the next request opens a fresh connection; it closes when nothing
//! is waiting and no stream is registered.

use super::driver::{self, Driven};
use super::{clock, log, net, print};
use crate::config::Config;
use crate::machine::command::Io;
use crate::machine::{Command, Run};
use crate::redis::dial;
use crate::redis::failure;
use crate::redis::pipeline::{Options, Outcome, Pipeline};
use crate::redis::resp::Value;
use crate::redis::session::Tag;
use crate::redis::target::RedisTarget;
use futures::future;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

/// A stream's key on the shared connection.
pub type StreamId = u64;

#[derive(Default)]
struct Mailbox {
    answers: Vec<(Tag, Result<Value, String>)>,
    waker: Option<Waker>,
}

struct CommandConnection {
    pipeline: RefCell<Pipeline<StreamId>>,
    options: Options,
    writer: RefCell<Option<Waker>>,
    /// The watchdog, idle while nothing is waiting (so an idle instance
    /// uses no CPU).
    watchdog: RefCell<Option<Waker>>,
    dead: Cell<bool>,
}

thread_local! {
    /// The open command connection per node (one off Cluster).
    static CURRENT: RefCell<HashMap<(String, u16), Rc<CommandConnection>>> = RefCell::new(HashMap::new());
    static MAILBOXES: RefCell<HashMap<StreamId, Mailbox>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<StreamId> = const { Cell::new(1) };
    /// Command connections open (one per node).
    static OPEN: Cell<usize> = const { Cell::new(0) };
}

/// Command connections open in this instance.
pub fn open_connections() -> usize {
    OPEN.get()
}

/// A stream's place on the shared command connection; dropping it drops
/// answers still to come.
pub struct Client {
    id: StreamId,
    /// Its user's turn among history pages ([`crate::redis::pipeline::owner_of`]).
    owner: u64,
    /// The instance's configuration: its Redis node and the connection's
    /// options, read only when a connection opens.
    cfg: Arc<Config>,
}

impl Client {
    pub fn new(cfg: Arc<Config>, owner: u64) -> Client {
        let id = NEXT_ID.get();
        NEXT_ID.set(id + 1);
        MAILBOXES.with_borrow_mut(|m| m.insert(id, Mailbox::default()));
        Client { id, owner, cfg }
    }

    /// Queues the machine's commands on the shared connection.
    pub fn send(&self, runs: Vec<Run>) {
        if runs.is_empty() {
            return;
        }
        let cfg = &self.cfg;
        let shared = connection(&cfg.redis, || Options {
            target: cfg.redis.clone(),
            cluster: cfg.redis_cluster,
            timeout_ms: cfg.redis_timeout_ms,
            entry_bytes: cfg.stream.entry_bytes,
        });
        let now = clock::now();
        for r in runs {
            shared
                .pipeline
                .borrow_mut()
                .send(self.id, self.owner, r.tag, r.args, now);
        }
        shared.wake_writer();
    }

    /// Resolves with the answers that arrived (at least one).
    pub async fn answers(&self) -> Vec<(Tag, Result<Value, String>)> {
        future::poll_fn(|cx| {
            MAILBOXES.with_borrow_mut(|boxes| {
                let m = boxes.entry(self.id).or_default();
                if m.answers.is_empty() {
                    m.waker = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(std::mem::take(&mut m.answers))
                }
            })
        })
        .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let last = MAILBOXES.with_borrow_mut(|m| {
            m.remove(&self.id);
            m.is_empty()
        });
        // The last stream left: each connection's writer looks again and
        // closes it once nothing is waiting, so the instance has no task
        // left and the host can drop it (and its memory).
        if last {
            let open: Vec<_> = CURRENT.with_borrow(|c| c.values().cloned().collect());
            for s in open {
                s.wake_writer();
            }
        }
    }
}

/// The open command connection to `node`, opened with `options` (whose
/// target is `node`) if there is none.
fn connection(node: &RedisTarget, options: impl FnOnce() -> Options) -> Rc<CommandConnection> {
    let node = (node.host.clone(), node.port);
    CURRENT.with_borrow_mut(|current| match current.get(&node) {
        Some(s) if !s.dead.get() => s.clone(),
        _ => {
            let options = options();
            let s = Rc::new(CommandConnection {
                pipeline: RefCell::new(Pipeline::new(&options)),
                options,
                writer: RefCell::new(None),
                watchdog: RefCell::new(None),
                dead: Cell::new(false),
            });
            current.insert(node, s.clone());
            OPEN.set(OPEN.get() + 1);
            super::wit_bindgen_spawn(drive(s.clone()));
            s
        }
    })
}

impl CommandConnection {
    /// Something was queued: the writer sends it, the watchdog times it.
    fn wake_writer(&self) {
        let writer = self.writer.borrow_mut().take();
        let watchdog = self.watchdog.borrow_mut().take();
        for w in writer.into_iter().chain(watchdog) {
            w.wake();
        }
    }

    /// Cluster: commands `MOVED` elsewhere go out on their owner's connection.
    fn redirect(&self) {
        for r in self.pipeline.borrow_mut().take_redirects() {
            let mut node = self.options.clone();
            r.to.redirect(&mut node.target);
            let owner = connection(&node.target, || node.clone());
            owner.pipeline.borrow_mut().resend(r, clock::now());
            owner.wake_writer();
        }
    }
}

fn deliver(answers: Vec<Outcome<StreamId>>) {
    MAILBOXES.with_borrow_mut(|boxes| {
        for (id, tag, outcome) in answers {
            // A stream that has ended no longer listens (its release).
            if let Some(m) = boxes.get_mut(&id) {
                m.answers.push((tag, outcome));
                if let Some(w) = m.waker.take() {
                    w.wake();
                }
            }
        }
    });
}

async fn drive(shared: Rc<CommandConnection>) {
    let outcome = driver::drive(
        &*shared,
        &shared.options.target,
        dial::shared_open_deadline(clock::now(), shared.options.timeout_ms),
    )
    .await;
    shared.dead.set(true);
    shared.writer.borrow_mut().take();
    shared.watchdog.borrow_mut().take();
    CURRENT.with_borrow_mut(|current| {
        current.retain(|_, c| !Rc::ptr_eq(c, &shared));
    });
    OPEN.set(OPEN.get().saturating_sub(1));
    let detail = match outcome {
        Ok(()) => "closed".to_string(),
        Err(detail) => {
            log(
                "redis_command_connection_lost",
                &[("detail", detail.as_str().into())],
            );
            detail
        }
    };
    // Pages that never went out wait for the next connection: only what
    // was in flight fails with this one.
    let unsent = shared.pipeline.borrow_mut().take_unsent();
    let failed = shared.pipeline.borrow_mut().failed(&detail);
    print(shared.pipeline.borrow_mut().logs());
    deliver(failed);
    if !unsent.is_empty() {
        let next = connection(&shared.options.target, || shared.options.clone());
        next.pipeline.borrow_mut().adopt(unsent, clock::now());
        next.wake_writer();
    }
}

impl Driven for CommandConnection {
    fn read(&self, bytes: &[u8]) -> Result<(), String> {
        let mut answers = Vec::new();
        let fed = self
            .pipeline
            .borrow_mut()
            .receive(bytes, clock::now(), &mut answers);
        // A page in turn was let out: the writer sends it; or the last
        // answer came and no stream is left: the writer closes.
        let wake = {
            let p = self.pipeline.borrow();
            p.has_outgoing() || (p.waiting() == 0 && MAILBOXES.with_borrow(|m| m.is_empty()))
        };
        if wake {
            self.wake_writer();
        }
        print(self.pipeline.borrow_mut().logs());
        self.redirect();
        deliver(answers);
        fed.map_err(|e| failure::protocol(&e))
    }

    /// The pipeline's bytes; closed once nothing waits and no stream is
    /// left to ask.
    fn poll_write(&self, waker: &Waker) -> Poll<Option<Vec<u8>>> {
        let mut p = self.pipeline.borrow_mut();
        let out = p.take_outgoing();
        if !out.is_empty() {
            return Poll::Ready(Some(out));
        }
        if p.waiting() == 0 && MAILBOXES.with_borrow(|m| m.is_empty()) {
            return Poll::Ready(None);
        }
        *self.writer.borrow_mut() = Some(waker.clone());
        Poll::Pending
    }

    /// The overdue deadline while a command waits; none (so no timer, and
    /// no CPU on an idle instance) otherwise.
    fn poll_deadline(&self, waker: &Waker) -> Option<u64> {
        let due = self.pipeline.borrow().poll_timeout();
        if due.is_none() {
            *self.watchdog.borrow_mut() = Some(waker.clone());
        }
        due
    }

    fn timeout(&self, now: u64) -> Result<(), String> {
        Ok(self.pipeline.borrow().handle_timeout(now)?)
    }
}

/// Runs a one-shot `cmd` on a connection of its own to its outcome.
async fn run_command(cmd: &mut Command) {
    let mut conn: Option<net::Conn> = None;
    loop {
        match cmd.next_io() {
            Io::Done => return,
            Io::Connect(target, by) => {
                conn = None;
                match net::Conn::open(&target, by).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => cmd.failed(&e),
                }
            }
            Io::Write(bytes) => match conn.as_mut() {
                Some(c) => c.write(bytes).await.unwrap_or_else(|e| cmd.failed(&e)),
                None => cmd.failed("no connection"),
            },
            Io::Read(by) => match conn.as_mut() {
                Some(c) => match clock::before(by, net::read(&mut c.rx, &c.wire)).await {
                    Some(Ok(bytes)) => cmd.receive(&bytes),
                    Some(Err(e)) => cmd.failed(&e),
                    None => cmd.failed(failure::SILENT),
                },
                None => cmd.failed("no connection"),
            },
        }
    }
}

/// Runs `cmd` and reads its reply with `read`; the log lines are printed
/// after the read, so one the read adds (a reply of the wrong type) is too.
pub async fn reply<T>(mut cmd: Command, read: impl FnOnce(&mut Command) -> T) -> T {
    run_command(&mut cmd).await;
    let value = read(&mut cmd);
    super::print(cmd.logs());
    value
}
