//! The fleet's own numbers: `canary_regression` from error counters per
//! facet value and `replica_lag` from checksum positions, on a virtual clock.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Severity};
use common::{Harness, assert_episode, rep};
use serde_json::{Value, json};

fn canary_intent(target: &str) -> String {
    format!(
        "services:\n  web:\n    report_interval: 1m\n    facets:\n      version: {{target: \"{target}\", rollout_window: 1h, canary: {{max_ratio: 2, min_requests: 1000, window: 10m}}}}\n"
    )
}

/// A report of `version` with cumulative request and error counters.
fn served(member: &str, seq: u64, version: &str, requests: u64, errors: u64) -> Value {
    let mut v = rep("web", member, seq, json!({"version": version}));
    v["counters"] = json!({"requests": requests, "errors": errors});
    v
}

/// Four members on 1 failing 0.1 %; at 10m the target moves to 2 and w1
/// takes it, failing `bad_permille` per thousand. Each member serves 1000
/// requests a minute.
fn rollout(bad_permille: u64) -> Harness {
    let mut f = Harness::new(&canary_intent("1"));
    for m in ["w1", "w2", "w3", "w4"] {
        f.report("0s", served(m, 1, "1", 0, 0));
    }
    f.set_intent("10m", &canary_intent("2"));
    for minute in 1..=20u64 {
        let t = format!("{}m", 10 + minute);
        let total = minute * 1000;
        f.report(
            &t,
            served("w1", minute + 1, "2", total, total * bad_permille / 1000),
        );
        for m in ["w2", "w3", "w4"] {
            f.report(&t, served(m, minute + 1, "1", total, total / 1000));
        }
    }
    f
}

#[test]
fn a_new_version_failing_far_more_than_the_old_opens_canary_regression() {
    let f = rollout(50);
    let d = f.one(Kind::CanaryRegression);
    assert_eq!(d.id, "canary_regression:web:version:2");
    assert_eq!(d.severity, Severity::Critical);
    assert_eq!(d.subjects, ["2"]);
    // w1's first delta counts from its first report at target: 1000
    // requests at 11m reach min_requests against the baseline's 3000.
    assert_episode(d, "11m", None);
    let e = &d.evidence;
    assert_eq!(e["baseline"], "1");
    assert!(
        (e["error_rate"].as_f64().unwrap() - 0.05).abs() < 1e-9,
        "{e}"
    );
    assert!(
        (e["baseline_error_rate"].as_f64().unwrap() - 0.001).abs() < 1e-9,
        "{e}"
    );
    assert!(e["p_value"].as_f64().unwrap() < 1e-6, "{e}");
    assert!(e["requests"].as_u64().unwrap() >= 1000, "{e}");
}

#[test]
fn a_new_version_failing_as_often_as_the_old_raises_nothing() {
    let f = rollout(1);
    f.assert_no(Kind::CanaryRegression);
}

#[test]
fn a_new_version_failing_within_the_ratio_raises_nothing() {
    // 0.15 % against 0.1 %: worse, but not twice as bad.
    let f = rollout(2);
    f.assert_no(Kind::CanaryRegression);
}

#[test]
fn rolling_the_bad_version_back_resolves_the_verdict_once_its_traffic_leaves_the_window() {
    let mut f = rollout(50);
    // w1 goes back to 1 at 31m; 2's last traffic was at 30m.
    for minute in 21..=45u64 {
        let t = format!("{}m", 10 + minute);
        let total = minute * 1000;
        f.report(&t, served("w1", minute + 1, "1", total, 0));
        for m in ["w2", "w3", "w4"] {
            f.report(&t, served(m, minute + 1, "1", total, total / 1000));
        }
    }
    let d = f.one(Kind::CanaryRegression);
    assert!(!d.is_open(), "{d:?}");
}

