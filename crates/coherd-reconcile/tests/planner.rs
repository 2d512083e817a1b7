//! The planner on a virtual clock: a simulated fleet whose members drift and
//! a simulated receiver that repairs them.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use coherd_model::{Kind, Severity, Time};
use coherd_reconcile::{Decision, Outcome, Phase, Policy, ReconcileConfig, Reconciler, Seen};
use proptest::prelude::*;
use serde_json::json;

fn policy(action: serde_json::Value) -> Policy {
    let mut a = json!({"name": "fix-config", "match": {"kind": "drift", "facet": "config"},
        "webhook": {"url": "http://127.0.0.1:9/fix"}, "debounce": "10s", "max_in_flight": 5,
        "waves": [1, "10%", "50%", "100%"], "wave_pause": "30s", "verify_within": "1m",
        "backoff": {"base": "5s", "cap": "1m"}, "max_attempts": 3});
    for (k, v) in action.as_object().unwrap() {
        a[k] = v.clone();
    }
    let config: ReconcileConfig = serde_json::from_value(json!({"actions": [a]})).unwrap();
    Policy::new(config).unwrap()
}

fn t0() -> Time {
    "2026-12-01T08:00:00Z".parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn drift(member: &str, opened_at: Time) -> Seen {
    Seen {
        id: format!("drift:checkout:{member}:config"),
        service: "checkout".into(),
        kind: Kind::Drift,
        severity: Severity::Warning,
        member: Some(member.into()),
        facet: Some("config".into()),
        target: Some("v2".into()),
        opened_at,
        resolved_at: None,
        record: json!({"member": member}),
    }
}

/// A fleet of drifted members and a receiver that repairs a member `fix`
/// after each dispatch (or answers with `answer`).
struct Sim {
    policy: Policy,
    r: Reconciler,
    now: Time,
    open: BTreeMap<String, Seen>,
    closed: BTreeMap<String, Seen>,
    /// (outcome due, key, attempt, member, fixes)
    pending: Vec<(Time, String, u32, String, bool)>,
    answer: fn(&str, u32) -> Outcome,
    fix_after: Duration,
    log: Vec<Decision>,
    dispatched: Vec<(Time, String, String, u32)>,
    peak_in_flight: usize,
}

impl Sim {
    fn new(policy: Policy, members: usize) -> Sim {
        let now = t0();
        let open = (0..members)
            .map(|i| {
                let m = format!("c-{i:02}");
                (m.clone(), drift(&m, now))
            })
            .collect();
        Sim {
            policy,
            r: Reconciler::default(),
            now,
            open,
            closed: BTreeMap::new(),
            pending: Vec::new(),
            answer: |_, _| Outcome::Succeeded,
            fix_after: secs(3),
            log: Vec::new(),
            dispatched: Vec::new(),
            peak_in_flight: 0,
        }
    }

    fn step(&mut self) {
        self.now = self.now.add(secs(1));
        let now = self.now;
        let due: Vec<_> = self
            .pending
            .iter()
            .filter(|p| p.0 <= now)
            .cloned()
            .collect();
        self.pending.retain(|p| p.0 > now);
        for (_, key, attempt, member, fixes) in due {
            let outcome = (self.answer)(&member, attempt);
            let ok = outcome == Outcome::Succeeded;
            self.log
                .extend(self.r.outcome(&self.policy, &key, attempt, outcome, now));
            if ok
                && fixes
                && let Some(mut s) = self.open.remove(&member)
            {
                s.resolved_at = Some(now.add(self.fix_after));
                self.closed.insert(member, s);
            }
        }
        let seen: Vec<Seen> = self
            .open
            .values()
            .cloned()
            .chain(
                self.closed
                    .values()
                    .filter(|s| s.resolved_at.unwrap() <= now)
                    .cloned(),
            )
            .chain(
                // Fixed but not yet seen resolved: still open to the engine.
                self.closed
                    .values()
                    .filter(|s| s.resolved_at.unwrap() > now)
                    .map(|s| Seen {
                        resolved_at: None,
                        ..s.clone()
                    }),
            )
            .collect();
        let round = self.r.round(&self.policy, &seen, now);
        self.log.extend(round.decisions);
        for d in round.dispatch {
            let member = d.seen.member.clone().unwrap();
            self.dispatched
                .push((now, member.clone(), d.key.clone(), d.attempt));
            self.pending
                .push((now.add(secs(1)), d.key, d.attempt, member, true));
        }
        let in_flight = self
            .r
            .state
            .tasks
            .values()
            .filter(|t| t.phase == Phase::InFlight)
            .count();
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.step();
        }
    }

    fn decisions(&self, what: &str) -> Vec<&Decision> {
        self.log.iter().filter(|d| d.decision == what).collect()
    }
}

