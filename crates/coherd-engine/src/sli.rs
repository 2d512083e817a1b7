//! Service level indicators: time-bucketed sums for the 5 m and 1 h windows,
//! and small summaries for latencies.

use std::collections::{BTreeMap, VecDeque};

use coherd_model::Time;
use serde::{Deserialize, Serialize};

use crate::intern::Sym;

const BUCKET_NS: i64 = 10_000_000_000;
const BUCKETS: usize = 360;
/// The 5-minute window.
pub(crate) const W5M: i64 = 300_000_000_000;
/// The 1-hour window.
pub(crate) const W1H: i64 = 3_600_000_000_000;

/// Sums over one 10-second bucket.
#[derive(Clone, Default, Debug, Serialize, Deserialize)]
pub(crate) struct Bucket {
    pub idx: i64,
    pub requests: u64,
    pub nonserving_requests: u64,
    pub errors: u64,
    pub schema_errors: u64,
    pub duplicates: u64,
    pub coherence_sum: f64,
    pub coherence_secs: f64,
    pub flips: u64,
    pub comparisons: u64,
    pub divergent_comparisons: u64,
    pub exposed: Vec<(Sym, u64)>,
}

impl Bucket {
    fn merge(&mut self, o: &Bucket) {
        self.requests = self.requests.saturating_add(o.requests);
        self.nonserving_requests = self
            .nonserving_requests
            .saturating_add(o.nonserving_requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.schema_errors = self.schema_errors.saturating_add(o.schema_errors);
        self.duplicates = self.duplicates.saturating_add(o.duplicates);
        self.coherence_sum += o.coherence_sum;
        self.coherence_secs += o.coherence_secs;
        self.flips += o.flips;
        self.comparisons += o.comparisons;
        self.divergent_comparisons += o.divergent_comparisons;
        for &(f, n) in &o.exposed {
            add_exposed(&mut self.exposed, f, n);
        }
    }

    pub(crate) fn exposed(&self, facet: Sym) -> u64 {
        self.exposed
            .iter()
            .find(|(f, _)| *f == facet)
            .map_or(0, |(_, n)| *n)
    }
}

pub(crate) fn add_exposed(v: &mut Vec<(Sym, u64)>, facet: Sym, n: u64) {
    match v.iter_mut().find(|(f, _)| *f == facet) {
        Some((_, x)) => *x = x.saturating_add(n),
        None => v.push((facet, n)),
    }
}

/// A ring of buckets covering the last hour, plus the coherence integrator.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Windows {
    buckets: Vec<Bucket>,
    coherence: Option<f64>,
    coherence_since: Option<Time>,
    pub detection_latency: Summary,
    pub phase_change_latency: Summary,
}

impl Windows {
    /// The bucket for `now`, cleared if it held an older period.
    pub(crate) fn at(&mut self, now: Time) -> &mut Bucket {
        if self.buckets.is_empty() {
            self.buckets = vec![
                Bucket {
                    idx: i64::MIN,
                    ..Bucket::default()
                };
                BUCKETS
            ];
        }
        let idx = now.as_nanos().div_euclid(BUCKET_NS);
        let b = &mut self.buckets[idx.rem_euclid(BUCKETS as i64) as usize];
        if b.idx != idx {
            let mut exposed = std::mem::take(&mut b.exposed);
            exposed.clear();
            *b = Bucket {
                idx,
                exposed,
                ..Bucket::default()
            };
        }
        b
    }

    /// Sums of the buckets within `span` before `now`.
    pub(crate) fn sum(&self, now: Time, span: i64) -> Bucket {
        let mut out = Bucket::default();
        let hi = now.as_nanos().div_euclid(BUCKET_NS);
        let lo = hi - span / BUCKET_NS + 1;
        for b in &self.buckets {
            if b.idx >= lo && b.idx <= hi {
                out.merge(b);
            }
        }
        out
    }

    /// Records that instantaneous coherence is `ratio` from `now` on.
    pub(crate) fn coherence_changed(&mut self, now: Time, ratio: Option<f64>) {
        if let (Some(prev), Some(since)) = (self.coherence, self.coherence_since) {
            self.integrate(since, now, prev);
        }
        self.coherence = ratio;
        self.coherence_since = Some(now);
    }

    fn integrate(&mut self, from: Time, to: Time, ratio: f64) {
        let mut t = from.as_nanos().max(to.as_nanos().saturating_sub(W1H));
        let end = to.as_nanos();
        while t < end {
            let next = (t.div_euclid(BUCKET_NS) + 1).saturating_mul(BUCKET_NS);
            let seg_end = next.min(end);
            let secs = (seg_end - t) as f64 / 1e9;
            let b = self.at(Time::from_nanos(t));
            b.coherence_sum += ratio * secs;
            b.coherence_secs += secs;
            t = seg_end;
        }
    }

    /// Time-weighted coherence over `span` before `now`.
    pub(crate) fn coherence_over(&mut self, now: Time, span: i64) -> Option<f64> {
        self.coherence_changed(now, self.coherence);
        let s = self.sum(now, span);
        (s.coherence_secs > 0.0).then(|| s.coherence_sum / s.coherence_secs)
    }
}

