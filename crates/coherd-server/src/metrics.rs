//! `/metrics` in OpenMetrics text.
//!
//! Two sources feed it:
//!
//! - **Counters and histograms kept here**, bumped as the server works: ingest,
//!   HTTP requests, store commits, and the engine's events (divergences opened,
//!   escalated and resolved; detection latency; convergence of changes), which
//!   the writer hands to [`Metrics::record_event`] as it publishes them.
//! - **Gauges read from the engine at scrape time** ([`Metrics::render`]):
//!   members, coherence (now and over the engine's 5 m and 1 h windows),
//!   telemetry completeness, exposure, facet distributions, open divergences,
//!   phase and drain SLIs, and the process itself.
//!
//! Cardinality is bounded: no series carries a member id; facet values beyond
//! the [`TOP_VALUES`] most common of a facet are folded into `other`; only
//! well-known facets and facets the intent names get a distribution.
//!
//! The counters start at zero with the process (the engine rebuilt from the
//! store does not replay its events here), as Prometheus counters do.

mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use coherd_engine::{Change, Engine, Event, Kind, LatencySummary};

/// Facet values kept per facet in `coherd_facet_members`; the rest are `other`.
pub(crate) const TOP_VALUES: usize = 5;

/// Facets that always get a distribution (others only when the intent names them).
const WELL_KNOWN_FACETS: [&str; 5] = ["version", "config", "schema", "flags", "phase"];

/// A label set.
type Labels = Vec<(&'static str, String)>;
type F64Gauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Buckets for detection latency: 10 ms to about 45 min.
fn detection_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 3.0, 12))
}

/// Buckets for convergence: 1 s to about 4.5 days.
fn convergence_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 3.0, 12))
}

/// Counters the server updates as it works.
#[derive(Clone)]
pub(crate) struct Metrics {
    /// Observations applied.
    pub observations: Counter,
    /// Observations ignored as duplicates.
    pub duplicates: Counter,
    /// Observations refused for their time alone (the rest of their batch was stored).
    pub ingest_rejected: Counter,
    /// Notification delivery, by receiver.
    pub delivery: crate::delivery::DeliveryMetrics,
    /// The reconcile loop.
    pub reconcile: crate::reconcile::ReconcileMetrics,
    /// Polls of the Prometheus sources, by source and outcome.
    pub source_polls: crate::prometheus_source::PollMetrics,
    /// HTTP requests by matched route, method and status class.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Ingest acknowledgement latency.
    pub ingest_seconds: Histogram,
    /// Store commit latency (one per group commit).
    pub commit_seconds: Histogram,
    /// Engine time taken to copy the state for a checkpoint (ingest waits that long).
    pub checkpoint_copy_seconds: Histogram,
    /// Time to encode, compress and store a checkpoint (off the engine).
    pub checkpoint_save_seconds: Histogram,
    /// Size of the last checkpoint before compression.
    pub checkpoint_bytes: Gauge,
    /// Checkpoints that could not be stored.
    pub checkpoint_failures: Counter,
    /// Writes of divergence history that failed.
    pub history_failures: Counter,
    /// Member events the history lost (its queue was full, or a write failed).
    pub history_dropped: Counter,
    /// Divergences opened, by service, kind and severity at opening.
    pub opened: Family<Labels, Counter>,
    /// Divergences escalated, by service, kind and the severity reached.
    pub escalated: Family<Labels, Counter>,
    /// Divergences resolved, by service and kind.
    pub resolved: Family<Labels, Counter>,
    /// From the condition becoming true (or its deadline) to the divergence opening, by kind.
    pub detection_seconds: HistogramFamily,
    /// From a change of a targeted facet to 95 % / 100 % of live members at target, by service.
    pub convergence_seconds: HistogramFamily,
    /// The services that have series of their own.
    services: Arc<ServiceLabels>,
}

/// Services with series of their own on `/metrics`; past this, a service's
/// counters count under `service="other"` and its gauges are left out
/// (`coherd_metrics_services_folded` says how many).
pub(crate) const MAX_METRIC_SERVICES: usize = 1000;

/// The bounded set of service label values, first come first served.
#[derive(Default)]
struct ServiceLabels(std::sync::Mutex<std::collections::HashSet<String>>);

