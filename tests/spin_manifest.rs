//! spin.toml and spin-p3.toml stay in step with the code: every variable
//! the gateway reads is declared for the component, templates name declared
//! application variables, secrets are marked secret, and the default Redis
//! URL parses. spin-p3.toml (the p3 build reading Spin variables) serves
//! every route spin.toml does, with the same variables and allowlist, and
//! builds the component its `source` names.

use sse_gateway::config::{kind_of, VARIABLES};
use sse_gateway::redis::target::parse_redis_url;
use toml::Table;

/// Both shipped manifests: the p2 Spin build's and the p3 one's.
const MANIFESTS: [&str; 2] = ["spin.toml", "spin-p3.toml"];

fn manifest_named(name: &str) -> Table {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    text.parse()
        .unwrap_or_else(|e| panic!("{name} is not valid TOML: {e}"))
}

fn manifest() -> Table {
    manifest_named("spin.toml")
}

fn component(m: &Table) -> &Table {
    m["component"]["sse-gateway"]
        .as_table()
        .expect("component sse-gateway")
}

/// Renders a `{{ name }}` template with the application variables' defaults.
fn render(template: &str, app_vars: &Table) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed template") + start;
        let name = rest[start + 2..end].trim();
        let var = app_vars
            .get(name)
            .unwrap_or_else(|| panic!("template names undeclared variable {name}"));
        out.push_str(var.get("default").and_then(|d| d.as_str()).unwrap_or(""));
        rest = &rest[end + 2..];
    }
    out + rest
}

#[test]
fn every_variable_the_code_reads_is_declared() {
    for file in MANIFESTS {
        let m = manifest_named(file);
        let vars = component(&m)["variables"]
            .as_table()
            .unwrap_or_else(|| panic!("{file}: component variables"));
        for name in VARIABLES {
            assert!(vars.contains_key(*name), "{file} does not declare {name}");
        }
        for name in vars.keys() {
            assert!(
                VARIABLES.contains(&name.as_str()),
                "{file} declares unused {name}"
            );
        }
    }
}

/// A manifest default is the code's (`config::kind_of`): the one table of
/// names, defaults and bounds. Variables the manifest builds from others
/// (`redis_url` from `redis_host`, ...) and required ones have none.
#[test]
fn every_default_is_the_codes() {
    for file in MANIFESTS {
        let m = manifest_named(file);
        let app_vars = m["variables"].as_table().expect("application variables");
        let vars = component(&m)["variables"].as_table().unwrap();
        let mut compared = 0;
        for name in VARIABLES {
            if vars[*name].as_str() != Some(&format!("{{{{ {name} }}}}")) {
                continue;
            }
            let Some(default) = app_vars[*name].get("default").and_then(|d| d.as_str()) else {
                continue;
            };
            assert_eq!(
                default,
                kind_of(name).default_text(),
                "{file}: the default of {name}"
            );
            compared += 1;
        }
        assert!(compared >= 30, "{file}: {compared} defaults compared");
    }
}

#[test]
fn templates_resolve_and_defaults_are_valid() {
    for file in MANIFESTS {
        let m = manifest_named(file);
        let app_vars = m["variables"].as_table().expect("application variables");
        let vars = component(&m)["variables"].as_table().unwrap();
        for template in vars.values() {
            render(template.as_str().expect("string template"), app_vars);
        }
        let url = render(vars["redis_url"].as_str().unwrap(), app_vars);
        let target = parse_redis_url(&url).expect("default redis_url parses");
        assert_eq!(
            (target.host.as_str(), target.port, target.password),
            ("127.0.0.1", 6379, None),
            "{file}"
        );
    }
}

