//! The layers hold (ARCHITECTURE.md, issue 23, the whiteboard's rules in
//! `../shared/architecture/target.json`, our copy with today's folders in
//! `docs/architecture.json`):
//! - the core's folders import one way, `machine` → `http` → `rules` →
//!   `redis`: no file names a layer above its own;
//! - the Redis layer (`src/redis/`: RESP, sessions, the shared
//!   connections, dialing, failure texts) never reaches up into the stream
//!   machine and knows no HTTP answer: none of its files names
//!   `crate::machine`, `crate::http` or `ApiError`;
//! - it reads no configuration either (`crate::config` leads to the HTTP
//!   layer's keys): a connection gets its `target::RedisTarget`;
//! - the shells move bytes and time in and out of the core, and decide
//!   nothing: a shell file that defines a duration, a size limit or a
//!   close text fails here, naming the line, and so does one that names
//!   the rules (`src/rules/`: events, outbox, history, SSE framing, result
//!   filling, limits, identity, replay sessions) instead of asking the
//!   machine or the HTTP layer.
//!
//! Shells: `src/host/` (WASI p2), `src/p3/` (WASIp3) and the native
//! benchmark server `bench/src/native.rs`. What counts as a rule:
//! - a `const` of an integer or `Duration` type given a number (a limit or
//!   a timeout; a constant re-exported from the core is fine);
//! - a number written with thousands separators (`32_768`, `200_000_000`:
//!   limits and nanosecond conversions) or a `Duration::from_*` of a number;
//! - a string literal with a close or failure reason in it ("lost",
//!   "overflow", "redirect", "did not answer"); log event names
//!   (`redis_subscription_lost`) are names, not texts, and pass.
//!
//! The `clock.rs` files convert the host's clock units and may write them.
//! I/O buffer sizes (`chunks(4096)`, a 16 KiB read) are how bytes move, not
//! when a stream ends, and are not flagged.

use std::fs;
use std::path::{Path, PathBuf};