impl ServiceLabels {
    /// The label value for `service`: its own name while there is room, else `other`.
    fn label(&self, service: &str) -> String {
        if self.has_own(service) {
            service.to_string()
        } else {
            "other".to_string()
        }
    }

    /// Whether `service` has series of its own (admitting it while there is room).
    fn has_own(&self, service: &str) -> bool {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.contains(service) {
            return true;
        }
        if set.len() < MAX_METRIC_SERVICES {
            set.insert(service.to_string());
            return true;
        }
        false
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            observations: Counter::default(),
            duplicates: Counter::default(),
            ingest_rejected: Counter::default(),
            delivery: Default::default(),
            reconcile: Default::default(),
            source_polls: Default::default(),
            requests: Family::default(),
            ingest_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 16)),
            checkpoint_copy_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            checkpoint_save_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            checkpoint_bytes: Gauge::default(),
            checkpoint_failures: Counter::default(),
            history_failures: Counter::default(),
            history_dropped: Counter::default(),
            opened: Family::default(),
            escalated: Family::default(),
            resolved: Family::default(),
            detection_seconds: Family::new_with_constructor(detection_histogram),
            convergence_seconds: Family::new_with_constructor(convergence_histogram),
            services: Arc::default(),
        }
    }
}

impl Metrics {
    /// Counts one engine event. Call it as events are polled, before the
    /// engine's clock moves on, so that detection latency is measured at the
    /// time the divergence was opened.
    pub(crate) fn record_event(&self, engine: &Engine, event: &Event) {
        match event {
            Event::Divergence { index, change } => {
                let Some(d) = engine.divergences().get(*index) else {
                    return;
                };
                let kind = d.kind.as_str().to_string();
                let service = self.services.label(&d.service);
                let full = vec![
                    ("service", service.clone()),
                    ("kind", kind.clone()),
                    ("severity", d.severity.as_str().to_string()),
                ];
                match change {
                    Change::Opened => {
                        self.opened.get_or_create(&full).inc();
                        let latency = engine.now().seconds_since(d.opened_at).max(0.0);
                        self.detection_seconds
                            .get_or_create(&vec![("kind", kind)])
                            .observe(latency);
                    }
                    Change::Escalated => {
                        self.escalated.get_or_create(&full).inc();
                    }
                    Change::Resolved => {
                        self.resolved
                            .get_or_create(&vec![("service", service), ("kind", kind)])
                            .inc();
                    }
                }
            }
            Event::Convergence {
                service,
                percent,
                seconds,
                ..
            } => {
                self.convergence_seconds
                    .get_or_create(&vec![
                        ("service", self.services.label(service)),
                        ("percent", percent.to_string()),
                    ])
                    .observe(*seconds);
            }
            // A member's timeline is history, not a metric.
            Event::Member { .. } => {}
        }
    }

    /// Renders every metric in `format`, reading fleet gauges from `engine`
    /// (SLIs need it mutable).
    /// The fleet's gauges as the engine has them now: the only part of a
    /// scrape that needs the engine, so it is released before rendering.
    pub(crate) fn read_fleet(&self, engine: &mut Engine) -> FleetGauges {
        FleetGauges::read(engine, &self.services)
    }

    /// The exposition, from gauges read with [`Metrics::read_fleet`].
    pub(crate) fn render(
        &self,
        fleet: FleetGauges,
        slos: &[(String, coherd_alert::SloStatus)],
        format: Format,
    ) -> String {
        let mut root = Registry::default();
        process::register(&mut root);
        let r = root.sub_registry_with_prefix("coherd");
        self.register_counters(r);
        fleet.register(r);
        register_slos(r, slos);
        let mut out = String::new();
        if encode(&mut out, &root).is_err() {
            out.clear();
        }
        match format {
            Format::OpenMetrics => out,
            Format::Text => to_text_format(&out),
        }
    }

