//! Kubernetes objects to observation bodies (JSON, without `seq`: the
//! watcher numbers them).

use std::collections::BTreeMap;

use coherd_model::Time;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// How objects map to services and facets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    /// The pod label naming its service.
    pub service_label: String,
    /// Facets from pod labels: `{config: config-hash}`.
    pub labels: BTreeMap<String, String>,
    /// Facets from pod annotations: `{config: checksum/config}`.
    pub annotations: BTreeMap<String, String>,
    /// The service EndpointSlices report in as observers.
    pub observer_service: String,
}

impl Default for Mapping {
    fn default() -> Mapping {
        Mapping {
            service_label: "app.kubernetes.io/name".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            observer_service: "kube-endpoints".into(),
        }
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// A Pod as an observation of its member (`None` without the service label).
pub fn pod(p: &Value, m: &Mapping) -> Option<Value> {
    let meta = &p["metadata"];
    let service = meta["labels"][&m.service_label].as_str()?;
    let name = meta["name"].as_str()?;
    let mut facets = Map::new();
    let containers = p["spec"]["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let statuses = p["status"]["containerStatuses"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for c in containers {
        let (Some(cname), Some(image)) = (c["name"].as_str(), c["image"].as_str()) else {
            continue;
        };
        let suffix = if containers.len() == 1 {
            String::new()
        } else {
            format!(".{cname}")
        };
        facets.insert(format!("image{suffix}"), json!(tag(image)));
        let digest = statuses
            .iter()
            .find(|s| s["name"] == cname)
            .and_then(|s| s["imageID"].as_str())
            .and_then(|id| id.rsplit_once('@').map(|(_, d)| d.to_string()));
        if let Some(d) = digest {
            facets.insert(format!("image_digest{suffix}"), json!(d));
        }
    }
    for (facet, label) in &m.labels {
        if let Some(v) = meta["labels"][label].as_str() {
            facets.insert(facet.clone(), json!(v));
        }
    }
    for (facet, ann) in &m.annotations {
        if let Some(v) = meta["annotations"][ann].as_str() {
            facets.insert(facet.clone(), json!(v));
        }
    }
    facets.insert("phase".into(), json!(pod_phase(p)));
    let mut obs = json!({"service": service, "member": name, "facets": facets});
    if let Some(hash) = meta["labels"]["pod-template-hash"].as_str() {
        obs["deploy"] = json!(hash);
    }
    Some(obs)
}

/// The tag of an image reference (`repo/app:1.4.2` is `1.4.2`; no tag is `latest`;
/// a reference by digest only is its digest).
fn tag(image: &str) -> &str {
    let (name, digest) = image
        .split_once('@')
        .map_or((image, None), |(n, d)| (n, Some(d)));
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, t)) => t,
        None => digest.unwrap_or("latest"),
    }
}

/// The member phase a Pod's status says.
fn pod_phase(p: &Value) -> &'static str {
    if !p["metadata"]["deletionTimestamp"].is_null() {
        return "draining";
    }
    match str_at(p, "/status/phase") {
        Some("Succeeded" | "Failed") => "stopped",
        Some("Running") => {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready { "ready" } else { "starting" }
        }
        _ => "starting",
    }
}

/// An EndpointSlice as an observation of the slice (an observer member of
/// `observer_service`) holding its view of each endpoint's pod; `None`
/// without the `kubernetes.io/service-name` label.
pub fn endpoint_slice(
    s: &Value,
    m: &Mapping,
    pod_service: &dyn Fn(&str) -> Option<String>,
) -> Option<Value> {
    let name = str_at(s, "/metadata/name")?;
    str_at(s, "/metadata/labels/kubernetes.io~1service-name")?;
    let mut views = Map::new();
    for e in s["endpoints"].as_array().into_iter().flatten() {
        if e["targetRef"]["kind"] != "Pod" {
            continue;
        }
        let Some(pod) = e["targetRef"]["name"].as_str() else {
            continue;
        };
        let Some(service) = pod_service(pod) else {
            continue;
        };
        let c = &e["conditions"];
        // Absent `ready` means ready (the API's own rule); serving defaults to ready.
        let ready = c["ready"].as_bool().unwrap_or(true);
        let serving = c["serving"].as_bool().unwrap_or(ready);
        let terminating = c["terminating"].as_bool().unwrap_or(false);
        let phase = if ready || serving {
            "ready"
        } else if terminating {
            "draining"
        } else {
            "starting"
        };
        views.insert(format!("{service}/{pod}"), json!({"phase": phase}));
    }
    Some(json!({"service": m.observer_service, "member": name, "views": views}))
}

