//! The simulated fleet: members report on a virtual clock; the engine runs in-process.

use std::time::Duration;

use coherd_engine::{Divergence, Engine, ServiceSlis};
use coherd_model::{Intent, Time};

use crate::SimConfig;
use crate::feed::Step;
use crate::scenarios::Scenario;

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

/// Runs one scenario to its end: the same steps `coherd simulate --server`
/// sends, applied to an in-process engine the way `coherd replay` does.
pub fn simulate(scenario: Scenario, cfg: &SimConfig, progress: &mut dyn FnMut(u64)) -> Outcome {
    let start = t0();
    let (feed, truths) = crate::feed::feed(scenario, cfg.members, cfg.seed, cfg.duration, start);
    let ticks = feed.ticks();
    let mut engine = Engine::default();
    let mut last = start;
    let mut observations = 0;
    let mut advance = |engine: &mut Engine, t: Time| {
        if t > last {
            engine.handle_timeout(last);
            last = t;
        }
    };
    let mut k = 0u64;
    for step in feed {
        match step {
            Step::Intent { at, yaml } => {
                advance(&mut engine, at);
                engine.set_intent(
                    at,
                    Intent::from_yaml(&yaml).expect("scenario intents are valid"),
                );
            }
            Step::Tick { reports, .. } => {
                for obs in &reports {
                    let t = obs.time.expect("the feed stamps every report");
                    advance(&mut engine, t);
                    if let Err(e) = engine.observe(t, obs) {
                        panic!("simulated observation refused: {e}");
                    }
                    observations += 1;
                }
                while engine.poll_event().is_some() {}
                if k.is_multiple_of(16) {
                    progress(k);
                }
                k += 1;
            }
        }
    }
    engine.handle_timeout(last);
    engine.handle_timeout(start.add(scenario.duration(cfg.duration)));
    while engine.poll_event().is_some() {}
    progress(ticks);
    engine.refresh_open_subjects();
    let slis = engine.all_service_slis().into_iter().collect();
    Outcome {
        scenario,
        truths,
        divergences: engine.divergences().to_vec(),
        slis,
        observations,
    }
}