    fn register_counters(&self, r: &mut Registry) {
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
            "ingest_rejected",
            "Observations refused for their time alone (beyond max_future or older than max_report_age); the rest of their batch was stored",
            self.ingest_rejected.clone(),
        );
        let d = &self.delivery;
        r.register(
            "notify_attempts",
            "Attempts to deliver a notification, by receiver",
            d.attempts.clone(),
        );
        r.register(
            "notify_failures",
            "Notifications given up on (refused with a 4xx, or every attempt failed), by receiver",
            d.failures.clone(),
        );
        r.register(
            "notify_dropped",
            "Notifications dropped from a full receiver queue (a newer one superseded them), by receiver",
            d.dropped.clone(),
        );
        r.register(
            "notify_queue_depth",
            "Notifications waiting for a receiver",
            d.queued.clone(),
        );
        r.register_with_unit(
            "notify_oldest_undelivered_age",
            "Age of the oldest notification waiting for a receiver",
            Unit::Seconds,
            d.oldest.clone(),
        );
        r.register(
            "source_polls",
            "Polls of the Prometheus sources, by source and outcome (ok, error)",
            self.source_polls.clone(),
        );
        let rc = &self.reconcile;
        r.register(
            "reconcile_decisions",
            "Reconcile decisions by action and decision (planned, skipped, dispatched, succeeded, failed, verified, unverified, gave_up, quarantined, halted...)",
            rc.decisions.clone(),
        );
        r.register(
            "reconcile_in_flight",
            "Reconcile actions in flight",
            rc.in_flight.clone(),
        );
        r.register(
            "reconcile_quarantined_subjects",
            "Subjects quarantined because they kept reopening (another controller may be undoing the repairs), by service",
            rc.quarantined.clone(),
        );
        r.register(
            "reconcile_halted_rollouts",
            "Rollouts halted by a failed verification or an action that gave up, by service; resume with `coherd reconcile resume`",
            rc.halted.clone(),
        );
        r.register(
            "reconcile_paused",
            "1 while the reconcile emergency stop is on",
            rc.paused.clone(),
        );
        r.register(
            "reconcile_fencing_epoch",
            "The reconciler lease's fencing epoch this process holds; 0 while it does not hold it",
            rc.epoch.clone(),
        );
        r.register_with_unit(
            "reconcile_time_to_repair",
            "From a divergence opening to its repair being verified, by action",
            Unit::Seconds,
            rc.repair_seconds.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route, method and status class",
            self.requests.clone(),
        );
        r.register_with_unit(
            "ingest_ack",
            "Time from receiving an ingest request to acknowledging it",
            Unit::Seconds,
            self.ingest_seconds.clone(),
        );
        r.register_with_unit(
            "store_commit",
            "Time of one group commit",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register_with_unit(
            "checkpoint_copy",
            "Engine time taken to copy the state for a checkpoint; ingest waits that long",
            Unit::Seconds,
            self.checkpoint_copy_seconds.clone(),
        );
        r.register_with_unit(
            "checkpoint_save",
            "Time to encode, compress and store a checkpoint, off the engine",
            Unit::Seconds,
            self.checkpoint_save_seconds.clone(),
        );
        r.register_with_unit(
            "checkpoint_size",
            "Size of the last checkpoint before compression",
            Unit::Bytes,
            self.checkpoint_bytes.clone(),
        );
        r.register(
            "checkpoint_failures",
            "Checkpoints that could not be stored (the log then grows until one is)",
            self.checkpoint_failures.clone(),
        );
        r.register(
            "history_dropped",
            "Member events the history lost (its queue was full, or a write failed)",
            self.history_dropped.clone(),
        );
        r.register(
            "history_failures",
            "Writes of divergence history that failed (it is then recorded again whole)",
            self.history_failures.clone(),
        );
        r.register(
            "divergences_opened",
            "Divergences opened, by service, kind and severity at opening",
            self.opened.clone(),
        );
        r.register(
            "divergences_escalated",
            "Divergences whose severity rose, by service, kind and the severity reached",
            self.escalated.clone(),
        );
        r.register(
            "divergences_resolved",
            "Divergences resolved, by service and kind",
            self.resolved.clone(),
        );
        r.register_with_unit(
            "detection_latency",
            "From the observation that made a condition true (or its deadline) to the divergence opening, by kind",
            Unit::Seconds,
            self.detection_seconds.clone(),
        );
        r.register_with_unit(
            "convergence",
            "From a change of a targeted facet until 95 or 100 percent of live members were at target, by service",
            Unit::Seconds,
            self.convergence_seconds.clone(),
        );
    }
}

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0 text, for scrapers that ask for it (Prometheus does).
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for everyone else (curl, older tools).
    Text,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else the text format.
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites the OpenMetrics text the client encodes into the Prometheus text
/// format: counter families are named with their `_total` suffix, `unknown`
/// becomes `untyped`, and `# UNIT` and `# EOF` go.
fn to_text_format(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<&str> = None;
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split_once(' '))
                    .map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Gauges read from the engine for one scrape.
