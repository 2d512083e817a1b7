//! Prometheus recording and alerting rules over coherd's metrics.
//!
//! The coherence SLO reads `coherd_coherence_ratio`, the share of a
//! service's known members that are coherent now. Its time average over a
//! window is the share of member-time spent coherent (exact while the member
//! count holds still, close when it changes slowly), so the error ratio over a
//! window is `1 - avg_over_time(coherd_coherence_ratio[w])` and the burn rate
//! is that over the error budget `1 - objective`.
//!
//! Alerts follow the multiwindow multi-burn-rate scheme of the Google SRE
//! workbook (chapter 5): a page when the budget burns 14.4 times too fast over
//! both 1h and 5m, or 6 times over both 6h and 30m; a ticket at 1 time over
//! both 3d and 6h. The long window makes the alert significant, the short one
//! makes it resolve soon after the burn stops.

use std::collections::BTreeMap;
use std::time::Duration;

use coherd_alert::slo::{BURN_ALERT, BurnWindow};
use coherd_model::time::prometheus_duration;

use crate::ExportError;

/// What the rules are built for.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOptions {
    /// The coherence objective: the share of member-time coherent, e.g. 0.999.
    pub slo: f64,
    /// The SLO period in days (the error budget's window).
    pub period_days: u32,
    /// Extra label matchers for coherd's series, e.g. `job="coherd"`; empty for none.
    pub selector: String,
    /// A base URL for runbooks; each alert links to `<base>#<alert name in lower case>`.
    pub runbook_url: Option<String>,
    /// The burn-rate alerts (as an SLO of `coherd serve`'s config gives them).
    pub windows: Vec<BurnWindow>,
}

impl Default for RuleOptions {
    fn default() -> RuleOptions {
        RuleOptions {
            slo: 0.999,
            period_days: 30,
            selector: String::new(),
            runbook_url: None,
            windows: coherd_alert::slo::WINDOWS.to_vec(),
        }
    }
}

/// One rule group of a Prometheus rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Evaluation interval, when not the global one.
    pub interval: Option<String>,
    /// Rules, evaluated in order.
    pub rules: Vec<PromRule>,
}

/// One recording or alerting rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromRule {
    /// The series a recording rule writes.
    pub record: Option<String>,
    /// The name of an alerting rule.
    pub alert: Option<String>,
    /// PromQL.
    pub expr: String,
    /// How long the condition must hold before the alert fires.
    pub for_: Option<String>,
    /// Labels added to the result.
    pub labels: BTreeMap<String, String>,
    /// Alert annotations (summary, description, runbook).
    pub annotations: BTreeMap<String, String>,
}

/// The windows the error ratio and burn rate are always recorded over (the
/// dashboards read them); the burn windows' own are added.
const RECORDED: [Duration; 5] = [
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(3 * 86400),
];

/// Up to this, a window's error ratio is taken from the raw gauge; longer
/// ones average the recorded hourly ratio (cheap, at most an hour behind).
const RAW_UP_TO: Duration = Duration::from_secs(6 * 3600);

/// Every window recorded, shortest first.
fn recorded_windows(opts: &RuleOptions) -> Vec<Duration> {
    let mut all: Vec<Duration> = RECORDED
        .into_iter()
        .chain(opts.windows.iter().flat_map(|w| [w.long, w.short]))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// A number as PromQL and YAML show it, without float noise (0.0010000000000000009 is 0.001).
pub fn number(x: f64) -> String {
    let s = format!("{x:.12}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn check(opts: &RuleOptions) -> Result<(), ExportError> {
    if !(opts.slo > 0.0 && opts.slo < 1.0) {
        return Err(ExportError::Objective(opts.slo));
    }
    if !(7..=365).contains(&opts.period_days) {
        return Err(ExportError::Period(opts.period_days));
    }
    let sel = opts.selector.trim();
    let ok = sel.is_empty()
        || (!sel.contains(['{', '}'])
            && sel.split(',').all(|m| {
                let m = m.trim();
                let Some(i) = m.find(['=', '!']) else {
                    return false;
                };
                let (name, rest) = m.split_at(i);
                let value = rest.trim_start_matches(['=', '!', '~']);
                !name.trim().is_empty()
                    && name
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && value.len() >= 2
                    && value.starts_with('"')
                    && value.ends_with('"')
            }));
    if ok {
        Ok(())
    } else {
        Err(ExportError::Selector(opts.selector.clone()))
    }
}

/// A selector body: the given matchers plus the options' selector.
pub(crate) fn matchers(opts: &RuleOptions, own: &str) -> String {
    let parts: Vec<&str> = [own, opts.selector.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(", "))
    }
}

/// Annotations with the runbook hint and, when a base is given, its link.
pub(crate) fn annotations(
    opts: &RuleOptions,
    alert: &str,
    summary: String,
    description: String,
    runbook: String,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("summary".to_string(), summary),
        ("description".to_string(), description),
        ("runbook".to_string(), runbook),
    ]);
    if let Some(base) = &opts.runbook_url {
        a.insert(
            "runbook_url".to_string(),
            format!("{base}#{}", alert.to_ascii_lowercase()),
        );
    }
    a
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every rule group: the SLO recordings, the burn-rate alerts, one alert per
/// divergence kind, one per SLI threshold, and coherd's own health.
pub fn prometheus_rules(opts: &RuleOptions) -> Result<Vec<RuleGroup>, ExportError> {
    check(opts)?;
    Ok(vec![
        slo_recordings(opts),
        burn_alerts(opts),
        crate::divergence_alerts::group(opts),
        crate::sli_alerts::group(opts),
        health_alerts(opts),
    ])
}

