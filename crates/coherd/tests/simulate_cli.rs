//! Black-box: `coherd simulate` scores every kind perfectly on its own scenarios.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::process::Command;

fn coherd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coherd"))
        .args(args)
        .output()
        .expect("coherd runs")
}

/// `coherd simulate --json` of a scenario, which must succeed.
fn simulate_json(scenario: &str, members: &str, seed: &str) -> serde_json::Value {
    let out = coherd(&[
        "simulate",
        "--scenario",
        scenario,
        "--members",
        members,
        "--seed",
        seed,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn simulate_all_detects_every_injected_fault_and_nothing_else() {
    let report = simulate_json("all", "150", "7");
    let kinds = report["kinds"].as_object().expect("kinds");
    for kind in [
        "drift",
        "mixed",
        "silent",
        "replica_divergence",
        "illegal_transition",
        "phase_disagreement",
        "drain_violation",
        "flapping",
        "split_brain",
        "stale_epoch",
        "herd",
        "clock_skew",
        "canary_regression",
        "replica_lag",
    ] {
        let k = &kinds[kind];
        assert!(
            k["injected"].as_u64().unwrap_or(0) > 0,
            "{kind} has no injected fault"
        );
        assert_eq!(k["recall"], 1.0, "{kind}: {k}");
        assert_eq!(k["precision"], 1.0, "{kind}: {k}");
        assert!(k["latency_max_s"].as_f64().is_some(), "{kind}: {k}");
    }
    assert!(report["slis"]["rollout"]["coherence"].is_number());
}

/// The signals scenarios: recall and precision 1.0 over seeds 1 to 5, with
/// detection latency reported.
#[test]
fn signal_scenarios_score_perfectly_over_seeds_one_to_five() {
    for (scenario, kind, injected) in [
        ("clock-skew", "clock_skew", 3),
        ("canary", "canary_regression", 1),
        ("replica-lag", "replica_lag", 3),
    ] {
        for seed in 1..=5 {
            let seed = seed.to_string();
            let report = simulate_json(scenario, "300", &seed);
            let k = &report["kinds"][kind];
            assert_eq!(k["injected"], injected, "{scenario} seed {seed}: {k}");
            assert_eq!(k["recall"], 1.0, "{scenario} seed {seed}: {k}");
            assert_eq!(k["precision"], 1.0, "{scenario} seed {seed}: {k}");
            assert!(k["latency_max_s"].as_f64().is_some(), "{k}");
            for (other, k) in report["kinds"].as_object().expect("kinds") {
                assert_eq!(
                    k["false_positives"], 0,
                    "{scenario} seed {seed}: {other}: {k}"
                );
                assert_eq!(k["recall"], 1.0, "{scenario} seed {seed}: {other}: {k}");
            }
        }
    }
}

/// A short run counts only the faults it injected: those scheduled after its
/// end are not misses.
#[test]
fn a_short_run_scores_only_the_faults_it_reached() {
    let out = coherd(&[
        "simulate",
        "--scenario",
        "all",
        "--members",
        "60",
        "--seed",
        "3",
        "--duration",
        "1m",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // Seed 3 injects a drift, a mixed rollout and a herd in the first minute,
    // each detected within it (the run is deterministic); before, the 40
    // minutes' other faults counted as missed (drift recall 0.03).
    let kinds = report["kinds"].as_object().expect("kinds");
    assert!(!kinds.is_empty());
    for (kind, k) in kinds {
        assert_eq!(k["recall"], 1.0, "{kind}: {k}");
    }
    let all = coherd(&[
        "simulate",
        "--scenario",
        "all",
        "--members",
        "60",
        "--seed",
        "3",
        "--json",
    ]);
    let full: serde_json::Value = serde_json::from_slice(&all.stdout).expect("json");
    let total = |r: &serde_json::Value| -> u64 {
        r["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|k| k["injected"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        total(&report) < total(&full),
        "a minute injects fewer faults than 40 minutes"
    );
}

#[test]
fn simulate_is_deterministic_for_a_seed() {
    let a = coherd(&[
        "simulate",
        "--scenario",
        "rollout",
        "--members",
        "60",
        "--seed",
        "3",
        "--json",
    ]);
    let b = coherd(&[
        "simulate",
        "--scenario",
        "rollout",
        "--members",
        "60",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn unknown_scenario_is_a_clear_error() {
    let out = coherd(&["simulate", "--scenario", "meteor"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scenario \"meteor\"") && err.contains("split-brain"),
        "{err}"
    );
}
