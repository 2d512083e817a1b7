//! Where a member's next run of a declared job goes, from the live membership.

use std::time::Duration;

use coherd_model::{Intent, SpreadMode, Time};
use serde::Serialize;

use crate::engine::Engine;
use crate::state::flag;

/// One member's slot for a job: its offset in the job's window and its next start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSlot {
    /// The service.
    pub service: String,
    /// The job (an event kind).
    pub job: String,
    /// The member asking.
    pub member: String,
    /// Seconds after each period boundary at which the member runs.
    pub offset_seconds: f64,
    /// The first start after `now`: a period boundary (periods are aligned to
    /// the Unix epoch) plus the offset.
    pub next_start: Time,
    /// The job's period.
    pub period_seconds: f64,
    /// The part of the period runs are spread over.
    pub window_seconds: f64,
    /// `even` (over the live membership) or `stable` (a fixed hash).
    pub spread: SpreadMode,
    /// Members the slot was computed over: the live members and the one asking.
    pub members: usize,
}

/// Why a job slot cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The intent declares no periodic job for the service.
    #[error(
        "service {service:?} declares no dephase jobs; add services.{service}.dephase.jobs to the intent"
    )]
    NoJobs {
        /// The service.
        service: String,
    },
    /// The service declares other jobs, not this one.
    #[error("service {service:?} declares no job {job:?}; its jobs are: {}", declared.join(", "))]
    UnknownJob {
        /// The service.
        service: String,
        /// The job asked for.
        job: String,
        /// The jobs it declares.
        declared: Vec<String>,
    },
}

impl Engine {
    /// Live members of a service that are not in a terminal phase, sorted;
    /// `None` for a service the engine does not know.
    pub fn live_members(&self, service: &str) -> Option<Vec<&str>> {
        let svc = *self.service_index.get(&self.syms.get(service)?)?;
        let mut out: Vec<&str> = self.services[svc]
            .members
            .iter()
            .filter(|m| !m.has(flag::REMOVED) && m.is_counting())
            .map(|m| self.syms.resolve(m.name))
            .collect();
        out.sort_unstable();
        Some(out)
    }

    /// Where `member`'s next run of `job`, declared for `service` in `intent`
    /// (the intent in force, which a shell may hold before the engine applies
    /// it), goes after `now`. With `spread: even` the job's window is shared evenly among the
    /// live members and `member` (who need not have reported yet), so offsets
    /// move by at most about `window / N` as members come and go; with
    /// `spread: stable` the offset is a fixed hash of member and job.
    pub fn job_slot(
        &self,
        intent: Option<&Intent>,
        service: &str,
        job: &str,
        member: &str,
        now: Time,
    ) -> Result<JobSlot, SlotError> {
        let jobs = intent
            .or(self.intent.as_ref())
            .and_then(|i| i.services.get(service))
            .map(|s| &s.dephase.jobs)
            .filter(|j| !j.is_empty())
            .ok_or_else(|| SlotError::NoJobs {
                service: service.to_string(),
            })?;
        let ji = jobs.get(job).ok_or_else(|| SlotError::UnknownJob {
            service: service.to_string(),
            job: job.to_string(),
            declared: jobs.keys().cloned().collect(),
        })?;
        let mut members = self.live_members(service).unwrap_or_default();
        if let Err(i) = members.binary_search(&member) {
            members.insert(i, member);
        }
        let offset = match ji.spread {
            SpreadMode::Stable => coherd_dephase::stable_offset(member, job, ji.window),
            SpreadMode::Even => coherd_dephase::spread(members.iter().copied(), job, ji.window)
                .ok()
                .and_then(|s| s.offset(member))
                .unwrap_or(Duration::ZERO),
        };
        Ok(JobSlot {
            service: service.to_string(),
            job: job.to_string(),
            member: member.to_string(),
            offset_seconds: offset.as_secs_f64(),
            next_start: next_start(now, ji.period, offset),
            period_seconds: ji.period.as_secs_f64(),
            window_seconds: ji.window.as_secs_f64(),
            spread: ji.spread,
            members: members.len(),
        })
    }
}

/// The first `k * period + offset` (periods aligned to the Unix epoch) after `now`.
fn next_start(now: Time, period: Duration, offset: Duration) -> Time {
    let p = coherd_model::time::duration_nanos(period).max(1);
    let base = now.as_nanos().div_euclid(p).saturating_mul(p);
    let t = base.saturating_add(coherd_model::time::duration_nanos(offset));
    Time::from_nanos(if t > now.as_nanos() {
        t
    } else {
        t.saturating_add(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_start_is_the_next_boundary_plus_the_offset_strictly_after_now() {
        let t = |s: &str| s.parse::<Time>().expect("time");
        let hour = Duration::from_secs(3600);
        let ten = Duration::from_secs(600);
        assert_eq!(
            next_start(t("2026-11-22T08:05:00Z"), hour, ten),
            t("2026-11-22T08:10:00Z")
        );
        assert_eq!(
            next_start(t("2026-11-22T08:10:00Z"), hour, ten),
            t("2026-11-22T09:10:00Z")
        );
        assert_eq!(
            next_start(t("2026-11-22T08:59:59Z"), hour, Duration::ZERO),
            t("2026-11-22T09:00:00Z")
        );
    }
}
