//! SLO burn rates on coherence (the share of member-time that is coherent),
//! multiwindow and multi-burn-rate as in the SRE workbook:
//! page at 14.4x over 1 h and 5 m, or 6x over 6 h and 30 m; ticket at 1x over
//! 3 d and 6 h.
//!
//! Two additions for real fleets. A **minimum-event gate**: a window that
//! holds less than `min_events` member-minutes is widened (up to 3 days)
//! until it does, so a small service neither pages on a blip nor stays quiet
//! through days of steady burn. **Freezing**: when the telemetry behind an SLO
//! disappears (no samples, or no live members), its alerts keep their state
//! instead of resolving, and say so.

use std::time::Duration;

use coherd_model::Time;
use coherd_model::time::{deserialize_duration, prometheus_duration};
use serde::{Deserialize, Serialize};

use crate::config::Urgency;

const MINUTE: i64 = 60_000_000_000;
const MAX_WIDEN: i64 = 3 * 24 * 60 * MINUTE;

/// A burn-rate alert condition: both windows above the factor for `for`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindow {
    /// `page` or `ticket`.
    pub severity: Urgency,
    /// The long window.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "ser_duration"
    )]
    pub long: Duration,
    /// The short window.
    #[serde(
        deserialize_with = "deserialize_duration",
        serialize_with = "ser_duration"
    )]
    pub short: Duration,
    /// Burn-rate factor.
    pub factor: f64,
    /// How long both must stay above it before the alert fires.
    #[serde(
        rename = "for",
        default,
        deserialize_with = "deserialize_duration",
        serialize_with = "ser_duration"
    )]
    pub for_: Duration,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&prometheus_duration(*d))
}

/// The workbook's three windows (the defaults of every SLO).
pub const WINDOWS: [BurnWindow; 3] = [
    BurnWindow {
        severity: Urgency::Page,
        long: Duration::from_secs(3600),
        short: Duration::from_secs(300),
        factor: 14.4,
        for_: Duration::from_secs(120),
    },
    BurnWindow {
        severity: Urgency::Page,
        long: Duration::from_secs(6 * 3600),
        short: Duration::from_secs(1800),
        factor: 6.0,
        for_: Duration::from_secs(900),
    },
    BurnWindow {
        severity: Urgency::Ticket,
        long: Duration::from_secs(3 * 86400),
        short: Duration::from_secs(6 * 3600),
        factor: 1.0,
        for_: Duration::from_secs(3600),
    },
];

/// The name of the burn-rate alerts, built in and exported alike.
pub const BURN_ALERT: &str = "CoherdCoherenceBudgetBurn";

/// The labels of one window's burn-rate alert for `service`: the same as
/// the exported Prometheus rule gives.
pub fn burn_labels(service: &str, w: &BurnWindow) -> crate::Labels {
    crate::Labels::from([
        ("alertname".to_string(), BURN_ALERT.to_string()),
        ("service".to_string(), service.to_string()),
        ("severity".to_string(), w.severity.as_str().to_string()),
        ("slo".to_string(), "coherence".to_string()),
        ("long_window".to_string(), prometheus_duration(w.long)),
        ("short_window".to_string(), prometheus_duration(w.short)),
    ])
}

/// Checks windows from a configuration: what makes them wrong, if anything.
pub fn check_windows(windows: &[BurnWindow]) -> Result<(), String> {
    if windows.is_empty() || windows.len() > 6 {
        return Err("give 1 to 6 burn windows".into());
    }
    for w in windows {
        let name = format!(
            "{}/{}",
            prometheus_duration(w.long),
            prometheus_duration(w.short)
        );
        if w.short.is_zero()
            || w.short >= w.long
            || w.long.as_secs() > MAX_WIDEN as u64 / 1_000_000_000
        {
            return Err(format!(
                "burn window {name}: the short window must be shorter than the long one, and the long one at most 3d"
            ));
        }
        if !(w.factor > 0.0 && w.factor.is_finite()) {
            return Err(format!("burn window {name}: factor must be above 0"));
        }
    }
    for (i, w) in windows.iter().enumerate() {
        if windows[..i]
            .iter()
            .any(|o| (o.long, o.short, o.severity) == (w.long, w.short, w.severity))
        {
            return Err(format!(
                "burn window {}/{} is given twice for one severity: their alerts would have the same labels",
                prometheus_duration(w.long),
                prometheus_duration(w.short)
            ));
        }
    }
    Ok(())
}

