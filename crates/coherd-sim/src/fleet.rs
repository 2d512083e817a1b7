//! The simulated fleet: members report on a virtual clock; the engine runs in-process.

use std::time::Duration;

use coherd_engine::{Divergence, Driver, Engine, ServiceSlis};
use coherd_model::{Intent, Observation, Time};

use crate::SimConfig;
use crate::feed::Step;
use crate::scenarios::Scenario;

/// How often every simulated member reports.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Where simulated time starts.
pub(crate) fn t0() -> Time {
    "2026-11-22T00:00:00Z".parse().expect("valid constant")
}

pub(crate) fn ticks(duration: Duration) -> u64 {
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
pub(crate) struct Outcome {
    pub scenario: Scenario,
    pub truths: Vec<Truth>,
    pub divergences: Vec<Divergence>,
    pub slis: Vec<(String, ServiceSlis)>,
    pub observations: u64,
}

/// Runs one scenario to its end: the same steps `coherd simulate --server`
/// sends, applied to an in-process engine the way `coherd replay` does.
pub(crate) fn simulate(
    scenario: Scenario,
    cfg: &SimConfig,
    progress: &mut dyn FnMut(u64),
) -> Outcome {
    let start = t0();
    let (feed, truths) = crate::feed::feed(scenario, cfg.members, cfg.seed, cfg.duration, start);
    let ticks = feed.ticks();
    let mut driver = Driver::new(Engine::default());
    let mut observations = 0;
    let mut k = 0u64;
    for step in feed {
        match step {
            Step::Intent { at, yaml } => {
                let intent = Intent::from_yaml(&yaml).expect("scenario intents are valid");
                driver.set_intent(at, intent);
            }
            Step::Tick {
                reports, received, ..
            } => {
                let batch: Vec<(Time, &Observation)> =
                    received.iter().copied().zip(reports.iter()).collect();
                for r in driver.observe_batch(&batch) {
                    if let Err(e) = r {
                        panic!("simulated observation refused: {e}");
                    }
                }
                observations += reports.len() as u64;
                if k.is_multiple_of(16) {
                    progress(k);
                }
                k += 1;
            }
        }
    }
    driver.tick(start.add(scenario.duration(cfg.duration)));
    progress(ticks);
    let mut engine = driver.into_engine();
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
