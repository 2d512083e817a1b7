//! The watchers against a fake API server that serves list and watch the way
//! the Kubernetes API documents them (resourceVersion, watch events, a 410
//! Gone that forces a relist): a recorded rollout and drain become exactly
//! the expected drift, mixed and drain_violation divergences.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use coherd_engine::{Engine, Kind};
use coherd_kube::{Mapping, Scope, run};
use coherd_model::{Intent, Limits, Observation, Time};
use serde_json::{Value, json};
use tokio::sync::broadcast;

const PODS: &str = "/api/v1/pods";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const LEASES: &str = "/apis/coordination.k8s.io/v1/leases";

/// One resource: its objects by name and a channel of watch lines.
struct Resource {
    kind: &'static str,
    api_version: &'static str,
    objects: Mutex<HashMap<String, Value>>,
    events: broadcast::Sender<String>,
}

struct Fake {
    resources: HashMap<&'static str, Resource>,
    version: AtomicU64,
    gone_once: AtomicBool,
}

impl Fake {
    /// Adds or changes an object: it is in the next list, and watchers get it.
    fn put(&self, path: &str, mut object: Value) {
        let r = &self.resources[path];
        let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        object["apiVersion"] = json!(r.api_version);
        object["kind"] = json!(r.kind);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["metadata"]["namespace"] = json!("shop");
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let kind = if r
            .objects
            .lock()
            .unwrap()
            .insert(name, object.clone())
            .is_some()
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let _ = r
            .events
            .send(json!({"type": kind, "object": object}).to_string());
    }
}

async fn serve(
    State(fake): State<Arc<Fake>>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let path = uri.path().to_string();
    let Some(r) = fake.resources.get(path.as_str()) else {
        return (axum::http::StatusCode::NOT_FOUND, "{}").into_response();
    };
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        if path == PODS && fake.gone_once.swap(false, Ordering::SeqCst) {
            // As the API answers a watch from a resourceVersion too old to serve.
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}});
            return ([("content-type", "application/json")], format!("{gone}\n")).into_response();
        }
        let rx = r.events.subscribe();
        let lines = tokio_stream::StreamExt::filter_map(
            tokio_stream::wrappers::BroadcastStream::new(rx),
            |l| {
                l.ok()
                    .map(|l| Ok::<_, std::convert::Infallible>(format!("{l}\n")))
            },
        );
        return (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(lines),
        )
            .into_response();
    }
    let items: Vec<Value> = r.objects.lock().unwrap().values().cloned().collect();
    let list = json!({"apiVersion": r.api_version, "kind": format!("{}List", r.kind),
        "metadata": {"resourceVersion": fake.version.load(Ordering::SeqCst).to_string()}, "items": items});
    axum::Json(list).into_response()
}

/// What a wait waits for, over the reports so far.
type Check = Box<dyn Fn(&[Value]) -> bool + Send>;

fn pod(name: &str, image: &str, deleting: bool) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": format!("checkout:{image}")}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    });
    if deleting {
        p["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:00:05Z");
    }
    p
}

