//! Decoherence and mixed state: `drift` and `mixed` on a virtual clock (DESIGN 3, 3.1).

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Outcome, ReportCounts, Severity};
use common::{Harness, assert_episode, at, observation, rep};
use serde_json::json;

/// One targeted facet with a compatible value, one uniform facet without target.
/// Reports are rare so that nobody goes silent unless a test wants it.
const INTENT: &str = "
services:
  web:
    report_interval: 1h
    facets:
      version: {target: \"2\", compatible: [\"1.9\"], rollout_window: 10m}
      kernel: {uniform: true, rollout_window: 1h}
";

fn intent_with_target(target: &str, extra: &str) -> String {
    format!(
        "services:\n  web:\n    report_interval: 1h\n    facets:\n      version: {{target: \"{target}\", rollout_window: 10m{extra}}}\n"
    )
}

#[test]
fn foreign_value_is_critical_drift_at_once_and_resolves_at_target() {
    let mut f = Harness::new(INTENT);
    f.report("5s", rep("web", "w1", 1, json!({"version": "0.9"})));
    f.report("20s", rep("web", "w1", 2, json!({"version": "2"})));
    let d = f.one(Kind::Drift);
    assert_eq!(d.id, "drift:web:w1:version");
    assert_eq!(d.service, "web");
    assert_eq!(d.severity, Severity::Critical);
    assert_eq!(d.subjects, ["w1"]);
    assert_eq!(d.evidence["state"], "foreign");
    assert_episode(d, "5s", Some("20s"));
}

#[test]
fn compatible_value_converges_then_lags_at_the_window_end() {
    let mut f = Harness::new(INTENT);
    f.report("1m", rep("web", "w1", 1, json!({"version": "1.9"})));
    f.tick("9m 59s 999ms 999us 999ns");
    f.assert_no(Kind::Drift);
    f.tick("12m");
    let d = f.one(Kind::Drift);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.evidence["state"], "lagging");
    // The intent load at T0 is the change: the window ends at 10m, stamped then.
    assert_episode(d, "10m", None);
    f.report("13m", rep("web", "w1", 2, json!({"version": "2"})));
    assert_episode(f.one(Kind::Drift), "10m", Some("13m"));
}

#[test]
fn drift_escalates_from_warning_to_critical_and_keeps_the_highest() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "w1", 1, json!({"version": "1.9"})));
    f.tick("11m");
    f.report("12m", rep("web", "w1", 2, json!({"version": "0.1"})));
    f.report("13m", rep("web", "w1", 3, json!({"version": "1.9"})));
    let d = f.one(Kind::Drift);
    assert_eq!(f.severities(&d.id), [Severity::Warning, Severity::Critical]);
    // Back to lagging: severity never falls.
    assert_eq!(d.severity, Severity::Critical);
    assert!(d.is_open());
    assert_episode(d, "10m", None);
}

#[test]
fn a_report_at_the_window_end_that_reaches_the_target_wins() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "w1", 1, json!({"version": "1.9"})));
    f.report("10m", rep("web", "w1", 2, json!({"version": "2"})));
    f.tick("30m");
    f.assert_nothing();
}

#[test]
fn a_report_at_the_window_end_with_the_old_value_lags_at_once() {
    // "Longer than X" means at least X has passed: at tc + w the value lags.
    let mut f = Harness::new(INTENT);
    f.report("10m", rep("web", "w1", 1, json!({"version": "1.9"})));
    let d = f.one(Kind::Drift);
    assert_eq!(d.severity, Severity::Warning);
    assert_episode(d, "10m", None);
}

#[test]
fn previous_target_converges_after_a_change_and_the_one_before_is_foreign() {
    let mut f = Harness::new(&intent_with_target("1", ""));
    f.report("0s", rep("web", "old", 1, json!({"version": "0"})));
    f.report("0s", rep("web", "w1", 1, json!({"version": "1"})));
    assert_episode(f.one(Kind::Drift), "0s", None);
    f.set_intent("5m", &intent_with_target("2", ""));
    // w1 holds the previous target: converging, no drift. `old` stays foreign.
    f.tick("14m 59s");
    assert_eq!(f.of(Kind::Drift).len(), 1);
    f.set_intent("15m", &intent_with_target("3", ""));
    // After the second change "1" is neither the previous target nor compatible.
    let w1 = f.by_id("drift:web:w1:version");
    assert_eq!(w1.len(), 1);
    assert_eq!(w1[0].severity, Severity::Critical);
    assert_episode(w1[0], "15m", None);
}

#[test]
fn only_a_different_target_starts_a_change() {
    let mut f = Harness::new(&intent_with_target("2", ", compatible: [\"1.9\"]"));
    f.report("0s", rep("web", "w1", 1, json!({"version": "1.9"})));
    // Reloading the same target, even with another compatible list, keeps tc = 0.
    f.set_intent(
        "5m",
        &intent_with_target("2", ", compatible: [\"1.9\", \"1.8\"]"),
    );
    f.tick("20m");
    assert_episode(f.one(Kind::Drift), "10m", None);
}

