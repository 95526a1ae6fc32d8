//! The manifests under `deploy/` stay in step with the apps they deploy:
//!
//! - each SpinApp sets the fields docs/DEPLOY.md says it sets, and only
//!   fields spin-operator's `SpinApp` type has;
//! - every variable it sets is an application variable of the app's Spin
//!   manifest (`spin.toml`, `spin-p3.toml`) that reaches the code (a
//!   component variable in `config::VARIABLES`, or the allowlist), and the
//!   required ones are set;
//! - every `secret = true` variable comes from a `secretKeyRef` into the
//!   Secret template, never a literal, and the template holds no secret;
//! - the images are what `scripts/package.sh` pushes for the reference the
//!   docs release;
//! - the plain Deployment runs what the SpinApp does (the image, variables,
//!   probes and resources) under the shim's RuntimeClass, and its Service
//!   selects its pods.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sse_gateway::config::VARIABLES;
use toml::Table;
use yaml_rust2::{Yaml, YamlLoader};

/// Each SpinApp and the Spin manifest of the app its image holds.
const SPINAPPS: [(&str, &str); 2] = [
    ("deploy/spinkube/spinapp.yaml", "spin.toml"),
    ("deploy/spinkube/spinapp-p3.yaml", "spin-p3.toml"),
];
const SECRET: &str = "deploy/secret.yaml";
const DEPLOYMENT: &str = "deploy/kubernetes/deployment.yaml";
const SERVICE: &str = "deploy/kubernetes/service.yaml";

/// `SpinAppSpec`'s JSON fields at spin-operator 943f5b1
/// (api/v1alpha1/spinapp_types.go); the CRD drops any other.
const SPINAPP_SPEC_FIELDS: &[&str] = &[
    "executor",
    "image",
    "imagePullSecrets",
    "checks",
    "replicas",
    "enableAutoscaling",
    "runtimeConfig",
    "volumes",
    "volumeMounts",
    "variables",
    "serviceAnnotations",
    "deploymentAnnotations",
    "podAnnotations",
    "podLabels",
    "resources",
    "components",
    "serviceAccountName",
    "invocationLimits",
];
/// `HealthProbe`'s fields (the same file).
const PROBE_FIELDS: &[&str] = &[
    "httpGet",
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
];

const HEALTH_PATH: &str = "/api/v1/events/health";
const READY_PATH: &str = "/api/v1/events/health/ready";
/// The RuntimeClass the shim is installed under, and the name of the port
/// the operator gives the app's container (spin-operator's `HTTPPortName`).
const RUNTIME_CLASS: &str = "wasmtime-spin-v2";
const PORT_NAME: &str = "http-app";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The one YAML document `rel` holds.
fn yaml(rel: &str) -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

fn spin_manifest(rel: &str) -> Table {
    read(rel)
        .parse()
        .unwrap_or_else(|e| panic!("{rel}: not TOML: {e}"))
}

fn str_at<'a>(doc: &'a Yaml, path: &[&str], file: &str) -> &'a str {
    let mut node = doc;
    for key in path {
        node = &node[*key];
    }
    node.as_str()
        .unwrap_or_else(|| panic!("{file}: {} is not a string: {node:?}", path.join(".")))
}

