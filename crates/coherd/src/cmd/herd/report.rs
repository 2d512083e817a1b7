//! Measures of a set of runs and the offsets that would spread them.

use super::*;

/// R, peak concurrency, peak-to-mean and histogram of a set of runs.
pub(super) struct Measures {
    pub(super) order_parameter: f64,
    pub(super) peak_concurrency: usize,
    pub(super) peak_to_mean: f64,
    pub(super) histogram: Vec<usize>,
}

impl Measures {
    pub(super) fn of(runs: &[Run], period: Duration, slots: usize) -> anyhow::Result<Self> {
        let starts = || runs.iter().map(|run| run.start);
        let histogram = histogram(starts(), period, slots)?;
        Ok(Self {
            order_parameter: order_parameter(starts(), period)?,
            peak_concurrency: peak_concurrency(runs.iter().map(|run| (run.start, run.end))),
            peak_to_mean: peak_to_mean(&histogram).unwrap_or(0.0),
            histogram,
        })
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "order_parameter": round(self.order_parameter),
            "peak_concurrency": self.peak_concurrency,
            "peak_to_mean": round(self.peak_to_mean),
            "histogram": self.histogram,
        })
    }
}

/// Per-kind breakdown.
pub(super) struct KindReport {
    pub(super) kind: String,
    pub(super) events: usize,
    pub(super) members: usize,
    pub(super) measures: Measures,
}

/// What delaying every run by a recommended offset would give.
pub(super) struct Recommendation {
    pub(super) method: &'static str,
    pub(super) description: &'static str,
    pub(super) measures: Measures,
    /// Kind to member to offset.
    pub(super) offsets: BTreeMap<String, BTreeMap<String, Duration>>,
}

/// The whole report.
pub(super) struct Report {
    pub(super) events: usize,
    pub(super) members: usize,
    pub(super) measures: Measures,
    pub(super) kinds: Vec<KindReport>,
    pub(super) recommendations: Vec<Recommendation>,
}

