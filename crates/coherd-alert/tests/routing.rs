//! Alertmanager routing semantics on a virtual clock.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::time::Duration;

use coherd_alert::config::{FlapDamping, Inhibit, Route};
use coherd_alert::{Alert, Labels, Matcher, Notification, Router, Silence};
use coherd_model::Time;

fn t(secs: u64) -> Time {
    let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
    t0.add(Duration::from_secs(secs))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn alert(pairs: &[(&str, &str)], at: u64) -> Alert {
    Alert {
        labels: labels(pairs),
        annotations: Labels::new(),
        starts_at: t(at),
        ends_at: None,
    }
}

fn route() -> Route {
    Route {
        group_by: vec!["service".into()],
        group_wait: Duration::from_secs(30),
        group_interval: Duration::from_secs(300),
        repeat_interval: Duration::from_secs(3600),
        send_resolved: true,
        receiver: "test".into(),
    }
}

fn router() -> Router {
    let inhibit = vec![Inhibit {
        source: vec![Matcher::parse("kind=silent").unwrap()],
        target: vec![Matcher::parse("kind=drift").unwrap()],
        equal: vec!["service".into(), "member".into()],
    }];
    Router::new(
        route(),
        FlapDamping {
            changes: 2,
            window: Duration::from_secs(3600),
            hold: Duration::from_secs(600),
        },
        inhibit,
    )
}

/// Runs the router to `until`, collecting every notification with its time.
fn run(r: &mut Router, until: u64) -> Vec<Notification> {
    let mut out = Vec::new();
    while let Some(next) = r.poll_timeout() {
        if next > t(until) {
            break;
        }
        r.handle_timeout(next);
        while let Some(n) = r.poll_notification() {
            out.push(n);
        }
    }
    out
}

fn names(n: &Notification) -> Vec<(String, bool)> {
    n.alerts
        .iter()
        .map(|a| (a.labels["member"].clone(), a.is_firing()))
        .collect()
}

#[test]
fn group_wait_batches_the_first_alerts_of_a_group() {
    let mut r = router();
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0),
    );
    r.fire(
        t(10),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m2")], 10),
    );
    r.fire(
        t(10),
        alert(&[("service", "b"), ("kind", "drift"), ("member", "m9")], 10),
    );
    let out = run(&mut r, 100);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].at, out[0].group_labels["service"].as_str()),
        (t(30), "a")
    );
    assert_eq!(names(&out[0]), [("m1".into(), true), ("m2".into(), true)]);
    assert_eq!(out[1].at, t(40), "group b waits its own group_wait");
}

#[test]
fn changes_wait_for_group_interval_and_unchanged_groups_repeat() {
    let mut r = router();
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0),
    );
    assert_eq!(run(&mut r, 31).len(), 1);
    r.fire(
        t(60),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m2")], 60),
    );
    let out = run(&mut r, 400);
    assert_eq!(
        out.len(),
        1,
        "one notification at the next group_interval tick"
    );
    assert_eq!(out[0].at, t(330));
    assert_eq!(out[0].alerts.len(), 2);
    let out = run(&mut r, 3600 + 330 + 1);
    assert_eq!(out.len(), 1, "unchanged: only the repeat");
    assert_eq!(out[0].at, t(330 + 3600));
}

#[test]
fn resolved_alerts_are_notified_once_then_forgotten() {
    let mut r = router();
    let a = alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0);
    r.fire(t(0), a.clone());
    run(&mut r, 31);
    r.resolve(t(100), &a.labels);
    let out = run(&mut r, 10_000);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].status, out[0].at), ("resolved", t(330)));
    assert_eq!(out[0].alerts[0].ends_at, Some(t(100)));
    assert_eq!(r.alerts().count(), 0);
}

#[test]
fn an_alert_that_resolves_before_group_wait_is_never_sent() {
    let mut r = router();
    let a = alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0);
    r.fire(t(0), a.clone());
    r.resolve(t(5), &a.labels);
    assert!(run(&mut r, 10_000).is_empty());
}

#[test]
fn silences_hold_alerts_back_until_they_expire() {
    let mut r = router();
    let id = r.add_silence(
        t(0),
        Silence {
            id: String::new(),
            matchers: vec![Matcher::parse("member=m1").unwrap()],
            starts_at: t(0),
            ends_at: t(1000),
            comment: "maintenance".into(),
            created_by: "sre".into(),
        },
    );
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0),
    );
    assert!(run(&mut r, 900).is_empty(), "silenced");
    assert!(r.expire_silence(t(900), &id));
    let out = run(&mut r, 1300);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].at,
        t(930),
        "the next group tick after the silence ends"
    );
}

#[test]
fn a_silence_that_runs_out_lets_its_alerts_through_at_the_next_group_tick() {
    // Nothing changes in the group while the silence lasts (its flushes have
    // nothing to look at); the silence's end alone must bring the alert out.
    let mut r = router();
    r.add_silence(
        t(0),
        Silence {
            id: String::new(),
            matchers: vec![Matcher::parse("member=m1").unwrap()],
            starts_at: t(0),
            ends_at: t(1000),
            comment: "maintenance".into(),
            created_by: "sre".into(),
        },
    );
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0),
    );
    let out = run(&mut r, 1400);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].at, t(1230), "the first group tick after t=1000");
}

