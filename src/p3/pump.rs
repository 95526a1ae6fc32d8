//! Pumps one [`StreamMachine`] ([`Wiring::Shared`]) per stream request:
//! its subscription on the instance's hub ([`super::link`]), its commands
//! on the instance's command connection ([`super::commands`]), one timer
//! and the response body. Every decision is the machine's; this file moves
//! bytes and reads the clock.
//!
//! The handler awaits the machine until it answers: a refusal is the
//! response; on [`Event::Start`] the `200` is returned and the rest runs
//! in the request's background task, so the host counts the stream as
//! handled and sends the instance more requests.

use super::commands::Client;
use super::lease;
use super::subscriptions::{self, Subscription};
use super::{clock, error_response, fields, print, wit_bindgen_spawn, RequestLine};
use crate::config::Config;
use crate::http::auth::Identity;
use crate::http::error::ApiError;
use crate::machine::instance::{Backpressure, InstanceAdmission, InstanceCapacity, InstanceLease};
use crate::machine::timers::{self, BodyEnd};
use crate::machine::{Event, Op, Opening, StreamMachine, Topic, Wiring};
use crate::redis::hub::{End, Payload};
use crate::redis::pipeline;
use crate::redis::resp::Value;
use crate::redis::session::Tag;
use crate::redis::target::RedisTarget;
use futures::future;
use spin_sdk7::wasip3;
use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use wasip3::http::types::{ErrorCode, Response};
use wasip3::wit_bindgen::{StreamResult, StreamWriter};
use wasip3::{wit_future, wit_stream};

