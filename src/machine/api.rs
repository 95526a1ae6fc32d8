//! The machine's vocabulary, what a shell names: which stream a request
//! opens ([`Topic`], [`Opening`]), where its Redis lives ([`Wiring`]), the
//! operations it asks for ([`Op`], [`Run`]) and what the shell must do
//! next ([`Event`]).

use crate::http::error::{ApiError, RETRY_AFTER_SECONDS};
use crate::http::routes::Route;
use crate::redis::session::Tag;
use crate::rules::outbox::Close;

/// Which stream a request opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `/api/v1/events/executions/{id}`.
    Execution(String),
    /// `/api/v1/events/notifications/stream`.
    Notifications,
    /// `/api/v1/events/replay/{session_id}/status`.
    ReplayStatus(String),
}

impl Topic {
    /// The stream a route opens, if it is a stream route.
    pub fn of(route: &Route) -> Option<Topic> {
        match route {
            Route::ExecutionStream(id) => Some(Topic::Execution(id.clone())),
            Route::NotificationStream => Some(Topic::Notifications),
            Route::ReplayStatus(id) => Some(Topic::ReplayStatus(id.clone())),
            _ => None,
        }
    }
}

/// Where a stream's Redis lives: what may ride behind its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// One connection of its own for the subscription and every command
    /// (the p2 shells, through [`own::OwnConnection`](super::own::OwnConnection)): commands run
    /// [`Run::on_stream`] where they can, pipelined behind the
    /// `SUBSCRIBE`, and the machine checks the connection's liveness with
    /// a `PING` every heartbeat.
    Own,
    /// The instance's shared subscription hub and command connection (the
    /// p3 shell). No command rides behind the join: the stream's commands
    /// go out only once the subscription is confirmed, as on Cluster, so
    /// nothing published in between is missed (the user record every
    /// stream reads first goes out before the join: a refused user never
    /// subscribes). Liveness of the subscription is the hub's (its
    /// `PING`s); a lost hub or command connection is
    /// [`StreamMachine::handle_redis_failure`](super::StreamMachine::handle_redis_failure).
    Shared,
}

/// A Redis operation the machine asks for ([`StreamMachine::poll_op`](super::StreamMachine::poll_op)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Subscribe to the stream's channel (`SSUBSCRIBE` on Cluster).
    Join(String),
    /// Run a command; its answer comes back with its tag.
    Run(Run),
}

/// One command of an [`Op::Run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub tag: Tag,
    pub args: Vec<Vec<u8>>,
    /// [`Wiring::Own`]: on the stream's own connection (behind its
    /// subscription, or before it for the user record read first), else
    /// elsewhere: its own one-shot connection, or the shared command
    /// connection.
    pub on_stream: bool,
}

/// What the shell must do next.
#[derive(Debug)]
pub enum Event {
    /// Send this error answer; the stream is over.
    Refuse(ApiError),
    /// Send the `200` head with the SSE headers; then write [`StreamMachine::pending`](super::StreamMachine::pending).
    Start,
    /// The stream is over (why, for tests); carry out the last
    /// [`StreamMachine::poll_op`](super::StreamMachine::poll_op)s (the slot given back). Never before
    /// [`Event::Start`] (a stream that ends before it starts is a
    /// `Refuse`); a shell that meets one anyway answers
    /// [`Event::unstarted`], so every shell answers it alike.
    Finished(Close),
}

impl Event {
    /// The answer to a [`Event::Finished`] with no [`Event::Start`] before
    /// it (which the machine never sends): a 503 the browser retries.
    pub fn unstarted() -> ApiError {
        ApiError::service_unavailable(RETRY_AFTER_SECONDS)
    }
}

/// What opening a stream needs besides the config.
pub struct Opening<'a> {
    pub topic: Topic,
    /// The browser's `Last-Event-ID` header, as sent.
    pub last_event_id: Option<&'a str>,
    /// A name unique to this stream for its slot (slot sets are shared).
    pub member: String,
    /// The instance's name, where one instance serves many streams
    /// ([`Wiring::Shared`]): their slots may live by one lease
    /// ([`InstanceLease`](super::instance::InstanceLease)).
    pub instance: Option<&'a str>,
    /// Monotonic ns.
    pub now: u64,
    /// Wall-clock unix seconds (token expiry, `Last-Event-ID` sanity).
    pub unix_now: i64,
}
