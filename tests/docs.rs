//! The README's copies of protocol details match the code they describe.

use sse_gateway::config::VARIABLES;
use sse_gateway::rules::history::PUBLISH_SCRIPT;

const README: &str = include_str!("../README.md");

#[test]
fn readme_publish_script_is_the_one_the_gateway_runs() {
    assert!(
        README.contains(PUBLISH_SCRIPT),
        "README.md's producer script differs from history::PUBLISH_SCRIPT"
    );
}

#[test]
fn readme_documents_every_variable() {
    for name in VARIABLES {
        assert!(
            README.contains(&format!("`{name}`")),
            "README.md's configuration table lacks `{name}`"
        );
    }
}
