//! Retiming: an intent change that moves a deadline re-evaluates what it
//! governs at the change (DESIGN 3.1 Retiming), on a virtual clock.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, MemberChange};
use common::{Harness, assert_episode, at, rep};
use serde_json::json;

fn web(interval: &str, phases: &str) -> String {
    let phases = if phases.is_empty() {
        String::new()
    } else {
        format!(
            "    phases:\n      initial: [starting]\n      serving: [ready]\n      transitions:\n        starting: [ready, stopped]\n        ready: [draining, stopped]\n        draining: [stopped]\n        stopped: [starting]\n      {phases}\n"
        )
    };
    format!(
        "services:\n  web:\n    report_interval: {interval}\n{phases}  lb:\n    report_interval: 1h\n"
    )
}

fn phase(member: &str, seq: u64, p: &str) -> serde_json::Value {
    rep("web", member, seq, json!({"phase": p}))
}

// ---- report_interval ----

#[test]
fn a_longer_report_interval_brings_a_silent_member_back_at_the_change() {
    let mut f = Harness::new(&web("10s", ""));
    f.report("0s", phase("w1", 1, "ready"));
    f.report("5s", phase("w2", 1, "ready"));
    f.tick("40s");
    assert_eq!(f.of(Kind::Silent).len(), 2);
    // Under 20 s, both are silent only after 60 s (w1) and 65 s (w2).
    f.set_intent("41s", &web("20s", ""));
    for d in f.of(Kind::Silent) {
        assert!(!d.is_open(), "{} still open", d.id);
        assert_eq!(d.resolved_at, Some(at("41s")));
    }
    assert!(
        f.timeline("w1")
            .iter()
            .any(|(t, c)| *t == at("41s") && matches!(c, MemberChange::Back))
    );
    // And they fall silent again at the new deadlines, in report order.
    f.tick("1m 4s");
    let open: Vec<_> = f
        .of(Kind::Silent)
        .into_iter()
        .filter(|d| d.is_open())
        .collect();
    assert_eq!(open.len(), 1);
    assert_episode(open[0], "1m", None);
    f.tick("2m");
    let w2 = f.by_id("silent:web:w2");
    assert_episode(w2[1], "1m 5s", None);
}

#[test]
fn a_member_silent_under_the_new_interval_too_stays_silent() {
    let mut f = Harness::new(&web("10s", ""));
    f.report("0s", phase("w1", 1, "ready"));
    f.tick("1m 30s");
    f.set_intent("1m 30s", &web("20s", ""));
    assert_episode(f.one(Kind::Silent), "30s", None);
}

#[test]
fn a_shorter_report_interval_makes_members_silent_at_the_change() {
    let mut f = Harness::new(&web("1m", ""));
    f.report("0s", phase("w1", 1, "ready"));
    f.set_intent("1m", &web("10s", ""));
    f.tick("1m");
    assert_episode(f.one(Kind::Silent), "1m", None);
}

#[test]
fn a_member_that_left_is_forgotten_after_the_longer_interval() {
    let mut f = Harness::new(&web("10s", "hold: 10m"));
    f.report("0s", phase("w1", 1, "starting"));
    f.report("1s", phase("w1", 2, "stopped"));
    // Left at 31 s; forgotten a retention later. Lengthening the interval
    // after it left moves its forgetting later, and it is not lost.
    f.tick("1m");
    f.set_intent("1m", &web("1h", "hold: 10m"));
    f.tick("30d");
    let forgotten = f
        .timeline("w1")
        .into_iter()
        .filter(|(_, c)| matches!(c, MemberChange::Forgotten))
        .count();
    assert_eq!(forgotten, 1);
}

// ---- phases.hold ----

#[test]
fn a_shorter_hold_resolves_an_illegal_transition_at_the_change() {
    let mut f = Harness::new(&web("1h", "hold: 10m"));
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 2, "starting"));
    f.set_intent("5m", &web("1h", "hold: 2m"));
    assert_episode(f.one(Kind::IllegalTransition), "1m", Some("5m"));
    f.tick("1h");
    assert_eq!(f.of(Kind::IllegalTransition).len(), 1);
}

