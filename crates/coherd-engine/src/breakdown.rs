//! Breakdowns: chosen member labels (`breakdown: [region, zone]`) split a
//! service's SLIs, and each member-level divergence carries its member's
//! deploy and those labels, so alerts group by deploy or region.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::ServiceId;
use crate::intern::{NONE, Sym};
use crate::sli::ratio;
use crate::state::flag;

/// Values kept apart per label; the rest are summed as `other`.
pub const MAX_BREAKDOWN_VALUES: usize = 64;

/// The SLIs of the members with one value of a breakdown label.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BreakdownSlis {
    /// Known members.
    pub members: u32,
    /// Members reporting.
    pub live: u32,
    /// Known non-terminal members that stopped reporting.
    pub silent: u32,
    /// Coherent over known non-terminal members.
    pub coherence: Option<f64>,
    /// Live non-terminal over known non-terminal members.
    pub telemetry_completeness: Option<f64>,
    #[serde(skip)]
    coherent: u32,
    #[serde(skip)]
    non_terminal: u32,
    #[serde(skip)]
    counting: u32,
}

/// Deploy and breakdown labels of a divergence's member.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The member's `deploy`.
    pub deploy: Option<String>,
    /// The member's values of the service's breakdown labels.
    pub labels: BTreeMap<String, String>,
}

impl Engine {
    /// The member's deploy and breakdown labels, for a member-level key.
    pub(crate) fn context_of(&self, key: &DivKey) -> Context {
        let Some(member) = key.member_of().filter(|_| key.kind.is_member_level()) else {
            return Context::default();
        };
        let s = &self.services[key.svc];
        let Some(slot) = s.slot_of(member) else {
            return Context::default();
        };
        let m = &s.members[slot];
        let set = self.labels.get(m.labels);
        let labels = self
            .signals
            .breakdowns
            .get(&key.svc)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let v = set.iter().find(|(k, _)| k == l)?.1;
                Some((
                    self.syms.resolve(*l).to_string(),
                    self.syms.resolve(v).to_string(),
                ))
            })
            .collect();
        Context {
            deploy: (m.deploy != NONE).then(|| self.syms.resolve(m.deploy).to_string()),
            labels,
        }
    }

    /// Sets the context of every record from the members as they are now
    /// (after a checkpoint is loaded, or the breakdown labels changed).
    pub(crate) fn refresh_contexts(&mut self) {
        for i in 0..self.table.records.len() {
            let key = self.table.records[i].key;
            let Context { deploy, labels } = self.context_of(&key);
            let r = &mut self.table.records[i];
            if r.is_open() || (r.deploy.is_none() && r.labels.is_empty()) {
                r.deploy = deploy;
                r.labels = labels;
            }
        }
    }

    /// A service's SLIs per value of each breakdown label.
    pub(crate) fn breakdown_slis(
        &self,
        svc: ServiceId,
    ) -> BTreeMap<String, BTreeMap<String, BreakdownSlis>> {
        let mut out = BTreeMap::new();
        let Some(labels) = self.signals.breakdowns.get(&svc) else {
            return out;
        };
        let s = &self.services[svc];
        for &label in labels {
            let mut by: BTreeMap<Sym, BreakdownSlis> = BTreeMap::new();
            for m in s.members.iter().filter(|m| !m.has(flag::REMOVED)) {
                let set = self.labels.get(m.labels);
                let value = set.iter().find(|(k, _)| *k == label).map_or(NONE, |p| p.1);
                let full = by.len() >= MAX_BREAKDOWN_VALUES && !by.contains_key(&value);
                let e = by.entry(if full { OTHER } else { value }).or_default();
                e.members += 1;
                let live = m.has(flag::LIVE);
                let terminal = m.has(flag::TERMINAL);
                e.live += live as u32;
                e.silent += (!live && !terminal) as u32;
                e.non_terminal += !terminal as u32;
                e.counting += (live && !terminal) as u32;
                e.coherent += m.has(flag::COHERENT) as u32;
            }
            let values = by
                .into_iter()
                .map(|(v, mut b)| {
                    b.coherence = ratio(b.coherent as u64, b.non_terminal as u64);
                    b.telemetry_completeness = ratio(b.counting as u64, b.non_terminal as u64);
                    let name = match v {
                        NONE => "none".to_string(),
                        OTHER => "other".to_string(),
                        v => self.syms.resolve(v).to_string(),
                    };
                    (name, b)
                })
                .collect();
            out.insert(self.syms.resolve(label).to_string(), values);
        }
        out
    }
}

/// The bucket for values past [`MAX_BREAKDOWN_VALUES`] (no interned string is this).
const OTHER: Sym = Sym::OTHER;
