//! Metrics and the request span, derived from the core's log lines.
//!
//! The log lines are the one schema (`log::EVENTS`, docs/OBSERVABILITY.md):
//! a [`Recorder`] reads the same lines a shell prints and turns them into
//! counter and histogram updates, so a metric can never disagree with the
//! log. One recorder lives for one request (one component instance); the
//! Spin shell exports what it holds as delta sums and histograms when the
//! request ends. Attributes are low-cardinality by construction: stream
//! kind, close/skip/auth reason, route template, status — never a channel,
//! id, user or token.

use crate::http::routes::Route;
use serde_json::Value;
use std::collections::BTreeMap;

/// Attribute pairs of one time series, in a fixed order.
pub type Attrs = Vec<(&'static str, String)>;

/// One instrument the gateway records.
#[derive(Debug, PartialEq)]
pub struct Instrument {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    /// Histogram bucket upper bounds (empty for counters).
    pub bounds: &'static [f64],
}

const MS_BOUNDS: &[f64] = &[
    5.0,
    25.0,
    100.0,
    250.0,
    1_000.0,
    5_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    1_800_000.0,
    3_600_000.0,
];
const COUNT_BOUNDS: &[f64] = &[0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 1_000.0, 10_000.0];

const fn counter(name: &'static str, unit: &'static str, description: &'static str) -> Instrument {
    Instrument {
        name,
        unit,
        description,
        bounds: &[],
    }
}

pub const STREAMS_OPENED: Instrument = counter(
    "sse_gateway.streams.opened",
    "{stream}",
    "Streams that got their 200 and started",
);
pub const STREAMS_CLOSED: Instrument = counter(
    "sse_gateway.streams.closed",
    "{stream}",
    "Streams that ended, by close reason",
);
pub const EVENTS_DELIVERED: Instrument = counter(
    "sse_gateway.events.delivered",
    "{event}",
    "Events queued to browsers (counted when the stream closes)",
);
pub const EVENTS_SKIPPED: Instrument = counter(
    "sse_gateway.events.skipped",
    "{event}",
    "Messages that broke the stream's rules and were not sent",
);
pub const EVENTS_DROPPED: Instrument = counter(
    "sse_gateway.events.dropped",
    "{event}",
    "Live messages without a history id given up for a browser behind a burst",
);
pub const CATCH_UPS: Instrument = counter(
    "sse_gateway.stream.catch_ups",
    "{catch_up}",
    "Streams that read the history again after their live backlog overflowed",
);
pub const AUTH_FAILURES: Instrument = counter(
    "sse_gateway.auth.failures",
    "{request}",
    "Credentials refused, by reason (a missing token is a 401 answer only)",
);
pub const ERROR_ANSWERS: Instrument = counter(
    "sse_gateway.http.error_answers",
    "{request}",
    "4xx and 5xx answers, by route and status",
);
pub const REDIS_ERRORS: Instrument = counter(
    "sse_gateway.redis.errors",
    "{error}",
    "Redis trouble, by log event",
);
pub const TIME_TO_FIRST_EVENT: Instrument = Instrument {
    name: "sse_gateway.stream.time_to_first_event",
    unit: "ms",
    description: "From the stream request to its first event queued",
    bounds: MS_BOUNDS,
};
pub const STREAM_DURATION: Instrument = Instrument {
    name: "sse_gateway.stream.duration",
    unit: "ms",
    description: "From the 200 to the stream's end",
    bounds: MS_BOUNDS,
};
pub const EVENTS_PER_STREAM: Instrument = Instrument {
    name: "sse_gateway.stream.events",
    unit: "{event}",
    description: "Events queued to one stream",
    bounds: COUNT_BOUNDS,
};

/// Every instrument (docs/OBSERVABILITY.md lists each).
pub const INSTRUMENTS: &[&Instrument] = &[
    &STREAMS_OPENED,
    &STREAMS_CLOSED,
    &EVENTS_DELIVERED,
    &EVENTS_SKIPPED,
    &EVENTS_DROPPED,
    &CATCH_UPS,
    &AUTH_FAILURES,
    &ERROR_ANSWERS,
    &REDIS_ERRORS,
    &TIME_TO_FIRST_EVENT,
    &STREAM_DURATION,
    &EVENTS_PER_STREAM,
];

/// The log events counted as Redis errors.
const REDIS_EVENTS: &[&str] = &[
    "redis_unavailable",
    "redis_lost",
    "redis_bad_record",
    "slot_renew_failed",
    "health_unexpected_reply",
];

/// One histogram's data points (explicit buckets).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// One more than the bounds: the last counts values above every bound.
    pub bucket_counts: Vec<u64>,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            bucket_counts: vec![0; bounds.len() + 1],
        }
    }

    fn record(&mut self, bounds: &[f64], v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        let at = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.bucket_counts[at] += 1;
    }
}

