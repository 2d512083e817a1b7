//! Divergences from the real engine through the default rules, and SLI rules, on a virtual clock.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::time::Duration;

use coherd_alert::{AlertConfig, Alerting, Notification, SliSample};
use coherd_engine::{Engine, Event};
use coherd_model::{Intent, Limits, Observation, Time};

fn t(secs: u64) -> Time {
    let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
    t0.add(Duration::from_secs(secs))
}

fn obs(json: &str) -> Observation {
    Observation::from_json(json, &Limits::default()).unwrap()
}

/// Feeds engine events to alerting, then runs alerting's deadlines to `until`.
fn pump(
    engine: &mut Engine,
    alerting: &mut Alerting,
    now: Time,
    until: Time,
    out: &mut Vec<Notification>,
) {
    while let Some(e) = engine.poll_event() {
        if let Event::Divergence { index, .. } = e {
            alerting.on_divergence(now, &engine.divergences()[index].clone());
        }
    }
    while let Some(next) = alerting.poll_timeout() {
        if next > until {
            break;
        }
        alerting.handle_timeout(next);
        out.extend(std::iter::from_fn(|| alerting.poll_notification()));
    }
}

#[test]
fn a_split_brain_pages_after_group_wait_and_resolves() {
    let mut engine = Engine::default();
    engine.set_intent(t(0), Intent::from_yaml("services:\n  api:\n    report_interval: 1h\n    leases:\n      leader: {exclusive: true}\n").unwrap());
    let mut alerting = Alerting::new(AlertConfig::default());
    let mut out = Vec::new();
    let lease = |m: &str, epoch: u32| {
        obs(&format!(
            r#"{{"service":"api","member":"{m}","leases":[{{"resource":"leader","epoch":{epoch},"expires":"2026-11-22T08:01:00Z"}}]}}"#
        ))
    };
    engine.observe(t(0), &lease("a", 1)).unwrap();
    engine.observe(t(5), &lease("b", 2)).unwrap();
    pump(&mut engine, &mut alerting, t(5), t(100), &mut out);
    let names: Vec<String> = out[0]
        .alerts
        .iter()
        .map(|a| a.labels["alertname"].clone())
        .collect();
    assert_eq!(out[0].at, t(35), "group_wait after the opening");
    assert!(
        names.contains(&"CoherdSplitBrain".to_string())
            && names.contains(&"CoherdStaleEpoch".to_string()),
        "{names:?}"
    );
    assert!(out[0].alerts.iter().all(|a| a.labels["severity"] == "page"));
    // b stops holding: both resolve, notified at the next group tick.
    engine
        .observe(t(200), &obs(r#"{"service":"api","member":"b"}"#))
        .unwrap();
    out.clear();
    pump(&mut engine, &mut alerting, t(200), t(1000), &mut out);
    assert_eq!(out[0].status, "resolved", "{out:#?}");
    assert_eq!(out[0].at, t(335));
}

#[test]
fn foreign_drift_waits_its_for_before_paging() {
    let mut engine = Engine::default();
    engine.set_intent(t(0), Intent::from_yaml("services:\n  api:\n    report_interval: 1h\n    facets:\n      version: {target: \"2\"}\n").unwrap());
    let mut alerting = Alerting::new(AlertConfig::default());
    let mut out = Vec::new();
    engine
        .observe(
            t(0),
            &obs(r#"{"service":"api","member":"a","facets":{"version":"9"}}"#),
        )
        .unwrap();
    pump(&mut engine, &mut alerting, t(0), t(299), &mut out);
    assert!(out.is_empty(), "for: 5m not yet passed");
    pump(&mut engine, &mut alerting, t(0), t(400), &mut out);
    assert_eq!(out[0].at, t(330), "fires at 300 s, sent after group_wait");
    let a = &out[0].alerts[0];
    assert_eq!(
        (
            a.labels["alertname"].as_str(),
            a.labels["member"].as_str(),
            a.starts_at
        ),
        ("CoherdForeignDrift", "a", t(300))
    );
}

/// A coherence sample, completeness full.
fn coherence(value: Option<f64>) -> Vec<SliSample> {
    vec![
        SliSample {
            sli: "coherence",
            facet: None,
            value,
        },
        SliSample {
            sli: "telemetry_completeness",
            facet: None,
            value: value.map(|_| 1.0),
        },
    ]
}

#[test]
fn an_sli_rule_fires_after_for_and_holds_without_telemetry() {
    let cfg = AlertConfig::from_yaml("defaults: false\nroute: {group_wait: 0s}\nrules:\n  - {name: LowCoherence, sli: coherence, below: 0.9, for: 1m, severity: ticket}\n").unwrap();
    let mut alerting = Alerting::new(cfg);
    let mut out = Vec::new();
    for s in (0..=120).step_by(10) {
        alerting.on_sli(t(s), "api", &coherence(Some(0.5)), 10);
        alerting.handle_timeout(t(s));
        out.extend(std::iter::from_fn(|| alerting.poll_notification()));
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].at, t(60));
    // Telemetry disappears: nothing resolves.
    alerting.on_sli(t(130), "api", &coherence(None), 0);
    alerting.handle_timeout(t(2000));
    assert!(std::iter::from_fn(|| alerting.poll_notification()).all(|n| n.status == "firing"));
}

/// Every SLI of DESIGN 4 may be alerted on, above or below a threshold, per
/// facet for facet SLIs; an unknown SLI or a rule with both sides is refused.
#[test]
fn threshold_rules_work_on_every_sli_and_per_facet() {
    let cfg = AlertConfig::from_yaml("defaults: false\nroute: {group_wait: 0s}\nrules:\n  - {name: Drains, sli: drain_failure_rate, above: 0.005, for: 0s, severity: ticket}\n  - {name: Exposed, sli: exposure_unapproved, facet: version, above: 0.01, for: 0s, severity: page}\n").unwrap();
    let mut alerting = Alerting::new(cfg);
    let sample = |sli: &'static str, facet: Option<&str>, value: f64| SliSample {
        sli,
        facet: facet.map(String::from),
        value: Some(value),
    };
    let samples = [
        sample("drain_failure_rate", None, 0.02),
        sample("exposure_unapproved", Some("version"), 0.05),
        sample("exposure_unapproved", Some("config"), 0.5),
    ];
    alerting.on_sli(t(0), "api", &samples, 10);
    alerting.handle_timeout(t(1));
    let fired: Vec<Notification> = std::iter::from_fn(|| alerting.poll_notification()).collect();
    let mut names: Vec<(String, Option<String>)> = fired
        .iter()
        .flat_map(|n| n.alerts.iter())
        .map(|a| {
            (
                a.labels["alertname"].clone(),
                a.labels.get("facet").cloned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("Drains".to_string(), None),
            ("Exposed".to_string(), Some("version".to_string()))
        ]
    );
    // No requests left in the window, and the facet no longer targeted: both
    // resolve (as the exported rules do when their series is gone).
    let quiet = [SliSample {
        sli: "drain_failure_rate",
        facet: None,
        value: None,
    }];
    alerting.on_sli(t(10), "api", &quiet, 10);
    // Resolutions go out at the group's next flush (group_interval, 5m).
    alerting.handle_timeout(t(400));
    let resolved: Vec<String> = std::iter::from_fn(|| alerting.poll_notification())
        .flat_map(|n| n.alerts)
        .filter(|a| !a.is_firing())
        .map(|a| a.labels["alertname"].clone())
        .collect();
    assert!(resolved.contains(&"Drains".to_string()), "{resolved:?}");
    assert!(resolved.contains(&"Exposed".to_string()), "{resolved:?}");
    for (yaml, words) in [
        (
            "{name: X, sli: latency, above: 1, severity: ticket}",
            "not an SLI coherd measures",
        ),
        (
            "{name: X, sli: error_rate, above: 1, below: 0, severity: ticket}",
            "one of `below` and `above`",
        ),
        (
            "{name: X, sli: error_rate, facet: version, above: 1, severity: ticket}",
            "per service, not per facet",
        ),
    ] {
        let err = AlertConfig::from_yaml(&format!("rules:\n  - {yaml}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(words), "{yaml}: {err}");
    }
}

#[test]
fn a_burn_rate_alert_fires_and_clears_on_a_synthetic_history() {
    let cfg = AlertConfig::from_yaml("defaults: false\nroute: {group_wait: 0s, group_interval: 1m}\nslos:\n  - {service: api, objective: 0.999}\n").unwrap();
    let mut alerting = Alerting::new(cfg);
    let mut out: Vec<Notification> = Vec::new();
    let feed = |alerting: &mut Alerting,
                from: u64,
                to: u64,
                coherence: f64,
                out: &mut Vec<Notification>| {
        for m in from..to {
            alerting.on_sli(t(m * 60), "api", &self::coherence(Some(coherence)), 100);
            alerting.handle_timeout(t(m * 60));
            out.extend(std::iter::from_fn(|| alerting.poll_notification()));
        }
    };
    feed(&mut alerting, 0, 120, 1.0, &mut out);
    assert!(out.is_empty());
    feed(&mut alerting, 120, 150, 0.9, &mut out);
    let windows: Vec<(&str, &str)> = out
        .iter()
        .flat_map(|n| &n.alerts)
        .filter(|a| {
            a.labels["alertname"] == "CoherdCoherenceBudgetBurn"
                && a.labels["severity"] == "page"
                && a.is_firing()
        })
        .map(|a| {
            (
                a.labels["long_window"].as_str(),
                a.labels["short_window"].as_str(),
            )
        })
        .collect();
    assert!(
        windows.contains(&("1h", "5m")) && windows.contains(&("6h", "30m")),
        "a fast burn pages on both page windows once their `for` passed: {windows:?}"
    );
    out.clear();
    feed(&mut alerting, 150, 165, 1.0, &mut out);
    assert!(
        out.iter()
            .any(|n| n.status == "resolved" || n.alerts.iter().any(|a| !a.is_firing())),
        "{out:#?}"
    );
}

#[test]
fn burn_windows_are_checked() {
    for (windows, words) in [
        (
            "[{severity: page, long: 1h, short: 5m, factor: 14.4}, {severity: page, long: 1h, short: 5m, factor: 10}]",
            "given twice",
        ),
        (
            "[{severity: page, long: 5m, short: 1h, factor: 2}]",
            "shorter than the long one",
        ),
        (
            "[{severity: ticket, long: 3d, short: 6h, factor: 1}]",
            "longer than the period",
        ),
    ] {
        let yaml = format!(
            "slos:\n  - {{service: api, objective: 0.99, period: 1d, windows: {windows}}}\n"
        );
        let err = AlertConfig::from_yaml(&yaml).unwrap_err().to_string();
        assert!(err.contains(words), "{windows}: {err}");
    }
}
