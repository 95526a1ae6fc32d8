//! The instance's shared Redis subscription connection: one TCP connection
//! (`wasi:sockets@0.3.0`) driving the core [`Hub`] for every stream the
//! instance serves.
//!
//! The first stream that needs it opens it and runs its reader, writer and
//! pinger as tasks; later streams only join the hub. Each stream holds a
//! [`Subscription`] whose drop leaves the hub, so a channel is released on
//! every path out of a stream. When the last subscriber has left the
//! connection closes; when it breaks, every stream is told and a fresh
//! connection serves the next stream.
//!
//! Streams run in other component-model tasks than the connection, so
//! wake-ups cross tasks (wit-bindgen's `inter-task-wakeup`).

use super::driver::{self, Driven};
use super::{clock, log, print};
use crate::redis::dial;
use crate::redis::failure;
use crate::redis::hub::{End, Hub, Notice, Payload, SubId};
use crate::redis::target::RedisTarget;
use futures::future;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Mailbox {
    waker: Option<Waker>,
    live: bool,
    ready: bool,
    ended: Option<End>,
}

struct HubConnection {
    hub: RefCell<Hub>,
    mailboxes: RefCell<HashMap<SubId, Mailbox>>,
    writer: RefCell<Option<Waker>>,
    dead: Cell<bool>,
    /// Why the connection ended, for each stream's own log line.
    lost: RefCell<String>,
}

thread_local! {
    /// The connection new streams join, per node (one off Cluster; replaced
    /// once it has died).
    static CURRENT: RefCell<HashMap<(String, u16), Rc<HubConnection>>> = RefCell::new(HashMap::new());
    /// Connections opened by this instance that are still open.
    static OPEN: Cell<usize> = const { Cell::new(0) };
    /// Streams subscribed in this instance.
    static STREAMS: Cell<usize> = const { Cell::new(0) };
}

/// (streams subscribed, subscription connections open) in this instance.
pub fn stats() -> (usize, usize) {
    (STREAMS.get(), OPEN.get())
}

/// One stream's place on the shared connection. Dropping it leaves.
pub struct Subscription {
    link: Rc<HubConnection>,
    id: SubId,
}

/// Subscribes to `channel` on the instance's connection, opening it first
/// when there is none. Not live yet: await [`Subscription::live`].
/// `timeout_ms` bounds the connection's opening ([`dial::shared_open_deadline`]).
/// `renewal`: the instance lease's renewal, sent instead of the liveness
/// `PING` ([`Hub::renew_with`]); asked for only when a connection opens.
pub fn subscribe(
    target: &RedisTarget,
    sharded: bool,
    ping_ns: u64,
    renewal: impl FnOnce() -> Option<Vec<Vec<u8>>>,
    timeout_ms: u64,
    channel: &[u8],
) -> Subscription {
    let now = clock::now();
    let node = (target.host.clone(), target.port);
    let link = CURRENT.with_borrow_mut(|current| match current.get(&node) {
        Some(link) if !link.dead.get() => link.clone(),
        _ => {
            let mut hub = Hub::new(target, sharded, ping_ns, now);
            if let Some(command) = renewal() {
                hub.renew_with(&command);
            }
            let link = Rc::new(HubConnection {
                hub: RefCell::new(hub),
                mailboxes: RefCell::new(HashMap::new()),
                writer: RefCell::new(None),
                dead: Cell::new(false),
                lost: RefCell::new(String::new()),
            });
            current.insert(node, link.clone());
            OPEN.set(OPEN.get() + 1);
            let open_by = dial::shared_open_deadline(now, timeout_ms);
            super::wit_bindgen_spawn(drive(link.clone(), target.clone(), open_by));
            link
        }
    });
    let id = link.hub.borrow_mut().join(channel);
    link.mailboxes.borrow_mut().insert(id, Mailbox::default());
    STREAMS.set(STREAMS.get() + 1);
    link.dispatch();
    Subscription { link, id }
}

impl Subscription {
    /// Resolves once the channel's subscription is confirmed (then the
    /// record and history may be read), or with how it ended before that.
    pub async fn live(&self) -> Result<(), End> {
        future::poll_fn(|cx| {
            self.link.with_mailbox(self.id, cx, |m| match &m.ended {
                Some(end) => Poll::Ready(Err(end.clone())),
                None if m.live => Poll::Ready(Ok(())),
                None => Poll::Pending,
            })
        })
        .await
    }

