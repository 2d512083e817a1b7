//! Every example intent is valid (as `coherd intent check` sees it) and listed
//! in the examples' README.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::path::Path;

/// Runs `coherd ARGS PATH` and fails the test, with its output, unless it succeeds.
fn checks(args: &[&str], path: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_intent_checks_and_is_listed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("examples/README.md");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        checks(&["intent", "check"], &path);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in examples/README.md"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} examples");
}

#[test]
fn every_example_server_config_checks_and_is_listed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("examples/README.md");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.join("config")).unwrap() {
        let path = entry.unwrap().path();
        checks(&["serve", "--check", "--config"], &path);
        let name = format!("config/{}", path.file_name().unwrap().to_string_lossy());
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in examples/README.md"
        );
        checked += 1;
    }
    assert!(checked >= 1);
}

/// `coherd serve --check` on a config of `yaml`: it must refuse it, naming every part of `want`.
fn refused(yaml: &str, want: &[&str]) {
    let dir = std::env::temp_dir().join(format!(
        "coherd-bad-config-{}-{}",
        std::process::id(),
        want.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["serve", "--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{yaml} was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    for part in want {
        assert!(err.contains(part), "{part} not in {err}");
    }
}

#[test]
fn an_invalid_reconcile_or_sources_config_is_refused_with_every_problem_named() {
    refused(
        "reconcile:\n  actions:\n    - name: a\n      match: {kind: drift}\n      waves: [\"50%\"]\n      max_attempts: 0\n      webhook: {url: \"ftp://x\"}\n",
        &[
            "last wave must be \"100%\"",
            "max_attempts must be 1 to 100",
            "must start with http:// or https://",
        ],
    );
    refused(
        "sources:\n  prometheus:\n    - {name: p, url: \"ftp://x\", interval: 10ms, queries: [{query: up}]}\n",
        &[
            "url must start with http",
            "interval must be at least 1s",
            "maps no facet and no phase",
        ],
    );
    refused("reconcile:\n  actions: []\n  surprise: 1\n", &["surprise"]);
}
