//! The client `@hey-api/openapi-ts` (Integr8sCode's generator, with its
//! frontend's plugins) generates from `openapi.json`, against the real
//! gateway. `clients/openapi-ts` is built once per run (`npm ci`, the
//! generator, `tsc`: the generated client and `src/stream.ts` must compile
//! together), then `dist/stream.js` streams an execution through the
//! generated SSE call as the frontend's execution view reads it, publishes
//! its events through the generated publish call, resumes with
//! `Last-Event-ID`, meets a 404 and reads a notification.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const RESULT: &str = r#"{"execution_id":"x","status":"completed","exit_code":0,"stdout":"hello\n","stderr":"","lang":"python","lang_version":"3.11","resource_usage":{"execution_time_wall_seconds":0.12,"peak_memory_kb":9000}}"#;

/// How long the whole client run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

fn run(dir: &PathBuf, program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run `{program}` (Node 20.19+ and npm are needed): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {}` in {} failed ({}):\n{}\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `clients/openapi-ts` installed from its lock file and built: the client
/// generated from the repository's `openapi.json`, compiled with the script.
fn built_client() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = crate_dir().join("clients/openapi-ts");
            run(
                &dir,
                "npm",
                &[
                    "ci",
                    "--prefer-offline",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ],
            )?;
            run(&dir, "npm", &["run", "--loglevel=error", "build"])?;
            Ok(dir.join("dist/stream.js"))
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the script to its end; its JSON lines.
fn stream_client(args: &[String]) -> Vec<Value> {
    let script = built_client();
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut child = Command::new(&node)
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run `{node}`: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "the generated client failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({"kind": "unparsed", "line": l})))
        .collect()
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

fn events<'a>(lines: &'a [Value], call: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == "event" && l["call"] == call)
        .collect()
}

fn event_types(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["data"]["event_type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn the_generated_client_streams_an_execution() {
    let env = TestEnv::start_with(|b| b.env("RETRY_MS", "200"));
    let id = new_execution_id();
    env.redis
        .put_execution(&ExecRecord::new(&id, "alice", "queued").with_result(RESULT));
    let lines = stream_client(&[
        format!("http://{}", env.gw.addr()),
        id.clone(),
        "alice".into(),
        jwt::token("alice", "user"),
        service_token(),
    ]);
    let transcript = lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let end = lines.last().cloned().unwrap_or_default();
    assert_eq!(end["reason"], "done", "{transcript}");

    let health = of_kind(&lines, "health")[0];
    assert_eq!(
        (&health["status"], &health["data"]["status"]),
        (&json!(200), &json!("ok"))
    );
    let openapi = of_kind(&lines, "openapi")[0];
    assert_eq!(
        (&openapi["status"], &openapi["openapi"]),
        (&json!(200), &json!("3.1.0"))
    );
    let refused = of_kind(&lines, "publish_refused")[0];
    assert_eq!(
        (&refused["status"], &refused["type"]),
        (&json!(403), &json!("ForbiddenError")),
        "{transcript}"
    );

    // Published through the generated call: 202 with a history id.
    let published = of_kind(&lines, "published");
    let exec_ids: Vec<&str> = published
        .iter()
        .filter(|p| p["event_type"] != "notification")
        .map(|p| {
            assert_eq!(p["status"], 202, "{transcript}");
            assert_eq!(p["data"]["channel"], exec_channel(&id));
            p["data"]["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(exec_ids.len(), EXECUTION_PHASES.len() + 1, "{transcript}");

    // The view: the status snapshot, every event once in order with its id,
    // the result filled from the record, then done.
    let view = events(&lines, "view");
    let mut want: Vec<String> = vec!["status".into()];
    want.extend(EXECUTION_PHASES.iter().map(|t| t.to_string()));
    want.push("result_stored".into());
    assert_eq!(event_types(&view), want, "{transcript}");
    assert_eq!(view[0]["event"], Value::Null, "an unnamed event");
    assert_eq!(
        view[0]["data"],
        json!({"event_type": "status", "execution_id": id, "timestamp": "2025-01-15T10:30:00.123456+00:00", "event_id": null, "status": "queued", "result": null})
    );
    for (event, history_id) in view[1..].iter().zip(&exec_ids) {
        assert_eq!(event["last_event_id"], *history_id, "{transcript}");
    }
    let result: Value = serde_json::from_str(RESULT).unwrap();
    let shown = of_kind(&lines, "view")[0];
    assert_eq!(shown["terminal"], true, "{transcript}");
    assert_eq!(shown["phase"], "queued");
    assert_eq!(shown["result"], result, "filled from the record");

    // Resumed after the second event: the status, the rest once, the end.
    let resumed = events(&lines, "resume");
    let mut want: Vec<String> = vec!["status".into()];
    want.extend(EXECUTION_PHASES[2..].iter().map(|t| t.to_string()));
    want.push("result_stored".into());
    assert_eq!(event_types(&resumed), want, "{transcript}");
    for (event, history_id) in resumed[1..].iter().zip(&exec_ids[2..]) {
        assert_eq!(event["last_event_id"], *history_id, "{transcript}");
    }

    // The only SSE error: the execution that does not exist.
    let errors = of_kind(&lines, "sse_error");
    assert_eq!(errors.len(), 1, "{transcript}");
    assert_eq!(errors[0]["call"], "missing");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("404"),
        "{transcript}"
    );

    // The notification, as `event: notification` with its history id.
    let note = of_kind(&lines, "notification");
    assert_eq!(note.len(), 1, "{transcript}");
    let note_published = published
        .iter()
        .find(|p| p["event_type"] == "notification")
        .unwrap_or_else(|| panic!("no notification published: {transcript}"));
    assert_eq!(note_published["status"], 202);
    assert_eq!(note[0]["event"], "notification");
    assert_eq!(note[0]["last_event_id"], note_published["data"]["id"]);
    assert_eq!(note[0]["data"]["subject"], "Execution finished");
}