type Headers = Vec<(&'static str, String)>;

/// Serves a stream route: the refusal, or the `200` with the body pumped
/// from the request's background task.
pub async fn serve(
    cfg: Arc<Config>,
    who: Identity,
    topic: Topic,
    last_event_id: Option<String>,
    cors: Headers,
    line: Option<RequestLine>,
) -> Response {
    let answered = |status: u16| {
        if let Some(l) = line {
            l.answered(status);
        }
    };
    let admitted = match Admitted::take(InstanceCapacity::of(&cfg)) {
        Ok(a) => a,
        Err((e, line)) => {
            print(std::iter::once(line));
            answered(e.status);
            return error_response(&e, &cors);
        }
    };
    let instance = lease::name();
    let req = Opening {
        topic,
        last_event_id: last_event_id.as_deref(),
        member: format!("{:016x}", wasip3::random::random::get_random_u64()),
        instance: Some(&instance),
        now: clock::now(),
        unix_now: clock::unix_seconds(),
    };
    let m = StreamMachine::open(Wiring::Shared, &cfg, &who, req);
    let mut s = Pump {
        m,
        client: Client::new(cfg.clone(), pipeline::owner_of(&who.user_id)),
        sub: None,
        live: false,
        channel: String::new(),
        cfg,
        last_write: None,
        timer: None,
        _admitted: admitted,
    };
    loop {
        s.step();
        match s.m.poll_event() {
            Some(Event::Refuse(e)) => {
                s.finish();
                answered(e.status);
                return error_response(&e, &cors);
            }
            Some(Event::Start) => break,
            Some(Event::Finished(_)) => {
                s.finish();
                let e = Event::unstarted();
                answered(e.status);
                return error_response(&e, &cors);
            }
            None => {}
        }
        let mut no_write = None;
        s.wait(&mut no_write).await;
    }
    let (body, body_rx) = wit_stream::new();
    let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
    let mut head = vec![
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
    ];
    head.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
    let (response, _) = Response::new(fields(&head), Some(body_rx), trailers);
    wit_bindgen_spawn(async move {
        let end = s.stream(body).await;
        s.finish();
        answered(200);
        // The last chunk, or an error in the trailers (the host ends the
        // response without it) once the grace has passed.
        match end {
            BodyEnd::Clean => {
                let _ = trailers_tx.write(Ok(None)).await;
            }
            BodyEnd::Abort { until, reason } => {
                if let Some(until) = until {
                    clock::until(until).await;
                }
                let aborted = ErrorCode::InternalError(Some(reason.into()));
                let _ = trailers_tx.write(Err(aborted)).await;
            }
        }
    });
    response
}

type Write = Pin<Box<dyn Future<Output = (StreamWriter<u8>, StreamResult)>>>;

/// An armed `wait-until` and the instant it fires.
type Timer = (u64, Pin<Box<dyn Future<Output = ()>>>);

struct Pump {
    m: StreamMachine,
    client: Client,
    sub: Option<Subscription>,
    live: bool,
    channel: String,
    cfg: Arc<Config>,
    /// Monotonic time of the last body write that took bytes.
    last_write: Option<u64>,
    /// The armed timer, kept across wake-ups (see [`Pump::wait`]).
    timer: Option<Timer>,
    /// Counted against `max_streams_per_instance` while the pump lives.
    _admitted: Admitted,
}

thread_local! {
    /// Streams this instance serves (admitted, not yet dropped).
    static SERVING: RefCell<InstanceAdmission> = RefCell::new(InstanceAdmission::default());
}

/// One stream's place in the instance's admission count
/// ([`InstanceAdmission`]), given back when dropped; each change
/// of the instance's fullness, or its retirement, goes to the host as
/// `backpressure`.
struct Admitted {
    cap: InstanceCapacity,
}

impl Admitted {
    fn take(cap: InstanceCapacity) -> Result<Admitted, (ApiError, String)> {
        let change = SERVING.with_borrow_mut(|a| a.take(cap, memory_pages()))?;
        tell_host(change);
        Ok(Admitted { cap })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        tell_host(SERVING.with_borrow_mut(|a| a.give_back(self.cap, memory_pages())));
    }
}

/// The instance's memory now, in wasm pages.
fn memory_pages() -> u64 {
    core::arch::wasm32::memory_size(0) as u64
}

fn tell_host(change: Option<Backpressure>) {
    match change {
        Some(Backpressure::Set) => wasip3::wit_bindgen::backpressure_inc(),
        Some(Backpressure::Lift) => wasip3::wit_bindgen::backpressure_dec(),
        None => {}
    }
    print(SERVING.with_borrow_mut(|a| a.take_log()).into_iter());
}

/// What woke the pump.
enum Woke {
    Live(Result<(), End>),
    Messages(Result<(Vec<Payload>, usize), End>),
    Answers(Vec<(Tag, Result<Value, String>)>),
    Wrote(StreamWriter<u8>, StreamResult),
    Timer,
}

impl Pump {
    /// Moves what the machine asked for: the channel to join, its commands,
    /// its log lines.
    fn step(&mut self) {
        let mut runs = Vec::new();
        while let Some(op) = self.m.poll_op() {
            match op {
                Op::Join(channel) => {
                    self.channel = channel;
                    let node = self.cfg.redis.clone();
                    self.subscribe(&node);
                }
                Op::Run(run) => runs.push(run),
            }
        }
        self.client.send(runs);
        print(self.m.logs());
    }

    /// Joins the hub of `node` (the configured Redis, or on Cluster the
    /// channel's shard).
    fn subscribe(&mut self, node: &RedisTarget) {
        self.sub = None;
        let ping_ns = clock::secs(self.cfg.heartbeat_seconds.max(1));
        let sharded = self.cfg.redis_cluster;
        let channel = self.channel.as_bytes();
        let timeout_ms = self.cfg.redis_timeout_ms;
        let cfg = &self.cfg;
        let renewal = || InstanceLease::renewal(&lease::name(), cfg);
        self.sub = Some(subscriptions::subscribe(
            node, sharded, ping_ns, renewal, timeout_ms, channel,
        ));
    }

    /// The live stream until the machine says it is over, and how the
    /// body ends.
    async fn stream(&mut self, body: StreamWriter<u8>) -> BodyEnd {
        let mut body = Some(body);
        let mut write: Option<Write> = None;
        loop {
            self.step();
            if let Some(Event::Finished(close)) = self.m.poll_event() {
                return BodyEnd::of(close, self.last_write);
            }
            if write.is_none() && !self.m.pending().is_empty() {
                if let Some(mut b) = body.take() {
                    let bytes = self.m.pending().to_vec();
                    write = Some(Box::pin(async move {
                        let (result, _) = b.write(bytes).await;
                        (b, result)
                    }));
                }
            }
            if let Some((b, result)) = self.wait(&mut write).await {
                let now = clock::now();
                match result {
                    StreamResult::Complete(n) => {
                        body = Some(b);
                        if n > 0 {
                            self.last_write = Some(now);
                        }
                        self.m.handle_body_took(n, now);
                    }
                    StreamResult::Dropped | StreamResult::Cancelled => self.m.handle_body_gone(now),
                }
            }
        }
    }

    /// Waits for the hub, the command answers, the body write in flight
    /// or the machine's deadline, and feeds what happened. Returns the
    /// body writer when its write finished.
    ///
    /// The timer outlives a wake-up: it is re-armed only as
    /// [`timers::rearm`] says (an earlier deadline, or one more than a
    /// second later). A slightly later deadline (every write pushes the
    /// heartbeat back) keeps the armed one, which fires early once and is
    /// re-armed then (`handle_timeout` before the deadline does nothing).
    /// Arming a host timer and cancelling it on every delivery cost two of
    /// the host's task operations per stream per event
    /// (docs/PERFORMANCE.md, "Fan-out in one instance").
    async fn wait(
        &mut self,
        write: &mut Option<Write>,
    ) -> Option<(StreamWriter<u8>, StreamResult)> {
        let deadline = self.m.poll_timeout()?;
        if timers::rearm(self.timer.as_ref().map(|(at, _)| *at), deadline) {
            self.timer = Some((deadline, Box::pin(clock::until(deadline))));
        }
        let wants = self.m.wants_redis();
        let live = self.live;
        let sub = self.sub.as_ref().filter(|_| wants);
        let woke = {
            let hub = pin!(async {
                match sub {
                    Some(s) if live => Woke::Messages(s.next().await),
                    Some(s) => Woke::Live(s.live().await),
                    None => future::pending().await,
                }
            });
            let answers = pin!(async { Woke::Answers(self.client.answers().await) });
            let timer = &mut self.timer;
            let mut hub = hub;
            let mut answers = answers;
            future::poll_fn(|cx| {
                if let Some(w) = write.as_mut() {
                    if let Poll::Ready((b, r)) = w.as_mut().poll(cx) {
                        *write = None;
                        return Poll::Ready(Woke::Wrote(b, r));
                    }
                }
                if let Poll::Ready(w) = hub.as_mut().poll(cx) {
                    return Poll::Ready(w);
                }
                if let Poll::Ready(w) = answers.as_mut().poll(cx) {
                    return Poll::Ready(w);
                }
                let fired = timer
                    .as_mut()
                    .is_some_and(|(_, t)| t.as_mut().poll(cx).is_ready());
                if fired {
                    *timer = None;
                    return Poll::Ready(Woke::Timer);
                }
                Poll::Pending
            })
            .await
        };
        let now = clock::now();
        let mut wrote = None;
        match woke {
            Woke::Live(Ok(())) => {
                self.live = true;
                self.m.handle_subscribed(now);
            }
            Woke::Messages(Ok((messages, too_large))) => {
                for p in messages {
                    self.m.handle_message(p, now);
                }
                if too_large > 0 {
                    self.m.handle_too_large(too_large, now);
                }
            }
            Woke::Live(Err(end)) | Woke::Messages(Err(end)) => {
                self.sub = None;
                // Cluster: the channel's shard is elsewhere; join its hub.
                if let Some(to) = self.m.handle_subscription_end(end, now) {
                    let mut node = self.cfg.redis.clone();
                    to.redirect(&mut node);
                    self.subscribe(&node);
                }
            }
            Woke::Answers(list) => {
                for (tag, outcome) in list {
                    self.m.handle_reply(tag, outcome, now);
                }
            }
            Woke::Wrote(b, r) => wrote = Some((b, r)),
            Woke::Timer => {}
        }
        self.m.handle_timeout(now);
        wrote
    }

    /// Leaves the hub and sends the machine's last commands (the slot
    /// given back).
    fn finish(&mut self) {
        self.sub = None;
        self.step();
    }
}
