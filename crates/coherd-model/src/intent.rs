//! Intent: what the operators want per service (DESIGN 2.2).
//!
//! [`Intent::from_yaml`] reads YAML (or JSON) and returns either a complete,
//! validated intent or every error with its line and column. An intent is
//! never half-applied.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::error::{IntentError, IntentErrors};
use crate::names;
use crate::time::{format_duration, parse_duration};
use crate::yaml::{self, Node, NodeKind};

mod read;

use read::Reader;

/// The whole intent: per-service targets and rules.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Intent {
    /// Services by name.
    pub services: BTreeMap<String, ServiceIntent>,
}

/// What the operators want for one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceIntent {
    /// How often members report; a member is silent after 3 x this.
    #[serde(serialize_with = "ser_duration")]
    pub report_interval: Duration,
    /// Members expected; the denominator of telemetry completeness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_members: Option<u32>,
    /// Facets with targets or uniformity rules.
    pub facets: BTreeMap<String, FacetIntent>,
    /// The lifecycle phase machine.
    pub phases: PhaseMachine,
    /// Lease rules by resource.
    pub leases: BTreeMap<String, LeaseIntent>,
    /// Declared datasets (all datasets are compared, declared or not).
    pub datasets: BTreeMap<String, DatasetIntent>,
    /// Periodic jobs to spread apart and watch for `herd`.
    #[serde(skip_serializing_if = "DephaseIntent::is_empty")]
    pub dephase: DephaseIntent,
    /// Member labels (such as `region`, `zone`) that split the SLIs, the
    /// metrics and the divergences' alerts; at most [`MAX_BREAKDOWN`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breakdown: Vec<String>,
}

/// Labels a service may be broken down by.
pub const MAX_BREAKDOWN: usize = 4;

/// Rules for one facet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacetIntent {
    /// The value every member should have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Values that may serve beside the target during a rollout.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible: Vec<String>,
    /// Must converge to one value (true whenever there is a target).
    pub uniform: bool,
    /// How long a change may take before old values count as lagging.
    #[serde(serialize_with = "ser_duration")]
    pub rollout_window: Duration,
    /// Compare error rates per value: `canary_regression` (needs a target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryIntent>,
}

/// When a value of a facet fails more requests than the baseline value
/// (the previous target during a change, else the target): its error rate
/// over `window` exceeds `max_ratio` times the baseline's, with at least
/// `min_requests` on both sides, and a one-sided test of that (the rates'
/// difference `p - max_ratio x p_baseline`, Wald) is significant at `alpha`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryIntent {
    /// How many times the baseline's error rate a value may fail.
    pub max_ratio: f64,
    /// Requests each side needs in the window before a verdict.
    pub min_requests: u64,
    /// The window error rates are taken over.
    #[serde(serialize_with = "ser_duration")]
    pub window: Duration,
    /// The test's significance level: the chance of a false verdict at one
    /// evaluation when the value fails exactly `max_ratio` times as often.
    pub alpha: f64,
    /// Also judge latency: the share of requests slower than this many
    /// milliseconds, from the members' cumulative counter `latency_le_<ms>`
    /// (requests done within it, as a Prometheus histogram bucket counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_ms: Option<u32>,
}

impl Default for CanaryIntent {
    fn default() -> CanaryIntent {
        CanaryIntent {
            max_ratio: 2.0,
            min_requests: 1000,
            window: Duration::from_secs(600),
            alpha: 0.001,
            slow_ms: None,
        }
    }
}

impl FacetIntent {
    /// Whether this facet raises `mixed` (targeted or uniform).
    pub fn is_uniform(&self) -> bool {
        self.uniform || self.target.is_some()
    }
}

/// The lifecycle phase machine of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseMachine {
    /// Phases a member may start in.
    pub initial: Vec<String>,
    /// Phases in which a member serves traffic.
    pub serving: Vec<String>,
    /// Allowed moves: from -> [to].
    pub transitions: BTreeMap<String, Vec<String>>,
    /// How long an observer's view may differ from the member's own phase.
    #[serde(serialize_with = "ser_duration")]
    pub agreement_timeout: Duration,
    /// More phase changes than this in an hour is flapping.
    pub max_flips_per_hour: u32,
    /// How long an illegal transition stays open after the last one.
    #[serde(serialize_with = "ser_duration")]
    pub hold: Duration,
}

