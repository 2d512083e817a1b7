//! A small YAML writer for rule files: block mappings and lists, every
//! string double-quoted with JSON escapes (a JSON string is a valid YAML
//! double-quoted scalar), so no PromQL or template text needs special care.

use crate::rules::{PromRule, RuleGroup};

/// A string as a YAML double-quoted scalar.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// Renders rule groups as a Prometheus rule file.
pub(crate) fn rule_file(header: &str, groups: &[RuleGroup]) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    out.push_str("groups:\n");
    for g in groups {
        out.push_str(&format!("  - name: {}\n", quote(&g.name)));
        if let Some(i) = &g.interval {
            out.push_str(&format!("    interval: {i}\n"));
        }
        out.push_str("    rules:\n");
        for r in &g.rules {
            rule(&mut out, r);
        }
    }
    out
}

fn rule(out: &mut String, r: &PromRule) {
    match (&r.record, &r.alert) {
        (Some(name), _) => out.push_str(&format!("      - record: {name}\n")),
        (None, Some(name)) => out.push_str(&format!("      - alert: {name}\n")),
        (None, None) => return,
    }
    out.push_str(&format!("        expr: {}\n", quote(&r.expr)));
    if let Some(f) = &r.for_ {
        out.push_str(&format!("        for: {f}\n"));
    }
    for (key, map) in [("labels", &r.labels), ("annotations", &r.annotations)] {
        if map.is_empty() {
            continue;
        }
        out.push_str(&format!("        {key}:\n"));
        for (k, v) in map {
            out.push_str(&format!("          {k}: {}\n", quote(v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn quotes_promql_and_templates() {
        let g = RuleGroup {
            name: "g".into(),
            interval: None,
            rules: vec![PromRule {
                record: None,
                alert: Some("A".into()),
                expr: "sum by (service) (x{kind=\"drift\"}) > 0".into(),
                for_: Some("5m".into()),
                labels: BTreeMap::from([("severity".into(), "page".into())]),
                annotations: BTreeMap::from([(
                    "summary".into(),
                    "{{ $labels.service }}: \"drift\"\nnext".into(),
                )]),
            }],
        };
        let y = rule_file("coherd rules\n\nsecond", &[g]);
        assert_eq!(
            y,
            "# coherd rules\n#\n# second\ngroups:\n  - name: \"g\"\n    rules:\n      - alert: A\n        expr: \"sum by (service) (x{kind=\\\"drift\\\"}) > 0\"\n        for: 5m\n        labels:\n          severity: \"page\"\n        annotations:\n          summary: \"{{ $labels.service }}: \\\"drift\\\"\\nnext\"\n"
        );
    }
}
