//! The OpenAPI 3 description of every route, served at `/v1/openapi.json`:
//! parameters, request bodies, every status a route answers with, and the
//! error body they share.

use serde_json::{Map, Value, json};

/// What a route needs from the bearer token.
#[derive(Clone, Copy)]
enum Auth {
    /// Nothing: probes.
    None,
    /// A token with the scope (or `admin`) when tokens are configured.
    Scope,
}

/// One operation.
struct Op {
    summary: &'static str,
    auth: Auth,
    params: Vec<Value>,
    body: Option<Value>,
    /// Status and description of what it answers with besides the errors every
    /// authenticated route shares.
    ok: Vec<(&'static str, &'static str, Value)>,
    errors: &'static [&'static str],
}

/// Service names (`names::service`).
const SERVICE: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";
/// Member ids (`names::member`).
const MEMBER: &str = "^[A-Za-z0-9._:/-]{1,253}$";
/// Facet, job and other names (`names::name`).
const NAME: &str = "^[A-Za-z][A-Za-z0-9._:-]{0,63}$";
/// RFC 3339 times coherd can hold (1970 to 2259 here, to keep the pattern simple).
const TIME: &str = "^(19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$";

fn path_param(name: &str, description: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string", "pattern": pattern}})
}

fn time() -> Value {
    json!({"type": "string", "pattern": TIME})
}

/// An optional field that may also be given as `null`.
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = true.into();
    schema
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn required_query(name: &str, description: &str, schema: Value) -> Value {
    let mut q = query(name, description, schema);
    q["required"] = true.into();
    q
}

