//! `herd`: periodic runs synchronised across a service, by order parameter and
//! by concurrency, opened and resolved at exact times on a virtual clock.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Outcome, Severity};
use common::{Harness, assert_episode, at};
use serde_json::{Value, json};

/// One report of `member` listing runs of `kind`, each `(start, end)` as offsets from T0.
fn runs(member: &str, seq: u64, kind: &str, list: &[(&str, &str)]) -> Value {
    let events: Vec<Value> = list
        .iter()
        .map(|(s, e)| json!({"kind": kind, "start": at(s).to_string(), "end": at(e).to_string()}))
        .collect();
    json!({"service": "db", "member": member, "seq": seq, "events": events})
}

const INTENT: &str = "
services:
  db:
    report_interval: 1d
    dephase:
      jobs:
        cron:compact: {period: 1h}
        cron:backup: {period: 1h, max_concurrent: 2, herd_threshold: 1}
";

const ID: &str = "herd:db:cron:compact";

#[test]
fn aligned_runs_open_herd_once_watched_for_a_period_and_resolve_when_spread_runs_dilute_them() {
    let mut f = Harness::new(INTENT);
    // Three members run at the top of the hour; the first report of the job is at 08:00:30.
    f.report("30s", runs("m1", 1, "cron:compact", &[("0s", "20s")]));
    f.report("40s", runs("m2", 1, "cron:compact", &[("0s", "25s")]));
    f.report("50s", runs("m3", 1, "cron:compact", &[("0s", "20s")]));
    // R = 1, but the job has been watched for less than a period.
    f.tick("1h 29s");
    f.assert_no(Kind::Herd);
    // At 09:00:30 it has been watched for a period: herd, stamped with that deadline.
    f.tick("1h 50s");
    let d = f.one(Kind::Herd);
    assert_eq!(d.id, ID);
    assert_eq!(d.severity, Severity::Warning);
    assert_episode(d, "1h 30s", None);
    assert_eq!(d.subjects, ["m1", "m2", "m3"]);
    assert_eq!(d.evidence["order_parameter"], 1.0);
    assert_eq!(d.evidence["members"], 3);
    assert_eq!(d.evidence["events"], 3);
    assert_eq!(d.evidence["period_seconds"], 3600.0);
    assert_eq!(d.evidence["max_concurrent"], Value::Null);

    // Now they spread: 09:00, 09:20, 09:40. With m1 and m2 in, R is about 0.72.
    f.report("1h 1m", runs("m1", 2, "cron:compact", &[("1h", "1h 20s")]));
    f.report(
        "1h 21m",
        runs("m2", 2, "cron:compact", &[("1h 20m", "1h 20m 20s")]),
    );
    assert!(f.one(Kind::Herd).is_open());
    // With m3 at 09:40, R = 3/6 = 0.5: resolved at the report that made it so.
    f.report(
        "1h 41m",
        runs("m3", 2, "cron:compact", &[("1h 40m", "1h 40m 20s")]),
    );
    let d = f.one(Kind::Herd);
    assert_episode(d, "1h 30s", Some("1h 41m"));
    assert_eq!(
        d.evidence["order_parameter"]
            .as_f64()
            .map(|r| (r * 1e9).round() / 1e9),
        Some(0.5)
    );
    assert_eq!(d.evidence["events"], 6);
}

#[test]
fn herd_by_order_resolves_at_the_deadline_when_the_job_stops_running() {
    let mut f = Harness::new(INTENT);
    for (i, m) in ["m1", "m2", "m3", "m4"].into_iter().enumerate() {
        f.report(
            &format!("{}s", 30 + i),
            runs(m, 1, "cron:compact", &[("0s", "20s")]),
        );
    }
    f.tick("1h 30s");
    assert_episode(f.one(Kind::Herd), "1h 30s", None);
    // No run starts after 08:00:00: two periods later, at 10:00:00, the job has
    // stopped and R no longer counts (its runs stay in the window until 11:00).
    f.tick("1h 59m 59s");
    assert!(f.one(Kind::Herd).is_open());
    f.tick("4h");
    let d = f.one(Kind::Herd);
    assert_episode(d, "1h 30s", Some("2h"));
    assert_eq!(d.evidence["events"], 4);
    assert_eq!(d.evidence["order_parameter"], 1.0);
    // The record shows the window the instant before it resolved.
    assert_eq!(d.evidence["order_parameter_counts"], true);
}

#[test]
fn concurrency_above_max_concurrent_opens_at_once_and_resolves_when_a_run_leaves() {
    let mut f = Harness::new(INTENT);
    // Three runs overlap in [08:08, 08:09); the job allows two.
    f.report("10m", runs("m1", 1, "cron:backup", &[("0s", "10m")]));
    f.report("15m", runs("m2", 1, "cron:backup", &[("5m", "15m")]));
    f.assert_no(Kind::Herd);
    f.report("20m", runs("m3", 1, "cron:backup", &[("8m", "9m")]));
    let d = f.one(Kind::Herd);
    assert_eq!(d.id, "herd:db:cron:backup");
    assert_episode(d, "20m", None);
    assert_eq!(d.evidence["peak_concurrency"], 3);
    assert_eq!(d.evidence["max_concurrent"], 2);
    assert_eq!(d.severity, Severity::Critical, "past max_concurrent pages");
    // herd_threshold 1: R never counts; m1's run leaves at 11:00:00 and the peak drops to 2.
    f.tick("3h 30m");
    let d = f.one(Kind::Herd);
    assert_episode(d, "20m", Some("3h"));
    assert_eq!(d.evidence["peak_concurrency"], 3);
}