#[test]
fn fifty_drifted_members_are_repaired_once_each_in_waves() {
    let mut sim = Sim::new(policy(json!({})), 50);
    sim.run(600);
    assert!(sim.open.is_empty(), "every member repaired");
    let members: BTreeSet<&String> = sim.dispatched.iter().map(|d| &d.1).collect();
    assert_eq!(sim.dispatched.len(), 50, "one dispatch per member");
    assert_eq!(members.len(), 50);
    assert!(sim.peak_in_flight <= 5, "peak {}", sim.peak_in_flight);
    assert_eq!(sim.decisions("verified").len(), 50);
    // Waves: 1, then up to 5, 25 and 50 in all, each after the one before.
    let planned = sim.decisions("planned");
    let waves: Vec<usize> = planned.iter().map(|d| d.wave.unwrap()).collect();
    assert!(waves.windows(2).all(|w| w[0] <= w[1]), "{waves:?}");
    let per_wave = |w| waves.iter().filter(|x| **x == w).count();
    assert_eq!(
        [per_wave(1), per_wave(2), per_wave(3), per_wave(4)],
        [1, 4, 20, 25]
    );
    // A wave starts only after the one before is verified and 30 s passed.
    for w in 2..=4 {
        let start = planned.iter().find(|d| d.wave == Some(w)).unwrap().at;
        let last_verified = sim
            .log
            .iter()
            .filter(|d| d.decision == "verified" && d.wave == Some(w - 1))
            .map(|d| d.at)
            .max()
            .unwrap();
        assert!(start >= last_verified.add(secs(30)), "wave {w}");
    }
    // Nothing before the debounce.
    assert!(sim.dispatched[0].0 >= t0().add(secs(10)));
    let stats = &sim.r.state.stats["fix-config"];
    assert_eq!(stats.success_rate(), Some(1.0));
    assert_eq!(stats.cost(), Some(1.0));
}

#[test]
fn a_repair_that_does_not_hold_halts_the_service_until_resumed() {
    let mut sim = Sim::new(policy(json!({"verify_within": "20s"})), 10);
    // The receiver says yes but changes nothing.
    sim.fix_after = secs(100_000);
    sim.run(60);
    assert_eq!(sim.dispatched.len(), 1, "the first wave's one member only");
    assert_eq!(sim.decisions("unverified").len(), 1);
    assert_eq!(sim.decisions("halted").len(), 1);
    sim.run(120);
    assert_eq!(sim.dispatched.len(), 1, "halted: no next wave");
    let resumed = sim.r.resume(Some("checkout"), sim.now);
    assert!(
        resumed
            .iter()
            .any(|d| d.decision == "resumed" && d.action == "fix-config")
    );
    sim.fix_after = secs(1);
    sim.run(120);
    assert!(sim.dispatched.len() > 1, "the rollout goes on after resume");
}