#[test]
fn a_canary_needs_a_target() {
    let yaml = "services:\n  web:\n    facets:\n      version: {canary: {max_ratio: 2}}\n";
    let err = coherd_model::Intent::from_yaml(yaml)
        .unwrap_err()
        .to_string();
    assert!(err.contains("give the facet a target"), "{err}");
    let yaml = "services:\n  web:\n    facets:\n      version: {target: \"2\", canary: {max_ratio: 0.5, min_requests: none}}\n";
    let err = coherd_model::Intent::from_yaml(yaml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_ratio: expected a number from 1 to 1000"),
        "{err}"
    );
    assert!(
        err.contains("min_requests: expected a whole number"),
        "{err}"
    );
}

// ---- replica_lag ----

fn at_position(member: &str, seq: u64, position: u64, time: Option<&str>) -> Value {
    let mut c = json!({"dataset": "users", "position": position, "digest": format!("d{position}")});
    if let Some(t) = time {
        c["position_time"] = json!(common::at(t).to_string());
    }
    json!({"service": "db", "member": member, "seq": seq, "checksums": [c]})
}

#[test]
fn a_replica_past_max_lag_positions_opens_replica_lag_until_it_catches_up() {
    let yaml =
        "services:\n  db:\n    report_interval: 1m\n    datasets:\n      users: {max_lag: 100}\n";
    let mut f = Harness::new(yaml);
    f.report("0s", at_position("a", 1, 1000, None));
    f.report("0s", at_position("b", 1, 950, None));
    f.assert_nothing();
    f.report("10s", at_position("a", 2, 1200, None));
    f.report("10s", at_position("b", 2, 1050, None));
    {
        let d = f.one(Kind::ReplicaLag);
        assert_eq!(d.id, "replica_lag:db:b:users");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.subjects, ["b"]);
        assert_eq!(d.evidence["lag_positions"], 150);
        assert_eq!(d.evidence["leader"], "a");
        assert_episode(d, "10s", None);
    }
    f.report("20s", at_position("b", 3, 1190, None));
    assert_episode(f.one(Kind::ReplicaLag), "10s", Some("20s"));
    let slis = f.engine_mut().service_slis("db").expect("db");
    assert_eq!(slis.replica_lag_positions, Some(10));
}

#[test]
fn lag_in_time_uses_position_times_and_a_silent_leader_does_not_count() {
    let yaml =
        "services:\n  db:\n    report_interval: 10s\n    datasets:\n      users: {max_lag: 30s}\n";
    let mut f = Harness::new(yaml);
    f.report("1m", at_position("a", 1, 500, Some("1m")));
    f.report("1m", at_position("b", 1, 400, Some("15s")));
    assert_eq!(f.one(Kind::ReplicaLag).evidence["lag_s"], 45.0);
    // a goes silent at 1m30s; b is then the highest live position: no lag.
    f.tick("1m 40s");
    f.report("1m 40s", at_position("b", 2, 410, Some("20s")));
    assert_episode(f.one(Kind::ReplicaLag), "1m", Some("1m 40s"));
}

#[test]
fn removing_max_lag_from_the_intent_resolves_replica_lag() {
    let yaml =
        "services:\n  db:\n    report_interval: 1m\n    datasets:\n      users: {max_lag: 10}\n";
    let mut f = Harness::new(yaml);
    f.report("0s", at_position("a", 1, 100, None));
    f.report("0s", at_position("b", 1, 50, None));
    assert!(f.one(Kind::ReplicaLag).is_open());
    f.set_intent("5s", "services:\n  db:\n    report_interval: 1m\n");
    assert_episode(f.one(Kind::ReplicaLag), "0s", Some("5s"));
    // And a limit added later judges what is known at once.
    f.set_intent("10s", yaml);
    assert_eq!(f.of(Kind::ReplicaLag).len(), 2);
}

// ---- canary verdicts over many rollouts ----

/// splitmix64: a deterministic stream of uniforms for the rollouts below.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A binomial draw by inversion (expected `n p` steps).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        let u = self.unit();
        let mut prob = (1.0 - p).powi(n as i32);
        let (mut k, mut cdf) = (0u64, prob);
        while u > cdf && k < n {
            prob *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
            k += 1;
            cdf += prob;
        }
        k
    }
}

