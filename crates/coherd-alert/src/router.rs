//! Alertmanager's routing semantics: groups with `group_wait`,
//! `group_interval` and `repeat_interval`; silences; inhibition; resolved
//! notifications; and flap damping (an alert that keeps resolving and firing
//! again is held firing instead of re-notifying).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use coherd_model::Time;
use serde::Serialize;

use crate::alert::{Alert, Labels, fingerprint};
use crate::config::{FlapDamping, Inhibit, Route};
use crate::matcher::{Matcher, all_match};

/// A silence: alerts matching every matcher are not notified between `starts_at` and `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    /// Stable id.
    pub id: String,
    /// What it mutes.
    pub matchers: Vec<Matcher>,
    /// From.
    pub starts_at: Time,
    /// Until.
    pub ends_at: Time,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now: Time) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// One notification for one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// The receiver.
    pub receiver: String,
    /// The group's key.
    pub group_key: String,
    /// The labels that define the group.
    pub group_labels: Labels,
    /// `firing` if any alert fires, else `resolved`.
    pub status: &'static str,
    /// Firing alerts, then resolved ones.
    pub alerts: Vec<Alert>,
    /// When it was sent.
    pub at: Time,
}

impl Notification {
    /// The Alertmanager webhook payload (version 4).
    pub fn webhook_payload(&self, external_url: &str) -> serde_json::Value {
        let common = |f: fn(&Alert) -> &Labels| -> Labels {
            let mut it = self.alerts.iter().map(f);
            let Some(first) = it.next() else {
                return Labels::new();
            };
            let mut c = first.clone();
            for l in it {
                c.retain(|k, v| l.get(k) == Some(v));
            }
            c
        };
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "status": if a.is_firing() { "firing" } else { "resolved" },
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at,
                    "endsAt": a.ends_at.map_or("0001-01-01T00:00:00Z".to_string(), |t| t.to_string()),
                    "generatorURL": external_url,
                    "fingerprint": a.fingerprint(),
                })
            })
            .collect();
        serde_json::json!({
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": 0,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": common(|a| &a.labels),
            "commonAnnotations": common(|a| &a.annotations),
            "externalURL": external_url,
            "alerts": alerts,
        })
    }
}

struct Entry {
    alert: Alert,
    group: String,
    /// Notified as firing at least once.
    notified: bool,
    held_until: Option<Time>,
}

struct Group {
    labels: Labels,
    /// Fingerprints of the alerts in the group.
    members: BTreeSet<String>,
    next_flush: Time,
    last_sent: Option<Time>,
    dirty: bool,
    /// The router's generation and active silences at the last flush: while
    /// both stay and the group is not dirty, a flush has nothing to look at.
    seen: Option<(u64, u64)>,
}

/// Firing alerts that match each inhibition rule's source, counted by the
/// values of the rule's `equal` labels: checking whether an alert is
/// inhibited costs one look-up per rule, not a pass over every alert, and
/// allocates nothing.
#[derive(Default)]
struct InhibitIndex(Vec<HashMap<u64, Vec<Counted>>>);

/// The `equal` label values of some firing source alerts, and how many there are.
type Counted = (Vec<Option<String>>, u32);

impl InhibitIndex {
    fn values<'a>(rule: &'a Inhibit, labels: &'a Labels) -> impl Iterator<Item = Option<&'a str>> {
        rule.equal.iter().map(|k| labels.get(k).map(String::as_str))
    }

