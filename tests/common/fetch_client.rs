//! Drives `tests/clients/fetch_client.mjs` (the Python service's fetch-based
//! browser client, re-created for the tests) under Node as a subprocess and
//! collects its JSON lines as they come, so a test can act mid-stream.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running fetch client and every line it printed so far.
pub struct FetchClient {
    child: Child,
    lines: Receiver<Value>,
    /// Every line seen, in order (for assertions and failure messages).
    pub seen: Vec<Value>,
    label: String,
}

impl FetchClient {
    /// Starts the client on `http://addr{path}` with `headers` and extra
    /// options (`--until-terminal`, `--max-attempts N`); it gives up by
    /// itself after `--timeout-ms` (60 s unless given).
    pub fn spawn(addr: SocketAddr, path: &str, headers: &[(&str, &str)], opts: &[&str]) -> Self {
        let script = super::crate_dir().join("tests/clients/fetch_client.mjs");
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
        let mut cmd = Command::new(&node);
        cmd.arg(&script).arg(format!("http://{addr}{path}"));
        for (k, v) in headers {
            cmd.arg("--header").arg(format!("{k}: {v}"));
        }
        cmd.args(opts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "could not run `{node} {}` (Node 18+ is needed): {e}",
                script.display()
            )
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"kind": "unparsed", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        FetchClient {
            child,
            lines: rx,
            seen: Vec::new(),
            label: path.to_string(),
        }
    }

    /// The next line, or `None` after `timeout` or once the client exited.
    pub fn next(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(v) => {
                self.seen.push(v.clone());
                Some(v)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads lines until one matches `pred`; panics with everything seen
    /// when none does within `timeout`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "{}: no {what} within {timeout:?}; lines so far:\n{}",
                    self.label,
                    self.transcript()
                ),
            }
        }
    }

    /// Waits for the next SSE event whose data has `event_type` = `t`.
    pub fn wait_event_type(&mut self, timeout: Duration, t: &str) -> Value {
        self.wait_for(timeout, &format!("{t} event"), |v| {
            v["kind"] == "event" && v["data"]["event_type"] == t
        })
    }

    /// Reads to the `end` line (panics if there is none within `timeout`)
    /// and returns it.
    pub fn wait_end(&mut self, timeout: Duration) -> Value {
        let end = self.wait_for(timeout, "end", |v| v["kind"] == "end");
        let _ = self.child.wait();
        end
    }

    /// The lines of one kind (`event`, `open`, `error`, `refused`).
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["kind"] == kind).collect()
    }

    /// The `data` of every event line, in order.
    pub fn event_data(&self) -> Vec<&Value> {
        self.of_kind("event")
            .into_iter()
            .map(|v| &v["data"])
            .collect()
    }

    /// Everything seen, one line each, for failure messages.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FetchClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
