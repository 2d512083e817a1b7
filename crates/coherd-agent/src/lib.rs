//! coherd's agent: runs beside a member, reads its facets and counters where
//! they already are (a file's hash, a program's output, an environment
//! variable, a health endpoint, a Prometheus text endpoint), and reports them
//! to coherd as ordinary observations through the same validation and store
//! as any other report.
//!
//! It polls every `poll` (2 s), reports at once on a change and otherwise
//! every `report_interval` at a stable offset per member (the dephasing
//! crate's), so a fleet of agents does not report in one instant. `seq` is
//! kept in a state file and never goes back across restarts. While coherd
//! cannot be reached, reports wait in a bounded buffer and are retried with
//! decorrelated jitter.

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod agent;
pub mod cli;
mod config;
mod probe;
pub mod prom;

pub use agent::{Agent, Reading};
pub use config::{AgentConfig, CounterProbe, MAX_PROBES, Probe};
pub use probe::MAX_OUTPUT;
