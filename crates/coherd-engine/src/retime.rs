//! Retiming: an intent change that moves a deadline re-evaluates what the
//! deadline governs at the change (DESIGN 3.1 Retiming). What no longer holds
//! resolves then, what newly holds opens then, and pending deadlines move.

use coherd_model::{Kind, Time};

use crate::divergence::DivKey;
use crate::engine::{Engine, MemberChange};
use crate::ids::{MemberSlot, ServiceId};
use crate::pairs::PairKey;
use crate::phases::HOUR;
use crate::state::{ServiceCfg, flag};
use crate::timer::Timer;

impl Engine {
    /// Members the new report interval makes live again: they are relinked
    /// into the silence list and their `silent` resolves at `now`. Returns
    /// them, for the re-evaluations that need the rest of the intent applied.
    pub(crate) fn retime_silence(
        &mut self,
        svc: ServiceId,
        old: &ServiceCfg,
        now: Time,
    ) -> Vec<MemberSlot> {
        let s = &self.services[svc];
        if old.report_interval == s.cfg.report_interval {
            return Vec::new();
        }
        let after = s.cfg.silence_after();
        let alive = |last: Time| last.as_nanos().saturating_add(after) > now.as_nanos();
        let mut back: Vec<MemberSlot> = Vec::new();
        if after > old.silence_after() {
            back = s
                .members
                .iter_enumerated()
                .filter(|(_, m)| {
                    !m.has(flag::REMOVED) && !m.has(flag::LIVE) && alive(m.last_report)
                })
                .map(|(slot, _)| slot)
                .collect();
        }
        if !back.is_empty() {
            // Rebuild the list in report order; ties keep the list's order.
            let s = &mut self.services[svc];
            let mut order = Vec::with_capacity(s.live as usize + back.len());
            let mut slot = s.head;
            while !slot.is_none() {
                order.push(slot);
                slot = s.members[slot].next;
            }
            order.extend(back.iter().copied());
            order.sort_by_key(|&slot| s.members[slot].last_report);
            for &slot in &order {
                s.unlink(slot);
            }
            for &slot in &order {
                s.push_back(slot);
            }
            for &slot in &back {
                self.set_live(svc, slot, true, false, now);
                self.member_event(svc, slot, now, MemberChange::Back);
            }
        }
        // The head's deadline moved; one the new interval puts in the past
        // falls due now, not before this intent.
        let s = &self.services[svc];
        if !s.head.is_none() {
            let d = s.members[s.head]
                .last_report
                .as_nanos()
                .saturating_add(after);
            self.timers
                .schedule(Time::from_nanos(d).max(now), Timer::Silence { svc });
        }
        back
    }

    /// The views, viewers and replicas of members made live again, once
    /// counts and rules are in place.
    pub(crate) fn reeval_back(&mut self, svc: ServiceId, back: &[MemberSlot], now: Time) {
        for &slot in back {
            self.reeval_viewers_of(svc, slot, now);
            self.reeval_views_of(svc, slot, now);
            let name = self.services[svc].members[slot].name;
            self.recheck_replicas(svc, name, now);
        }
    }

    /// `illegal_transition` holds and `flapping` limits under the new phases.
    pub(crate) fn retime_phases(&mut self, svc: ServiceId, old: &ServiceCfg, now: Time) {
        let (hold, max) = (
            self.services[svc].cfg.hold,
            self.services[svc].cfg.max_flips,
        );
        if hold == old.hold && max == old.max_flips {
            return;
        }
        let slots: Vec<MemberSlot> = self.services[svc]
            .members
            .iter_enumerated()
            .filter(|(_, m)| !m.has(flag::REMOVED) && m.extra.is_some())
            .map(|(slot, _)| slot)
            .collect();
        for slot in slots {
            if hold != old.hold {
                self.retime_hold(svc, slot, old.hold, now);
            }
            if max != old.max_flips {
                self.retime_flaps(svc, slot, now);
            }
        }
    }

    /// The hold runs from the last illegal transition: `until - old hold`.
    fn retime_hold(&mut self, svc: ServiceId, slot: MemberSlot, old_hold: i64, now: Time) {
        let hold = self.services[svc].cfg.hold;
        let m = &mut self.services[svc].members[slot];
        let name = m.name;
        let extra = m.extra();
        let Some(until) = extra.hold_until else {
            return;
        };
        let last = until.as_nanos().saturating_sub(old_hold);
        let until = Time::from_nanos(last.saturating_add(hold));
        if until <= now {
            extra.hold_until = None;
            self.resolve(
                DivKey::member(Kind::IllegalTransition, svc, name),
                now,
                None,
            );
        } else {
            extra.hold_until = Some(until);
            self.timers.schedule(until, Timer::Hold { svc, slot });
        }
    }

    /// `flapping` is open exactly when more than the limit of changes fall in
    /// the last hour.
    fn retime_flaps(&mut self, svc: ServiceId, slot: MemberSlot, now: Time) {
        let max = self.services[svc].cfg.max_flips as usize;
        let m = &mut self.services[svc].members[slot];
        let name = m.name;
        let flips = &mut m.extra().flips;
        while flips.len() > max + 1 {
            flips.pop_front();
        }
        let in_window = |t: &Time| t.as_nanos().saturating_add(HOUR) > now.as_nanos();
        let flapping = flips.len() == max + 1 && flips.front().is_some_and(in_window);
        let leaves = flips.front().map(|f| f.as_nanos().saturating_add(HOUR));
        let key = DivKey::member(Kind::Flapping, svc, name);
        let open = self.table.open_severity(&key).is_some();
        if flapping {
            let leaves = Time::from_nanos(leaves.expect("flapping has a front"));
            self.timers.schedule(leaves, Timer::Flap { svc, slot });
            if !open {
                self.open_flapping(svc, slot, now);
            }
        } else if open {
            self.resolve(key, now, None);
        }
    }

    /// Disagreements observed about this service's members: a pending one
    /// whose new deadline has passed opens now, an open one that has not yet
    /// lasted the new timeout resolves now and waits for its deadline again.
    pub(crate) fn retime_pairs(&mut self, svc: ServiceId, old: &ServiceCfg, now: Time) {
        let s = &self.services[svc];
        let timeout = s.cfg.agreement_timeout;
        if timeout == old.agreement_timeout {
            return;
        }
        let name = s.name;
        let mut keys: Vec<PairKey> = self
            .views
            .pairs
            .keys()
            .filter(|k| k.tsvc == name)
            .copied()
            .collect();
        keys.sort_unstable();
        for key in keys {
            let st = self.views.pairs.get_mut(&key).expect("listed above");
            let deadline = Time::from_nanos(st.since.as_nanos().saturating_add(timeout));
            st.deadline = deadline.max(now);
            let (kind, open) = (st.kind, st.open);
            let due = deadline <= now;
            if open && !due {
                st.open = false;
                let observer = self.services[key.obs_svc].members[key.obs_slot].name;
                let div = DivKey::pair(kind, svc, key.tmem, key.obs_svc, observer);
                self.resolve(div, now, None);
            }
            if !(open && due) {
                self.timers.schedule(
                    deadline.max(now),
                    Timer::Pair {
                        obs_svc: key.obs_svc,
                        obs_slot: key.obs_slot,
                        tsvc: key.tsvc,
                        tmem: key.tmem,
                    },
                );
            }
        }
    }
}