/// The rule file's text, with a header saying what it holds.
pub fn to_yaml(groups: &[RuleGroup]) -> String {
    crate::yaml::rule_file(
        "Prometheus rules over coherd's metrics, written by `coherd rules export --format prometheus`.\n\
         Check them with `promtool check rules`; regenerate rather than edit.",
        groups,
    )
}

fn slo_recordings(opts: &RuleOptions) -> RuleGroup {
    let budget = number(1.0 - opts.slo);
    let slo_labels = labels(&[("slo", "coherence"), ("objective", &number(opts.slo))]);
    let mut rules = Vec::new();
    let period = format!("{}d", opts.period_days);
    let windows = recorded_windows(opts);
    for &w in windows.iter().filter(|&&w| w <= RAW_UP_TO) {
        let w = prometheus_duration(w);
        rules.push(PromRule {
            record: Some(format!("coherd:coherence_error_ratio:avg{w}")),
            expr: format!(
                "1 - avg_over_time(coherd_coherence_ratio{}[{w}])",
                matchers(opts, "")
            ),
            ..PromRule::default()
        });
    }
    let long = windows
        .iter()
        .filter(|&&w| w > RAW_UP_TO)
        .map(|&w| prometheus_duration(w));
    for w in long.chain([period.clone()]) {
        rules.push(PromRule {
            record: Some(format!("coherd:coherence_error_ratio:avg{w}")),
            expr: format!(
                "avg_over_time(coherd:coherence_error_ratio:avg1h{}[{w}])",
                matchers(opts, "")
            ),
            ..PromRule::default()
        });
    }
    for &w in &windows {
        let w = prometheus_duration(w);
        rules.push(PromRule {
            record: Some(format!("coherd:coherence_burn_rate:{w}")),
            expr: format!("coherd:coherence_error_ratio:avg{w} / {budget}"),
            labels: slo_labels.clone(),
            ..PromRule::default()
        });
    }
    let mut remaining = slo_labels;
    remaining.insert("period".into(), period.clone());
    rules.push(PromRule {
        record: Some("coherd:coherence_error_budget:remaining_ratio".into()),
        expr: format!("1 - coherd:coherence_error_ratio:avg{period} / {budget}"),
        labels: remaining,
        ..PromRule::default()
    });
    RuleGroup {
        name: "coherd-coherence-slo".into(),
        interval: None,
        rules,
    }
}

fn burn_alerts(opts: &RuleOptions) -> RuleGroup {
    let slo_pct = number(opts.slo * 100.0);
    let period = format!("{}d", opts.period_days);
    let rules = opts
        .windows
        .iter()
        .map(|w| {
            let f = number(w.factor);
            let (long, short) = (prometheus_duration(w.long), prometheus_duration(w.short));
            let (long, short) = (long.as_str(), short.as_str());
            let factor = w.factor;
            let name = BURN_ALERT;
            PromRule {
                alert: Some(name.into()),
                expr: format!(
                    "coherd:coherence_burn_rate:{long} > {f} and coherd:coherence_burn_rate:{short} > {f}"
                ),
                for_: Some(prometheus_duration(w.for_)),
                labels: labels(&[
                    ("severity", w.severity.as_str()),
                    ("slo", "coherence"),
                    ("long_window", long),
                    ("short_window", short),
                ]),
                annotations: annotations(
                    opts,
                    name,
                    format!(
                        "{{{{ $labels.service }}}} burns its coherence error budget more than {f}x too fast over {long} and {short}"
                    ),
                    format!(
                        "The coherence SLO of {{{{ $labels.service }}}} is {slo_pct}% of member-time over {period}. \
                         Over the last {long}, and still over the last {short}, members were incoherent {f} times \
                         as often as the budget allows; at this rate the {period} budget is gone in {} hours.",
                        number((opts.period_days as f64 * 24.0 / factor).round())
                    ),
                    "Run `coherd divergences --service {{ $labels.service }}` and `coherd status` to see which \
                     members are incoherent and why (drift, silent, phase problems); a rollout in progress shows as \
                     converging, a stalled one as lagging."
                        .into(),
                ),
                ..PromRule::default()
            }
        })
        .collect();
    RuleGroup {
        name: "coherd-coherence-burn".into(),
        interval: None,
        rules,
    }
}

