//! `wasi:otel` (feature `otel`, Spin only): hands what the request's
//! [`Recorder`] holds and its span to Spin's OTLP exporter.
//!
//! An instance lives for one request, so every export is that request's
//! delta (`temporality: delta`, start = the request's start); Spin passes
//! each call straight to its exporter without aggregating across instances
//! (docs/OBSERVABILITY.md says what a backend must do with deltas).

use crate::telemetry::{Attrs, Histogram, Instrument, Recorder};
use bindings::wasi::otel::{metrics, tracing, types};
use wasi::clocks::wall_clock::{self, Datetime};

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "sse-gateway:component/otel",
        with: {
            "wasi:clocks/wall-clock@0.2.0": ::wasi::clocks::wall_clock,
            "wasi:clocks/monotonic-clock@0.2.0": ::wasi::clocks::monotonic_clock,
            "wasi:io/poll@0.2.0": ::wasi::io::poll,
        },
        generate_all,
    });
}

const SCOPE: &str = "sse-gateway";

fn scope() -> types::InstrumentationScope {
    types::InstrumentationScope {
        name: SCOPE.into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        schema_url: None,
        attributes: Vec::new(),
    }
}

/// Attribute values are JSON (the interface's `value` encoding).
fn key_values(attrs: &Attrs) -> Vec<types::KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| types::KeyValue {
            key: (*k).into(),
            value: serde_json::Value::from(v.as_str()).to_string(),
        })
        .collect()
}

/// The request's start (wall clock), taken when the request arrives.
pub fn now() -> Datetime {
    wall_clock::now()
}

/// Exports the request's metric deltas (nothing when there are none).
pub fn export_metrics(r: &Recorder, start: Datetime) {
    if r.is_empty() {
        return;
    }
    let time = wall_clock::now();
    let mut out: Vec<metrics::Metric> = Vec::new();
    for (i, attrs, v) in r.counters() {
        let point = metrics::SumDataPoint {
            attributes: key_values(attrs),
            value: metrics::MetricNumber::U64(v),
            exemplars: Vec::new(),
        };
        match out.iter_mut().find(|m| m.name == i.name) {
            Some(metrics::Metric {
                data: metrics::MetricData::U64Sum(s),
                ..
            }) => s.data_points.push(point),
            _ => out.push(metric(
                i,
                metrics::MetricData::U64Sum(metrics::Sum {
                    data_points: vec![point],
                    start_time: start,
                    time,
                    temporality: metrics::Temporality::Delta,
                    is_monotonic: true,
                }),
            )),
        }
    }
    for (i, attrs, h) in r.histograms() {
        let point = histogram_point(i, attrs, h);
        match out.iter_mut().find(|m| m.name == i.name) {
            Some(metrics::Metric {
                data: metrics::MetricData::F64Histogram(s),
                ..
            }) => s.data_points.push(point),
            _ => out.push(metric(
                i,
                metrics::MetricData::F64Histogram(metrics::Histogram {
                    data_points: vec![point],
                    start_time: start,
                    time,
                    temporality: metrics::Temporality::Delta,
                }),
            )),
        }
    }
    let _ = metrics::export(&metrics::ResourceMetrics {
        resource: types::Resource {
            attributes: Vec::new(),
            schema_url: None,
        },
        scope_metrics: vec![metrics::ScopeMetrics {
            scope: scope(),
            metrics: out,
        }],
    });
}

fn metric(i: &Instrument, data: metrics::MetricData) -> metrics::Metric {
    metrics::Metric {
        name: i.name.into(),
        description: i.description.into(),
        unit: i.unit.into(),
        data,
    }
}

fn histogram_point(i: &Instrument, attrs: &Attrs, h: &Histogram) -> metrics::HistogramDataPoint {
    metrics::HistogramDataPoint {
        attributes: key_values(attrs),
        count: h.count,
        bounds: i.bounds.to_vec(),
        bucket_counts: h.bucket_counts.clone(),
        min: Some(metrics::MetricNumber::F64(h.min)),
        max: Some(metrics::MetricNumber::F64(h.max)),
        sum: metrics::MetricNumber::F64(h.sum),
        exemplars: Vec::new(),
    }
}

/// Ends the request's server span, a child of Spin's own request span.
pub fn span(name: &str, attrs: &Attrs, error: bool, start: Datetime) {
    let parent = tracing::outer_span_context();
    let context = tracing::SpanContext {
        trace_id: parent.trace_id.clone(),
        span_id: format!("{:016x}", wasi::random::random::get_random_u64()),
        trace_flags: parent.trace_flags,
        is_remote: false,
        trace_state: parent.trace_state.clone(),
    };
    tracing::on_start(&context);
    tracing::on_end(&tracing::SpanData {
        span_context: context,
        parent_span_id: parent.span_id,
        span_kind: tracing::SpanKind::Server,
        name: name.into(),
        start_time: start,
        end_time: wall_clock::now(),
        attributes: key_values(attrs),
        events: Vec::new(),
        links: Vec::new(),
        status: if error {
            tracing::Status::Error(String::new())
        } else {
            tracing::Status::Unset
        },
        instrumentation_scope: scope(),
        dropped_attributes: 0,
        dropped_events: 0,
        dropped_links: 0,
    });
}
