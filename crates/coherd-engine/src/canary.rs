//! Canary verdicts: error rates per value of a targeted facet, compared with
//! the baseline value's (`canary_regression`, DESIGN 3 and 4).
//!
//! Each value's request and error deltas are summed over the canary window in
//! ten buckets. The baseline is the previous target while it still has
//! `min_requests` in the window, else the target. A value regresses when its
//! error rate `p` exceeds `max_ratio` times the baseline's `q` and a one-sided
//! Wald test of `p - max_ratio x q > 0` is significant at `alpha`: when both
//! values share one rate the statistic sits well below zero, so continuous
//! evaluation does not accumulate false verdicts the way a test of `p > q`
//! would. No verdict is given without `min_requests` on both sides; a verdict
//! that cannot be re-evaluated (the baseline has no traffic left) stands,
//! and a value with no traffic left in the window (rolled back) resolves.

use std::collections::{BTreeMap, VecDeque};

use coherd_model::time::duration_nanos;
use coherd_model::{CanaryIntent, Kind, Severity, Time};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::{NONE, Sym};

/// Buckets per window.
const BUCKETS: i64 = 10;

/// A canary-watched facet: its rule and each value's recent traffic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Canary {
    pub max_ratio: f64,
    pub min_requests: u64,
    /// Nanoseconds.
    pub window: i64,
    pub alpha: f64,
    pub values: BTreeMap<Sym, Traffic>,
}

impl Canary {
    pub(crate) fn new(c: &CanaryIntent) -> Canary {
        Canary {
            max_ratio: c.max_ratio,
            min_requests: c.min_requests,
            window: duration_nanos(c.window),
            alpha: c.alpha,
            values: BTreeMap::new(),
        }
    }

    /// Takes a new rule, keeping the traffic seen.
    pub(crate) fn set_rule(&mut self, c: &CanaryIntent) {
        let values = std::mem::take(&mut self.values);
        *self = Canary {
            values,
            ..Canary::new(c)
        };
    }

    fn width(&self) -> i64 {
        (self.window / BUCKETS).max(1)
    }
}

/// Requests and errors of one value, in buckets of a tenth of the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Traffic {
    /// (bucket start, requests, errors), oldest first.
    buckets: VecDeque<(i64, u64, u64)>,
    requests: u64,
    errors: u64,
}

impl Traffic {
    fn add(&mut self, at: i64, width: i64, requests: u64, errors: u64) {
        let start = at - at.rem_euclid(width);
        match self.buckets.back_mut() {
            Some(b) if b.0 >= start => {
                b.1 = b.1.saturating_add(requests);
                b.2 = b.2.saturating_add(errors);
            }
            _ => self.buckets.push_back((start, requests, errors)),
        }
        self.requests = self.requests.saturating_add(requests);
        self.errors = self.errors.saturating_add(errors);
    }

    /// Drops buckets that ended a window or more before `now`.
    fn expire(&mut self, now: i64, window: i64, width: i64) {
        while let Some(&(start, r, e)) = self.buckets.front() {
            if start.saturating_add(width) > now.saturating_sub(window) {
                break;
            }
            self.buckets.pop_front();
            self.requests -= r;
            self.errors -= e;
        }
    }

    fn rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            // More errors than requests (counters out of step) is all failing.
            (self.errors.min(self.requests)) as f64 / self.requests as f64
        }
    }
}

