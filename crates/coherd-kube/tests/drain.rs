//! A recorded drain, through the engine: a pod being deleted while its
//! EndpointSlice still routes to it is a `drain_violation`, which resolves
//! once the slice stops routing to it.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use coherd_engine::{Engine, Kind};
use coherd_kube::{Mapping, endpoint_slice, pod};
use coherd_model::{Intent, Limits, Observation, Time};
use serde_json::{Value, json};

fn apply(engine: &mut Engine, at: Time, mut body: Value, seq: u64) {
    body["seq"] = json!(seq);
    let obs = Observation::from_json(&body.to_string(), &Limits::default()).unwrap();
    engine.observe(at, &obs).unwrap();
}

fn pod_json(name: &str, deleting: bool) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": "checkout:1.4.2"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    });
    if deleting {
        p["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:00:05Z");
    }
    p
}

fn slice(endpoints: Value) -> Value {
    json!({"metadata": {"name": "checkout-x1", "labels": {"kubernetes.io/service-name": "checkout"}}, "endpoints": endpoints})
}

fn endpoint(pod: &str, ready: bool, terminating: bool) -> Value {
    json!({"addresses": ["10.0.0.1"], "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
           "targetRef": {"kind": "Pod", "name": pod}})
}

#[test]
fn a_pod_deleted_while_its_slice_still_routes_to_it_is_a_drain_violation() {
    let m = Mapping::default();
    let t0: Time = "2026-12-02T10:00:00Z".parse().unwrap();
    let at = |s: i64| Time::from_nanos(t0.as_nanos() + s * 1_000_000_000);
    let mut engine = Engine::default();
    let intent =
        "services:\n  checkout:\n    phases: {agreement_timeout: 2s}\n  kube-endpoints: {}\n";
    engine.set_intent(t0, Intent::from_yaml(intent).unwrap());
    let svc = |_: &str| Some("checkout".to_string());
    apply(
        &mut engine,
        at(0),
        pod(&pod_json("checkout-1", false), &m).unwrap(),
        1,
    );
    apply(
        &mut engine,
        at(0),
        pod(&pod_json("checkout-2", false), &m).unwrap(),
        1,
    );
    apply(
        &mut engine,
        at(1),
        endpoint_slice(
            &slice(json!([
                endpoint("checkout-1", true, false),
                endpoint("checkout-2", true, false)
            ])),
            &m,
            &svc,
        )
        .unwrap(),
        1,
    );
    assert!(
        engine.open_divergences().next().is_none(),
        "all serving, all routed"
    );
    // checkout-2 is deleted: it drains, but the slice has not caught up.
    apply(
        &mut engine,
        at(5),
        pod(&pod_json("checkout-2", true), &m).unwrap(),
        2,
    );
    apply(
        &mut engine,
        at(6),
        endpoint_slice(
            &slice(json!([
                endpoint("checkout-1", true, false),
                endpoint("checkout-2", true, true)
            ])),
            &m,
            &svc,
        )
        .unwrap(),
        2,
    );
    // Past the time observers are allowed to catch up (agreement_timeout).
    engine.handle_timeout(at(9));
    let open: Vec<_> = engine
        .open_divergences()
        .map(|d| (d.kind, d.subjects.clone()))
        .collect();
    assert!(
        open.iter()
            .any(|(k, s)| *k == Kind::DrainViolation && s.iter().any(|x| x.contains("checkout-2"))),
        "{open:?}"
    );
    // The slice stops routing to it: the violation resolves.
    apply(
        &mut engine,
        at(10),
        endpoint_slice(
            &slice(json!([
                endpoint("checkout-1", true, false),
                endpoint("checkout-2", false, true)
            ])),
            &m,
            &svc,
        )
        .unwrap(),
        3,
    );
    assert!(
        !engine
            .open_divergences()
            .any(|d| d.kind == Kind::DrainViolation)
    );
}
