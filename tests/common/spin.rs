//! What running the component under `spin up` needs: the Spin CLI, the
//! shipped manifest (or a copy that differs only where a test must say so)
//! and the mapping from the portable build's environment names to the
//! manifest's application variables.

use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Spin CLI: `$SPIN`, else `spin` on PATH, else what
/// `../shared/spin/install.sh` unpacks (it prints the path). Err names
/// every place tried.
pub fn spin_bin() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(find_spin).clone()
}

fn find_spin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SPIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("SPIN={} is not a file", path.display()))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("spin");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let install = crate_dir().join("../shared/spin/install.sh");
    if install.is_file() {
        let out = Command::new(&install)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {}: {e}", install.display()))?;
        let printed = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
        if out.status.success() && path.is_file() {
            return Ok(path);
        }
        return Err(format!(
            "{} failed ({}): {}",
            install.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Err(format!(
        "Spin not found (tried $SPIN, spin on PATH, {})",
        install.display()
    ))
}

/// The `SPIN_VARIABLE_*` environment for a gateway configured with
/// `env` (the portable build's names). Each setting becomes the application
/// variable of the same name; `REDIS_URL` becomes the shipped manifest's
/// `redis_scheme`, `redis_username`, `redis_password`, `redis_host`,
/// `redis_port` and `redis_db`, from which `spin.toml` assembles
/// `redis_url` and its outbound allowlist. Err for a URL they cannot express.
pub fn spin_variables(env: &BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (key, value) in env {
        if key == "REDIS_URL" {
            for (k, v) in redis_url_parts(value)? {
                out.push((format!("SPIN_VARIABLE_{k}"), v));
            }
        } else {
            out.push((format!("SPIN_VARIABLE_{key}"), value.clone()));
        }
    }
    Ok(out)
}

/// `redis[s]://[[user]:password@]host[:port][/db]` as the manifest's
/// variables (`redis_scheme`, `redis_username`, `redis_password`,
/// `redis_host`, `redis_port`, `redis_db`).
fn redis_url_parts(url: &str) -> Result<Vec<(&'static str, String)>, String> {
    let unsupported = || {
        format!(
            "REDIS_URL={url:?} has no equivalent in spin.toml (redis_scheme, redis_username, \
             redis_password, redis_host, redis_port, redis_db build \
             `SCHEME://USER:PASSWORD@HOST:PORT/DB`)"
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(unsupported)?;
    if scheme != "redis" && scheme != "rediss" {
        return Err(unsupported());
    }
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (auth, rest),
        None => ("", rest),
    };
    let (username, password) = auth.split_once(':').unwrap_or(("", auth));
    let (hostport, db) = match rest.split_once('/') {
        Some((hp, db)) => (hp, if db.is_empty() { "0" } else { db }),
        None => (rest, "0"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (hostport, "6379"),
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(unsupported());
    }
    Ok(vec![
        ("REDIS_SCHEME", scheme.to_string()),
        ("REDIS_USERNAME", username.to_string()),
        ("REDIS_HOST", host.to_string()),
        ("REDIS_PORT", port.to_string()),
        ("REDIS_PASSWORD", password.to_string()),
        ("REDIS_DB", db.to_string()),
    ])
}

/// How a test's manifest differs from the shipped allowlist.
#[derive(Clone, Debug, Default)]
pub struct SpinOutbound {
    /// Entries added before the shipped ones.
    pub extra: Vec<String>,
    /// The whole list replaced by these.
    pub only: Option<Vec<String>>,
}

/// The manifest `spin up` runs: the shipped manifest of the build under
/// test (`spin.toml`, or `spin-p3.toml` in the p3 passes) itself when
/// `wasm` is the file its `source` names and no entry is added; otherwise
/// a copy in `dir` whose only changes are the `source` line (an absolute
/// path to `wasm`) and `outbound` applied to `allowed_outbound_hosts`.
pub fn spin_manifest(wasm: &Path, outbound: &SpinOutbound, dir: &Path) -> Result<PathBuf, String> {
    let (file, built) = if super::p3::p3_build() {
        (
            "spin-p3.toml",
            "target/p3-spin/wasm32-wasip2/release/sse_gateway.wasm",
        )
    } else {
        ("spin.toml", "target/wasm32-wasip2/release/sse_gateway.wasm")
    };
    let source_line = format!("source = {built:?}");
    let source_line = source_line.as_str();
    const ALLOWED: &str = "allowed_outbound_hosts = [";
    let shipped = crate_dir().join(file);
    let named = crate_dir().join(built);
    let same = |a: &Path, b: &Path| a.canonicalize().ok() == b.canonicalize().ok();
    if same(wasm, &named) && outbound.extra.is_empty() && outbound.only.is_none() {
        return Ok(shipped);
    }
    let text = fs::read_to_string(&shipped).map_err(|e| format!("read {file}: {e}"))?;
    if !text.contains(source_line) || !text.contains(ALLOWED) {
        return Err(format!(
            "{file} lacks `{source_line}` or `{ALLOWED}`: the harness cannot point it at {}",
            wasm.display()
        ));
    }
    let source = format!("source = {:?}", wasm.display().to_string());
    let mut text = text.replacen(source_line, &source, 1);
    let quoted = |entries: &[String]| {
        entries
            .iter()
            .map(|e| format!("{e:?}, "))
            .collect::<String>()
    };
    if let Some(only) = &outbound.only {
        let start = text.find(ALLOWED).unwrap() + ALLOWED.len();
        let end = start
            + text[start..]
                .find(']')
                .ok_or("unclosed allowed_outbound_hosts")?;
        text.replace_range(start..end, &quoted(only));
    }
    let allowed = format!("{ALLOWED}{}", quoted(&outbound.extra));
    let text = text.replacen(ALLOWED, &allowed, 1);
    let path = dir.join(file);
    fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(url: &str) -> Vec<(String, String)> {
        let env = BTreeMap::from([("REDIS_URL".to_string(), url.to_string())]);
        spin_variables(&env).unwrap()
    }

    #[test]
    fn redis_urls_map_to_the_manifest_variables() {
        let get = |v: &[(String, String)], k: &str| {
            v.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let v = vars("redis://127.0.0.1:7001");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_HOST"), "127.0.0.1");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_PORT"), "7001");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_PASSWORD"), "");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_DB"), "0");
        let v = vars("redis://:p%40ss@localhost:6380/3");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_HOST"), "localhost");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_PASSWORD"), "p%40ss");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_DB"), "3");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_SCHEME"), "redis");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_USERNAME"), "");
        let v = vars("rediss://app:pw@localhost:6390");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_SCHEME"), "rediss");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_USERNAME"), "app");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_PASSWORD"), "pw");
        assert_eq!(get(&v, "SPIN_VARIABLE_REDIS_DB"), "0");
        for bad in ["http://x", "rediss://", "redis://h:port"] {
            let env = BTreeMap::from([("REDIS_URL".to_string(), bad.to_string())]);
            assert!(spin_variables(&env).is_err(), "{bad}");
        }
    }
}
