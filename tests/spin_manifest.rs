//! spin.toml stays in step with the code: every variable the gateway reads
//! is declared for the component, templates name declared application
//! variables, secrets are marked secret, and the default Redis URL parses.

use sse_gateway::config::{parse_redis_url, VARIABLES};
use toml::Table;

fn manifest() -> Table {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spin.toml"))
        .expect("spin.toml exists");
    text.parse().expect("spin.toml is valid TOML")
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
    let m = manifest();
    let vars = component(&m)["variables"]
        .as_table()
        .expect("component variables");
    for name in VARIABLES {
        assert!(
            vars.contains_key(*name),
            "spin.toml does not declare {name}"
        );
    }
    for name in vars.keys() {
        assert!(
            VARIABLES.contains(&name.as_str()),
            "spin.toml declares unused {name}"
        );
    }
}

#[test]
fn templates_resolve_and_defaults_are_valid() {
    let m = manifest();
    let app_vars = m["variables"].as_table().expect("application variables");
    let vars = component(&m)["variables"].as_table().unwrap();
    for template in vars.values() {
        render(template.as_str().expect("string template"), app_vars);
    }
    let url = render(vars["redis_url"].as_str().unwrap(), app_vars);
    let target = parse_redis_url(&url).expect("default redis_url parses");
    assert_eq!(
        (target.host.as_str(), target.port, target.password),
        ("127.0.0.1", 6379, None)
    );
}

#[test]
fn secrets_are_secret_and_redis_is_allowed() {
    let m = manifest();
    let app_vars = m["variables"].as_table().unwrap();
    for secret in ["jwt_secret", "redis_password", "redis_tls_key_pem"] {
        assert_eq!(
            app_vars[secret].get("secret").and_then(|s| s.as_bool()),
            Some(true),
            "{secret}"
        );
    }
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
    assert!(sse_gateway::dns::parse_server("tcp://10.96.0.10:53").is_ok());
    let build = component(&m)["build"]["command"].as_str().unwrap();
    assert!(
        build.contains("--target wasm32-wasip2") && !build.contains("portable"),
        "{build}"
    );
}
