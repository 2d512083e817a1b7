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
    /// With `slow_ms`: the cumulative counter of requests done within it
    /// (`latency_le_<ms>`), and the threshold.
    pub slow: Option<(Sym, u32)>,
    pub values: BTreeMap<Sym, Traffic>,
}

/// Values of one facet tracked at once; more (a reporter inventing values)
/// are not counted until some leave the window.
pub(crate) const MAX_VALUES: usize = 256;

impl Canary {
    pub(crate) fn new(c: &CanaryIntent, slow: Option<Sym>) -> Canary {
        Canary {
            max_ratio: c.max_ratio,
            min_requests: c.min_requests,
            window: duration_nanos(c.window),
            alpha: c.alpha,
            slow: slow.zip(c.slow_ms),
            values: BTreeMap::new(),
        }
    }

    /// Takes a new rule, keeping the traffic seen.
    pub(crate) fn set_rule(&mut self, c: &CanaryIntent, slow: Option<Sym>) {
        let values = std::mem::take(&mut self.values);
        *self = Canary {
            values,
            ..Canary::new(c, slow)
        };
    }

    fn width(&self) -> i64 {
        (self.window / BUCKETS).max(1)
    }
}

/// What one value served: requests, errors, and of the requests timed
/// against `slow_ms`, those done within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub requests: u64,
    pub errors: u64,
    pub timed: u64,
    pub fast: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.timed = self.timed.saturating_add(o.timed);
        self.fast = self.fast.saturating_add(o.fast);
    }

    /// Takes an expired bucket out. Sums saturate on hostile counters, so
    /// this floors at zero rather than wrap.
    fn sub(&mut self, o: Counts) {
        self.requests = self.requests.saturating_sub(o.requests);
        self.errors = self.errors.saturating_sub(o.errors);
        self.timed = self.timed.saturating_sub(o.timed);
        self.fast = self.fast.saturating_sub(o.fast);
    }

    /// Errors over requests (more errors than requests is all failing).
    fn error_share(&self) -> (u64, u64) {
        (self.errors.min(self.requests), self.requests)
    }

    /// Slow over timed requests.
    fn slow_share(&self) -> (u64, u64) {
        (self.timed - self.fast.min(self.timed), self.timed)
    }
}

/// One value's counts, in buckets of a tenth of the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Traffic {
    /// (bucket start, counts), oldest first.
    buckets: VecDeque<(i64, Counts)>,
    sum: Counts,
}

impl Traffic {
    fn add(&mut self, at: i64, width: i64, c: Counts) {
        let start = at - at.rem_euclid(width);
        match self.buckets.back_mut() {
            Some(b) if b.0 >= start => b.1.add(c),
            _ => self.buckets.push_back((start, c)),
        }
        self.sum.add(c);
    }

    /// Drops buckets that ended a window or more before `now`.
    fn expire(&mut self, now: i64, window: i64, width: i64) {
        while let Some(&(start, c)) = self.buckets.front() {
            if start.saturating_add(width) > now.saturating_sub(window) {
                break;
            }
            self.buckets.pop_front();
            self.sum.sub(c);
        }
    }
}

/// A value's counts and its checks on errors and on latency.
type Judged = (Counts, Option<Check>, Option<Check>);

/// One comparison of a value with the baseline on one signal.
#[derive(Clone, Copy, Debug)]
struct Check {
    share: f64,
    n: u64,
    baseline_share: f64,
    baseline_n: u64,
    p_value: f64,
    regressed: bool,
}

