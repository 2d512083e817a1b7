//! Leases on exclusive resources: `split_brain` and `stale_epoch`.

use coherd_model::{Observation, Time};
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::Sym;
use crate::state::HeldLease;
use crate::timer::Timer;
use coherd_model::Severity;

impl Engine {
    /// Replaces a member's leases with the report's (absent means none).
    pub(crate) fn apply_leases(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        now: Time,
    ) {
        let had = self.services[svc].members[slot]
            .extra
            .as_ref()
            .is_some_and(|x| !x.leases.is_empty());
        if obs.leases.is_empty() && !had {
            return;
        }
        let new: Vec<HeldLease> = obs
            .leases
            .iter()
            .map(|l| HeldLease {
                resource: self.syms.intern(&l.resource),
                epoch: l.epoch,
                expires: l.expires,
            })
            .collect();
        let old = std::mem::replace(
            &mut self.services[svc].members[slot].extra().leases,
            new.clone(),
        );
        self.update_holdings(svc, slot, &old, &new, now);
    }

    /// Drops every lease of a member that is being forgotten.
    pub(crate) fn drop_leases(&mut self, svc: ServiceId, slot: MemberSlot, at: Time) {
        let old = match self.services[svc].members[slot].extra.as_mut() {
            Some(x) => std::mem::take(&mut x.leases),
            None => return,
        };
        self.update_holdings(svc, slot, &old, &[], at);
    }

    fn update_holdings(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        old: &[HeldLease],
        new: &[HeldLease],
        now: Time,
    ) {
        let name = self.services[svc].members[slot].name;
        let mut resources: Vec<Sym> = old.iter().chain(new).map(|l| l.resource).collect();
        resources.sort_unstable();
        resources.dedup();
        for res in resources {
            if !self.services[svc].cfg.exclusive.contains(&res) {
                continue;
            }
            let r = self.services[svc].resources.entry(res).or_default();
            r.holders.retain(|h| h.0 != name);
            match new.iter().find(|l| l.resource == res) {
                Some(l) => {
                    r.max_epoch = r.max_epoch.max(l.epoch);
                    r.holders.push((name, l.epoch, l.expires));
                    if l.expires > now {
                        self.timers
                            .schedule(l.expires, Timer::Lease { svc, resource: res });
                    }
                }
                None => self.resolve(DivKey::stale_epoch(svc, name, res), now, None),
            }
            self.eval_resource(svc, res, now);
        }
    }

    /// Re-evaluates one exclusive resource at `at`: expired holders drop out.
    pub(crate) fn eval_resource(&mut self, svc: ServiceId, res: Sym, at: Time) {
        let Some(r) = self.services[svc].resources.get_mut(&res) else {
            return;
        };
        let expired: Vec<Sym> = r
            .holders
            .iter()
            .filter(|h| h.2 <= at)
            .map(|h| h.0)
            .collect();
        r.holders.retain(|h| h.2 > at);
        let max_epoch = r.max_epoch;
        let mut holders = r.holders.clone();
        holders.sort_unstable_by_key(|h| self.syms.resolve(h.0));
        for m in expired {
            self.resolve(DivKey::stale_epoch(svc, m, res), at, None);
        }
        let split = DivKey::split_brain(svc, res);
        if holders.len() >= 2 {
            let shown = Some((max_epoch, holders.clone()));
            let changed = self.services[svc].resources[&res].last_split != shown;
            self.upsert(split, Severity::Critical, at, changed, |e| {
                let list: Vec<_> = holders
                    .iter()
                    .map(|h| json!({"member": e.syms.resolve(h.0), "epoch": h.1, "expires": h.2}))
                    .collect();
                let subjects = holders.iter().map(|h| e.syms.resolve(h.0).to_string()).collect();
                (subjects, json!({"resource": e.syms.resolve(res), "holders": list, "highest_epoch": max_epoch}))
            });
            if let Some(r) = self.services[svc].resources.get_mut(&res) {
                r.last_split = shown;
            }
        } else {
            self.resolve(split, at, None);
            if let Some(r) = self.services[svc].resources.get_mut(&res) {
                r.last_split = None;
            }
        }
        for &(m, epoch, expires) in &holders {
            let key = DivKey::stale_epoch(svc, m, res);
            if epoch < max_epoch {
                self.upsert(key, Severity::Critical, at, false, |e| {
                    let evidence = json!({"resource": e.syms.resolve(res), "epoch": epoch, "highest_epoch": max_epoch, "expires": expires});
                    (vec![e.syms.resolve(m).to_string()], evidence)
                });
            } else {
                self.resolve(key, at, None);
            }
        }
    }
}
