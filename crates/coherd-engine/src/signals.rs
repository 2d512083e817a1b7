//! What the fleet's own numbers say: canary traffic per facet value and
//! replica positions per dataset, and their rules from the intent.
//!
//! Kept apart from the services' state so that a checkpoint of the format
//! before them (which ends where this begins) still loads.

use std::collections::BTreeMap;

use coherd_model::{ServiceIntent, Time};
use serde::{Deserialize, Serialize};

use crate::canary::Canary;
use crate::engine::Engine;
use crate::ids::ServiceId;
use crate::intern::Sym;
use crate::lag::{Limit, Replicas};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Signals {
    /// By (service, column).
    pub canaries: BTreeMap<(ServiceId, u16), Canary>,
    /// By (service, dataset).
    pub replicas: BTreeMap<(ServiceId, Sym), Replicas>,
    /// Requests served lagging or foreign, by service.
    pub unapproved: BTreeMap<ServiceId, crate::exposure::Unapproved>,
    /// The member labels each service is broken down by.
    pub breakdowns: BTreeMap<ServiceId, Vec<Sym>>,
}

impl Engine {
    /// Takes a service's canary and lag rules from its intent and judges
    /// again what they govern.
    pub(crate) fn apply_signal_rules(&mut self, svc: ServiceId, si: &ServiceIntent, now: Time) {
        for c in 0..self.services[svc].columns.len() {
            let col = c as u16;
            let facet = self.syms.resolve(self.services[svc].columns[c].facet);
            match si.facets.get(facet).and_then(|f| f.canary.as_ref()) {
                Some(rule) => {
                    let slow = rule
                        .slow_ms
                        .map(|ms| self.syms.intern(&format!("latency_le_{ms}")));
                    self.signals
                        .canaries
                        .entry((svc, col))
                        .and_modify(|k| k.set_rule(rule, slow))
                        .or_insert_with(|| Canary::new(rule, slow));
                    self.eval_canary(svc, col, now);
                }
                None => self.drop_canary(svc, col, now),
            }
        }
        let labels: Vec<Sym> = si.breakdown.iter().map(|l| self.syms.intern(l)).collect();
        let before = self
            .signals
            .breakdowns
            .get(&svc)
            .cloned()
            .unwrap_or_default();
        if labels != before {
            if labels.is_empty() {
                self.signals.breakdowns.remove(&svc);
            } else {
                self.signals.breakdowns.insert(svc, labels);
            }
            self.refresh_contexts();
        }
        let mut limits: BTreeMap<Sym, Limit> = BTreeMap::new();
        for (name, d) in &si.datasets {
            if let Some(max) = d.max_lag {
                limits.insert(self.syms.intern(name), max.into());
            }
        }
        let mut changed = false;
        for (&ds, limit) in &limits {
            let r = self.signals.replicas.entry((svc, ds)).or_default();
            changed |= r.max_lag != Some(*limit);
            r.max_lag = Some(*limit);
        }
        for ((_, ds), r) in self
            .signals
            .replicas
            .range_mut((svc, Sym::MIN)..=(svc, Sym::MAX))
        {
            if !limits.contains_key(ds) && r.max_lag.is_some() {
                r.max_lag = None;
                changed = true;
            }
        }
        if changed {
            self.resolve_lags_without_limit(svc, now);
            self.judge_all_lags(svc, now);
        }
    }

    fn resolve_lags_without_limit(&mut self, svc: ServiceId, now: Time) {
        let open: Vec<_> = self
            .table
            .open()
            .filter(|(k, _, _)| k.svc == svc && k.kind == coherd_model::Kind::ReplicaLag)
            .map(|(k, _, _)| *k)
            .filter(|k| match k.subject {
                crate::divergence::Subject::MemberDataset { dataset, .. } => self
                    .signals
                    .replicas
                    .get(&(svc, dataset))
                    .is_none_or(|r| r.max_lag.is_none()),
                _ => false,
            })
            .collect();
        for key in open {
            self.resolve(key, now, None);
        }
    }

    /// A member is forgotten: its positions go.
    pub(crate) fn forget_positions(&mut self, svc: ServiceId, member: Sym) {
        for (_, r) in self
            .signals
            .replicas
            .range_mut((svc, Sym::MIN)..=(svc, Sym::MAX))
        {
            r.latest.remove(&member);
        }
    }
}
