//! Grafana dashboards over coherd's metrics and the exported recording rules.
//!
//! Three dashboards, each a Grafana JSON model (import it, or provision the
//! files): **executive** (is the fleet coherent, how much budget is left, how
//! exposed are users), **on-call** (what is open, what burns, where) and
//! **debug** (coherd itself: ingest, latency, store, process). Every panel
//! reads one data source variable and filters on a `service` variable.

use serde_json::{Value, json};

use coherd_alert::slo::WINDOWS;

use crate::rules::number;

/// What the dashboards are built for.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardOptions {
    /// The coherence objective drawn as a threshold, e.g. 0.999.
    pub slo: f64,
}

impl Default for DashboardOptions {
    fn default() -> DashboardOptions {
        DashboardOptions { slo: 0.999 }
    }
}

/// One panel's query: PromQL and its legend.
struct Q(&'static str, &'static str);

/// Lays panels out left to right, 24 columns wide.
struct Layout {
    panels: Vec<Value>,
    x: u32,
    y: u32,
    row_h: u32,
}

impl Layout {
    fn new() -> Layout {
        Layout {
            panels: Vec::new(),
            x: 0,
            y: 0,
            row_h: 0,
        }
    }

    fn row(&mut self, title: &str) {
        self.newline();
        let id = self.panels.len() + 1;
        self.panels.push(json!({
            "id": id, "type": "row", "title": title, "collapsed": false, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
        }));
        self.y += 1;
    }

    fn newline(&mut self) {
        if self.x > 0 {
            self.y += self.row_h;
            self.x = 0;
            self.row_h = 0;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn panel(
        &mut self,
        kind: &str,
        title: &str,
        description: &str,
        w: u32,
        h: u32,
        unit: &str,
        queries: &[Q],
        extra: Value,
    ) {
        if self.x + w > 24 {
            self.newline();
        }
        let id = self.panels.len() + 1;
        let instant = matches!(kind, "stat" | "table" | "bargauge");
        let targets: Vec<Value> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                json!({
                    "refId": ((b'A' + i as u8) as char).to_string(),
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": q.0,
                    "legendFormat": q.1,
                    "instant": instant,
                    "range": !instant,
                    "format": if kind == "table" { "table" } else { "time_series" },
                })
            })
            .collect();
        let mut p = json!({
            "id": id,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": targets,
        });
        merge(&mut p, extra);
        self.panels.push(p);
        self.x += w;
        self.row_h = self.row_h.max(h);
    }
}

/// Merges `extra` into `base`, objects recursively.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn thresholds(steps: &[(Option<f64>, &str)]) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(v, c)| json!({"value": v, "color": c}))
        .collect();
    json!({"fieldConfig": {"defaults": {"thresholds": {"mode": "absolute", "steps": steps}}}})
}

fn dashboard(uid: &str, title: &str, description: &str, from: &str, panels: Vec<Value>) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["coherd"],
        "timezone": "browser",
        "editable": true,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": from, "to": "now"},
        "links": [{"title": "coherd", "type": "dashboards", "tags": ["coherd"], "asDropdown": true}],
        "templating": {"list": [
            {
                "name": "datasource", "label": "Data source", "type": "datasource",
                "query": "prometheus", "current": {}, "hide": 0,
            },
            {
                "name": "service", "label": "Service", "type": "query",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": "label_values(coherd_members, service)", "refId": "service"},
                "definition": "label_values(coherd_members, service)",
                "refresh": 2, "includeAll": true, "multi": true, "allValue": ".*",
                "current": {"text": "All", "value": "$__all"}, "sort": 1, "hide": 0,
            },
        ]},
        "annotations": {"list": []},
        "panels": panels,
    })
}

/// The three dashboards as (file stem, model): executive, on-call, debug.
pub fn grafana_dashboards(opts: &DashboardOptions) -> Vec<(&'static str, Value)> {
    vec![
        ("coherd-executive", executive(opts)),
        ("coherd-on-call", on_call(opts)),
        ("coherd-debug", debug()),
    ]
}

