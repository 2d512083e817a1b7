//! The OpenAPI document is a contract tools can use: schemathesis generates
//! requests from `/v1/openapi.json` (valid ones, invalid ones, and sequences
//! that follow the document's links) against the built server with an admin
//! token, and every check it has must pass: no 5xx, only documented statuses,
//! bodies and content types as described, schema-valid data accepted and
//! invalid data refused. `schemathesis.toml` at the repository root names the
//! operations that may answer 422 to schema-valid data, and why.
//!
//! schemathesis comes from PyPI (`pip install schemathesis`; CI installs it).
//! Without it this test fails, unless `COHERD_SKIP_TOOL_TESTS=1` says to skip.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, temp_dir};

const TOKEN: &str = "admin-token-0123456789";

#[test]
fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    if !common::tool_available("st", "--version", "pip install schemathesis") {
        return;
    }
    let dir = temp_dir("schemathesis");
    let config = dir.join("coherd.yaml");
    std::fs::write(
        &config,
        format!(
            "tokens:\n  - {{token: \"{TOKEN}\", scopes: [admin]}}\n\
             reconcile:\n  lease_ttl: 2s\n  actions:\n    - name: fix\n      match: {{kind: drift}}\n      \
             webhook: {{url: \"http://127.0.0.1:9/fix\"}}\n      dry_run: true\n"
        ),
    )
    .unwrap();
    let server = Server::start(&dir, &["--config", &config.display().to_string()]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Bounded: a fixed seed and 20 examples per operation and phase.
    let out = Command::new("st")
        .arg("--config-file")
        .arg(root.join("schemathesis.toml"))
        .args(["run", &format!("{}/v1/openapi.json", server.url)])
        .args(["--url", &server.url])
        .args(["--checks", "all", "--seed", "1", "--max-examples", "20"])
        .args(["--request-timeout", "10"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .current_dir(&dir) // its cache goes with the temporary directory
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found the server and its document disagree:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
