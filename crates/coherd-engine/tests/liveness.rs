//! Liveness: `silent`, members that leave, reopens, coherence and a coherent
//! fleet that raises nothing (DESIGN 3, 3.1, 4).

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Outcome, Severity};
use coherd_model::Time;
use common::{Harness, assert_episode, observation, rep};
use serde_json::json;

const INTENT: &str = "
services:
  web:
    report_interval: 10s
    facets:
      version: {target: \"2\"}
";

fn ready(member: &str, seq: u64) -> serde_json::Value {
    rep(
        "web",
        member,
        seq,
        json!({"version": "2", "phase": "ready"}),
    )
}

#[test]
fn silent_opens_at_three_report_intervals_and_resolves_on_the_next_report() {
    let mut f = Harness::new(INTENT);
    f.report("0s", ready("w1", 1));
    f.tick("29s 999ms 999us 999ns");
    f.assert_nothing();
    f.tick("45s");
    {
        let d = f.one(Kind::Silent);
        assert_eq!(d.id, "silent:web:w1");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.subjects, ["w1"]);
        assert_episode(d, "30s", None);
    }
    f.report("50s", ready("w1", 2));
    assert_episode(f.one(Kind::Silent), "30s", Some("50s"));
}

#[test]
fn a_report_exactly_at_the_silence_deadline_wins() {
    let mut f = Harness::new(INTENT);
    f.report("0s", ready("w1", 1));
    f.report("30s", ready("w1", 2));
    f.tick("59s");
    f.assert_nothing();
}

#[test]
fn a_duplicate_does_not_keep_a_member_alive() {
    let mut f = Harness::new(INTENT);
    f.report("0s", ready("w1", 7));
    assert_eq!(f.report("20s", ready("w1", 7)), Outcome::Duplicate);
    f.tick("40s");
    assert_episode(f.one(Kind::Silent), "30s", None);
}

#[test]
fn silent_reopens_with_the_same_id_and_counts_reopens() {
    let mut f = Harness::new(INTENT);
    f.report("0s", ready("w1", 1));
    f.report("1m", ready("w1", 2));
    f.tick("2m");
    let v = f.of(Kind::Silent);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].id, v[1].id);
    assert_eq!((v[0].reopens, v[1].reopens), (0, 1));
    assert_episode(v[0], "30s", Some("1m"));
    assert_episode(v[1], "1m 30s", None);
}

#[test]
fn a_member_that_stops_in_a_terminal_phase_has_left() {
    let mut f = Harness::new(INTENT);
    f.report("0s", ready("w1", 1));
    f.report("0s", ready("w2", 1));
    f.report("5s", rep("web", "w1", 2, json!({"phase": "stopped"})));
    for (i, t) in ["20s", "40s", "1m"].into_iter().enumerate() {
        f.report(t, ready("w2", i as u64 + 2));
    }
    f.assert_nothing();
    let members = f.engine().members("web").unwrap();
    assert_eq!(members[0].state, "left");
    assert_eq!(
        f.engine_mut().service_slis("web").unwrap().coherence,
        Some(1.0)
    );
    // Forgotten after the retention period (default 1 h after it left).
    f.tick("1h 0m 34s 999ms");
    assert_eq!(f.engine().members("web").unwrap().len(), 2);
    f.tick("1h 0m 35s");
    let left: Vec<_> = f
        .engine()
        .members("web")
        .unwrap()
        .into_iter()
        .map(|m| m.member)
        .collect();
    assert_eq!(left, ["w2"]);
}

#[test]
fn a_silent_member_is_unknown_for_coherence() {
    let yaml = "services:\n  web:\n    report_interval: 10s\n    facets:\n      version: {target: \"2\"}\n";
    let mut f = Harness::new(yaml);
    f.report("0s", ready("w1", 1));
    f.report("0s", ready("w2", 1));
    assert_eq!(
        f.engine_mut().service_slis("web").unwrap().coherence,
        Some(1.0)
    );
    f.report("20s", ready("w2", 2));
    f.tick("35s");
    assert_eq!(
        f.engine_mut().service_slis("web").unwrap().coherence,
        Some(0.5)
    );
}

#[test]
fn coherence_is_null_with_no_known_members() {
    let mut f = Harness::new(INTENT);
    assert_eq!(f.engine_mut().service_slis("web").unwrap().coherence, None);
    f.report("0s", ready("w1", 1));
    assert_eq!(
        f.engine_mut().service_slis("web").unwrap().coherence,
        Some(1.0)
    );
    assert!(f.driver.remove_member(common::at("1s"), "web", "w1"));
    assert_eq!(f.engine_mut().service_slis("web").unwrap().coherence, None);
}

