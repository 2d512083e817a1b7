//! Every example intent is valid (as `coherd intent check` sees it) and listed
//! in the examples' README.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::path::Path;

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
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args(["intent", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
        );
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in examples/README.md"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} examples");
}
