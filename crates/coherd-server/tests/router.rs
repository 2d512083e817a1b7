//! Routing, auth and error shapes through `app(state)` with `oneshot`, no
//! socket: the server's own contract. End-to-end behaviour (signals,
//! restarts, real clients) is tested against the binary.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use coherd_server::{AppState, Running, Scope, ServerConfig, TokenEntry, app};
use serde_json::Value;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";
const REPORT: &str = "report-token-0123456789";

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "coherd-router-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("coherd.db")
}

async fn open(name: &str, tokens: bool) -> (AppState, Running) {
    let mut config = ServerConfig {
        db: temp_db(name),
        ..ServerConfig::default()
    };
    if tokens {
        config.tokens = vec![
            TokenEntry {
                token: ADMIN.into(),
                scopes: vec![Scope::Admin, Scope::Read, Scope::Report],
                services: Vec::new(),
                members: Vec::new(),
            },
            TokenEntry {
                token: READ.into(),
                scopes: vec![Scope::Read],
                services: Vec::new(),
                members: Vec::new(),
            },
            TokenEntry {
                token: REPORT.into(),
                scopes: vec![Scope::Report],
                services: Vec::new(),
                members: Vec::new(),
            },
        ];
    }
    AppState::open(config).await.unwrap()
}

/// Sends one request; returns the status and the body as JSON (Null when empty or not JSON).
async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(state: &AppState, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    send(state, Method::GET, uri, token, "application/json", "").await
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_with_a_hint() {
    let (state, running) = open("paths", false).await;
    let (status, body) = get(&state, "/v2/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/openapi.json"),
        "{body}"
    );
    let (status, _) = send(
        &state,
        Method::DELETE,
        "/v1/divergences",
        None,
        "application/json",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get(&state, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(&state, "/readyz", None).await.0, StatusCode::OK);
    running.stop(state).await;
}

#[tokio::test]
async fn each_scope_reaches_only_its_routes() {
    let (state, running) = open("scopes", true).await;
    let obs = r#"{"service":"api","member":"a","facets":{"version":"1"}}"#;
    let post = |token| {
        let state = state.clone();
        async move {
            send(
                &state,
                Method::POST,
                "/v1/observations",
                token,
                "application/json",
                obs,
            )
            .await
            .0
        }
    };
    assert_eq!(post(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(Some("wrong-token-0123456789")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(Some(READ)).await, StatusCode::FORBIDDEN);
    assert_eq!(post(Some(REPORT)).await, StatusCode::OK);

    assert_eq!(
        get(&state, "/v1/services", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&state, "/v1/services", Some(REPORT)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, services) = get(&state, "/v1/services", Some(READ)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(services[0]["service"], "api");

    let intent = "services:\n  api:\n    facets:\n      version: {target: \"1\"}\n";
    let put = |token| {
        let state = state.clone();
        async move {
            send(
                &state,
                Method::PUT,
                "/v1/intent",
                token,
                "application/yaml",
                intent,
            )
            .await
            .0
        }
    };
    assert_eq!(put(Some(READ)).await, StatusCode::FORBIDDEN);
    assert_eq!(put(Some(REPORT)).await, StatusCode::FORBIDDEN);
    assert_eq!(put(Some(ADMIN)).await, StatusCode::OK);
    let (status, _) = get(&state, "/v1/intent", Some(READ)).await;
    assert_eq!(status, StatusCode::OK);
    running.stop(state).await;
}

#[tokio::test]
async fn a_bad_batch_names_the_item_and_field_and_stores_nothing() {
    let (state, running) = open("bad-batch", false).await;
    let batch =
        r#"[{"service":"api","member":"a"},{"service":"api","member":"b","facets":{"version":7}}]"#;
    let (status, body) = send(
        &state,
        Method::POST,
        "/v1/observations",
        None,
        "application/json",
        batch,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert!(
        body["errors"][0]["field"]
            .as_str()
            .unwrap()
            .contains("version"),
        "{body}"
    );
    let (_, services) = get(&state, "/v1/services", None).await;
    assert_eq!(services, Value::Array(vec![]), "nothing was stored");

    let (status, body) = send(
        &state,
        Method::PUT,
        "/v1/intent",
        None,
        "application/yaml",
        "services:\n  api:\n    report_interval: soon\n",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["line"], 3, "{body}");
    running.stop(state).await;
}

#[tokio::test]
async fn an_accepted_report_is_applied_before_the_answer() {
    let (state, running) = open("applied", false).await;
    let (status, body) = send(
        &state,
        Method::POST,
        "/v1/observations",
        None,
        "application/x-ndjson",
        "{\"service\":\"api\",\"member\":\"a\",\"seq\":1}\n{\"service\":\"api\",\"member\":\"a\",\"seq\":1}\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, members) = get(&state, "/v1/services/api/members", None).await;
    assert_eq!(members["members"][0]["member"], "a", "{members}");
    running.stop(state).await;
}
