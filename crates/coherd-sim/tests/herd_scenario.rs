//! The herd scenario end to end on the in-process engine: the aligned job opens
//! `herd` and resolves once its members spread; the spread job never does.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::time::Duration;

use coherd_engine::{Driver, Engine, Kind};
use coherd_model::{Intent, Observation, Time};
use coherd_sim::{Scenario, Step, feed};

fn run(members: usize, seed: u64) -> Engine {
    let start = "2026-11-22T00:00:00Z".parse().expect("time");
    let (steps, truths) = feed(
        Scenario::Herd,
        members,
        seed,
        Duration::from_secs(60),
        start,
    );
    assert_eq!(truths.len(), usize::from(members >= 3));
    let mut driver = Driver::new(Engine::default());
    for step in steps {
        match step {
            Step::Intent { at, yaml } => {
                driver.set_intent(at, Intent::from_yaml(&yaml).expect("valid intent"))
            }
            Step::Tick { reports, .. } => {
                let batch: Vec<(Time, &Observation)> = reports
                    .iter()
                    .map(|o| (o.time.expect("feed sets times"), o))
                    .collect();
                for r in driver.observe_batch(&batch) {
                    r.expect("applied");
                }
            }
        }
    }
    driver.into_engine()
}

#[test]
fn aligned_compaction_opens_herd_and_resolves_when_spread_and_backups_never_do() {
    for (members, seed) in [(12, 7), (300, 3)] {
        let engine = run(members, seed);
        let herds: Vec<_> = engine
            .divergences()
            .iter()
            .filter(|d| d.kind == Kind::Herd)
            .collect();
        assert_eq!(herds.len(), 1, "{members}: {herds:#?}");
        let d = herds[0];
        assert_eq!(d.id, "herd:herd:cron:compact");
        // Judged once watched for an hour (first run reported at 00:00:30).
        assert_eq!(d.opened_at.to_string(), "2026-11-22T01:00:30Z");
        let resolved = d.resolved_at.expect("resolved once the runs spread");
        assert!(
            resolved.to_string().as_str() < "2026-11-22T02:00:00Z",
            "{d:#?}"
        );
        assert!(
            d.evidence["order_parameter"]
                .as_f64()
                .is_some_and(|r| r <= 0.6),
            "{d:#?}"
        );
    }
}

#[test]
fn two_members_are_never_a_herd() {
    let engine = run(2, 7);
    assert!(engine.divergences().iter().all(|d| d.kind != Kind::Herd));
}
