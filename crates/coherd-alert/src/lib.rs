//! coherd's alerting, sans-IO.
//!
//! [`Alerting`] turns divergences and SLI samples into alerts with rules
//! (built-in defaults for every divergence kind, plus configured ones), tracks
//! SLO error budgets with multiwindow burn rates, and routes alerts the way
//! Alertmanager does: grouping with `group_wait`, `group_interval` and
//! `repeat_interval`, silences, inhibition, resolved notifications, and flap
//! damping. Like the engine it reads no clock and does no IO: inputs take
//! `now`, deadlines are polled with [`Alerting::poll_timeout`], and
//! notifications wait in a queue for the shell's notifiers.
//!
//! ```
//! use coherd_alert::{AlertConfig, Alerting};
//! use coherd_model::Time;
//!
//! let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
//! let mut alerting = Alerting::new(AlertConfig::default());
//! // A service's coherence collapses; with no divergence rule involved, an SLI
//! // rule or an SLO would page. Here nothing is configured, so nothing fires.
//! let coherence = coherd_alert::SliSample { sli: "coherence", facet: None, value: Some(0.5) };
//! alerting.on_sli(t0, "checkout", &[coherence], 100);
//! alerting.handle_timeout(t0.add(std::time::Duration::from_secs(60)));
//! assert!(alerting.poll_notification().is_none());
//! ```

// Unit tests compile with the dev-dependencies that only integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod alert;
pub mod config;
pub mod error;
pub mod matcher;
pub mod policy;
pub mod router;
pub mod sli;
pub mod slo;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use coherd_engine::Divergence;
use coherd_model::Time;
use coherd_model::time::prometheus_duration;

pub use alert::{Alert, Labels};
pub use config::{AlertConfig, Rule, Urgency};
pub use error::ConfigError;
pub use matcher::Matcher;
pub use policy::{DIVERGENCE_ALERTS, DivergenceAlert, SLI_ALERTS, SliAlert, Threshold};
pub use router::{Notification, Router, Silence};
pub use sli::{SLIS, SliDef, SliSample};
pub use slo::{SloStatus, SloTracker};

struct Candidate {
    labels: Labels,
    annotations: Labels,
    since: Time,
    for_: Duration,
    firing: bool,
}

impl Candidate {
    /// Whether it has held for its `for`.
    fn due(&self, now: Time) -> bool {
        self.since.add(self.for_) <= now
    }

    /// The alert it fires: starting once its `for` has passed.
    fn alert(&self) -> Alert {
        Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: self.since.add(self.for_),
            ends_at: None,
        }
    }
}

/// Rules, SLOs and the router together.
pub struct Alerting {
    rules: Vec<Rule>,
    slos: Vec<config::Slo>,
    trackers: BTreeMap<(usize, String), SloTracker>,
    candidates: BTreeMap<String, Candidate>,
    /// Candidates not firing yet, by when their `for` ends: a tick costs what
    /// comes due, not a pass over every candidate.
    pending: BTreeSet<(Time, String)>,
    router: Router,
}

fn fill(template: &str, service: &str, kind: &str, subjects: &str, value: &str) -> String {
    template
        .replace("{service}", service)
        .replace("{kind}", kind)
        .replace("{subjects}", subjects)
        .replace("{value}", value)
}

impl Alerting {
    /// Alerting with `config`.
    pub fn new(config: AlertConfig) -> Alerting {
        let mut inhibit = config.inhibit.clone();
        // A page about a divergence mutes the tickets about the same one.
        inhibit.push(config::Inhibit {
            source: vec![
                Matcher::parse("severity=page").expect("valid"),
                Matcher::parse("divergence=~.+").expect("valid"),
            ],
            target: vec![Matcher::parse("severity=ticket").expect("valid")],
            equal: vec!["divergence".into()],
        });
        Alerting {
            rules: config.effective_rules(),
            slos: config.slos.clone(),
            trackers: BTreeMap::new(),
            candidates: BTreeMap::new(),
            pending: BTreeSet::new(),
            router: Router::new(config.route.clone(), config.flap.clone(), inhibit),
        }
    }

