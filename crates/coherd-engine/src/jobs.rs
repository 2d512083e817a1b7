//! The runs of periodic jobs, per (service, job): a window of recent runs and
//! what it shows (order parameter, members, peak concurrency), with bounded
//! memory. The `herd` module judges the `herd` divergence from these.

use std::collections::VecDeque;
use std::time::Duration;

use coherd_model::Time;

use serde::{Deserialize, Serialize};

use crate::intern::Sym;

/// Periods of runs a job is judged over.
pub const WINDOW_PERIODS: i64 = 3;
/// A job with no run started in this many periods has stopped: `R` no longer counts.
pub const ACTIVE_PERIODS: i64 = 2;
/// Distinct members with a run in the window before `R` can raise `herd`.
pub const MIN_MEMBERS: usize = 3;
/// Runs kept per (service, job).
pub const MAX_RUNS_PER_JOB: usize = 16_384;
/// Kinds tracked per service beyond those the intent declares.
pub const MAX_UNDECLARED_JOBS: usize = 32;
/// The period assumed for a kind the intent does not declare.
pub const UNDECLARED_PERIOD: Duration = Duration::from_secs(3600);

/// How one job is judged, from the intent or the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobCfg {
    /// Nanoseconds, > 0.
    pub(crate) period: i64,
    pub(crate) threshold: f64,
    pub(crate) max_concurrent: Option<u32>,
    pub(crate) declared: bool,
}

impl JobCfg {
    pub(crate) fn horizon(&self) -> i64 {
        self.period.saturating_mul(WINDOW_PERIODS)
    }
}

/// One run of a job.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) start: Time,
    pub(crate) member: Sym,
    pub(crate) end: Option<Time>,
}

/// The runs of one job in one service.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) cfg: JobCfg,
    /// Sorted by (start, member).
    pub(crate) runs: VecDeque<Run>,
    /// When the job was first reported since its window was last empty.
    pub(crate) since: Option<Time>,
    /// The deadline this job waits for (earlier queue entries are stale).
    pub(crate) due: Option<Time>,
}

/// What the window of a job shows at one instant.
pub(crate) struct Judgement {
    pub(crate) order_parameter: Option<f64>,
    pub(crate) members: usize,
    pub(crate) mature: bool,
    pub(crate) by_order: bool,
    pub(crate) by_concurrency: bool,
}

impl Job {
    pub(crate) fn new(cfg: JobCfg) -> Job {
        Job {
            cfg,
            runs: VecDeque::new(),
            since: None,
            due: None,
        }
    }

    /// Runs that started in `(at - horizon, at]` (and any reported ahead of `at`).
    pub(crate) fn window(&self, at: Time) -> impl Iterator<Item = &Run> {
        let lo = at.as_nanos().saturating_sub(self.cfg.horizon());
        let first = self.runs.partition_point(|r| r.start.as_nanos() <= lo);
        self.runs.range(first..)
    }

    pub(crate) fn phase_offset(&self, t: Time) -> Duration {
        Duration::from_nanos(t.as_nanos().rem_euclid(self.cfg.period) as u64)
    }

    pub(crate) fn period(&self) -> Duration {
        Duration::from_nanos(self.cfg.period as u64)
    }

    pub(crate) fn order_parameter(&self, at: Time) -> Option<f64> {
        let starts = self.window(at).map(|r| self.phase_offset(r.start));
        coherd_dephase::order_parameter(starts, self.period()).ok()
    }

    /// Starts in the window per slot of the period.
    pub(crate) fn start_slots(&self, at: Time, slots: usize) -> Vec<usize> {
        let starts = self.window(at).map(|r| self.phase_offset(r.start));
        coherd_dephase::histogram(starts, self.period(), slots).unwrap_or_default()
    }