/// One SLO for one service: minute buckets of bad and total member-minutes over the period.
pub struct SloTracker {
    /// The objective, such as 0.999.
    pub objective: f64,
    min_events: f64,
    buckets: Vec<(i64, f64, f64)>,
    last_sample: Option<Time>,
    /// The burn windows it judges.
    pub windows: Vec<BurnWindow>,
    /// Since when each window burns (both spans above its factor).
    burning_since: Vec<Option<Time>>,
    /// Which windows fire now (burning for their `for`).
    pub firing: Vec<bool>,
    /// True while telemetry is missing and the state is held.
    pub frozen: bool,
}

/// A tracker's state for the API and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    /// The objective.
    pub objective: f64,
    /// Share of the period's error budget left (1 = untouched, below 0 = overspent).
    pub error_budget_remaining: Option<f64>,
    /// Burn rate over 1 h.
    pub burn_rate_1h: Option<f64>,
    /// Burn rate over 6 h.
    pub burn_rate_6h: Option<f64>,
    /// Burn rate over 3 d.
    pub burn_rate_3d: Option<f64>,
    /// Whether alert states are frozen for missing telemetry.
    pub frozen: bool,
}

impl SloTracker {
    /// A tracker over `period` (one bucket per minute) judging `windows`.
    pub fn new(
        objective: f64,
        period: Duration,
        min_events: f64,
        windows: Vec<BurnWindow>,
    ) -> SloTracker {
        let n = (period.as_secs() / 60).max(60) as usize;
        SloTracker {
            objective,
            min_events,
            buckets: vec![(i64::MIN, 0.0, 0.0); n],
            last_sample: None,
            burning_since: vec![None; windows.len()],
            firing: vec![false; windows.len()],
            windows,
            frozen: false,
        }
    }

    /// A sample: `coherence` of `members` known members at `now`, standing for
    /// the time since the previous sample (at most 5 minutes). `None` means no
    /// telemetry. Returns true when the firing set changed.
    pub fn observe(&mut self, now: Time, coherence: Option<f64>, members: u32) -> bool {
        let (Some(c), true) = (coherence, members > 0) else {
            self.frozen = true;
            return false;
        };
        let dt = self
            .last_sample
            .map_or(0, |t| (now.as_nanos() - t.as_nanos()).clamp(0, 5 * MINUTE));
        self.last_sample = Some(now);
        self.frozen = false;
        let weight = members as f64 * dt as f64 / MINUTE as f64;
        let idx = now.as_nanos().div_euclid(MINUTE);
        let n = self.buckets.len() as i64;
        let b = &mut self.buckets[idx.rem_euclid(n) as usize];
        if b.0 != idx {
            *b = (idx, 0.0, 0.0);
        }
        b.1 += (1.0 - c.clamp(0.0, 1.0)) * weight;
        b.2 += weight;
        let before = self.firing.clone();
        for i in 0..self.windows.len() {
            let w = self.windows[i];
            let burning = |span: Duration| self.burn(now, span).is_some_and(|b| b > w.factor);
            let on = burning(w.long) && burning(w.short);
            let since = if on {
                *self.burning_since[i].get_or_insert(now)
            } else {
                self.burning_since[i] = None;
                now
            };
            self.firing[i] = on && now >= since.add(w.for_);
        }
        before != self.firing
    }

    /// Marks telemetry missing when no sample came for 5 minutes. Returns true when it froze now.
    pub fn check_silence(&mut self, now: Time) -> bool {
        let stale = self
            .last_sample
            .is_none_or(|t| now.as_nanos() - t.as_nanos() > 5 * MINUTE);
        let froze = stale && !self.frozen;
        if stale {
            self.frozen = true;
        }
        froze
    }

    fn sums(&self, now: Time, span_minutes: i64) -> (f64, f64) {
        let hi = now.as_nanos().div_euclid(MINUTE);
        let n = self.buckets.len() as i64;
        let lo = hi - span_minutes.min(n) + 1;
        (lo..=hi)
            .map(|i| &self.buckets[i.rem_euclid(n) as usize])
            .filter(|b| b.0 >= lo && b.0 <= hi)
            .fold((0.0, 0.0), |a, b| (a.0 + b.1, a.1 + b.2))
    }