#[derive(Default)]
pub(crate) struct FleetGauges {
    members: Family<Labels, Gauge>,
    coherence: Family<Labels, F64Gauge>,
    coherence_window: Family<Labels, F64Gauge>,
    completeness: Family<Labels, F64Gauge>,
    exposure: Family<Labels, F64Gauge>,
    exposure_window: Family<Labels, F64Gauge>,
    facet_members: Family<Labels, Gauge>,
    open: Family<Labels, Gauge>,
    drain_requests: Family<Labels, Gauge>,
    drain_ratio: Family<Labels, F64Gauge>,
    phase_mismatch: Family<Labels, F64Gauge>,
    flaps: Family<Labels, F64Gauge>,
    replica_ratio: Family<Labels, F64Gauge>,
    schema_error_ratio: Family<Labels, F64Gauge>,
    duplicate_ratio: Family<Labels, F64Gauge>,
    error_ratio: Family<Labels, F64Gauge>,
    exposure_unapproved_window: Family<Labels, F64Gauge>,
    replica_lag: Family<Labels, Gauge>,
    /// Per breakdown label value (at most 64 per label, 4 labels).
    breakdown_coherence: Family<Labels, F64Gauge>,
    breakdown_completeness: Family<Labels, F64Gauge>,
    breakdown_members: Family<Labels, Gauge>,
    /// p50, p99 and max of the engine's recent phase change latencies.
    phase_change_stats: [Family<Labels, F64Gauge>; 3],
    phase_change_count: Family<Labels, Counter>,
    /// p50, p99 and max of the engine's recent detection latencies.
    detection_stats: [Family<Labels, F64Gauge>; 3],
    /// Dephasing per declared job: order parameter, peak concurrency, members.
    dephase_order: Family<Labels, F64Gauge>,
    dephase_peak: Family<Labels, Gauge>,
    dephase_members: Family<Labels, Gauge>,
    dephase_starts: Family<Labels, Gauge>,
    /// Services left out because the bound on services with series was reached.
    folded: Gauge,
}

fn svc(service: &str) -> Labels {
    vec![("service", service.to_string())]
}

fn with(service: &str, key: &'static str, value: &str) -> Labels {
    vec![("service", service.to_string()), (key, value.to_string())]
}