/// A Lease as held by its holder: (holder, the `leases` entry), or `None`
/// when nobody holds it.
pub fn lease(l: &Value) -> Option<(String, Value)> {
    let holder = str_at(l, "/spec/holderIdentity").filter(|h| !h.is_empty())?;
    let name = str_at(l, "/metadata/name")?;
    let renew: Time = str_at(l, "/spec/renewTime")?.parse().ok()?;
    let secs = l["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(15);
    let epoch = l["spec"]["leaseTransitions"].as_u64().unwrap_or(0);
    let expires = renew.add(std::time::Duration::from_secs(secs));
    Some((
        holder.to_string(),
        json!({"resource": name, "epoch": epoch, "expires": expires}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Pod as `kubectl get pod -o json` shows one (trimmed to what matters).
    fn pod_json(name: &str, image: &str, phase: &str, ready: bool, deleting: bool) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop",
                "labels": {"app.kubernetes.io/name": "checkout", "pod-template-hash": "7d9f8c6b5", "config-hash": "abc"},
                "annotations": {"checksum/config": "sha256:ff"}},
            "spec": {"containers": [{"name": "app", "image": image}]},
            "status": {"phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "app", "imageID": format!("{image}@sha256:0123abcd")}]}
        });
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:00:00Z");
        }
        p
    }

    #[test]
    fn a_pod_is_a_member_with_image_facets_and_a_phase() {
        let m = Mapping {
            labels: BTreeMap::from([("config".into(), "config-hash".into())]),
            annotations: BTreeMap::from([("config_file".into(), "checksum/config".into())]),
            ..Mapping::default()
        };
        let obs = pod(
            &pod_json(
                "checkout-1",
                "registry.local:5000/shop/checkout:1.4.2",
                "Running",
                true,
                false,
            ),
            &m,
        )
        .unwrap();
        assert_eq!(obs["service"], "checkout");
        assert_eq!(obs["member"], "checkout-1");
        assert_eq!(obs["deploy"], "7d9f8c6b5");
        assert_eq!(
            obs["facets"],
            json!({"image": "1.4.2", "image_digest": "sha256:0123abcd", "config": "abc", "config_file": "sha256:ff", "phase": "ready"})
        );
        let phase = |phase: &str, ready: bool, deleting: bool| {
            pod(&pod_json("p", "app:1", phase, ready, deleting), &m).unwrap()["facets"]["phase"]
                .clone()
        };
        assert_eq!(phase("Pending", false, false), "starting");
        assert_eq!(phase("Running", false, false), "starting");
        assert_eq!(phase("Running", true, true), "draining");
        assert_eq!(phase("Succeeded", false, false), "stopped");
        assert_eq!(phase("Failed", false, false), "stopped");
        // The observation is one coherd takes, with a seq added.
        let mut o = obs.clone();
        o["seq"] = json!(1);
        coherd_model::Observation::from_json(&o.to_string(), &coherd_model::Limits::default())
            .unwrap();
        let mut unlabelled = pod_json("x", "app:1", "Running", true, false);
        unlabelled["metadata"]["labels"] = json!({});
        assert!(
            pod(&unlabelled, &m).is_none(),
            "no service label: not a member"
        );
    }

    #[test]
    fn image_tags_read_as_people_write_them() {
        assert_eq!(tag("nginx"), "latest");
        assert_eq!(tag("nginx:1.25"), "1.25");
        assert_eq!(tag("registry:5000/team/app:2.0"), "2.0");
        assert_eq!(tag("registry:5000/team/app"), "latest");
        assert_eq!(tag("app@sha256:abc"), "sha256:abc");
        assert_eq!(tag("app:1.0@sha256:abc"), "1.0");
    }

    #[test]
    fn a_slice_that_still_routes_to_a_terminating_pod_sees_it_ready() {
        // As the API serves an EndpointSlice (discovery.k8s.io/v1).
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "checkout-abc12", "labels": {"kubernetes.io/service-name": "checkout"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
                 "targetRef": {"kind": "Pod", "name": "checkout-1"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": true, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "checkout-2"}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": false, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "checkout-3"}},
                {"addresses": ["10.0.0.4"], "conditions": {}, "targetRef": {"kind": "Pod", "name": "checkout-4"}},
                {"addresses": ["10.0.0.9"], "targetRef": {"kind": "Node", "name": "n"}}
            ]
        });
        let obs =
            endpoint_slice(&slice, &Mapping::default(), &|_| Some("checkout".into())).unwrap();
        assert_eq!(obs["service"], "kube-endpoints");
        assert_eq!(obs["member"], "checkout-abc12");
        assert_eq!(
            obs["views"],
            json!({
                "checkout/checkout-1": {"phase": "ready"},
                "checkout/checkout-2": {"phase": "ready"},
                "checkout/checkout-3": {"phase": "draining"},
                "checkout/checkout-4": {"phase": "ready"}
            })
        );
    }

    #[test]
    fn a_lease_is_held_by_its_holder_with_transitions_as_epoch() {
        let l = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "scheduler-leader", "namespace": "shop"},
            "spec": {"holderIdentity": "sched-2", "leaseDurationSeconds": 15, "leaseTransitions": 7,
                     "renewTime": "2026-12-02T10:00:00.000000Z"}
        });
        let (holder, entry) = lease(&l).unwrap();
        assert_eq!(holder, "sched-2");
        assert_eq!(
            entry,
            json!({"resource": "scheduler-leader", "epoch": 7, "expires": "2026-12-02T10:00:15Z"})
        );
        let mut free = l.clone();
        free["spec"]["holderIdentity"] = json!("");
        assert!(lease(&free).is_none());
    }
}
