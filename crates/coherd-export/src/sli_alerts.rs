//! One alert per row of coherd's SLI alert table, from the gauge that carries
//! each SLI: the same names, thresholds, `for`, urgency and labels as the
//! alerts `coherd serve` raises itself.

use coherd_alert::{SLI_ALERTS, sli};
use coherd_model::time::prometheus_duration;

use crate::rules::{PromRule, RuleGroup, RuleOptions, annotations, matchers};

/// The `coherd-slis` group.
pub(crate) fn group(opts: &RuleOptions) -> RuleGroup {
    let rules = SLI_ALERTS
        .iter()
        .map(|a| {
            let def = sli::lookup(a.sli).expect("the table names known SLIs");
            let own = def
                .window
                .map(|w| format!("window=\"{w}\""))
                .unwrap_or_default();
            let by = if def.per_facet {
                "service, facet"
            } else {
                "service"
            };
            let service = "{{ $labels.service }}";
            PromRule {
                alert: Some(a.alert.into()),
                expr: format!(
                    "max by ({by}) ({}{}) {}",
                    def.metric,
                    matchers(opts, &own),
                    a.threshold.promql()
                ),
                for_: Some(prometheus_duration(a.for_)),
                labels: [("severity", a.urgency.as_str()), ("sli", a.sli)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                annotations: annotations(
                    opts,
                    a.alert,
                    format!(
                        "{}: {} is {{{{ $value }}}}, {}",
                        a.summary.replace("{service}", service),
                        a.sli,
                        a.threshold.words()
                    ),
                    a.why.into(),
                    a.runbook.replace("{service}", service),
                ),
                ..PromRule::default()
            }
        })
        .collect();
    RuleGroup {
        name: "coherd-slis".into(),
        interval: None,
        rules,
    }
}
