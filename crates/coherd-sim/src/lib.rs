//! A deterministic fleet simulator with ground truth.
//!
//! Each scenario is a small world: a fleet of members that report every ten
//! seconds on a simulated clock, an intent, and faults injected at known
//! times. The simulator runs the real [`coherd_engine::Engine`] in-process,
//! much faster than real time, and scores what it detected against the faults
//! it injected: per divergence kind, recall, precision and detection latency.
//!
//! ```
//! use coherd_sim::{Scenario, SimConfig, run};
//!
//! let report = run(&SimConfig { scenarios: vec![Scenario::Silent], members: 200, seed: 7, ..SimConfig::default() }, |_, _| {});
//! let silent = &report.kinds["silent"];
//! assert_eq!(silent.recall, Some(1.0));
//! assert_eq!(silent.precision, Some(1.0));
//! ```

mod feed;
mod fleet;
mod scenarios;
mod score;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use feed::{Feed, Step, feed};
pub use fleet::Truth;
pub use scenarios::Scenario;
pub use score::{Found, KindScore, ScenarioScore, Tally};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Scenarios to run, each as its own service and engine.
    pub scenarios: Vec<Scenario>,
    /// Members per scenario.
    pub members: usize,
    /// Seed: which members are faulty and when members report.
    pub seed: u64,
    /// Simulated time per scenario.
    pub duration: Duration,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            scenarios: Scenario::ALL.to_vec(),
            members: 1000,
            seed: 7,
            duration: Duration::from_secs(40 * 60),
        }
    }
}

/// Scores per kind and the SLIs of every simulated service.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Per divergence kind.
    pub kinds: BTreeMap<String, KindScore>,
    /// SLIs per service at the end of each scenario.
    pub slis: BTreeMap<String, coherd_engine::ServiceSlis>,
    /// Per scenario: faults injected and divergences found.
    pub scenarios: BTreeMap<String, ScenarioScore>,
    /// Observations applied, in all scenarios.
    pub observations: u64,
}

/// Runs the scenarios; `progress(done, total)` is called as simulated time passes.
pub fn run(cfg: &SimConfig, mut progress: impl FnMut(u64, u64)) -> SimReport {
    let total_ticks = cfg
        .scenarios
        .iter()
        .map(|s| fleet::ticks(s.duration(cfg.duration)))
        .sum();
    let mut done = 0;
    let mut outcomes = Vec::new();
    for &scenario in &cfg.scenarios {
        let outcome = fleet::simulate(scenario, cfg, &mut |t| progress(done + t, total_ticks));
        done += fleet::ticks(scenario.duration(cfg.duration));
        outcomes.push(outcome);
    }
    score::score(outcomes)
}
