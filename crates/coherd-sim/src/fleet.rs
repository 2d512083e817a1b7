//! The simulated fleet: members report on a virtual clock; the engine runs in-process.

use std::time::Duration;

use coherd_engine::{Divergence, Engine, ServiceSlis};
use coherd_model::{Intent, Observation, Time};

use crate::SimConfig;
use crate::scenarios::{Scenario, World};

/// How often every simulated member reports.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Where simulated time starts.
pub fn t0() -> Time {
    "2026-11-22T00:00:00Z".parse().expect("valid constant")
}

pub fn ticks(duration: Duration) -> u64 {
    duration.as_secs().div_ceil(INTERVAL.as_secs())
}

/// A fault the scenario injected: the divergence it must cause.
#[derive(Debug, Clone)]
pub struct Truth {
    /// The id of the divergence it must open.
    pub id: String,
    /// Its kind.
    pub kind: coherd_engine::Kind,
    /// When the fault was injected.
    pub injected_at: Time,
}

/// What one scenario run produced.
pub struct Outcome {
    pub scenario: Scenario,
    pub truths: Vec<Truth>,
    pub divergences: Vec<Divergence>,
    pub slis: Vec<(String, ServiceSlis)>,
    pub observations: u64,
}

/// Runs one scenario to its end.
pub fn simulate(scenario: Scenario, cfg: &SimConfig, progress: &mut dyn FnMut(u64)) -> Outcome {
    let mut world = World::new(scenario, cfg.members, cfg.seed);
    let mut engine = Engine::default();
    let start = t0();
    let mut intents: Vec<(Time, Intent)> = world.intents();
    intents.reverse();
    let actors = world.actors();
    let n = actors.len() as u64;
    let interval = INTERVAL.as_nanos() as i64;
    let duration = scenario.duration(cfg.duration);
    let ticks = ticks(duration);
    let mut last = start;
    let mut observations = 0;
    for k in 0..ticks {
        for (a, actor) in actors.iter().enumerate() {
            let t = Time::from_nanos(
                start.as_nanos()
                    + k as i64 * interval
                    + (a as u64 * interval as u64 / n.max(1)) as i64,
            );
            if t > last {
                engine.handle_timeout(last);
                last = t;
            }
            while intents.last().is_some_and(|(at, _)| *at <= t) {
                let (at, intent) = intents.pop().expect("checked");
                engine.set_intent(at, intent);
            }
            if let Some(obs) = world.report(actor, k, t) {
                apply(&mut engine, t, &obs);
                observations += 1;
            }
        }
        while engine.poll_event().is_some() {}
        if k % 16 == 0 {
            progress(k);
        }
    }
    let end = start.add(duration);
    engine.handle_timeout(last);
    engine.handle_timeout(end);
    while engine.poll_event().is_some() {}
    progress(ticks);
    engine.refresh_open_subjects();
    let slis = engine
        .service_names()
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let slis = slis
        .into_iter()
        .filter_map(|s| engine.service_slis(&s).map(|x| (s, x)))
        .collect();
    Outcome {
        scenario,
        truths: world.truths(),
        divergences: engine.divergences().to_vec(),
        slis,
        observations,
    }
}

fn apply(engine: &mut Engine, t: Time, obs: &Observation) {
    if let Err(e) = engine.observe(t, obs) {
        panic!("simulated observation refused: {e}");
    }
}
