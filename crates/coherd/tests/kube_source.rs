//! Black-box: `coherd serve` watching a (fake) Kubernetes API: pods become
//! members, a rollout becomes drift and mixed state, and a pod still routed
//! by its EndpointSlice while terminating becomes a drain_violation.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use common::{Server, get_json, temp_dir, wait_until};
use serde_json::{Value, json};

/// A fake API server: lists what `objects` holds per path, and streams
/// watch events sent on a path's channel, one watcher at a time.
struct FakeApi {
    objects: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    watchers: Arc<Mutex<HashMap<String, Vec<Sender<String>>>>>,
    version: Arc<Mutex<u64>>,
}

const PODS: &str = "/api/v1/pods";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

impl FakeApi {
    fn start() -> (FakeApi, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeApi {
            objects: Arc::default(),
            watchers: Arc::default(),
            version: Arc::new(Mutex::new(100)),
        };
        let (objects, watchers, version) = (
            fake.objects.clone(),
            fake.watchers.clone(),
            fake.version.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (objects, watchers, version) =
                    (objects.clone(), watchers.clone(), version.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut first = String::new();
                    let _ = reader.read_line(&mut first);
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let target = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let out = reader.get_mut();
                    if query
                        .split('&')
                        .any(|kv| kv == "watch=true" || kv == "watch=1")
                    {
                        let (tx, rx): (Sender<String>, Receiver<String>) = channel();
                        watchers
                            .lock()
                            .unwrap()
                            .entry(path.to_string())
                            .or_default()
                            .push(tx);
                        let _ = out.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
                        for event in rx {
                            let chunk = format!("{event}\n");
                            if out
                                .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
                                .is_err()
                            {
                                return;
                            }
                        }
                        return;
                    }
                    let items = objects
                        .lock()
                        .unwrap()
                        .get(path)
                        .cloned()
                        .unwrap_or_default();
                    let rv = version.lock().unwrap().to_string();
                    let body = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}).to_string();
                    let _ = out.write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes());
                });
            }
        });
        (fake, url)
    }

    /// Adds or replaces an object and tells the watchers of its path.
    fn put(&self, path: &str, api_version: &str, kind: &str, mut object: Value) {
        let mut v = self.version.lock().unwrap();
        *v += 1;
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["resourceVersion"] = json!(v.to_string());
        object["metadata"]["namespace"] = json!("shop");
        let mut objects = self.objects.lock().unwrap();
        let list = objects.entry(path.to_string()).or_default();
        let name = object["metadata"]["name"].clone();
        let kind_of_event = if list.iter().any(|o| o["metadata"]["name"] == name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        list.retain(|o| o["metadata"]["name"] != name);
        list.push(object.clone());
        let event = json!({"type": kind_of_event, "object": object}).to_string();
        if let Some(ws) = self.watchers.lock().unwrap().get_mut(path) {
            ws.retain(|w| w.send(event.clone()).is_ok());
        }
    }
}

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
        .map(|(p, t)| json!({"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": t},
            "targetRef": {"kind": "Pod", "name": p, "namespace": "shop"}}))
        .collect();
    json!({"metadata": {"name": "checkout-x1", "labels": {"kubernetes.io/service-name": "checkout"}}, "addressType": "IPv4", "endpoints": endpoints})
}

#[test]
fn a_watched_rollout_and_drain_become_divergences_in_coherd() {
    let (api, url) = FakeApi::start();
    api.put(PODS, "v1", "Pod", pod("checkout-a", "1.0", false));
    api.put(PODS, "v1", "Pod", pod("checkout-b", "1.0", false));
    api.put(
        SLICES,
        "discovery.k8s.io/v1",
        "EndpointSlice",
        slice(&[("checkout-a", false), ("checkout-b", false)]),
    );
    let dir = temp_dir("kube-source");
    std::fs::write(
        dir.join("intent.yaml"),
        "services:\n  checkout:\n    report_interval: 1h\n    facets:\n      image: {target: \"1.0\", uniform: true}\n    phases: {agreement_timeout: 2s}\n  kube-endpoints:\n    report_interval: 1h\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("coherd.yaml"),
        format!("sources:\n  kubernetes:\n    url: {url}\n"),
    )
    .unwrap();
    let (config, intent) = (
        dir.join("coherd.yaml").display().to_string(),
        dir.join("intent.yaml").display().to_string(),
    );
    let s = Server::start(&dir, &["--config", &config, "--intent", &intent]);
    let divergences = || -> Vec<(String, String)> {
        let mut d: Vec<(String, String)> = get_json(&format!("{}/v1/divergences", s.url))
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_string(),
                    d["subjects"][0].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        d.sort();
        d
    };
    wait_until("the pods as members", 30, || {
        get_json(&format!("{}/v1/services", s.url))
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["service"] == "checkout" && s["members"] == 2)
            })
    });
    // Both watches up (the list came first), then the rollout and the drain.
    wait_until("the watches", 10, || {
        ["/api/v1/pods", SLICES].iter().all(|p| {
            api.watchers
                .lock()
                .unwrap()
                .get(*p)
                .is_some_and(|w| !w.is_empty())
        })
    });
    api.put(PODS, "v1", "Pod", pod("checkout-b", "2.0", false));
    api.put(PODS, "v1", "Pod", pod("checkout-a", "1.0", true));
    api.put(
        SLICES,
        "discovery.k8s.io/v1",
        "EndpointSlice",
        slice(&[("checkout-a", true), ("checkout-b", false)]),
    );
    let want = vec![
        ("drain_violation".to_string(), "checkout-a".to_string()),
        ("drift".to_string(), "checkout-b".to_string()),
        ("mixed".to_string(), "checkout-b".to_string()),
    ];
    wait_until("drift, mixed and drain_violation", 30, || {
        divergences() == want
    });
}
