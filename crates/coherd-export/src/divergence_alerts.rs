//! One alert per row of coherd's divergence alert table, from
//! `coherd_divergences_open`: the same names, `for`, urgency and labels as the
//! alerts `coherd serve` raises itself.

use coherd_alert::DIVERGENCE_ALERTS;
use coherd_model::time::prometheus_duration;

use crate::rules::{PromRule, RuleGroup, RuleOptions, annotations, matchers};

/// The `coherd-divergences` group.
pub(crate) fn group(opts: &RuleOptions) -> RuleGroup {
    let rules = DIVERGENCE_ALERTS
        .iter()
        .map(|k| {
            let mut own = format!("kind=\"{}\"", k.kind.as_str());
            if k.severities().count() < coherd_model::Severity::ALL.len() {
                let list: Vec<&str> = k.severities().map(|s| s.as_str()).collect();
                own.push_str(&format!(", severity=~\"{}\"", list.join("|")));
            }
            let service = "{{ $labels.service }}";
            PromRule {
                alert: Some(k.alert.into()),
                expr: format!(
                    "sum by (service) (coherd_divergences_open{}) > 0",
                    matchers(opts, &own)
                ),
                for_: Some(prometheus_duration(k.for_)),
                labels: [("severity", k.urgency.as_str()), ("kind", k.kind.as_str())]
                    .into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                annotations: annotations(
                    opts,
                    k.alert,
                    format!(
                        "{service}: {{{{ $value }}}} {} ({})",
                        k.what,
                        k.kind.as_str()
                    ),
                    k.why.into(),
                    k.runbook.replace("{service}", service),
                ),
                ..PromRule::default()
            }
        })
        .collect();
    RuleGroup {
        name: "coherd-divergences".into(),
        interval: None,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_mixed_state_does_not_alert() {
        let g = group(&RuleOptions::default());
        let mixed = g
            .rules
            .iter()
            .find(|r| r.alert.as_deref() == Some("CoherdMixedState"))
            .unwrap();
        assert_eq!(
            mixed.expr,
            "sum by (service) (coherd_divergences_open{kind=\"mixed\", severity=~\"warning|critical\"}) > 0"
        );
    }
}