    fn hash(rule: &Inhibit, labels: &Labels) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for v in InhibitIndex::values(rule, labels) {
            v.hash(&mut h);
        }
        h.finish()
    }

    /// A firing alert with `labels` starts (`+1`) or stops (`-1`) counting.
    fn update(&mut self, rules: &[Inhibit], labels: &Labels, delta: i32) {
        self.0.resize_with(rules.len(), HashMap::new);
        for (rule, counts) in rules.iter().zip(&mut self.0) {
            if !all_match(&rule.source, labels) {
                continue;
            }
            let h = InhibitIndex::hash(rule, labels);
            let bucket = counts.entry(h).or_default();
            let same = |k: &Vec<Option<String>>| {
                k.iter()
                    .map(Option::as_deref)
                    .eq(InhibitIndex::values(rule, labels))
            };
            match bucket.iter_mut().position(|(k, _)| same(k)) {
                Some(i) => {
                    bucket[i].1 = bucket[i].1.saturating_add_signed(delta);
                    if bucket[i].1 == 0 {
                        bucket.swap_remove(i);
                    }
                }
                None if delta > 0 => {
                    let key = InhibitIndex::values(rule, labels)
                        .map(|v| v.map(String::from))
                        .collect();
                    bucket.push((key, delta.unsigned_abs()));
                }
                None => {}
            }
            if bucket.is_empty() {
                counts.remove(&h);
            }
        }
    }

    /// Whether another firing alert inhibits one with `labels`.
    fn inhibits(&self, rules: &[Inhibit], labels: &Labels, itself_firing: bool) -> bool {
        rules.iter().zip(&self.0).any(|(rule, counts)| {
            if counts.is_empty() || !all_match(&rule.target, labels) {
                return false;
            }
            let n = counts
                .get(&InhibitIndex::hash(rule, labels))
                .and_then(|bucket| {
                    bucket.iter().find(|(k, _)| {
                        k.iter()
                            .map(Option::as_deref)
                            .eq(InhibitIndex::values(rule, labels))
                    })
                })
                .map_or(0, |(_, n)| *n);
            // An alert never inhibits itself.
            let own = u32::from(itself_firing && all_match(&rule.source, labels));
            n > own
        })
    }
}

/// The router: alerts in, notifications out.
pub struct Router {
    route: Route,
    flap: FlapDamping,
    inhibit: Vec<Inhibit>,
    alerts: BTreeMap<String, Entry>,
    groups: BTreeMap<String, Group>,
    inhibitors: InhibitIndex,
    /// Alerts held firing while flapping.
    held: usize,
    silences: Vec<Silence>,
    /// Recent resolutions per fingerprint, kept after the alert leaves.
    resolutions: BTreeMap<String, VecDeque<Time>>,
    out: VecDeque<Notification>,
    next_silence: u64,
    /// Bumped whenever what any group would send may change: an alert starts
    /// or stops firing (inhibition may follow), a silence is added or ended.
    generation: u64,
}

fn plus(t: Time, d: std::time::Duration) -> Time {
    t.add(d)
}

impl Router {
    /// A router with the given timing, damping and inhibition rules.
    pub fn new(route: Route, flap: FlapDamping, inhibit: Vec<Inhibit>) -> Router {
        Router {
            route,
            flap,
            inhibit,
            alerts: BTreeMap::new(),
            groups: BTreeMap::new(),
            inhibitors: InhibitIndex::default(),
            held: 0,
            silences: Vec::new(),
            resolutions: BTreeMap::new(),
            out: VecDeque::new(),
            next_silence: 1,
            generation: 0,
        }
    }