/// What one request recorded.
#[derive(Debug, Default)]
pub struct Recorder {
    counters: BTreeMap<(&'static str, Attrs), u64>,
    histograms: BTreeMap<(&'static str, Attrs), Histogram>,
    /// Stream attributes for the request's span, from `stream_closed`.
    stream: Attrs,
}

impl Recorder {
    /// Reads one log line (as built by `log::line`).
    pub fn observe(&mut self, line: &str) {
        let Ok(Value::Object(f)) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let num = |k: &str| f.get(k).and_then(Value::as_f64);
        let event = text("event");
        match event.as_str() {
            "stream_opened" => self.add(&STREAMS_OPENED, vec![("kind", text("kind"))], 1),
            "stream_closed" => {
                let kind = vec![("kind", text("kind"))];
                let events = num("events").unwrap_or(0.0);
                let closed = vec![("kind", text("kind")), ("reason", text("reason"))];
                self.add(&STREAMS_CLOSED, closed, 1);
                self.add(&EVENTS_DELIVERED, kind.clone(), events as u64);
                self.record(&EVENTS_PER_STREAM, kind.clone(), events);
                if let Some(ms) = num("duration_ms") {
                    self.record(&STREAM_DURATION, kind.clone(), ms);
                }
                if let Some(ms) = num("first_event_ms") {
                    self.record(&TIME_TO_FIRST_EVENT, kind, ms);
                }
                self.stream = vec![
                    ("sse.stream.kind", text("kind")),
                    ("sse.close.reason", text("reason")),
                    ("sse.events", (events as u64).to_string()),
                ];
            }
            "message_skipped" => self.add(&EVENTS_SKIPPED, vec![("reason", text("reason"))], 1),
            "messages_dropped" => {
                let n = num("messages").unwrap_or(1.0) as u64;
                self.add(&EVENTS_DROPPED, Vec::new(), n)
            }
            "catch_up" => self.add(&CATCH_UPS, Vec::new(), 1),
            "auth_failed" => self.add(&AUTH_FAILURES, vec![("reason", text("reason"))], 1),
            e if REDIS_EVENTS.contains(&e) => {
                self.add(&REDIS_ERRORS, vec![("event", event.clone())], 1)
            }
            _ => {}
        }
    }

    /// The request's answer: 4xx and 5xx are counted by route and status.
    pub fn answered(&mut self, route: &'static str, status: u16) {
        if status >= 400 {
            let attrs = vec![("route", route.to_string()), ("status", status.to_string())];
            self.add(&ERROR_ANSWERS, attrs, 1);
        }
    }

    fn add(&mut self, i: &Instrument, attrs: Attrs, n: u64) {
        *self.counters.entry((i.name, attrs)).or_default() += n;
    }

    fn record(&mut self, i: &Instrument, attrs: Attrs, v: f64) {
        self.histograms
            .entry((i.name, attrs))
            .or_insert_with(|| Histogram::new(i.bounds))
            .record(i.bounds, v);
    }

    /// Nothing to export.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.histograms.is_empty()
    }

    /// Counter deltas: instrument, attributes, value.
    pub fn counters(&self) -> impl Iterator<Item = (&'static Instrument, &Attrs, u64)> {
        self.counters
            .iter()
            .map(|((name, attrs), v)| (instrument(name), attrs, *v))
    }

    /// Histogram deltas: instrument, attributes, data.
    pub fn histograms(&self) -> impl Iterator<Item = (&'static Instrument, &Attrs, &Histogram)> {
        self.histograms
            .iter()
            .map(|((name, attrs), h)| (instrument(name), attrs, h))
    }

    /// The request's span attributes: method, route template, status and,
    /// for a stream, its kind, close reason and event count.
    pub fn span_attributes(&self, method: &str, route: &'static str, status: u16) -> Attrs {
        let mut a = vec![
            ("http.request.method", method.to_string()),
            ("http.route", route.to_string()),
            ("http.response.status_code", status.to_string()),
        ];
        a.extend(self.stream.iter().cloned());
        a
    }
}

/// One instrument's data points, ready to export.
#[derive(Debug, PartialEq)]
pub struct Metric<'a> {
    pub instrument: &'static Instrument,
    pub points: Points<'a>,
}

