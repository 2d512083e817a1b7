//! The exports for Prometheus users, checked by Prometheus' own tool:
//! `promtool check rules` and `promtool test rules` on the exported rules,
//! `promtool check metrics` on a real server's `/metrics`.
//!
//! promtool comes from the Debian package `prometheus` (CI installs it). Without
//! it these tests fail, unless `COHERD_SKIP_TOOL_TESTS=1` says to skip them.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Server, post_json, request, temp_dir};

/// True when promtool can run; false when the tests are asked to skip without it.
fn promtool_available() -> bool {
    common::tool_available(
        "promtool",
        "--version",
        "install the Debian package `prometheus` (apt-get install prometheus)",
    )
}

fn coherd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(args)
        .output()
        .expect("coherd runs")
}

fn promtool(args: &[&str], dir: &Path, stdin: Option<&str>) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write to promtool");
    }
    drop(input);
    child.wait_with_output().expect("promtool finishes")
}

fn show(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The promtool unit tests kept in the repository.
fn rules_test_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../coherd-export/tests/promtool/rules_test.yml")
}

#[test]
fn exported_rules_pass_promtool_check_and_the_unit_tests_in_the_repo() {
    if !promtool_available() {
        return;
    }
    let dir = temp_dir("promtool-rules");
    let rules = dir.join("coherd.rules.yml");
    let out = coherd(&[
        "rules",
        "export",
        "--format",
        "prometheus",
        "--output",
        &rules.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    std::fs::copy(rules_test_file(), dir.join("rules_test.yml")).expect("copy the unit tests");

    let check = promtool(&["check", "rules", "coherd.rules.yml"], &dir, None);
    assert!(check.status.success(), "{}", show(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("SUCCESS"),
        "{}",
        show(&check)
    );

    let test = promtool(&["test", "rules", "rules_test.yml"], &dir, None);
    assert!(test.status.success(), "{}", show(&test));

    // Every alert the export writes is fired and cleared by the unit tests.
    let rules_text = std::fs::read_to_string(&rules).expect("rules");
    let tests_text = std::fs::read_to_string(rules_test_file()).expect("unit tests");
    let mut alerts: Vec<&str> = rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    alerts.dedup();
    assert!(alerts.len() >= 14, "{alerts:?}");
    for alert in alerts {
        let cases: Vec<&str> = tests_text
            .split("- eval_time:")
            .filter(|c| c.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")),
            "no unit test fires {alert}"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "no unit test clears {alert}"
        );
    }
}

#[test]
fn a_rule_export_with_options_passes_promtool_check() {
    if !promtool_available() {
        return;
    }
    let dir = temp_dir("promtool-rules-options");
    let out = coherd(&[
        "rules",
        "export",
        "--slo",
        "0.995",
        "--period-days",
        "28",
        "--selector",
        "job=\"coherd\", env=~\"prod.*\"",
        "--runbook-url",
        "https://runbooks.example/coherd",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains("coherd:coherence_error_ratio:avg28d"),
        "{text}"
    );
    assert!(text.contains("/ 0.005"), "{text}");
    std::fs::write(dir.join("r.yml"), &text).expect("write");
    let check = promtool(&["check", "rules", "r.yml"], &dir, None);
    assert!(check.status.success(), "{}", show(&check));

    let bad = coherd(&["rules", "export", "--slo", "99.9"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("strictly between 0 and 1"),
        "{}",
        show(&bad)
    );

    // The SLO of a server's config: its own burn windows, multipliers and `for`.
    std::fs::write(
        dir.join("coherd.yaml"),
        "alerting:\n  slos:\n    - service: \"*\"\n      objective: 0.99\n      period: 14d\n      windows:\n        - {severity: page, long: 2h, short: 10m, factor: 10, for: 5m}\n        - {severity: ticket, long: 1d, short: 2h, factor: 2, for: 30m}\n",
    )
    .unwrap();
    let config = dir.join("coherd.yaml").display().to_string();
    let out = coherd(&["rules", "export", "--config", &config]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for needle in [
        "coherd:coherence_burn_rate:2h > 10 and coherd:coherence_burn_rate:10m > 10",
        "coherd:coherence_error_ratio:avg14d",
        "avg_over_time(coherd:coherence_error_ratio:avg1h[1d])",
        "for: 30m",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    std::fs::write(dir.join("c.yml"), &text).expect("write");
    let check = promtool(&["check", "rules", "c.yml"], &dir, None);
    assert!(check.status.success(), "{}", show(&check));
}

const INTENT: &str = "services:\n  checkout:\n    facets:\n      version: {target: \"1.4.2\", compatible: [\"1.4.1\"], rollout_window: 30m}\n    leases:\n      scheduler: {exclusive: true}\n";

#[test]
fn metrics_of_a_running_server_pass_promtool_check_metrics() {
    if !promtool_available() {
        return;
    }
    let dir = temp_dir("promtool-metrics");
    std::fs::write(dir.join("intent.yaml"), INTENT).expect("intent");
    let intent = dir.join("intent.yaml").display().to_string();
    let s = Server::start(&dir, &["--intent", &intent]);

    // Eight members on seven versions (more than the five kept per facet), two
    // lease holders (split brain), an observer that disagrees with a draining member.
    let versions = ["1.4.2", "1.4.2", "1.4.1", "0.9", "0.8", "0.7", "0.6", "0.5"];
    for seq in 1..=2 {
        let batch: Vec<serde_json::Value> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut o = serde_json::json!({
                    "service": "checkout",
                    "member": format!("c-{i}"),
                    "seq": seq,
                    "facets": {"version": v, "phase": if i == 1 { "draining" } else { "ready" }},
                    "counters": {"requests": 100 * seq, "errors": seq},
                });
                if i < 2 {
                    o["leases"] = serde_json::json!([{"resource": "scheduler", "epoch": 3 + i, "expires": "2099-01-01T00:00:00Z"}]);
                }
                if i == 0 {
                    o["views"] = serde_json::json!({"c-1": {"phase": "ready"}});
                }
                o
            })
            .collect();
        let (status, body) = post_json(
            &format!("{}/v1/observations", s.url),
            &serde_json::Value::Array(batch).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = post_json(&format!("{}/v1/observations", s.url), "{\"service\":");
    assert_eq!(status, 400);

    let (status, text) = request("GET", &format!("{}/metrics", s.url), &[], b"").expect("scrape");
    assert_eq!(status, 200, "{text}");
    for needle in [
        "coherd_ingest_observations_total 16",
        "coherd_members{service=\"checkout\",state=\"live\"} 8",
        "coherd_coherence_ratio{service=\"checkout\"}",
        "coherd_coherence_window_ratio{service=\"checkout\",window=\"5m\"}",
        "coherd_telemetry_completeness_ratio{service=\"checkout\"} 1",
        "coherd_exposure_ratio{service=\"checkout\",facet=\"version\"}",
        "coherd_facet_members{service=\"checkout\",facet=\"version\",value=\"other\"} 2",
        "coherd_divergences_open{service=\"checkout\",kind=\"split_brain\",severity=\"critical\"} 1",
        "coherd_divergences_opened_total{service=\"checkout\",kind=\"split_brain\",severity=\"critical\"} 1",
        "coherd_detection_latency_seconds_bucket{le=\"+Inf\",kind=\"drift\"} 5",
        "coherd_ingest_ack_seconds_bucket{le=\"+Inf\"} 2",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    assert!(
        !text.contains("c-0"),
        "a member id leaked into a label:\n{text}"
    );

    let check = promtool(&["check", "metrics"], &dir, Some(&text));
    assert!(
        check.status.success(),
        "promtool check metrics:\n{}\n{text}",
        show(&check)
    );
    assert!(
        check.stdout.is_empty() && check.stderr.is_empty(),
        "{}",
        show(&check)
    );

    // Prometheus asks for OpenMetrics and gets it.
    let (status, om) = request(
        "GET",
        &format!("{}/metrics", s.url),
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
        b"",
    )
    .expect("scrape");
    assert_eq!(status, 200);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(
        om.contains("# TYPE coherd_ingest_observations counter"),
        "{om}"
    );
}

#[test]
fn dashboards_export_writes_three_grafana_models() {
    let dir = temp_dir("dashboards");
    let out = coherd(&[
        "dashboards",
        "export",
        "--format",
        "grafana",
        "--output",
        &dir.join("boards").display().to_string(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    for (stem, title) in [
        ("coherd-executive", "coherd / Executive"),
        ("coherd-on-call", "coherd / On-call"),
        ("coherd-debug", "coherd / Debug"),
    ] {
        let text = std::fs::read_to_string(dir.join("boards").join(format!("{stem}.json")))
            .expect("dashboard written");
        let model: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(model["uid"], stem);
        assert_eq!(model["title"], title);
        let panels = model["panels"].as_array().expect("panels");
        assert!(
            panels
                .iter()
                .filter(|p| p["type"] != "row")
                .all(|p| p["targets"][0]["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("coherd") || e.contains("process_"))),
            "{stem}"
        );
    }
}
