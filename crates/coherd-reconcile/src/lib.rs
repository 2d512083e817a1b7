//! coherd's reconcile loop, sans-IO.
//!
//! Seeing decoherence is half the job; this crate decides what to do about
//! it, safely enough to leave on. [`Policy`] is the checked `reconcile:`
//! config: which divergences each action repairs, by webhook or program,
//! with debounce, a budget of actions in flight, cumulative waves with a
//! pause between them, verification, backoff, attempts and a thrash limit.
//! [`Reconciler::round`] is the planner: given the divergences seen and the
//! time, it returns the [`Decision`]s to audit and the [`Dispatch`]es to
//! perform; [`Reconciler::outcome`] records how each attempt ended. No clock,
//! no IO, no randomness: the server's loop stores the decisions and the
//! [`State`] under its fencing lease, then performs the dispatches.
//!
//! ```
//! use coherd_model::{Kind, Severity, Time};
//! use coherd_reconcile::{Outcome, Policy, ReconcileConfig, Reconciler, Seen};
//!
//! let config: ReconcileConfig = serde_json::from_value(serde_json::json!({
//!     "actions": [{"name": "fix-config", "match": {"kind": "drift", "facet": "config"},
//!                  "webhook": {"url": "http://127.0.0.1:9099/fix"}, "debounce": "30s"}]
//! })).unwrap();
//! let policy = Policy::new(config).unwrap();
//! let t0: Time = "2026-12-01T08:00:00Z".parse().unwrap();
//! let drift = Seen {
//!     id: "drift:checkout:c-1:config".into(), service: "checkout".into(), kind: Kind::Drift,
//!     severity: Severity::Warning, member: Some("c-1".into()), facet: Some("config".into()),
//!     target: Some("abc".into()), opened_at: t0, resolved_at: None, record: serde_json::json!({}),
//! };
//! let mut r = Reconciler::default();
//! // Open for less than the debounce: skipped, and audited as such.
//! let round = r.round(&policy, &[drift.clone()], t0);
//! assert!(round.dispatch.is_empty());
//! assert_eq!(round.decisions[0].decision, "skipped");
//! // 30 s later it is planned and dispatched.
//! let later = t0.add(std::time::Duration::from_secs(30));
//! let round = r.round(&policy, &[drift.clone()], later);
//! assert_eq!(round.dispatch.len(), 1);
//! let d = &round.dispatch[0];
//! r.outcome(&policy, &d.key, d.attempt, Outcome::Succeeded, later);
//! // The divergence resolves: the repair is verified.
//! let fixed = Seen { resolved_at: Some(later), ..drift };
//! let round = r.round(&policy, &[fixed], later.add(std::time::Duration::from_secs(5)));
//! assert_eq!(round.decisions[0].decision, "verified");
//! ```

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod config;
mod plan;
mod state;

pub use config::{
    ActionConfig, BackoffConfig, ExecConfig, MAX_ACTIONS, MAX_HEADERS, MAX_WAVES, MatchConfig,
    Policy, ReconcileConfig, ThrashConfig, WaveSize, WebhookConfig,
};
pub use plan::{Decision, Dispatch, Evidence, Outcome, Reconciler, Round};
pub use state::{
    Episodes, Halt, Item, MAX_REOPENS_KEPT, Phase, Quarantine, Rollout, Seen, State, Stats, Stored,
    Task, idempotency_key,
};