/// `limit` and `cursor` (of the shape the endpoint gives), for endpoints that page.
fn paging(cursor: &str) -> [Value; 2] {
    [
        query(
            "limit",
            "page size (default 500)",
            json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        query(
            "cursor",
            "where the page starts: from the previous page's Link header",
            json!({"type": "string", "pattern": cursor}),
        ),
    ]
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn error_text(status: &str) -> &'static str {
    match status {
        "400" => "malformed request or query",
        "401" => "missing or unknown bearer token",
        "403" => "the token lacks the scope",
        "404" => "no such service, member, job or silence",
        "408" => "the body did not arrive within body_read_timeout",
        "409" => "the intent is managed by a file",
        "413" => "body or batch over its limit",
        "415" => "unsupported Content-Type or Content-Encoding",
        "422" => {
            "well-formed but refused by a rule the schema cannot state: invalid items or intent (every error with its index, field or line), a window that ends before it starts"
        }
        "503" => "overloaded, or not ready; see Retry-After",
        _ => "error",
    }
}

impl Op {
    fn to_json(&self) -> Value {
        let mut responses = Map::new();
        let paged = self.params.iter().any(|p| p["name"] == "cursor");
        for (status, description, content) in &self.ok {
            let mut r = json!({"description": description});
            if !content.is_null() {
                r["content"] = content.clone();
            }
            if paged {
                r["headers"] = json!({"Link": {"description": "the next page: <URL>; rel=\"next\", absent on the last page",
                                              "schema": {"type": "string"}}});
            }
            responses.insert((*status).to_string(), r);
        }
        let mut errors: Vec<&str> = self.errors.to_vec();
        if matches!(self.auth, Auth::Scope) {
            errors.extend(["401", "403"]);
        }
        for status in errors {
            responses.insert(
                status.to_string(),
                json!({"description": error_text(status),
                       "content": json_content(json!({"$ref": "#/components/schemas/Errors"}))}),
            );
        }
        let mut op = json!({"summary": self.summary, "responses": responses});
        if !self.params.is_empty() {
            op["parameters"] = Value::Array(self.params.clone());
        }
        if let Some(body) = &self.body {
            op["requestBody"] = body.clone();
        }
        if matches!(self.auth, Auth::None) {
            op["security"] = json!([]);
        }
        op
    }
}

fn object() -> Value {
    json!({"type": "object"})
}

fn list() -> Value {
    json!({"type": "array", "items": {"type": "object"}})
}

/// The document served at `/v1/openapi.json`.
pub(crate) fn document() -> Value {
    let kinds: Vec<&str> = coherd_model::Kind::ALL.iter().map(|k| k.as_str()).collect();
    let service = || path_param("service", "service name", SERVICE);
    let text = |t: &str| json!({t: {"schema": {"type": "string"}}});
    let routes: Vec<(&str, &str, Op)> = vec![
        (
            "/v1/observations",
            "post",
            Op {
                summary: "Report observations: one JSON object, an array, or NDJSON (application/x-ndjson). A batch with an invalid item is refused whole; an item whose time is out of bounds is refused alone and listed in `rejected`. A time ahead by more than max_clock_skew is applied at the receive time and opens clock_skew.",
                auth: Auth::Scope,
                params: vec![],
                body: Some(json!({"required": true, "content": {
                "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Observation"},
                    {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"$ref": "#/components/schemas/Observation"}}]}},
                "application/x-ndjson": {"schema": {"type": "string"}}}})),
                ok: vec![(
                    "200",
                    "accepted",
                    json_content(json!({"$ref": "#/components/schemas/Ingested"})),
                )],
                errors: &["400", "408", "413", "415", "422", "503"],
            },
        ),
        (
            "/v1/services",
            "get",
            Op {
                summary: "Every service: members, live, coherence, open divergences",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![("200", "services", json_content(list()))],
                errors: &[],
            },
        ),
        (
            "/v1/services/{service}",
            "get",
            Op {
                summary: "A service: facet distributions, SLIs, open divergences counted by kind and severity and the 100 most severe",
                auth: Auth::Scope,
                params: vec![service()],
                body: None,
                ok: vec![("200", "summary", json_content(object()))],
                errors: &["404"],
            },
        ),
        (
            "/v1/services/{service}",
            "delete",
            Op {
                summary: "Forget a service and its members at once (admin); not one the intent names",
                auth: Auth::Scope,
                params: vec![service()],
                body: None,
                ok: vec![("204", "deleted", Value::Null)],
                errors: &["404", "409", "503"],
            },
        ),
        (
            "/v1/services/{service}/members",
            "get",
            Op {
                summary: "A page of a service's members, sorted by id, with how many match in all",
                auth: Auth::Scope,
                params: vec![
                    service(),
                    query(
                        "state",
                        "only members in this state",
                        json!({"type": "string", "enum": ["live", "silent", "left"]}),
                    ),
                ]
                .into_iter()
                .chain(paging(MEMBER))
                .collect(),
                body: None,
                ok: vec![("200", "{total, members}", json_content(object()))],
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/services/{service}/members/{member}",
            "get",
            Op {
                summary: "A member: facets, phase, state, why it is not coherent, the divergences open against it",
                auth: Auth::Scope,
                params: vec![service(), path_param("member", "member id", MEMBER)],
                body: None,
                ok: vec![("200", "member", json_content(object()))],
                errors: &["404"],
            },
        ),
        (
            "/v1/history/sli",
            "get",
            Op {
                summary: "A service's SLIs per minute, oldest first: members, live, silent, open divergences, coherence, telemetry completeness, phase mismatch, flap frequency, exposure; kept history_retention, also for services deleted since",
                auth: Auth::Scope,
                params: vec![
                    required_query("service", "the service", json!({"type": "string", "pattern": SERVICE})),
                    query("since", "only minutes at or after this time (default: 24 hours ago)", time()),
                    query("until", "only minutes before this time", time()),
                ]
                .into_iter()
                .chain(paging("^-?[0-9]{1,19}$"))
                .collect(),
                body: None,
                ok: vec![("200", "minutes", json_content(list()))],
                errors: &["400", "422"],
            },
        ),
        (
            "/v1/history/intents",
            "get",
            Op {
                summary: "Every revision of the intent, oldest first: revision, when it took force, the text as sent; kept history_retention (the one in force always)",
                auth: Auth::Scope,
                params: vec![
                    query("since", "only revisions that took force at or after this time", time()),
                    query("until", "only revisions that took force before this time", time()),
                ]
                .into_iter()
                .chain(paging("^[0-9]{1,19}$"))
                .collect(),
                body: None,
                ok: vec![("200", "revisions", json_content(list()))],
                errors: &["400", "422"],
            },
        ),
        (
            "/v1/history/timeline",
            "get",
            Op {
                summary: "What happened to a member, oldest first: joined, changed (a facet or the phase), silent, back, left, deleted, forgotten; kept history_retention, also for members gone since",
                auth: Auth::Scope,
                params: vec![
                    required_query("service", "the member's service", json!({"type": "string", "pattern": SERVICE})),
                    required_query("member", "the member", json!({"type": "string", "pattern": MEMBER})),
                    query("since", "only events at or after this time", time()),
                    query("until", "only events before this time", time()),
                ]
                .into_iter()
                .chain(paging("^-?[0-9]{1,18}[.][!-~]{1,300}$"))
                .collect(),
                body: None,
                ok: vec![("200", "events", json_content(list()))],
                errors: &["400", "422"],
            },
        ),
        (
            "/v1/services/{service}/members/{member}",
            "delete",
            Op {
                summary: "Forget a member at once (admin)",
                auth: Auth::Scope,
                params: vec![service(), path_param("member", "member id", MEMBER)],
                body: None,
                ok: vec![("204", "deleted", Value::Null)],
                errors: &["404", "503"],
            },
        ),
        (
            "/v1/divergences",
            "get",
            Op {
                summary: "Divergence episodes, ordered by when they opened, a page at a time",
                auth: Auth::Scope,
                params: vec![
                    query(
                        "service",
                        "only this service",
                        json!({"type": "string", "pattern": SERVICE}),
                    ),
                    query(
                        "kind",
                        "only this kind",
                        json!({"type": "string", "enum": kinds}),
                    ),
                    query(
                        "state",
                        "open (the default without a window), resolved or all (the default with one)",
                        json!({"type": "string", "enum": ["open", "resolved", "all"]}),
                    ),
                    query(
                        "since",
                        "with or without until: episodes open at some point in [since, until), from the history (kept history_retention, 30 days)",
                        time(),
                    ),
                    query("until", "the end of the window (excluded)", time()),
                ]
                .into_iter()
                .chain(paging("^-?[0-9]{1,18}[.][!-~]{1,300}$"))
                .collect(),
                body: None,
                ok: vec![("200", "divergences", json_content(list()))],
                errors: &["400", "422"],
            },
        ),
        (
            "/v1/alerts",
            "get",
            Op {
                summary: "Alerts known now, with whether each is silenced or inhibited, by fingerprint",
                auth: Auth::Scope,
                params: paging("^[0-9a-f]{16}$").to_vec(),
                body: None,
                ok: vec![("200", "alerts", json_content(list()))],
                errors: &["400"],
            },
        ),
        (
            "/v1/slos",
            "get",
            Op {
                summary: "Error budget and burn rates per SLO and service",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![("200", "SLOs", json_content(list()))],
                errors: &[],
            },
        ),
        (
            "/v1/silences",
            "get",
            Op {
                summary: "Silences, with whether each is active",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![("200", "silences", json_content(list()))],
                errors: &[],
            },
        ),
        (
            "/v1/silences",
            "post",
            Op {
                summary: "Add a silence (admin)",
                auth: Auth::Scope,
                params: vec![],
                body: Some(
                    json!({"required": true, "content": json_content(json!({"$ref": "#/components/schemas/NewSilence"}))}),
                ),
                ok: vec![("201", "{id}", json_content(object()))],
                errors: &["400", "408", "413", "422"],
            },
        ),
        (
            "/v1/silences/{id}",
            "delete",
            Op {
                summary: "Expire a silence (admin)",
                auth: Auth::Scope,
                params: vec![path_param("id", "silence id", "^[A-Za-z0-9-]{1,64}$")],
                body: None,
                ok: vec![("204", "expired", Value::Null)],
                errors: &["404"],
            },
        ),
        (
            "/v1/reconcile",
            "get",
            Op {
                summary: "The reconcile loop: its lease and fencing epoch, the pause, each action's rollouts by service (wave, halt, tasks by phase) and SLIs (success rate, mean time to repair, actions per repair), and the quarantine",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![("200", "status", json_content(object()))],
                errors: &[],
            },
        ),
        (
            "/v1/reconcile/pause",
            "post",
            Op {
                summary: "Emergency stop (admin): nothing more is dispatched, everywhere or to one service; takes effect before the next dispatch",
                auth: Auth::Scope,
                params: vec![],
                body: Some(json!({"required": false, "content": json_content(json!({"$ref": "#/components/schemas/ReconcileScope"}))})),
                ok: vec![("200", "{decisions}", json_content(object()))],
                errors: &["400", "408", "413", "503"],
            },
        ),
        (
            "/v1/reconcile/resume",
            "post",
            Op {
                summary: "Lift the pause and the halts a failed verification left (admin), everywhere or for one service",
                auth: Auth::Scope,
                params: vec![],
                body: Some(json!({"required": false, "content": json_content(json!({"$ref": "#/components/schemas/ReconcileScope"}))})),
                ok: vec![("200", "{decisions}", json_content(object()))],
                errors: &["400", "408", "413", "503"],
            },
        ),
        (
            "/v1/reconcile/release",
            "post",
            Op {
                summary: "End a subject's quarantine (admin)",
                auth: Auth::Scope,
                params: vec![],
                body: Some(json!({"required": true, "content": json_content(json!({"$ref": "#/components/schemas/ReconcileRelease"}))})),
                ok: vec![("200", "{decisions}", json_content(object()))],
                errors: &["400", "404", "408", "413", "503"],
            },
        ),
        (
            "/v1/reconcile/outcome",
            "post",
            Op {
                summary: "How an action an executor accepted ended (admin), with the fencing epoch it was given; an older epoch is refused (409) and audited",
                auth: Auth::Scope,
                params: vec![],
                body: Some(json!({"required": true, "content": json_content(json!({"$ref": "#/components/schemas/ReconcileOutcome"}))})),
                ok: vec![("200", "{decisions}", json_content(object()))],
                errors: &["400", "404", "408", "409", "413", "422", "503"],
            },
        ),
        (
            "/v1/audit",
            "get",
            Op {
                summary: "The reconcile loop's decisions, newest first: planned, skipped (and why), dispatched, succeeded, failed, verified, unverified, gave up, quarantined, halted, refused; with epoch, attempt, idempotency key and evidence",
                auth: Auth::Scope,
                params: [
                    query("service", "only this service's", json!({"type": "string"})),
                    query("member", "only this member's", json!({"type": "string"})),
                    query("action", "only this action's", json!({"type": "string"})),
                ]
                .into_iter()
                .chain(paging("^[0-9]{1,19}$"))
                .collect(),
                body: None,
                ok: vec![("200", "decisions", json_content(list()))],
                errors: &["400"],
            },
        ),
        (
            "/v1/dephase/{service}/{job}",
            "get",
            Op {
                summary: "A member's slot for a declared periodic job, from the live membership",
                auth: Auth::Scope,
                params: vec![
                    service(),
                    path_param("job", "job (event kind)", NAME),
                    json!({"name": "member", "in": "query", "required": true, "description": "member id", "schema": {"type": "string", "pattern": MEMBER}}),
                ],
                body: None,
                ok: vec![(
                    "200",
                    "{offset_seconds, next_start, period_seconds, window_seconds, spread, members}",
                    json_content(object()),
                )],
                errors: &["400", "404"],
            },
        ),
        (
            "/v1/intent",
            "get",
            Op {
                summary: "The intent in force, as written and as parsed",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![(
                    "200",
                    "{source, intent, revision, origin, at}",
                    json_content(object()),
                )],
                errors: &["404"],
            },
        ),
        (
            "/v1/intent",
            "put",
            Op {
                summary: "Replace the intent (admin): YAML or JSON, refused whole with every error and its line",
                auth: Auth::Scope,
                params: vec![],
                body: Some(
                    json!({"required": true, "content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/Intent"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/Intent"}}}}),
                ),
                ok: vec![("200", "{applied, revision}", json_content(object()))],
                errors: &["400", "408", "409", "413", "422", "503"],
            },
        ),
        (
            "/v1/stream",
            "get",
            Op {
                summary: "Server-sent events: divergence and intent changes",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![("200", "event stream", text("text/event-stream"))],
                errors: &[],
            },
        ),
        (
            "/v1/openapi.json",
            "get",
            Op {
                summary: "This document",
                auth: Auth::None,
                params: vec![],
                body: None,
                ok: vec![("200", "OpenAPI 3", json_content(object()))],
                errors: &[],
            },
        ),
        (
            "/healthz",
            "get",
            Op {
                summary: "The process answers",
                auth: Auth::None,
                params: vec![],
                body: None,
                ok: vec![("200", "ok", text("text/plain"))],
                errors: &[],
            },
        ),
        (
            "/readyz",
            "get",
            Op {
                summary: "The engine is rebuilt and the store commits",
                auth: Auth::None,
                params: vec![],
                body: None,
                ok: vec![
                    ("200", "ready", text("text/plain")),
                    (
                        "503",
                        "not ready: rebuilding, or the store cannot commit",
                        text("text/plain"),
                    ),
                ],
                errors: &[],
            },
        ),
        (
            "/metrics",
            "get",
            Op {
                summary: "Metrics: OpenMetrics when asked for in Accept, else the Prometheus text format",
                auth: Auth::Scope,
                params: vec![],
                body: None,
                ok: vec![(
                    "200",
                    "metrics",
                    json!({"text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}}}),
                )],
                errors: &[],
            },
        ),
    ];
    let mut paths = Map::new();
    for (path, method, op) in routes {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method] = op.to_json();
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "coherd", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Fleet coherence: observations in, divergences and SLIs out."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Errors": {"type": "object", "required": ["errors"], "properties": {"errors": {"type": "array", "items": {
                    "type": "object", "required": ["message"], "properties": {
                        "message": {"type": "string"}, "index": {"type": "integer"}, "field": {"type": "string"},
                        "line": {"type": "integer"}, "column": {"type": "integer"}, "path": {"type": "string"}}}}}},
                "Ingested": {"type": "object", "required": ["accepted", "duplicates", "rejected"], "properties": {
                    "accepted": {"type": "integer"}, "duplicates": {"type": "integer"},
                    "rejected": {"type": "array", "description": "items refused for their time alone (beyond max_future ahead or older than max_report_age); the others were stored", "items": {
                        "type": "object", "required": ["index", "field", "message"], "properties": {
                            "index": {"type": "integer"}, "field": {"type": "string"}, "message": {"type": "string"}}}}}},
                "Observation": {"type": "object", "required": ["service", "member"], "properties": {
                    "service": {"type": "string", "pattern": SERVICE},
                    "member": {"type": "string", "pattern": MEMBER},
                    "seq": {"nullable": true, "type": "integer", "minimum": 0},
                    "time": nullable(time()), "deploy": {"nullable": true, "type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "facets": {"type": "object", "additionalProperties": {"type": "string"}},
                    "views": {"type": "object", "additionalProperties": {"type": "object"}},
                    "leases": {"type": "array", "items": {"type": "object"}},
                    "checksums": {"type": "array", "items": {"type": "object"}},
                    "counters": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    "events": {"type": "array", "items": {"type": "object"}}},
                    "additionalProperties": false},
                "Intent": {"type": "object", "required": ["services"], "properties": {
                    "services": {"type": "object", "nullable": true, "propertyNames": {"pattern": SERVICE},
                        "additionalProperties": {"type": "object", "nullable": true}}},
                    "additionalProperties": false},
                "NewSilence": {"type": "object", "required": ["matchers"], "properties": {
                    "matchers": {"type": "array", "minItems": 1, "items": {"type": "string",
                        "pattern": "^[A-Za-z_][A-Za-z0-9_]*(=|!=|=~|!~)"}},
                    "starts_at": time(), "ends_at": time(),
                    "duration": {"type": "string"}, "comment": {"type": "string"}, "created_by": {"type": "string"}},
                    "additionalProperties": false},
                "ReconcileScope": {"type": "object", "properties": {
                    "service": nullable(json!({"type": "string"}))}, "additionalProperties": false},
                "ReconcileRelease": {"type": "object", "required": ["divergence_id"], "properties": {
                    "divergence_id": {"type": "string"}}, "additionalProperties": false},
                "ReconcileOutcome": {"type": "object", "required": ["idempotency_key", "fencing_epoch", "outcome"], "properties": {
                    "idempotency_key": {"type": "string", "maxLength": 128},
                    "fencing_epoch": {"type": "integer", "minimum": 0},
                    "outcome": {"type": "string", "enum": ["succeeded", "failed"]},
                    "detail": {"type": "string", "maxLength": 4096}}, "additionalProperties": false}
            }
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_parameter_is_declared() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let wanted: Vec<&str> = path
                .split('/')
                .filter_map(|p| p.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, wanted, "{method} {path}");
            }
        }
    }
}