fn health_alerts(opts: &RuleOptions) -> RuleGroup {
    let absent = "CoherdMetricsAbsent";
    RuleGroup {
        name: "coherd-health".into(),
        interval: None,
        rules: vec![
            PromRule {
                alert: Some(absent.into()),
                expr: format!("absent(coherd_ingest_observations_total{})", matchers(opts, "")),
                for_: Some("10m".into()),
                labels: labels(&[("severity", "page")]),
                annotations: annotations(
                    opts,
                    absent,
                    "coherd's metrics are gone: coherence alerts are blind".into(),
                    "No coherd instance has been scraped for 10 minutes, so no coherence or divergence alert can fire."
                        .into(),
                    "Check that `coherd serve` runs (`/healthz`, `/readyz`) and that Prometheus can scrape its /metrics \
                     (the read token, the listen address)."
                        .into(),
                ),
                ..PromRule::default()
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_float_noise() {
        assert_eq!(number(1.0 - 0.999), "0.001");
        assert_eq!(number(14.4), "14.4");
        assert_eq!(number(6.0), "6");
        assert_eq!(number(0.999 * 100.0), "99.9");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn options_are_checked() {
        let bad = |o: RuleOptions| prometheus_rules(&o).unwrap_err();
        assert_eq!(
            bad(RuleOptions {
                slo: 1.0,
                ..RuleOptions::default()
            }),
            ExportError::Objective(1.0)
        );
        assert_eq!(
            bad(RuleOptions {
                period_days: 1,
                ..RuleOptions::default()
            }),
            ExportError::Period(1)
        );
        assert!(matches!(
            bad(RuleOptions {
                selector: "{job=\"x\"}".into(),
                ..RuleOptions::default()
            }),
            ExportError::Selector(_)
        ));
        let ok = RuleOptions {
            selector: "job=\"coherd\", env=~\"prod.*\"".into(),
            ..RuleOptions::default()
        };
        let yaml = to_yaml(&prometheus_rules(&ok).unwrap());
        assert!(yaml.contains(r#"coherd_coherence_ratio{job=\"coherd\", env=~\"prod.*\"}[5m]"#));
    }

    #[test]
    fn burn_thresholds_follow_the_objective() {
        let groups = prometheus_rules(&RuleOptions {
            slo: 0.99,
            ..RuleOptions::default()
        })
        .unwrap();
        let burn = &groups[0]
            .rules
            .iter()
            .find(|r| r.record.as_deref() == Some("coherd:coherence_burn_rate:1h"))
            .unwrap();
        assert_eq!(burn.expr, "coherd:coherence_error_ratio:avg1h / 0.01");
        let alerts: Vec<&PromRule> = groups[1].rules.iter().collect();
        assert_eq!(alerts.len(), 3);
        assert!(
            alerts[0]
                .expr
                .contains("coherd:coherence_burn_rate:1h > 14.4")
        );
        assert!(
            alerts[0]
                .expr
                .contains("coherd:coherence_burn_rate:5m > 14.4")
        );
        assert_eq!(alerts[2].labels["severity"], "ticket");
        assert!(alerts[2].expr.contains(":3d > 1 and"));
    }

    #[test]
    fn runbook_links_when_a_base_is_given() {
        let groups = prometheus_rules(&RuleOptions {
            runbook_url: Some("https://runbooks.example/coherd".into()),
            ..RuleOptions::default()
        })
        .unwrap();
        let a = &groups
            .iter()
            .find(|g| g.name == "coherd-health")
            .unwrap()
            .rules[0];
        assert_eq!(
            a.annotations["runbook_url"],
            "https://runbooks.example/coherd#coherdmetricsabsent"
        );
    }
}
