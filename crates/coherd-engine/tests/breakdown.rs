//! Breakdowns: member labels named in the intent split the SLIs, and
//! member-level divergences carry their member's deploy and those labels.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use coherd_engine::{Engine, EngineConfig, Kind};
use common::{Harness, intent};
use serde_json::json;

const INTENT: &str = "services:\n  web:\n    report_interval: 10s\n    breakdown: [region]\n    facets:\n      version: {target: \"2\"}\n";

fn member(name: &str, region: &str, version: &str) -> serde_json::Value {
    json!({"service": "web", "member": name, "seq": 1, "deploy": "rel-7",
           "labels": {"region": region, "zone": "a"}, "facets": {"version": version}})
}

#[test]
fn slis_split_by_region_and_divergences_carry_deploy_and_region() {
    let mut f = Harness::new(INTENT);
    f.report("0s", member("w1", "eu", "2"));
    f.report("0s", member("w2", "eu", "1"));
    f.report("0s", member("w3", "us", "2"));
    let slis = f.engine_mut().service_slis("web").unwrap();
    let region = &slis.breakdown["region"];
    assert_eq!(region["eu"].members, 2);
    assert_eq!(region["eu"].coherence, Some(0.5));
    assert_eq!(region["us"].coherence, Some(1.0));
    assert!(
        !slis.breakdown.contains_key("zone"),
        "only the labels named"
    );

    let d = f.one(Kind::Drift);
    assert_eq!(d.deploy.as_deref(), Some("rel-7"));
    assert_eq!(d.labels["region"], "eu");
    assert!(!d.labels.contains_key("zone"));

    // A checkpoint does not keep them; loading takes them from the members.
    let bytes = f.engine().checkpoint();
    let engine =
        Engine::from_checkpoint(EngineConfig::default(), &bytes, Some(intent(INTENT))).unwrap();
    let d = engine
        .divergences()
        .iter()
        .find(|d| d.kind == Kind::Drift)
        .unwrap();
    assert_eq!(d.deploy.as_deref(), Some("rel-7"));
    assert_eq!(d.labels["region"], "eu");
}

#[test]
fn values_past_the_bound_are_summed_as_other() {
    let mut f = Harness::new(INTENT);
    for i in 0..70 {
        f.report("0s", member(&format!("w{i}"), &format!("r{i:02}"), "2"));
    }
    let slis = f.engine_mut().service_slis("web").unwrap();
    let region = &slis.breakdown["region"];
    assert_eq!(region.len(), coherd_engine::MAX_BREAKDOWN_VALUES + 1);
    assert_eq!(
        region["other"].members,
        70 - coherd_engine::MAX_BREAKDOWN_VALUES as u32
    );
}

#[test]
fn more_than_four_breakdown_labels_are_refused() {
    let yaml = "services:\n  web:\n    breakdown: [a, b, c, d, e]\n";
    let err = coherd_model::Intent::from_yaml(yaml)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 4 labels"), "{err}");
    let yaml = "services:\n  web:\n    breakdown: [region, region, service]\n";
    let err = coherd_model::Intent::from_yaml(yaml)
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
    assert!(err.contains("alerts already carry"), "{err}");
}