#[test]
fn editing_the_window_moves_its_end_but_not_the_change() {
    let mut f = Harness::new(&intent_with_target("2", ", compatible: [\"1.9\"]"));
    f.report("0s", rep("web", "w1", 1, json!({"version": "1.9"})));
    f.set_intent(
        "5m",
        "services:\n  web:\n    report_interval: 1h\n    facets:\n      version: {target: \"2\", compatible: [\"1.9\"], rollout_window: 20m}\n",
    );
    f.tick("30m");
    // tc stays 0: the window ends at 0 + 20m, not 5m + 20m.
    assert_episode(f.one(Kind::Drift), "20m", None);
}

#[test]
fn an_unknown_facet_is_not_drift_and_not_coherent() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "w1", 1, json!({"phase": "ready"})));
    f.report("0s", rep("web", "w2", 1, json!({"version": "2"})));
    f.tick("1h");
    f.assert_nothing();
    let slis = f.engine_mut().service_slis("web").unwrap();
    assert_eq!(slis.coherence, Some(0.5));
}

#[test]
fn facets_not_named_in_the_intent_raise_nothing() {
    let mut f = Harness::new(INTENT);
    f.report(
        "0s",
        rep("web", "w1", 1, json!({"version": "2", "region": "a"})),
    );
    f.report(
        "0s",
        rep("web", "w2", 1, json!({"version": "2", "region": "b"})),
    );
    f.report("0s", rep("other", "o1", 1, json!({"version": "7"})));
    f.report("0s", rep("other", "o2", 1, json!({"version": "8"})));
    f.tick("10s");
    f.assert_nothing();
}

#[test]
fn mixed_escalates_info_warning_critical_and_resolves() {
    let mut f = Harness::new(&intent_with_target("1", ""));
    f.report("0s", rep("web", "a", 1, json!({"version": "1"})));
    f.report("0s", rep("web", "b", 1, json!({"version": "1"})));
    f.set_intent("1m", &intent_with_target("2", ""));
    f.assert_nothing();
    f.report("2m", rep("web", "a", 2, json!({"version": "2"})));
    {
        let m = f.one(Kind::Mixed);
        assert_eq!(m.id, "mixed:web:version");
        assert_eq!(m.severity, Severity::Info);
        assert_eq!(m.subjects, ["b"]);
        assert_episode(m, "2m", None);
    }
    // The window of the change at 1m ends at 11m: b lags.
    f.tick("11m 30s");
    assert_eq!(f.one(Kind::Mixed).severity, Severity::Warning);
    assert_episode(f.one(Kind::Drift), "11m", None);
    f.report("12m", rep("web", "b", 2, json!({"version": "x"})));
    f.report("13m", rep("web", "b", 3, json!({"version": "2"})));
    let m = f.one(Kind::Mixed);
    assert_eq!(
        f.severities(&m.id),
        [Severity::Info, Severity::Warning, Severity::Critical]
    );
    assert_eq!(m.severity, Severity::Critical);
    assert_episode(m, "2m", Some("13m"));
    // The record keeps who was off target when it resolved.
    assert_eq!(m.subjects, ["b"]);
    assert_episode(f.one(Kind::Drift), "11m", Some("13m"));
}

#[test]
fn mixed_subjects_are_the_members_off_target_with_the_distribution() {
    let mut f = Harness::new(INTENT);
    for (m, v) in [("a", "2"), ("b", "2"), ("c", "1.9"), ("d", "1.9")] {
        f.report("0s", rep("web", m, 1, json!({"version": v})));
    }
    f.engine_mut().refresh_open_subjects();
    let m = f.one(Kind::Mixed);
    assert_eq!(m.subjects, ["c", "d"]);
    assert_eq!(m.evidence["values"], json!({"1.9": 2, "2": 2}));
    assert_eq!(m.severity, Severity::Info);
}

#[test]
fn uniform_facet_without_target_is_info_for_its_window_then_warning() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "a", 1, json!({"kernel": "6.1"})));
    f.report("0s", rep("web", "b", 1, json!({"kernel": "6.1"})));
    f.report("0s", rep("web", "c", 1, json!({"kernel": "6.1"})));
    f.report("1m", rep("web", "c", 2, json!({"kernel": "6.2"})));
    f.tick("1h 0m 59s 999ms 999us 999ns");
    assert_eq!(f.one(Kind::Mixed).severity, Severity::Info);
    f.tick("1h 1m");
    let m = f.one(Kind::Mixed);
    assert_eq!(m.severity, Severity::Warning);
    // Subjects are off the most common value.
    f.engine_mut().refresh_open_subjects();
    assert_eq!(f.one(Kind::Mixed).subjects, ["c"]);
    f.report("2h", rep("web", "c", 3, json!({"kernel": "6.1"})));
    assert_episode(f.one(Kind::Mixed), "1m", Some("2h"));

    // The window restarts when it went back to one value.
    f.report("3h", rep("web", "a", 2, json!({"kernel": "6.3"})));
    f.tick("3h 59m");
    let again = f.of(Kind::Mixed);
    assert_eq!(again.len(), 2);
    assert_eq!(again[1].reopens, 1);
    assert_eq!(again[1].severity, Severity::Info);
    f.tick("4h 30m");
    let again = f.of(Kind::Mixed);
    assert_eq!(again[1].severity, Severity::Warning);
    assert_episode(again[1], "3h", None);
}