#[test]
fn secrets_are_secret_and_redis_is_allowed() {
    for file in MANIFESTS {
        let m = manifest_named(file);
        let app_vars = m["variables"].as_table().unwrap();
        for secret in ["jwt_secret", "redis_password", "redis_tls_key_pem"] {
            assert_eq!(
                app_vars[secret].get("secret").and_then(|s| s.as_bool()),
                Some(true),
                "{file}: {secret}"
            );
        }
    }
    let m = manifest();
    let app_vars = m["variables"].as_table().unwrap();
    let hosts = component(&m)["allowed_outbound_hosts"]
        .as_array()
        .expect("allowlist");
    // Spin skips entries that render empty (unset redis_allowed_hosts,
    // dns_server), so the defaults allow exactly the default Redis.
    let rendered: Vec<String> = hosts
        .iter()
        .map(|h| render(h.as_str().unwrap(), app_vars))
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(rendered, vec!["tcp://127.0.0.1:6379".to_string()]);
    // dns_server is allowed verbatim: its documented tcp:// form must be
    // one the gateway parses too.
    let dns = hosts
        .iter()
        .filter_map(|h| h.as_str())
        .find(|h| h.contains("dns_server"))
        .expect("the resolver is allowed");
    assert_eq!(dns.trim(), "{{ dns_server }}");
    assert!(sse_gateway::redis::dns::parse_server("tcp://10.96.0.10:53").is_ok());
    let build = component(&m)["build"]["command"].as_str().unwrap();
    assert!(
        build.contains("--target wasm32-wasip2") && !build.contains("portable"),
        "{build}"
    );
}

/// `[[trigger.http]]` entries as (route, component).
fn routes(m: &Table) -> Vec<(String, String)> {
    m["trigger"]["http"]
        .as_array()
        .expect("[[trigger.http]] entries")
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().expect("string").to_string();
            (field("route"), field("component"))
        })
        .collect()
}

#[test]
fn the_p3_manifest_serves_what_spin_toml_does() {
    let p2 = manifest();
    let p3 = manifest_named("spin-p3.toml");
    // Every route spin.toml sends to the gateway (the events, the admin
    // replay status path, the dev_mode demo page) reaches it under p3 too.
    let p3_routes = routes(&p3);
    for route in routes(&p2) {
        assert!(
            p3_routes.contains(&route),
            "spin-p3.toml lacks spin.toml's route {route:?}"
        );
    }
    // The p3-spin-variables build reads exactly the names the Spin build
    // does (config::VARIABLES through spin:variables), so both manifests
    // declare, assemble and allow them alike.
    assert_eq!(p3["variables"], p2["variables"], "[variables]");
    for key in ["variables", "allowed_outbound_hosts"] {
        assert_eq!(component(&p3)[key], component(&p2)[key], "component {key}");
    }
}

#[test]
fn the_p3_manifest_builds_the_component_it_serves() {
    let m = manifest_named("spin-p3.toml");
    let c = component(&m);
    let source = c["source"].as_str().expect("source");
    // The variant that reads Spin variables, where scripts/build.sh puts it.
    assert_eq!(
        source,
        "target/p3-spin/wasm32-wasip2/release/sse_gateway.wasm"
    );
    let build = c["build"]["command"]
        .as_str()
        .expect("spin-p3.toml has a [component.sse-gateway.build] command");
    // A plain cargo build (Cargo.toml's [patch] brings the fixed
    // wit-bindgen): the variant that reads Spin variables, into the
    // folder `source` names, as scripts/build.sh p3-spin does.
    assert_eq!(
        build.trim(),
        "cargo build --target wasm32-wasip2 --release --no-default-features --features p3-spin-variables --target-dir target/p3-spin"
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build.sh");
    let text = std::fs::read_to_string(&script).expect("scripts/build.sh");
    assert!(
        text.contains("p3-spin) dir=target/p3-spin features=(--no-default-features --features p3-spin-variables)"),
        "scripts/build.sh p3-spin no longer builds --features p3-spin-variables into target/p3-spin"
    );
    let cargo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
    )
    .expect("Cargo.toml");
    assert!(
        cargo.contains("[patch.crates-io]\nwit-bindgen = { path = \"vendor/wit-bindgen-0.57.1\" }"),
        "the p3 builds' fixed wit-bindgen is no longer patched in by Cargo.toml"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "scripts/build.sh is not executable");
    }
}
