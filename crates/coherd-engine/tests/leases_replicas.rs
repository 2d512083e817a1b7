//! Leases and replicas: `split_brain`, `stale_epoch` and `replica_divergence`
//! on a virtual clock (DESIGN 3, 3.1).

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Severity};
use common::{Harness, assert_episode, at, rep};
use serde_json::{Value, json};

const INTENT: &str = "
services:
  sched:
    report_interval: 1h
    leases:
      leader: {exclusive: true}
      cache: {}
";

/// A report of `member` holding exactly `leases`: (resource, epoch, expiry offset).
fn holding(member: &str, seq: u64, leases: &[(&str, u64, &str)]) -> Value {
    let leases: Vec<Value> = leases
        .iter()
        .map(|(r, e, x)| json!({"resource": r, "epoch": e, "expires": at(x).to_string()}))
        .collect();
    json!({"service": "sched", "member": member, "seq": seq, "leases": leases})
}

// ---- split_brain and stale_epoch ----

#[test]
fn split_brain_and_stale_epoch_open_together_and_end_at_expiry() {
    let mut f = Harness::new(INTENT);
    f.report("0s", holding("a", 1, &[("leader", 5, "1m")]));
    f.report("10s", holding("b", 1, &[("leader", 3, "30s")]));
    {
        let sb = f.one(Kind::SplitBrain);
        assert_eq!(sb.id, "split_brain:sched:leader");
        assert_eq!(sb.severity, Severity::Critical);
        assert_eq!(sb.subjects, ["a", "b"]);
        assert_episode(sb, "10s", None);
        let st = f.one(Kind::StaleEpoch);
        assert_eq!(st.id, "stale_epoch:sched:b:leader");
        assert_eq!(st.severity, Severity::Critical);
        assert_eq!(st.subjects, ["b"]);
        assert_episode(st, "10s", None);
    }
    f.tick("29s 999ms 999us 999ns");
    assert!(f.one(Kind::SplitBrain).is_open());
    // "Held while expires is in the future": at 30s b holds nothing.
    f.tick("2m");
    assert_episode(f.one(Kind::SplitBrain), "10s", Some("30s"));
    assert_episode(f.one(Kind::StaleEpoch), "10s", Some("30s"));
}

#[test]
fn split_brain_whatever_the_epochs() {
    let mut f = Harness::new(INTENT);
    f.report("0s", holding("a", 1, &[("leader", 4, "1m")]));
    f.report("0s", holding("b", 1, &[("leader", 4, "1m")]));
    // b releases: the next report lists no lease.
    f.report("20s", holding("b", 2, &[]));
    assert_episode(f.one(Kind::SplitBrain), "0s", Some("20s"));
    f.assert_no(Kind::StaleEpoch);
}

#[test]
fn stale_epoch_counts_the_highest_epoch_seen_even_expired() {
    let mut f = Harness::new(INTENT);
    f.report("0s", holding("a", 1, &[("leader", 7, "20s")]));
    f.report("30s", holding("b", 1, &[("leader", 6, "2m")]));
    f.assert_no(Kind::SplitBrain);
    assert_episode(f.one(Kind::StaleEpoch), "30s", None);
    f.report("40s", holding("b", 2, &[("leader", 8, "2m")]));
    assert_episode(f.one(Kind::StaleEpoch), "30s", Some("40s"));
}

#[test]
fn a_lease_reported_at_its_expiry_is_not_held() {
    let mut f = Harness::new(INTENT);
    f.report("0s", holding("a", 1, &[("leader", 2, "1m")]));
    f.report("10s", holding("b", 1, &[("leader", 1, "10s")]));
    f.tick("1m");
    f.assert_no(Kind::SplitBrain);
    f.assert_no(Kind::StaleEpoch);
}

#[test]
fn only_exclusive_resources_raise_anything() {
    let mut f = Harness::new(INTENT);
    f.report(
        "0s",
        holding("a", 1, &[("cache", 9, "1m"), ("other", 9, "1m")]),
    );
    f.report(
        "0s",
        holding("b", 1, &[("cache", 1, "1m"), ("other", 1, "1m")]),
    );
    f.tick("2m");
    f.assert_nothing();
}

#[test]
fn a_silent_members_leases_count_until_they_expire() {
    let yaml = "services:\n  sched:\n    report_interval: 10s\n    leases:\n      leader: {exclusive: true}\n";
    let mut f = Harness::new(yaml);
    f.report("0s", holding("a", 1, &[("leader", 1, "5m")]));
    for (i, t) in [
        "1m", "1m 20s", "1m 40s", "2m", "2m 20s", "2m 40s", "3m", "3m 20s",
    ]
    .into_iter()
    .enumerate()
    {
        f.report(t, holding("b", i as u64 + 1, &[("leader", 2, "10m")]));
    }
    f.tick("5m 30s");
    assert_episode(f.by_id("silent:sched:a")[0], "30s", None);
    // a went silent at 30s but its lease still counts until 5m.
    assert_episode(f.one(Kind::SplitBrain), "1m", Some("5m"));
    assert_episode(f.one(Kind::StaleEpoch), "1m", Some("5m"));
}

