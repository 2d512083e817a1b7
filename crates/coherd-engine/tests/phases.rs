//! Phase-flip: `illegal_transition`, `flapping`, `phase_disagreement` and
//! `drain_violation` on a virtual clock (DESIGN 3, 3.1).

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Severity};
use common::{Harness, assert_episode, rep};
use serde_json::json;

/// The default machine, rare reports, two flips an hour, a 5 s agreement timeout.
const INTENT: &str = "
services:
  web:
    report_interval: 1h
    phases:
      initial: [starting]
      serving: [ready]
      transitions:
        starting: [ready, stopped]
        ready: [draining, stopped]
        draining: [stopped]
        stopped: [starting]
      agreement_timeout: 5s
      max_flips_per_hour: 2
      hold: 10m
  lb:
    report_interval: 1h
";

fn phase(member: &str, seq: u64, p: &str) -> serde_json::Value {
    rep("web", member, seq, json!({"phase": p}))
}

/// The load balancer `lb-1` reporting its views.
fn lb(seq: u64, views: serde_json::Value) -> serde_json::Value {
    json!({"service": "lb", "member": "lb-1", "seq": seq, "views": views})
}

// ---- illegal_transition ----

#[test]
fn illegal_transition_opens_at_the_move_and_stays_open_for_the_hold() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 2, "starting"));
    {
        let d = f.one(Kind::IllegalTransition);
        assert_eq!(d.id, "illegal_transition:web:w1");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.subjects, ["w1"]);
        assert_eq!(d.evidence["from"], "ready");
        assert_eq!(d.evidence["to"], "starting");
        assert_episode(d, "1m", None);
    }
    f.tick("10m 59s 999ms 999us 999ns");
    assert!(f.one(Kind::IllegalTransition).is_open());
    f.tick("11m");
    assert_episode(f.one(Kind::IllegalTransition), "1m", Some("11m"));
}

#[test]
fn another_illegal_transition_extends_the_hold() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 2, "starting"));
    f.report("3m", phase("w1", 3, "ready"));
    f.report("5m", phase("w1", 4, "starting"));
    f.tick("1h");
    let d = f.one(Kind::IllegalTransition);
    assert_eq!(d.evidence["illegal_transitions"], 2);
    assert_episode(d, "1m", Some("15m"));
}

#[test]
fn a_seq_gap_makes_an_illegal_edge_an_unobserved_transition() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 3, "starting"));
    f.tick("1h");
    f.assert_no(Kind::IllegalTransition);
}

#[test]
fn reports_without_seq_never_count_as_a_gap() {
    let mut f = Harness::new(INTENT);
    f.report(
        "0s",
        json!({"service": "web", "member": "w1", "facets": {"phase": "ready"}}),
    );
    f.report(
        "1m",
        json!({"service": "web", "member": "w1", "facets": {"phase": "starting"}}),
    );
    assert_episode(f.one(Kind::IllegalTransition), "1m", None);
}

#[test]
fn the_first_phase_is_never_illegal() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "draining"));
    f.report("0s", phase("w2", 1, "bogus"));
    // A member that reported no phase before: its first phase is still first.
    f.report("0s", rep("web", "w3", 1, json!({"version": "1"})));
    f.report("1m", phase("w3", 2, "stopped"));
    f.tick("1h");
    f.assert_nothing();
}

#[test]
fn moving_to_and_out_of_an_unknown_phase_is_illegal_even_across_a_gap() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 2, "rebooting"));
    {
        let d = f.one(Kind::IllegalTransition);
        assert_eq!(d.evidence["unknown_phases"], json!(["rebooting"]));
        assert_episode(d, "1m", None);
    }
    f.report("2m", phase("w1", 5, "ready"));
    let d = f.one(Kind::IllegalTransition);
    assert_eq!(d.evidence["from"], "rebooting");
    assert_eq!(d.evidence["unknown_phases"], json!(["rebooting"]));
    f.tick("1h");
    assert_episode(f.one(Kind::IllegalTransition), "1m", Some("12m"));
}

#[test]
fn an_unknown_phase_is_neither_serving_nor_terminal() {
    let yaml =
        "services:\n  web:\n    report_interval: 1m\n    facets:\n      version: {target: \"2\"}\n";
    let mut f = Harness::new(yaml);
    f.report(
        "0s",
        rep(
            "web",
            "w1",
            1,
            json!({"phase": "rebooting", "version": "0"}),
        ),
    );
    // Not terminal: it drifts, and going quiet makes it silent rather than gone.
    assert_episode(f.one(Kind::Drift), "0s", None);
    f.tick("10m");
    assert_episode(f.one(Kind::Silent), "3m", None);
}

// ---- flapping ----