    pub(crate) fn members(&self, at: Time) -> Vec<Sym> {
        let mut m: Vec<Sym> = self.window(at).map(|r| r.member).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    pub(crate) fn peak_concurrency(&self, at: Time) -> usize {
        coherd_dephase::peak_concurrency(
            self.window(at)
                .filter_map(|r| r.end.map(|end| (r.start, end))),
        )
    }

    pub(crate) fn judge(&self, at: Time) -> Judgement {
        let mature = self
            .since
            .is_some_and(|s| at.as_nanos() >= s.as_nanos().saturating_add(self.cfg.period))
            && self
                .runs
                .back()
                .is_some_and(|r| at.as_nanos() < self.stops(r.start));
        let (mut order_parameter, mut members, mut by_order) = (None, 0, false);
        if mature {
            order_parameter = self.order_parameter(at);
            if order_parameter.is_some_and(|r| r > self.cfg.threshold) {
                members = self.members(at).len();
                by_order = members >= MIN_MEMBERS;
            }
        }
        let by_concurrency = !by_order
            && self
                .cfg
                .max_concurrent
                .is_some_and(|m| self.peak_concurrency(at) > m as usize);
        Judgement {
            order_parameter,
            members,
            mature,
            by_order,
            by_concurrency,
        }
    }

    /// Adds or updates a run; false when it is already outside the window at `now`.
    pub(crate) fn add(&mut self, run: Run, now: Time) -> bool {
        if run.start.as_nanos() <= now.as_nanos().saturating_sub(self.cfg.horizon()) {
            return false;
        }
        let key = |r: &Run| (r.start, r.member);
        match self.runs.binary_search_by(|r| key(r).cmp(&key(&run))) {
            Ok(i) => {
                if run.end.is_some() {
                    self.runs[i].end = run.end;
                }
            }
            Err(i) => {
                self.runs.insert(i, run);
                if self.runs.len() > MAX_RUNS_PER_JOB {
                    self.runs.pop_front();
                }
            }
        }
        self.since.get_or_insert(now);
        true
    }

    /// Drops runs that left the window at `at`.
    pub(crate) fn evict(&mut self, at: Time) {
        let lo = at.as_nanos().saturating_sub(self.cfg.horizon());
        while self.runs.front().is_some_and(|r| r.start.as_nanos() <= lo) {
            self.runs.pop_front();
        }
        if self.runs.is_empty() {
            self.since = None;
        }
    }

    /// When a job whose latest run started at `latest` counts as stopped.
    pub(crate) fn stops(&self, latest: Time) -> i64 {
        latest
            .as_nanos()
            .saturating_add(self.cfg.period.saturating_mul(ACTIVE_PERIODS))
    }

    /// The next instant the judgement can change without new runs.
    pub(crate) fn next_deadline(&self, now: Time) -> Option<Time> {
        let leaves = self
            .runs
            .front()
            .map(|r| r.start.as_nanos().saturating_add(self.cfg.horizon()));
        let matures = self
            .since
            .map(|s| s.as_nanos().saturating_add(self.cfg.period))
            .filter(|&m| m > now.as_nanos());
        let stops = self
            .runs
            .back()
            .map(|r| self.stops(r.start))
            .filter(|&s| s > now.as_nanos());
        leaves
            .into_iter()
            .chain(matures)
            .chain(stops)
            .min()
            .map(Time::from_nanos)
    }
}

/// The mean phase of a job's window, in `[0, 1)`; `None` without runs.
pub(crate) fn mean_phase(job: &Job, at: Time) -> Option<f64> {
    let (mut c, mut s, mut n) = (0.0f64, 0.0f64, 0usize);
    for r in job.window(at) {
        let p = coherd_dephase::phase(job.phase_offset(r.start), job.period()).ok()?;
        let a = std::f64::consts::TAU * p;
        c += a.cos();
        s += a.sin();
        n += 1;
    }
    (n > 0).then(|| (s.atan2(c) / std::f64::consts::TAU).rem_euclid(1.0))
}