fn slice(routed: &[(&str, bool)]) -> Value {
    let endpoints: Vec<Value> = routed
        .iter()
        .map(|(p, terminating)| json!({"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": terminating},
            "targetRef": {"kind": "Pod", "name": p, "namespace": "shop"}}))
        .collect();
    json!({"metadata": {"name": "checkout-x1", "labels": {"kubernetes.io/service-name": "checkout"}},
           "addressType": "IPv4", "endpoints": endpoints})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_rollout_and_drain_become_drift_mixed_and_drain_violation() {
    let resource = |kind, api_version| Resource {
        kind,
        api_version,
        objects: Mutex::new(HashMap::new()),
        events: broadcast::channel(64).0,
    };
    let fake = Arc::new(Fake {
        resources: HashMap::from([
            (PODS, resource("Pod", "v1")),
            (SLICES, resource("EndpointSlice", "discovery.k8s.io/v1")),
            (LEASES, resource("Lease", "coordination.k8s.io/v1")),
        ]),
        version: AtomicU64::new(100),
        gone_once: AtomicBool::new(true),
    });
    fake.put(PODS, pod("checkout-a", "1.0", false));
    fake.put(PODS, pod("checkout-b", "1.0", false));
    fake.put(
        SLICES,
        slice(&[("checkout-a", false), ("checkout-b", false)]),
    );
    fake.put(LEASES, json!({"metadata": {"name": "checkout-leader"},
        "spec": {"holderIdentity": "checkout-a", "leaseDurationSeconds": 3600, "leaseTransitions": 4, "renewTime": "2099-01-01T00:00:00.000000Z"}}));
    let app = axum::Router::new().fallback(serve).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let reports: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = reports.clone();
    tokio::spawn(run(
        client,
        Scope::default(),
        Mapping::default(),
        move |batch| {
            sink.lock().unwrap().extend(batch);
        },
    ));
    let wait_for = |what: &'static str, pred: Check| {
        let reports = reports.clone();
        async move {
            for _ in 0..200 {
                if pred(&reports.lock().unwrap()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no {what}: {:#?}", reports.lock().unwrap());
        }
    };
    wait_for(
        "first reports",
        Box::new(|r| {
            r.iter().any(|b| b["member"] == "checkout-x1")
                && r.iter().filter(|b| b["service"] == "checkout").count() >= 2
        }),
    )
    .await;
    // The rollout: checkout-b moves to 2.0 (after the pods' watch was told 410 Gone and relisted).
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.put(PODS, pod("checkout-b", "2.0", false));
    wait_for(
        "the rollout",
        Box::new(|r| {
            r.iter()
                .any(|b| b["member"] == "checkout-b" && b["facets"]["image"] == "2.0")
        }),
    )
    .await;
    // The drain: checkout-a is deleted while the slice still routes to it.
    fake.put(PODS, pod("checkout-a", "1.0", true));
    fake.put(
        SLICES,
        slice(&[("checkout-a", true), ("checkout-b", false)]),
    );
    wait_for(
        "the drain",
        Box::new(|r| {
            r.iter()
                .any(|b| b["member"] == "checkout-a" && b["facets"]["phase"] == "draining")
        }),
    )
    .await;
    wait_for(
        "the slice's view",
        Box::new(|r| r.iter().filter(|b| b["member"] == "checkout-x1").count() >= 2),
    )
    .await;

    // What coherd makes of it: replay the reports in order on the engine.
    let t0: Time = "2026-12-02T10:00:00Z".parse().unwrap();
    let mut engine = Engine::default();
    let intent = "services:\n  checkout:\n    facets:\n      image: {target: \"1.0\", uniform: true}\n    phases: {agreement_timeout: 2s}\n    leases:\n      checkout-leader: {exclusive: true}\n  kube-endpoints: {}\n";
    engine.set_intent(t0, Intent::from_yaml(intent).unwrap());
    let reports = reports.lock().unwrap().clone();
    for (i, body) in reports.iter().enumerate() {
        let obs = Observation::from_json(&body.to_string(), &Limits::default())
            .unwrap_or_else(|e| panic!("{body}: {e:?}"));
        engine
            .observe(t0.add(Duration::from_millis(i as u64 * 10)), &obs)
            .unwrap();
    }
    assert!(
        reports
            .iter()
            .any(|b| b["member"] == "checkout-a" && b["leases"][0]["epoch"] == 4),
        "the lease rides on its holder's report"
    );
    assert!(
        !fake.gone_once.load(Ordering::SeqCst),
        "the pods' watch met a 410 Gone, relisted and went on"
    );
    engine.handle_timeout(t0.add(Duration::from_secs(10)));
    let mut open: Vec<(Kind, String)> = engine
        .open_divergences()
        .map(|d| (d.kind, d.subjects.join(",")))
        .collect();
    open.sort();
    assert_eq!(
        open,
        vec![
            (Kind::Drift, "checkout-b".to_string()),
            (Kind::Mixed, "checkout-b".to_string()),
            (
                Kind::DrainViolation,
                "checkout-a,kube-endpoints/checkout-x1".to_string()
            ),
        ],
        "exactly the rollout's drift and mixed state and the drain's violation"
    );
}