fn keys(node: &Yaml) -> Vec<String> {
    node.as_hash()
        .map(|h| {
            h.keys()
                .map(|k| k.as_str().expect("string key").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn list<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    node.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {node:?}"))
}

/// docs/DEPLOY.md's backticked words.
fn doc_code_spans() -> Vec<String> {
    read("docs/DEPLOY.md")
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The fields docs/DEPLOY.md says both SpinApps set: the `spec.*` spans of
/// its sentence "Both SpinApps set ...".
fn documented_fields() -> Vec<String> {
    let text = read("docs/DEPLOY.md").replace('\n', " ");
    let sentence = text
        .split("Both SpinApps set ")
        .nth(1)
        .expect("docs/DEPLOY.md says which fields \"Both SpinApps set\"");
    let sentence = &sentence[..sentence.find('(').unwrap_or(sentence.len())];
    let fields: Vec<String> = sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.strip_prefix("spec."))
        .map(str::to_string)
        .collect();
    assert!(fields.len() >= 5, "too few fields named: {fields:?}");
    fields
}

#[test]
fn spinapps_set_the_fields_the_docs_name() {
    let documented = documented_fields();
    for name in &documented {
        assert!(
            SPINAPP_SPEC_FIELDS.contains(&name.as_str()),
            "docs/DEPLOY.md names spec.{name}, which SpinApp does not have"
        );
    }
    // Every SpinApp field the page names anywhere is a real one.
    for span in doc_code_spans() {
        let Some(path) = span
            .strip_prefix("spec.")
            .or_else(|| span.split_once("spinapp.spec.").map(|(_, rest)| rest))
        else {
            continue;
        };
        let field = path.split('.').next().unwrap();
        assert!(
            SPINAPP_SPEC_FIELDS.contains(&field),
            "docs/DEPLOY.md names `{span}`: SpinApp has no field {field}"
        );
    }
    for (file, _) in SPINAPPS {
        let app = yaml(file);
        assert_eq!(
            str_at(&app, &["apiVersion"], file),
            "core.spinkube.dev/v1alpha1"
        );
        assert_eq!(str_at(&app, &["kind"], file), "SpinApp");
        assert!(!str_at(&app, &["metadata", "name"], file).is_empty());
        let spec = &app["spec"];
        for key in keys(spec) {
            assert!(
                SPINAPP_SPEC_FIELDS.contains(&key.as_str()),
                "{file}: spec.{key} is no SpinApp field"
            );
        }
        for name in &documented {
            assert!(
                !spec[name.as_str()].is_badvalue() && !spec[name.as_str()].is_null(),
                "{file}: docs/DEPLOY.md says it sets spec.{name}"
            );
        }
        assert_eq!(str_at(spec, &["executor"], file), "containerd-shim-spin");
        let replicas = spec["replicas"].as_i64().expect("replicas is a number");
        assert!(replicas >= 1, "{file}: replicas {replicas}");
        assert!(
            spec["enableAutoscaling"].is_badvalue(),
            "{file}: replicas and enableAutoscaling exclude each other"
        );
        for bound in ["limits", "requests"] {
            for resource in ["cpu", "memory"] {
                str_at(spec, &["resources", bound, resource], file);
            }
        }
        for (check, path) in [("liveness", HEALTH_PATH), ("readiness", READY_PATH)] {
            let probe = &spec["checks"][check];
            assert_eq!(
                str_at(probe, &["httpGet", "path"], file),
                path,
                "{file}: {check}"
            );
            for key in keys(probe) {
                assert!(
                    PROBE_FIELDS.contains(&key.as_str()),
                    "{file}: checks.{check}.{key} is no HealthProbe field"
                );
            }
        }
    }
}

/// `{{ name }}` templates in `text`.
fn template_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").expect("closed template") + start;
        out.push(rest[start + 2..end].trim().to_string());
        rest = &rest[end + 2..];
    }
    out
}

/// The application variables that reach the code through `manifest`: named
/// by a template of a component variable the gateway reads (in
/// `VARIABLES`) or of the allowlist.
fn variables_reaching_the_code(manifest: &Table, file: &str) -> BTreeSet<String> {
    let component = manifest["component"]["sse-gateway"]
        .as_table()
        .unwrap_or_else(|| panic!("{file}: component sse-gateway"));
    let mut names = BTreeSet::new();
    let vars = component["variables"]
        .as_table()
        .expect("component variables");
    for (key, template) in vars {
        if VARIABLES.contains(&key.as_str()) {
            names.extend(template_names(template.as_str().expect("string template")));
        }
    }
    for entry in component["allowed_outbound_hosts"]
        .as_array()
        .expect("allowlist")
    {
        names.extend(template_names(entry.as_str().expect("string entry")));
    }
    names
}

/// A SpinApp's `variables`, each with either `value` or `valueFrom`.
fn spinapp_variables(app: &Yaml, file: &str) -> Vec<(String, Yaml)> {
    list(&app["spec"]["variables"], file)
        .iter()
        .map(|v| {
            let name = str_at(v, &["name"], file).to_string();
            let (value, from) = (&v["value"], &v["valueFrom"]);
            assert!(
                value.is_badvalue() != from.is_badvalue(),
                "{file}: {name} needs exactly one of value and valueFrom"
            );
            let source = if value.is_badvalue() {
                from.clone()
            } else {
                value.clone()
            };
            (name, source)
        })
        .collect()
}

#[test]
fn spinapp_variables_are_application_variables_that_reach_the_code() {
    let mut seen = Vec::new();
    for (file, manifest_file) in SPINAPPS {
        let app = yaml(file);
        let manifest = spin_manifest(manifest_file);
        let app_vars = manifest["variables"].as_table().expect("[variables]");
        let reaching = variables_reaching_the_code(&manifest, manifest_file);
        let vars = spinapp_variables(&app, file);
        let mut names = BTreeSet::new();
        for (name, _) in &vars {
            assert!(names.insert(name.clone()), "{file}: {name} set twice");
            // The operator upper-cases the name into SPIN_VARIABLE_<NAME>;
            // Spin variable names are lower-case ASCII, digits and `_`.
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{file}: {name} is no Spin variable name"
            );
            assert!(
                app_vars.contains_key(name),
                "{file}: {name} is not an application variable of {manifest_file}"
            );
            assert!(
                reaching.contains(name) || VARIABLES.contains(&name.as_str()),
                "{file}: {name} reaches no variable the gateway reads"
            );
        }
        for (name, decl) in app_vars {
            if decl.get("required").and_then(|r| r.as_bool()) == Some(true) {
                assert!(names.contains(name), "{file}: required {name} is not set");
            }
        }
        seen.push(vars);
    }
    assert_eq!(
        seen[0], seen[1],
        "both SpinApps set the same variables the same way"
    );
}

