//! The Prometheus source: coherd polls Prometheus servers' query API for
//! `*_build_info`-style and `up` series and turns them into ordinary
//! observations (validated and stored as any report), so a fleet Prometheus
//! already scrapes reports without new code.

use std::collections::BTreeMap;
use std::time::Duration;

use coherd_model::time::{deserialize_duration, wall_now};
use coherd_model::{Limits, Observation};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use crate::pipeline::{Work, Writer};

/// Prometheus servers one config may poll.
pub(crate) const MAX_SOURCES: usize = 16;
/// Queries per server.
pub(crate) const MAX_QUERIES: usize = 32;
/// Series one query may return; past this the rest are left out (and logged).
pub(crate) const MAX_SERIES: usize = 100_000;
/// Bytes of one answer.
const MAX_ANSWER: usize = 64 << 20;

/// `sources:` in the server's config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Prometheus servers to poll.
    pub prometheus: Vec<PrometheusSource>,
    /// A Kubernetes cluster to watch.
    pub kubernetes: Option<KubeSource>,
}

/// A Kubernetes cluster: Pods as members, EndpointSlices as observers, Leases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeSource {
    /// The API server's URL, for `kubectl proxy` or a plain-HTTP test API;
    /// without it, the in-cluster config or the kubeconfig (`KUBECONFIG`).
    #[serde(default)]
    pub url: Option<String>,
    /// One namespace; none: all.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A label selector for Pods (`tier=web`).
    #[serde(default)]
    pub label_selector: Option<String>,
    /// The service label, facets from labels and annotations, the observers' service.
    #[serde(default)]
    pub mapping: coherd_kube::Mapping,
}

/// One Prometheus server and what to ask it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSource {
    /// Its name in logs and metrics.
    pub name: String,
    /// Its base URL (`http://prometheus:9090`).
    pub url: String,
    /// How often it is asked.
    #[serde(
        default = "default_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub interval: Duration,
    /// Time allowed for one query.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Headers sent with every query (`Authorization: Bearer ...`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The queries, each mapping labels to service, member and facets.
    pub queries: Vec<PromQuery>,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One instant query and how its series become members.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromQuery {
    /// PromQL giving an instant vector (`app_build_info`, `up{job="checkout"}`).
    pub query: String,
    /// The service, fixed; otherwise from `service_label`.
    #[serde(default)]
    pub service: Option<String>,
    /// The label holding the service (default `job`).
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// The label holding the member (default `instance`).
    #[serde(default = "default_member_label")]
    pub member_label: String,
    /// Facets from labels: `{version: version}` reports label `version` as facet `version`.
    #[serde(default)]
    pub facets: BTreeMap<String, String>,
    /// The sample's value as the member's phase: 0 is `down`, anything else
    /// `up` (for `up` series).
    #[serde(default)]
    pub phase: Option<PhaseFromValue>,
}

fn default_service_label() -> String {
    "job".into()
}

fn default_member_label() -> String {
    "instance".into()
}

/// Phases for a sample's value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseFromValue {
    /// The phase for a non-zero value.
    #[serde(default = "default_up")]
    pub up: String,
    /// The phase for zero (a non-serving phase).
    #[serde(default = "default_down")]
    pub down: String,
}

fn default_up() -> String {
    "ready".into()
}

fn default_down() -> String {
    "stopped".into()
}