/// One rollout of 10 members, 4 of which take version 2 at 1m; every member
/// serves 500 requests a minute for 20 minutes. Returns whether a canary
/// verdict opened.
fn verdict(rng: &mut Rng, old_rate: f64, new_rate: f64) -> bool {
    let mut f = Harness::new(&canary_intent("1"));
    let members: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let mut errors = [0u64; 10];
    for m in &members {
        f.report("0s", served(m, 1, "1", 0, 0));
    }
    f.set_intent("1m", &canary_intent("2"));
    for minute in 1..=20u64 {
        for (i, m) in members.iter().enumerate() {
            let version = if i < 4 { "2" } else { "1" };
            let rate = if i < 4 { new_rate } else { old_rate };
            errors[i] += rng.binomial(500, rate);
            let t = format!("{minute}m");
            f.report(&t, served(m, minute + 1, version, minute * 500, errors[i]));
        }
    }
    !f.of(Kind::CanaryRegression).is_empty()
}

#[test]
fn no_false_verdict_in_a_thousand_rollouts_where_both_versions_share_one_error_rate() {
    let mut rng = Rng(1);
    let mut false_verdicts = 0;
    for _ in 0..1000 {
        let rate = 0.0005 + rng.unit() * 0.05;
        false_verdicts += verdict(&mut rng, rate, rate) as u32;
    }
    assert_eq!(false_verdicts, 0);
}

#[test]
fn a_version_failing_five_times_as_often_is_caught_in_every_rollout() {
    let mut rng = Rng(2);
    for n in 0..200 {
        let rate = 0.001 + rng.unit() * 0.03;
        assert!(verdict(&mut rng, rate, 5.0 * rate), "rollout {n} at {rate}");
    }
}

// ---- latency canaries ----

fn latency_intent(target: &str) -> String {
    format!(
        "services:\n  web:\n    report_interval: 1m\n    facets:\n      version: {{target: \"{target}\", rollout_window: 1h, canary: {{min_requests: 1000, window: 10m, slow_ms: 250}}}}\n"
    )
}

/// A report with cumulative requests and requests done within 250 ms.
fn timed(member: &str, seq: u64, version: &str, requests: u64, fast: u64) -> Value {
    let mut v = rep("web", member, seq, json!({"version": version}));
    v["counters"] = json!({"requests": requests, "errors": 0, "latency_le_250": fast});
    v
}

fn latency_rollout(slow_permille: u64) -> Harness {
    let mut f = Harness::new(&latency_intent("1"));
    for m in ["w1", "w2", "w3", "w4"] {
        f.report("0s", timed(m, 1, "1", 0, 0));
    }
    f.set_intent("10m", &latency_intent("2"));
    for minute in 1..=20u64 {
        let t = format!("{}m", 10 + minute);
        let total = minute * 1000;
        f.report(
            &t,
            timed(
                "w1",
                minute + 1,
                "2",
                total,
                total - total * slow_permille / 1000,
            ),
        );
        for m in ["w2", "w3", "w4"] {
            f.report(&t, timed(m, minute + 1, "1", total, total - total / 100));
        }
    }
    f
}

#[test]
fn a_new_version_slower_than_the_old_opens_canary_regression_on_latency() {
    // 20 % of requests over 250 ms against 1 %.
    let f = latency_rollout(200);
    let d = f.one(Kind::CanaryRegression);
    assert_eq!(d.evidence["regressed_on"], json!(["latency"]));
    let l = &d.evidence["latency"];
    assert_eq!(l["slow_ms"], 250);
    assert!(
        (l["slow_share"].as_f64().unwrap() - 0.2).abs() < 1e-9,
        "{l}"
    );
    assert!(
        (l["baseline_slow_share"].as_f64().unwrap() - 0.01).abs() < 1e-9,
        "{l}"
    );
    assert!(l["p_value"].as_f64().unwrap() < 1e-6, "{l}");
}

#[test]
fn a_new_version_as_fast_as_the_old_raises_nothing() {
    latency_rollout(10).assert_no(Kind::CanaryRegression);
}