#[test]
fn removing_a_member_resolves_what_it_had_open() {
    let mut f = Harness::new(INTENT);
    f.report("0s", rep("web", "w1", 1, json!({"version": "0"})));
    f.tick("40s");
    assert!(f.driver.remove_member(common::at("45s"), "web", "w1"));
    assert_episode(f.one(Kind::Drift), "0s", Some("30s"));
    assert_episode(f.one(Kind::Silent), "30s", Some("45s"));
    assert!(!f.driver.remove_member(common::at("46s"), "web", "w1"));
}

/// Everything a healthy fleet reports, for ten minutes: nothing opens.
#[test]
fn a_coherent_fleet_opens_nothing() {
    let yaml = "
services:
  web:
    report_interval: 10s
    expect_members: 3
    facets:
      version: {target: \"2\", compatible: [\"1\"]}
      kernel: {uniform: true}
    leases:
      leader: {exclusive: true}
  lb:
    report_interval: 10s
";
    let mut f = Harness::new(yaml);
    let mut seq = 0;
    for tick in 0..60u64 {
        seq += 1;
        let t = format!("{}s", tick * 10);
        let expires = common::at(&format!("{}s", tick * 10 + 15)).to_string();
        for m in ["w1", "w2", "w3"] {
            let mut v = json!({
                "service": "web", "member": m, "seq": seq,
                "facets": {"version": "2", "kernel": "6.1", "phase": "ready"},
                "counters": {"requests": tick * 100, "errors": 0},
                "checksums": [{"dataset": "users", "position": tick, "digest": format!("d{tick}")}],
                "views": {"w1": {"phase": "ready"}, "w2": {"phase": "ready"}},
            });
            if m == "w1" {
                v["leases"] = json!([{"resource": "leader", "epoch": 3, "expires": expires}]);
            }
            f.report(&t, v);
        }
        f.report(
            &t,
            json!({"service": "lb", "member": "lb-1", "seq": seq,
                   "views": {"web/w1": {"phase": "ready"}, "web/w2": {"phase": "ready"}, "web/w3": {"phase": "ready"}}}),
        );
    }
    f.tick("10m");
    f.assert_nothing();
    let slis = f.engine_mut().service_slis("web").unwrap();
    assert_eq!(slis.coherence, Some(1.0));
    assert_eq!(slis.telemetry_completeness, Some(1.0));
    assert_eq!(slis.phase_mismatch_rate, Some(0.0));
}

/// Regression: a shorter `report_interval` scheduled the silence deadline in
/// the past, so `silent` was stamped before the intent that made the member
/// silent was loaded.
#[test]
fn silence_under_a_shorter_report_interval_opens_at_the_intent_change() {
    let mut f = Harness::new("services:\n  web:\n    report_interval: 1h\n");
    f.report("0s", ready("w1", 1));
    f.report("0s", ready("w2", 1));
    f.report("4m", ready("w2", 2));
    f.set_intent("5m", "services:\n  web:\n    report_interval: 1m\n");
    f.tick("10m");
    assert_episode(f.by_id("silent:web:w1")[0], "5m", None);
    // w2's deadline under the new interval is after the change: stamped with it.
    assert_episode(f.by_id("silent:web:w2")[0], "7m", None);
}

/// A member that left under a changed interval is still forgotten.
#[test]
fn a_member_that_left_before_an_interval_change_is_forgotten() {
    let mut f = Harness::new("services:\n  web:\n    report_interval: 1h\n");
    f.report("0s", rep("web", "w1", 1, json!({"phase": "stopped"})));
    f.set_intent("5m", "services:\n  web:\n    report_interval: 1m\n");
    f.tick("1h 4m 59s");
    assert_eq!(f.engine().members("web").unwrap().len(), 1);
    f.tick("1h 5m");
    assert_eq!(f.engine().members("web").unwrap().len(), 0);
    f.assert_nothing();
}

/// Regression: `Divergence` equality compared the interned key, whose numbers
/// depend on the order strings were first seen, so identical records from two
/// engines compared unequal.
#[test]
fn records_from_two_engines_compare_by_what_they_show() {
    let run = |order: [&str; 2]| {
        let mut f = Harness::new(INTENT);
        for m in order {
            f.report("0s", ready(m, 1));
        }
        f.tick("1m");
        let mut v = f.engine().divergences().to_vec();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let (a, b) = (run(["w1", "w2"]), run(["w2", "w1"]));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
}

/// Regression: members falling silent at one deadline went in the order they
/// had reported in, so the `mixed` record they resolved showed a different
/// distribution depending on that order.
#[test]
fn members_falling_silent_together_leave_one_record_whatever_their_report_order() {
    let yaml =
        "services:\n  web:\n    report_interval: 10s\n    facets:\n      kernel: {uniform: true}\n";
    let kernel = |m: &str, v: &str| json!({"service": "web", "member": m, "facets": {"kernel": v}});
    let run = |order: [(&str, &str); 3]| {
        let mut f = Harness::new(yaml);
        for (m, v) in order {
            f.report("0s", kernel(m, v));
        }
        f.tick("1m");
        f.one(Kind::Mixed).clone()
    };
    let a = run([("w1", "6.0"), ("w2", "6.0"), ("w3", "6.1")]);
    let b = run([("w3", "6.1"), ("w2", "6.0"), ("w1", "6.0")]);
    assert_episode(&a, "0s", Some("30s"));
    assert_eq!(a, b);
}

/// Regression (hardening issue): a member that once sent the highest `seq`
/// could never report again; a sequence far below the last starts over.
#[test]
fn a_member_at_the_top_seq_is_not_locked_out() {
    let mut f = Harness::new("services:\n  web:\n    report_interval: 10s\n");
    let report = |seq: u64, version: &str| serde_json::json!({"service": "web", "member": "w1", "seq": seq, "facets": {"version": version}});
    assert_eq!(f.report("0s", report(u64::MAX, "1")), Outcome::Applied);
    assert_eq!(f.report("1s", report(u64::MAX, "2")), Outcome::Duplicate);
    assert_eq!(
        f.report("2s", report(u64::MAX - 5, "3")),
        Outcome::Duplicate,
        "a retry"
    );
    assert_eq!(
        f.report("3s", report(1, "4")),
        Outcome::Applied,
        "started over"
    );
    assert_eq!(f.report("4s", report(1, "5")), Outcome::Duplicate);
    assert_eq!(f.report("5s", report(2, "6")), Outcome::Applied);
    let m = &f.engine_mut().members("web").unwrap()[0];
    assert_eq!((m.seq, m.facets["version"].as_str()), (Some(2), "6"));
}

/// Regression (hardening issue): times near the top of what coherd holds
/// saturate instead of wrapping around.
#[test]
fn reports_near_the_end_of_time_do_not_overflow() {
    let mut f = Harness::new("services:\n  web:\n    report_interval: 10s\n");
    let late: Time = "2262-04-11T23:00:00Z".parse().unwrap();
    let phase = |p: &str| {
        observation(&serde_json::json!({"service": "web", "member": "w1", "facets": {"phase": p}}))
    };
    f.report_obs(late, &phase("ready"));
    f.report_obs(
        late.add(std::time::Duration::from_secs(1)),
        &phase("draining"),
    );
    f.report_obs(late.add(std::time::Duration::from_secs(2)), &phase("ready"));
    f.driver.tick(Time::MAX);
    assert!(f.engine_mut().service_slis("web").is_some());
}

/// Resolved episodes are kept for `resolved_retention` and at most
/// `max_resolved_per_service` per service; open ones always stay.
#[test]
fn resolved_episodes_are_pruned_by_age_and_count() {
    let engine = coherd_engine::Engine::new(coherd_engine::EngineConfig {
        resolved_retention: std::time::Duration::from_secs(3600),
        max_resolved_per_service: 2,
        ..coherd_engine::EngineConfig::default()
    });
    let mut f = Harness::with_engine(engine);
    f.set_intent("0s", INTENT);
    // w1..w4 go silent (30 s), then report once more as stopped and leave;
    // w5 goes silent and stays.
    for m in ["w1", "w2", "w3", "w4", "w5"] {
        f.report("0s", rep("web", m, 1, json!({"phase": "ready"})));
    }
    f.tick("40s");
    for (i, m) in ["w1", "w2", "w3", "w4"].into_iter().enumerate() {
        f.report(
            &format!("{}s", 41 + i),
            rep("web", m, 2, json!({"phase": "stopped"})),
        );
    }
    assert_eq!(f.of(Kind::Silent).len(), 5);
    // Past the count bound (ten minutes on, the next prune): the two newest resolved stay.
    f.tick("11m");
    let left: Vec<&str> = f
        .of(Kind::Silent)
        .iter()
        .map(|d| d.subjects[0].as_str())
        .collect();
    assert_eq!(
        left,
        ["w3", "w4", "w5"],
        "the open one and the newest two resolved"
    );
    // Past the age bound: only the open one.
    f.tick("2h");
    let left: Vec<&str> = f
        .of(Kind::Silent)
        .iter()
        .map(|d| d.subjects[0].as_str())
        .collect();
    assert_eq!(left, ["w5"]);
    assert!(f.of(Kind::Silent)[0].is_open());
    // w5 comes back, then goes silent again: a reopen of the same id.
    f.report("2h 1s", rep("web", "w5", 2, json!({"phase": "ready"})));
    f.tick("2h 1m");
    let episodes = f.by_id("silent:web:w5");
    assert_eq!(episodes.len(), 2);
    assert_eq!(episodes[1].reopens, 1);
}

/// A page of members is the same slice of the sorted list, however it is cut.
#[test]
fn member_pages_are_slices_of_the_sorted_list() {
    let mut f = Harness::new(INTENT);
    for i in (0..50).rev() {
        f.report(
            "0s",
            rep("web", &format!("m{i:02}"), 1, json!({"phase": "ready"})),
        );
    }
    f.report("1s", rep("web", "m07", 2, json!({"phase": "stopped"})));
    let all: Vec<String> = f
        .engine()
        .members("web")
        .unwrap()
        .into_iter()
        .map(|m| m.member)
        .collect();
    assert_eq!(all.len(), 50);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    for limit in [1, 7, 10, 50, 1000] {
        // Following the cursor from page to page gives the sorted list, once.
        let mut walked: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = f
                .engine()
                .members_page("web", None, after.as_deref(), limit)
                .unwrap();
            assert_eq!(page.total, 50);
            assert!(page.members.len() <= limit);
            walked.extend(page.members.iter().map(|m| m.member.clone()));
            after = walked.last().cloned();
            if !page.more {
                break;
            }
        }
        assert_eq!(walked, all, "limit {limit}");
    }
    // Once nobody reports, the stopped member has left and the rest are silent.
    f.tick("40s");
    let page = f
        .engine()
        .members_page("web", Some("left"), None, 10)
        .unwrap();
    assert_eq!((page.total, page.members[0].member.as_str()), (1, "m07"));
    let page = f
        .engine()
        .members_page("web", Some("silent"), Some("m04"), 2)
        .unwrap();
    let names: Vec<&str> = page.members.iter().map(|m| m.member.as_str()).collect();
    assert_eq!(
        (page.total, names, page.more),
        (49, vec!["m05", "m06"], true)
    );
}

#[test]
fn a_member_that_is_not_coherent_says_why() {
    let intent = "services:\n  web:\n    report_interval: 10s\n    facets:\n      version: {target: \"2\", compatible: [\"1\"], rollout_window: 1m}\n      config: {target: \"c1\"}\n";
    let mut f = Harness::new(intent);
    f.report(
        "0s",
        rep("web", "good", 1, json!({"version": "2", "config": "c1"})),
    );
    f.report(
        "0s",
        rep("web", "old", 1, json!({"version": "1", "config": "c1"})),
    );
    f.report("0s", rep("web", "odd", 1, json!({"version": "9"})));
    let why = |f: &mut Harness, m: &str| -> Vec<(String, Option<String>)> {
        f.engine()
            .member("web", m)
            .unwrap()
            .not_coherent
            .into_iter()
            .map(|w| (w.reason.to_string(), w.facet))
            .collect()
    };
    assert_eq!(why(&mut f, "good"), vec![]);
    // Within the rollout window an allowed older version is converging: coherent.
    assert_eq!(why(&mut f, "old"), vec![]);
    let odd = why(&mut f, "odd");
    assert!(
        odd.contains(&("foreign".into(), Some("version".into()))),
        "{odd:?}"
    );
    assert!(
        odd.contains(&("unknown".into(), Some("config".into()))),
        "{odd:?}"
    );
    f.report("2m", rep("web", "good", 2, json!({})));
    f.report("2m", rep("web", "old", 2, json!({})));
    // Past the window it lags, and the drift divergence it opened counts too.
    assert_eq!(
        why(&mut f, "old"),
        vec![
            ("divergence".into(), None),
            ("lagging".into(), Some("version".into()))
        ]
    );
    f.tick("5m");
    let silent = why(&mut f, "good");
    assert_eq!(silent[0].0, "silent", "{silent:?}");
    assert!(f.engine().member("web", "nobody").is_none());
}
