//! `/metrics` in OpenMetrics text: ingest counters kept here, fleet gauges
//! read from the engine at scrape time. No per-member series.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use coherd_engine::Engine;

/// Counters the server updates as it works.
#[derive(Clone)]
pub struct Metrics {
    /// Observations applied.
    pub observations: Counter,
    /// Observations ignored as duplicates.
    pub duplicates: Counter,
    /// HTTP requests by matched route and status class.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Ingest acknowledgement latency.
    pub ingest_seconds: Histogram,
    /// Store commit latency (one per group commit).
    pub commit_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            observations: Counter::default(),
            duplicates: Counter::default(),
            requests: Family::default(),
            ingest_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 16)),
        }
    }
}

impl Metrics {
    /// Renders every metric, reading fleet gauges from `engine`.
    pub fn render(&self, engine: &Engine) -> String {
        let mut r = Registry::with_prefix("coherd");
        r.register(
            "ingest_observations",
            "Observations applied",
            self.observations.clone(),
        );
        r.register(
            "ingest_duplicates",
            "Observations ignored as duplicates (seq at or below the last applied)",
            self.duplicates.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route and status class",
            self.requests.clone(),
        );
        r.register(
            "ingest_ack_seconds",
            "Time from receiving an ingest request to acknowledging it",
            self.ingest_seconds.clone(),
        );
        r.register(
            "store_commit_seconds",
            "Time of one group commit",
            self.commit_seconds.clone(),
        );

        let members = Family::<Vec<(String, String)>, Gauge>::default();
        let coherence =
            Family::<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let open = Family::<Vec<(String, String)>, Gauge>::default();
        for s in engine.services() {
            let svc = vec![("service".to_string(), s.service.clone())];
            let state = |st: &str| {
                vec![
                    ("service".to_string(), s.service.clone()),
                    ("state".to_string(), st.to_string()),
                ]
            };
            members.get_or_create(&state("live")).set(s.live as i64);
            members
                .get_or_create(&state("not_live"))
                .set((s.members - s.live) as i64);
            if let Some(c) = s.coherence {
                coherence.get_or_create(&svc).set(c);
            }
        }
        for d in engine.open_divergences() {
            let labels = vec![
                ("service".to_string(), d.service.clone()),
                ("kind".to_string(), d.kind.as_str().to_string()),
                ("severity".to_string(), d.severity.as_str().to_string()),
            ];
            open.get_or_create(&labels).inc();
        }
        r.register("members", "Known members by state", members);
        r.register(
            "coherence_ratio",
            "Live members coherent over known non-terminal members",
            coherence,
        );
        r.register(
            "divergences_open",
            "Open divergences by kind and severity",
            open,
        );
        let mut out = String::new();
        if encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }
}
