//! coherd's Kubernetes source: how Kubernetes objects, as the API serves
//! them, become coherd observations ([`pod`], [`endpoint_slice`], [`lease`],
//! pure), and [`run`], kube-rs watchers of Pods, EndpointSlices and Leases
//! (list, then watch from the list's resourceVersion with bookmarks; a 410
//! Gone relists; errors back off) that hand each change's reports to a sink.
//! The mapping is tested on the API's object shapes, the watchers against a
//! fake API server that serves list and watch streams.
//!
//! - A **Pod** is a member of the service its `app.kubernetes.io/name` label
//!   names: facets from its containers' images (tag and digest) and chosen
//!   labels and annotations (a config hash); its phase from the pod's status:
//!   Pending is `starting`, Running and Ready is `ready`, Running not ready is
//!   `starting`, a deletion timestamp is `draining`, Succeeded or Failed is
//!   `stopped`; `deploy` from `pod-template-hash`.
//! - An **EndpointSlice** is an observer: for each endpoint's pod, its view of
//!   the pod's phase (`ready` while the endpoint is ready or serving, else
//!   `draining` when terminating, else `starting`), so a pod terminating but
//!   still ready in a slice is a `drain_violation`.
//! - A **Lease** (coordination.k8s.io) is held by its `holderIdentity`, with
//!   `leaseTransitions` as the fencing epoch and `renewTime +
//!   leaseDurationSeconds` as its expiry.

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod map;
mod watch;

pub use map::{Mapping, endpoint_slice, lease, pod};
pub use watch::{Scope, run};
