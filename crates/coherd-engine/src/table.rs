//! Opening, escalating and resolving divergences: one record per episode,
//! an event for every change, and member-level bookkeeping for coherence.

use coherd_model::Time;
use hashbrown::HashMap;
use serde_json::Value;

use crate::divergence::{Change, DivKey, Divergence, Subject};
use crate::engine::{Engine, Event};
use crate::ids::ServiceId;
use crate::intern::NONE;
use coherd_model::Severity;

/// How often resolved episodes are pruned, in engine time.
pub(crate) const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl Engine {
    /// Whether `key` is open, and at which severity.
    pub(crate) fn open_severity(&self, key: &DivKey) -> Option<Severity> {
        self.table.open_severity(key)
    }

    /// Opens `key` at `at`, or raises its severity, or (with `refresh`) updates
    /// its subjects and evidence. `detail` is called only when something is written.
    pub(crate) fn upsert(
        &mut self,
        key: DivKey,
        severity: Severity,
        at: Time,
        refresh: bool,
        detail: impl FnOnce(&Engine) -> (Vec<String>, Value),
    ) {
        if let Some(&i) = self.table.latest.get(&key) {
            let i = i as usize;
            if self.table.records[i].is_open() {
                let escalate = severity > self.table.records[i].severity;
                let write = escalate || refresh;
                let d = write.then(|| detail(self));
                // The context stays as it was at the opening: alert labels
                // must not change while the alert fires.
                let r = &mut self.table.records[i];
                r.last_seen_at = r.last_seen_at.max(at);
                if let Some((subjects, evidence)) = d {
                    r.subjects = subjects;
                    r.evidence = evidence;
                }
                if escalate {
                    r.severity = severity;
                    self.push_event(Event::Divergence {
                        index: i,
                        change: Change::Escalated,
                    });
                }
                return;
            }
        }
        let (subjects, evidence) = detail(self);
        let reopens = self
            .table
            .latest(&key)
            .map_or(0, |(_, r)| r.reopens.saturating_add(1));
        let context = self.context_of(&key);
        let svc = &self.services[key.svc];
        let record = Divergence {
            id: self.div_id(&key),
            service: svc.name_str.clone(),
            kind: key.kind,
            severity,
            subjects,
            evidence,
            opened_at: at,
            last_seen_at: at,
            resolved_at: None,
            reopens,
            deploy: context.deploy,
            labels: context.labels,
            key,
        };
        let index = self.table.records.len();
        self.table.records.push(record);
        self.table.latest.insert(key, index as u32);
        let latency = self.clock.seconds_since(at).max(0.0);
        self.services[key.svc]
            .windows
            .detection_latency
            .record(latency);
        self.push_event(Event::Divergence {
            index,
            change: Change::Opened,
        });
        self.member_divs_changed(&key, 1);
    }

    /// Resolves `key` at `at` if open; `last` replaces subjects and evidence.
    pub(crate) fn resolve(&mut self, key: DivKey, at: Time, last: Option<(Vec<String>, Value)>) {
        let Some(&i) = self.table.latest.get(&key) else {
            return;
        };
        let r = &mut self.table.records[i as usize];
        if !r.is_open() {
            return;
        }
        if r.opened_at == at && self.void_if_unseen(key, i as usize) {
            return;
        }
        let r = &mut self.table.records[i as usize];
        r.resolved_at = Some(at);
        r.last_seen_at = r.last_seen_at.max(at);
        if let Some((subjects, evidence)) = last {
            r.subjects = subjects;
            r.evidence = evidence;
        }
        self.push_event(Event::Divergence {
            index: i as usize,
            change: Change::Resolved,
        });
        self.member_divs_changed(&key, -1);
    }

    /// An episode that opens and resolves within one call, before anyone
    /// polled its opening, never happened: the condition held only between two
    /// inputs of one instant. Removes it; returns false when it was already seen.
    fn void_if_unseen(&mut self, key: DivKey, i: usize) -> bool {
        let opened = Event::Divergence {
            index: i,
            change: Change::Opened,
        };
        if !self.events.contains(&opened) {
            return false;
        }
        self.table.records.remove(i);
        let prev = self.table.records[..i].iter().rposition(|r| r.key == key);
        match prev {
            Some(p) => self.table.latest.insert(key, p as u32),
            None => self.table.latest.remove(&key),
        };
        for v in self.table.latest.values_mut() {
            if *v as usize > i {
                *v -= 1;
            }
        }
        self.events
            .retain(|e| !matches!(e, Event::Divergence { index, .. } if *index == i));
        for e in self.events.iter_mut() {
            if let Event::Divergence { index, .. } = e
                && *index > i
            {
                *index -= 1;
            }
        }
        self.member_divs_changed(&key, -1);
        true
    }

    /// Drops resolved episodes that resolved longer than `resolved_retention`
    /// ago, and the oldest resolved ones past `max_resolved_per_service` in a
    /// service, at most every [`PRUNE_EVERY`] of engine time. Open episodes and
    /// those a pending event points at stay; a key whose last episode went
    /// counts its reopens from zero again.
    pub(crate) fn prune_resolved(&mut self, now: Time) {
        if now < self.next_prune {
            return;
        }
        self.next_prune = now.add(PRUNE_EVERY);
        let cutoff = now.sub(self.config.resolved_retention);
        let max = self.config.max_resolved_per_service;
        let records = &self.table.records;
        let mut keep = vec![true; records.len()];
        let mut resolved: HashMap<ServiceId, usize> = HashMap::new();
        for (i, r) in records.iter().enumerate().rev() {
            if let Some(at) = r.resolved_at {
                let n = resolved.entry(r.key.svc).or_default();
                *n += 1;
                keep[i] = at >= cutoff && *n <= max;
            }
        }
        for e in &self.events {
            if let Event::Divergence { index, .. } = e {
                keep[*index] = true;
            }
        }
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut moved = vec![u32::MAX; keep.len()];
        let mut next = 0u32;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                moved[i] = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.table.records.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.table.latest.retain(|_, at| {
            *at = moved[*at as usize];
            *at != u32::MAX
        });
        for e in self.events.iter_mut() {
            if let Event::Divergence { index, .. } = e {
                *index = moved[*index] as usize;
            }
        }
    }

    fn member_divs_changed(&mut self, key: &DivKey, delta: i32) {
        if !key.kind.is_member_level() {
            return;
        }
        let s = &mut self.services[key.svc];
        if let Some(slot) = key.member_of().and_then(|m| s.slot_of(m)) {
            let m = &mut s.members[slot];
            m.open_divs = (m.open_divs as i32 + delta).max(0) as u16;
            self.refresh_coherent(key.svc, slot);
        }
    }

    /// The stable id: `kind:service:subject`.
    pub(crate) fn div_id(&self, key: &DivKey) -> String {
        let s = |x| if x == NONE { "" } else { self.syms.resolve(x) };
        let service = &self.services[key.svc].name_str;
        let kind = key.kind;
        let subject = match key.subject {
            Subject::MemberFacet { member, facet } => format!("{}:{}", s(member), s(facet)),
            Subject::MemberLease { member, resource } => {
                format!("{}:{}", s(member), s(resource))
            }
            Subject::Pair {
                member,
                observer_service,
                observer,
            } => format!(
                "{}:{}/{}",
                s(member),
                self.services[observer_service].name_str,
                s(observer)
            ),
            Subject::Member(x)
            | Subject::Facet(x)
            | Subject::Dataset(x)
            | Subject::Resource(x)
            | Subject::Job(x) => s(x).to_string(),
            Subject::FacetValue { facet, value } => format!("{}:{}", s(facet), s(value)),
            Subject::MemberDataset { member, dataset } => {
                format!("{}:{}", s(member), s(dataset))
            }
        };
        kind.id(service, &subject)
    }

    /// Every divergence record, one per episode, in the order they opened.
    pub fn divergences(&self) -> &[Divergence] {
        &self.table.records
    }

    /// Records that are open now.
    pub fn open_divergences(&self) -> impl Iterator<Item = &Divergence> {
        self.table.open().map(|(_, _, r)| r)
    }
}
