//! Unapproved exposure: requests served by members whose value of a targeted
//! facet is lagging or foreign, as opposed to converging inside an approved
//! rollout window (DESIGN 4 `exposure`, split). An exposure alert on this
//! share does not fire on every rollout.

use coherd_model::Time;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::Sym;
use crate::sli::add_exposed;
use crate::state::Class;

const BUCKET_NS: i64 = 10_000_000_000;
const BUCKETS: usize = 360;

/// Per 10-second bucket over the last hour: unapproved requests per facet.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Unapproved {
    buckets: Vec<(i64, Vec<(Sym, u64)>)>,
}

impl Unapproved {
    fn add(&mut self, now: Time, facet: Sym, n: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![(i64::MIN, Vec::new()); BUCKETS];
        }
        let idx = now.as_nanos().div_euclid(BUCKET_NS);
        let b = &mut self.buckets[idx.rem_euclid(BUCKETS as i64) as usize];
        if b.0 != idx {
            b.0 = idx;
            b.1.clear();
        }
        add_exposed(&mut b.1, facet, n);
    }

    /// Unapproved requests of `facet` within `span` before `now`.
    pub(crate) fn sum(&self, now: Time, span: i64, facet: Sym) -> u64 {
        let hi = now.as_nanos().div_euclid(BUCKET_NS);
        let lo = hi - span / BUCKET_NS + 1;
        self.buckets
            .iter()
            .filter(|(idx, _)| *idx >= lo && *idx <= hi)
            .flat_map(|(_, v)| v.iter())
            .filter(|(f, _)| *f == facet)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Engine {
    /// Counts a member's requests against every targeted facet where its
    /// value is lagging or foreign.
    pub(crate) fn count_unapproved(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        requests: u64,
        now: Time,
    ) {
        let s = &self.services[svc];
        let mut off: Vec<Sym> = Vec::new();
        for c in &s.columns {
            if let Some(r) = c.rule.as_ref().filter(|r| r.targeted())
                && matches!(
                    r.classify(c.values[slot], now),
                    Class::Lagging | Class::Foreign
                )
            {
                off.push(c.facet);
            }
        }
        if off.is_empty() {
            return;
        }
        let u = self.signals.unapproved.entry(svc).or_default();
        for facet in off {
            u.add(now, facet, requests);
        }
    }
}