impl Default for PhaseMachine {
    fn default() -> PhaseMachine {
        let t = |from: &str, to: &[&str]| {
            (from.to_string(), to.iter().map(|s| s.to_string()).collect())
        };
        PhaseMachine {
            initial: vec!["starting".into()],
            serving: vec!["ready".into()],
            transitions: BTreeMap::from([
                t("starting", &["ready", "stopped"]),
                t("ready", &["draining", "stopped"]),
                t("draining", &["stopped"]),
                t("stopped", &["starting"]),
            ]),
            agreement_timeout: Duration::from_secs(5),
            max_flips_per_hour: 6,
            hold: Duration::from_secs(600),
        }
    }
}

impl PhaseMachine {
    /// Every phase the machine names.
    pub fn phases(&self) -> BTreeSet<&str> {
        let mut all: BTreeSet<&str> = self
            .initial
            .iter()
            .chain(&self.serving)
            .map(String::as_str)
            .collect();
        for (from, to) in &self.transitions {
            all.insert(from);
            all.extend(to.iter().map(String::as_str));
        }
        all
    }

    /// Terminal phases: those with no way out but to an initial phase.
    pub fn terminal(&self) -> BTreeSet<&str> {
        self.phases()
            .into_iter()
            .filter(|p| {
                self.transitions
                    .get(*p)
                    .is_none_or(|to| to.iter().all(|t| self.initial.contains(t)))
            })
            .filter(|p| {
                !self.initial.iter().any(|i| i == p) && !self.serving.iter().any(|s| s == p)
            })
            .collect()
    }
}

/// Rules for a leased resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LeaseIntent {
    /// At most one holder at a time (raises `split_brain` and `stale_epoch`).
    pub exclusive: bool,
}

/// A declared dataset.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DatasetIntent {
    /// How far a live replica may trail the highest live position before
    /// `replica_lag` opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag: Option<MaxLag>,
}

/// A replica lag limit: in positions, or in time when members report
/// `position_time` with their checksums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MaxLag {
    /// Positions behind the highest.
    Positions(u64),
    /// Time behind the highest position's time.
    #[serde(serialize_with = "ser_duration")]
    Time(Duration),
}

/// Periodic work of a service: how to spread it and when it is a `herd`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DephaseIntent {
    /// Jobs by name; a name is an event `kind` such as `cron:compact`.
    pub jobs: BTreeMap<String, JobIntent>,
}

impl DephaseIntent {
    /// Whether no job is declared.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// One periodic job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobIntent {
    /// How often the job runs; periods are aligned to the Unix epoch.
    #[serde(serialize_with = "ser_duration")]
    pub period: Duration,
    /// The part of each period that runs may be spread over (default: the whole period).
    #[serde(serialize_with = "ser_duration")]
    pub window: Duration,
    /// How members get their offsets.
    pub spread: SpreadMode,
    /// More runs than this at one instant is a `herd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// An order parameter above this over the last periods is a `herd`.
    pub herd_threshold: f64,
}

/// How a job's runs are spread over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpreadMode {
    /// Evenly over the live membership (offsets move a little when it changes).
    #[default]
    Even,
    /// A fixed hash of member and job (never moves, roughly uniform).
    Stable,
}

impl SpreadMode {
    /// The name used in the intent and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SpreadMode::Even => "even",
            SpreadMode::Stable => "stable",
        }
    }
}

/// The default `herd_threshold`.
pub const DEFAULT_HERD_THRESHOLD: f64 = 0.6;

/// The longest job period accepted.
pub const MAX_JOB_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// Defaults for a service the intent does not name.
impl Default for ServiceIntent {
    fn default() -> ServiceIntent {
        ServiceIntent {
            report_interval: Duration::from_secs(10),
            expect_members: None,
            facets: BTreeMap::new(),
            phases: PhaseMachine::default(),
            leases: BTreeMap::new(),
            datasets: BTreeMap::new(),
            dephase: DephaseIntent::default(),
            breakdown: Vec::new(),
        }
    }
}

