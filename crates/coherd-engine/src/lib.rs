//! coherd's detection engine, sans-IO.
//!
//! The [`Engine`] holds the fleet model in memory and turns observations and
//! intent into [`Divergence`]s and SLIs. It does no IO, reads no clock and
//! spawns nothing: every input carries the time, deadlines wait in a queue the
//! driver polls, and outputs wait in a queue the driver drains. The same code
//! runs under the server, in `coherd replay` and in the simulator, and tests
//! drive it on a virtual clock.
//!
//! ```
//! use coherd_engine::{Engine, Event, Kind};
//! use coherd_model::{Intent, Limits, Observation, Time};
//!
//! let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
//! let mut engine = Engine::default();
//! let intent = Intent::from_yaml("services:\n  checkout:\n    facets:\n      version: {target: \"1.4.2\"}\n").unwrap();
//! engine.set_intent(t0, intent);
//!
//! let obs = Observation::from_json(
//!     r#"{"service":"checkout","member":"c-1","seq":1,"facets":{"version":"0.9.0","phase":"ready"}}"#,
//!     &Limits::default(),
//! ).unwrap();
//! engine.observe(t0, &obs).unwrap();
//!
//! // A foreign version is drift at once.
//! let drift = engine.divergences().iter().find(|d| d.kind == Kind::Drift).unwrap();
//! assert_eq!(drift.subjects, ["c-1"]);
//! let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
//! assert!(matches!(events[0], Event::Member { .. })); // c-1 joined
//! assert!(matches!(events[1], Event::Divergence { .. }));
//!
//! // Nothing reports for 30 s: at the deadline the member is silent, and the
//! // divergence is stamped with the deadline's time, not the tick's.
//! let deadline = engine.poll_timeout().unwrap();
//! engine.handle_timeout(t0.add(std::time::Duration::from_secs(60)));
//! let silent = engine.divergences().iter().find(|d| d.kind == Kind::Silent).unwrap();
//! assert_eq!(silent.opened_at, deadline);
//! ```

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod admission;
mod breakdown;
mod canary;
mod checkpoint;
mod clock;
mod counters;
mod divergence;
mod driver;
mod engine;
mod exposure;
mod facets;
mod herd;
mod ids;
mod intent;
mod intern;
mod jobs;
mod labels;
mod lag;
mod leases;
mod liveness;
mod output;
mod pairs;
mod phases;
mod replicas;
mod retime;
mod schedule;
mod signals;
mod sli;
mod state;
mod table;
mod timer;
mod views;

pub use admission::Admission;
pub use breakdown::{BreakdownSlis, Context, MAX_BREAKDOWN_VALUES};
pub use checkpoint::{CHECKPOINT_FORMAT, CheckpointError, Snapshot};
pub use coherd_model::{Kind, Severity};
pub use divergence::{Change, Divergence};
pub use driver::{Discard, Driver, Sink};
pub use engine::{
    Engine, EngineConfig, Event, MemberChange, ObserveError, Outcome, ReportCounts, SEQ_RESTART_GAP,
};
pub use jobs::{
    ACTIVE_PERIODS, MAX_RUNS_PER_JOB, MAX_UNDECLARED_JOBS, MIN_MEMBERS, UNDECLARED_PERIOD,
    WINDOW_PERIODS,
};
pub use output::{
    FacetDistribution, JobStats, LeaseView, MemberView, MembersPage, START_SLOTS, ServiceSummary,
    Why,
};
pub use schedule::{JobSlot, SlotError};
pub use sli::{
    Convergence, Exposure, LatencySummary, ServiceSlis, UnapprovedExposure, ValueTraffic, Windowed,
};
