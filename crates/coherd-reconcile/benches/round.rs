//! The planner's round on a large fleet: 10 000 drifted members in 100
//! services, mid-rollout, when nothing changed since the last round (the
//! common case, once a second), and finding what of the state to store
//! after such a round (nothing) and after the first one (everything).

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::hint::black_box;
use std::time::Duration;

use coherd_model::{Kind, Severity, Time};
use coherd_reconcile::{Outcome, Policy, ReconcileConfig, Reconciler, Seen, Stored};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn fleet(services: usize, per_service: usize, t0: Time) -> Vec<Seen> {
    let mut out = Vec::new();
    for s in 0..services {
        for m in 0..per_service {
            let (service, member) = (format!("svc-{s:03}"), format!("m-{m:04}"));
            out.push(Seen {
                id: format!("drift:{service}:{member}:config"),
                record: json!({"id": format!("drift:{service}:{member}:config"), "kind": "drift", "severity": "critical",
                    "subjects": [member], "evidence": {"facet": "config", "value": "c1", "target": "c2", "state": "foreign"}}),
                service,
                kind: Kind::Drift,
                severity: Severity::Critical,
                member: Some(member),
                facet: Some("config".into()),
                target: Some("c2".into()),
                opened_at: t0,
                resolved_at: None,
            });
        }
    }
    out
}

fn round(c: &mut Criterion) {
    let config: ReconcileConfig = serde_json::from_value(json!({"max_in_flight": 1000, "actions": [
        {"name": "fix-config", "match": {"kind": "drift", "facet": "config"}, "webhook": {"url": "http://127.0.0.1:9/fix"},
         "debounce": "0s", "max_in_flight": 5, "waves": [1, "10%", "50%", "100%"]}]}))
    .unwrap();
    let policy = Policy::new(config).unwrap();
    let t0: Time = "2026-12-01T08:00:00Z".parse().unwrap();
    let seen = fleet(100, 100, t0);
    let mut r = Reconciler::default();
    // Mid-rollout: the first wave dispatched everywhere and answered.
    let first = r.round(&policy, &seen, t0);
    for d in first.dispatch {
        r.outcome(&policy, &d.key, d.attempt, Outcome::Succeeded, t0);
    }
    let now = t0.add(Duration::from_secs(1));
    r.round(&policy, &seen, now);
    c.bench_function(
        "round/10k open divergences, 100 services, nothing new",
        |b| b.iter(|| black_box(r.round(&policy, black_box(&seen), now))),
    );
    let mut stored = Stored::default();
    let all = r.state.changes(&stored);
    stored.commit(&r.state, &all);
    c.bench_function("state/changes to store, 10k tasks, none", |b| {
        b.iter(|| black_box(r.state.changes(&stored).len()))
    });
    c.bench_function("state/changes to store, 10k tasks, all new", |b| {
        b.iter(|| black_box(r.state.changes(&Stored::default()).len()))
    });
}

criterion_group!(benches, round);
criterion_main!(benches);
