//! A synthetic fleet shared by the benchmarks: members at target on five facets.

#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;

use coherd_engine::Engine;
use coherd_model::{Intent, Observation, Time};

pub(crate) const INTENT: &str = r#"
services:
  bench:
    facets:
      version: {target: "1.4.2", compatible: ["1.4.1"]}
      config: {target: "sha256:ab12"}
      schema: {target: "42", compatible: ["41"]}
      flags: {target: "f-7"}
      kernel: {uniform: true}
"#;

pub(crate) fn t0() -> Time {
    "2026-11-22T08:00:00Z".parse().unwrap()
}

/// Member `i`'s report: no `seq` (always applied), five facets at target and a phase.
pub(crate) fn report(i: usize) -> Observation {
    Observation {
        service: "bench".into(),
        member: format!("bench-{i:07}"),
        facets: BTreeMap::from([
            ("version".into(), "1.4.2".into()),
            ("config".into(), "sha256:ab12".into()),
            ("schema".into(), "42".into()),
            ("flags".into(), "f-7".into()),
            ("kernel".into(), "6.1.0-28".into()),
            ("phase".into(), "ready".into()),
        ]),
        ..Observation::default()
    }
}

/// One report per member.
pub(crate) fn reports(members: usize) -> Vec<Observation> {
    (0..members).map(report).collect()
}

/// An engine with `members` members that all reported at t0.
pub(crate) fn engine(reports: &[Observation]) -> Engine {
    let mut e = Engine::default();
    e.set_intent(t0(), Intent::from_yaml(INTENT).unwrap());
    for r in reports {
        e.observe(t0(), r).unwrap();
    }
    while e.poll_event().is_some() {}
    e
}