/// The Secret template: its name and the keys it lists (values empty).
fn secret_template() -> (String, BTreeSet<String>) {
    let secret = yaml(SECRET);
    assert_eq!(str_at(&secret, &["apiVersion"], SECRET), "v1");
    assert_eq!(str_at(&secret, &["kind"], SECRET), "Secret");
    assert!(
        secret["data"].is_badvalue(),
        "{SECRET}: stringData only, readable"
    );
    let data = secret["stringData"]
        .as_hash()
        .unwrap_or_else(|| panic!("{SECRET}: stringData"));
    let mut keys = BTreeSet::new();
    for (k, v) in data {
        let k = k.as_str().unwrap().to_string();
        assert_eq!(
            v.as_str(),
            Some(""),
            "{SECRET}: {k} must be empty: the template holds no secret"
        );
        keys.insert(k);
    }
    (
        str_at(&secret, &["metadata", "name"], SECRET).to_string(),
        keys,
    )
}

/// Checks one variable's source against the secrets rule: a `secret = true`
/// variable is a `secretKeyRef` into the template's Secret, by its own name.
fn check_secret_source(
    file: &str,
    name: &str,
    source: &Yaml,
    secret_vars: &BTreeSet<String>,
    secret: &(String, BTreeSet<String>),
) {
    let key_ref = &source["secretKeyRef"];
    if !secret_vars.contains(name) {
        assert!(
            key_ref.is_badvalue(),
            "{file}: {name} is not secret = true in spin.toml but comes from a Secret"
        );
        return;
    }
    assert!(
        !key_ref.is_badvalue(),
        "{file}: secret {name} must come from a secretKeyRef, never a literal: {source:?}"
    );
    assert_eq!(str_at(key_ref, &["name"], file), secret.0, "{file}: {name}");
    let key = str_at(key_ref, &["key"], file);
    assert_eq!(key, name, "{file}: {name} from key {key}");
    assert!(
        secret.1.contains(key),
        "{file}: {name} reads key {key}, which {SECRET} does not list"
    );
    assert!(
        key_ref["optional"].is_badvalue(),
        "{file}: secret {name} must not be optional"
    );
}

