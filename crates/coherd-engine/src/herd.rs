//! Periodic events: `herd`, when one job's runs are synchronised across a service.
//!
//! Every reported event (`events: [{kind, start, end}]`) is a *run* of the job
//! named by its `kind`, in the reporter's service. Per (service, job) the
//! engine keeps the runs that started in the last [`WINDOW_PERIODS`](crate::WINDOW_PERIODS) periods,
//! sorted by start. `herd` (warning, id `herd:SERVICE:KIND`) holds at `t` when
//! over the runs that started in `(t - WINDOW_PERIODS x period, t]`:
//!
//! - the Kuramoto order parameter `R` of their starts, folded onto the period
//!   (periods are aligned to the Unix epoch), is above `herd_threshold`
//!   (default 0.6), with runs from at least [`MIN_MEMBERS`](crate::MIN_MEMBERS) distinct members,
//!   while the job is *watched and running*: watched for at least one period
//!   (from the first report of it since its window was last empty) and with a
//!   run that started in the last [`ACTIVE_PERIODS`](crate::ACTIVE_PERIODS) periods. A job seen for
//!   only part of a period looks synchronised because only its first runs are
//!   in, and so does a job that stopped, as its last runs drain out; or
//! - the peak number of runs open at one instant (`[start, end)`, runs without
//!   an `end` do not count) is above the job's `max_concurrent`.
//!
//! Declared jobs (`dephase.jobs` in the intent) use their period and limits;
//! any other kind uses a one-hour period and the threshold only. Runs are
//! judged when they arrive and when one leaves the window or the job has been
//! watched for a period (a deadline, so what opens or resolves then is stamped
//! with the deadline's time). A run listed again (same member and start) is the
//! same run: only its `end` is updated.
//!
//! Memory is bounded: at most [`MAX_RUNS_PER_JOB`](crate::MAX_RUNS_PER_JOB) runs per job (the oldest
//! go first; 32 bytes each) and at most [`MAX_UNDECLARED_JOBS`](crate::MAX_UNDECLARED_JOBS) kinds per
//! service that the intent does not declare (runs of further kinds are ignored).

use coherd_model::{Observation, Time};
use serde_json::{Value, json};

use crate::divergence::{DivKey, Subject};
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::Sym;
use crate::jobs::{
    Job, JobCfg, MAX_UNDECLARED_JOBS, Run, UNDECLARED_PERIOD, WINDOW_PERIODS, mean_phase,
};
use crate::timer::Timer;
use coherd_model::Severity;

impl Engine {
    /// The rules for `kind` in a service: declared in the intent, or the defaults.
    fn job_cfg(&self, svc: ServiceId, kind: &str) -> JobCfg {
        let service = &self.services[svc].name_str;
        let declared = self
            .intent
            .as_ref()
            .and_then(|i| i.services.get(service))
            .and_then(|s| s.dephase.jobs.get(kind));
        match declared {
            Some(j) => JobCfg {
                period: coherd_model::time::duration_nanos(j.period).max(1),
                threshold: j.herd_threshold,
                max_concurrent: j.max_concurrent,
                declared: true,
            },
            None => JobCfg {
                period: coherd_model::time::duration_nanos(UNDECLARED_PERIOD),
                threshold: coherd_model::intent::DEFAULT_HERD_THRESHOLD,
                max_concurrent: None,
                declared: false,
            },
        }
    }

    /// Adds a report's events to the runs of their jobs and judges each job they touched.
    pub(crate) fn apply_events(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        now: Time,
    ) {
        if obs.events.is_empty() {
            return;
        }
        let member = self.services[svc].members[slot].name;
        let mut touched: Vec<Sym> = Vec::new();
        for e in &obs.events {
            let Some(kind) = self.job_for(svc, &e.kind) else {
                continue;
            };
            let run = Run {
                start: e.start,
                member,
                end: e.end,
            };
            let job = self.services[svc]
                .jobs
                .get_mut(&kind)
                .expect("created by job_for");
            if job.add(run, now) {
                touched.push(kind);
            }
        }
        touched.sort_unstable_by(|a, b| self.syms.resolve(*a).cmp(self.syms.resolve(*b)));
        touched.dedup();
        for kind in touched {
            self.eval_herd(svc, kind, now);
            self.schedule_herd(svc, kind, now);
        }
    }

    /// The job of `kind` in a service, created when new (unless the service
    /// already tracks as many undeclared kinds as allowed).
    fn job_for(&mut self, svc: ServiceId, kind: &str) -> Option<Sym> {
        if let Some(sym) = self.syms.get(kind)
            && self.services[svc].jobs.contains_key(&sym)
        {
            return Some(sym);
        }
        let cfg = self.job_cfg(svc, kind);
        let s = &self.services[svc];
        if !cfg.declared
            && s.jobs.values().filter(|j| !j.cfg.declared).count() >= MAX_UNDECLARED_JOBS
        {
            return None;
        }
        let sym = self.syms.intern(kind);
        self.services[svc].jobs.insert(sym, Job::new(cfg));
        Some(sym)
    }

