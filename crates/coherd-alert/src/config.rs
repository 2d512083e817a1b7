//! The alerting configuration (YAML), with built-in defaults for every divergence kind.

use std::collections::BTreeMap;
use std::time::Duration;

use coherd_model::time::{deserialize_duration, prometheus_duration};
use coherd_model::{Kind, Severity};
use serde::Deserialize;

use crate::error::ConfigError;
use crate::matcher::Matcher;
pub use crate::policy::Urgency;
use crate::policy::{DIVERGENCE_ALERTS, SLI_ALERTS, Threshold};
use crate::slo::BurnWindow;

/// Everything alerting needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Grouping and timing of notifications.
    pub route: Route,
    /// Alerts that fire and resolve too often are held firing.
    pub flap: FlapDamping,
    /// Rules in addition to (or, with `defaults: false`, instead of) the built-in ones.
    pub rules: Vec<Rule>,
    /// Include the built-in rule for every divergence kind.
    pub defaults: bool,
    /// Service level objectives.
    pub slos: Vec<Slo>,
    /// Inhibition: a firing source alert mutes matching targets.
    pub inhibit: Vec<Inhibit>,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            route: Route::default(),
            flap: FlapDamping::default(),
            rules: Vec::new(),
            defaults: true,
            slos: Vec::new(),
            inhibit: vec![Inhibit {
                source: vec![Matcher::parse("kind=silent").expect("valid")],
                target: vec![
                    Matcher::parse("kind=~drift|mixed|phase_disagreement|drain_violation|flapping")
                        .expect("valid"),
                ],
                equal: vec!["service".into(), "member".into()],
            }],
        }
    }
}

/// Alertmanager's route timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// Labels that make a group.
    pub group_by: Vec<String>,
    /// How long a new group waits before its first notification.
    #[serde(deserialize_with = "deserialize_duration")]
    pub group_wait: Duration,
    /// How long a group waits before notifying about changes.
    #[serde(deserialize_with = "deserialize_duration")]
    pub group_interval: Duration,
    /// How long before re-sending an unchanged firing group.
    #[serde(deserialize_with = "deserialize_duration")]
    pub repeat_interval: Duration,
    /// Notify when alerts resolve.
    pub send_resolved: bool,
    /// The receiver name in notifications.
    pub receiver: String,
}

impl Default for Route {
    fn default() -> Route {
        Route {
            group_by: vec!["service".into(), "deploy".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
            receiver: "coherd".into(),
        }
    }
}

/// Flap damping: more than `changes` resolutions within `window` holds the alert firing
/// until it has stayed resolved for `hold`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlapDamping {
    /// Resolutions within the window that count as flapping.
    pub changes: u32,
    /// The window.
    #[serde(deserialize_with = "deserialize_duration")]
    pub window: Duration,
    /// How long a flapping alert must stay resolved before it resolves.
    #[serde(deserialize_with = "deserialize_duration")]
    pub hold: Duration,
}

impl Default for FlapDamping {
    fn default() -> FlapDamping {
        FlapDamping {
            changes: 3,
            window: Duration::from_secs(3600),
            hold: Duration::from_secs(900),
        }
    }
}

/// A rule: divergences that match, or an SLI below a threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The alert name.
    pub name: String,
    /// For divergence rules: which divergences.
    #[serde(default, rename = "match")]
    pub matches: Option<DivergenceMatch>,
    /// For SLI rules: the SLI (any of [`crate::sli::SLIS`]).
    #[serde(default)]
    pub sli: Option<String>,
    /// For SLI rules: fire while the SLI is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// For SLI rules: fire while the SLI is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// For SLI rules on a facet SLI (`exposure`): only this facet.
    #[serde(default)]
    pub facet: Option<String>,
    /// For SLI rules: only this service (default: every service).
    #[serde(default)]
    pub service: Option<String>,
    /// How long the condition must hold before firing.
    #[serde(default, rename = "for", deserialize_with = "deserialize_duration")]
    pub for_: Duration,
    /// Page or ticket.
    pub severity: Urgency,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations; `{service}`, `{kind}`, `{subjects}`, `{value}` are filled in.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Which divergences a rule matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DivergenceMatch {
    /// Kinds (empty: any).
    pub kinds: Vec<Kind>,
    /// At least this severity (`info`, `warning`, `critical`).
    pub min_severity: Option<Severity>,
    /// Label matchers on the divergence's labels (`service`, `kind`, `member`, `coherd_severity`).
    pub labels: Vec<Matcher>,
}

/// An availability-style SLO on coherence: the share of member-time that is coherent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The service (`*` for every service).
    pub service: String,
    /// For example 0.999.
    pub objective: f64,
    /// The budget period.
    #[serde(default = "thirty_days", deserialize_with = "deserialize_duration")]
    pub period: Duration,
    /// Member-minutes a burn-rate window must hold before it may fire; shorter
    /// windows with less are widened until they hold this much (up to 3 days).
    #[serde(default = "min_events")]
    pub min_events: f64,
    /// The burn-rate alerts: severity, long and short window, factor, `for`
    /// (default: the SRE workbook's 14.4x over 1h/5m and 6x over 6h/30m page,
    /// 1x over 3d/6h tickets).
    #[serde(default = "default_windows")]
    pub windows: Vec<BurnWindow>,
}

fn default_windows() -> Vec<BurnWindow> {
    crate::slo::WINDOWS.to_vec()
}

fn thirty_days() -> Duration {
    Duration::from_secs(30 * 86400)
}

fn min_events() -> f64 {
    100.0
}