impl Canary {
    /// Compares `(bad, n)` with the baseline's; none without enough requests.
    fn check(&self, (bad, n): (u64, u64), (bbad, bn): (u64, u64)) -> Option<Check> {
        if n < self.min_requests || bn < self.min_requests {
            return None;
        }
        let (p, q) = (bad as f64 / n as f64, bbad as f64 / bn as f64);
        let pv = p_value(p, n, q, bn, self.max_ratio);
        Some(Check {
            share: p,
            n,
            baseline_share: q,
            baseline_n: bn,
            p_value: pv,
            regressed: p > self.max_ratio * q && pv < self.alpha,
        })
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
    /// Counts a member's request and error deltas (and, for canaries with
    /// `slow_ms`, its latency counter's) for its values of every
    /// canary-watched facet, then re-evaluates those facets.
    pub(crate) fn canary_traffic(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        requests: u64,
        errors: u64,
        custom: &[(Sym, u64)],
        now: Time,
    ) {
        let mut watched = self.signals.canaries.range((svc, 0)..=(svc, u16::MAX));
        if (requests == 0 && errors == 0) || watched.next().is_none() {
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
            let rule = self.services[svc].columns[col as usize].rule.as_ref();
            let expected = rule.is_some_and(|r| value == r.target || value == r.prev);
            let c = self.signals.canaries.get_mut(&(svc, col)).expect("listed");
            // Invented values cannot crowd out the target and the previous one.
            if c.values.len() >= MAX_VALUES && !c.values.contains_key(&value) && !expected {
                continue;
            }
            // Timed only when the member reported its latency counter's delta.
            let fast = c
                .slow
                .and_then(|(counter, _)| custom.iter().find(|(k, _)| *k == counter))
                .map(|&(_, d)| d);
            let counts = Counts {
                requests,
                errors,
                timed: fast.map_or(0, |_| requests),
                fast: fast.unwrap_or(0),
            };
            let width = c.width();
            c.values
                .entry(value)
                .or_default()
                .add(now.as_nanos(), width, counts);
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
        let c = &*c;
        let enough = |v: Sym| c.values.get(&v).is_some_and(|t| t.sum.requests >= min);
        let baseline = if prev != NONE && prev != target && enough(prev) {
            prev
        } else {
            target
        };
        let base = c.values.get(&baseline).map_or(Counts::default(), |t| t.sum);
        // Per value: none to resolve (no traffic left), or its checks.
        let mut verdicts: Vec<(Sym, Option<Judged>)> = Vec::new();
        for (&value, t) in &c.values {
            if value == baseline {
                continue;
            }
            if t.sum.requests == 0 {
                verdicts.push((value, None));
                continue;
            }
            let errors = c.check(t.sum.error_share(), base.error_share());
            let latency = c
                .slow
                .and_then(|_| c.check(t.sum.slow_share(), base.slow_share()));
            if errors.is_none() && latency.is_none() {
                continue; // not enough traffic to judge: the verdict stands
            }
            verdicts.push((value, Some((t.sum, errors, latency))));
        }
        let (max_ratio, alpha, window_s) = (c.max_ratio, c.alpha, window as f64 / 1e9);
        let slow_ms = c.slow.map(|(_, ms)| ms);
        if let Some(c) = self.signals.canaries.get_mut(&(svc, col)) {
            c.values.retain(|_, t| t.sum.requests > 0);
        }
        for (value, verdict) in verdicts {
            let key = DivKey::canary(svc, facet, value);
            let Some((sum, errors, latency)) = verdict else {
                self.resolve(key, now, None);
                continue;
            };
            let on: Vec<&str> = [("errors", errors), ("latency", latency)]
                .into_iter()
                .filter(|(_, c)| c.is_some_and(|c| c.regressed))
                .map(|(name, _)| name)
                .collect();
            if on.is_empty() {
                self.resolve(key, now, None);
                continue;
            }
            self.upsert(key, Severity::Critical, now, true, |e| {
                let mut evidence = json!({
                    "facet": e.syms.resolve(facet),
                    "value": e.syms.resolve(value),
                    "baseline": e.syms.resolve(baseline),
                    "regressed_on": on,
                    "requests": sum.requests,
                    "errors": sum.errors,
                    "error_rate": sum.error_share().0 as f64 / sum.requests as f64,
                    "baseline_requests": base.requests,
                    "baseline_errors": base.errors,
                    "baseline_error_rate": crate::sli::ratio(base.error_share().0, base.requests),
                    "max_ratio": max_ratio,
                    "alpha": alpha,
                    "window_s": window_s,
                });
                if let Some(c) = errors {
                    evidence["p_value"] = json!(c.p_value);
                }
                if let (Some(ms), Some(c)) = (slow_ms, latency) {
                    evidence["latency"] = json!({
                        "slow_ms": ms,
                        "slow_share": c.share,
                        "timed_requests": c.n,
                        "baseline_slow_share": c.baseline_share,
                        "baseline_timed_requests": c.baseline_n,
                        "p_value": c.p_value,
                    });
                }
                (vec![e.syms.resolve(value).to_string()], evidence)
            });
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
                    let (slow, timed) = t.sum.slow_share();
                    let traffic = crate::sli::ValueTraffic {
                        requests: t.sum.requests,
                        errors: t.sum.errors,
                        error_rate: crate::sli::ratio(t.sum.error_share().0, t.sum.requests),
                        slow_share: c.slow.and_then(|_| crate::sli::ratio(slow, timed)),
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
        let c = |requests, errors| Counts {
            requests,
            errors,
            ..Counts::default()
        };
        t.add(0, width, c(10, 1));
        t.add(55, width, c(20, 2));
        t.expire(105, window, width);
        assert_eq!(t.sum, c(30, 3));
        t.expire(110, window, width);
        assert_eq!(t.sum, c(20, 2));
    }
}
