//! Exports for Prometheus users: alerting and recording rules, and Grafana
//! dashboards, over the metrics `coherd serve` exposes on `/metrics`.
//!
//! Everything here is a pure function from options to text or JSON values;
//! writing files is the caller's job.
//!
//! - [`rules::prometheus_rules`] builds the rule groups: recording rules for
//!   the coherence error ratio and its burn rate over 5m, 30m, 1h, 6h and 3d,
//!   the remaining error budget, multiwindow multi-burn-rate alerts (Google SRE
//!   workbook: page at 14.4x over 1h and 5m or 6x over 6h and 30m, ticket at
//!   1x over 3d and 6h) and one alert per divergence kind; [`rules::to_yaml`]
//!   renders them as a Prometheus rule file.
//! - [`dashboards::grafana_dashboards`] builds the executive, on-call and
//!   debug dashboards as Grafana JSON models.
//!
//! # Example
//!
//! ```
//! use coherd_export::rules::{RuleOptions, prometheus_rules, to_yaml};
//!
//! let groups = prometheus_rules(&RuleOptions { slo: 0.995, ..RuleOptions::default() }).unwrap();
//! let yaml = to_yaml(&groups);
//! assert!(yaml.contains("alert: CoherdSplitBrain"));
//! // The page threshold for the fast window pair is 14.4 times the budget.
//! assert!(yaml.contains("coherd:coherence_burn_rate:1h > 14.4"));
//!
//! let boards = coherd_export::dashboards::grafana_dashboards(&Default::default());
//! assert_eq!(boards.len(), 3);
//! assert_eq!(boards[0].1["uid"], "coherd-executive");
//! ```

pub mod dashboards;
mod divergence_alerts;
pub mod rules;
mod sli_alerts;
mod yaml;

/// Why an export could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExportError {
    /// The SLO objective must be a ratio strictly between 0 and 1.
    #[error("the SLO objective must be strictly between 0 and 1 (e.g. 0.999), got {0}")]
    Objective(f64),
    /// The SLO period must be a whole number of days, at least 7 (the page windows need history).
    #[error("the SLO period must be between 7 and 365 days, got {0}")]
    Period(u32),
    /// A label matcher for coherd's series must be `name="value"` pairs.
    #[error("the selector {0:?} is not a list of name=\"value\" matchers")]
    Selector(String),
}