    /// The silences active at `now`, as one number (they are few).
    fn active_silences(&self, now: Time) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for s in self.silences.iter().filter(|s| s.active(now)) {
            s.id.hash(&mut h);
        }
        h.finish()
    }

    fn group_of(&self, labels: &Labels) -> (String, Labels) {
        let gl: Labels = self
            .route
            .group_by
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let key = format!(
            "{{}}:{{{}}}",
            gl.iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        (key, gl)
    }

    /// An alert fires (or keeps firing with new annotations).
    pub fn fire(&mut self, now: Time, alert: Alert) {
        let fp = fingerprint(&alert.labels);
        let (key, gl) = self.group_of(&alert.labels);
        let group_wait = self.route.group_wait;
        let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
            labels: gl,
            members: BTreeSet::new(),
            next_flush: plus(now, group_wait),
            last_sent: None,
            dirty: false,
            seen: None,
        });
        match self.alerts.get_mut(&fp) {
            Some(e) if e.alert.is_firing() => {
                // Still firing (or held while flapping): keep the original start.
                if e.held_until.take().is_some() {
                    self.held -= 1;
                }
                e.alert.annotations = alert.annotations;
            }
            Some(e) => {
                self.inhibitors.update(&self.inhibit, &alert.labels, 1);
                e.alert = alert;
                group.dirty = true;
                self.generation += 1;
            }
            None => {
                self.inhibitors.update(&self.inhibit, &alert.labels, 1);
                group.members.insert(fp.clone());
                self.alerts.insert(
                    fp,
                    Entry {
                        alert,
                        group: key,
                        notified: false,
                        held_until: None,
                    },
                );
                group.dirty = true;
                self.generation += 1;
            }
        }
    }

    /// An alert stops firing at `now`; a flapping one is held firing.
    pub fn resolve(&mut self, now: Time, labels: &Labels) {
        let fp = fingerprint(labels);
        let Some(e) = self.alerts.get_mut(&fp) else {
            return;
        };
        if !e.alert.is_firing() {
            return;
        }
        let window = self.flap.window;
        self.resolutions
            .retain(|_, r| r.back().is_some_and(|t| t.add(window) > now));
        let recent = self.resolutions.entry(fp).or_default();
        recent.push_back(now);
        while recent.front().is_some_and(|t| t.add(window) <= now) {
            recent.pop_front();
        }
        if self.flap.changes > 0 && recent.len() as u32 > self.flap.changes {
            if e.held_until.replace(plus(now, self.flap.hold)).is_none() {
                self.held += 1;
            }
            e.alert.annotations.insert("flapping".into(), "true".into());
            return;
        }
        e.alert.ends_at = Some(now);
        self.inhibitors.update(&self.inhibit, &e.alert.labels, -1);
        if let Some(g) = self.groups.get_mut(&e.group) {
            g.dirty = true;
        }
        self.generation += 1;
    }

    /// Adds a silence; returns its id.
    pub fn add_silence(&mut self, now: Time, mut s: Silence) -> String {
        if s.id.is_empty() {
            s.id = format!("s-{}-{}", now.as_nanos(), self.next_silence);
            self.next_silence += 1;
        }
        let id = s.id.clone();
        self.silences.retain(|x| x.id != id);
        self.silences.push(s);
        self.generation += 1;
        id
    }

    /// Ends a silence at `now`; returns false when unknown.
    pub fn expire_silence(&mut self, now: Time, id: &str) -> bool {
        let Some(s) = self.silences.iter_mut().find(|s| s.id == id) else {
            return false;
        };
        if s.ends_at > now {
            s.ends_at = now;
        }
        for g in self.groups.values_mut() {
            g.dirty = true;
        }
        self.generation += 1;
        true
    }

    /// Every silence, newest last.
    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// Alerts known now (firing, held or resolved but not yet notified).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().map(|e| &e.alert)
    }

    /// The alerts whose fingerprint sorts after `after` (all without it), in
    /// fingerprint order: a page of alerts costs the page, not every alert.
    pub fn alerts_after(&self, after: Option<&str>) -> impl Iterator<Item = &Alert> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        self.alerts
            .range((from, Bound::Unbounded))
            .map(|(_, e)| &e.alert)
    }

    /// Whether an alert is silenced at `now`.
    pub fn silenced(&self, now: Time, labels: &Labels) -> bool {
        self.silences
            .iter()
            .any(|s| s.active(now) && all_match(&s.matchers, labels))
    }

    /// Whether an alert is inhibited by another firing alert.
    pub fn inhibited(&self, labels: &Labels) -> bool {
        let itself_firing = self
            .alerts
            .get(&fingerprint(labels))
            .is_some_and(|e| e.alert.is_firing());
        self.inhibitors
            .inhibits(&self.inhibit, labels, itself_firing)
    }

    /// The earliest time something is due.
    pub fn poll_timeout(&self) -> Option<Time> {
        let groups = self.groups.values().map(|g| g.next_flush).min();
        let holds = if self.held > 0 {
            self.alerts.values().filter_map(|e| e.held_until).min()
        } else {
            None
        };
        groups.into_iter().chain(holds).min()
    }

    /// Sends what is due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.held > 0 {
            for e in self.alerts.values_mut() {
                if let Some(until) = e.held_until
                    && until <= now
                {
                    e.held_until = None;
                    self.held -= 1;
                    e.alert.ends_at = Some(until);
                    e.alert.annotations.remove("flapping");
                    self.inhibitors.update(&self.inhibit, &e.alert.labels, -1);
                    if let Some(g) = self.groups.get_mut(&e.group) {
                        g.dirty = true;
                    }
                    self.generation += 1;
                }
            }
        }
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.flush(now, &key);
        }
    }

    fn flush(&mut self, now: Time, key: &str) {
        let seen = Some((self.generation, self.active_silences(now)));
        let g = self.groups.get_mut(key).expect("due group exists");
        let repeat_due = g
            .last_sent
            .is_some_and(|t| t.add(self.route.repeat_interval) <= now);
        if !g.dirty && !repeat_due && g.seen == seen {
            // Nothing it holds, nothing that mutes it, changed: nothing to send.
            g.next_flush = now.add(self.route.group_interval);
            return;
        }
        g.seen = seen;
        let members: Vec<String> = self.groups[key].members.iter().cloned().collect();
        let mut firing: Vec<String> = Vec::new();
        let mut resolved: Vec<String> = Vec::new();
        let mut newly = false;
        for fp in &members {
            let e = &self.alerts[fp];
            if e.alert.is_firing() {
                let l = &e.alert.labels;
                if !self.silenced(now, l) && !self.inhibitors.inhibits(&self.inhibit, l, true) {
                    newly |= !e.notified;
                    firing.push(fp.clone());
                }
            } else if e.notified && self.route.send_resolved {
                resolved.push(fp.clone());
            }
        }
        let g = self.groups.get_mut(key).expect("due group exists");
        let repeat = g
            .last_sent
            .is_some_and(|t| t.add(self.route.repeat_interval) <= now)
            && !firing.is_empty();
        let changed = g.dirty && (!firing.is_empty() || !resolved.is_empty());
        if changed || repeat || newly {
            let mut alerts: Vec<Alert> = firing
                .iter()
                .chain(&resolved)
                .map(|fp| self.alerts[fp].alert.clone())
                .collect();
            alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
            let g = &self.groups[key];
            self.out.push_back(Notification {
                receiver: self.route.receiver.clone(),
                group_key: key.to_string(),
                group_labels: g.labels.clone(),
                status: if firing.is_empty() {
                    "resolved"
                } else {
                    "firing"
                },
                alerts,
                at: now,
            });
            for fp in &firing {
                if let Some(e) = self.alerts.get_mut(fp) {
                    e.notified = true;
                }
            }
            self.groups.get_mut(key).expect("exists").last_sent = Some(now);
        }
        // Resolved alerts leave once the group has told of them (or never told of them firing).
        let g = self.groups.get_mut(key).expect("exists");
        for fp in &members {
            if self.alerts.get(fp).is_some_and(|e| !e.alert.is_firing()) {
                self.alerts.remove(fp);
                g.members.remove(fp);
            }
        }
        g.dirty = false;
        g.next_flush = now.add(self.route.group_interval);
        if g.members.is_empty() {
            self.groups.remove(key);
        }
    }

    /// The next notification to send.
    pub fn poll_notification(&mut self) -> Option<Notification> {
        self.out.pop_front()
    }
}