#[test]
fn terminal_members_do_not_count_for_drift_or_mixed() {
    let mut f = Harness::new(INTENT);
    f.report(
        "0s",
        rep("web", "a", 1, json!({"version": "2", "phase": "ready"})),
    );
    f.report(
        "0s",
        rep("web", "b", 1, json!({"version": "0.1", "phase": "stopped"})),
    );
    f.assert_nothing();
    f.report(
        "1m",
        rep("web", "c", 1, json!({"version": "0.1", "phase": "ready"})),
    );
    assert_episode(f.one(Kind::Drift), "1m", None);
    assert_episode(f.one(Kind::Mixed), "1m", None);
    f.report("2m", rep("web", "c", 2, json!({"phase": "draining"})));
    f.report("3m", rep("web", "c", 3, json!({"phase": "stopped"})));
    assert_episode(f.one(Kind::Drift), "1m", Some("3m"));
    assert_episode(f.one(Kind::Mixed), "1m", Some("3m"));
}

#[test]
fn silent_members_do_not_count_for_drift_or_mixed() {
    let yaml =
        "services:\n  web:\n    report_interval: 1m\n    facets:\n      version: {target: \"2\"}\n";
    let mut f = Harness::new(yaml);
    f.report("0s", rep("web", "b", 1, json!({"version": "0.1"})));
    for i in 0..6u64 {
        f.report(
            &format!("{}m", i),
            rep("web", "a", i + 1, json!({"version": "2"})),
        );
    }
    // b is silent at 3 x 1m after its last report: drift and mixed end then.
    assert_episode(f.one(Kind::Silent), "3m", None);
    assert_episode(f.one(Kind::Drift), "0s", Some("3m"));
    assert_episode(f.one(Kind::Mixed), "0s", Some("3m"));
}

#[test]
fn a_duplicate_changes_nothing() {
    let mut f = Harness::new(INTENT);
    assert_eq!(
        f.report("0s", rep("web", "a", 5, json!({"version": "2"}))),
        Outcome::Applied
    );
    assert_eq!(
        f.report("1s", rep("web", "a", 5, json!({"version": "0.1"}))),
        Outcome::Duplicate
    );
    assert_eq!(
        f.report("2s", rep("web", "a", 3, json!({"version": "0.1"}))),
        Outcome::Duplicate
    );
    f.tick("1m");
    f.assert_nothing();
    assert_eq!(
        f.engine().report_counts(),
        ReportCounts {
            applied: 1,
            duplicates: 2
        }
    );
}

#[test]
fn a_report_without_seq_is_always_applied() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "a", 5, json!({"version": "2"})));
    let out = f.report(
        "1s",
        json!({"service": "web", "member": "a", "facets": {"version": "0.1"}}),
    );
    assert_eq!(out, Outcome::Applied);
    assert_episode(f.one(Kind::Drift), "1s", None);
    // And the last applied seq still guards against replays.
    assert_eq!(
        f.report("2s", rep("web", "a", 5, json!({"version": "2"}))),
        Outcome::Duplicate
    );
}

#[test]
fn facets_merge_by_key() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "a", 1, json!({"version": "0.1"})));
    // A report that does not mention version keeps it.
    f.report("1s", rep("web", "a", 2, json!({"kernel": "6.1"})));
    assert!(f.one(Kind::Drift).is_open());
}

#[test]
fn dropping_a_facet_from_the_intent_resolves_its_divergences() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "a", 1, json!({"version": "2"})));
    f.report("0s", rep("web", "b", 1, json!({"version": "0.1"})));
    f.set_intent("1m", "services:\n  web:\n    report_interval: 1h\n");
    assert_episode(f.one(Kind::Drift), "0s", Some("1m"));
    assert_episode(f.one(Kind::Mixed), "0s", Some("1m"));
}

/// Two members that move to the target in the same instant never make the
/// facet mixed: the state between their two reports is not an episode.
#[test]
fn regression_simultaneous_upgrade_opens_no_zero_length_mixed() {
    let mut f = Harness::new(
        "services:\n  checkout:\n    facets:\n      version: {target: \"2\", compatible: [\"1\"]}\n",
    );
    let report = |m: &str, v: &str| {
        observation(
            &serde_json::json!({"service": "checkout", "member": m, "facets": {"version": v}}),
        )
    };
    let (a1, b1) = (report("a", "1"), report("b", "1"));
    f.report_instant(at("0s"), &[&a1, &b1]);
    let (a2, b2) = (report("a", "2"), report("b", "2"));
    f.report_instant(at("10s"), &[&b2, &a2]);
    f.tick("20s");
    assert!(
        f.engine().divergences().is_empty(),
        "{:?}",
        f.engine().divergences()
    );
}
