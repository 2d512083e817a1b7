//! Replica digests compared at equal positions: `replica_divergence`.

use std::ops::Bound;

use coherd_model::{Observation, Time};
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::Sym;
use crate::state::flag;
use coherd_model::Severity;

/// Positions kept per dataset for comparison.
const POSITIONS_KEPT: usize = 256;

/// Datasets tracked per service: a reporter naming a new dataset in every
/// report must not grow the engine without bound; checksums of datasets past
/// this are not compared.
pub(crate) const MAX_DATASETS: usize = 1024;

impl Engine {
    pub(crate) fn apply_checksums(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        now: Time,
    ) {
        if obs.checksums.is_empty() {
            return;
        }
        let name = self.services[svc].members[slot].name;
        for c in &obs.checksums {
            let known = self.syms.get(&c.dataset);
            let s = &self.services[svc];
            if known.is_none_or(|ds| !s.datasets.contains_key(&ds))
                && s.datasets.len() >= MAX_DATASETS
            {
                continue;
            }
            let ds = self.syms.intern(&c.dataset);
            let digest = self.syms.intern(&c.digest);
            self.add_checksum(svc, name, ds, c.position, digest, now);
            self.record_position(svc, name, ds, c.position, c.position_time, now);
        }
    }

    fn add_checksum(
        &mut self,
        svc: ServiceId,
        member: Sym,
        ds: Sym,
        position: u64,
        digest: Sym,
        at: Time,
    ) {
        let s = &mut self.services[svc];
        let d = s.datasets.entry(ds).or_default();
        if !d.reporters.contains(&member) {
            d.reporters.push(member);
        }
        let entry = d.positions.entry(position).or_default();
        let was_divergent = distinct(entry) > 1;
        let before = entry.len();
        match entry.iter_mut().find(|e| e.0 == member) {
            Some(e) => e.1 = digest,
            None => entry.push((member, digest)),
        }
        let (after, divergent) = (entry.len(), distinct(entry) > 1);
        while d.positions.len() > POSITIONS_KEPT {
            d.positions.pop_first();
        }
        let b = s.windows.at(at);
        if before < 2 && after >= 2 {
            b.comparisons += 1;
        }
        if divergent && !was_divergent {
            b.divergent_comparisons += 1;
        }
        let key = DivKey::replica(svc, ds);
        let d = s.datasets.get_mut(&ds).expect("inserted above");
        if divergent {
            d.divergent_max = Some(d.divergent_max.map_or(position, |m| m.max(position)));
            if !d.divergent_positions.contains(&position) {
                d.divergent_positions.push(position);
            }
            // The minority as it stands now at every divergent position still
            // kept, not as it stood while the position was filling up.
            let mut culprits: Vec<Sym> = d
                .divergent_positions
                .iter()
                .filter_map(|p| d.positions.get(p))
                .flat_map(|entry| minority(entry))
                .collect();
            culprits.sort_unstable();
            culprits.dedup();
            d.culprits = culprits;
            self.upsert(key, Severity::Critical, at, true, |e| {
                e.replica_detail(svc, ds, position)
            });
            return;
        }
        if d.divergent_max.is_some_and(|max| position > max) {
            self.resolve_if_agreed(svc, ds, position, at);
        }
    }

    /// A reporter of datasets stopped counting (silent or forgotten): open
    /// divergences it alone held back may resolve at a position already reported.
    pub(crate) fn recheck_replicas(&mut self, svc: ServiceId, member: Sym, at: Time) {
        let open: Vec<(Sym, u64)> = self.services[svc]
            .datasets
            .iter()
            .filter(|(_, d)| d.reporters.contains(&member))
            .filter_map(|(&ds, d)| d.divergent_max.map(|max| (ds, max)))
            .collect();
        for (ds, max) in open {
            let above: Vec<u64> = self.services[svc].datasets[&ds]
                .positions
                .range((Bound::Excluded(max), Bound::Unbounded))
                .map(|(&p, _)| p)
                .collect();
            for position in above {
                if self.resolve_if_agreed(svc, ds, position, at) {
                    break;
                }
            }
        }
    }

    /// Resolves the dataset's open divergence when every live member reporting
    /// it has reported one identical digest at `position` (above every divergent one).
    fn resolve_if_agreed(&mut self, svc: ServiceId, ds: Sym, position: u64, at: Time) -> bool {
        let s = &self.services[svc];
        let d = &s.datasets[&ds];
        let Some(entry) = d.positions.get(&position) else {
            return false;
        };
        if distinct(entry) > 1 {
            return false;
        }
        let live = |m: &Sym| {
            s.by_name
                .get(m)
                .is_some_and(|&sl| s.members[sl].has(flag::LIVE))
        };
        let mut live_reporters = d.reporters.iter().filter(|m| live(m)).peekable();
        // Silence never repairs data: with no live reporter left, nobody agrees.
        if live_reporters.peek().is_none() {
            return false;
        }
        let all_agree = live_reporters.all(|m| entry.iter().any(|(x, _)| x == m));
        if !all_agree {
            return false;
        }
        let detail = self.replica_detail(svc, ds, position);
        let d = self.services[svc].datasets.get_mut(&ds).expect("exists");
        d.divergent_max = None;
        d.culprits.clear();
        d.divergent_positions.clear();
        let key = DivKey::replica(svc, ds);
        self.resolve(key, at, Some(detail));
        true
    }

    fn replica_detail(
        &self,
        svc: ServiceId,
        ds: Sym,
        position: u64,
    ) -> (Vec<String>, serde_json::Value) {
        let d = &self.services[svc].datasets[&ds];
        let mut subjects: Vec<String> = d
            .culprits
            .iter()
            .map(|&m| self.syms.resolve(m).to_string())
            .collect();
        subjects.sort_unstable();
        let at_position: serde_json::Map<String, serde_json::Value> = d
            .positions
            .get(&position)
            .map(|e| {
                e.iter()
                    .map(|(m, dg)| {
                        (
                            self.syms.resolve(*m).to_string(),
                            self.syms.resolve(*dg).into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let evidence = json!({
            "dataset": self.syms.resolve(ds),
            "divergent_positions": d.divergent_positions,
            "position": position,
            "digests": at_position,
        });
        (subjects, evidence)
    }
}

fn distinct(entry: &[(Sym, Sym)]) -> usize {
    let mut seen: Vec<Sym> = entry.iter().map(|e| e.1).collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

/// Members whose digest differs from the strict majority; all of them when there is none.
fn minority(entry: &[(Sym, Sym)]) -> Vec<Sym> {
    let n = entry.len();
    let majority = entry
        .iter()
        .map(|e| e.1)
        .find(|&dg| entry.iter().filter(|e| e.1 == dg).count() * 2 > n);
    entry
        .iter()
        .filter(|e| Some(e.1) != majority)
        .map(|e| e.0)
        .collect()
}
