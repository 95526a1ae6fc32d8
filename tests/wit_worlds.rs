//! Each built component imports nothing outside its world in `wit/`, so the
//! portable build links on any WASI-HTTP host and the Spin build on Spin.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ns:pkg/iface@major.minor` (patch dropped: 0.2.x hosts accept 0.2.y).
fn key(full: &str) -> String {
    match full.split_once('@') {
        Some((name, ver)) => {
            let mut parts = ver.split('.');
            let (major, minor) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            format!("{name}@{major}.{minor}")
        }
        None => full.to_string(),
    }
}

fn world_imports(world: &str) -> BTreeSet<String> {
    let mut resolve = wit_parser::Resolve::default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    let (pkg, _) = resolve.push_dir(&root).expect("wit/ parses");
    let world = resolve
        .select_world(&[pkg], Some(world))
        .expect("world exists");
    resolve.worlds[world]
        .imports
        .keys()
        .filter_map(|k| match k {
            wit_parser::WorldKey::Interface(id) => resolve.id_of(*id),
            wit_parser::WorldKey::Name(_) => None,
        })
        .map(|n| key(&n))
        .collect()
}

/// Top-level component imports (nested components' own imports excluded).
fn component_imports(wasm: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(wasm).expect("component built");
    let mut depth = 0usize;
    let mut out = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.expect("valid component") {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(s) if depth == 1 => {
                for imp in s {
                    out.insert(key(imp.expect("import").name.name));
                }
            }
            _ => {}
        }
    }
    out
}

/// The component from `env_var` (set by scripts/test.sh, which builds both
/// once), else a fresh build in its own target dir.
fn build(env_var: &str, features: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = dir.join("target").join(match features {
        [] => "spin",
        ["otel"] => "otel",
        _ => "e2e",
    });
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir);
    if !features.is_empty() {
        cmd.args(["--no-default-features", "--features", &features.join(",")]);
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "component build failed");
    target_dir.join("wasm32-wasip2/release/sse_gateway.wasm")
}

fn check(world: &str, env_var: &str, features: &[&str]) -> BTreeSet<String> {
    let allowed = world_imports(world);
    let imports = component_imports(&build(env_var, features));
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:sockets/tcp@")),
        "sanity: the component should import wasi:sockets: {imports:?}"
    );
    let outside: Vec<_> = imports.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "{world} build imports outside wit/ world `{world}`: {outside:?}"
    );
    imports
}

#[test]
fn portable_build_stays_in_the_portable_world() {
    let _ = check("portable", "SSE_GATEWAY_WASM", &["portable"]);
    assert!(!world_imports("portable")
        .iter()
        .any(|i| i.starts_with("fermyon:")));
}

/// `wasi:otel` is linked by Spin only with `--experimental-wasi-otel`, so
/// only the `otel` build may import it; plain `spin up` must instantiate
/// the default build.
#[test]
fn spin_build_stays_in_the_spin_world() {
    let _ = check("spin", "SSE_GATEWAY_SPIN_WASM", &[]);
    assert!(world_imports("spin").contains("fermyon:spin/variables@2.0"));
    assert!(!world_imports("spin")
        .iter()
        .any(|i| i.starts_with("wasi:otel/")));
}

#[test]
fn otel_build_stays_in_the_spin_otel_world() {
    let imports = check("spin-otel", "SSE_GATEWAY_OTEL_WASM", &["otel"]);
    assert!(imports.contains("wasi:otel/metrics@0.2"), "{imports:?}");
    assert!(imports.contains("wasi:otel/tracing@0.2"), "{imports:?}");
}

/// `wasi:otel` is in the Spin worlds only.
#[test]
fn only_spin_worlds_allow_wasi_otel() {
    assert!(!world_imports("portable")
        .iter()
        .any(|i| i.starts_with("wasi:otel/")));
    assert!(world_imports("spin-otel").contains("wasi:otel/metrics@0.2"));
}
