//! Targeted and uniform facets: `drift`, `mixed`, rollout windows and convergence.

use std::collections::BTreeMap;

use coherd_model::{Observation, Time};
use serde_json::{Value, json};

use crate::divergence::DivKey;
use crate::engine::{Engine, Event, MemberChange};
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::{NONE, Sym};
use crate::state::{Class, flag};
use crate::timer::Timer;
use coherd_model::Severity;

impl Engine {
    /// Merges a report's facets into the member's columns. `was_counting`
    /// is whether the member counted before this report.
    pub(crate) fn apply_facets(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        was_counting: bool,
        now: Time,
    ) {
        let counting = self.services[svc].members[slot].is_counting();
        // A buffer kept across reports: no allocation per report.
        let mut updates = std::mem::take(&mut self.facet_scratch);
        updates.clear();
        for (f, v) in &obs.facets {
            let facet = self.syms.intern(f);
            let value = self.syms.intern(v);
            let c = self.column(svc, facet);
            updates.push((c, value));
        }
        for &(c, new) in &updates {
            let column = &self.services[svc].columns[c];
            let old = column.values[slot];
            if old != new && old != NONE {
                let change = MemberChange::Changed {
                    facet: self.syms.resolve(column.facet).to_string(),
                    from: self.syms.resolve(old).to_string(),
                    to: self.syms.resolve(new).to_string(),
                };
                self.member_event(svc, slot, now, change);
            }
        }
        if counting == was_counting {
            for &(c, new) in &updates {
                let old = self.services[svc].columns[c].values[slot];
                self.update_column(svc, slot, c, old, new, was_counting, counting, now);
            }
        } else {
            for c in 0..self.services[svc].columns.len() {
                let old = self.services[svc].columns[c].values[slot];
                let new = updates
                    .iter()
                    .find(|(uc, _)| *uc == c)
                    .map_or(old, |(_, v)| *v);
                self.update_column(svc, slot, c, old, new, was_counting, counting, now);
            }
        }
        self.facet_scratch = updates;
    }

