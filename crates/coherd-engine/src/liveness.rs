//! Liveness: `silent`, members that leave, and forgetting them.

use coherd_model::Time;
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::{Engine, MemberChange};
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::NONE;
use crate::state::{Member, flag};
use crate::timer::Timer;
use coherd_model::{Kind, Severity};

impl Engine {
    /// Marks a member live (it reported); resolves its `silent`.
    pub(crate) fn set_live(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        live: bool,
        is_new: bool,
        at: Time,
    ) {
        let s = &mut self.services[svc];
        let m = &mut s.members[slot];
        if m.has(flag::LIVE) == live {
            return;
        }
        m.set(flag::LIVE, live);
        let terminal = m.has(flag::TERMINAL);
        let name = m.name;
        if live {
            s.live += 1;
            if !terminal {
                s.counting += 1;
            }
        } else {
            s.live -= 1;
            if !terminal {
                s.counting -= 1;
            }
        }
        if live && !is_new {
            self.resolve(DivKey::member(Kind::Silent, svc, name), at, None);
        }
    }

    /// Silence deadlines: members at the head of the list whose time is up.
    pub(crate) fn on_silence_timer(&mut self, svc: ServiceId, t: Time) {
        // Members whose time is up, from the head of the list. Those that fall
        // silent at one instant go in name order, so what they leave behind
        // does not depend on the order in which they last reported.
        let s = &self.services[svc];
        let mut due: Vec<(Time, &str, MemberSlot)> = Vec::new();
        let mut slot = s.head;
        while !slot.is_none() {
            let m = &s.members[slot];
            let d = Time::from_nanos(
                m.last_report
                    .as_nanos()
                    .saturating_add(s.cfg.silence_after()),
            );
            if d > t {
                self.timers.schedule(d, Timer::Silence { svc });
                break;
            }
            // Later than `d` only when a shorter report interval came in after it.
            due.push((d.max(t), self.syms.resolve(m.name), slot));
            slot = m.next;
        }
        due.sort_unstable();
        let due: Vec<(Time, MemberSlot)> = due.into_iter().map(|(d, _, slot)| (d, slot)).collect();
        for (d, slot) in due {
            self.go_silent(svc, slot, d);
        }
    }

    fn go_silent(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let was_counting = self.services[svc].members[slot].is_counting();
        self.services[svc].unlink(slot);
        self.set_live(svc, slot, false, false, at);
        let terminal = self.services[svc].members[slot].has(flag::TERMINAL);
        let change = if terminal {
            MemberChange::Left
        } else {
            MemberChange::Silent
        };
        self.member_event(svc, slot, at, change);
        let s = &self.services[svc];
        let m = &s.members[slot];
        if terminal {
            let forget = at.add(self.config.retention);
            self.timers.schedule(forget, Timer::Forget { svc, slot });
        } else {
            let key = DivKey::member(Kind::Silent, svc, m.name);
            let interval = s.cfg.report_interval;
            self.upsert(key, Severity::Warning, at, false, |e| {
                let m = &e.services[svc].members[slot];
                let evidence = json!({"last_report": m.last_report, "report_interval_s": interval as f64 / 1e9, "silent_after_s": 3.0 * interval as f64 / 1e9});
                (vec![e.syms.resolve(m.name).to_string()], evidence)
            });
        }
        self.recount_member(svc, slot, was_counting, at);
        self.reeval_viewers_of(svc, slot, at);
        self.reeval_views_of(svc, slot, at);
        let name = self.services[svc].members[slot].name;
        self.recheck_replicas(svc, name, at);
        self.refresh_coherent(svc, slot);
    }

    pub(crate) fn on_forget_timer(&mut self, svc: ServiceId, slot: MemberSlot, t: Time) {
        let s = &self.services[svc];
        let Some(m) = s.members.get(slot) else {
            return;
        };
        let due = m
            .last_report
            .as_nanos()
            .saturating_add(s.cfg.silence_after())
            .saturating_add(coherd_model::time::duration_nanos(self.config.retention));
        if m.has(flag::REMOVED) || m.has(flag::LIVE) || !m.has(flag::TERMINAL) {
            return;
        }
        if due <= t.as_nanos() {
            self.member_event(svc, slot, t, MemberChange::Forgotten);
            self.forget_member(svc, slot, t);
        } else {
            // It left under a shorter report interval: due later now.
            let due = Time::from_nanos(due);
            self.timers.schedule(due, Timer::Forget { svc, slot });
        }
    }

    /// Removes a member and everything it had open.
    pub(crate) fn forget_member(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let was_counting = self.services[svc].members[slot].is_counting();
        self.services[svc].unlink(slot);
        // Stop counting it anywhere, as if it had gone silent in a terminal phase.
        {
            let s = &mut self.services[svc];
            let m = &mut s.members[slot];
            if m.has(flag::LIVE) {
                m.set(flag::LIVE, false);
                s.live -= 1;
                if was_counting {
                    s.counting -= 1;
                }
            }
        }
        self.recount_member(svc, slot, was_counting, at);
        self.reeval_viewers_of(svc, slot, at);
        self.clear_views(svc, slot, at);
        self.drop_leases(svc, slot, at);
        let name = self.services[svc].members[slot].name;
        let open: Vec<DivKey> = self
            .table
            .open()
            .filter(|(k, _, _)| k.svc == svc && k.member_of() == Some(name))
            .map(|(k, _, _)| *k)
            .collect();
        for key in open {
            self.resolve(key, at, None);
        }
        self.recheck_replicas(svc, name, at);
        for ds in self.services[svc].datasets.values_mut() {
            ds.reporters.retain(|&r| r != name);
        }
        self.forget_positions(svc, name);
        let s = &mut self.services[svc];
        let m = &s.members[slot];
        if m.has(flag::TERMINAL) {
            s.terminal -= 1;
        }
        if m.has(flag::COHERENT) {
            s.coherent -= 1;
        }
        s.known -= 1;
        s.by_name.remove(&name);
        let mut gone = Member::new(NONE);
        gone.set(flag::REMOVED, true);
        s.members[slot] = gone;
        for c in &mut s.columns {
            c.values[slot] = NONE;
        }
        s.free.push(slot);
    }
}
