//! The dashboards in a real browser: headless Chromium, driven by
//! `ui-tests/browser.mjs` (playwright-core, axe-core), against the built
//! binary fed over HTTP. Screenshots of every page land in
//! `target/ui-screenshots/`.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, post_json, temp_dir};
use serde_json::json;

#[test]
fn the_dashboards_render_update_live_link_and_pass_axe_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tests = root.join("ui-tests");
    if !Path::new("/usr/bin/chromium").exists()
        || !tests.join("node_modules/playwright-core").exists()
    {
        eprintln!(
            "skipped: needs Chromium (apt-get install chromium) and `npm ci` in ui-tests/; ./scripts/test installs both"
        );
        return;
    }
    let dir = temp_dir("ui-browser");
    std::fs::write(
        dir.join("intent.yaml"),
        "services:\n  checkout:\n    report_interval: 1h\n    facets:\n      config: {target: \"v2\"}\n    leases:\n      leader: {exclusive: true}\n",
    )
    .unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    let s = Server::start(&dir, &["--intent", &intent]);
    let mut batch: Vec<serde_json::Value> = (1..=5)
        .map(|i| json!({"service": "checkout", "member": format!("c-{i:02}"), "seq": 1, "facets": {"config": "v1", "phase": "ready"}}))
        .collect();
    // What a hostile reporter sends must show as text and never run.
    batch.push(json!({"service": "checkout", "member": "c-06", "seq": 1,
        "facets": {"config": "<img src=x onerror=\"window.__pwned=true\">", "phase": "<script>window.__pwned=true</script>"},
        "leases": [{"resource": "leader", "epoch": 7, "expires": "2099-01-01T00:00:00Z"}]}));
    batch.push(
        json!({"service": "payments", "member": "p-1", "seq": 1, "facets": {"version": "3"}}),
    );
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        &serde_json::Value::from(batch).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let shots = root.join("target/ui-screenshots");
    let out = Command::new("node")
        .arg(tests.join("browser.mjs"))
        .arg(&s.url)
        .arg(&shots)
        .current_dir(&tests)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("screenshots in {}", shots.display());
    assert!(
        out.status.success(),
        "the browser found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in ["executive", "oncall", "service", "member", "oncall-live"] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
}