#[test]
fn flapping_opens_above_the_limit_and_resolves_when_the_oldest_change_leaves() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "starting"));
    f.report("1m", phase("w1", 2, "ready"));
    f.report("2m", phase("w1", 3, "draining"));
    f.assert_no(Kind::Flapping);
    f.report("3m", phase("w1", 4, "stopped"));
    {
        let d = f.one(Kind::Flapping);
        assert_eq!(d.id, "flapping:web:w1");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.subjects, ["w1"]);
        assert_episode(d, "3m", None);
    }
    // The change at 1m leaves the window at exactly 1h 1m.
    f.tick("1h 0m 59s 999ms 999us 999ns");
    assert!(f.one(Kind::Flapping).is_open());
    f.tick("1h 1m");
    assert_episode(f.one(Kind::Flapping), "3m", Some("1h 1m"));
}

#[test]
fn flapping_stays_open_while_changes_keep_coming_and_counts_reopens() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "starting"));
    f.report("1m", phase("w1", 2, "ready"));
    f.report("2m", phase("w1", 3, "draining"));
    f.report("3m", phase("w1", 4, "stopped"));
    f.report("30m", phase("w1", 5, "starting"));
    // In the window at 1h 1m: 2m, 3m, 30m — still more than 2.
    f.tick("1h 1m 30s");
    assert!(f.one(Kind::Flapping).is_open());
    f.tick("2h");
    assert_episode(f.one(Kind::Flapping), "3m", Some("1h 2m"));

    f.report("3h", phase("w1", 6, "ready"));
    f.report("3h 1m", phase("w1", 7, "draining"));
    f.report("3h 2m", phase("w1", 8, "stopped"));
    let v = f.of(Kind::Flapping);
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].reopens, 1);
    assert_episode(v[1], "3h 2m", None);
}

#[test]
fn a_gap_counts_as_one_change() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "starting"));
    f.report("1m", phase("w1", 5, "draining"));
    f.report("2m", phase("w1", 9, "ready"));
    f.report("3m", phase("w1", 12, "stopped"));
    assert_episode(f.one(Kind::Flapping), "3m", None);
    f.assert_no(Kind::IllegalTransition);
}

// ---- phase_disagreement ----

#[test]
fn phase_disagreement_opens_after_the_agreement_timeout_and_resolves_on_agreement() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1s", lb(1, json!({"web/w1": {"phase": "starting"}})));
    f.tick("5s 999ms 999us 999ns");
    f.assert_no(Kind::PhaseDisagreement);
    f.tick("20s");
    {
        let d = f.one(Kind::PhaseDisagreement);
        assert_eq!(d.id, "phase_disagreement:web:w1:lb/lb-1");
        assert_eq!(d.service, "web");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.subjects, ["w1", "lb/lb-1"]);
        assert_episode(d, "6s", None);
    }
    f.report("30s", lb(2, json!({"web/w1": {"phase": "ready"}})));
    assert_episode(f.one(Kind::PhaseDisagreement), "6s", Some("30s"));
}

#[test]
fn agreement_arriving_exactly_at_the_timeout_wins() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1s", lb(1, json!({"web/w1": {"phase": "starting"}})));
    f.report("6s", lb(2, json!({"web/w1": {"phase": "ready"}})));
    f.tick("1m");
    f.assert_nothing();
}

#[test]
fn bare_view_keys_name_the_reporters_own_service() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report(
        "0s",
        json!({"service": "web", "member": "w2", "seq": 1, "facets": {"phase": "ready"},
               "views": {"w1": {"phase": "starting"}}}),
    );
    f.tick("1m");
    let d = f.one(Kind::PhaseDisagreement);
    assert_eq!(d.subjects, ["w1", "web/w2"]);
    assert_episode(d, "5s", None);
}

#[test]
fn views_are_replaced_by_each_report_and_absent_means_none() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("0s", lb(1, json!({"web/w1": {"phase": "starting"}})));
    f.tick("10s");
    f.report("20s", json!({"service": "lb", "member": "lb-1", "seq": 2}));
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", Some("20s"));
}

#[test]
fn a_changing_view_keeps_one_clock_while_it_disagrees() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "draining"));
    f.report("0s", lb(1, json!({"web/w1": {"phase": "starting"}})));
    f.report("3s", lb(2, json!({"web/w1": {"phase": "stopped"}})));
    f.tick("1m");
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", None);
}

#[test]
fn a_silent_observer_or_member_stops_counting_for_agreement() {
    let yaml = "services:\n  web:\n    report_interval: 10s\n  lb:\n    report_interval: 10s\n";
    let mut f = Harness::new(yaml);
    // The observer goes quiet.
    f.report("0s", phase("w1", 1, "ready"));
    f.report("0s", lb(1, json!({"web/w1": {"phase": "starting"}})));
    f.report("20s", phase("w1", 2, "ready"));
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", None);
    f.report("40s", phase("w1", 3, "ready"));
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", Some("30s"));

    // The member goes quiet while the observer keeps reporting.
    let mut f = Harness::new(yaml);
    f.report("0s", phase("w1", 1, "ready"));
    for (i, t) in ["0s", "20s", "40s"].into_iter().enumerate() {
        f.report(
            t,
            lb(i as u64 + 1, json!({"web/w1": {"phase": "starting"}})),
        );
    }
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", Some("30s"));
}