/// The one-sided p-value of `p - ratio x q > 0` from `n` requests at rate
/// `p` and `m` at rate `q` (Wald, unpooled).
pub(crate) fn p_value(p: f64, n: u64, q: f64, m: u64, ratio: f64) -> f64 {
    let diff = p - ratio * q;
    let var = p * (1.0 - p) / n as f64 + ratio * ratio * q * (1.0 - q) / m as f64;
    if var <= 0.0 {
        return if diff > 0.0 { 0.0 } else { 1.0 };
    }
    let z = diff / var.sqrt();
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

impl Engine {
    /// Counts a member's request and error deltas for its values of every
    /// canary-watched facet, then re-evaluates those facets.
    pub(crate) fn canary_traffic(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        requests: u64,
        errors: u64,
        now: Time,
    ) {
        if requests == 0 && errors == 0 {
            return;
        }
        let cols: Vec<u16> = self
            .signals
            .canaries
            .range((svc, 0)..=(svc, u16::MAX))
            .map(|(&(_, c), _)| c)
            .collect();
        for col in cols {
            let value = self.services[svc].columns[col as usize].values[slot];
            if value == NONE {
                continue;
            }
            let c = self.signals.canaries.get_mut(&(svc, col)).expect("listed");
            let width = c.width();
            c.values
                .entry(value)
                .or_default()
                .add(now.as_nanos(), width, requests, errors);
            self.eval_canary(svc, col, now);
        }
    }

    /// Gives every value of a canary-watched facet its verdict at `now`.
    pub(crate) fn eval_canary(&mut self, svc: ServiceId, col: u16, now: Time) {
        let Some(rule) = self.services[svc].columns[col as usize].rule.as_ref() else {
            return;
        };
        let (target, prev) = (rule.target, rule.prev);
        let facet = self.services[svc].columns[col as usize].facet;
        let Some(c) = self.signals.canaries.get_mut(&(svc, col)) else {
            return;
        };
        let (window, width, min) = (c.window, c.width(), c.min_requests);
        for t in c.values.values_mut() {
            t.expire(now.as_nanos(), window, width);
        }
        let enough = |v: Sym| c.values.get(&v).is_some_and(|t| t.requests >= min);
        let baseline = if prev != NONE && prev != target && enough(prev) {
            prev
        } else {
            target
        };
        let base = c.values.get(&baseline).cloned().unwrap_or_default();
        let mut verdicts: Vec<(Sym, Option<Value>)> = Vec::new();
        for (&value, t) in &c.values {
            if value == baseline {
                continue;
            }
            if t.requests == 0 {
                verdicts.push((value, None));
                continue;
            }
            if t.requests < min || base.requests < min {
                continue;
            }
            let (p, q) = (t.rate(), base.rate());
            let pv = p_value(p, t.requests, q, base.requests, c.max_ratio);
            let regressed = p > c.max_ratio * q && pv < c.alpha;
            verdicts.push((
                value,
                regressed.then_some(Value {
                    baseline,
                    rate: p,
                    requests: t.requests,
                    errors: t.errors,
                    baseline_rate: q,
                    baseline_requests: base.requests,
                    baseline_errors: base.errors,
                    p_value: pv,
                }),
            ));
        }
        c.values.retain(|_, t| t.requests > 0);
        let (max_ratio, alpha, window_s) = (c.max_ratio, c.alpha, window as f64 / 1e9);
        for (value, verdict) in verdicts {
            let key = DivKey::canary(svc, facet, value);
            match verdict {
                Some(v) => self.upsert(key, Severity::Critical, now, true, |e| {
                    let evidence = json!({
                        "facet": e.syms.resolve(facet),
                        "value": e.syms.resolve(value),
                        "error_rate": v.rate,
                        "requests": v.requests,
                        "errors": v.errors,
                        "baseline": e.syms.resolve(v.baseline),
                        "baseline_error_rate": v.baseline_rate,
                        "baseline_requests": v.baseline_requests,
                        "baseline_errors": v.baseline_errors,
                        "p_value": v.p_value,
                        "max_ratio": max_ratio,
                        "alpha": alpha,
                        "window_s": window_s,
                    });
                    (vec![e.syms.resolve(value).to_string()], evidence)
                }),
                None => self.resolve(key, now, None),
            }
        }
    }

    /// Each canary-watched facet's traffic per value, for the SLIs.
    pub(crate) fn canary_traffic_of(
        &self,
        svc: ServiceId,
    ) -> BTreeMap<String, BTreeMap<String, crate::sli::ValueTraffic>> {
        let mut out = BTreeMap::new();
        for (&(_, col), c) in self.signals.canaries.range((svc, 0)..=(svc, u16::MAX)) {
            let facet = self.services[svc].columns[col as usize].facet;
            let values = c
                .values
                .iter()
                .map(|(&v, t)| {
                    let traffic = crate::sli::ValueTraffic {
                        requests: t.requests,
                        errors: t.errors,
                        error_rate: crate::sli::ratio(t.errors.min(t.requests), t.requests),
                    };
                    (self.syms.resolve(v).to_string(), traffic)
                })
                .collect();
            out.insert(self.syms.resolve(facet).to_string(), values);
        }
        out
    }

    /// Removes the canary of a column (its rule is gone): its verdicts resolve.
    pub(crate) fn drop_canary(&mut self, svc: ServiceId, col: u16, now: Time) {
        let Some(c) = self.signals.canaries.remove(&(svc, col)) else {
            return;
        };
        let facet = self.services[svc].columns[col as usize].facet;
        let open: Vec<DivKey> = self
            .table
            .open()
            .filter(|(k, _, _)| k.svc == svc && k.kind == Kind::CanaryRegression)
            .map(|(k, _, _)| *k)
            .filter(|k| k.facet_of() == Some(facet))
            .collect();
        drop(c);
        for key in open {
            self.resolve(key, now, None);
        }
    }
}

/// A regressed value, for its evidence.
struct Value {
    baseline: Sym,
    rate: f64,
    requests: u64,
    errors: u64,
    baseline_rate: f64,
    baseline_requests: u64,
    baseline_errors: u64,
    p_value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_rates_are_never_significant_and_a_real_regression_is() {
        // Both at 1 %: the statistic is far below zero.
        assert!(p_value(0.01, 10_000, 0.01, 10_000, 2.0) > 0.99);
        // 5 % against 0.1 % on 2 000 requests each.
        assert!(p_value(0.05, 2000, 0.001, 2000, 2.0) < 1e-9);
        // Exactly at the ratio: one half.
        assert!((p_value(0.02, 1000, 0.01, 1000, 2.0) - 0.5).abs() < 1e-12);
        // Nothing failing anywhere, or everything: no evidence of a regression.
        assert_eq!(p_value(0.0, 1000, 0.0, 1000, 2.0), 1.0);
    }

    #[test]
    fn traffic_leaves_the_window_a_bucket_at_a_time() {
        let mut t = Traffic::default();
        let (window, width) = (100, 10);
        t.add(0, width, 10, 1);
        t.add(55, width, 20, 2);
        t.expire(105, window, width);
        assert_eq!((t.requests, t.errors), (30, 3));
        t.expire(110, window, width);
        assert_eq!((t.requests, t.errors), (20, 2));
    }
}