#[test]
fn failures_are_retried_with_the_same_key_and_a_refusal_gives_up() {
    let mut sim = Sim::new(policy(json!({"waves": ["100%"]})), 2);
    sim.answer = |member, attempt| match (member, attempt) {
        ("c-00", 1 | 2) => Outcome::Failed {
            retry: true,
            detail: "503".into(),
        },
        ("c-01", _) => Outcome::Failed {
            retry: false,
            detail: "400 Bad Request".into(),
        },
        _ => Outcome::Succeeded,
    };
    sim.run(300);
    let c0: Vec<_> = sim.dispatched.iter().filter(|d| d.1 == "c-00").collect();
    assert_eq!(c0.len(), 3);
    assert!(c0.iter().all(|d| d.2 == c0[0].2), "one key across attempts");
    assert_eq!(c0.iter().map(|d| d.3).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(c0[1].0.since(c0[0].0) >= secs(5), "backoff at least base");
    assert_eq!(
        sim.dispatched.iter().filter(|d| d.1 == "c-01").count(),
        1,
        "400 is final"
    );
    assert!(
        sim.decisions("gave_up")
            .iter()
            .any(|d| d.member.as_deref() == Some("c-01"))
    );
}

#[test]
fn a_subject_that_keeps_reopening_is_quarantined() {
    let mut sim = Sim::new(
        policy(json!({"waves": ["100%"], "thrash": {"reopens": 3, "within": "1h"}})),
        1,
    );
    for _ in 0..8 {
        sim.run(40);
        // Another controller reverts the repair.
        if let Some(mut s) = sim.closed.remove("c-00")
            && s.resolved_at.unwrap() <= sim.now
        {
            s.opened_at = sim.now;
            s.resolved_at = None;
            sim.open.insert("c-00".into(), s);
        }
    }
    assert_eq!(sim.decisions("quarantined").len(), 1);
    let dispatched = sim.dispatched.len();
    assert_eq!(dispatched, 3, "the episodes before the third reopen only");
    let keys: BTreeSet<_> = sim.dispatched.iter().map(|d| &d.2).collect();
    assert_eq!(keys.len(), 3, "one key per episode");
    let released = sim.r.release("drift:checkout:c-00:config", sim.now);
    assert!(released.is_some());
    sim.run(40);
    assert_eq!(sim.dispatched.len(), 4, "released: acted on again");
}

#[test]
fn dry_run_dispatches_nothing_and_audits_each_subject_once() {
    let mut sim = Sim::new(policy(json!({"dry_run": true, "wave_pause": "1s"})), 20);
    sim.run(300);
    assert!(sim.dispatched.is_empty());
    let would: Vec<_> = sim
        .log
        .iter()
        .filter(|d| {
            d.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("dry run"))
        })
        .collect();
    assert_eq!(would.len(), 20);
    assert!(
        would
            .iter()
            .all(|d| d.idempotency_key.is_some() && d.attempt == 1)
    );
}

#[test]
fn pause_stops_dispatch_before_the_next_one() {
    let mut sim = Sim::new(policy(json!({"waves": ["100%"], "max_in_flight": 1})), 5);
    sim.run(12);
    let before = sim.dispatched.len();
    assert!(before >= 1);
    sim.log.extend(sim.r.pause(None, sim.now));
    sim.run(100);
    assert_eq!(sim.dispatched.len(), before);
    sim.log.extend(sim.r.resume(None, sim.now));
    sim.run(100);
    assert_eq!(sim.dispatched.len(), 5);
}

#[test]
fn a_restart_retries_what_was_in_flight_under_the_same_key() {
    let mut sim = Sim::new(policy(json!({"waves": ["100%"]})), 3);
    sim.run(10);
    assert_eq!(sim.dispatched.len(), 3, "dispatched, outcomes not yet in");
    // The process dies: outcomes are lost; the state was stored.
    sim.pending.clear();
    let stored = serde_json::to_string(&sim.r.state).unwrap();
    let (r, decisions) = Reconciler::restore(serde_json::from_str(&stored).unwrap(), sim.now);
    assert_eq!(decisions.len(), 3);
    sim.r = r;
    sim.run(60);
    assert!(sim.open.is_empty());
    for m in ["c-00", "c-01", "c-02"] {
        let keys: BTreeSet<_> = sim
            .dispatched
            .iter()
            .filter(|d| d.1 == m)
            .map(|d| &d.2)
            .collect();
        assert_eq!(keys.len(), 1, "{m}: one idempotency key");
    }
}