fn shell_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("bench/src/native.rs")];
    for dir in ["src/host", "src/p3"] {
        for entry in fs::read_dir(root.join(dir)).expect("shell dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a line: comments and doc comments dropped.
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with("//") {
        return "";
    }
    match line.find(" // ") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// String literals on a line (no escapes across quotes in shell code).
fn literals(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

fn defines_a_limit(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix("const ") else {
        return false;
    };
    let Some((ty, value)) = rest.split_once(':').and_then(|(_, r)| r.split_once('=')) else {
        return false;
    };
    let numeric = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i32", "i64", "Duration",
    ];
    numeric.contains(&ty.trim())
        && value.chars().any(|c| c.is_ascii_digit())
        && !value.contains("crate::")
        && !value.contains("sse_gateway::")
}

fn separated_number(line: &str) -> bool {
    let b = line.as_bytes();
    (1..b.len().saturating_sub(3)).any(|i| {
        b[i] == b'_'
            && b[i - 1].is_ascii_digit()
            && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
            && (i < 2 || !b[i - 2].is_ascii_alphabetic())
    }) || ["from_secs(", "from_millis(", "from_nanos(", "from_micros("]
        .iter()
        .any(|f| {
            line.split(f)
                .skip(1)
                .any(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
}

fn close_text(line: &str) -> Option<String> {
    let words = ["lost", "overflow", "redirect", "did not answer"];
    literals(line)
        .into_iter()
        .filter(|l| !l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .find(|l| words.iter().any(|w| l.to_ascii_lowercase().contains(w)))
        .map(str::to_string)
}

/// Every rule-like line of `source`, as "line: why".
fn findings(source: &str, is_clock: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (n, raw) in source.lines().enumerate() {
        let line = code(raw);
        if defines_a_limit(line) {
            out.push(format!(
                "{}: defines a limit or duration: {}",
                n + 1,
                line.trim()
            ));
        } else if !is_clock && separated_number(line) {
            out.push(format!(
                "{}: a duration or size literal: {}",
                n + 1,
                line.trim()
            ));
        }
        if let Some(text) = close_text(line) {
            out.push(format!("{}: a close or failure text {text:?}", n + 1));
        }
    }
    out
}

/// The `.rs` files under `src/<layer>/`.
fn layer_files(layer: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("a layer folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    walk(&root, &mut files);
    files.sort();
    files
}

/// Each line of `source` whose code names one of `names`, as
/// "line: name: code".
fn naming(source: &str, names: &[&str]) -> Vec<String> {
    let lines = source.lines().enumerate();
    lines
        .filter_map(|(n, raw)| {
            let line = code(raw);
            let name = names.iter().find(|name| line.contains(*name))?;
            Some(format!("{}: {name}: {}", n + 1, line.trim()))
        })
        .collect()
}

/// [`naming`] over `files`, each finding led by its path.
fn files_naming(files: &[PathBuf], names: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let source = fs::read_to_string(file).expect("a source file");
        for line in naming(&source, names) {
            found.push(format!("{}:{line}", file.display()));
        }
    }
    found
}

/// The core's layers, top first: each may name only those after it.
const LAYERS: [&str; 4] = ["machine", "http", "rules", "redis"];

/// Imports go one way: the machine answers in HTTP terms and applies the
/// rules, the rules read Redis values, and no layer names one above it.
#[test]
fn each_layer_names_only_the_layers_below_it() {
    let mut found = Vec::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        let files = layer_files(layer);
        assert!(files.len() >= 5, "{layer} was found: {files:?}");
        let above: Vec<String> = LAYERS[..i].iter().map(|a| format!("crate::{a}")).collect();
        let above: Vec<&str> = above.iter().map(String::as_str).collect();
        found.extend(files_naming(&files, &above));
    }
    assert!(
        found.is_empty(),
        "a layer reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_redis_layer_never_reaches_up_and_knows_no_http_answer() {
    let upward = ["crate::machine", "crate::http", "crate::config", "ApiError"];
    let files = layer_files("redis");
    assert!(files.len() >= 10, "the Redis layer was found: {files:?}");
    let found = files_naming(&files, &upward);
    assert!(
        found.is_empty(),
        "the Redis layer reaches up:\n{}",
        found.join("\n")
    );
}

/// The stream machine speaks logical Redis operations only (`Op::Join`,
/// `Op::Run`, and what came of them): no file of it holds a Redis session
/// or its bytes but the p2 adapter that carries the operations out on one
/// connection (`own.rs`) and the one-shot command (`command.rs`).
#[test]
fn the_stream_machine_holds_no_redis_session() {
    let files: Vec<PathBuf> = layer_files("machine")
        .into_iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !["own.rs", "command.rs"].contains(&name) && !name.contains("tests")
        })
        .filter(|f| !f.parent().is_some_and(|d| d.ends_with("tests")))
        .collect();
    assert!(files.len() >= 8, "the machine was found: {files:?}");
    let found = files_naming(&files, &["Session", "RespError", "take_outgoing"]);
    assert!(
        found.is_empty(),
        "the machine holds a Redis session:\n{}",
        found.join("\n")
    );
    // What it catches: the machine's fields and calls before issue 23.
    for caught in [
        "    session: Session,",
        "        self.session.take_outgoing()",
        "            Err(RespError::Moved(moved))",
    ] {
        assert_eq!(
            naming(caught, &["Session", "RespError", "take_outgoing"]).len(),
            1
        );
    }
}

#[test]
fn no_shell_file_defines_a_duration_a_size_limit_or_a_close_text() {
    let files = shell_files();
    assert!(files.len() >= 10, "the shells were found: {files:?}");
    let mut all = Vec::new();
    for path in files {
        let source = fs::read_to_string(&path).expect("read");
        let is_clock = path.file_name().is_some_and(|n| n == "clock.rs");
        for f in findings(&source, is_clock) {
            all.push(format!("{}:{f}", path.display()));
        }
    }
    assert!(all.is_empty(), "rules in a shell:\n{}", all.join("\n"));
}

/// How a shell would name the rules (`src/rules/`).
const RULES: [&str; 2] = ["crate::rules", "sse_gateway::rules"];

/// Every line of `source` that names the rules.
fn rule_imports(source: &str) -> Vec<String> {
    naming(source, &RULES)
}

#[test]
fn no_shell_file_imports_a_rule_module() {
    let all = files_naming(&shell_files(), &RULES);
    assert!(
        all.is_empty(),
        "a shell applies a rule:\n{}",
        all.join("\n")
    );
    // What it catches: the imports the shells had before issue 23.
    for caught in [
        "use crate::rules::limits::BodyBudget;",
        "use crate::rules::outbox::Close;",
        "    let declared = crate::rules::limits::content_length(&h);",
        "use sse_gateway::rules::limits::{Backpressure, InstanceAdmission};",
    ] {
        assert_eq!(rule_imports(caught).len(), 1, "{caught}");
    }
    for passed in [
        "use crate::machine::timers::BodyEnd;",
        "use crate::http::body::BodyBudget;",
        "use crate::sse_extra::X;",
        "// crate::rules::limits in a comment",
    ] {
        assert!(rule_imports(passed).is_empty(), "{passed}");
    }
}

/// The checks catch what they are for (the rules issue 23 found in the p3
/// shell, as they were written there), and pass what shells must write.
#[test]
fn the_checks_catch_the_rules_that_were_in_the_p3_shell() {
    let caught = [
        "const MAX_QUEUE: usize = 32_768;",
        "const ABORT_GRACE_NS: u64 = 200_000_000;",
        "const ABORT_GRACE_MS: u64 = 200;",
        "    let millis = clock::now().saturating_sub(started) / 1_000_000;",
        "    sleep(Duration::from_millis(200));",
        r#"    End::Lost(why) if why.is_empty() => "subscription lost".to_string(),"#,
        r#"    End::Overflow => "subscription queue overflowed".into(),"#,
        r#"    End::Moved(_) => "too many cluster redirects".into(),"#,
        r#"    return Err::<(), String>("redis did not answer in time".into())"#,
    ];
    for line in caught {
        assert_eq!(findings(line, false).len(), 1, "not caught: {line}");
    }
    let passed = [
        "const READ_CHUNK: u64 = crate::machine::READ_CHUNK as u64;",
        r#"const SCOPE: &str = "sse-gateway";"#,
        "    for chunk in bytes.chunks(4096) {",
        r#"    log("redis_subscription_lost", &[("detail", detail.as_str().into())]);"#,
        "    /// 1,024 cut 14 of 20 readers: lost 32_768 messages",
        "    static OPEN: Cell<usize> = const { Cell::new(0) };",
        "    let x = v2_000;",
    ];
    for line in passed {
        assert!(findings(line, false).is_empty(), "flagged: {line}");
    }
}
