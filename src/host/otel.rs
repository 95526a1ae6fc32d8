//! `wasi:otel` (feature `otel`, Spin only): hands what the request's
//! [`Recorder`] holds and its span to Spin's OTLP exporter.
//!
//! An instance lives for one request, so every export is that request's
//! delta (`temporality: delta`, start = the request's start); Spin passes
//! each call straight to its exporter without aggregating across instances
//! (docs/OBSERVABILITY.md says what a backend must do with deltas).

use crate::telemetry::{encoded, Attrs, Histogram, Instrument, Points, Recorder};
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

fn key_values(attrs: &Attrs) -> Vec<types::KeyValue> {
    encoded(attrs)
        .map(|(k, value)| types::KeyValue {
            key: k.into(),
            value,
        })
        .collect()
}

/// Exports the request's metric deltas (nothing when there are none).
pub fn export_metrics(r: &Recorder, start: Datetime) {
    let recorded = r.metrics();
    if recorded.is_empty() {
        return;
    }
    let (start_time, time) = (start, wall_clock::now());
    let temporality = metrics::Temporality::Delta;
    let out = recorded.into_iter().map(|m| {
        let data = match m.points {
            Points::Sum(points) => metrics::MetricData::U64Sum(metrics::Sum {
                data_points: points.into_iter().map(|(a, v)| sum_point(a, v)).collect(),
                start_time,
                time,
                temporality,
                is_monotonic: true,
            }),
            Points::Histogram(points) => metrics::MetricData::F64Histogram(metrics::Histogram {
                data_points: points
                    .into_iter()
                    .map(|(a, h)| histogram_point(m.instrument, a, h))
                    .collect(),
                start_time,
                time,
                temporality,
            }),
        };
        metric(m.instrument, data)
    });
    let _ = metrics::export(&metrics::ResourceMetrics {
        resource: types::Resource {
            attributes: Vec::new(),
            schema_url: None,
        },
        scope_metrics: vec![metrics::ScopeMetrics {
            scope: scope(),
            metrics: out.collect(),
        }],
    });
}

fn sum_point(attrs: &Attrs, v: u64) -> metrics::SumDataPoint {
    metrics::SumDataPoint {
        attributes: key_values(attrs),
        value: metrics::MetricNumber::U64(v),
        exemplars: Vec::new(),
    }
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
