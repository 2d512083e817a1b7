//! Replica lag: how far each replica of a dataset trails the highest
//! position a live member reported (`replica_lag` past the dataset's
//! `max_lag`, in positions or, with `position_time`, in time).

use std::collections::BTreeMap;

use coherd_model::time::duration_nanos;
use coherd_model::{MaxLag, Severity, Time};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::ServiceId;
use crate::intern::Sym;
use crate::state::flag;

/// A dataset's latest position per member, and its lag limit.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Replicas {
    pub max_lag: Option<Limit>,
    /// member -> (position, the time the data at it was written)
    pub latest: BTreeMap<Sym, (u64, Option<Time>)>,
}

/// A lag limit: positions, or nanoseconds of position time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Limit {
    Positions(u64),
    Nanos(i64),
}

impl From<MaxLag> for Limit {
    fn from(m: MaxLag) -> Limit {
        match m {
            MaxLag::Positions(p) => Limit::Positions(p),
            MaxLag::Time(d) => Limit::Nanos(duration_nanos(d)),
        }
    }
}

/// How far one replica trails the leader.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Lag {
    pub leader: Sym,
    pub leader_position: u64,
    pub positions: u64,
    /// Nanoseconds, when both positions carry their time.
    pub nanos: Option<i64>,
}

impl Engine {
    /// Records a member's position of a dataset and judges its lag.
    pub(crate) fn record_position(
        &mut self,
        svc: ServiceId,
        member: Sym,
        ds: Sym,
        position: u64,
        time: Option<Time>,
        now: Time,
    ) {
        let r = self.signals.replicas.entry((svc, ds)).or_default();
        r.latest.insert(member, (position, time));
        if r.max_lag.is_some() {
            self.judge_lag(svc, ds, member, now);
        }
    }

    /// The live member with the highest position of a dataset.
    fn leader(&self, svc: ServiceId, ds: Sym) -> Option<(Sym, u64, Option<Time>)> {
        let s = &self.services[svc];
        let r = self.signals.replicas.get(&(svc, ds))?;
        r.latest
            .iter()
            .filter(|(m, _)| {
                s.slot_of(**m)
                    .is_some_and(|slot| s.members[slot].has(flag::LIVE))
            })
            .max_by_key(|(_, (p, _))| *p)
            .map(|(&m, &(p, t))| (m, p, t))
    }

    /// How far `member` trails the leader of `ds`.
    pub(crate) fn lag_of(&self, svc: ServiceId, ds: Sym, member: Sym) -> Option<Lag> {
        let (leader, lp, lt) = self.leader(svc, ds)?;
        let &(p, t) = self.signals.replicas.get(&(svc, ds))?.latest.get(&member)?;
        Some(Lag {
            leader,
            leader_position: lp,
            positions: lp.saturating_sub(p),
            nanos: lt
                .zip(t)
                .map(|(lt, t)| lt.as_nanos().saturating_sub(t.as_nanos()).max(0)),
        })
    }

    /// Opens, refreshes or resolves `replica_lag` for one member.
    pub(crate) fn judge_lag(&mut self, svc: ServiceId, ds: Sym, member: Sym, now: Time) {
        let Some(limit) = self
            .signals
            .replicas
            .get(&(svc, ds))
            .and_then(|r| r.max_lag)
        else {
            return;
        };
        let key = DivKey::replica_lag(svc, member, ds);
        let lag = self.lag_of(svc, ds, member);
        let over = lag.is_some_and(|l| match limit {
            Limit::Positions(max) => l.positions > max,
            Limit::Nanos(max) => l.nanos.is_some_and(|n| n > max),
        });
        let Some(lag) = lag.filter(|_| over) else {
            self.resolve(key, now, None);
            return;
        };
        self.upsert(key, Severity::Warning, now, true, |e| {
            let (position, _) = e.signals.replicas[&(svc, ds)].latest[&member];
            let evidence = json!({
                "dataset": e.syms.resolve(ds),
                "position": position,
                "leader": e.syms.resolve(lag.leader),
                "leader_position": lag.leader_position,
                "lag_positions": lag.positions,
                "lag_s": lag.nanos.map(|n| n as f64 / 1e9),
                "max_lag": match limit {
                    Limit::Positions(p) => json!(p),
                    Limit::Nanos(n) => json!(format!("{}s", n as f64 / 1e9)),
                },
            });
            (vec![e.syms.resolve(member).to_string()], evidence)
        });
    }

    /// Every replica of every dataset of a service, judged again (a new limit).
    pub(crate) fn judge_all_lags(&mut self, svc: ServiceId, now: Time) {
        let pairs: Vec<(Sym, Sym)> = self
            .signals
            .replicas
            .range((svc, Sym::MIN)..=(svc, Sym::MAX))
            .flat_map(|(&(_, ds), r)| r.latest.keys().map(move |&m| (ds, m)))
            .collect();
        let s = &self.services[svc];
        let live = |m: Sym| {
            s.slot_of(m)
                .is_some_and(|slot| s.members[slot].has(flag::LIVE))
        };
        let pairs: Vec<(Sym, Sym)> = pairs.into_iter().filter(|&(_, m)| live(m)).collect();
        for (ds, member) in pairs {
            self.judge_lag(svc, ds, member, now);
        }
    }

    /// The largest lag, in positions, of any live replica of the service.
    pub(crate) fn max_replica_lag(&self, svc: ServiceId) -> Option<u64> {
        let s = &self.services[svc];
        self.signals
            .replicas
            .range((svc, Sym::MIN)..=(svc, Sym::MAX))
            .filter_map(|(&(_, ds), r)| {
                let (_, lp, _) = self.leader(svc, ds)?;
                r.latest
                    .iter()
                    .filter(|(m, _)| {
                        s.slot_of(**m)
                            .is_some_and(|slot| s.members[slot].has(flag::LIVE))
                    })
                    .map(|(_, (p, _))| lp.saturating_sub(*p))
                    .max()
            })
            .max()
    }
}
