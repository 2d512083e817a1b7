//! `clock_skew`: a report whose own time is ahead of the time it is applied
//! at by more than `max_clock_skew` (DESIGN 2.1). The report is applied at its
//! receive time all the same; the skew is a signal about the member's clock.

use coherd_model::time::duration_nanos;
use coherd_model::{Kind, Observation, Severity, Time};
use serde_json::json;

use crate::divergence::DivKey;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::state::flag;

impl Engine {
    /// Opens or refreshes `clock_skew` for a skewed report; the member's next
    /// report within the bound resolves it.
    pub(crate) fn check_clock(
        &mut self,
        svc: ServiceId,
        slot: MemberSlot,
        obs: &Observation,
        now: Time,
    ) {
        let max = duration_nanos(self.config.max_clock_skew);
        let ahead = obs
            .time
            .map_or(0, |t| t.as_nanos().saturating_sub(now.as_nanos()));
        let m = &mut self.services[svc].members[slot];
        let name = m.name;
        let key = DivKey::member(Kind::ClockSkew, svc, name);
        if ahead <= max {
            if m.has(flag::SKEWED) {
                m.set(flag::SKEWED, false);
                self.resolve(key, now, None);
            }
            return;
        }
        m.set(flag::SKEWED, true);
        let reported = obs.time;
        self.upsert(key, Severity::Warning, now, true, |e| {
            let evidence = json!({
                "offset_s": ahead as f64 / 1e9,
                "reported_time": reported,
                "received_at": now,
                "max_clock_skew_s": max as f64 / 1e9,
            });
            (vec![e.syms.resolve(name).to_string()], evidence)
        });
    }
}
