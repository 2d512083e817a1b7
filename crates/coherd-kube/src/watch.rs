//! Watching a cluster: Pods, EndpointSlices and Leases through kube-rs
//! watchers (list, then watch from the list's resourceVersion with bookmarks;
//! a 410 Gone relists; errors back off), turned into observation bodies with
//! [`crate::map`] and handed to a sink as they change.

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::map::{Mapping, endpoint_slice, lease, pod};

/// Which objects to watch.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// One namespace; `None`: all.
    pub namespace: Option<String>,
    /// A label selector for Pods (`tier=web`).
    pub label_selector: Option<String>,
}

// One change lives at a time, moved straight into `apply`: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Change {
    Pod(watcher::Event<Pod>),
    Slice(watcher::Event<EndpointSlice>),
    Lease(watcher::Event<Lease>),
}

/// What the watchers have seen, to merge a member's pod and leases into one
/// report (a report replaces a member's leases) and to name pods' services.
#[derive(Default)]
struct Seen {
    /// Pod reports by "namespace/name".
    pods: HashMap<String, Value>,
    /// Leases by "namespace/name": (holder "namespace/name", entry).
    leases: HashMap<String, (String, Value)>,
    /// Last seq per (service, member).
    seq: HashMap<(String, String), u64>,
}

impl Seen {
    fn numbered(&mut self, mut body: Value) -> Value {
        let key = (
            body["service"].as_str().unwrap_or_default().to_string(),
            body["member"].as_str().unwrap_or_default().to_string(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let seq = self.seq.entry(key).or_default();
        *seq = (*seq + 1).max(now);
        body["seq"] = json!(*seq);
        body
    }

    /// The pod's report with the leases its pod holds.
    fn pod_report(&mut self, key: &str) -> Option<Value> {
        let mut body = self.pods.get(key)?.clone();
        let held: Vec<&Value> = self
            .leases
            .values()
            .filter(|(h, _)| h == key)
            .map(|(_, e)| e)
            .collect();
        if !held.is_empty() {
            body["leases"] = json!(held);
        }
        Some(self.numbered(body))
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Watches until the stream ends (it does not on its own), handing each
/// batch of observation bodies (with `seq`) to `sink`.
pub async fn run(
    client: kube::Client,
    scope: Scope,
    mapping: Mapping,
    mut sink: impl FnMut(Vec<Value>),
) {
    fn api<K>(client: &kube::Client, scope: &Scope) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &scope.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let mut pod_cfg = watcher::Config::default();
    if let Some(sel) = &scope.label_selector {
        pod_cfg = pod_cfg.labels(sel);
    }
    let pods = watcher(api::<Pod>(&client, &scope), pod_cfg)
        .default_backoff()
        .map(|e| e.map(Change::Pod));
    let slices = watcher(
        api::<EndpointSlice>(&client, &scope),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|e| e.map(Change::Slice));
    let leases = watcher(api::<Lease>(&client, &scope), watcher::Config::default())
        .default_backoff()
        .map(|e| e.map(Change::Lease));
    let mut all = std::pin::pin!(futures_util::stream::select(
        futures_util::stream::select(pods, slices),
        leases
    ));
    let mut seen = Seen::default();
    while let Some(change) = all.next().await {
        let change = match change {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "a Kubernetes watch failed; it resumes after a backoff");
                continue;
            }
        };
        let out = apply(&mut seen, &mapping, change);
        if !out.is_empty() {
            sink(out);
        }
    }
}

fn apply(seen: &mut Seen, mapping: &Mapping, change: Change) -> Vec<Value> {
    let mut out = Vec::new();
    match change {
        Change::Pod(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
            let key = key_of(&p.metadata);
            if let Some(body) = pod(&serde_json::to_value(&p).unwrap_or_default(), mapping) {
                seen.pods.insert(key.clone(), body);
                out.extend(seen.pod_report(&key));
            }
        }
        Change::Pod(watcher::Event::Delete(p)) => {
            // Gone from the API: its last report says it stopped.
            let key = key_of(&p.metadata);
            if let Some(mut body) = seen.pods.remove(&key) {
                body["facets"]["phase"] = json!("stopped");
                out.push(seen.numbered(body));
            }
        }
        Change::Slice(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let pods = &seen.pods;
            let service_of = |pod: &str| {
                pods.get(&format!("{ns}/{pod}"))
                    .and_then(|b| b["service"].as_str().map(String::from))
            };
            if let Some(body) = endpoint_slice(
                &serde_json::to_value(&s).unwrap_or_default(),
                mapping,
                &service_of,
            ) {
                out.push(seen.numbered(body));
            }
        }
        Change::Slice(watcher::Event::Delete(s)) => {
            // A slice that is gone routes to nothing.
            let body = json!({"service": mapping.observer_service, "member": s.metadata.name.clone().unwrap_or_default(), "views": BTreeMap::<String, Value>::new()});
            out.push(seen.numbered(body));
        }
        Change::Lease(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => {
            let key = key_of(&l.metadata);
            let ns = l.metadata.namespace.clone().unwrap_or_default();
            let before = seen.leases.remove(&key).map(|(h, _)| h);
            if let Some((holder, entry)) = lease(&serde_json::to_value(&l).unwrap_or_default()) {
                seen.leases.insert(key, (format!("{ns}/{holder}"), entry));
                out.extend(seen.pod_report(&format!("{ns}/{holder}")));
            }
            if let Some(h) = before {
                out.extend(seen.pod_report(&h));
            }
        }
        Change::Lease(watcher::Event::Delete(l)) => {
            if let Some((holder, _)) = seen.leases.remove(&key_of(&l.metadata)) {
                out.extend(seen.pod_report(&holder));
            }
        }
        Change::Pod(_) | Change::Slice(_) | Change::Lease(_) => {}
    }
    out
}
