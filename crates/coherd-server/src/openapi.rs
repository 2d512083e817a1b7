//! A small OpenAPI description of the v1 API.

use serde_json::{Value, json};

/// The document served at `/v1/openapi.json`.
pub(crate) fn document() -> Value {
    let ok = |d: &str| json!({"200": {"description": d}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "coherd", "version": env!("CARGO_PKG_VERSION"), "description": "Fleet coherence: observations in, divergences and SLIs out."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/observations": {"post": {"summary": "Report observations: one JSON object, an array, or NDJSON (application/x-ndjson). Atomic per request.",
                "responses": {"200": {"description": "{\"accepted\":n,\"duplicates\":d}"}, "400": {"description": "malformed"}, "413": {"description": "too large"},
                "415": {"description": "wrong content type"}, "422": {"description": "{\"errors\":[{\"index\",\"field\",\"message\"}]}"}, "503": {"description": "overloaded; Retry-After"}}}},
            "/v1/services": {"get": {"summary": "Every service: members, live, coherence, open divergences", "responses": ok("list")}},
            "/v1/services/{service}": {"get": {"summary": "Facet distributions, SLIs, open divergences", "responses": ok("summary")}},
            "/v1/services/{service}/members": {"get": {"summary": "Members; ?state=live|silent|left&limit=&offset=", "responses": ok("members")}},
            "/v1/services/{service}/members/{member}": {"delete": {"summary": "Forget a member at once (admin)", "responses": {"204": {"description": "deleted"}, "404": {"description": "unknown"}}}},
            "/v1/divergences": {"get": {"summary": "Divergences; ?service=&kind=&state=open|resolved|all", "responses": ok("list")}},
            "/v1/dephase/{service}/{job}": {"get": {"summary": "A member's slot for a declared periodic job, from the live membership; ?member=ID",
                "responses": {"200": {"description": "{\"offset_seconds\",\"next_start\",\"period_seconds\",\"window_seconds\",\"spread\",\"members\"}"}, "400": {"description": "no or invalid member"}, "404": {"description": "the service declares no such job"}}}},
            "/v1/intent": {"get": {"summary": "The intent in force", "responses": ok("intent")}, "put": {"summary": "Replace the intent (admin); YAML or JSON", "responses": {"200": {"description": "applied"}, "422": {"description": "every error with its line"}}}},
            "/v1/stream": {"get": {"summary": "Server-sent events: divergence and intent changes", "responses": ok("text/event-stream")}},
            "/healthz": {"get": {"summary": "Alive", "responses": ok("ok")}},
            "/readyz": {"get": {"summary": "Engine rebuilt and serving", "responses": ok("ready")}},
            "/metrics": {"get": {"summary": "OpenMetrics", "responses": ok("metrics")}}
        }
    })
}