// ---- drain_violation ----

fn drain_fixture() -> Harness {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "ready"));
    f.report("0s", lb(1, json!({"web/w1": {"phase": "ready"}})));
    f.report(
        "10s",
        json!({"service": "web", "member": "w1", "seq": 2,
               "facets": {"phase": "draining"}, "counters": {"requests": 100}}),
    );
    f
}

fn w1_requests(seq: u64, requests: u64) -> serde_json::Value {
    json!({"service": "web", "member": "w1", "seq": seq, "counters": {"requests": requests}})
}

#[test]
fn drain_violation_is_reported_instead_of_phase_disagreement() {
    let mut f = drain_fixture();
    f.tick("1m");
    f.assert_no(Kind::PhaseDisagreement);
    {
        let d = f.one(Kind::DrainViolation);
        assert_eq!(d.id, "drain_violation:web:w1:lb/lb-1");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.subjects, ["w1", "lb/lb-1"]);
        assert_episode(d, "15s", None);
    }
    f.report("2m", lb(2, json!({"web/w1": {"phase": "draining"}})));
    assert_episode(f.one(Kind::DrainViolation), "15s", Some("2m"));
}

#[test]
fn drain_violation_turns_critical_when_requests_grow_while_non_serving() {
    let mut f = drain_fixture();
    f.tick("20s");
    f.report("30s", w1_requests(3, 150));
    let d = f.one(Kind::DrainViolation);
    assert_eq!(f.severities(&d.id), [Severity::Warning, Severity::Critical]);
    assert_episode(d, "15s", None);
}

#[test]
fn growth_while_pending_opens_critical_at_the_deadline() {
    let mut f = drain_fixture();
    f.report("12s", w1_requests(3, 150));
    f.tick("1m");
    let d = f.one(Kind::DrainViolation);
    assert_eq!(d.severity, Severity::Critical);
    assert_episode(d, "15s", None);
}

#[test]
fn a_counter_decrease_is_a_restart_not_growth() {
    let mut f = drain_fixture();
    f.tick("20s");
    f.report("30s", w1_requests(3, 5));
    f.report("40s", w1_requests(4, 5));
    assert_eq!(f.one(Kind::DrainViolation).severity, Severity::Warning);
}

#[test]
fn growth_across_the_move_out_of_serving_does_not_count() {
    // requests grew between a serving report and a draining one: not while non-serving.
    let mut f = Harness::new(INTENT);
    f.report(
        "0s",
        json!({"service": "web", "member": "w1", "seq": 1,
               "facets": {"phase": "ready"}, "counters": {"requests": 10}}),
    );
    f.report("0s", lb(1, json!({"web/w1": {"phase": "ready"}})));
    f.report(
        "10s",
        json!({"service": "web", "member": "w1", "seq": 2,
               "facets": {"phase": "draining"}, "counters": {"requests": 100}}),
    );
    f.tick("1m");
    assert_eq!(f.one(Kind::DrainViolation).severity, Severity::Warning);
}

#[test]
fn switching_kind_without_agreement_resolves_the_old_and_opens_the_new_at_once() {
    let mut f = drain_fixture();
    f.tick("20s");
    // The observer now believes w1 is starting: no longer "serves", still wrong.
    f.report("30s", lb(2, json!({"web/w1": {"phase": "starting"}})));
    assert_episode(f.one(Kind::DrainViolation), "15s", Some("30s"));
    let d = f.one(Kind::PhaseDisagreement);
    assert_episode(d, "30s", None);
    assert_eq!(d.subjects, ["w1", "lb/lb-1"]);
    // And back.
    f.report("40s", lb(3, json!({"web/w1": {"phase": "ready"}})));
    assert_episode(f.one(Kind::PhaseDisagreement), "30s", Some("40s"));
    let v = f.of(Kind::DrainViolation);
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].reopens, 1);
    assert_episode(v[1], "40s", None);
}

#[test]
fn a_kind_switch_while_pending_keeps_the_clock() {
    let mut f = drain_fixture();
    f.report("12s", lb(2, json!({"web/w1": {"phase": "starting"}})));
    f.tick("1m");
    f.assert_no(Kind::DrainViolation);
    assert_episode(f.one(Kind::PhaseDisagreement), "15s", None);
}

#[test]
fn a_view_across_services_is_kept_in_the_observed_members_service() {
    let mut f = Harness::new(INTENT);
    f.report("0s", phase("w1", 1, "draining"));
    f.report(
        "0s",
        json!({"service": "lb", "member": "lb-1", "seq": 1,
               "views": {"web/w1": {"phase": "ready"}, "web/w9": {"phase": "ready"}}}),
    );
    f.tick("1m");
    // w9 is unknown: nothing to compare with.
    let d = f.one(Kind::DrainViolation);
    assert_eq!(d.service, "web");
    assert_episode(d, "5s", None);
}
