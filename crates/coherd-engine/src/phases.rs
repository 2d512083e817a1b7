//! Lifecycle phases: terminal status, `illegal_transition` and `flapping`.

use coherd_model::Time;
use serde_json::{Value, json};

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::{NONE, Sym};
use crate::state::flag;
use crate::timer::Timer;
use coherd_model::{Kind, Severity};

pub(crate) const HOUR: i64 = 3_600_000_000_000;

impl Engine {
    /// A member's phase moved from `old` (NONE on its first report) to `new`.
    /// `gap` is true when reports were missed in between (a gap in `seq`).
    pub(crate) fn set_phase(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        old: Sym,
        new: Sym,
        gap: bool,
        at: Time,
    ) {
        let s = &mut self.services[svc];
        let terminal = s.cfg.is_terminal(new);
        let m = &mut s.members[slot];
        m.phase = new;
        if m.has(flag::TERMINAL) != terminal {
            m.set(flag::TERMINAL, terminal);
            let live = m.has(flag::LIVE);
            if terminal {
                s.terminal += 1;
                if live {
                    s.counting -= 1;
                }
            } else {
                s.terminal -= 1;
                if live {
                    s.counting += 1;
                }
            }
        }
        if old == NONE {
            return;
        }
        s.windows.at(at).flips += 1;
        let known = (s.cfg.is_known(old), s.cfg.is_known(new));
        let illegal = !known.0 || !known.1 || (!gap && !s.cfg.allows(old, new));
        let hold = s.cfg.hold;
        s.members[slot].extra().phase_changed_at = Some(at);
        self.record_flip(svc, slot, at);
        if illegal {
            let until = Time::from_nanos(at.as_nanos().saturating_add(hold));
            let m = &mut self.services[svc].members[slot];
            let extra = m.extra();
            extra.hold_until = Some(until);
            extra.illegal_count += 1;
            let key = DivKey::member(Kind::IllegalTransition, svc, m.name);
            self.timers.schedule(until, Timer::Hold { svc, slot });
            self.upsert(key, Severity::Warning, at, true, |e| {
                let m = &e.services[svc].members[slot];
                let unknown: Vec<&str> = [(old, known.0), (new, known.1)]
                    .into_iter()
                    .filter(|(_, k)| !k)
                    .map(|(p, _)| e.syms.resolve(p))
                    .collect();
                let evidence = json!({
                    "from": e.syms.resolve(old),
                    "to": e.syms.resolve(new),
                    "unknown_phases": unknown,
                    "illegal_transitions": m.extra.as_ref().map_or(0, |x| x.illegal_count),
                    "last_at": at,
                });
                (vec![e.syms.resolve(m.name).to_string()], evidence)
            });
        }
    }

    fn record_flip(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let s = &mut self.services[svc];
        let max = s.cfg.max_flips as usize;
        let m = &mut s.members[slot];
        let flips = &mut m.extra().flips;
        flips.push_back(at);
        while flips.len() > max + 1 {
            flips.pop_front();
        }
        let front = *flips.front().expect("just pushed");
        if flips.len() == max + 1 && front.as_nanos().saturating_add(HOUR) > at.as_nanos() {
            let leaves = Time::from_nanos(front.as_nanos().saturating_add(HOUR));
            self.timers.schedule(leaves, Timer::Flap { svc, slot });
            self.open_flapping(svc, slot, at);
        }
    }

    pub(crate) fn open_flapping(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let name = self.services[svc].members[slot].name;
        let key = DivKey::member(Kind::Flapping, svc, name);
        self.upsert(key, Severity::Warning, at, true, |e| {
            (
                vec![e.syms.resolve(name).to_string()],
                e.flap_evidence(svc, slot, at),
            )
        });
    }

    fn flap_evidence(&self, svc: ServiceId, slot: MemberSlot, at: Time) -> Value {
        let s = &self.services[svc];
        let flips = s.members[slot].extra.as_ref().map(|x| &x.flips);
        let in_window = flips.map_or(0, |f| {
            f.iter()
                .filter(|t| t.as_nanos().saturating_add(HOUR) > at.as_nanos())
                .count()
        });
        json!({"changes_last_hour": in_window, "max_flips_per_hour": s.cfg.max_flips})
    }

    pub(crate) fn on_flap_timer(&mut self, svc: ServiceId, slot: MemberSlot, t: Time) {
        let s = &self.services[svc];
        let Some(m) = s.members.get(slot) else {
            return;
        };
        let Some(extra) = &m.extra else { return };
        let due = extra.flips.len() == s.cfg.max_flips as usize + 1
            && extra
                .flips
                .front()
                .is_some_and(|f| f.as_nanos().saturating_add(HOUR) == t.as_nanos());
        if due {
            let key = DivKey::member(Kind::Flapping, svc, m.name);
            self.resolve(key, t, None);
        }
    }

    pub(crate) fn on_hold_timer(&mut self, svc: ServiceId, slot: MemberSlot, t: Time) {
        let s = &mut self.services[svc];
        let Some(m) = s.members.get_mut(slot) else {
            return;
        };
        let name = m.name;
        let Some(extra) = m.extra.as_mut() else {
            return;
        };
        if extra.hold_until == Some(t) {
            extra.hold_until = None;
            self.resolve(DivKey::member(Kind::IllegalTransition, svc, name), t, None);
        }
    }
}