    /// Re-counts every column of a member whose counting status changed.
    pub(crate) fn recount_member(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        was_counting: bool,
        at: Time,
    ) {
        let counting = self.services[svc].members[slot].is_counting();
        if counting == was_counting {
            return;
        }
        for c in 0..self.services[svc].columns.len() {
            let v = self.services[svc].columns[c].values[slot];
            self.update_column(svc, slot, c, v, v, was_counting, counting, at);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn update_column(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        c: usize,
        old: Sym,
        new: Sym,
        was_counting: bool,
        counting: bool,
        at: Time,
    ) {
        if old == new && was_counting == counting {
            return;
        }
        let col = &mut self.services[svc].columns[c];
        col.values[slot] = new;
        if was_counting && old != NONE {
            col.remove(old);
        }
        if counting && new != NONE {
            col.add(new);
        }
        if col.rule.is_some() {
            self.eval_drift(svc, slot, c, at);
            let before = if was_counting { old } else { NONE };
            self.eval_mixed(svc, c, at, Some((slot, before)));
        }
    }

    /// Opens, escalates or resolves `drift` for one member and facet.
    pub(crate) fn eval_drift(&mut self, svc: ServiceId, slot: MemberSlot, c: usize, at: Time) {
        let s = &self.services[svc];
        let m = &s.members[slot];
        let col = &s.columns[c];
        let v = col.values[slot];
        let class = match &col.rule {
            Some(r) if r.targeted() && m.is_counting() && v != NONE => r.classify(v, at),
            _ => Class::AtTarget,
        };
        let key = DivKey::drift(svc, m.name, col.facet);
        let severity = match class {
            Class::Lagging => Severity::Warning,
            Class::Foreign => Severity::Critical,
            Class::AtTarget | Class::Converging => {
                if m.open_divs > 0 {
                    self.resolve(key, at, None);
                }
                return;
            }
        };
        self.upsert(key, severity, at, true, |e| {
            let s = &e.services[svc];
            let col = &s.columns[c];
            let rule = col.rule.as_ref().expect("checked above");
            let name = |x: Sym| {
                if x == NONE {
                    Value::Null
                } else {
                    Value::from(e.syms.resolve(x))
                }
            };
            let evidence = json!({
                "facet": e.syms.resolve(col.facet),
                "value": name(v),
                "target": name(rule.target),
                "previous": name(rule.prev),
                "state": class.as_str(),
                "change_started_at": rule.tc,
                "rollout_window_s": rule.window as f64 / 1e9,
            });
            (
                vec![e.syms.resolve(s.members[slot].name).to_string()],
                evidence,
            )
        });
    }

    /// Opens, escalates or resolves `mixed` for one facet. `before` is a
    /// member's previous contribution, used for the record when it resolves.
    pub(crate) fn eval_mixed(
        &mut self,
        svc: ServiceId,
        c: usize,
        at: Time,
        before: Option<(MemberSlot, Sym)>,
    ) {
        let s = &mut self.services[svc];
        let col = &mut s.columns[c];
        let key = DivKey::mixed(svc, col.facet);
        let Some(rule) = col.rule.as_ref().filter(|r| r.uniform) else {
            if self.open_severity(&key).is_some() {
                let last = self.mixed_view(svc, c, before);
                self.resolve(key, at, Some(last));
            }
            return;
        };
        if col.counts.len() > 1 {
            let severity = if rule.targeted() {
                col.counts
                    .keys()
                    .map(|&v| match rule.classify(v, at) {
                        Class::AtTarget | Class::Converging => Severity::Info,
                        Class::Lagging => Severity::Warning,
                        Class::Foreign => Severity::Critical,
                    })
                    .max()
                    .unwrap_or(Severity::Info)
            } else {
                let window = rule.window;
                let since = match col.mixed_since {
                    Some(t) => t,
                    None => {
                        col.mixed_since = Some(at);
                        let end = Time::from_nanos(at.as_nanos().saturating_add(window));
                        self.timers
                            .schedule(end, Timer::UniformMixed { svc, col: c as u16 });
                        at
                    }
                };
                if at.as_nanos() >= since.as_nanos().saturating_add(window) {
                    Severity::Warning
                } else {
                    Severity::Info
                }
            };
            self.upsert(key, severity, at, false, |e| e.mixed_view(svc, c, None));
        } else {
            if !rule.targeted() {
                col.mixed_since = None;
            }
            if self.open_severity(&key).is_some() {
                let last = self.mixed_view(svc, c, before);
                self.resolve(key, at, Some(last));
            }
        }
        self.check_convergence(svc, c, at);
    }

    /// Subjects and evidence of `mixed`: members off the target (or off the
    /// most common value), and the value distribution. With `before`, one
    /// member's contribution is taken as it was before its latest change.
    pub(crate) fn mixed_view(
        &self,
        svc: ServiceId,
        c: usize,
        before: Option<(MemberSlot, Sym)>,
    ) -> (Vec<String>, Value) {
        let s = &self.services[svc];
        let col = &s.columns[c];
        let value_of = |slot: MemberSlot| {
            if let Some((b, v)) = before
                && b == slot
            {
                return v;
            }
            let m = &s.members[slot];
            if m.is_counting() {
                col.values[slot]
            } else {
                NONE
            }
        };
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        let mut by_sym: Vec<(Sym, u32)> = Vec::new();
        for slot in s.members.ids() {
            let v = value_of(slot);
            if v == NONE || s.members[slot].has(flag::REMOVED) {
                continue;
            }
            match by_sym.iter_mut().find(|(x, _)| *x == v) {
                Some(e) => e.1 += 1,
                None => by_sym.push((v, 1)),
            }
        }
        for &(v, n) in &by_sym {
            counts.insert(self.syms.resolve(v), n);
        }
        let target = col.rule.as_ref().map_or(NONE, |r| r.target);
        let reference = if target != NONE {
            target
        } else {
            by_sym
                .iter()
                .max_by(|a, b| {
                    a.1.cmp(&b.1)
                        .then_with(|| self.syms.resolve(b.0).cmp(self.syms.resolve(a.0)))
                })
                .map_or(NONE, |e| e.0)
        };
        let mut subjects: Vec<String> = s
            .members
            .ids()
            .filter(|&slot| {
                let v = value_of(slot);
                v != NONE && v != reference && !s.members[slot].has(flag::REMOVED)
            })
            .map(|slot| self.syms.resolve(s.members[slot].name).to_string())
            .collect();
        subjects.sort_unstable();
        let name = |x: Sym| {
            if x == NONE {
                Value::Null
            } else {
                Value::from(self.syms.resolve(x))
            }
        };
        let evidence = json!({
            "facet": self.syms.resolve(col.facet),
            "target": name(target),
            "reference": name(reference),
            "values": counts,
        });
        (subjects, evidence)
    }

    fn check_convergence(&mut self, svc: ServiceId, c: usize, at: Time) {
        let s = &mut self.services[svc];
        let counting = s.live_counting();
        let col = &mut s.columns[c];
        let Some(rule) = col.rule.as_ref().filter(|r| r.targeted()) else {
            return;
        };
        if counting == 0 {
            return;
        }
        let at_target = col.count(rule.target);
        let seconds = at.seconds_since(rule.tc);
        let mut reached = Vec::new();
        if col.converged.0.is_none() && at_target as u64 * 100 >= counting as u64 * 95 {
            col.converged.0 = Some(at);
            reached.push(95);
        }
        if col.converged.1.is_none() && at_target == counting {
            col.converged.1 = Some(at);
            reached.push(100);
        }
        let (revision, facet) = (rule.revision, col.facet);
        let service = s.name_str.clone();
        for percent in reached {
            let e = Event::Convergence {
                service: service.clone(),
                facet: self.syms.resolve(facet).to_string(),
                revision,
                percent,
                seconds,
                at,
            };
            self.push_event(e);
        }
    }

    /// A rollout window ended: converging values now lag.
    pub(crate) fn on_window_timer(&mut self, svc: ServiceId, c: usize, t: Time) {
        let s = &self.services[svc];
        let Some(rule) = s.columns.get(c).and_then(|col| col.rule.as_ref()) else {
            return;
        };
        if !rule.targeted() || rule.window_end() != t {
            return;
        }
        let lagging: Vec<MemberSlot> = s
            .members
            .ids()
            .filter(|&slot| s.members[slot].is_counting() && rule.is_old(s.columns[c].values[slot]))
            .collect();
        for slot in lagging {
            self.eval_drift(svc, slot, c, t);
            self.refresh_coherent(svc, slot);
        }
        self.eval_mixed(svc, c, t, None);
    }

    /// A uniform facet without target has been mixed for its whole window.
    pub(crate) fn on_uniform_timer(&mut self, svc: ServiceId, c: usize, t: Time) {
        let s = &self.services[svc];
        let Some(col) = s.columns.get(c) else { return };
        let due = match (col.mixed_since, &col.rule) {
            (Some(since), Some(r)) => since.as_nanos().saturating_add(r.window) == t.as_nanos(),
            _ => false,
        };
        if due {
            self.eval_mixed(svc, c, t, None);
        }
    }
}