/// A metric's points, one per attribute set.
#[derive(Debug, PartialEq)]
pub enum Points<'a> {
    /// Counter deltas.
    Sum(Vec<(&'a Attrs, u64)>),
    /// Histogram deltas.
    Histogram(Vec<(&'a Attrs, &'a Histogram)>),
}

impl Recorder {
    /// Everything recorded, one [`Metric`] per instrument (an export names
    /// each metric once, with a point per attribute set).
    pub fn metrics(&self) -> Vec<Metric<'_>> {
        let sums = group(self.counters.iter().map(|(k, v)| (k, *v)));
        let histograms = group(self.histograms.iter());
        let sums = sums.into_iter().map(|(instrument, p)| Metric {
            instrument,
            points: Points::Sum(p),
        });
        let histograms = histograms.into_iter().map(|(instrument, p)| Metric {
            instrument,
            points: Points::Histogram(p),
        });
        sums.chain(histograms).collect()
    }
}

/// Entries keyed by (instrument name, attributes), grouped by instrument;
/// the maps keep one instrument's entries together.
#[allow(clippy::type_complexity)]
fn group<'a, T>(
    entries: impl Iterator<Item = (&'a (&'static str, Attrs), T)>,
) -> Vec<(&'static Instrument, Vec<(&'a Attrs, T)>)> {
    let mut out: Vec<(&'static Instrument, Vec<(&'a Attrs, T)>)> = Vec::new();
    for ((name, attrs), value) in entries {
        match out.last_mut() {
            Some((i, points)) if i.name == *name => points.push((attrs, value)),
            _ => out.push((instrument(name), vec![(attrs, value)])),
        }
    }
    out
}

/// Attribute values as JSON text, the encoding of `wasi:otel`'s `value`.
pub fn encoded(attrs: &Attrs) -> impl Iterator<Item = (&'static str, String)> + '_ {
    attrs
        .iter()
        .map(|(k, v)| (*k, Value::from(v.as_str()).to_string()))
}

fn instrument(name: &str) -> &'static Instrument {
    INSTRUMENTS
        .iter()
        .copied()
        .find(|i| i.name == name)
        .unwrap_or(&STREAMS_OPENED)
}

/// The route template of a request line (`path_and_query` as sent).
pub fn route_of(method: &str, path_and_query: &str) -> &'static str {
    let path = path_and_query.split('?').next().unwrap_or("");
    route_name(crate::http::routes::route(method, path).ok().as_ref())
}

