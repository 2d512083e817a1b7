//! Scoring detection against ground truth.

use std::collections::{BTreeMap, BTreeSet};

use coherd_engine::Kind;
use serde::Serialize;

use crate::SimReport;
use crate::fleet::{Outcome, Truth};

/// Detection quality for one divergence kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindScore {
    /// Faults injected that must cause this kind.
    pub injected: u64,
    /// Injected faults that were detected.
    pub detected: u64,
    /// Divergences of this kind that no fault explains.
    pub false_positives: u64,
    /// detected / injected.
    pub recall: Option<f64>,
    /// detected / (detected + false positives).
    pub precision: Option<f64>,
    /// Median seconds from injection to the divergence opening.
    pub latency_p50_s: Option<f64>,
    /// Largest such latency.
    pub latency_max_s: Option<f64>,
}

/// What one scenario injected and found.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioScore {
    /// Faults injected.
    pub injected: u64,
    /// Of those, detected.
    pub detected: u64,
    /// Divergence ids no fault explains.
    pub false_positives: Vec<String>,
    /// Fault ids that were not detected.
    pub missed: Vec<String>,
}

/// A divergence as scored: its id, kind and when it first opened.
#[derive(Debug, Clone)]
pub struct Found {
    /// Divergence id.
    pub id: String,
    /// Its kind.
    pub kind: Kind,
    /// When its first episode opened.
    pub opened_at: coherd_model::Time,
}

/// Tallies per kind, with the latencies of what was detected.
#[derive(Default)]
pub struct Tally {
    kinds: BTreeMap<Kind, (KindScore, Vec<f64>)>,
}

impl Tally {
    /// Scores one scenario's divergences against its truths (episodes of one id count once).
    pub fn add(&mut self, truths: &[Truth], found: &[Found]) -> ScenarioScore {
        let mut first: BTreeMap<&str, &Found> = BTreeMap::new();
        for d in found {
            first.entry(d.id.as_str()).or_insert(d);
        }
        let truth_ids: BTreeSet<&str> = truths.iter().map(|t| t.id.as_str()).collect();
        let mut sc = ScenarioScore {
            injected: 0,
            detected: 0,
            false_positives: Vec::new(),
            missed: Vec::new(),
        };
        for t in truths {
            let (k, lat) = self.kinds.entry(t.kind).or_default();
            k.injected += 1;
            sc.injected += 1;
            match first.get(t.id.as_str()) {
                Some(d) if d.kind == t.kind => {
                    k.detected += 1;
                    sc.detected += 1;
                    lat.push(d.opened_at.seconds_since(t.injected_at));
                }
                _ => sc.missed.push(t.id.clone()),
            }
        }
        for (id, d) in &first {
            if !truth_ids.contains(id) {
                self.kinds.entry(d.kind).or_default().0.false_positives += 1;
                sc.false_positives.push(id.to_string());
            }
        }
        sc
    }

    /// Recall, precision and latency per kind.
    pub fn finish(self) -> BTreeMap<String, KindScore> {
        self.kinds
            .into_iter()
            .map(|(kind, (mut k, mut lat))| {
                lat.sort_by(f64::total_cmp);
                k.recall = (k.injected > 0).then(|| k.detected as f64 / k.injected as f64);
                k.precision = (k.detected + k.false_positives > 0)
                    .then(|| k.detected as f64 / (k.detected + k.false_positives) as f64);
                k.latency_p50_s = (!lat.is_empty()).then(|| lat[(lat.len() - 1) / 2]);
                k.latency_max_s = lat.last().copied();
                (kind.as_str().to_string(), k)
            })
            .collect()
    }
}

pub(crate) fn score(outcomes: Vec<Outcome>) -> SimReport {
    let mut tally = Tally::default();
    let mut scenarios = BTreeMap::new();
    let mut slis = BTreeMap::new();
    let mut observations = 0;
    for o in outcomes {
        observations += o.observations;
        let found: Vec<Found> = o
            .divergences
            .iter()
            .map(|d| Found {
                id: d.id.clone(),
                kind: d.kind,
                opened_at: d.opened_at,
            })
            .collect();
        scenarios.insert(o.scenario.name().to_string(), tally.add(&o.truths, &found));
        slis.extend(o.slis);
    }
    SimReport {
        kinds: tally.finish(),
        slis,
        scenarios,
        observations,
    }
}