impl SourcesConfig {
    /// Checks what serde cannot; every problem named.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.prometheus.len() > MAX_SOURCES {
            problems.push(format!("sources.prometheus: at most {MAX_SOURCES}"));
        }
        for (i, s) in self.prometheus.iter().enumerate() {
            let at = format!("sources.prometheus[{i}] ({})", s.name);
            if s.name.is_empty()
                || s.name.len() > 64
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                problems.push(format!(
                    "{at}: name must be 1 to 64 letters, digits, '-' or '_'"
                ));
            }
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                problems.push(format!("{at}: url must start with http:// or https://"));
            }
            if s.interval < Duration::from_secs(1)
                || s.timeout.is_zero()
                || s.timeout > s.interval.max(Duration::from_secs(1)) * 10
            {
                problems.push(format!(
                    "{at}: interval must be at least 1s and timeout above 0"
                ));
            }
            if s.queries.is_empty() || s.queries.len() > MAX_QUERIES {
                problems.push(format!("{at}: 1 to {MAX_QUERIES} queries"));
            }
            for q in &s.queries {
                if let Some(svc) = &q.service
                    && let Err(e) = coherd_model::names::service(svc)
                {
                    problems.push(format!("{at}: service {svc:?}: {e}"));
                }
                if q.facets.is_empty() && q.phase.is_none() {
                    problems.push(format!(
                        "{at}: query {:?} maps no facet and no phase",
                        q.query
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Polls, by source and outcome (`ok`, `error`).
pub(crate) type PollMetrics = Family<Vec<(&'static str, String)>, Counter>;

/// Polls `source` every `interval` until `stop`, submitting what it sees to the writer.
pub(crate) async fn run(
    source: PrometheusSource,
    writer: Writer,
    limits: Limits,
    polls: PollMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(client) = reqwest::Client::builder()
        .connect_timeout(source.timeout)
        .build()
    else {
        tracing::error!(source = %source.name, "cannot build the HTTP client; the source does not run");
        return;
    };
    let mut tick = tokio::time::interval(source.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let outcome = match poll(&client, &source).await {
            Ok(members) => {
                let ms = wall_now().as_nanos() as u64 / 1_000_000;
                seq = (seq + 1).max(ms);
                submit(&writer, &source, members, seq, &limits).await
            }
            Err(e) => Err(e),
        };
        let label = match &outcome {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(source = %source.name, error = %e, "a Prometheus poll failed");
                "error"
            }
        };
        polls
            .get_or_create(&vec![
                ("source", source.name.clone()),
                ("outcome", label.to_string()),
            ])
            .inc();
    }
}

/// What one poll saw: facets (and the phase) per (service, member).
type Members = BTreeMap<(String, String), BTreeMap<String, String>>;

async fn poll(client: &reqwest::Client, source: &PrometheusSource) -> Result<Members, String> {
    let mut members: Members = BTreeMap::new();
    let url = format!("{}/api/v1/query", source.url.trim_end_matches('/'));
    for q in &source.queries {
        let encoded = serde_urlencoded::to_string([("query", q.query.as_str())])
            .map_err(|e| e.to_string())?;
        let mut req = client
            .get(format!("{url}?{encoded}"))
            .timeout(source.timeout);
        for (k, v) in &source.headers {
            req = req.header(k, v);
        }
        let mut r = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url} answered {} to {:?}", r.status(), q.query));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "the answer to {:?} is over {MAX_ANSWER} bytes",
                    q.query
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("the answer to {:?} is not JSON: {e}", q.query))?;
        if answer["status"] != "success" || answer["data"]["resultType"] != "vector" {
            return Err(format!(
                "{:?} did not give an instant vector: {}",
                q.query, answer["error"]
            ));
        }
        let series = answer["data"]["result"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if series.len() > MAX_SERIES {
            tracing::warn!(query = %q.query, series = series.len(), "more series than coherd takes from one query; the rest are left out");
        }
        for s in series.iter().take(MAX_SERIES) {
            let label = |name: &str| s["metric"][name].as_str().map(String::from);
            let Some(service) = q.service.clone().or_else(|| label(&q.service_label)) else {
                continue;
            };
            let Some(member) = label(&q.member_label) else {
                continue;
            };
            let facets = members.entry((service, member)).or_default();
            for (facet, from) in &q.facets {
                if let Some(v) = label(from) {
                    facets.insert(facet.clone(), v);
                }
            }
            if let Some(p) = &q.phase {
                let value: f64 = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                facets.insert(
                    "phase".into(),
                    if value != 0.0 {
                        p.up.clone()
                    } else {
                        p.down.clone()
                    },
                );
            }
        }
    }
    Ok(members)
}

/// Turns what a poll saw into report bodies and stores them.
async fn submit(
    writer: &Writer,
    source: &PrometheusSource,
    members: Members,
    seq: u64,
    limits: &Limits,
) -> Result<(), String> {
    let bodies = members
        .into_iter()
        .map(|((service, member), facets)| json!({"service": service, "member": member, "seq": seq, "facets": facets}))
        .collect();
    store(writer, &source.name, bodies, limits).await
}

/// Validates report bodies as any report is validated (one that is not valid
/// is logged and left out) and stores them through the writer; shared by the
/// sources.
pub(crate) async fn store(
    writer: &Writer,
    source: &str,
    bodies: Vec<Value>,
    limits: &Limits,
) -> Result<(), String> {
    let mut observations = Vec::with_capacity(bodies.len());
    for body in bodies {
        match Observation::from_json(&body.to_string(), limits) {
            Ok(o) => observations.push(o),
            Err(e) => {
                tracing::warn!(%source, service = %body["service"], member = %body["member"], error = ?e, "a report from a source is not valid; left out")
            }
        }
    }
    if observations.is_empty() {
        return Ok(());
    }
    let (tx, rx) = oneshot::channel();
    writer
        .submit(Work::Observations {
            observations,
            reply: tx,
        })
        .map_err(|_| "the writer is busy or stopping".to_string())?;
    match rx.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("the reports were not stored: {e:?}")),
        Err(_) => Err("the writer stopped".into()),
    }
}