#[test]
fn runs_that_only_touch_do_not_overlap() {
    let mut f = Harness::new(INTENT);
    f.report("1m", runs("m1", 1, "cron:backup", &[("0s", "10s")]));
    f.report("1m", runs("m2", 1, "cron:backup", &[("10s", "20s")]));
    f.report(
        "1m",
        runs("m3", 1, "cron:backup", &[("20s", "30s"), ("5s", "8s")]),
    );
    f.tick("5h");
    // Peak 2 (m1 and m3's second run), never above 2.
    f.assert_no(Kind::Herd);
}

#[test]
fn spread_runs_never_look_synchronised_while_the_first_period_fills_in() {
    let mut f = Harness::new(INTENT);
    // Twelve members, five minutes apart: after three of them R is 0.91, but
    // the job has not been watched for a period; after a period R is 0.
    for i in 0..12u64 {
        let start = format!("{}m", i * 5);
        let end = format!("{}m 20s", i * 5);
        let member = format!("m{i:02}");
        f.report(
            &format!("{}m 30s", i * 5),
            runs(&member, 1, "cron:compact", &[(&start, &end)]),
        );
    }
    f.tick("5h");
    f.assert_no(Kind::Herd);
}

#[test]
fn two_members_in_lockstep_are_not_a_herd() {
    let mut f = Harness::new(INTENT);
    for h in 0..3u64 {
        let (s, e) = (format!("{h}h"), format!("{h}h 20s"));
        f.report(
            &format!("{h}h 30s"),
            runs("m1", h + 1, "cron:compact", &[(&s, &e)]),
        );
        f.report(
            &format!("{h}h 31s"),
            runs("m2", h + 1, "cron:compact", &[(&s, &e)]),
        );
    }
    f.tick("6h");
    f.assert_no(Kind::Herd);
}

#[test]
fn undeclared_kinds_use_an_hourly_period_and_the_default_threshold() {
    let mut f = Harness::bare();
    for m in ["a", "b", "c"] {
        f.report("30s", runs(m, 1, "cache:refresh", &[("0s", "1s")]));
    }
    f.tick("1h 50m");
    let d = f.one(Kind::Herd);
    assert_eq!(d.id, "herd:db:cache:refresh");
    assert_episode(d, "1h 30s", None);
    assert_eq!(d.evidence["declared"], false);
    assert_eq!(d.evidence["period_seconds"], 3600.0);
    assert_eq!(d.evidence["herd_threshold"], 0.6);
}

#[test]
fn a_run_listed_again_is_the_same_run_and_a_duplicate_report_changes_nothing() {
    let mut f = Harness::new(INTENT);
    f.report("10m", runs("m1", 1, "cron:backup", &[("0s", "10m")]));
    f.report("15m", runs("m2", 1, "cron:backup", &[("5m", "15m")]));
    // m1 lists its run again with the next report, and re-sends seq 1.
    f.report("16m", runs("m1", 2, "cron:backup", &[("0s", "10m")]));
    let dup = f.report("17m", runs("m1", 1, "cron:backup", &[("6m", "7m")]));
    assert_eq!(dup, Outcome::Duplicate);
    f.tick("5h");
    f.assert_no(Kind::Herd);
    // A third distinct overlapping run is what tips it.
    let mut g = Harness::new(INTENT);
    g.report("10m", runs("m1", 1, "cron:backup", &[("0s", "10m")]));
    g.report("15m", runs("m2", 1, "cron:backup", &[("5m", "15m")]));
    g.report("17m", runs("m1", 2, "cron:backup", &[("6m", "7m")]));
    assert_episode(g.one(Kind::Herd), "17m", None);
}

#[test]
fn an_intent_that_declares_a_limit_judges_the_runs_already_seen_at_once() {
    let mut f = Harness::new("services:\n  db:\n    report_interval: 1d\n");
    for m in ["m1", "m2"] {
        f.report("1m", runs(m, 1, "cron:vacuum", &[("0s", "10m")]));
    }
    f.assert_no(Kind::Herd);
    f.set_intent(
        "2m",
        "services:\n  db:\n    report_interval: 1d\n    dephase:\n      jobs:\n        cron:vacuum: {period: 1d, max_concurrent: 1}\n",
    );
    let d = f.one(Kind::Herd);
    assert_episode(d, "2m", None);
    assert_eq!(d.evidence["period_seconds"], 86400.0);
    assert_eq!(d.evidence["declared"], true);
    // Lifting the limit resolves it at the next intent.
    f.set_intent("3m", "services:\n  db:\n    report_interval: 1d\n");
    assert_episode(f.one(Kind::Herd), "2m", Some("3m"));
}