    /// The burn rate over `span`, widened until it holds `min_events`
    /// member-minutes (up to 3 days); `None` when even that is too little.
    pub fn burn(&self, now: Time, span: Duration) -> Option<f64> {
        let mut minutes = (span.as_secs() / 60).max(1) as i64;
        loop {
            let (bad, total) = self.sums(now, minutes);
            if total >= self.min_events {
                return Some(bad / total / (1.0 - self.objective));
            }
            if minutes * MINUTE >= MAX_WIDEN {
                return None;
            }
            minutes = (minutes * 2).min(MAX_WIDEN / MINUTE);
        }
    }

    /// The state for the API.
    pub fn status(&self, now: Time) -> SloStatus {
        let (bad, total) = self.sums(now, self.buckets.len() as i64);
        let budget = (total > 0.0).then(|| 1.0 - bad / total / (1.0 - self.objective));
        SloStatus {
            objective: self.objective,
            error_budget_remaining: budget,
            burn_rate_1h: self.burn(now, WINDOWS[0].long),
            burn_rate_6h: self.burn(now, WINDOWS[1].long),
            burn_rate_3d: self.burn(now, WINDOWS[2].long),
            frozen: self.frozen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> Time {
        Time::from_nanos(1_800_000_000 * 1_000_000_000 + min * MINUTE)
    }

    fn run(t: &mut SloTracker, from: i64, to: i64, coherence: f64, members: u32) {
        for m in from..to {
            t.observe(at(m), Some(coherence), members);
        }
    }

    #[test]
    fn a_fast_burn_pages_and_clears() {
        let mut t = SloTracker::new(
            0.999,
            Duration::from_secs(30 * 86400),
            100.0,
            WINDOWS.to_vec(),
        );
        run(&mut t, 0, 120, 1.0, 100);
        assert_eq!(t.firing, [false; 3]);
        // 10 % incoherent for 15 minutes: over 1 h that is 25x the 0.1 % budget;
        // past 14.4x from the 9th minute, firing 2 minutes later.
        run(&mut t, 120, 130, 0.9, 100);
        assert!(
            !t.firing[0],
            "not yet for 2 minutes: {:?}",
            t.status(at(130))
        );
        run(&mut t, 130, 135, 0.9, 100);
        assert!(t.firing[0], "{:?}", t.status(at(135)));
        run(&mut t, 135, 145, 1.0, 100);
        assert!(!t.firing[0], "the 5 m window clears first");
        let s = t.status(at(145));
        assert!(s.error_budget_remaining.unwrap() < 1.0, "{s:?}");
        assert!(s.burn_rate_1h.unwrap() > 14.4, "{s:?}");
    }

    #[test]
    fn three_bad_minutes_of_a_tiny_service_do_not_page() {
        let mut t = SloTracker::new(
            0.999,
            Duration::from_secs(30 * 86400),
            1000.0,
            WINDOWS.to_vec(),
        );
        run(&mut t, 0, 60, 1.0, 2);
        run(&mut t, 60, 63, 0.5, 2);
        assert!(!t.firing[0] && !t.firing[1], "{:?}", t.status(at(63)));
    }

    #[test]
    fn slow_real_burn_of_a_tiny_service_is_not_ignored() {
        let mut t = SloTracker::new(
            0.99,
            Duration::from_secs(30 * 86400),
            1000.0,
            WINDOWS.to_vec(),
        );
        // One of two members incoherent for a day: 50 % bad.
        run(&mut t, 0, 24 * 60, 0.5, 2);
        assert!(t.firing.iter().any(|f| *f), "{:?}", t.status(at(24 * 60)));
    }

    #[test]
    fn missing_telemetry_freezes_instead_of_resolving() {
        let mut t = SloTracker::new(
            0.999,
            Duration::from_secs(30 * 86400),
            100.0,
            WINDOWS.to_vec(),
        );
        run(&mut t, 0, 60, 0.9, 100);
        assert!(t.firing[0]);
        assert!(!t.observe(at(61), None, 0), "no change");
        assert!(t.firing[0] && t.frozen);
        assert!(!t.check_silence(at(200)), "already frozen");
        assert!(t.firing[0], "still held at the last known state");
    }
}
