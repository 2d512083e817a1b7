//! Phase agreement between observers and members: `phase_disagreement` and
//! `drain_violation`, one clock per (observer, member) pair.

use coherd_model::{Observation, Time, split_view_key};
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::{NONE, Sym};
use crate::pairs::{PairKey, PairState};
use crate::state::flag;
use crate::timer::Timer;
use coherd_model::{Kind, Severity};

impl Engine {
    /// Replaces an observer's views with the report's (absent means none).
    pub(crate) fn apply_views(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        was_live: bool,
        at: Time,
    ) {
        let m = &self.services[svc].members[slot];
        let had = m.extra.as_ref().is_some_and(|x| !x.views.is_empty());
        if obs.views.is_empty() && !had {
            return;
        }
        let mut new: Vec<(Sym, Sym, Sym)> = obs
            .views
            .iter()
            .map(|(k, v)| {
                let (s, m) = split_view_key(k, &obs.service);
                let phase = v.phase.as_deref().map_or(NONE, |p| self.syms.intern(p));
                (self.syms.intern(s), self.syms.intern(m), phase)
            })
            .collect();
        new.sort_unstable();
        let old = std::mem::take(&mut self.services[svc].members[slot].extra().views);
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let o = old.get(i).map(|x| (x.0, x.1));
            let n = new.get(j).map(|x| (x.0, x.1));
            match (o, n) {
                (Some(ok), Some(nk)) if ok == nk => {
                    if old[i].2 != new[j].2 || !was_live {
                        self.eval_pair(svc, slot, nk.0, nk.1, new[j].2, at);
                    }
                    i += 1;
                    j += 1;
                }
                (Some(ok), nk) if nk.is_none_or(|nk| ok < nk) => {
                    self.unindex_viewer(ok, svc, slot);
                    self.eval_pair(svc, slot, ok.0, ok.1, NONE, at);
                    i += 1;
                }
                (_, Some(nk)) => {
                    self.views.viewers.entry(nk).or_default().push((svc, slot));
                    self.eval_pair(svc, slot, nk.0, nk.1, new[j].2, at);
                    j += 1;
                }
                (_, None) => unreachable!("loop condition"),
            }
        }
        self.services[svc].members[slot].extra().views = new;
    }

    fn unindex_viewer(&mut self, target: (Sym, Sym), svc: ServiceId, slot: MemberSlot) {
        if let Some(v) = self.views.viewers.get_mut(&target) {
            v.retain(|&o| o != (svc, slot));
            if v.is_empty() {
                self.views.viewers.remove(&target);
            }
        }
    }

    /// Drops every view an observer holds (it is being forgotten).
    pub(crate) fn clear_views(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let views = match self.services[svc].members[slot].extra.as_mut() {
            Some(x) => std::mem::take(&mut x.views),
            None => return,
        };
        for (ts, tm, _) in views {
            self.unindex_viewer((ts, tm), svc, slot);
            self.eval_pair(svc, slot, ts, tm, NONE, at);
        }
    }

    /// Re-evaluates every pair where this member is the observer.
    pub(crate) fn reeval_views_of(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let views = match self.services[svc].members[slot].extra.as_ref() {
            Some(x) if !x.views.is_empty() => x.views.clone(),
            _ => return,
        };
        for (ts, tm, phase) in views {
            self.eval_pair(svc, slot, ts, tm, phase, at);
        }
    }

    /// Re-evaluates every pair where this member is the one observed.
    pub(crate) fn reeval_viewers_of(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let s = &self.services[svc];
        let target = (s.name, s.members[slot].name);
        let Some(observers) = self.views.viewers.get(&target).cloned() else {
            self.clear_phase_change(svc, slot);
            return;
        };
        for (os, oslot) in observers {
            let view = self.view_of(os, oslot, target);
            self.eval_pair(os, oslot, target.0, target.1, view, at);
        }
        let m = &self.services[svc].members[slot];
        if let Some(x) = &m.extra
            && x.disagreeing_viewers == 0
            && let Some(changed) = x.phase_changed_at
        {
            self.services[svc]
                .windows
                .phase_change_latency
                .record(at.seconds_since(changed));
            self.clear_phase_change(svc, slot);
        }
    }

    fn clear_phase_change(&mut self, svc: ServiceId, slot: MemberSlot) {
        if let Some(x) = self.services[svc].members[slot].extra.as_mut() {
            x.phase_changed_at = None;
        }
    }

    fn view_of(&self, svc: ServiceId, slot: MemberSlot, target: (Sym, Sym)) -> Sym {
        let m = &self.services[svc].members[slot];
        let Some(x) = &m.extra else { return NONE };
        match x.views.binary_search_by(|v| (v.0, v.1).cmp(&target)) {
            Ok(i) => x.views[i].2,
            Err(_) => NONE,
        }
    }

    /// Compares an observer's view of a member with the member's own phase.
    fn eval_pair(
        &mut self,
        obs_svc: ServiceId,
        obs_slot: MemberSlot,
        tsvc: Sym,
        tmem: Sym,
        view: Sym,
        at: Time,
    ) {
        let key = PairKey {
            obs_svc,
            obs_slot,
            tsvc,
            tmem,
        };
        let observer_live = self.services[obs_svc].members[obs_slot].has(flag::LIVE);
        let target = self.service_index.get(&tsvc).and_then(|&t| {
            let s = &self.services[t];
            let slot = s.slot_of(tmem)?;
            let m = &s.members[slot];
            (m.has(flag::LIVE) && m.phase != NONE).then_some((t, slot, m.phase))
        });
        let disagreement = match target {
            Some((t, _, phase)) if observer_live && view != NONE && view != phase => {
                let cfg = &self.services[t].cfg;
                Some(if cfg.is_serving(view) && !cfg.is_serving(phase) {
                    Kind::DrainViolation
                } else {
                    Kind::PhaseDisagreement
                })
            }
            _ => None,
        };
        let div_key = |kind: Kind, t: ServiceId| {
            DivKey::pair(
                kind,
                t,
                tmem,
                obs_svc,
                self.services[obs_svc].members[obs_slot].name,
            )
        };
        match (disagreement, target) {
            (Some(kind), Some((t, tslot, phase))) => {
                let timeout = self.services[t].cfg.agreement_timeout;
                match self.views.pairs.get_mut(&key) {
                    None => {
                        let deadline = Time::from_nanos(at.as_nanos().saturating_add(timeout));
                        self.views.pairs.insert(
                            key,
                            PairState {
                                since: at,
                                deadline,
                                kind,
                                open: false,
                                grew: false,
                                requests: 0,
                                view,
                                phase,
                            },
                        );
                        self.timers.schedule(
                            deadline,
                            Timer::Pair {
                                obs_svc,
                                obs_slot,
                                tsvc,
                                tmem,
                            },
                        );
                        self.services[t].members[tslot].extra().disagreeing_viewers += 1;
                    }
                    Some(st) => {
                        st.view = view;
                        st.phase = phase;
                        let (old_kind, open) = (st.kind, st.open);
                        if old_kind != kind {
                            st.kind = kind;
                            st.grew = false;
                            st.requests = 0;
                        }
                        if open {
                            if old_kind != kind {
                                self.resolve(div_key(old_kind, t), at, None);
                            }
                            self.open_pair(key, t, at);
                        }
                    }
                }
            }
            _ => {
                if let Some(st) = self.views.pairs.remove(&key)
                    && let Some(&t) = self.service_index.get(&tsvc)
                {
                    {
                        if st.open {
                            self.resolve(div_key(st.kind, t), at, None);
                        }
                        let s = &mut self.services[t];
                        if let Some(slot) = s.slot_of(tmem) {
                            let x = s.members[slot].extra();
                            x.disagreeing_viewers = x.disagreeing_viewers.saturating_sub(1);
                            if target.is_some()
                                && x.disagreeing_viewers == 0
                                && let Some(changed) = x.phase_changed_at.take()
                            {
                                s.windows
                                    .phase_change_latency
                                    .record(at.seconds_since(changed));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Opens (or refreshes) the divergence of a disagreeing pair at `at`.
    fn open_pair(&mut self, key: PairKey, t: ServiceId, at: Time) {
        let Some(st) = self.views.pairs.get(&key).cloned() else {
            return;
        };
        let observer = self.services[key.obs_svc].members[key.obs_slot].name;
        let severity = if st.kind == Kind::DrainViolation && st.grew {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let div = DivKey::pair(st.kind, t, key.tmem, key.obs_svc, observer);
        self.upsert(div, severity, at, true, |e| {
            let observer = format!(
                "{}/{}",
                e.services[key.obs_svc].name_str,
                e.syms.resolve(observer)
            );
            let evidence = json!({
                "observer": observer,
                "observed_phase": e.syms.resolve(st.view),
                "member_phase": e.syms.resolve(st.phase),
                "disagreeing_since": st.since,
                "requests_while_non_serving": st.requests,
            });
            (
                vec![e.syms.resolve(key.tmem).to_string(), observer],
                evidence,
            )
        });
    }

    pub(crate) fn on_pair_timer(
        &mut self,
        obs_svc: ServiceId,
        obs_slot: MemberSlot,
        tsvc: Sym,
        tmem: Sym,
        t: Time,
    ) {
        let key = PairKey {
            obs_svc,
            obs_slot,
            tsvc,
            tmem,
        };
        let Some(st) = self.views.pairs.get_mut(&key) else {
            return;
        };
        if st.open || st.deadline != t {
            return;
        }
        st.open = true;
        let Some(&tidx) = self.service_index.get(&tsvc) else {
            return;
        };
        self.open_pair(key, tidx, t);
        self.touch_coherence_at(tidx, t);
    }

    /// The member served `delta` requests between two non-serving reports:
    /// every drain violation on it, pending or open, becomes critical.
    pub(crate) fn drain_growth(&mut self, svc: ServiceId, slot: MemberSlot, delta: u64, at: Time) {
        let s = &self.services[svc];
        let target = (s.name, s.members[slot].name);
        let Some(observers) = self.views.viewers.get(&target).cloned() else {
            return;
        };
        for (os, oslot) in observers {
            let key = PairKey {
                obs_svc: os,
                obs_slot: oslot,
                tsvc: target.0,
                tmem: target.1,
            };
            let Some(st) = self.views.pairs.get_mut(&key) else {
                continue;
            };
            if st.kind != Kind::DrainViolation {
                continue;
            }
            st.grew = true;
            st.requests += delta;
            if st.open {
                self.open_pair(key, svc, at);
            }
        }
    }

    /// Pairs with a view of a live member that has a phase, and how many disagree now.
    pub(crate) fn phase_pairs(&self, svc: ServiceId) -> (u64, u64) {
        let s = &self.services[svc];
        let (mut total, mut disagree) = (0, 0);
        for (slot, m) in s.members.iter().enumerate() {
            if !m.has(flag::LIVE) || m.phase == NONE {
                continue;
            }
            let Some(obs) = self.views.viewers.get(&(s.name, m.name)) else {
                continue;
            };
            for &(os, oslot) in obs {
                let o = &self.services[os].members[oslot];
                let view = self.view_of(os, oslot, (s.name, m.name));
                if o.has(flag::LIVE) && view != NONE {
                    total += 1;
                    if view != m.phase {
                        disagree += 1;
                    }
                }
            }
            let _ = slot;
        }
        (total, disagree)
    }
}