/// Count, mean, max and recent quantiles of a latency.
#[derive(Default, Clone, Serialize, Deserialize)]
pub(crate) struct Summary {
    count: u64,
    sum: f64,
    max: f64,
    recent: VecDeque<f64>,
}

impl Summary {
    pub(crate) fn record(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.max = self.max.max(v);
        if self.recent.len() == 1024 {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
    }

    pub(crate) fn snapshot(&self) -> LatencySummary {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let q = |p: f64| {
            (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
        };
        LatencySummary {
            count: self.count,
            mean: (self.count > 0).then(|| self.sum / self.count as f64),
            p50: q(0.5),
            p99: q(0.99),
            max: (self.count > 0).then_some(self.max),
        }
    }
}

/// A latency summary in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Mean of all samples.
    pub mean: Option<f64>,
    /// Median of the recent samples.
    pub p50: Option<f64>,
    /// 99th percentile of the recent samples.
    pub p99: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
}

/// A ratio over the 5-minute and 1-hour windows; `None` where nothing was counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Windowed {
    /// Over the last 5 minutes.
    #[serde(rename = "5m")]
    pub w5m: Option<f64>,
    /// Over the last hour.
    #[serde(rename = "1h")]
    pub w1h: Option<f64>,
}

/// Exposure of one facet: the share of traffic served off target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exposure {
    /// Counting members off target over counting members, now.
    pub now: Option<f64>,
    /// Requests served off target over all requests (member share when no counters).
    #[serde(rename = "5m")]
    pub w5m: Option<f64>,
    /// As `5m`, over the last hour.
    #[serde(rename = "1h")]
    pub w1h: Option<f64>,
    /// The share served lagging or foreign: exposure outside an approved
    /// rollout window (what exposure alerts watch).
    pub unapproved: UnapprovedExposure,
}

/// Exposure outside approved rollout windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnapprovedExposure {
    /// Counting members lagging or foreign over counting members, now.
    pub now: Option<f64>,
    /// Requests served lagging or foreign over all requests (member share
    /// when no counters).
    #[serde(rename = "5m")]
    pub w5m: Option<f64>,
    /// As `5m`, over the last hour.
    #[serde(rename = "1h")]
    pub w1h: Option<f64>,
}

/// Convergence of the latest change of a targeted facet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Convergence {
    /// Change number (1 = the first target).
    pub revision: u32,
    /// The target of the change.
    pub target: String,
    /// When the change started.
    pub started_at: Time,
    /// Seconds until 95 % of live members were at target.
    pub p95_seconds: Option<f64>,
    /// Seconds until all live members were at target.
    pub p100_seconds: Option<f64>,
}

/// Every SLI of one service (DESIGN section 4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSlis {
    /// Known members (live, silent or left but not forgotten).
    pub members: u32,
    /// Members reporting.
    pub live: u32,
    /// Known non-terminal members that stopped reporting.
    pub silent: u32,
    /// Live members at target (or converging) with no open member-level divergence, over known non-terminal members.
    pub coherence: Option<f64>,
    /// Time-weighted coherence over the last 5 minutes.
    pub coherence_5m: Option<f64>,
    /// Time-weighted coherence over the last hour.
    pub coherence_1h: Option<f64>,
    /// Live members over `expect_members` (or over known members).
    pub telemetry_completeness: Option<f64>,
    /// Per targeted facet.
    pub exposure: BTreeMap<String, Exposure>,
    /// Per targeted facet, the latest change.
    pub convergence: BTreeMap<String, Convergence>,
    /// Divergent (dataset, position) comparisons over all comparisons.
    pub replica_divergence_rate: Windowed,
    /// (observer, member) pairs that disagree over pairs with a view, now.
    pub phase_mismatch_rate: Option<f64>,
    /// Requests served while non-serving over all requests.
    pub drain_failure_rate: Windowed,
    /// From a member's phase change to every observer agreeing.
    pub phase_change_latency_seconds: LatencySummary,
    /// Phase changes per member over the last hour.
    pub flap_frequency: Option<f64>,
    /// From the condition becoming true to the divergence opening.
    pub detection_latency_seconds: LatencySummary,
    /// Schema errors over requests.
    pub schema_error_rate: Windowed,
    /// Duplicates over requests.
    pub duplicate_rate: Windowed,
    /// Errors over requests.
    pub error_rate: Windowed,
    /// Per canary-watched facet, each value's traffic over the canary window.
    pub canary: BTreeMap<String, BTreeMap<String, ValueTraffic>>,
    /// How far the live replica furthest behind trails its dataset's highest
    /// live position, in positions; `None` without checksums.
    pub replica_lag_positions: Option<u64>,
    /// Per breakdown label (intent `breakdown`), per value: members,
    /// coherence and completeness.
    pub breakdown: BTreeMap<String, BTreeMap<String, crate::breakdown::BreakdownSlis>>,
}

/// One value's requests and errors over a canary window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueTraffic {
    /// Requests served in the window.
    pub requests: u64,
    /// Of them, failed.
    pub errors: u64,
    /// Errors over requests.
    pub error_rate: Option<f64>,
    /// With the canary's `slow_ms`: requests slower than it over requests timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_share: Option<f64>,
}

/// `num / den` when `den > 0`.
pub(crate) fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}