#[test]
fn secrets_come_from_the_secret_and_never_literals() {
    let secret = secret_template();
    let manifest = spin_manifest("spin.toml");
    let secret_vars: BTreeSet<String> = manifest["variables"]
        .as_table()
        .unwrap()
        .iter()
        .filter(|(_, d)| d.get("secret").and_then(|s| s.as_bool()) == Some(true))
        .map(|(n, _)| n.clone())
        .collect();
    for must in ["jwt_secret", "redis_password", "redis_tls_key_pem"] {
        assert!(
            secret_vars.contains(must),
            "spin.toml: {must} secret = true"
        );
    }
    for (file, _) in SPINAPPS {
        let vars = spinapp_variables(&yaml(file), file);
        for must in ["jwt_secret", "redis_password"] {
            assert!(
                vars.iter().any(|(n, _)| n == must),
                "{file}: {must} must be set (from the Secret)"
            );
        }
        for (name, source) in &vars {
            check_secret_source(file, name, source, &secret_vars, &secret);
        }
    }
    for (name, source) in deployment_variables(&yaml(DEPLOYMENT)) {
        check_secret_source(DEPLOYMENT, &name, &source, &secret_vars, &secret);
    }
}

/// `scripts/package.sh --dry-run REF`: the references it would push.
fn package_refs(reference: &str) -> Vec<String> {
    let out = Command::new(root().join("scripts/package.sh"))
        .args(["--dry-run", reference])
        .output()
        .expect("run scripts/package.sh --dry-run");
    assert!(
        out.status.success(),
        "scripts/package.sh --dry-run {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn images_are_what_package_sh_pushes() {
    // The reference docs/DEPLOY.md releases: its `scripts/package.sh REF`.
    let docs = read("docs/DEPLOY.md");
    let released: BTreeSet<&str> = docs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("scripts/package.sh "))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(released.len(), 1, "one released reference: {released:?}");
    let reference = released.into_iter().next().unwrap();
    let refs = package_refs(reference);
    assert_eq!(refs.len(), 2, "package.sh pushes two apps: {refs:?}");
    assert_eq!(refs[0], reference);
    for ((file, _), pushed) in SPINAPPS.iter().zip(&refs) {
        assert_eq!(str_at(&yaml(file), &["spec", "image"], file), pushed);
    }
    let deployment = yaml(DEPLOYMENT);
    assert_eq!(
        str_at(container(&deployment), &["image"], DEPLOYMENT),
        refs[0]
    );
}

fn container(deployment: &Yaml) -> &Yaml {
    let containers = list(
        &deployment["spec"]["template"]["spec"]["containers"],
        DEPLOYMENT,
    );
    assert_eq!(containers.len(), 1, "{DEPLOYMENT}: one container");
    &containers[0]
}

/// The Deployment's `SPIN_VARIABLE_*` environment as SpinApp variables
/// (the name lower-cased, the `value` or `valueFrom`).
fn deployment_variables(deployment: &Yaml) -> Vec<(String, Yaml)> {
    list(&container(deployment)["env"], DEPLOYMENT)
        .iter()
        .filter_map(|e| {
            let name = str_at(e, &["name"], DEPLOYMENT);
            let var = name.strip_prefix("SPIN_VARIABLE_")?;
            let source = if e["value"].is_badvalue() {
                e["valueFrom"].clone()
            } else {
                e["value"].clone()
            };
            Some((var.to_ascii_lowercase(), source))
        })
        .collect()
}

