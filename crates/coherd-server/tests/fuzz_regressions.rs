//! Inputs the fuzz targets in `fuzz/` found, through the router: each must get
//! the answer a client can act on, a 4xx with a JSON list of errors.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use coherd_server::{AppState, ServerConfig, app};
use serde_json::Value;
use tower::ServiceExt;

async fn open() -> (AppState, coherd_server::Running) {
    let dir = std::env::temp_dir().join(format!(
        "coherd-fuzz-regressions-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = ServerConfig {
        db: dir.join("coherd.db"),
        ..ServerConfig::default()
    };
    AppState::open(config).await.unwrap()
}

/// Sends a request without a body; the status and the first error message
/// (panics when the body is not the JSON error list).
async fn error_of(state: &AppState, method: Method, uri: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = app(state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: {status}, body not JSON ({e}): {text}"));
    let message = body["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{uri}: no error message: {text}"))
        .to_string();
    (status, message)
}

/// query_strings: `2sh\x96p/cron:backup\nmember=new-mem=2&`. A path segment
/// that is not UTF-8 once percent-decoded got axum's plain-text rejection
/// ("Invalid URL: Invalid UTF-8 in `service`") instead of the JSON error list.
#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_refused_with_a_json_error() {
    let (state, running) = open().await;
    for (method, uri) in [
        (
            Method::GET,
            "/v1/dephase/sh%96p/cron%3Abackup?member=new-mem=2&",
        ),
        (Method::GET, "/v1/dephase/shop/cron%96?member=m-1"),
        (Method::DELETE, "/v1/silences/%96"),
    ] {
        let (status, message) = error_of(&state, method, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {message}");
        assert!(message.contains("UTF-8"), "{uri}: {message}");
    }
    running.stop(state).await;
}

/// The same finding on the routes whose handlers live in `api.rs`.
#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_refused_with_a_json_error_on_services() {
    let (state, running) = open().await;
    for (method, uri) in [
        (Method::GET, "/v1/services/sh%96p"),
        (Method::GET, "/v1/services/sh%96p/members?state=live"),
        (Method::DELETE, "/v1/services/shop/members/m%96"),
        (Method::GET, "/v1/services/shop/members/m%96"),
        (Method::DELETE, "/v1/services/sh%96p"),
    ] {
        let (status, message) = error_of(&state, method, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {message}");
        assert!(message.contains("UTF-8"), "{uri}: {message}");
    }
    running.stop(state).await;
}
