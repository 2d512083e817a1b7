//! Black-box tests of `coherd replay`: a hand-written stream through the real
//! binary, with exact open and resolve times, and its errors.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn coherd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(args)
        .output()
        .expect("the coherd binary runs")
}

/// Writes `contents` to a fresh file in this test binary's scratch directory.
fn scratch_file(name: &str, contents: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replay_cli");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("scratch file");
    path.to_string_lossy().into_owned()
}

fn replay(name: &str, stream: &str, intent: &str, extra: &[&str]) -> Output {
    let stream = scratch_file(&format!("{name}.ndjson"), stream);
    let intent = scratch_file(&format!("{name}.yaml"), intent);
    let mut args = vec!["replay", stream.as_str(), "--intent", intent.as_str()];
    args.extend_from_slice(extra);
    coherd(&args)
}

fn stderr(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "coherd should have failed; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const INTENT: &str = "
services:
  web:
    report_interval: 10s
    facets:
      version: {target: \"2\", compatible: [\"1\"], rollout_window: 1m}
";

/// w1 at target, w2 on the compatible version; the window ends at 08:01:00;
/// at 08:01:10 the target moves to 3 (w2's 1 is now foreign); w2 reaches 3 at
/// 08:01:20; then both stop reporting and are silent at 08:01:50.
const STREAM: &str = r#"{"service":"web","member":"w1","seq":1,"time":"2026-11-22T08:00:00Z","facets":{"version":"2","phase":"ready"}}
{"service":"web","member":"w2","seq":1,"time":"2026-11-22T08:00:00Z","facets":{"version":"1","phase":"ready"}}
{"service":"web","member":"w1","seq":2,"time":"2026-11-22T08:00:20Z"}
{"service":"web","member":"w2","seq":2,"time":"2026-11-22T08:00:20Z"}

{"service":"web","member":"w1","seq":3,"time":"2026-11-22T08:00:40Z"}
{"service":"web","member":"w2","seq":3,"time":"2026-11-22T08:00:40Z"}
{"service":"web","member":"w1","seq":4,"time":"2026-11-22T08:01:00Z"}
{"service":"web","member":"w2","seq":4,"time":"2026-11-22T08:01:00Z","facets":{"version":"1"}}
{"time":"2026-11-22T08:01:10Z","intent":{"services":{"web":{"report_interval":"10s","facets":{"version":{"target":"3","rollout_window":"1m"}}}}}}
{"service":"web","member":"w1","seq":5,"time":"2026-11-22T08:01:20Z"}
{"service":"web","member":"w2","seq":5,"time":"2026-11-22T08:01:20Z","facets":{"version":"3"}}
"#;

fn record<'a>(report: &'a Value, id: &str) -> &'a Value {
    let found: Vec<&Value> = report["divergences"]
        .as_array()
        .expect("divergences")
        .iter()
        .filter(|d| d["id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "{id}: {report:#}");
    found[0]
}

#[test]
fn replay_json_has_exact_open_and_resolve_times_across_an_intent_change() {
    let out = replay("exact", STREAM, INTENT, &["--until", "+1m", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");

    let ids: Vec<&str> = report["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "mixed:web:version",
            "drift:web:w2:version",
            "silent:web:w1",
            "silent:web:w2"
        ],
        "ordered by opened_at, then id"
    );

    let mixed = record(&report, "mixed:web:version");
    assert_eq!(mixed["kind"], "mixed");
    assert_eq!(mixed["service"], "web");
    // info while converging, warning at the window end, critical once "1" is foreign.
    assert_eq!(mixed["severity"], "critical");
    assert_eq!(mixed["opened_at"], "2026-11-22T08:00:00Z");
    assert_eq!(mixed["resolved_at"], "2026-11-22T08:01:50Z");
    assert_eq!(mixed["reopens"], 0);

    let drift = record(&report, "drift:web:w2:version");
    assert_eq!(drift["severity"], "critical");
    assert_eq!(drift["subjects"], json!(["w2"]));
    assert_eq!(drift["opened_at"], "2026-11-22T08:01:00Z");
    assert_eq!(drift["resolved_at"], "2026-11-22T08:01:20Z");

    for m in ["w1", "w2"] {
        let silent = record(&report, &format!("silent:web:{m}"));
        assert_eq!(silent["severity"], "warning");
        assert_eq!(silent["opened_at"], "2026-11-22T08:01:50Z");
        assert_eq!(silent["resolved_at"], Value::Null);
    }

    let slis = &report["slis"]["web"];
    assert_eq!(slis["members"], 2);
    assert_eq!(slis["live"], 0);
}

#[test]
fn a_line_going_back_in_time_is_an_error_naming_it() {
    let stream = r#"{"service":"web","member":"w1","time":"2026-11-22T08:00:10Z"}
{"service":"web","member":"w1","time":"2026-11-22T08:00:20Z"}
{"service":"web","member":"w2","time":"2026-11-22T08:00:05Z"}
"#;
    let err = stderr(&replay("back", stream, INTENT, &["--json"]));
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("before"), "{err}");
}

#[test]
fn an_invalid_observation_names_its_line_and_field() {
    let stream = r#"{"service":"web","member":"w1","time":"2026-11-22T08:00:10Z"}
{"service":"web","member":"w1","time":"2026-11-22T08:00:20Z","facets":{"version":5}}
"#;
    let err = stderr(&replay("badfield", stream, INTENT, &["--json"]));
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("facets.version"), "{err}");

    let stream = r#"{"service":"web","member":"w1","time":"2026-11-22T08:00:10Z","facts":{}}
"#;
    let err = stderr(&replay("unknown", stream, INTENT, &["--json"]));
    assert!(err.contains("line 1"), "{err}");
    assert!(err.contains("facts"), "{err}");

    let stream = r#"{"service":"web","member":"w1","time":"2026-11-22T08:00:10Z"}
{"service":"web","member":"w1"}
"#;
    let err = stderr(&replay("notime", stream, INTENT, &["--json"]));
    assert!(err.contains("line 2") && err.contains("time"), "{err}");
}

#[test]
fn an_invalid_intent_file_gives_every_error_with_its_line() {
    let intent = "services:
  web:
    report_intervl: 10s
    facets:
      version: {target: \"2\", rollout_window: soon}
    phases:
      max_flips_per_hour: lots
";
    let err = stderr(&replay("badintent", STREAM, intent, &["--json"]));
    for needle in [
        "line 3",
        "report_intervl",
        "line 5",
        "rollout_window",
        "line 7",
        "max_flips_per_hour",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
}

#[test]
fn an_invalid_intent_line_names_the_stream_line() {
    let stream = r#"{"service":"web","member":"w1","time":"2026-11-22T08:00:10Z"}
{"time":"2026-11-22T08:00:20Z","intent":{"services":{"web":{"facetz":{}}}}}
"#;
    let err = stderr(&replay("badintentline", stream, INTENT, &["--json"]));
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("facetz"), "{err}");
}

const HERD_INTENT: &str = "
services:
  db:
    report_interval: 1d
    dephase:
      jobs:
        cron:compact: {period: 1h}
";

/// Three members compact at the top of the hour; their first reports of the
/// job come at 08:00:30-08:00:32, so the job has been watched for a period at
/// 09:00:30. At 09:00 they compact again, then never again: two periods after
/// the last run started, at 11:00:00, the job has stopped.
const HERD_STREAM: &str = r#"{"service":"db","member":"d1","seq":1,"time":"2026-11-22T08:00:30Z","events":[{"kind":"cron:compact","start":"2026-11-22T08:00:00Z","end":"2026-11-22T08:00:20Z"}]}
{"service":"db","member":"d2","seq":1,"time":"2026-11-22T08:00:31Z","events":[{"kind":"cron:compact","start":"2026-11-22T08:00:00Z","end":"2026-11-22T08:00:25Z"}]}
{"service":"db","member":"d3","seq":1,"time":"2026-11-22T08:00:32Z","events":[{"kind":"cron:compact","start":"2026-11-22T08:00:01Z","end":"2026-11-22T08:00:21Z"}]}
{"service":"db","member":"d1","seq":2,"time":"2026-11-22T09:00:40Z","events":[{"kind":"cron:compact","start":"2026-11-22T09:00:00Z","end":"2026-11-22T09:00:20Z"}]}
"#;

#[test]
fn replay_reports_herd_with_exact_open_and_resolve_times() {
    let out = replay(
        "herd",
        HERD_STREAM,
        HERD_INTENT,
        &["--until", "+3h", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let herd = record(&report, "herd:db:cron:compact");
    assert_eq!(herd["kind"], "herd");
    assert_eq!(herd["severity"], "warning");
    assert_eq!(herd["opened_at"], "2026-11-22T09:00:30Z");
    assert_eq!(herd["resolved_at"], "2026-11-22T11:00:00Z");
    assert_eq!(herd["subjects"], serde_json::json!(["d1", "d2", "d3"]));
    assert_eq!(herd["evidence"]["events"], 4);
    assert_eq!(herd["evidence"]["period_seconds"], 3600.0);

    // The table shows it like every other kind.
    let out = replay("herd-table", HERD_STREAM, HERD_INTENT, &["--until", "+3h"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("herd "))
        .unwrap_or_else(|| panic!("no herd row: {text}"));
    assert!(
        row.contains("warning") && row.contains("2026-11-22T09:00:30Z") && row.contains("d1,d2,d3"),
        "{row}"
    );
}

/// The minimal streams differential fuzzing found (DESIGN 3.1 Replicas and
/// Retiming): each replays to the episodes the rules give.
#[test]
fn replay_of_the_fuzzed_streams_gives_the_rules_answers() {
    let run = |name: &str, stream: &str, intent: &str| -> Value {
        let out = replay(name, stream, intent, &["--until", "+1m", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON report")
    };
    let db = "services:\n  db:\n    report_interval: 10s\n";
    // Two replicas disagree at a position, then both go silent: still open.
    let report = run(
        "replicas-silent",
        r#"{"service":"db","member":"a","seq":1,"time":"2026-11-22T08:00:00Z","checksums":[{"dataset":"users","position":7,"digest":"x"}]}
{"service":"db","member":"b","seq":1,"time":"2026-11-22T08:00:00Z","checksums":[{"dataset":"users","position":7,"digest":"y"}]}
"#,
        db,
    );
    let d = record(&report, "replica_divergence:db:users");
    assert_eq!(d["resolved_at"], Value::Null, "{d:#}");

    // A longer report interval: the member silent under 10 s is back at the change.
    let report = run(
        "longer-interval",
        r#"{"service":"db","member":"a","seq":1,"time":"2026-11-22T08:00:00Z"}
{"time":"2026-11-22T08:00:35Z","intent":{"services":{"db":{"report_interval":"20s"}}}}
{"service":"db","member":"b","seq":1,"time":"2026-11-22T08:00:40Z"}
"#,
        db,
    );
    // ... and silent again 60 s after its report, under the new interval.
    let episodes: Vec<(&Value, &Value)> = report["divergences"]
        .as_array()
        .expect("divergences")
        .iter()
        .filter(|d| d["id"] == "silent:db:a")
        .map(|d| (&d["opened_at"], &d["resolved_at"]))
        .collect();
    assert_eq!(
        episodes,
        [
            (
                &json!("2026-11-22T08:00:30Z"),
                &json!("2026-11-22T08:00:35Z")
            ),
            (&json!("2026-11-22T08:01:00Z"), &Value::Null)
        ]
    );

    // A shorter hold: the illegal transition resolves at the change.
    let phases = "services:\n  web:\n    report_interval: 1h\n    phases:\n      hold: 10m\n";
    let report = run(
        "shorter-hold",
        r#"{"service":"web","member":"w1","seq":1,"time":"2026-11-22T08:00:00Z","facets":{"phase":"ready"}}
{"service":"web","member":"w1","seq":2,"time":"2026-11-22T08:01:00Z","facets":{"phase":"starting"}}
{"time":"2026-11-22T08:05:00Z","intent":{"services":{"web":{"report_interval":"1h","phases":{"hold":"2m"}}}}}
"#,
        phases,
    );
    let d = record(&report, "illegal_transition:web:w1");
    assert_eq!(d["opened_at"], "2026-11-22T08:01:00Z");
    assert_eq!(d["resolved_at"], "2026-11-22T08:05:00Z");
}

/// A report received at one time that carries another (as `capture export`
/// writes a skewed report) opens `clock_skew` past the server's bound, given
/// with `--max-clock-skew`.
#[test]
fn replayed_report_lines_judge_clock_skew_with_the_servers_bound() {
    let stream = r#"{"time":"2026-11-22T08:00:00Z","report":{"service":"db","member":"a","seq":1,"time":"2026-11-22T08:00:20Z"}}
"#;
    let intent = "services:\n  db:\n    report_interval: 1h\n";
    let kinds = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let out = replay("skew", stream, intent, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        report["divergences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(&[]).is_empty(), "20 s is within the default 30 s");
    assert_eq!(kinds(&["--max-clock-skew", "10s"]), ["clock_skew:db:a"]);
}