    /// Re-reads every job's rules after an intent change and judges it again at `now`.
    pub(crate) fn apply_herd_intent(&mut self, svc: ServiceId, now: Time) {
        let declared: Vec<String> = {
            let service = &self.services[svc].name_str;
            self.intent
                .as_ref()
                .and_then(|i| i.services.get(service))
                .map(|s| s.dephase.jobs.keys().cloned().collect())
                .unwrap_or_default()
        };
        for kind in &declared {
            let sym = self.syms.intern(kind);
            let cfg = self.job_cfg(svc, kind);
            self.services[svc]
                .jobs
                .entry(sym)
                .or_insert_with(|| Job::new(cfg));
        }
        let mut kinds: Vec<Sym> = self.services[svc].jobs.keys().copied().collect();
        kinds.sort_unstable_by(|a, b| self.syms.resolve(*a).cmp(self.syms.resolve(*b)));
        for kind in kinds {
            let cfg = self.job_cfg(svc, self.syms.resolve(kind));
            if let Some(job) = self.services[svc].jobs.get_mut(&kind) {
                job.cfg = cfg;
                job.evict(now);
            }
            self.eval_herd(svc, kind, now);
            self.schedule_herd(svc, kind, now);
        }
    }

    /// A run left a job's window, or the job has been watched for a period.
    pub(crate) fn on_herd_timer(&mut self, svc: ServiceId, kind: Sym, t: Time) {
        let Some(job) = self.services[svc].jobs.get_mut(&kind) else {
            return;
        };
        if job.due != Some(t) {
            return;
        }
        job.due = None;
        // Judged before the runs that left are dropped, so that a record that
        // resolves here can still show them.
        self.eval_herd(svc, kind, t);
        if let Some(job) = self.services[svc].jobs.get_mut(&kind) {
            job.evict(t);
        }
        self.schedule_herd(svc, kind, t);
    }

    fn schedule_herd(&mut self, svc: ServiceId, kind: Sym, now: Time) {
        let Some(job) = self.services[svc].jobs.get_mut(&kind) else {
            return;
        };
        let next = job.next_deadline(now);
        if next != job.due {
            job.due = next;
            if let Some(t) = next {
                self.timers.schedule(t, Timer::Herd { svc, job: kind });
            }
        }
    }

    /// Opens or resolves `herd` for one job at `at`.
    fn eval_herd(&mut self, svc: ServiceId, kind: Sym, at: Time) {
        let Some(job) = self.services[svc].jobs.get(&kind) else {
            return;
        };
        let j = job.judge(at);
        let key = DivKey::herd(svc, kind);
        if j.by_order || j.by_concurrency {
            // More runs at once than the job allows overloads what they share.
            let severity = if j.by_concurrency {
                Severity::Critical
            } else {
                Severity::Warning
            };
            self.upsert(key, severity, at, false, |e| e.herd_view(svc, kind, at));
        } else if self.open_severity(&key).is_some() {
            // The record keeps the window as it was the instant before it
            // resolved (with the run that resolved it, if one did).
            let last = self.herd_view(svc, kind, Time::from_nanos(at.as_nanos().saturating_sub(1)));
            self.resolve(key, at, Some(last));
        }
    }

    /// Subjects and evidence of `herd` at `at`. Subjects: when `R` is above the
    /// threshold, the members with a run within a twelfth of a period of the
    /// mean phase (the synchronised cluster); otherwise every member with a run
    /// in the window.
    pub(crate) fn herd_view(&self, svc: ServiceId, kind: Sym, at: Time) -> (Vec<String>, Value) {
        let Some(job) = self.services[svc].jobs.get(&kind) else {
            return (Vec::new(), Value::Null);
        };
        let j = job.judge(at);
        let r = j.order_parameter.or_else(|| job.order_parameter(at));
        let mean = mean_phase(job, at);
        let clustered = r.is_some_and(|r| r > job.cfg.threshold);
        let near = |run: &Run| match mean {
            Some(m) if clustered => {
                let p =
                    coherd_dephase::phase(job.phase_offset(run.start), job.period()).unwrap_or(0.0);
                let d = (p - m).rem_euclid(1.0);
                d.min(1.0 - d) <= 1.0 / 12.0
            }
            _ => true,
        };
        let mut subjects: Vec<Sym> = job
            .window(at)
            .filter(|r| near(r))
            .map(|r| r.member)
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        let mut subjects: Vec<String> = subjects
            .into_iter()
            .map(|m| self.syms.resolve(m).to_string())
            .collect();
        subjects.sort_unstable();
        let members = if j.members > 0 {
            j.members
        } else {
            job.members(at).len()
        };
        let evidence = json!({
            "job": self.syms.resolve(kind),
            "order_parameter": r,
            "herd_threshold": job.cfg.threshold,
            "peak_concurrency": job.peak_concurrency(at),
            "max_concurrent": job.cfg.max_concurrent,
            "period_seconds": job.cfg.period as f64 / 1e9,
            "window_periods": WINDOW_PERIODS,
            "members": members,
            "events": job.window(at).count(),
            "declared": job.cfg.declared,
            "order_parameter_counts": j.mature,
        });
        (subjects, evidence)
    }

    /// Brings the subjects and evidence of open `herd` records up to date.
    pub(crate) fn refresh_open_herds(&mut self) {
        let now = self.now;
        let open: Vec<(usize, ServiceId, Sym)> = self
            .table
            .open()
            .filter_map(|(k, i, _)| match k.subject {
                Subject::Job(job) => Some((i, k.svc, job)),
                _ => None,
            })
            .collect();
        for (i, svc, kind) in open {
            let (subjects, evidence) = self.herd_view(svc, kind, now);
            let r = &mut self.table.records[i];
            r.subjects = subjects;
            r.evidence = evidence;
        }
    }

    /// Approximate heap bytes held by runs of periodic jobs.
    pub(crate) fn herd_heap_bytes(&self) -> usize {
        self.services
            .iter()
            .flat_map(|s| s.jobs.values())
            .map(|j| j.runs.capacity() * std::mem::size_of::<Run>())
            .sum()
    }
}
