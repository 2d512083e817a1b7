//! A fake-clock driver for engine scenarios.
//!
//! [`Harness`] feeds the engine through the same [`Driver`] as the server and
//! `coherd replay`: when time moves forward it first fires every deadline up
//! to the previous input's time, then applies the new input at its own time. Times are written as offsets
//! from [`T0`] (`"30s"`, `"1h 5m"`, `"29s 999ms 999us 999ns"`).

#![allow(dead_code)]

use coherd_engine::{
    Change, Divergence, Driver, Engine, Event, Kind, MemberChange, Outcome, Severity,
};
use coherd_model::{Intent, Limits, Observation, Time};
use serde_json::Value;

/// The start of every scenario.
pub(crate) const T0: &str = "2026-11-22T08:00:00Z";

/// `T0` plus an offset such as `"10m 5s"`; `"0s"` is `T0`.
pub(crate) fn at(offset: &str) -> Time {
    let t0: Time = T0.parse().expect("T0 parses");
    t0.add(coherd_model::time::parse_duration(offset).expect("offset parses"))
}

/// Parses an intent, panicking with every error.
pub(crate) fn intent(yaml: &str) -> Intent {
    Intent::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses and validates one observation.
pub(crate) fn observation(v: &Value) -> Observation {
    Observation::from_json(&v.to_string(), &Limits::default())
        .unwrap_or_else(|e| panic!("invalid observation {v}: {e:?}"))
}

/// Every event polled so far: divergences resolved to (id, change,
/// severity), and member events as (member, time, change).
#[derive(Default)]
pub(crate) struct Changes(
    pub Vec<(String, Change, Severity)>,
    pub Vec<(String, Time, MemberChange)>,
);

impl coherd_engine::Sink for Changes {
    fn event(&mut self, engine: &Engine, event: Event) {
        match event {
            Event::Divergence { index, change } => {
                let d = &engine.divergences()[index];
                self.0.push((d.id.clone(), change, d.severity));
            }
            Event::Member {
                member, at, change, ..
            } => self.1.push((member, at, change)),
            Event::Convergence { .. } => {}
        }
    }
}

/// An engine on a virtual clock, driven in replay order.
pub(crate) struct Harness {
    pub driver: Driver<Changes>,
    last: Option<Time>,
}

impl Harness {
    /// An engine with `yaml` as its intent from `T0`.
    pub(crate) fn new(yaml: &str) -> Harness {
        let mut f = Harness::bare();
        f.set_intent("0s", yaml);
        f
    }

    /// An engine with no intent at all (every service gets the defaults).
    pub(crate) fn bare() -> Harness {
        Harness::with_engine(Engine::default())
    }

    /// Drives `engine`, which has no intent yet.
    pub(crate) fn with_engine(engine: Engine) -> Harness {
        Harness {
            driver: Driver::with_sink(engine, Changes::default()),
            last: None,
        }
    }

    /// The engine, for its getters.
    pub(crate) fn engine(&self) -> &Engine {
        self.driver.engine()
    }

    /// The engine, for getters that refresh caches first.
    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        self.driver.engine_mut()
    }

    /// Every divergence change so far.
    pub(crate) fn changes(&self) -> &[(String, Change, Severity)] {
        &self.driver.sink().0
    }

    fn check_order(&mut self, t: Time) {
        if let Some(prev) = self.last {
            assert!(t >= prev, "scenario goes back in time: {t} < {prev}");
        }
        self.last = Some(t);
    }

    /// Applies one report at `T0 + offset`.
    pub(crate) fn report(&mut self, offset: &str, v: Value) -> Outcome {
        let obs = observation(&v);
        self.report_obs(at(offset), &obs)
    }

    /// Applies one parsed report at `t`.
    pub(crate) fn report_obs(&mut self, t: Time, obs: &Observation) -> Outcome {
        self.report_instant(t, &[obs]).remove(0)
    }

    /// Applies every report of one instant at once, as `coherd replay` does.
    pub(crate) fn report_instant(&mut self, t: Time, batch: &[&Observation]) -> Vec<Outcome> {
        self.check_order(t);
        self.driver
            .observe_instant(t, batch)
            .into_iter()
            .map(|r| r.expect("observe"))
            .collect()
    }

    /// Replaces the intent at `T0 + offset`.
    pub(crate) fn set_intent(&mut self, offset: &str, yaml: &str) {
        let t = at(offset);
        self.check_order(t);
        self.driver.set_intent(t, intent(yaml));
    }

    /// Lets time pass to `T0 + offset` with no input (fires every deadline up to it).
    pub(crate) fn tick(&mut self, offset: &str) {
        let t = at(offset);
        self.check_order(t);
        self.driver.tick(t);
    }

    /// A member's timeline so far: (time, what happened).
    pub(crate) fn timeline(&self, member: &str) -> Vec<(Time, MemberChange)> {
        self.driver
            .sink()
            .1
            .iter()
            .filter(|(m, ..)| m == member)
            .map(|(_, t, c)| (*t, c.clone()))
            .collect()
    }

    /// Every record of `kind`, in the order they opened.
    pub(crate) fn of(&self, kind: Kind) -> Vec<&Divergence> {
        self.engine()
            .divergences()
            .iter()
            .filter(|d| d.kind == kind)
            .collect()
    }

    /// The only record of `kind`, failing when there are none or several.
    pub(crate) fn one(&self, kind: Kind) -> &Divergence {
        let v = self.of(kind);
        assert_eq!(v.len(), 1, "expected one {kind} record, got {v:#?}");
        v[0]
    }

    /// The only record with this id.
    pub(crate) fn by_id(&self, id: &str) -> Vec<&Divergence> {
        self.engine()
            .divergences()
            .iter()
            .filter(|d| d.id == id)
            .collect()
    }

    /// Fails when any divergence was ever opened.
    pub(crate) fn assert_nothing(&self) {
        assert!(
            self.engine().divergences().is_empty(),
            "expected no divergence, got {:#?}",
            self.engine().divergences()
        );
    }

    /// Fails when any record of `kind` exists.
    pub(crate) fn assert_no(&self, kind: Kind) {
        let v = self.of(kind);
        assert!(v.is_empty(), "expected no {kind}, got {v:#?}");
    }

    /// Severities an id went through (opened, then each escalation).
    pub(crate) fn severities(&self, id: &str) -> Vec<Severity> {
        self.changes()
            .iter()
            .filter(|(i, c, _)| i == id && *c != Change::Resolved)
            .map(|(_, _, s)| *s)
            .collect()
    }
}

/// Asserts one episode: opened at `opened`, resolved at `resolved` (None = still open).
#[track_caller]
pub(crate) fn assert_episode(d: &Divergence, opened: &str, resolved: Option<&str>) {
    assert_eq!(d.opened_at, at(opened), "opened_at of {}", d.id);
    assert_eq!(d.resolved_at, resolved.map(at), "resolved_at of {}", d.id);
}

/// A report with just `service`, `member`, `seq` and `facets`.
pub(crate) fn rep(service: &str, member: &str, seq: u64, facets: Value) -> Value {
    serde_json::json!({"service": service, "member": member, "seq": seq, "facets": facets})
}
