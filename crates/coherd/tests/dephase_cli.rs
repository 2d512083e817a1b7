//! Black-box tests of `coherd splay`, `coherd offsets` and `coherd herd`.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn coherd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(args)
        .output()
        .expect("the coherd binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "coherd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// Writes `contents` to a fresh file in this test binary's scratch directory.
fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dephase_cli");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("scratch file");
    path
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("valid JSON")
}

#[test]
fn splay_print_is_stable_and_inside_the_window() {
    let args = [
        "splay", "--window", "10m", "--key", "web-7", "--job", "backup", "--print",
    ];
    let first = stdout(&coherd(&args));
    let second = stdout(&coherd(&args));
    assert_eq!(first, second);
    let seconds: f64 = first.trim().parse().expect("seconds");
    assert!((0.0..600.0).contains(&seconds), "{seconds}");

    let other = stdout(&coherd(&[
        "splay", "--window", "10m", "--key", "web-8", "--job", "backup", "--print",
    ]));
    assert_ne!(first, other);
}

#[test]
fn splay_passes_the_exit_code_through() {
    let output = coherd(&["splay", "--window", "0s", "--", "sh", "-c", "exit 3"]);
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn splay_reports_a_missing_command_like_a_shell() {
    let output = coherd(&["splay", "--window", "0s", "--", "coherd-no-such-command"]);
    assert_eq!(output.status.code(), Some(127));
}

#[test]
fn offsets_keep_every_slot_within_the_ideal() {
    let members: String = (0..1000).map(|i| format!("member-{i}\n")).collect();
    let file = scratch_file("members-1000.txt", &members);
    let report = json(&coherd(&[
        "offsets",
        "--window",
        "600s",
        "--job",
        "compact",
        "--members-file",
        file.to_str().expect("utf-8 path"),
        "--json",
    ]));
    let offsets = report["offsets"].as_object().expect("offsets object");
    assert_eq!(offsets.len(), 1000);
    let mut slots = [0usize; 60];
    for seconds in offsets.values() {
        let seconds = seconds.as_f64().expect("seconds");
        assert!((0.0..600.0).contains(&seconds));
        slots[(seconds / 10.0) as usize] += 1;
    }
    // ceil(1000 * 10 / 600) = 17
    assert!(slots.iter().all(|&count| count <= 17), "{slots:?}");
}

#[test]
fn offsets_name_the_line_of_a_duplicate() {
    let file = scratch_file("members-dup.txt", "# fleet\na\nb\n\na\n");
    let output = coherd(&[
        "offsets",
        "--window",
        "1h",
        "--members-file",
        file.to_str().expect("utf-8 path"),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("members-dup.txt:5"), "{stderr}");
    assert!(stderr.contains("first on line 2"), "{stderr}");
}

/// 120 members running `kind` once an hour for 3 hours, member `i` starting
/// `step_s * i` seconds after the hour, each run lasting a minute.
fn hourly_events(kind: &str, step_s: u64) -> String {
    let mut lines = String::new();
    for member in 0..120u64 {
        for hour in 0..3u64 {
            let start = 1_714_521_600 + hour * 3600 + member * step_s;
            let at = |secs: u64| {
                jiff::Timestamp::from_second(secs as i64)
                    .expect("valid time")
                    .to_string()
            };
            lines.push_str(&format!(
                "{{\"member\":\"m{member}\",\"kind\":\"{kind}\",\"start\":\"{}\",\"end\":\"{}\"}}\n",
                at(start),
                at(start + 60)
            ));
        }
    }
    lines
}

#[test]
fn herd_tells_aligned_from_spread_events() {
    let aligned = scratch_file("aligned.ndjson", &hourly_events("cron:compact", 0));
    let spread = scratch_file("spread.ndjson", &hourly_events("cron:compact", 30));
    let measure = |path: &PathBuf| {
        json(&coherd(&[
            "herd",
            "--events",
            path.to_str().expect("utf-8 path"),
            "--period",
            "1h",
            "--json",
        ]))
    };
    let aligned = measure(&aligned);
    let spread = measure(&spread);

    assert!(aligned["order_parameter"].as_f64().expect("R") > 0.99);
    assert_eq!(aligned["peak_concurrency"], 120);
    assert_eq!(aligned["histogram"][0], 360);
    assert!(aligned["peak_to_mean"].as_f64().expect("ratio") > 59.0);

    assert!(spread["order_parameter"].as_f64().expect("R") < 0.1);
    assert_eq!(spread["peak_concurrency"], 2);
    assert!(spread["peak_to_mean"].as_f64().expect("ratio") <= 1.0 + 1e-9);
    assert_eq!(spread["histogram"].as_array().expect("histogram").len(), 60);

    // The even-spread recommendation takes the aligned fleet apart.
    let recommended = &aligned["recommendations"][0];
    assert_eq!(recommended["method"], "spread");
    assert!(recommended["order_parameter"].as_f64().expect("R") < 0.1);
    assert!(recommended["peak_concurrency"].as_u64().expect("peak") <= 3);
}

#[test]
fn herd_reads_observations_and_names_bad_lines() {
    let good = r#"{"service":"db","member":"a","version":"7","events":[{"kind":"cron:compact","start":"2024-05-01T00:00:00Z","end":"2024-05-01T00:05:00Z"}]}"#;
    let file = scratch_file("observations.ndjson", &format!("{good}\n{good}\n"));
    let report = json(&coherd(&[
        "herd",
        "--events",
        file.to_str().expect("path"),
        "--json",
    ]));
    assert_eq!(report["peak_concurrency"], 2);

    let bad = r#"{"service":"db","member":"a","events":[{"kind":"k","start":"yesterday","end":"2024-05-01T00:05:00Z"}]}"#;
    let file = scratch_file("bad.ndjson", &format!("{good}\n{bad}\n"));
    let output = coherd(&["herd", "--events", file.to_str().expect("path")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.ndjson:2: events[0]"), "{stderr}");
}

#[test]
fn herd_finds_colliding_crontab_lines() {
    let crontab =
        "MAILTO=ops\n# nightly\n0 3 * * * backup --all\n0 * * * * logrotate\n*/20 * * * * push\n";
    let file = scratch_file("host.cron", crontab);
    let report = json(&coherd(&[
        "herd",
        "--crontab",
        file.to_str().expect("path"),
        "--json",
    ]));
    let collisions = report["collisions"].as_array().expect("collisions");
    // At 03:00 all three fire together, every day of the week.
    assert_eq!(collisions[0]["lines"].as_array().expect("lines").len(), 3);
    assert_eq!(collisions[0]["times_per_week"], 7);
    assert_eq!(collisions[0]["first"], "Mon 03:00");
    assert_eq!(report["lines"].as_array().expect("lines").len(), 3);

    let bad = scratch_file("bad.cron", "0 3 * * * ok\n0 3 * *\n");
    let output = coherd(&["herd", "--crontab", bad.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.cron:2"), "{stderr}");
}

/// A system crontab names the user before the command: the job is the
/// command's program, not the user.
#[test]
fn herd_reads_a_system_crontab_without_taking_the_user_for_the_job() {
    let crontab = "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n0 3 * * * postgres vacuumdb --all\n";
    let file = scratch_file("system.cron", crontab);
    let report = json(&coherd(&[
        "herd",
        "--crontab",
        file.to_str().expect("path"),
        "--system",
        "--json",
    ]));
    let jobs: Vec<&str> = report["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["job"].as_str())
        .collect();
    assert!(
        !jobs.contains(&"root") && !jobs.contains(&"postgres"),
        "{jobs:?}"
    );
    assert!(jobs.contains(&"vacuumdb"), "{jobs:?}");
}

#[test]
fn every_command_has_an_example_in_its_help() {
    for command in ["splay", "offsets", "herd"] {
        let help = stdout(&coherd(&[command, "--help"]));
        assert!(help.contains("Example:"), "{command}: {help}");
    }
}