fn executive(opts: &DashboardOptions) -> Value {
    let slo = opts.slo;
    let mut l = Layout::new();
    l.row("Fleet");
    l.panel(
        "stat",
        "Coherence now",
        "Coherent members over known members, all selected services together.",
        6,
        5,
        "percentunit",
        &[Q(
            "sum(coherd_coherence_ratio{service=~\"$service\"} * on (service, instance) sum by (service, instance) (coherd_members{service=~\"$service\", state=~\"live|silent\"})) / sum(coherd_members{service=~\"$service\", state=~\"live|silent\"})",
            "coherence",
        )],
        merge_all(&[
            thresholds(&[(None, "red"), (Some(slo - 9.0 * (1.0 - slo)), "orange"), (Some(slo), "green")]),
            json!({"fieldConfig": {"defaults": {"decimals": 2}}}),
        ]),
    );
    l.panel(
        "stat",
        "Error budget left (worst service)",
        &format!(
            "Share of the coherence error budget (objective {}%) not yet spent over the SLO period; from the exported recording rules.",
            number(slo * 100.0)
        ),
        6,
        5,
        "percentunit",
        &[Q(
            "min(coherd:coherence_error_budget:remaining_ratio{service=~\"$service\"})",
            "budget left",
        )],
        thresholds(&[(None, "red"), (Some(0.25), "orange"), (Some(0.5), "green")]),
    );
    l.panel(
        "stat",
        "Critical divergences open",
        "Open divergences of critical severity.",
        6,
        5,
        "none",
        &[Q(
            "sum(coherd_divergences_open{service=~\"$service\", severity=\"critical\"}) or vector(0)",
            "critical",
        )],
        thresholds(&[(None, "green"), (Some(1.0), "red")]),
    );
    l.panel(
        "stat",
        "Members live / silent",
        "Members reporting, and known members that stopped reporting.",
        6,
        5,
        "none",
        &[
            Q(
                "sum(coherd_members{service=~\"$service\", state=\"live\"})",
                "live",
            ),
            Q(
                "sum(coherd_members{service=~\"$service\", state=\"silent\"})",
                "silent",
            ),
        ],
        json!({}),
    );
    l.row("Trends");
    l.panel(
        "timeseries",
        "Coherence per service (1h window)",
        "Time-weighted coherence over the engine's last hour.",
        12,
        8,
        "percentunit",
        &[Q(
            "coherd_coherence_window_ratio{service=~\"$service\", window=\"1h\"}",
            "{{service}}",
        )],
        merge_all(&[
            thresholds(&[(None, "red"), (Some(slo), "green")]),
            json!({"fieldConfig": {"defaults": {"custom": {"thresholdsStyle": {"mode": "line"}}}}}),
        ]),
    );
    l.panel(
        "timeseries",
        "Error budget left per service",
        "Coherence error budget left over the SLO period.",
        12,
        8,
        "percentunit",
        &[Q(
            "coherd:coherence_error_budget:remaining_ratio{service=~\"$service\"}",
            "{{service}}",
        )],
        json!({}),
    );
    l.panel(
        "bargauge",
        "Exposure: traffic off target (1h)",
        "Share of requests served by members whose facet is not at target, over the last hour.",
        12,
        8,
        "percentunit",
        &[Q(
            "coherd_exposure_window_ratio{service=~\"$service\", window=\"1h\"}",
            "{{service}} {{facet}}",
        )],
        json!({"options": {"orientation": "horizontal", "displayMode": "gradient"}}),
    );
    l.panel(
        "timeseries",
        "Divergences opened per day by kind",
        "New divergence episodes (reopens included).",
        12,
        8,
        "none",
        &[Q(
            "sum by (kind) (increase(coherd_divergences_opened_total{service=~\"$service\"}[1d]))",
            "{{kind}}",
        )],
        json!({"fieldConfig": {"defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}}}}),
    );
    dashboard(
        "coherd-executive",
        "coherd / Executive",
        "Is the fleet coherent, how much error budget is left, how much traffic runs off target.",
        "now-7d",
        l.panels,
    )
}

fn on_call(opts: &DashboardOptions) -> Value {
    let mut l = Layout::new();
    l.row("Now");
    l.panel(
        "table",
        "Open divergences",
        "Open divergences by service, kind and severity; `coherd divergences --service S --kind K` lists them.",
        12,
        9,
        "none",
        &[Q(
            "sum by (service, kind, severity) (coherd_divergences_open{service=~\"$service\"})",
            "",
        )],
        json!({"transformations": [{"id": "organize", "options": {"excludeByName": {"Time": true}}}]}),
    );
    let page = WINDOWS[0].factor;
    l.panel(
        "timeseries",
        "Coherence burn rate",
        &format!(
            "How many times faster than the budget allows coherence errors accrue; the fast page fires above {} over 1h and 5m.",
            number(page)
        ),
        12,
        9,
        "x",
        &[
            Q(
                "coherd:coherence_burn_rate:5m{service=~\"$service\"}",
                "{{service}} 5m",
            ),
            Q(
                "coherd:coherence_burn_rate:1h{service=~\"$service\"}",
                "{{service}} 1h",
            ),
            Q(
                "coherd:coherence_burn_rate:6h{service=~\"$service\"}",
                "{{service}} 6h",
            ),
        ],
        merge_all(&[
            thresholds(&[(None, "green"), (Some(WINDOWS[1].factor), "orange"), (Some(page), "red")]),
            json!({"fieldConfig": {"defaults": {"custom": {"thresholdsStyle": {"mode": "line"}}}}}),
        ]),
    );
    l.row("Members and phases");
    l.panel(
        "timeseries",
        "Coherence now",
        &format!("Objective {}%.", number(opts.slo * 100.0)),
        8,
        8,
        "percentunit",
        &[Q(
            "coherd_coherence_ratio{service=~\"$service\"}",
            "{{service}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Silent members",
        "Known members that stopped reporting without reaching a terminal phase.",
        8,
        8,
        "none",
        &[Q(
            "coherd_members{service=~\"$service\", state=\"silent\"}",
            "{{service}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Telemetry completeness",
        "Live members over expected members.",
        8,
        8,
        "percentunit",
        &[Q(
            "coherd_telemetry_completeness_ratio{service=~\"$service\"}",
            "{{service}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Drain violations",
        "Requests served by members an observer routes to while they do not serve (summed over open drain violations), and the share of requests served while non-serving over 5m.",
        8,
        8,
        "none",
        &[
            Q(
                "coherd_drain_violation_requests{service=~\"$service\"}",
                "{{service}} requests",
            ),
            Q(
                "coherd_drain_failure_window_ratio{service=~\"$service\", window=\"5m\"}",
                "{{service}} share 5m",
            ),
        ],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Phase mismatch and flapping",
        "Observer/member pairs that disagree on the phase; phase changes per member over the last hour.",
        8,
        8,
        "none",
        &[
            Q(
                "coherd_phase_mismatch_ratio{service=~\"$service\"}",
                "{{service}} mismatch",
            ),
            Q(
                "coherd_phase_flips_per_member_hour{service=~\"$service\"}",
                "{{service}} flips/member/h",
            ),
        ],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Phase change latency p99",
        "From a member's phase change to every observer agreeing (engine's recent samples).",
        8,
        8,
        "s",
        &[Q(
            "coherd_phase_change_latency_p99_seconds{service=~\"$service\"}",
            "{{service}}",
        )],
        json!({}),
    );
    l.row("Rollouts");
    l.panel(
        "table",
        "Facet values",
        "Members per facet value; beyond the five most common values, the rest are summed as other.",
        12,
        9,
        "none",
        &[Q(
            "sum by (service, facet, value) (coherd_facet_members{service=~\"$service\", facet!=\"phase\"})",
            "",
        )],
        json!({"transformations": [{"id": "organize", "options": {"excludeByName": {"Time": true}}}]}),
    );
    l.panel(
        "timeseries",
        "Exposure (5m)",
        "Share of requests served off target per targeted facet.",
        12,
        9,
        "percentunit",
        &[Q(
            "coherd_exposure_window_ratio{service=~\"$service\", window=\"5m\"}",
            "{{service}} {{facet}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Convergence time (median of changes, 6h)",
        "Seconds from a change of a targeted facet until 95% and 100% of live members were at target.",
        12,
        8,
        "s",
        &[Q(
            "histogram_quantile(0.5, sum by (service, percent, le) (rate(coherd_convergence_seconds_bucket{service=~\"$service\"}[6h])))",
            "{{service}} {{percent}}%",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Detection latency p99 by kind",
        "From the observation that made a condition true (or its deadline) to the divergence opening.",
        12,
        8,
        "s",
        &[Q(
            "histogram_quantile(0.99, sum by (kind, le) (rate(coherd_detection_latency_seconds_bucket[30m])))",
            "{{kind}}",
        )],
        json!({}),
    );
    dashboard(
        "coherd-on-call",
        "coherd / On-call",
        "What is open, what burns the error budget, and where.",
        "now-6h",
        l.panels,
    )
}

fn debug() -> Value {
    let mut l = Layout::new();
    l.row("Ingest");
    l.panel(
        "timeseries",
        "Observations per second",
        "Applied and duplicate observations.",
        8,
        8,
        "ops",
        &[
            Q(
                "sum by (instance) (rate(coherd_ingest_observations_total[5m]))",
                "{{instance}} applied",
            ),
            Q(
                "sum by (instance) (rate(coherd_ingest_duplicates_total[5m]))",
                "{{instance}} duplicates",
            ),
        ],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Ingest acknowledgement latency",
        "From receiving an ingest request to acknowledging it (after the group commit).",
        8,
        8,
        "s",
        &[
            Q(
                "histogram_quantile(0.5, sum by (instance, le) (rate(coherd_ingest_ack_seconds_bucket[5m])))",
                "{{instance}} p50",
            ),
            Q(
                "histogram_quantile(0.99, sum by (instance, le) (rate(coherd_ingest_ack_seconds_bucket[5m])))",
                "{{instance}} p99",
            ),
        ],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Store group commit",
        "Time of one group commit, and commits per second.",
        8,
        8,
        "s",
        &[
            Q(
                "histogram_quantile(0.99, sum by (instance, le) (rate(coherd_store_commit_seconds_bucket[5m])))",
                "{{instance}} p99",
            ),
            Q(
                "sum by (instance) (rate(coherd_store_commit_seconds_count[5m]))",
                "{{instance}} commits/s",
            ),
        ],
        json!({}),
    );
    l.panel(
        "timeseries",
        "HTTP requests by route and status",
        "Requests per second by matched route, method and status class.",
        12,
        8,
        "reqps",
        &[Q(
            "sum by (route, method, code) (rate(coherd_http_requests_total[5m]))",
            "{{method}} {{route}} {{code}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Divergence events per second",
        "Opened, escalated and resolved divergences, by kind.",
        12,
        8,
        "ops",
        &[
            Q(
                "sum by (kind) (rate(coherd_divergences_opened_total{service=~\"$service\"}[5m]))",
                "opened {{kind}}",
            ),
            Q(
                "sum by (kind) (rate(coherd_divergences_escalated_total{service=~\"$service\"}[5m]))",
                "escalated {{kind}}",
            ),
            Q(
                "sum by (kind) (rate(coherd_divergences_resolved_total{service=~\"$service\"}[5m]))",
                "resolved {{kind}}",
            ),
        ],
        json!({}),
    );
    l.row("Reported rates");
    l.panel(
        "timeseries",
        "Schema errors and duplicates members report (5m)",
        "Counter deltas over request deltas, from the members' own counters.",
        12,
        8,
        "percentunit",
        &[
            Q(
                "coherd_schema_error_window_ratio{service=~\"$service\", window=\"5m\"}",
                "{{service}} schema errors",
            ),
            Q(
                "coherd_duplicate_window_ratio{service=~\"$service\", window=\"5m\"}",
                "{{service}} duplicates",
            ),
        ],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Replica divergence rate (5m)",
        "Divergent (dataset, position) comparisons over all comparisons.",
        12,
        8,
        "percentunit",
        &[Q(
            "coherd_replica_divergence_window_ratio{service=~\"$service\", window=\"5m\"}",
            "{{service}}",
        )],
        json!({}),
    );
    l.row("Process");
    l.panel(
        "timeseries",
        "Resident memory",
        "",
        6,
        7,
        "bytes",
        &[Q(
            "process_resident_memory_bytes{job=~\".*coherd.*\"}",
            "{{instance}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "CPU",
        "CPU seconds per second.",
        6,
        7,
        "percentunit",
        &[Q(
            "rate(process_cpu_seconds_total{job=~\".*coherd.*\"}[5m])",
            "{{instance}}",
        )],
        json!({}),
    );
    l.panel(
        "timeseries",
        "Open file descriptors",
        "Open over the limit.",
        6,
        7,
        "percentunit",
        &[Q(
            "process_open_fds{job=~\".*coherd.*\"} / process_max_fds{job=~\".*coherd.*\"}",
            "{{instance}}",
        )],
        json!({}),
    );
    l.panel(
        "stat",
        "Uptime",
        "Since the process started.",
        6,
        7,
        "s",
        &[Q(
            "time() - process_start_time_seconds{job=~\".*coherd.*\"}",
            "{{instance}}",
        )],
        json!({}),
    );
    l.row("Dephasing");
    l.panel(
        "timeseries",
        "Order parameter per job",
        "Kuramoto order parameter R of each declared job's start times over its window: 1 all at once, near 0 spread out. A herd opens above the job's herd_threshold (0.6 by default).",
        8,
        8,
        "none",
        &[Q(
            "coherd_dephase_order_parameter{service=~\"$service\"}",
            "{{service}} {{job}}",
        )],
        json!({"fieldConfig": {"defaults": {"min": 0, "max": 1}}}),
    );
    l.panel(
        "timeseries",
        "Peak concurrency per job",
        "Most runs of each declared job in progress at once over its window; past max_concurrent the herd is critical and pages.",
        8,
        8,
        "none",
        &[Q(
            "coherd_dephase_peak_concurrency{service=~\"$service\"}",
            "{{service}} {{job}}",
        )],
        json!({}),
    );
    l.panel(
        "bargauge",
        "Start-time histogram",
        "Run starts in each job's window per twelfth of its period (slot 0 is the period's first twelfth): flat is spread out, one tall slot is a herd.",
        8,
        8,
        "none",
        &[Q(
            "sum by (job, slot) (coherd_dephase_starts{service=~\"$service\"})",
            "{{job}} slot {{slot}}",
        )],
        json!({"options": {"orientation": "vertical", "displayMode": "basic"}}),
    );
    dashboard(
        "coherd-debug",
        "coherd / Debug",
        "coherd itself: ingest, latency, the store, events and the process; dephasing of the fleet's periodic jobs.",
        "now-3h",
        l.panels,
    )
}

fn merge_all(parts: &[Value]) -> Value {
    let mut out = json!({});
    for p in parts {
        merge(&mut out, p.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_dashboards_with_unique_panel_ids_inside_the_grid() {
        let boards = grafana_dashboards(&DashboardOptions::default());
        let uids: Vec<&str> = boards
            .iter()
            .map(|(_, b)| b["uid"].as_str().unwrap())
            .collect();
        assert_eq!(uids, ["coherd-executive", "coherd-on-call", "coherd-debug"]);
        for (_, b) in &boards {
            let panels = b["panels"].as_array().unwrap();
            assert!(panels.len() >= 8, "{}", b["uid"]);
            let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
            ids.dedup();
            assert_eq!(ids.len(), panels.len());
            for p in panels {
                let g = &p["gridPos"];
                assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24);
                if p["type"] != "row" {
                    assert!(!p["targets"].as_array().unwrap().is_empty());
                }
            }
        }
    }

    #[test]
    fn panels_read_coherd_metrics_and_the_recorded_rules() {
        let all = serde_json::to_string(
            &grafana_dashboards(&DashboardOptions::default())
                .into_iter()
                .map(|(_, b)| b)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        for name in [
            "coherd_coherence_ratio",
            "coherd:coherence_error_budget:remaining_ratio",
            "coherd:coherence_burn_rate:1h",
            "coherd_divergences_open",
            "coherd_ingest_ack_seconds_bucket",
            "process_resident_memory_bytes",
            "coherd_dephase_order_parameter",
            "coherd_dephase_peak_concurrency",
            "coherd_dephase_starts",
        ] {
            assert!(all.contains(name), "{name}");
        }
    }
}