/// The route's template (the span name and the `route` attribute): ids
/// never reach a metric.
pub fn route_name(route: Option<&Route>) -> &'static str {
    match route {
        Some(Route::ExecutionStream(_)) => "/api/v1/events/executions/{id}",
        Some(Route::NotificationStream) => "/api/v1/events/notifications/stream",
        Some(Route::ReplayStatus(_)) => "/api/v1/events/replay/{session_id}/status",
        Some(Route::PublishExecution(_)) => "/api/v1/events/executions/{id}",
        Some(Route::PublishNotification(_)) => "/api/v1/events/notifications/{user_id}",
        Some(Route::Health) => "/api/v1/events/health",
        Some(Route::Ready) => "/api/v1/events/health/ready",
        Some(Route::OpenApi) => "/api/v1/events/openapi.json",
        Some(Route::Preflight(_)) => "preflight",
        Some(Route::DemoPage) => "/demo",
        Some(Route::DevToken) => "/api/v1/events/dev/token",
        Some(Route::DevExecution) => "/api/v1/events/dev/executions",
        None => "unmatched",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::line;

    fn counter_of(r: &Recorder, name: &str, attrs: &[(&str, &str)]) -> u64 {
        r.counters()
            .find(|(i, a, _)| {
                i.name == name
                    && a.len() == attrs.len()
                    && a.iter()
                        .zip(attrs)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map_or(0, |(_, _, v)| v)
    }

    fn stream_of_three() -> Recorder {
        let mut r = Recorder::default();
        r.observe(&line(
            "stream_opened",
            &[
                ("channel", "sse:exec:e1".into()),
                ("kind", "execution".into()),
            ],
        ));
        r.observe(&line(
            "message_skipped",
            &[
                ("channel", "sse:exec:e1".into()),
                ("reason", "not a JSON object".into()),
            ],
        ));
        r.observe(&line(
            "stream_closed",
            &[
                ("channel", "sse:exec:e1".into()),
                ("kind", "execution".into()),
                ("reason", "terminal event".into()),
                ("events", 3.into()),
                ("duration_ms", 1200.into()),
                ("first_event_ms", 4.into()),
            ],
        ));
        r.answered(route_name(Some(&Route::ExecutionStream("e1".into()))), 200);
        r
    }

    #[test]
    fn metrics_name_each_instrument_once() {
        let mut r = stream_of_three();
        r.answered(route_name(Some(&Route::Health)), 503);
        r.answered(route_name(Some(&Route::Ready)), 503);
        let metrics = r.metrics();
        let names: Vec<&str> = metrics.iter().map(|m| m.instrument.name).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "one metric per instrument");
        let errors = metrics
            .iter()
            .find(|m| m.instrument.name == ERROR_ANSWERS.name)
            .unwrap();
        assert!(matches!(&errors.points, Points::Sum(p) if p.len() == 2));
        let per_stream = metrics
            .iter()
            .find(|m| m.instrument.name == EVENTS_PER_STREAM.name)
            .unwrap();
        assert!(matches!(&per_stream.points, Points::Histogram(p) if p[0].1.sum == 3.0));
        assert!(Recorder::default().metrics().is_empty());
    }

    #[test]
    fn attributes_are_encoded_as_json() {
        let attrs: Attrs = vec![("reason", "a \"b\"".into())];
        let encoded: Vec<_> = encoded(&attrs).collect();
        assert_eq!(encoded, [("reason", r#""a \"b\"""#.to_string())]);
    }

    #[test]
    fn request_lines_name_the_route_template() {
        assert_eq!(
            route_of("GET", "/api/v1/events/executions/e-1?x=1"),
            "/api/v1/events/executions/{id}"
        );
        assert_eq!(route_of("GET", "/nowhere"), "unmatched");
    }

    #[test]
    fn a_stream_counts_open_close_events_and_skips() {
        let r = stream_of_three();
        assert_eq!(
            counter_of(&r, "sse_gateway.streams.opened", &[("kind", "execution")]),
            1
        );
        let closed = [("kind", "execution"), ("reason", "terminal event")];
        assert_eq!(counter_of(&r, "sse_gateway.streams.closed", &closed), 1);
        assert_eq!(
            counter_of(&r, "sse_gateway.events.delivered", &[("kind", "execution")]),
            3
        );
        let skip = [("reason", "not a JSON object")];
        assert_eq!(counter_of(&r, "sse_gateway.events.skipped", &skip), 1);
        assert_eq!(r.counters().count(), 4, "a 200 is no error answer");
    }

    #[test]
    fn histograms_bucket_the_stream() {
        let r = stream_of_three();
        let get = |name: &str| {
            r.histograms()
                .find(|(i, _, _)| i.name == name)
                .unwrap()
                .2
                .clone()
        };
        let events = get("sse_gateway.stream.events");
        assert_eq!(
            (events.count, events.sum, events.min, events.max),
            (1, 3.0, 3.0, 3.0)
        );
        assert_eq!(events.bucket_counts[2], 1, "3 falls in the (1, 3] bucket");
        assert_eq!(events.bucket_counts.len(), COUNT_BOUNDS.len() + 1);
        assert_eq!(get("sse_gateway.stream.duration").sum, 1200.0);
        let ttfe = get("sse_gateway.stream.time_to_first_event");
        assert_eq!(ttfe.bucket_counts[0], 1, "4 ms is in the first bucket");
    }

    #[test]
    fn no_first_event_no_time_to_first_event() {
        let mut r = Recorder::default();
        r.observe(&line(
            "stream_closed",
            &[
                ("kind", "notification".into()),
                ("first_event_ms", Value::Null),
            ],
        ));
        assert!(r
            .histograms()
            .all(|(i, _, _)| i.name != "sse_gateway.stream.time_to_first_event"));
    }

    #[test]
    fn trouble_is_counted_by_reason_and_event() {
        let mut r = Recorder::default();
        r.observe(&line("auth_failed", &[("reason", "token expired".into())]));
        r.observe(&line("redis_lost", &[("detail", "no PONG".into())]));
        r.observe(&line("redis_unavailable", &[("detail", "refused".into())]));
        r.observe(&line("stream_limit", &[("limit", 3.into())]));
        r.observe("not json");
        r.answered("/api/v1/events/health/ready", 503);
        r.answered("/api/v1/events/health", 200);
        let auth = [("reason", "token expired")];
        assert_eq!(counter_of(&r, "sse_gateway.auth.failures", &auth), 1);
        assert_eq!(
            counter_of(&r, "sse_gateway.redis.errors", &[("event", "redis_lost")]),
            1
        );
        let down = [("event", "redis_unavailable")];
        assert_eq!(counter_of(&r, "sse_gateway.redis.errors", &down), 1);
        let answer = [("route", "/api/v1/events/health/ready"), ("status", "503")];
        assert_eq!(counter_of(&r, "sse_gateway.http.error_answers", &answer), 1);
        assert_eq!(r.counters().count(), 4);
    }

    #[test]
    fn attributes_carry_no_ids_users_or_channels() {
        let r = stream_of_three();
        let span = r.span_attributes(
            "GET",
            route_name(Some(&Route::ExecutionStream("e1".into()))),
            200,
        );
        let all = r
            .counters()
            .flat_map(|(_, a, _)| a.clone())
            .chain(r.histograms().flat_map(|(_, a, _)| a.clone()))
            .chain(span.clone());
        for (_, v) in all {
            assert!(!v.contains("e1") && !v.contains("sse:"), "{v}");
        }
        assert!(span.contains(&("http.route", "/api/v1/events/executions/{id}".into())));
        assert!(span.contains(&("sse.events", "3".into())));
        assert!(span.contains(&("sse.close.reason", "terminal event".into())));
    }

    #[test]
    fn every_instrument_is_documented() {
        let docs = include_str!("../docs/OBSERVABILITY.md");
        for i in INSTRUMENTS {
            assert!(
                docs.contains(&format!("`{}`", i.name)),
                "{} undocumented",
                i.name
            );
        }
    }
}