    /// The next messages, oldest first, and how many were too large to
    /// decode since the last call; or how the subscription ended.
    pub async fn next(&self) -> Result<(Vec<Payload>, usize), End> {
        future::poll_fn(|cx| {
            let ready = self.link.with_mailbox(self.id, cx, |m| match &m.ended {
                Some(end) => Poll::Ready(Err(end.clone())),
                None if m.ready => {
                    m.ready = false;
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            });
            ready.map_ok(|()| {
                let mut hub = self.link.hub.borrow_mut();
                (hub.drain(self.id), hub.take_dropped(self.id))
            })
        })
        .await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        STREAMS.set(STREAMS.get().saturating_sub(1));
        self.link.mailboxes.borrow_mut().remove(&self.id);
        self.link.hub.borrow_mut().leave(self.id);
        self.link.dispatch();
    }
}

impl HubConnection {
    /// Runs `f` on the mailbox of `id`, registering the caller's waker.
    fn with_mailbox<T>(
        &self,
        id: SubId,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Mailbox) -> Poll<T>,
    ) -> Poll<T> {
        let mut boxes = self.mailboxes.borrow_mut();
        let m = boxes.entry(id).or_insert_with(|| Mailbox {
            ended: Some(End::Lost(String::new())),
            ..Mailbox::default()
        });
        let poll = f(m);
        if poll.is_pending() {
            m.waker = Some(cx.waker().clone());
        }
        poll
    }

    /// Hands the hub's notices to the streams and wakes the writer when
    /// there are bytes for Redis.
    fn dispatch(&self) {
        print(self.hub.borrow_mut().logs());
        let notices = self.hub.borrow_mut().take_notices();
        let mut boxes = self.mailboxes.borrow_mut();
        for notice in notices {
            let id = match &notice {
                Notice::Live(id)
                | Notice::Ready(id)
                | Notice::Overflow(id)
                | Notice::Lost(id)
                | Notice::Moved(id, _) => *id,
            };
            if let Some(m) = boxes.get_mut(&id) {
                match notice {
                    Notice::Live(_) => m.live = true,
                    Notice::Ready(_) => m.ready = true,
                    Notice::Overflow(_) => m.ended = Some(End::Overflow),
                    Notice::Lost(_) => m.ended = Some(End::Lost(self.lost.borrow().clone())),
                    // The pump subscribes on the owner's connection instead.
                    Notice::Moved(_, to) => m.ended = Some(End::Moved(to)),
                }
                if let Some(w) = m.waker.take() {
                    w.wake();
                }
            }
        }
        drop(boxes);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Owns the connection: connects, then reads, writes and pings until it
/// breaks or has no subscriber left; then every remaining stream is told.
async fn drive(link: Rc<HubConnection>, target: RedisTarget, open_by: u64) {
    let outcome = driver::drive(&*link, &target, open_by).await;
    link.dead.set(true);
    link.writer.borrow_mut().take(); // its task part is over: nothing to wake
    CURRENT.with_borrow_mut(|current| {
        current.retain(|_, c| !Rc::ptr_eq(c, &link));
    });
    OPEN.set(OPEN.get().saturating_sub(1));
    if let Err(detail) = outcome {
        log(
            "redis_subscription_lost",
            &[("detail", detail.as_str().into())],
        );
        *link.lost.borrow_mut() = detail;
    }
    link.hub.borrow_mut().connection_lost();
    link.dispatch();
}

impl Driven for HubConnection {
    fn read(&self, bytes: &[u8]) -> Result<(), String> {
        let fed = self.hub.borrow_mut().receive(bytes);
        fed.map_err(|e| failure::protocol(&e))?;
        self.dispatch();
        Ok(())
    }

    /// The hub's bytes; closed once its last subscriber has left.
    fn poll_write(&self, waker: &Waker) -> Poll<Option<Vec<u8>>> {
        let mut hub = self.hub.borrow_mut();
        let out = hub.take_outgoing();
        if !out.is_empty() {
            return Poll::Ready(Some(out));
        }
        if hub.subscribers() == 0 {
            return Poll::Ready(None);
        }
        *self.writer.borrow_mut() = Some(waker.clone());
        Poll::Pending
    }

    /// The hub's liveness check is always due at some point.
    fn poll_deadline(&self, _waker: &Waker) -> Option<u64> {
        Some(self.hub.borrow().poll_timeout())
    }

    fn timeout(&self, now: u64) -> Result<(), String> {
        self.hub.borrow_mut().handle_timeout(now)?;
        self.dispatch();
        Ok(())
    }
}