// ---- replica_divergence ----

fn digest(member: &str, seq: u64, position: u64, d: &str) -> Value {
    json!({"service": "db", "member": member, "seq": seq,
           "checksums": [{"dataset": "users", "position": position, "digest": d}]})
}

const DB: &str = "services:\n  db:\n    report_interval: 1h\n";

#[test]
fn replica_divergence_opens_on_different_digests_and_resolves_on_common_later_agreement() {
    let mut f = Harness::new(DB);
    f.report("0s", digest("a", 1, 100, "x"));
    f.report("1s", digest("b", 1, 100, "x"));
    f.report("2s", digest("c", 1, 100, "y"));
    {
        let d = f.one(Kind::ReplicaDivergence);
        assert_eq!(d.id, "replica_divergence:db:users");
        assert_eq!(d.severity, Severity::Critical);
        assert_eq!(d.subjects, ["c"]);
        assert_episode(d, "2s", None);
    }
    f.report("10s", digest("a", 2, 200, "z"));
    f.report("11s", digest("b", 2, 200, "z"));
    assert!(f.one(Kind::ReplicaDivergence).is_open());
    f.report("12s", digest("c", 2, 200, "z"));
    let d = f.one(Kind::ReplicaDivergence);
    assert_episode(d, "2s", Some("12s"));
    assert_eq!(d.subjects, ["c"]);
}

#[test]
fn without_a_majority_every_member_is_a_subject() {
    let mut f = Harness::new(DB);
    f.report("0s", digest("a", 1, 100, "x"));
    f.report("0s", digest("b", 1, 100, "y"));
    assert_eq!(f.one(Kind::ReplicaDivergence).subjects, ["a", "b"]);
}

#[test]
fn agreement_must_be_at_a_single_position_above_every_divergent_one() {
    let mut f = Harness::new(DB);
    f.report("0s", digest("a", 1, 50, "p"));
    f.report("0s", digest("b", 1, 50, "p"));
    f.report("1s", digest("a", 2, 100, "x"));
    f.report("1s", digest("b", 2, 100, "y"));
    // Agreement below the divergent position does not count.
    f.report("2s", digest("a", 3, 60, "q"));
    f.report("2s", digest("b", 3, 60, "q"));
    // Each above it, but at different positions.
    f.report("3s", digest("a", 4, 200, "z"));
    f.report("3s", digest("b", 4, 300, "w"));
    assert!(f.one(Kind::ReplicaDivergence).is_open());
    // A second divergent position raises the bar.
    f.report("4s", digest("a", 5, 400, "m"));
    f.report("4s", digest("b", 5, 400, "n"));
    f.report("5s", digest("a", 6, 300, "w"));
    assert!(f.one(Kind::ReplicaDivergence).is_open());
    f.report("6s", digest("a", 7, 500, "k"));
    f.report("7s", digest("b", 7, 500, "k"));
    assert_episode(f.one(Kind::ReplicaDivergence), "1s", Some("7s"));
}

#[test]
fn a_silent_reporter_does_not_hold_resolution_back() {
    let yaml = "services:\n  db:\n    report_interval: 10s\n";
    let mut f = Harness::new(yaml);
    f.report("0s", digest("a", 1, 100, "x"));
    f.report("0s", digest("b", 1, 100, "x"));
    f.report("0s", digest("c", 1, 100, "y"));
    // c goes silent at 30s; a and b agreed at 150 before that and at 200 after.
    f.report("20s", digest("a", 2, 150, "q"));
    f.report("20s", digest("b", 2, 150, "q"));
    f.report("40s", digest("a", 3, 200, "z"));
    f.report("40s", digest("b", 3, 200, "z"));
    assert_episode(f.one(Kind::Silent), "30s", None);
    // From 30s every live reporter has reported one digest at 150.
    assert_episode(f.one(Kind::ReplicaDivergence), "0s", Some("30s"));
}

#[test]
fn datasets_are_compared_in_their_service_only() {
    let mut f = Harness::new(DB);
    f.report("0s", digest("a", 1, 100, "x"));
    f.report(
        "0s",
        json!({"service": "db2", "member": "a", "seq": 1,
               "checksums": [{"dataset": "users", "position": 100, "digest": "y"}]}),
    );
    f.report("0s", rep("db", "b", 1, json!({"version": "1"})));
    f.tick("20s");
    f.assert_nothing();
}

/// Regression: subjects were accumulated from every intermediate state of a
/// position, so a member that was briefly in a tie stayed a subject after the
/// majority formed, and the subjects depended on the order of reports.
#[test]
fn replica_subjects_are_the_final_minority_whatever_the_report_order() {
    for order in [["a", "b", "c"], ["a", "c", "b"], ["b", "a", "c"]] {
        let mut f = Harness::new(DB);
        for m in order {
            let d = if m == "b" { "y" } else { "x" };
            f.report("0s", digest(m, 1, 100, d));
        }
        assert_eq!(f.one(Kind::ReplicaDivergence).subjects, ["b"], "{order:?}");
    }
}

