//! The alerts `coherd serve` raises itself and the Prometheus rules `coherd
//! rules export` writes come from one table; this pins that they agree for
//! every kind and severity: the same alert names, `for`, urgency and labels.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::collections::BTreeSet;

use coherd_alert::config::default_rules;
use coherd_alert::{Labels, Urgency};
use coherd_export::rules::{RuleOptions, prometheus_rules};
use coherd_model::{Kind, Severity};

/// (alert name, urgency, for) of every alert a divergence would raise.
type Raised = BTreeSet<(String, String, String)>;

fn built_in(kind: Kind, severity: Severity) -> Raised {
    default_rules()
        .into_iter()
        .filter(|r| {
            r.matches
                .as_ref()
                .is_some_and(|m| m.matches(kind, severity, &Labels::new()))
        })
        .map(|r| {
            (
                r.name,
                r.severity.as_str().to_string(),
                coherd_model::time::prometheus_duration(r.for_),
            )
        })
        .collect()
}

/// The value of `name="v"` or `name=~"a|b"` in a PromQL selector.
fn selector_values(expr: &str, name: &str) -> Option<Vec<String>> {
    let (_, rest) = expr.split_once(&format!("{name}="))?;
    let rest = rest.strip_prefix('~').unwrap_or(rest);
    let value = rest.strip_prefix('"')?.split('"').next()?;
    Some(value.split('|').map(String::from).collect())
}

fn exported(kind: Kind, severity: Severity) -> Raised {
    let groups = prometheus_rules(&RuleOptions::default()).unwrap();
    let group = groups
        .iter()
        .find(|g| g.name == "coherd-divergences")
        .unwrap();
    group
        .rules
        .iter()
        .filter(|r| {
            let kinds = selector_values(&r.expr, "kind").expect("a kind matcher");
            let severities = selector_values(&r.expr, "severity");
            kinds.iter().any(|k| k == kind.as_str())
                && severities.is_none_or(|s| s.iter().any(|s| s == severity.as_str()))
        })
        .map(|r| {
            assert_eq!(r.labels["kind"], kind.as_str(), "{r:?}");
            (
                r.alert.clone().unwrap(),
                r.labels["severity"].clone(),
                r.for_.clone().unwrap(),
            )
        })
        .collect()
}

#[test]
fn exported_rules_and_built_in_alerts_agree_for_every_kind_and_severity() {
    for kind in Kind::ALL {
        let mut alerted = false;
        for severity in Severity::ALL {
            let (ours, theirs) = (built_in(kind, severity), exported(kind, severity));
            assert_eq!(ours, theirs, "{kind} at {severity}");
            alerted |= !ours.is_empty();
        }
        assert!(alerted, "{kind} never alerts");
    }
}

#[test]
fn critical_correctness_problems_page_at_once() {
    for kind in [Kind::SplitBrain, Kind::StaleEpoch, Kind::ReplicaDivergence] {
        let raised = built_in(kind, Severity::Critical);
        assert!(
            raised
                .iter()
                .any(|(_, urgency, for_)| urgency == Urgency::Page.as_str() && for_ == "0s"),
            "{kind}: {raised:?}"
        );
    }
}

/// Every SLI threshold alert: the built-in rule and the exported Prometheus
/// rule have the same name, urgency, `for`, SLI and threshold, and the
/// exported one reads the gauge that carries that SLI.
#[test]
fn exported_rules_and_built_in_alerts_agree_for_every_sli_threshold() {
    let groups = prometheus_rules(&RuleOptions::default()).unwrap();
    let exported = &groups
        .iter()
        .find(|g| g.name == "coherd-slis")
        .expect("the SLI group")
        .rules;
    let built_in: Vec<_> = default_rules()
        .into_iter()
        .filter(|r| r.sli.is_some())
        .collect();
    assert_eq!(exported.len(), coherd_alert::SLI_ALERTS.len());
    assert_eq!(built_in.len(), coherd_alert::SLI_ALERTS.len());
    for (ours, theirs) in built_in.iter().zip(exported) {
        let sli = ours.sli.as_deref().unwrap();
        let def = coherd_alert::sli::lookup(sli).expect("a known SLI");
        assert_eq!(Some(ours.name.as_str()), theirs.alert.as_deref());
        assert_eq!(ours.severity.as_str(), theirs.labels["severity"]);
        assert_eq!(sli, theirs.labels["sli"]);
        assert_eq!(
            coherd_model::time::prometheus_duration(ours.for_),
            theirs.for_.clone().unwrap()
        );
        let threshold = match (ours.below, ours.above) {
            (Some(t), None) => format!("< {t}"),
            (None, Some(t)) => format!("> {t}"),
            other => panic!("{}: {other:?}", ours.name),
        };
        assert!(
            theirs.expr.ends_with(&threshold),
            "{} vs {threshold}",
            theirs.expr
        );
        assert!(theirs.expr.contains(def.metric), "{}", theirs.expr);
    }
}

/// The burn-rate alerts: the built-in ones and the exported ones have the
/// same name, `for`, severity and labels, for the default windows and for
/// windows a config gives.
#[test]
fn exported_and_built_in_burn_rate_alerts_agree() {
    use coherd_alert::config::Urgency as U;
    use coherd_alert::slo::{BurnWindow, WINDOWS, burn_labels};
    use std::time::Duration;
    let custom = vec![BurnWindow {
        severity: U::Page,
        long: Duration::from_secs(7200),
        short: Duration::from_secs(600),
        factor: 10.0,
        for_: Duration::from_secs(300),
    }];
    for windows in [WINDOWS.to_vec(), custom] {
        let opts = RuleOptions {
            windows: windows.clone(),
            ..RuleOptions::default()
        };
        let groups = prometheus_rules(&opts).unwrap();
        let burn = &groups
            .iter()
            .find(|g| g.name == "coherd-coherence-burn")
            .unwrap()
            .rules;
        assert_eq!(burn.len(), windows.len());
        for (w, rule) in windows.iter().zip(burn) {
            let mut ours = burn_labels("svc", w);
            assert_eq!(ours.remove("alertname").as_deref(), rule.alert.as_deref());
            ours.remove("service"); // from the series
            let theirs: Labels = rule
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(ours, theirs);
            assert_eq!(
                coherd_model::time::prometheus_duration(w.for_),
                rule.for_.clone().unwrap()
            );
        }
    }
}
