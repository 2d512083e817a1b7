//! A member's timeline: the engine says when a member joins, changes a facet
//! (its phase too), goes silent, comes back, leaves, is deleted or forgotten,
//! and says nothing when a report repeats what the member said before.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::MemberChange;
use common::{Harness, at, rep};
use serde_json::json;

const INTENT: &str = "
services:
  web:
    report_interval: 10s
    phases:
      initial: [starting]
      serving: [ready]
      transitions:
        starting: [ready]
        ready: [stopped]
        stopped: [starting]
";

fn changed(facet: &str, from: &str, to: &str) -> MemberChange {
    MemberChange::Changed {
        facet: facet.into(),
        from: from.into(),
        to: to.into(),
    }
}

#[test]
fn a_members_timeline_holds_its_changes_and_nothing_else() {
    let mut f = Harness::new(INTENT);
    f.report(
        "0s",
        rep(
            "web",
            "w-1",
            1,
            json!({"version": "1.4.1", "phase": "ready"}),
        ),
    );
    // The same again: nothing to tell.
    f.report(
        "10s",
        rep(
            "web",
            "w-1",
            2,
            json!({"version": "1.4.1", "phase": "ready"}),
        ),
    );
    f.report(
        "20s",
        rep(
            "web",
            "w-1",
            3,
            json!({"version": "1.4.2", "phase": "ready"}),
        ),
    );
    // Silent 30 s after the last report, back at 70 s.
    f.tick("60s");
    f.report(
        "70s",
        rep(
            "web",
            "w-1",
            4,
            json!({"version": "1.4.2", "phase": "stopped"}),
        ),
    );
    // Silent in a terminal phase: it left.
    f.tick("110s");
    let joined = MemberChange::Joined {
        facets: [("phase", "ready"), ("version", "1.4.1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        f.timeline("w-1"),
        vec![
            (at("0s"), joined),
            (at("20s"), changed("version", "1.4.1", "1.4.2")),
            (at("50s"), MemberChange::Silent),
            (at("70s"), MemberChange::Back),
            (at("70s"), changed("phase", "ready", "stopped")),
            (at("100s"), MemberChange::Left),
        ]
    );
    // An hour after it left it is forgotten.
    f.tick("2h");
    assert_eq!(
        f.timeline("w-1").last().map(|e| &e.1),
        Some(&MemberChange::Forgotten)
    );
}

#[test]
fn an_operators_delete_is_in_the_timeline() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "w-2", 1, json!({"version": "1"})));
    assert!(f.driver.remove_member(at("5s"), "web", "w-2"));
    assert_eq!(
        f.timeline("w-2").last(),
        Some(&(at("5s"), MemberChange::Deleted))
    );
}