fn env_value<'a>(deployment: &'a Yaml, name: &str) -> Option<&'a str> {
    list(&container(deployment)["env"], DEPLOYMENT)
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str())
}

#[test]
fn the_plain_deployment_runs_what_the_spinapp_does() {
    let (spinapp_file, _) = SPINAPPS[0];
    let app = yaml(spinapp_file);
    let d = yaml(DEPLOYMENT);
    assert_eq!(str_at(&d, &["apiVersion"], DEPLOYMENT), "apps/v1");
    assert_eq!(str_at(&d, &["kind"], DEPLOYMENT), "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        str_at(pod, &["runtimeClassName"], DEPLOYMENT),
        RUNTIME_CLASS
    );
    let c = container(&d);
    // What spin-operator's constructDeployment gives a shim container.
    let command: Vec<&str> = list(&c["command"], "command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(command, ["/"], "{DEPLOYMENT}: the shim's entrypoint");
    let ports = list(&c["ports"], "ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"].as_str() == Some(PORT_NAME)
                && p["containerPort"].as_i64() == Some(80)),
        "{DEPLOYMENT}: port {PORT_NAME} 80: {ports:?}"
    );
    assert_eq!(env_value(&d, "SPIN_HTTP_LISTEN_ADDR"), Some("0.0.0.0:80"));
    assert_eq!(
        deployment_variables(&d),
        spinapp_variables(&app, spinapp_file),
        "{DEPLOYMENT} sets the SpinApp's variables, as SPIN_VARIABLE_<NAME>"
    );
    assert_eq!(d["spec"]["replicas"], app["spec"]["replicas"]);
    assert_eq!(c["resources"], app["spec"]["resources"]);
    for (probe, check) in [
        ("livenessProbe", "liveness"),
        ("readinessProbe", "readiness"),
    ] {
        let path = &app["spec"]["checks"][check]["httpGet"]["path"];
        assert_eq!(&c[probe]["httpGet"]["path"], path, "{DEPLOYMENT}: {probe}");
        assert_eq!(
            c[probe]["httpGet"]["port"].as_str(),
            Some(PORT_NAME),
            "{DEPLOYMENT}: {probe}"
        );
    }
    // The selector picks the template's pods, and the Service those pods.
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    let selector = &d["spec"]["selector"]["matchLabels"];
    assert!(!keys(selector).is_empty(), "{DEPLOYMENT}: matchLabels");
    for key in keys(selector) {
        assert_eq!(
            selector[key.as_str()],
            labels[key.as_str()],
            "{DEPLOYMENT}: {key}"
        );
    }
    let svc = yaml(SERVICE);
    assert_eq!(str_at(&svc, &["kind"], SERVICE), "Service");
    let svc_selector = &svc["spec"]["selector"];
    assert!(!keys(svc_selector).is_empty(), "{SERVICE}: selector");
    for key in keys(svc_selector) {
        assert_eq!(
            svc_selector[key.as_str()],
            labels[key.as_str()],
            "{SERVICE}: {key}"
        );
    }
    let svc_ports = list(&svc["spec"]["ports"], "ports");
    assert!(
        svc_ports
            .iter()
            .all(|p| p["targetPort"].as_str() == Some(PORT_NAME)),
        "{SERVICE}: every port targets {PORT_NAME}"
    );
}

#[test]
fn every_file_under_deploy_is_checked_and_linked_from_the_docs() {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let rel = path.strip_prefix(root()).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(&root().join("deploy"), &mut found);
    let checked: BTreeSet<String> = SPINAPPS
        .iter()
        .map(|(f, _)| *f)
        .chain([SECRET, DEPLOYMENT, SERVICE])
        .map(str::to_string)
        .collect();
    assert_eq!(found, checked, "a file under deploy/ no test checks");
    let docs = read("docs/DEPLOY.md");
    for file in &checked {
        assert!(
            docs.contains(&format!("(../{file})")),
            "docs/DEPLOY.md does not link {file}"
        );
    }
}
