//! A scenario as a stream of steps, for driving a server over HTTP.

use std::time::Duration;

use coherd_model::{Observation, Time};

use crate::fleet::{INTERVAL, Truth, t0, ticks};
use crate::scenarios::{Actor, Scenario, World};

/// One step of a scenario, in time order.
#[derive(Debug, Clone)]
pub enum Step {
    /// The operators set this intent (YAML) at `at`.
    Intent {
        /// When.
        at: Time,
        /// The intent document.
        yaml: String,
    },
    /// Every report of one report interval, each with its `time` set.
    Tick {
        /// When the interval starts.
        at: Time,
        /// The reports, in the order they are received.
        reports: Vec<Observation>,
        /// When each report is received: its `time`, unless the member's
        /// clock is off.
        received: Vec<Time>,
    },
}

/// The steps of one scenario, starting at `start`.
pub struct Feed {
    world: World,
    actors: Vec<Actor>,
    intents: Vec<(Time, String)>,
    k: u64,
    ticks: u64,
    shift: i64,
}

/// A scenario's steps with simulated time moved to begin at `start`, and the
/// faults it injects (with their times moved the same way).
pub fn feed(
    scenario: Scenario,
    members: usize,
    seed: u64,
    duration: Duration,
    start: Time,
) -> (Feed, Vec<Truth>) {
    let world = World::new(scenario, members, seed);
    let shift = start.as_nanos() - t0().as_nanos();
    let mut intents = world.intent_sources();
    intents.reverse();
    // A fault scheduled after the run ends is never injected: not a miss.
    let end = t0().add(scenario.duration(duration));
    let truths = world
        .truths()
        .into_iter()
        .filter(|t| t.injected_at < end)
        .map(|t| Truth {
            injected_at: Time::from_nanos(t.injected_at.as_nanos() + shift),
            ..t
        })
        .collect();
    let actors = world.actors();
    (
        Feed {
            world,
            actors,
            intents,
            k: 0,
            ticks: ticks(scenario.duration(duration)),
            shift,
        },
        truths,
    )
}

impl Feed {
    /// Report intervals in the whole feed.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }
}

impl Iterator for Feed {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let interval = INTERVAL.as_nanos() as i64;
        let tick_start = t0().as_nanos() + self.k as i64 * interval;
        if self
            .intents
            .last()
            .is_some_and(|(at, _)| at.as_nanos() <= tick_start)
        {
            let (at, yaml) = self.intents.pop().expect("checked");
            return Some(Step::Intent {
                at: Time::from_nanos(at.as_nanos() + self.shift),
                yaml,
            });
        }
        if self.k >= self.ticks {
            return None;
        }
        let n = self.actors.len().max(1) as i64;
        let mut reports = Vec::with_capacity(self.actors.len());
        let mut received = Vec::with_capacity(self.actors.len());
        let shifted = |t: Time| Time::from_nanos(t.as_nanos() + self.shift);
        for (a, actor) in self.actors.iter().enumerate() {
            let t = Time::from_nanos(tick_start + a as i64 * interval / n);
            if let Some(mut obs) = self.world.report(actor, self.k, t) {
                obs.time = Some(shifted(obs.time.unwrap_or(t)));
                received.push(shifted(t));
                for l in &mut obs.leases {
                    l.expires = Time::from_nanos(l.expires.as_nanos() + self.shift);
                }
                for e in &mut obs.events {
                    e.start = Time::from_nanos(e.start.as_nanos() + self.shift);
                    e.end = e
                        .end
                        .map(|end| Time::from_nanos(end.as_nanos() + self.shift));
                }
                reports.push(obs);
            }
        }
        self.k += 1;
        Some(Step::Tick {
            at: Time::from_nanos(tick_start + self.shift),
            reports,
            received,
        })
    }
}
