//! Counters: request deltas for the SLIs, restarts, and drain growth.

use coherd_model::{Observation, Time};

use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::{NONE, Sym};
use crate::sli::add_exposed;
use crate::state::flag;

/// The delta of a monotonic counter; a decrease is a restart from zero.
pub(crate) fn delta(old: u64, new: u64) -> u64 {
    if new >= old { new - old } else { new }
}

impl Engine {
    pub(crate) fn apply_counters(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        old_phase: Sym,
        new_phase: Sym,
        now: Time,
    ) {
        if obs.counters.is_empty() {
            return;
        }
        let s = &mut self.services[svc];
        let m = &mut s.members[slot];
        let seen = m.has(flag::HAS_REQUESTS);
        m.set(flag::HAS_REQUESTS, true);
        let (mut requests, mut grew) = (0, false);
        let (mut errors, mut schema_errors, mut duplicates) = (0, 0, 0);
        // Deltas of the member's own counters (a canary's latency counter).
        let mut custom_deltas: Vec<(Sym, u64)> = Vec::new();
        for (k, &v) in &obs.counters {
            let slot_ref = match k.as_str() {
                "requests" => &mut m.requests,
                "errors" => &mut m.errors,
                "schema_errors" => &mut m.schema_errors,
                "duplicates" => &mut m.duplicates,
                other => {
                    let sym = self.syms.intern(other);
                    let custom = &mut m.extra.get_or_insert_with(Default::default).custom_counters;
                    match custom.iter_mut().find(|(c, _)| *c == sym) {
                        Some(e) => {
                            custom_deltas.push((sym, delta(e.1, v)));
                            e.1 = v;
                        }
                        None => custom.push((sym, v)),
                    }
                    continue;
                }
            };
            let d = if seen { delta(*slot_ref, v) } else { 0 };
            match k.as_str() {
                "requests" => {
                    requests = d;
                    grew = seen && v > *slot_ref;
                }
                "errors" => errors = d,
                "schema_errors" => schema_errors = d,
                _ => duplicates = d,
            }
            *slot_ref = v;
        }
        let non_serving = |p: Sym| p != NONE && !s.cfg.is_serving(p);
        let drained = non_serving(old_phase) && non_serving(new_phase);
        let counts = m.is_counting();
        let b = s.windows.at(now);
        // Counters come from members: sums saturate rather than wrap.
        b.requests = b.requests.saturating_add(requests);
        b.errors = b.errors.saturating_add(errors);
        b.schema_errors = b.schema_errors.saturating_add(schema_errors);
        b.duplicates = b.duplicates.saturating_add(duplicates);
        let mut unapproved = false;
        if requests > 0 && counts {
            for c in &s.columns {
                if let Some(r) = c.rule.as_ref().filter(|r| r.targeted())
                    && c.values[slot] != r.target
                {
                    add_exposed(&mut b.exposed, c.facet, requests);
                    unapproved = true;
                }
            }
        }
        if drained && requests > 0 {
            b.nonserving_requests = b.nonserving_requests.saturating_add(requests);
        }
        if drained && grew {
            self.drain_growth(svc, slot, requests, now);
        }
        if unapproved {
            self.count_unapproved(svc, slot, requests, now);
        }
        if counts {
            self.canary_traffic(svc, slot, requests, errors, &custom_deltas, now);
        }
    }
}