#[test]
fn a_silent_member_inhibits_drift_on_that_member_only() {
    let mut r = router();
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "silent"), ("member", "m1")], 0),
    );
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0),
    );
    r.fire(
        t(0),
        alert(&[("service", "a"), ("kind", "drift"), ("member", "m2")], 0),
    );
    let out = run(&mut r, 31);
    let kinds: Vec<(String, String)> = out[0]
        .alerts
        .iter()
        .map(|a| (a.labels["kind"].clone(), a.labels["member"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("drift".to_string(), "m2".to_string()),
            ("silent".to_string(), "m1".to_string())
        ]
    );
}

#[test]
fn a_flapping_alert_is_held_firing_instead_of_renotified() {
    let mut r = router();
    let a = alert(&[("service", "a"), ("kind", "drift"), ("member", "m1")], 0);
    let mut sent = Vec::new();
    // Fires and resolves every 10 minutes.
    for i in 0..5u64 {
        r.fire(
            t(i * 600),
            Alert {
                starts_at: t(i * 600),
                ..a.clone()
            },
        );
        sent.extend(run(&mut r, i * 600 + 299));
        r.resolve(t(i * 600 + 300), &a.labels);
        sent.extend(run(&mut r, i * 600 + 599));
    }
    let resolved = sent.iter().filter(|n| n.status == "resolved").count();
    assert_eq!(
        resolved, 2,
        "after two resolutions within the hour the alert is held: {sent:#?}"
    );
    // It finally stays resolved: one resolved notification after the hold.
    let out = run(&mut r, 10_000);
    assert_eq!(out.iter().filter(|n| n.status == "resolved").count(), 1);
    assert_eq!(
        out.last().unwrap().alerts[0].ends_at,
        Some(t(4 * 600 + 300 + 600))
    );
}

#[test]
fn webhook_payload_is_alertmanager_version_4() {
    let mut r = router();
    r.fire(
        t(0),
        alert(
            &[
                ("service", "a"),
                ("kind", "drift"),
                ("member", "m1"),
                ("alertname", "CoherdDrift"),
            ],
            0,
        ),
    );
    let out = run(&mut r, 31);
    let p = out[0].webhook_payload("http://coherd:7070");
    assert_eq!(p["version"], "4");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["groupLabels"]["service"], "a");
    assert_eq!(p["commonLabels"]["alertname"], "CoherdDrift");
    assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(p["alerts"][0]["startsAt"], "2026-11-22T08:00:00Z");
}

/// The inhibition index gives what a pass over every firing alert gives, after
/// any sequence of alerts firing, resolving, flapping and being notified.
mod inhibition_index {
    use proptest::prelude::*;

    use super::*;

    fn naive(router: &Router, rules: &[Inhibit], target: &Labels) -> bool {
        rules.iter().any(|rule| {
            coherd_alert::matcher::all_match(&rule.target, target)
                && router.alerts().any(|src| {
                    src.is_firing()
                        && src.labels != *target
                        && coherd_alert::matcher::all_match(&rule.source, &src.labels)
                        && rule
                            .equal
                            .iter()
                            .all(|k| src.labels.get(k) == target.get(k))
                })
        })
    }

    proptest! {
        #[test]
        fn matches_a_full_scan(ops in proptest::collection::vec((0u8..3, 0u8..3, 0u8..2, any::<bool>()), 1..80)) {
            let rules = vec![
                Inhibit {
                    source: vec![Matcher::parse("kind=silent").unwrap()],
                    target: vec![Matcher::parse("kind=~drift|silent").unwrap()],
                    equal: vec!["service".into(), "member".into()],
                },
                Inhibit {
                    source: vec![Matcher::parse("severity=page").unwrap()],
                    target: vec![Matcher::parse("severity=ticket").unwrap()],
                    equal: vec!["member".into()],
                },
            ];
            let mut r = Router::new(
                route(),
                FlapDamping { changes: 1, window: Duration::from_secs(3600), hold: Duration::from_secs(60) },
                rules.clone(),
            );
            let kinds = ["silent", "drift", "mixed"];
            let members = ["a", "b", "c"];
            let severities = ["page", "ticket"];
            for (i, &(k, m, s, fire)) in ops.iter().enumerate() {
                let now = t(10 * i as u64);
                let l = [
                    ("service", "api"),
                    ("kind", kinds[k as usize]),
                    ("member", members[m as usize]),
                    ("severity", severities[s as usize]),
                ];
                if fire {
                    r.fire(now, alert(&l, 10 * i as u64));
                } else {
                    r.resolve(now, &labels(&l));
                }
                r.handle_timeout(now);
                while r.poll_notification().is_some() {}
                let all: Vec<Labels> = r.alerts().map(|a| a.labels.clone()).collect();
                for target in &all {
                    prop_assert_eq!(r.inhibited(target), naive(&r, &rules, target), "{:?}", target);
                }
            }
        }
    }
}
