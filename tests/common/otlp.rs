//! A small OTLP/HTTP receiver for the Spin `wasi:otel` test: an HTTP/1.1
//! server on loopback that accepts `POST /v1/metrics` and `POST /v1/traces`
//! (protobuf, as Spin's exporter sends with `http/protobuf`), decodes them
//! with the `opentelemetry-proto` definitions and keeps what arrived.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Received {
    metrics: Vec<Metric>,
    spans: Vec<Span>,
    /// Paths that were not OTLP (answered 404).
    other: Vec<String>,
}

/// The receiver; its thread lives as long as the test binary.
pub struct OtlpReceiver {
    port: u16,
    got: Arc<Mutex<Received>>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind OTLP receiver");
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Received::default()));
        let shared = got.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let got = shared.clone();
                thread::spawn(move || serve(conn, &got));
            }
        });
        OtlpReceiver { port, got }
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for the exporter.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sum of every data point of counter `name` whose attributes include
    /// `attrs` (all exports added up: the gateway exports deltas).
    pub fn counter(&self, name: &str, attrs: &[(&str, &str)]) -> u64 {
        let got = self.got.lock().unwrap();
        got.metrics
            .iter()
            .filter(|m| m.name == name)
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => Some(&s.data_points),
                _ => None,
            })
            .flatten()
            .filter(|p| has(&p.attributes, attrs))
            .map(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => v as u64,
                Some(number_data_point::Value::AsDouble(v)) => v as u64,
                None => 0,
            })
            .sum()
    }

    /// Number of values recorded in histogram `name` with `attrs`.
    pub fn histogram_count(&self, name: &str, attrs: &[(&str, &str)]) -> u64 {
        let got = self.got.lock().unwrap();
        got.metrics
            .iter()
            .filter(|m| m.name == name)
            .filter_map(|m| match &m.data {
                Some(metric::Data::Histogram(h)) => Some(&h.data_points),
                _ => None,
            })
            .flatten()
            .filter(|p| has(&p.attributes, attrs))
            .map(|p| p.count)
            .sum()
    }

    /// The spans named `name` received so far.
    pub fn spans(&self, name: &str) -> Vec<Span> {
        let got = self.got.lock().unwrap();
        got.spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// Every metric name received (for failure messages).
    pub fn metric_names(&self) -> Vec<String> {
        let got = self.got.lock().unwrap();
        let mut names: Vec<String> = got.metrics.iter().map(|m| m.name.clone()).collect();
        names.extend(got.other.iter().map(|p| format!("(non-OTLP {p})")));
        names
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, check: impl Fn(&OtlpReceiver) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        check(self)
    }
}

/// The string value of attribute `key`, if any.
pub fn attribute(attrs: &[KeyValue], key: &str) -> Option<String> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn has(attrs: &[KeyValue], want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| attribute(attrs, k).as_deref() == Some(*v))
}

/// One keep-alive connection: requests with a `content-length` body.
fn serve(conn: TcpStream, got: &Mutex<Received>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut write = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut read = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if read.read_exact(&mut body).is_err() {
            return;
        }
        let status = {
            let mut g = got.lock().unwrap();
            match path.as_str() {
                "/v1/metrics" => match ExportMetricsServiceRequest::decode(body.as_slice()) {
                    Ok(req) => {
                        for rm in req.resource_metrics {
                            for sm in rm.scope_metrics {
                                g.metrics.extend(sm.metrics);
                            }
                        }
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                },
                "/v1/traces" => match ExportTraceServiceRequest::decode(body.as_slice()) {
                    Ok(req) => {
                        for rs in req.resource_spans {
                            for ss in rs.scope_spans {
                                g.spans.extend(ss.spans);
                            }
                        }
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                },
                other => {
                    g.other.push(other.to_string());
                    "404 Not Found"
                }
            }
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if write.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
