//! `coherd explain` says why members are not coherent, facet by facet, from
//! a live server; the members API carries the same reasons.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::process::Command;

use common::{Server, get_json, post_json, temp_dir};

const INTENT: &str = "services:\n  api:\n    facets:\n      version: {target: \"2\"}\n      config: {target: \"c1\"}\n";

fn explain(s: &Server, what: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(["explain", what, "--server", &s.url])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn explain_names_each_reason_for_a_service_and_a_member() {
    let dir = temp_dir("explain");
    std::fs::write(dir.join("intent.yaml"), INTENT).unwrap();
    let intent = dir.join("intent.yaml").display().to_string();
    let s = Server::start(&dir, &["--intent", &intent]);
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        r#"[{"service":"api","member":"a","facets":{"version":"2","config":"c1"}},
            {"service":"api","member":"b","facets":{"version":"9","config":"c1"}},
            {"service":"api","member":"c/1","facets":{"version":"2"}}]"#,
    );
    assert_eq!(status, 200, "{body}");

    let (ok, text) = explain(&s, "api", &[]);
    assert!(ok, "{text}");
    assert!(text.contains("api: 1 of 3 members coherent"), "{text}");
    assert!(
        text.contains("b: ") && text.contains("version 9 is not allowed (target 2)"),
        "{text}"
    );
    assert!(
        text.contains("c/1: ") && text.contains("config not reported (target c1)"),
        "{text}"
    );

    let (ok, text) = explain(&s, "api/c/1", &[]);
    assert!(ok, "{text}");
    assert!(text.contains("api/c/1: live, not coherent"), "{text}");
    let (ok, text) = explain(&s, "api/b", &[]);
    assert!(ok && text.contains("open: drift:api:b:version"), "{text}");

    let member = get_json(&format!("{}/v1/services/api/members/b", s.url));
    assert_eq!(
        member["not_coherent"][0]["reason"], "divergence",
        "{member}"
    );
    assert_eq!(member["not_coherent"][1]["reason"], "foreign", "{member}");

    let (ok, text) = explain(&s, "api/nobody", &[]);
    assert!(!ok && text.contains("knows no member"), "{text}");
}

/// The newcomer's path with a fleet of their own and no intent: suggest an
/// intent, check it, put it, and see the drifted members explained.
#[test]
fn from_no_intent_to_drifted_members_explained() {
    let s = Server::start(&temp_dir("first-hour"), &[]);
    let reports: Vec<String> = (0..20)
        .map(|i| {
            let version = if i < 2 { "1.4.1" } else { "1.4.2" };
            let config = if i == 7 { "sha256:bad" } else { "sha256:ab12" };
            format!(r#"{{"service":"web","member":"web-{i:02}","facets":{{"version":"{version}","config":"{config}","host":"h{i}"}}}}"#)
        })
        .collect();
    let (status, body) = post_json(
        &format!("{}/v1/observations", s.url),
        &format!("[{}]", reports.join(",")),
    );
    assert_eq!(status, 200, "{body}");
    let dir = temp_dir("first-hour-files");
    let file = dir.join("intent.yaml");
    let coherd = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_coherd"))
            .args(args)
            .env("COHERD_SERVER", &s.url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "coherd {args:?}: {text}");
        text
    };
    let path = file.display().to_string();
    coherd(&["intent", "suggest", "-o", &path]);
    let suggested = std::fs::read_to_string(&file).unwrap();
    assert!(
        suggested.contains(r#"version: {target: "1.4.2""#),
        "{suggested}"
    );
    assert!(
        suggested.contains("18 of 20 members; also seen: 1.4.1 (2)"),
        "{suggested}"
    );
    assert!(
        suggested.contains("# host: 20 distinct values"),
        "ids are not targets: {suggested}"
    );
    coherd(&["intent", "check", &path]);
    coherd(&["intent", "put", &path]);
    let text = coherd(&["explain", "web"]);
    assert!(text.contains("web: 17 of 20 members coherent"), "{text}");
    assert!(
        text.contains("web-00: ") && text.contains("version 1.4.1 is not allowed"),
        "{text}"
    );
    assert!(
        text.contains("web-07: ") && text.contains("config sha256:bad is not allowed"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