impl FleetGauges {
    fn read(engine: &mut Engine, own: &ServiceLabels) -> FleetGauges {
        let f = FleetGauges::default();
        let names: Vec<String> = engine
            .service_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let intent_facets: BTreeMap<String, BTreeSet<String>> = engine
            .intent()
            .map(|i| {
                i.services
                    .iter()
                    .map(|(s, si)| (s.clone(), si.facets.keys().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default();
        let mut folded = 0;
        for name in &names {
            if !own.has_own(name) {
                folded += 1;
                continue;
            }
            let Some(s) = engine.service_slis(name) else {
                continue;
            };
            let left = s.members.saturating_sub(s.live + s.silent);
            for (state, n) in [("live", s.live), ("silent", s.silent), ("left", left)] {
                f.members
                    .get_or_create(&with(name, "state", state))
                    .set(n as i64);
            }
            if let Some(c) = s.coherence {
                f.coherence.get_or_create(&svc(name)).set(c);
            }
            for (w, v) in [("5m", s.coherence_5m), ("1h", s.coherence_1h)] {
                if let Some(v) = v {
                    f.coherence_window
                        .get_or_create(&with(name, "window", w))
                        .set(v);
                }
            }
            if let Some(c) = s.telemetry_completeness {
                f.completeness.get_or_create(&svc(name)).set(c);
            }
            for (facet, e) in &s.exposure {
                let labels = with(name, "facet", facet);
                if let Some(v) = e.now {
                    f.exposure.get_or_create(&labels).set(v);
                }
                for (w, v, u) in [
                    ("5m", e.w5m, e.unapproved.w5m),
                    ("1h", e.w1h, e.unapproved.w1h),
                ] {
                    let mut l = labels.clone();
                    l.push(("window", w.to_string()));
                    if let Some(v) = v {
                        f.exposure_window.get_or_create(&l).set(v);
                    }
                    if let Some(u) = u {
                        f.exposure_unapproved_window.get_or_create(&l).set(u);
                    }
                }
            }
            let windowed = |fam: &Family<Labels, F64Gauge>, w: &coherd_engine::Windowed| {
                for (win, v) in [("5m", w.w5m), ("1h", w.w1h)] {
                    if let Some(v) = v {
                        fam.get_or_create(&with(name, "window", win)).set(v);
                    }
                }
            };
            windowed(&f.drain_ratio, &s.drain_failure_rate);
            windowed(&f.replica_ratio, &s.replica_divergence_rate);
            windowed(&f.schema_error_ratio, &s.schema_error_rate);
            windowed(&f.duplicate_ratio, &s.duplicate_rate);
            windowed(&f.error_ratio, &s.error_rate);
            for (label, values) in &s.breakdown {
                for (value, b) in values {
                    let l = vec![
                        ("service", name.to_string()),
                        ("label", label.clone()),
                        ("value", value.clone()),
                    ];
                    if let Some(c) = b.coherence {
                        f.breakdown_coherence.get_or_create(&l).set(c);
                    }
                    if let Some(c) = b.telemetry_completeness {
                        f.breakdown_completeness.get_or_create(&l).set(c);
                    }
                    for (state, n) in [("live", b.live), ("silent", b.silent)] {
                        let mut l = l.clone();
                        l.push(("state", state.to_string()));
                        f.breakdown_members.get_or_create(&l).set(n as i64);
                    }
                }
            }
            if let Some(lag) = s.replica_lag_positions {
                f.replica_lag
                    .get_or_create(&svc(name))
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
            if let Some(v) = s.phase_mismatch_rate {
                f.phase_mismatch.get_or_create(&svc(name)).set(v);
            }
            if let Some(v) = s.flap_frequency {
                f.flaps.get_or_create(&svc(name)).set(v);
            }
            f.latency(name, &s.phase_change_latency_seconds, true);
            f.latency(name, &s.detection_latency_seconds, false);
            f.facets(engine, name, intent_facets.get(name));
            for j in engine.job_stats(name) {
                let labels = with(name, "job", &j.job);
                if let Some(r) = j.order_parameter {
                    f.dephase_order.get_or_create(&labels).set(r);
                }
                f.dephase_peak
                    .get_or_create(&labels)
                    .set(j.peak_concurrency as i64);
                f.dephase_members
                    .get_or_create(&labels)
                    .set(j.members as i64);
                for (slot, n) in j.start_slots.iter().enumerate() {
                    let mut l = labels.clone();
                    l.push(("slot", slot.to_string()));
                    f.dephase_starts.get_or_create(&l).set(*n as i64);
                }
            }
        }
        for d in engine.open_divergences() {
            // Open divergences are counts: a service past the bound counts under `other`.
            let service = own.label(&d.service);
            let labels = vec![
                ("service", service.clone()),
                ("kind", d.kind.as_str().to_string()),
                ("severity", d.severity.as_str().to_string()),
            ];
            f.open.get_or_create(&labels).inc();
            if d.kind == Kind::DrainViolation {
                let served = d
                    .evidence
                    .get("requests_while_non_serving")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                f.drain_requests
                    .get_or_create(&svc(&service))
                    .inc_by(served as i64);
            }
        }
        f.folded.set(folded);
        f
    }

    /// The engine's latency summary: p50, p99 and max of its recent samples
    /// as gauges; for phase changes also the running count as a counter. (Its
    /// sum is left out: the engine keeps a mean, and mean times count is not
    /// guaranteed monotonic in floating point, which a counter must be.)
    fn latency(&self, service: &str, s: &LatencySummary, totals: bool) {
        let stats = if totals {
            &self.phase_change_stats
        } else {
            &self.detection_stats
        };
        for (family, v) in stats.iter().zip([s.p50, s.p99, s.max]) {
            if let Some(v) = v {
                family.get_or_create(&svc(service)).set(v);
            }
        }
        if totals {
            self.phase_change_count
                .get_or_create(&svc(service))
                .inc_by(s.count);
        }
    }

    /// Members per facet value, the [`TOP_VALUES`] most common kept and the rest folded into `other`.
    fn facets(&self, engine: &Engine, service: &str, named: Option<&BTreeSet<String>>) {
        let Some(dists) = engine.facet_distributions(service) else {
            return;
        };
        for (facet, dist) in dists {
            let wanted = WELL_KNOWN_FACETS.contains(&facet.as_str())
                || named.is_some_and(|n| n.contains(&facet));
            if !wanted {
                continue;
            }
            for (value, n) in top_values(&dist.values, TOP_VALUES) {
                self.facet_members
                    .get_or_create(&vec![
                        ("service", service.to_string()),
                        ("facet", facet.clone()),
                        ("value", value),
                    ])
                    .set(n as i64);
            }
        }
    }

    fn register(self, r: &mut Registry) {
        r.register(
            "metrics_services_folded",
            "Services without series of their own: past the bound, their counters count under service=\"other\" and their gauges are left out",
            self.folded,
        );
        r.register(
            "members",
            "Known members by state (live, silent, left)",
            self.members,
        );
        r.register(
            "dephase_order_parameter",
            "Synchrony of a declared periodic job: the order parameter R of its start times over its window (1: all at once; near 0: spread out)",
            self.dephase_order,
        );
        r.register(
            "dephase_peak_concurrency",
            "Most runs of a declared periodic job in progress at once over its window",
            self.dephase_peak,
        );
        r.register(
            "dephase_members",
            "Members with a run of a declared periodic job in its window",
            self.dephase_members,
        );
        r.register(
            "dephase_starts",
            "Run starts of a declared periodic job in its window, per twelfth of its period (slot 0-11): the start-time histogram; one tall slot is a herd",
            self.dephase_starts,
        );
        r.register(
            "coherence_ratio",
            "Live members coherent over known non-terminal members, now",
            self.coherence,
        );
        r.register(
            "coherence_window_ratio",
            "Time-weighted coherence over the engine's 5m and 1h windows",
            self.coherence_window,
        );
        r.register(
            "telemetry_completeness_ratio",
            "Live members over expected members (or over known non-terminal members)",
            self.completeness,
        );
        r.register(
            "exposure_ratio",
            "Share of counting members whose targeted facet is off target, now",
            self.exposure,
        );
        r.register(
            "exposure_window_ratio",
            "Share of requests served off target over the 5m and 1h windows (member share without request counters)",
            self.exposure_window,
        );
        r.register(
            "facet_members",
            "Counting members per facet value; values beyond the most common five are summed as other",
            self.facet_members,
        );
        r.register(
            "divergences_open",
            "Open divergences by service, kind and severity",
            self.open,
        );
        r.register(
            "drain_violation_requests",
            "Requests served while non-serving, summed over open drain violations",
            self.drain_requests,
        );
        r.register(
            "drain_failure_window_ratio",
            "Requests served while non-serving over all requests, over the 5m and 1h windows",
            self.drain_ratio,
        );
        r.register(
            "replica_divergence_window_ratio",
            "Divergent (dataset, position) comparisons over all comparisons, over the 5m and 1h windows",
            self.replica_ratio,
        );
        r.register(
            "schema_error_window_ratio",
            "Schema errors over requests, over the 5m and 1h windows",
            self.schema_error_ratio,
        );
        r.register(
            "duplicate_window_ratio",
            "Duplicates over requests as members count them, over the 5m and 1h windows",
            self.duplicate_ratio,
        );
        r.register(
            "error_window_ratio",
            "Errors over requests as members count them, over the 5m and 1h windows",
            self.error_ratio,
        );
        r.register(
            "exposure_unapproved_window_ratio",
            "Share of requests served by members lagging or foreign on a targeted facet (outside an approved rollout window), over the 5m and 1h windows",
            self.exposure_unapproved_window,
        );
        r.register(
            "breakdown_coherence_ratio",
            "Coherence of the members with one value of a breakdown label (intent `breakdown`)",
            self.breakdown_coherence,
        );
        r.register(
            "breakdown_telemetry_completeness_ratio",
            "Telemetry completeness of the members with one value of a breakdown label",
            self.breakdown_completeness,
        );
        r.register(
            "breakdown_members",
            "Members with one value of a breakdown label, by state (live, silent)",
            self.breakdown_members,
        );
        r.register(
            "replica_lag_positions",
            "Positions the live replica furthest behind trails the highest live position of its dataset",
            self.replica_lag,
        );
        r.register(
            "phase_mismatch_ratio",
            "Observer and member pairs that disagree over all pairs with a view, now",
            self.phase_mismatch,
        );
        r.register(
            "phase_flips_per_member_hour",
            "Phase changes per known member over the last hour",
            self.flaps,
        );
        let [p50, p99, max] = self.phase_change_stats;
        for (stat, family) in [("p50", p50), ("p99", p99), ("max", max)] {
            r.register_with_unit(
                format!("phase_change_latency_{stat}"),
                format!("From a member's phase change to every observer agreeing: {stat} of the engine's recent samples"),
                Unit::Seconds,
                family,
            );
        }
        r.register(
            "phase_change_agreements",
            "Phase changes every observer came to agree on (samples of the phase change latency)",
            self.phase_change_count,
        );
        let [p50, p99, max] = self.detection_stats;
        for (stat, family) in [("p50", p50), ("p99", p99), ("max", max)] {
            r.register_with_unit(
                format!("detection_latency_{stat}"),
                format!("Detection latency per service: {stat} of the engine's recent samples (the histogram is by kind)"),
                Unit::Seconds,
                family,
            );
        }
    }
}

/// The `n` most common values (ties by name), then the rest summed as `other`.
fn top_values(values: &BTreeMap<String, u32>, n: usize) -> Vec<(String, u32)> {
    let mut sorted: Vec<(&String, &u32)> = values.iter().filter(|(_, c)| **c > 0).collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut out: Vec<(String, u32)> = Vec::new();
    let mut other = 0;
    for (i, (v, c)) in sorted.into_iter().enumerate() {
        if i < n && v != "other" {
            out.push((v.clone(), *c));
        } else {
            other += c;
        }
    }
    if other > 0 {
        out.push(("other".to_string(), other));
    }
    out
}

/// Error budget and burn rates of the SLOs that alerting tracks.
fn register_slos(r: &mut Registry, slos: &[(String, coherd_alert::SloStatus)]) {
    type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
    let budget = Family::<Vec<(String, String)>, FloatGauge>::default();
    let burn = Family::<Vec<(String, String)>, FloatGauge>::default();
    for (service, s) in slos {
        let base = vec![
            ("service".to_string(), service.clone()),
            ("objective".to_string(), s.objective.to_string()),
        ];
        if let Some(b) = s.error_budget_remaining {
            budget.get_or_create(&base).set(b);
        }
        for (window, v) in [
            ("1h", s.burn_rate_1h),
            ("6h", s.burn_rate_6h),
            ("3d", s.burn_rate_3d),
        ] {
            if let Some(v) = v {
                let mut l = base.clone();
                l.push(("window".to_string(), window.to_string()));
                burn.get_or_create(&l).set(v);
            }
        }
    }
    r.register(
        "slo_error_budget_remaining_ratio",
        "Share of the SLO period's coherence error budget left (1 untouched, below 0 overspent)",
        budget,
    );
    r.register(
        "slo_burn_rate",
        "How fast the coherence error budget burns (1 = exactly at the objective)",
        burn,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_the_top_fold_into_other() {
        let values: BTreeMap<String, u32> = [("a", 1), ("b", 9), ("c", 3), ("d", 3), ("e", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            top_values(&values, 2),
            vec![("b".into(), 9), ("c".into(), 3), ("other".into(), 4)]
        );
        assert_eq!(top_values(&values, 5).len(), 4);
    }

    #[test]
    fn text_format_names_counters_with_total_and_drops_openmetrics_lines() {
        let om = "# HELP a Things.\n# TYPE a counter\na_total 2\n# HELP b_seconds Time.\n# TYPE b_seconds gauge\n# UNIT b_seconds seconds\nb_seconds{x=\"1\"} 0.5\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total 2\n# HELP b_seconds Time.\n# TYPE b_seconds gauge\nb_seconds{x=\"1\"} 0.5\n"
        );
    }

    #[test]
    fn openmetrics_only_when_asked() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn a_value_named_other_is_summed_with_the_rest() {
        let values: BTreeMap<String, u32> = [("other", 5), ("x", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            top_values(&values, 5),
            vec![("x".into(), 1), ("other".into(), 5)]
        );
    }
}