#[test]
fn an_invalid_config_is_refused_whole_with_every_problem_named() {
    let config: ReconcileConfig = serde_json::from_value(json!({"actions": [
        {"name": "a", "match": {"kind": "drift"}, "waves": ["50%"], "max_attempts": 0,
         "webhook": {"url": "ftp://x"}, "exec": {"argv": ["true"]}}]}))
    .unwrap();
    let err = Policy::new(config).unwrap_err();
    for part in [
        "exactly one of webhook or exec",
        "max_attempts",
        "last wave must be \"100%\"",
    ] {
        assert!(err.contains(part), "{err}");
    }
    let unknown = serde_json::from_value::<ReconcileConfig>(json!({"actions": [], "surprise": 1}));
    assert!(unknown.is_err());
}

proptest! {
    /// Whatever the fleet and the receiver do, in-flight actions stay within
    /// the budget, an episode keeps one key, and a wave never starts before
    /// the one before it is over.
    #[test]
    fn budgets_and_keys_hold(members in 1usize..40, max in 1usize..6, flaky: bool) {
        let mut sim = Sim::new(policy(json!({"max_in_flight": max, "wave_pause": "2s", "debounce": "1s"})), members);
        sim.answer = if flaky { |_, a| if a % 3 == 0 { Outcome::Failed { retry: true, detail: "503".into() } } else { Outcome::Succeeded } } else { |_, _| Outcome::Succeeded };
        sim.run(400);
        prop_assert!(sim.peak_in_flight <= max);
        let mut keys: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
        for d in &sim.dispatched {
            keys.entry(&d.1).or_default().insert(&d.2);
        }
        prop_assert!(keys.values().all(|k| k.len() == 1));
        let planned = sim.decisions("planned");
        prop_assert!(planned.windows(2).all(|w| w[0].wave <= w[1].wave));
    }
}

#[test]
fn the_state_stores_only_what_changed_and_reads_back_whole() {
    use coherd_reconcile::{State, Stored};
    let mut sim = Sim::new(policy(json!({})), 6);
    sim.run(15);
    let mut stored = Stored::default();
    let all = sim.r.state.changes(&stored);
    assert!(all.len() > 6, "meta, tasks and subjects: {}", all.len());
    stored.commit(&sim.r.state, &all);
    assert!(sim.r.state.changes(&stored).is_empty(), "nothing changed");
    sim.run(1);
    let some = sim.r.state.changes(&stored);
    assert!(some.len() < all.len(), "one round changes a few items");
    stored.commit(&sim.r.state, &some);
    // Read back from every item stored: the same state.
    let mut items: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in all.into_iter().chain(some) {
        match v {
            Some(v) => items.insert(k, v),
            None => items.remove(&k),
        };
    }
    let (back, _) = State::from_items(items).unwrap();
    let strip = |s: &State| {
        let mut s = s.clone();
        for t in s.tasks.values_mut() {
            t.seen.record = serde_json::Value::Null;
        }
        s
    };
    assert_eq!(back, strip(&sim.r.state));
}

#[test]
fn a_reloaded_policy_that_no_longer_matches_drops_what_waits() {
    let mut sim = Sim::new(policy(json!({})), 3);
    sim.run(3);
    assert_eq!(sim.r.state.tasks.len(), 3, "waiting out the debounce");
    sim.policy = policy(json!({"match": {"kind": "drift", "facet": "version"}}));
    sim.run(60);
    assert!(
        sim.dispatched.is_empty(),
        "nothing the new policy does not want is dispatched"
    );
    assert!(sim.r.state.tasks.is_empty());
}