/// The default rollout window.
pub const DEFAULT_ROLLOUT_WINDOW: Duration = Duration::from_secs(600);

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_duration(*d))
}

impl Intent {
    /// Parses and validates YAML or JSON text.
    pub fn from_yaml(src: &str) -> Result<Intent, IntentErrors> {
        let node = yaml::parse(src).map_err(|e| IntentErrors(vec![e]))?;
        if matches!(node.kind, NodeKind::Null) {
            return Err(IntentErrors(vec![IntentError {
                line: 1,
                column: 1,
                path: String::new(),
                message: "the intent is empty; to clear it, write `services: {}`".into(),
            }]));
        }
        Intent::from_node(&node)
    }

    /// Validates a JSON value (as in a replay line), placing errors at `line`.
    pub fn from_json(v: &serde_json::Value, line: usize) -> Result<Intent, IntentErrors> {
        Intent::from_node(&yaml::from_json(v, line))
    }

    /// Validates a parsed node tree.
    pub fn from_node(node: &Node) -> Result<Intent, IntentErrors> {
        let mut r = Reader::default();
        let intent = r.intent(node);
        if r.errors.is_empty() {
            Ok(intent)
        } else {
            Err(IntentErrors(r.errors))
        }
    }

    /// The rules for `service`, or the defaults when it is not named.
    pub fn service(&self, service: &str) -> Option<&ServiceIntent> {
        self.services.get(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN: &str = r#"
services:
  checkout:
    report_interval: 10s          # default 10s
    expect_members: 120
    facets:
      version: {target: "1.4.2", compatible: ["1.4.1"], rollout_window: 30m}
      config:  {target: "sha256:ab12", rollout_window: 2m}
      schema:  {target: "42", compatible: ["41"], rollout_window: 1h}
      kernel:  {uniform: true, rollout_window: 1d}
    phases:
      initial: [starting]
      serving: [ready]
      transitions:
        starting: [ready, stopped]
        ready: [draining, stopped]
        draining: [stopped]
        stopped: [starting]
      agreement_timeout: 5s
      max_flips_per_hour: 6
      hold: 10m
    leases:
      scheduler: {exclusive: true}
    datasets:
      users: {}
"#;

    #[test]
    fn parses_the_design_example() {
        let i = Intent::from_yaml(DESIGN).unwrap();
        let s = &i.services["checkout"];
        assert_eq!(s.expect_members, Some(120));
        assert_eq!(s.facets["version"].target.as_deref(), Some("1.4.2"));
        assert_eq!(
            s.facets["version"].rollout_window,
            Duration::from_secs(1800)
        );
        assert!(s.facets["kernel"].uniform && s.facets["kernel"].target.is_none());
        assert_eq!(
            s.facets["kernel"].rollout_window,
            Duration::from_secs(86400)
        );
        assert_eq!(s.phases, PhaseMachine::default());
        assert!(s.leases["scheduler"].exclusive);
        assert!(s.datasets.contains_key("users"));
    }

    #[test]
    fn default_machine_has_stopped_terminal() {
        let m = PhaseMachine::default();
        assert_eq!(m.terminal().into_iter().collect::<Vec<_>>(), ["stopped"]);
    }

    #[test]
    fn every_error_has_its_line() {
        let src = "services:\n  checkout:\n    report_intervl: 10s\n    facets:\n      version: {target: \"1\", rollout_window: 30x}\n    phases:\n      max_flips_per_hour: lots\n";
        let errs = Intent::from_yaml(src).unwrap_err().0;
        let lines: Vec<_> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            lines,
            [
                (3, "services.checkout.report_intervl"),
                (5, "services.checkout.facets.version.rollout_window"),
                (7, "services.checkout.phases.max_flips_per_hour")
            ]
        );
        assert!(errs[0].message.contains("unknown field"), "{}", errs[0]);
        assert_eq!(errs[0].column, 5);
    }

    #[test]
    fn bad_names_and_contradictions() {
        let src = "services:\n  Check Out:\n    facets:\n      version: {target: \"1\", uniform: false, compatible: [\"1\"]}\n";
        let errs = Intent::from_yaml(src).unwrap_err().0;
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn json_intent_is_accepted() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"services":{"a":{"facets":{"version":{"target":"2"}}}}}"#)
                .unwrap();
        let i = Intent::from_json(&v, 7).unwrap();
        assert_eq!(
            i.services["a"].facets["version"].rollout_window,
            DEFAULT_ROLLOUT_WINDOW
        );
        let v: serde_json::Value =
            serde_json::from_str(r#"{"services":{"a":{"facetz":{}}}}"#).unwrap();
        assert_eq!(Intent::from_json(&v, 7).unwrap_err().0[0].line, 7);
    }

    #[test]
    fn dephase_jobs_parse_with_defaults() {
        let src = "services:\n  db:\n    dephase:\n      jobs:\n        cron:compact: {period: 1h}\n        cron:backup: {period: 1d, window: 6h, spread: stable, max_concurrent: 5, herd_threshold: 0.8}\n";
        let i = Intent::from_yaml(src).unwrap();
        let jobs = &i.services["db"].dephase.jobs;
        let compact = &jobs["cron:compact"];
        assert_eq!(compact.period, Duration::from_secs(3600));
        assert_eq!(compact.window, compact.period);
        assert_eq!(compact.spread, SpreadMode::Even);
        assert_eq!(compact.max_concurrent, None);
        assert_eq!(compact.herd_threshold, DEFAULT_HERD_THRESHOLD);
        let backup = &jobs["cron:backup"];
        assert_eq!(backup.window, Duration::from_secs(6 * 3600));
        assert_eq!(backup.spread, SpreadMode::Stable);
        assert_eq!(backup.max_concurrent, Some(5));
        assert_eq!(backup.herd_threshold, 0.8);
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(
            json["services"]["db"]["dephase"]["jobs"]["cron:backup"]["spread"],
            "stable"
        );
        assert_eq!(
            json["services"]["db"]["dephase"]["jobs"]["cron:compact"]["window"],
            "1h"
        );
        let plain = Intent::from_yaml("services:\n  web: {}\n").unwrap();
        assert!(
            serde_json::to_value(&plain).unwrap()["services"]["web"]
                .get("dephase")
                .is_none()
        );
    }

    #[test]
    fn dephase_errors_have_their_lines() {
        let src = "services:\n  db:\n    dephase:\n      jobs:\n        9bad: {period: 1h}\n        a: {period: 0s}\n        b: {period: 1h, window: 2h}\n        c: {period: 1h, spread: random}\n        d: {period: 1h, max_concurrent: 0}\n        e: {period: 1h, herd_threshold: 1.5}\n        f: {window: 1h}\n        g: {period: 1h, splay: 1m}\n";
        let errs = Intent::from_yaml(src).unwrap_err().0;
        let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        let p = "services.db.dephase.jobs";
        assert_eq!(
            got,
            [
                (5, format!("{p}.9bad").as_str()),
                (6, format!("{p}.a.period").as_str()),
                (7, format!("{p}.b.window").as_str()),
                (8, format!("{p}.c.spread").as_str()),
                (9, format!("{p}.d.max_concurrent").as_str()),
                (10, format!("{p}.e.herd_threshold").as_str()),
                (11, format!("{p}.f.period").as_str()),
                (12, format!("{p}.g.splay").as_str()),
            ],
            "{errs:?}"
        );
        assert!(
            errs[2].message.contains("longer than the period"),
            "{}",
            errs[2]
        );
    }

    #[test]
    fn an_intent_must_list_its_services_even_to_clear_them() {
        for src in ["{}\n", "{\"services\": {}, \"x\": 1}"] {
            let errs = Intent::from_yaml(src).unwrap_err().0;
            assert!(!errs.is_empty(), "{src}");
        }
        let errs = Intent::from_yaml("{}").unwrap_err().0;
        assert_eq!(errs[0].path, "services");
        assert!(errs[0].message.contains("services: {}"), "{}", errs[0]);
        assert!(
            Intent::from_yaml("services: {}\n")
                .unwrap()
                .services
                .is_empty()
        );
        assert!(
            Intent::from_yaml("services:\n")
                .unwrap()
                .services
                .is_empty()
        );
    }
}
