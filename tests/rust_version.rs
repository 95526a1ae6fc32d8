//! Cargo.toml's `rust-version` holds for every build: no package the gateway
//! can link (any feature set, any target, the tests' dev-dependencies
//! included) declares a newer `rust_version` than ours, as `cargo metadata`
//! resolves them from Cargo.lock.
//!
//! `--all-features` resolves the union of every build's graph: `p3` and
//! `spin`/`portable` cannot be compiled together (a `compile_error!`), but
//! `cargo metadata` compiles nothing, so one run covers the p2 builds,
//! `otel` and both p3 builds.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;

/// `cargo metadata` of this crate, offline when the local cache holds every
/// package's manifest. It needs those of every platform (windows-sys,
/// wasm-bindgen, ...), which a cache filled by Linux and wasm32 builds alone
/// lacks; the lockfile pins them, so the fallback downloads exactly those.
fn metadata() -> Value {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let run = |offline: bool| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["metadata", "--format-version", "1", "--locked"])
            .arg("--all-features")
            .args(["--manifest-path", manifest]);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output().expect("cargo metadata runs")
    };
    let mut out = run(true);
    if !out.status.success() {
        println!(
            "cargo metadata --offline failed, retrying online: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out = run(false);
    }
    assert!(
        out.status.success(),
        "cargo metadata --locked failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// "1.94" or "1.88.0" as (major, minor, patch).
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("rust_version {v:?} is not N.N[.N]"))
    });
    let major = parts.next().unwrap();
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

#[test]
fn no_linked_package_needs_a_newer_rust_than_ours() {
    let meta = metadata();
    let packages: HashMap<&str, &Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let resolve = &meta["resolve"];
    let nodes: HashMap<&str, &Value> = resolve["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = resolve["root"].as_str().expect("resolve root");
    let ours_text = packages[root]["rust_version"]
        .as_str()
        .expect("Cargo.toml sets rust-version");
    let ours = version(ours_text);

    // Everything reachable from sse-gateway: normal, build and (for the
    // test builds) dev dependencies, on every target.
    let mut seen = HashSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            todo.push(dep["pkg"].as_str().unwrap());
        }
    }
    let mut newer: Vec<String> = seen
        .iter()
        .filter_map(|id| {
            let p = packages[id];
            let theirs = p["rust_version"].as_str()?;
            (version(theirs) > ours).then(|| {
                format!(
                    "{} {} declares rust-version {theirs}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                )
            })
        })
        .collect();
    newer.sort();
    assert!(
        newer.is_empty(),
        "Cargo.toml says rust-version = {ours_text:?}, but {}",
        newer.join("; ")
    );
    // A graph this small would mean the features or the lockfile went
    // missing, and the check above passed on nothing.
    assert!(seen.len() > 100, "only {} packages resolved", seen.len());
}