    /// The labels a divergence gives its alerts (before the rule's own).
    pub fn divergence_labels(d: &Divergence) -> Labels {
        let mut l = Labels::from([
            ("service".to_string(), d.service.clone()),
            ("kind".to_string(), d.kind.as_str().to_string()),
            (
                "coherd_severity".to_string(),
                d.severity.as_str().to_string(),
            ),
            ("divergence".to_string(), d.id.clone()),
        ]);
        if d.kind.is_member_level()
            && let Some(m) = d.subjects.first()
        {
            l.insert("member".into(), m.clone());
        }
        // The member's deploy and breakdown labels, so that alerts group by
        // them (`group_by: [service, deploy]`); never over the labels above.
        if let Some(deploy) = &d.deploy {
            l.insert("deploy".into(), deploy.clone());
        }
        for (k, v) in &d.labels {
            l.entry(k.clone()).or_insert_with(|| v.clone());
        }
        l
    }

    /// A divergence opened, escalated or resolved.
    pub fn on_divergence(&mut self, now: Time, d: &Divergence) {
        let base = Alerting::divergence_labels(d);
        let subjects = d.subjects.join(", ");
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let Some(m) = &rule.matches else { continue };
            let key = format!("{i}:{}", d.id);
            if d.is_open() && m.matches(d.kind, d.severity, &base) {
                let mut labels = base.clone();
                labels.insert("alertname".into(), rule.name.clone());
                labels.insert("severity".into(), rule.severity.as_str().into());
                labels.extend(rule.labels.clone());
                let annotations = rule
                    .annotations
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            fill(v, &d.service, d.kind.as_str(), &subjects, ""),
                        )
                    })
                    .collect();
                self.upsert(now, key, labels, annotations, d.opened_at, rule.for_);
            } else {
                self.drop_candidate(now, &key, d.resolved_at.unwrap_or(now));
            }
        }
    }

    /// A service's SLIs ([`sli::samples`]) and its known members: threshold
    /// rules fire or clear, and SLOs count the coherence sample.
    pub fn on_sli(&mut self, now: Time, service: &str, samples: &[SliSample], members: u32) {
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let Some(sli) = rule.sli.clone() else {
                continue;
            };
            let threshold = match (rule.below, rule.above) {
                (Some(t), _) => Threshold::Below(t),
                (None, Some(t)) => Threshold::Above(t),
                (None, None) => continue,
            };
            if rule.service.as_deref().is_some_and(|s| s != service) {
                continue;
            }
            let only_facet = rule.facet.clone();
            // Candidates of this rule and service whose facet is no longer
            // sampled (no longer targeted) resolve.
            let prefix = format!("{i}:sli:{service}:");
            let sampled: Vec<String> = samples
                .iter()
                .filter(|x| x.sli == sli)
                .map(|x| format!("{prefix}{}", x.facet.as_deref().unwrap_or("")))
                .collect();
            let gone: Vec<String> = self
                .candidates
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .filter(|k| !sampled.contains(k))
                .collect();
            for key in gone {
                self.drop_candidate(now, &key, now);
            }
            for sample in samples.iter().filter(|x| x.sli == sli) {
                if only_facet.is_some() && only_facet != sample.facet {
                    continue;
                }
                let facet = sample.facet.as_deref().unwrap_or("");
                let key = format!("{i}:sli:{service}:{facet}");
                match sample.value {
                    Some(v) if threshold.breached(v) => {
                        let rule = &self.rules[i];
                        let mut labels = Labels::from([
                            ("alertname".to_string(), rule.name.clone()),
                            ("service".to_string(), service.to_string()),
                            ("sli".to_string(), sli.clone()),
                            ("severity".to_string(), rule.severity.as_str().to_string()),
                        ]);
                        if let Some(f) = &sample.facet {
                            labels.insert("facet".to_string(), f.clone());
                        }
                        labels.extend(rule.labels.clone());
                        let mut annotations: Labels = rule
                            .annotations
                            .iter()
                            .map(|(k, t)| {
                                (k.clone(), fill(t, service, &sli, facet, &format!("{v:.4}")))
                            })
                            .collect();
                        annotations.entry("summary".into()).or_insert_with(|| {
                            format!("{sli} of {service} is {v:.4}, {}", threshold.words())
                        });
                        let since = self.candidates.get(&key).map_or(now, |c| c.since);
                        let for_ = rule.for_;
                        self.upsert(now, key, labels, annotations, since, for_);
                    }
                    Some(_) => self.drop_candidate(now, &key, now),
                    // No telemetry at all: coherence holds its state (as the
                    // SLOs freeze). A rate with nothing to measure (no
                    // requests in its window) resolves, as the exported rule
                    // does when its series is gone.
                    None if sli == "coherence" => {}
                    None => self.drop_candidate(now, &key, now),
                }
            }
        }
        let coherence = samples
            .iter()
            .find(|x| x.sli == "coherence")
            .and_then(|x| x.value);
        for (i, slo) in self.slos.iter().enumerate() {
            if slo.service != "*" && slo.service != service {
                continue;
            }
            let t = self
                .trackers
                .entry((i, service.to_string()))
                .or_insert_with(|| {
                    SloTracker::new(
                        slo.objective,
                        slo.period,
                        slo.min_events,
                        slo.windows.clone(),
                    )
                });
            if t.observe(now, coherence, members) {
                let firing = t.firing.clone();
                let windows = t.windows.clone();
                for (w, on) in windows.iter().zip(firing) {
                    let labels = slo::burn_labels(service, w);
                    if on {
                        let annotations = Labels::from([(
                            "summary".to_string(),
                            format!(
                                "{service} burns its coherence error budget {}x too fast over {} and {}",
                                w.factor,
                                prometheus_duration(w.long),
                                prometheus_duration(w.short)
                            ),
                        )]);
                        self.router.fire(
                            now,
                            Alert {
                                labels,
                                annotations,
                                starts_at: now,
                                ends_at: None,
                            },
                        );
                    } else {
                        self.router.resolve(now, &labels);
                    }
                }
            }
        }
    }

    fn upsert(
        &mut self,
        now: Time,
        key: String,
        labels: Labels,
        annotations: Labels,
        since: Time,
        for_: Duration,
    ) {
        let c = self.candidates.entry(key.clone()).or_insert_with(|| {
            self.pending.insert((since.add(for_), key.clone()));
            Candidate {
                labels: labels.clone(),
                annotations: annotations.clone(),
                since,
                for_,
                firing: false,
            }
        });
        c.annotations = annotations;
        if c.labels != labels {
            // Severity labels changed (an escalation): the old alert resolves, the new one fires.
            if c.firing {
                self.router.resolve(now, &c.labels);
                c.firing = false;
            }
            c.labels = labels;
        }
        if c.firing || c.due(now) {
            if !c.firing {
                self.pending.remove(&(c.since.add(c.for_), key));
            }
            c.firing = true;
            self.router.fire(now, c.alert());
        }
    }

    fn drop_candidate(&mut self, _now: Time, key: &str, at: Time) {
        if let Some(c) = self.candidates.remove(key) {
            if c.firing {
                self.router.resolve(at, &c.labels);
            } else {
                self.pending.remove(&(c.since.add(c.for_), key.to_string()));
            }
        }
    }

    /// SLI alerts of services that are no longer sampled (deleted) resolve.
    pub fn retain_sli_services(&mut self, now: Time, services: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .candidates
            .keys()
            .filter(|k| {
                let mut parts = k.splitn(4, ':');
                let (_, kind, service) = (parts.next(), parts.next(), parts.next());
                kind == Some("sli") && service.is_some_and(|s| !services.contains(s))
            })
            .cloned()
            .collect();
        for key in gone {
            self.drop_candidate(now, &key, now);
        }
    }

    /// Fires what has waited its `for`, freezes SLOs without telemetry, and routes.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(first) = self.pending.first()
            && first.0 <= now
        {
            let (_, key) = self.pending.pop_first().expect("checked");
            if let Some(c) = self.candidates.get_mut(&key)
                && !c.firing
            {
                c.firing = true;
                self.router.fire(now, c.alert());
            }
        }
        for t in self.trackers.values_mut() {
            t.check_silence(now);
        }
        self.router.handle_timeout(now);
    }

    /// The earliest time something is due.
    pub fn poll_timeout(&self) -> Option<Time> {
        let pending = self.pending.first().map(|(t, _)| *t);
        pending.into_iter().chain(self.router.poll_timeout()).min()
    }

    /// The next notification for the notifiers.
    pub fn poll_notification(&mut self) -> Option<Notification> {
        self.router.poll_notification()
    }

    /// The router (silences, alerts).
    pub fn router(&mut self) -> &mut Router {
        &mut self.router
    }

    /// Every SLO's state per service.
    pub fn slo_status(&self, now: Time) -> Vec<(String, SloStatus)> {
        self.trackers
            .iter()
            .map(|((_, svc), t)| (svc.clone(), t.status(now)))
            .collect()
    }
}
