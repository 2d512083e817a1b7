//! Dephasing for fleets: keep periodic work and retries from all landing at once.
//!
//! When every member of a fleet runs its cron job at the top of the hour, or
//! retries a failed call after exactly one second, the load arrives in spikes
//! (a thundering herd). This crate computes where to move that work and
//! measures how synchronised it is. It is sans-IO: pure functions and plain
//! values, no clock, no randomness of its own, no files, no async.
//!
//! # Overview
//!
//! - **Offsets.** [`stable_offset`] gives a key (a host) a fixed offset for a
//!   job without knowing the rest of the fleet, like Jenkins' `H`. [`spread`]
//!   spaces a known membership evenly over a window, with a proven bound on
//!   slot load and on how far offsets move when a member joins or leaves.
//! - **Retries.** [`Backoff`] is capped exponential backoff with
//!   [`Jitter`] `None`, `Full`, `Equal` or `Decorrelated`; randomness is passed in.
//!   [`RetryBudget`] caps retries at a share of requests.
//! - **Measures.** [`order_parameter`] (the Kuramoto `R`, 1 = in lockstep,
//!   near 0 = spread), [`histogram`] of starts per slot of a period,
//!   [`peak_to_mean`] of that histogram, and exact [`peak_concurrency`] of
//!   half-open intervals.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use coherd_dephase::{histogram, order_parameter, peak_to_mean, spread, stable_offset};
//!
//! let hour = Duration::from_secs(3600);
//! let members: Vec<String> = (0..120).map(|i| format!("web-{i}")).collect();
//!
//! // Everyone at the top of the hour: R = 1, all load in one of 60 slots.
//! let herd = vec![Duration::ZERO; members.len()];
//! assert!(order_parameter(herd.iter().copied(), hour)? > 0.999);
//!
//! // Spread evenly: R is 0, and every one-minute slot gets exactly 2 members.
//! let fleet = spread(&members, "hourly-report", hour)?;
//! let starts: Vec<Duration> = fleet.iter().map(|(_, offset)| offset).collect();
//! assert!(order_parameter(starts.iter().copied(), hour)? < 1e-9);
//! let counts = histogram(starts.iter().copied(), hour, 60)?;
//! assert_eq!(peak_to_mean(&counts), Some(1.0));
//!
//! // Without knowing the fleet, a stable per-host offset is close to uniform.
//! let offset = stable_offset("web-7", "hourly-report", hour);
//! assert!(offset < hour);
//! # Ok::<(), coherd_dephase::DephaseError>(())
//! ```

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod backoff;
mod budget;
mod concurrency;
mod error;
mod hash;
mod measure;
mod offset;
mod spread;

pub use backoff::{Backoff, Jitter, Retries};
pub use budget::RetryBudget;
pub use concurrency::peak_concurrency;
pub use error::DephaseError;
pub use measure::{histogram, order_parameter, peak_to_mean, phase};
pub use offset::stable_offset;
pub use spread::{Spread, spread};