#[test]
fn a_shorter_hold_still_running_moves_the_deadline_earlier() {
    let mut f = Harness::new(&web("1h", "hold: 10m"));
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 2, "starting"));
    f.set_intent("2m", &web("1h", "hold: 5m"));
    f.tick("1h");
    assert_episode(f.one(Kind::IllegalTransition), "1m", Some("6m"));
}

#[test]
fn a_longer_hold_keeps_an_illegal_transition_open_longer() {
    let mut f = Harness::new(&web("1h", "hold: 10m"));
    f.report("0s", phase("w1", 1, "ready"));
    f.report("1m", phase("w1", 2, "starting"));
    f.set_intent("5m", &web("1h", "hold: 30m"));
    f.tick("20m");
    assert!(f.one(Kind::IllegalTransition).is_open());
    f.tick("1h");
    assert_episode(f.one(Kind::IllegalTransition), "1m", Some("31m"));
}

// ---- max_flips_per_hour ----

#[test]
fn a_lower_flap_limit_opens_flapping_at_the_change() {
    let mut f = Harness::new(&web("1h", "max_flips_per_hour: 5"));
    f.report("0s", phase("w1", 1, "starting"));
    f.report("1m", phase("w1", 2, "ready"));
    f.report("2m", phase("w1", 3, "draining"));
    f.report("3m", phase("w1", 4, "stopped"));
    f.assert_no(Kind::Flapping);
    f.set_intent("10m", &web("1h", "max_flips_per_hour: 2"));
    assert_episode(f.one(Kind::Flapping), "10m", None);
    // The change at 1m leaves the window at 1h 1m: two left, at the limit.
    f.tick("2h");
    assert_episode(f.one(Kind::Flapping), "10m", Some("1h 1m"));
}

#[test]
fn a_higher_flap_limit_resolves_flapping_at_the_change() {
    let mut f = Harness::new(&web("1h", "max_flips_per_hour: 2"));
    f.report("0s", phase("w1", 1, "starting"));
    f.report("1m", phase("w1", 2, "ready"));
    f.report("2m", phase("w1", 3, "draining"));
    f.report("3m", phase("w1", 4, "stopped"));
    assert!(f.one(Kind::Flapping).is_open());
    f.set_intent("10m", &web("1h", "max_flips_per_hour: 6"));
    assert_episode(f.one(Kind::Flapping), "3m", Some("10m"));
    f.tick("3h");
    assert_eq!(f.of(Kind::Flapping).len(), 1);
}

// ---- agreement_timeout ----

fn lb(seq: u64, view: &str) -> serde_json::Value {
    json!({"service": "lb", "member": "lb-1", "seq": seq, "views": {"web/w1": {"phase": view}}})
}

#[test]
fn a_shorter_agreement_timeout_opens_a_pending_disagreement_at_the_change() {
    let mut f = Harness::new(&web("1h", "agreement_timeout: 1m"));
    f.report("0s", phase("w1", 1, "ready"));
    f.report("0s", lb(1, "starting"));
    f.set_intent("10s", &web("1h", "agreement_timeout: 5s"));
    f.tick("11s");
    assert_episode(f.one(Kind::PhaseDisagreement), "10s", None);
}

#[test]
fn a_longer_agreement_timeout_resolves_an_open_disagreement_until_its_new_deadline() {
    let mut f = Harness::new(&web("1h", "agreement_timeout: 5s"));
    f.report("0s", phase("w1", 1, "ready"));
    f.report("0s", lb(1, "starting"));
    f.tick("10s");
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", None);
    f.set_intent("10s", &web("1h", "agreement_timeout: 1m"));
    assert_episode(f.one(Kind::PhaseDisagreement), "5s", Some("10s"));
    f.tick("59s");
    assert_eq!(f.of(Kind::PhaseDisagreement).len(), 1);
    f.tick("2m");
    let v = f.of(Kind::PhaseDisagreement);
    assert_eq!(v.len(), 2);
    assert_episode(v[1], "1m", None);
}
