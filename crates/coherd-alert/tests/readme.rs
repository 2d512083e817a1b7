//! The README's table of built-in alerts is the code's table, row for row.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use coherd_alert::{DIVERGENCE_ALERTS, SLI_ALERTS};
use coherd_model::Severity;
use coherd_model::time::prometheus_duration;

#[test]
fn the_readme_lists_every_built_in_alert_as_the_code_defines_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    let rows: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `Coherd"))
        .map(String::from)
        .collect();
    let divergences = DIVERGENCE_ALERTS.iter().map(|a| {
        let which = match a.min_severity {
            Severity::Info => format!("`{}`", a.kind),
            Severity::Warning => format!("`{}`, warning or critical", a.kind),
            Severity::Critical => format!("`{}`, critical", a.kind),
        };
        format!(
            "| `{}` | {which} | {} | {} |",
            a.alert,
            a.urgency.as_str(),
            prometheus_duration(a.for_)
        )
    });
    let slis = SLI_ALERTS.iter().map(|a| {
        format!(
            "| `{}` | `{}` {} | {} | {} |",
            a.alert,
            a.sli,
            a.threshold.words(),
            a.urgency.as_str(),
            prometheus_duration(a.for_)
        )
    });
    let expected: Vec<String> = divergences.chain(slis).collect();
    assert_eq!(rows, expected);
}