impl Report {
    pub(super) fn new(runs: &[Run], period: Duration, slots: usize) -> anyhow::Result<Self> {
        let mut by_kind: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for run in runs {
            by_kind.entry(&run.kind).or_default().push(run.clone());
        }
        let kinds = by_kind
            .iter()
            .map(|(kind, kind_runs)| {
                Ok(KindReport {
                    kind: (*kind).to_owned(),
                    events: kind_runs.len(),
                    members: distinct_members(kind_runs),
                    measures: Measures::of(kind_runs, period, slots)?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let recommendations = vec![
            recommend_spread(&by_kind, period, slots)?,
            recommend_stable(&by_kind, period, slots)?,
        ];
        Ok(Self {
            events: runs.len(),
            members: distinct_members(runs),
            measures: Measures::of(runs, period, slots)?,
            kinds,
            recommendations,
        })
    }

    pub(super) fn to_json(&self, period: Duration, slots: usize) -> Value {
        let mut output = self.measures.to_json();
        let kinds: Vec<Value> = self
            .kinds
            .iter()
            .map(|kind| {
                let mut value = kind.measures.to_json();
                value["kind"] = json!(kind.kind);
                value["events"] = json!(kind.events);
                value["members"] = json!(kind.members);
                value
            })
            .collect();
        let recommendations: Vec<Value> = self
            .recommendations
            .iter()
            .map(|rec| {
                let mut value = rec.measures.to_json();
                value["method"] = json!(rec.method);
                value["description"] = json!(rec.description);
                value["offsets"] = json!(
                    rec.offsets
                        .iter()
                        .map(|(kind, members)| {
                            let seconds: BTreeMap<&str, f64> = members
                                .iter()
                                .map(|(member, offset)| (member.as_str(), offset.as_secs_f64()))
                                .collect();
                            (kind.clone(), seconds)
                        })
                        .collect::<BTreeMap<_, _>>()
                );
                value
            })
            .collect();
        output["events"] = json!(self.events);
        output["members"] = json!(self.members);
        output["period_seconds"] = json!(period.as_secs_f64());
        output["slots"] = json!(slots);
        output["kinds"] = json!(kinds);
        output["recommendations"] = json!(recommendations);
        output
    }

    pub(super) fn to_text(&self, period: Duration, slots: usize) -> String {
        let slot = period / u32::try_from(slots).unwrap_or(u32::MAX);
        let m = &self.measures;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} events of {} kind(s) from {} member(s), folded onto a period of {}\n",
            self.events,
            self.kinds.len(),
            self.members,
            human(period)
        );
        let _ = writeln!(
            out,
            "order parameter R  {:.3}  (1 = all start at the same phase, ~0 = spread)",
            m.order_parameter
        );
        let _ = writeln!(out, "peak concurrency   {}", m.peak_concurrency);
        let _ = writeln!(
            out,
            "peak-to-mean       {:.2}  (over {slots} slots of {})\n",
            m.peak_to_mean,
            human(slot)
        );
        out.push_str(&render_histogram(&m.histogram, period));
        let _ = writeln!(out, "\nby kind");
        let _ = writeln!(
            out,
            "  {:<28} {:>7} {:>7} {:>6} {:>6} {:>6}",
            "kind", "events", "members", "R", "peak", "p/mean"
        );
        for kind in &self.kinds {
            let _ = writeln!(
                out,
                "  {:<28} {:>7} {:>7} {:>6.3} {:>6} {:>6.2}",
                truncate(&kind.kind, 28),
                kind.events,
                kind.members,
                kind.measures.order_parameter,
                kind.measures.peak_concurrency,
                kind.measures.peak_to_mean
            );
        }
        let _ = writeln!(out, "\nrecommendations (delay each run by an offset)");
        for rec in &self.recommendations {
            let _ = writeln!(out, "  {}: {}", rec.method, rec.description);
            let _ = writeln!(
                out,
                "    -> R {:.3}, peak concurrency {}, peak-to-mean {:.2}",
                rec.measures.order_parameter,
                rec.measures.peak_concurrency,
                rec.measures.peak_to_mean
            );
        }
        out
    }
}

/// Spread each kind's members evenly over the kind's window.
pub(super) fn recommend_spread(
    by_kind: &BTreeMap<&str, Vec<Run>>,
    period: Duration,
    slots: usize,
) -> anyhow::Result<Recommendation> {
    let mut offsets = BTreeMap::new();
    for (kind, runs) in by_kind {
        let members: BTreeSet<&str> = runs.iter().map(|run| run.member.as_str()).collect();
        let fleet = spread(members, kind, kind_window(runs, period))?;
        let kind_offsets = fleet
            .iter()
            .map(|(member, offset)| (member.to_owned(), offset))
            .collect();
        offsets.insert((*kind).to_owned(), kind_offsets);
    }
    recommendation(
        "spread",
        "even spread of each kind's members (see `coherd offsets --job KIND`)",
        by_kind,
        offsets,
        period,
        slots,
    )
}

/// A stable per-member, per-kind offset, as `coherd splay --job KIND` would wait.
pub(super) fn recommend_stable(
    by_kind: &BTreeMap<&str, Vec<Run>>,
    period: Duration,
    slots: usize,
) -> anyhow::Result<Recommendation> {
    let mut offsets = BTreeMap::new();
    for (kind, runs) in by_kind {
        let window = kind_window(runs, period);
        let kind_offsets = runs
            .iter()
            .map(|run| {
                let offset = stable_offset(&run.member, kind, window);
                (run.member.clone(), offset)
            })
            .collect();
        offsets.insert((*kind).to_owned(), kind_offsets);
    }
    recommendation(
        "stable_offset",
        "stable offset per member and kind (see `coherd splay --job KIND`)",
        by_kind,
        offsets,
        period,
        slots,
    )
}

/// Measures the runs delayed by `offsets`.
pub(super) fn recommendation(
    method: &'static str,
    description: &'static str,
    by_kind: &BTreeMap<&str, Vec<Run>>,
    offsets: BTreeMap<String, BTreeMap<String, Duration>>,
    period: Duration,
    slots: usize,
) -> anyhow::Result<Recommendation> {
    let delayed: Vec<Run> = by_kind
        .iter()
        .flat_map(|(kind, runs)| {
            let kind_offsets = offsets.get(*kind);
            runs.iter().map(move |run| {
                let offset = kind_offsets
                    .and_then(|members| members.get(&run.member))
                    .copied()
                    .unwrap_or_default();
                Run {
                    start: run.start + offset,
                    end: run.end + offset,
                    ..run.clone()
                }
            })
        })
        .collect();
    Ok(Recommendation {
        method,
        description,
        measures: Measures::of(&delayed, period, slots)?,
        offsets,
    })
}

/// The largest delay allowed for a kind: the period, or less if one of its
/// runs says so (a crontab line that fires more often than the period).
pub(super) fn kind_window(runs: &[Run], period: Duration) -> Duration {
    runs.iter()
        .map(|run| run.window)
        .filter(|window| !window.is_zero())
        .fold(period, Duration::min)
}

pub(super) fn distinct_members(runs: &[Run]) -> usize {
    runs.iter()
        .map(|run| run.member.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}
