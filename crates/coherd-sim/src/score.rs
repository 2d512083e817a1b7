//! Scoring detection against ground truth.

use std::collections::{BTreeMap, BTreeSet};

use coherd_engine::Kind;
use serde::Serialize;

use crate::SimReport;
use crate::fleet::Outcome;

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

pub fn score(outcomes: Vec<Outcome>) -> SimReport {
    let mut kinds: BTreeMap<Kind, (KindScore, Vec<f64>)> = BTreeMap::new();
    let mut scenarios = BTreeMap::new();
    let mut slis = BTreeMap::new();
    let mut observations = 0;
    for o in outcomes {
        observations += o.observations;
        let mut first: BTreeMap<&str, &coherd_engine::Divergence> = BTreeMap::new();
        for d in &o.divergences {
            first.entry(d.id.as_str()).or_insert(d);
        }
        let truth_ids: BTreeSet<&str> = o.truths.iter().map(|t| t.id.as_str()).collect();
        let mut sc = ScenarioScore {
            injected: 0,
            detected: 0,
            false_positives: Vec::new(),
            missed: Vec::new(),
        };
        for t in &o.truths {
            let (k, lat) = kinds.entry(t.kind).or_default();
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
                kinds.entry(d.kind).or_default().0.false_positives += 1;
                sc.false_positives.push(id.to_string());
            }
        }
        scenarios.insert(o.scenario.name().to_string(), sc);
        slis.extend(o.slis);
    }
    let kinds = kinds
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
        .collect();
    SimReport {
        kinds,
        slis,
        scenarios,
        observations,
    }
}
