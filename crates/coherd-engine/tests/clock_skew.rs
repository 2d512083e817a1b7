//! `clock_skew`: a report whose own time runs ahead of the time it is applied
//! at (DESIGN 2.1), on a virtual clock.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Kind, Severity};
use common::{Harness, assert_episode, at, observation, rep};
use serde_json::json;

const INTENT: &str = "services:\n  web:\n    report_interval: 10s\n";

fn stamped(seq: u64, time: &str) -> coherd_model::Observation {
    let mut v = rep("web", "w1", seq, json!({"phase": "ready"}));
    v["time"] = json!(at(time).to_string());
    observation(&v)
}

#[test]
fn a_report_ahead_by_more_than_the_bound_opens_clock_skew_until_one_within_it() {
    let mut f = Harness::new(INTENT);
    // 30 s ahead is within the default bound.
    f.report_obs(at("0s"), &stamped(1, "30s"));
    f.assert_nothing();
    f.report_obs(at("10s"), &stamped(2, "2m 10s"));
    {
        let d = f.one(Kind::ClockSkew);
        assert_eq!(d.id, "clock_skew:web:w1");
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.evidence["offset_s"], 120.0);
        assert_episode(d, "10s", None);
    }
    // Still ahead: the evidence follows the latest offset.
    f.report_obs(at("20s"), &stamped(3, "1m 20s"));
    assert_eq!(f.one(Kind::ClockSkew).evidence["offset_s"], 60.0);
    // Applied at its receive time: the member is not silent while it reports.
    f.report_obs(at("30s"), &stamped(4, "1m 30s"));
    f.tick("55s");
    f.assert_no(Kind::Silent);
    // A report without a time is taken at its receive time: no skew.
    f.report("1m", rep("web", "w1", 5, json!({})));
    assert_episode(f.one(Kind::ClockSkew), "10s", Some("1m"));
}

#[test]
fn a_skewed_member_is_not_coherent() {
    let mut f = Harness::new(INTENT);
    f.report_obs(at("0s"), &stamped(1, "5m"));
    let slis = f.engine_mut().service_slis("web").expect("web");
    assert_eq!(slis.coherence, Some(0.0));
}
