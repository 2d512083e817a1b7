//! Applying an intent to a service: compiled rules, changes and a full re-evaluation.

use coherd_model::Time;
use coherd_model::time::duration_nanos;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::ServiceId;
use crate::intern::NONE;
use crate::state::{FacetRule, flag};
use crate::timer::Timer;

impl Engine {
    /// Re-reads a service's rules from the intent and re-evaluates it at `now`.
    pub(crate) fn apply_service_intent(&mut self, svc: ServiceId, now: Time) {
        let name = self.services[svc].name_str.clone();
        let cfg = self.compile_cfg(&name);
        let si = self
            .intent
            .as_ref()
            .and_then(|i| i.services.get(&name))
            .cloned()
            .unwrap_or_default();
        let old_cfg = std::mem::replace(&mut self.services[svc].cfg, cfg);

        let back = self.retime_silence(svc, &old_cfg, now);
        self.retime_phases(svc, &old_cfg, now);
        self.retime_pairs(svc, &old_cfg, now);

        // Facet rules: a different target starts a change.
        for facet in si.facets.keys() {
            let f = self.syms.intern(facet);
            self.column(svc, f);
        }
        for c in 0..self.services[svc].columns.len() {
            let facet = self.services[svc].columns[c].facet;
            let fi = si.facets.get(self.syms.resolve(facet)).cloned();
            let new_rule = fi.map(|fi| {
                let target = fi.target.as_deref().map_or(NONE, |t| self.syms.intern(t));
                let compatible = fi.compatible.iter().map(|v| self.syms.intern(v)).collect();
                let old = self.services[svc].columns[c].rule.as_ref();
                let (tc, prev, revision) = match old {
                    Some(o) if o.target == target => (o.tc, o.prev, o.revision),
                    Some(o) => (now, o.target, o.revision.saturating_add(1)),
                    None => (now, NONE, 1),
                };
                FacetRule {
                    target,
                    prev,
                    compatible,
                    uniform: fi.is_uniform(),
                    window: duration_nanos(fi.rollout_window),
                    tc,
                    revision,
                }
            });
            let col = &mut self.services[svc].columns[c];
            let changed = match (&col.rule, &new_rule) {
                (Some(o), Some(n)) => o.tc != n.tc || o.window != n.window,
                (None, Some(_)) => true,
                _ => false,
            };
            if new_rule
                .as_ref()
                .is_some_and(|n| col.rule.as_ref().is_none_or(|o| o.tc != n.tc))
            {
                col.converged = (None, None);
            }
            if new_rule.as_ref().is_none_or(|n| n.targeted()) {
                col.mixed_since = None;
            }
            col.rule = new_rule;
            if changed && let Some(r) = col.rule.as_ref().filter(|r| r.targeted()) {
                let end = r.window_end();
                self.timers
                    .schedule(end, Timer::Window { svc, col: c as u16 });
            }
        }

        // Terminal phases and counts, from scratch.
        let s = &mut self.services[svc];
        let (mut terminal, mut counting) = (0, 0);
        for m in s.members.iter_mut().filter(|m| !m.has(flag::REMOVED)) {
            let t = m.phase != NONE && s.cfg.is_terminal(m.phase);
            m.set(flag::TERMINAL, t);
            terminal += t as u32;
            counting += (m.has(flag::LIVE) && !t) as u32;
        }
        s.terminal = terminal;
        s.counting = counting;
        for col in &mut s.columns {
            col.counts.clear();
            for (slot, m) in s.members.iter_enumerated() {
                let v = col.values[slot];
                if m.is_counting() && v != NONE {
                    *col.counts.entry(v).or_insert(0) += 1;
                }
            }
        }

        // Leases: only exclusive resources are tracked.
        let exclusive = s.cfg.exclusive.clone();
        let dropped: Vec<_> = s
            .resources
            .keys()
            .copied()
            .filter(|r| !exclusive.contains(r))
            .collect();
        for res in dropped {
            let s = &mut self.services[svc];
            let holders: Vec<_> = s
                .resources
                .remove(&res)
                .map(|r| r.holders.iter().map(|h| h.0).collect())
                .unwrap_or_default();
            self.resolve(DivKey::split_brain(svc, res), now, None);
            for m in holders {
                self.resolve(DivKey::stale_epoch(svc, m, res), now, None);
            }
        }
        let s = &mut self.services[svc];
        for m in s.members.iter().filter(|m| !m.has(flag::REMOVED)) {
            for l in m.extra.iter().flat_map(|x| x.leases.iter()) {
                if exclusive.contains(&l.resource) {
                    let r = s.resources.entry(l.resource).or_default();
                    r.max_epoch = r.max_epoch.max(l.epoch);
                    if !r.holders.iter().any(|h| h.0 == m.name) {
                        r.holders.push((m.name, l.epoch, l.expires));
                    }
                }
            }
        }
        let resources: Vec<_> = s.resources.keys().copied().collect();
        for res in resources {
            self.eval_resource(svc, res, now);
        }

        // Every member and facet again.
        let columns = self.services[svc].columns.len();
        for slot in self.services[svc].members.ids() {
            if self.services[svc].members[slot].has(flag::REMOVED) {
                continue;
            }
            for c in 0..columns {
                self.eval_drift(svc, slot, c, now);
            }
            self.refresh_coherent(svc, slot);
        }
        for c in 0..columns {
            self.eval_mixed(svc, c, now, None);
        }
        self.reeval_back(svc, &back, now);
        self.apply_signal_rules(svc, &si, now);
        self.apply_herd_intent(svc, now);
        self.touch_coherence(svc);
    }
}