/// Regression: resolution was only checked when a checksum arrived, so a
/// divergence held open by a reporter that then went silent stayed open,
/// although every live reporter already agreed at a later position.
#[test]
fn replica_divergence_resolves_when_the_last_dissenting_reporter_goes_silent() {
    let yaml = "services:\n  db:\n    report_interval: 10s\n";
    let mut f = Harness::new(yaml);
    f.report("0s", digest("a", 1, 100, "x"));
    f.report("0s", digest("b", 1, 100, "x"));
    f.report("0s", digest("c", 1, 100, "y"));
    f.report("10s", digest("a", 2, 200, "z"));
    f.report("10s", digest("b", 2, 200, "z"));
    f.report("20s", rep("db", "a", 3, json!({})));
    f.report("20s", rep("db", "b", 3, json!({})));
    f.tick("40s");
    assert_episode(f.by_id("silent:db:c")[0], "30s", None);
    assert_episode(f.one(Kind::ReplicaDivergence), "0s", Some("30s"));
}

/// Regression (found by differential fuzzing): two replicas disagree, one
/// moves on alone, then both go silent at once. Every live reporter
/// "agreed" when none was live, so the divergence resolved the moment the
/// last one went silent. Silence never repairs data.
#[test]
fn replica_divergence_stays_open_when_every_reporter_goes_silent() {
    let yaml = "services:\n  db:\n    report_interval: 10s\n";
    let mut f = Harness::new(yaml);
    f.report("0s", digest("a", 1, 100, "x"));
    f.report("0s", digest("b", 1, 100, "y"));
    f.report("5s", digest("a", 2, 200, "z"));
    f.report("5s", rep("db", "b", 2, json!({})));
    f.tick("1m");
    assert_episode(f.by_id("silent:db:a")[0], "35s", None);
    assert_episode(f.by_id("silent:db:b")[0], "35s", None);
    assert_episode(f.one(Kind::ReplicaDivergence), "0s", None);
}

/// Regression: a checksum at a position below every kept position was
/// dropped at once, then looked up, and the engine panicked.
#[test]
fn a_checksum_older_than_every_kept_position_is_harmless() {
    let mut f = Harness::new(DB);
    f.report("0s", digest("a", 1, 1, "x"));
    f.report("0s", digest("b", 1, 1, "y"));
    // c never reports again, so no later position resolves the divergence.
    f.report("0s", digest("c", 1, 1, "x"));
    for i in 0..300u64 {
        f.report("1s", digest("a", i + 2, 1000 + i, "z"));
    }
    f.report("2s", digest("a", 400, 500, "z"));
    assert!(f.one(Kind::ReplicaDivergence).is_open());
}

/// Regression: the split_brain record was rewritten only when the set of
/// holders changed, so a renewal left it showing an expiry already past.
#[test]
fn split_brain_evidence_follows_renewals() {
    let mut f = Harness::new(INTENT);
    f.report("0s", holding("a", 1, &[("leader", 1, "1m")]));
    f.report("0s", holding("b", 1, &[("leader", 1, "30s")]));
    f.report("20s", holding("b", 2, &[("leader", 2, "2m")]));
    let sb = f.one(Kind::SplitBrain);
    assert_eq!(sb.evidence["highest_epoch"], 2);
    assert_eq!(
        sb.evidence["holders"][1],
        json!({"member": "b", "epoch": 2, "expires": at("2m").to_string()})
    );
    f.tick("5m");
    assert_episode(f.one(Kind::SplitBrain), "0s", Some("1m"));
}

/// A reporter naming a new dataset in every report cannot grow the engine
/// without bound: past 1024 datasets a service's new ones are not compared;
/// the ones already tracked still are.
#[test]
fn datasets_per_service_are_bounded() {
    let mut f = Harness::new(DB);
    let sums = |member: &str, seq: u64, from: usize, to: usize, digest: &str| {
        let checksums: Vec<serde_json::Value> = (from..to)
            .map(|i| json!({"dataset": format!("d{i}"), "position": 1, "digest": digest}))
            .collect();
        json!({"service": "db", "member": member, "seq": seq, "checksums": checksums})
    };
    let mut seq = 0;
    for start in (0..1100).step_by(16) {
        seq += 1;
        f.report("0s", sums("a", seq, start, (start + 16).min(1100), "x"));
    }
    f.report("1s", sums("b", 1, 1090, 1100, "y"));
    f.assert_no(Kind::ReplicaDivergence);
    f.report("2s", sums("b", 2, 5, 6, "y"));
    assert_eq!(
        f.one(Kind::ReplicaDivergence).id,
        "replica_divergence:db:d5"
    );
}