/// An inhibition rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inhibit {
    /// Matchers for the muting alert.
    pub source: Vec<Matcher>,
    /// Matchers for the muted alerts.
    pub target: Vec<Matcher>,
    /// Labels that must be equal on both.
    #[serde(default)]
    pub equal: Vec<String>,
}

impl DivergenceMatch {
    /// Whether a divergence of `kind` at `severity`, with these alert labels, matches.
    pub fn matches(&self, kind: Kind, severity: Severity, labels: &crate::Labels) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self.min_severity.is_none_or(|s| severity >= s)
            && crate::matcher::all_match(&self.labels, labels)
    }
}

impl AlertConfig {
    /// Reads YAML; unknown keys and bad values are errors with their path.
    pub fn from_yaml(src: &str) -> Result<AlertConfig, ConfigError> {
        let cfg: AlertConfig = coherd_model::yaml::from_str(src).map_err(ConfigError::Invalid)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for r in &self.rules {
            match (&r.matches, &r.sli) {
                (Some(_), None) if r.below.is_none() && r.above.is_none() && r.facet.is_none() => {}
                (None, Some(s)) => {
                    let Some(def) = crate::sli::lookup(s) else {
                        let names: Vec<&str> = crate::sli::SLIS.iter().map(|d| d.name).collect();
                        return Err(ConfigError::Invalid(format!(
                            "rule {}: sli {s:?} is not an SLI coherd measures; use one of {}",
                            r.name,
                            names.join(", ")
                        )));
                    };
                    if r.below.is_some() == r.above.is_some() {
                        return Err(ConfigError::Invalid(format!(
                            "rule {}: give one of `below` and `above`",
                            r.name
                        )));
                    }
                    if r.facet.is_some() && !def.per_facet {
                        return Err(ConfigError::Invalid(format!(
                            "rule {}: sli {s} is per service, not per facet: remove `facet`",
                            r.name
                        )));
                    }
                }
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "rule {}: give either `match` or `sli` with `below` or `above`",
                        r.name
                    )));
                }
            }
        }
        for s in &self.slos {
            if !(0.0 < s.objective && s.objective < 1.0) {
                return Err(ConfigError::Invalid(format!(
                    "slo {}: objective must be between 0 and 1, like 0.999",
                    s.service
                )));
            }
            crate::slo::check_windows(&s.windows)
                .map_err(|e| ConfigError::Invalid(format!("slo {}: {e}", s.service)))?;
            if let Some(w) = s.windows.iter().find(|w| w.long > s.period) {
                return Err(ConfigError::Invalid(format!(
                    "slo {}: a burn window of {} is longer than the period",
                    s.service,
                    prometheus_duration(w.long)
                )));
            }
        }
        Ok(())
    }

    /// The rules in force: built-in defaults (when on), then the configured ones.
    pub fn effective_rules(&self) -> Vec<Rule> {
        let mut out = if self.defaults {
            default_rules()
        } else {
            Vec::new()
        };
        out.extend(self.rules.iter().cloned());
        out
    }
}

/// The built-in rules: one per row of [`DIVERGENCE_ALERTS`].
pub fn default_rules() -> Vec<Rule> {
    let divergences = DIVERGENCE_ALERTS.iter().map(|a| Rule {
        matches: Some(DivergenceMatch {
            kinds: vec![a.kind],
            min_severity: Some(a.min_severity),
            labels: Vec::new(),
        }),
        ..built_in(
            a.alert,
            a.for_,
            a.urgency,
            [a.summary, "{kind} in {service}: {subjects}", a.runbook],
        )
    });
    let slis = SLI_ALERTS.iter().map(|a| {
        let (below, above) = match a.threshold {
            Threshold::Below(t) => (Some(t), None),
            Threshold::Above(t) => (None, Some(t)),
        };
        Rule {
            sli: Some(a.sli.into()),
            below,
            above,
            ..built_in(a.alert, a.for_, a.urgency, [a.summary, a.why, a.runbook])
        }
    });
    divergences.chain(slis).collect()
}

/// A built-in rule that matches nothing yet: name, `for`, urgency and its
/// summary, description and runbook.
fn built_in(name: &str, for_: Duration, severity: Urgency, text: [&str; 3]) -> Rule {
    let [summary, description, runbook] = text;
    Rule {
        name: name.into(),
        matches: None,
        sli: None,
        below: None,
        above: None,
        facet: None,
        service: None,
        for_,
        severity,
        labels: BTreeMap::new(),
        annotations: BTreeMap::from([
            ("summary".into(), summary.into()),
            ("description".into(), description.into()),
            ("runbook".into(), runbook.into()),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_config_and_refuses_typos() {
        let cfg = AlertConfig::from_yaml(
            "route: {group_by: [service], group_wait: 10s}\nrules:\n  - {name: Low, sli: coherence, below: 0.9, for: 5m, severity: page}\nslos:\n  - {service: checkout, objective: 0.999}\n",
        )
        .unwrap();
        assert_eq!(cfg.route.group_wait, Duration::from_secs(10));
        assert_eq!(cfg.route.group_interval, Duration::from_secs(300));
        assert_eq!(cfg.slos[0].period, Duration::from_secs(30 * 86400));
        assert!(cfg.effective_rules().len() > 10);
        let e = AlertConfig::from_yaml("route: {group_wiat: 10s}\n").unwrap_err();
        assert!(e.to_string().contains("group_wiat"), "{e}");
        let e = AlertConfig::from_yaml(
            "rules:\n  - {name: X, sli: latency, below: 1, severity: page}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("coherence"), "{e}");
    }
}
