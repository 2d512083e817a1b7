//! The dashboards through `app(state)` with `oneshot`: status codes, the
//! sign-in cookie and what it may do, and escaping of whatever the fleet
//! reports. The browser tests drive the same pages in Chromium.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use coherd_server::{AppState, Running, Scope, ServerConfig, TokenEntry, app};
use tower::ServiceExt;

const READ: &str = "read-token-0123456789";
const REPORT: &str = "report-token-0123456789";

async fn open(name: &str, tokens: bool) -> (AppState, Running) {
    let dir = std::env::temp_dir().join(format!(
        "coherd-ui-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = ServerConfig {
        db: dir.join("coherd.db"),
        ..ServerConfig::default()
    };
    if tokens {
        let entry = |token: &str, scope: Scope| TokenEntry {
            token: token.into(),
            scopes: vec![scope],
            services: Vec::new(),
            members: Vec::new(),
        };
        config.tokens = vec![entry(READ, Scope::Read), entry(REPORT, Scope::Report)];
    }
    AppState::open(config).await.unwrap()
}

/// One request: (status, headers, body as text).
async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = axum::body::to_bytes(res.into_body(), 8 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn report(state: &AppState, token: Option<&str>, body: &str) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (status, _, text) = send(state, Method::POST, "/v1/observations", &headers, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

const HOSTILE: &str = r#"[
  {"service":"checkout","member":"c-1","seq":1,"facets":{"config":"v1","phase":"ready"},"labels":{"zone":"<img src=x onerror=alert(2)>"}},
  {"service":"checkout","member":"c-2","seq":1,"facets":{"config":"<script>alert(1)</script>","phase":"ready"}}
]"#;

#[tokio::test]
async fn every_page_answers_and_shows_reported_text_as_text() {
    let (state, _running) = open("pages", false).await;
    let (status, _, _) = send(
        &state,
        Method::PUT,
        "/v1/intent",
        &[("content-type", "application/yaml")],
        "services:\n  checkout:\n    facets:\n      config: {target: \"v2\"}\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    report(&state, None, HOSTILE).await;
    for uri in [
        "/ui/",
        "/ui/oncall",
        "/ui/services/checkout",
        "/ui/services/checkout/members/c-2",
        "/ui/services/checkout/members/c-1",
    ] {
        let (status, headers, body) = send(&state, Method::GET, uri, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{uri}"
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        assert!(body.starts_with("<!DOCTYPE html>"), "{uri}");
        assert!(
            !body.contains("<script>alert"),
            "{uri} runs a reported value:\n{body}"
        );
        assert!(
            !body.contains("<img src=x"),
            "{uri} renders a reported label"
        );
    }
    let (_, _, service) = send(&state, Method::GET, "/ui/services/checkout", &[], "").await;
    assert!(
        service.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown as text"
    );
    assert!(
        service.contains("href=\"/ui/services/checkout/members/c-1\""),
        "members link to their page"
    );
    let (_, _, oncall) = send(&state, Method::GET, "/ui/oncall", &[], "").await;
    assert!(
        oncall.contains("drift") && oncall.contains("sev-critical"),
        "the foreign config is on the on-call page"
    );
    for (uri, want) in [
        ("/ui/services/nope", StatusCode::NOT_FOUND),
        ("/ui/services/checkout/members/nope", StatusCode::NOT_FOUND),
        ("/ui/?colour=red", StatusCode::BAD_REQUEST),
        (
            "/ui/services/checkout?after=%3Cx%3E",
            StatusCode::BAD_REQUEST,
        ),
        ("/ui/assets/coherd.css", StatusCode::OK),
        ("/ui/assets/coherd.js", StatusCode::OK),
        ("/ui/assets/../Cargo.toml", StatusCode::NOT_FOUND),
        ("/ui", StatusCode::PERMANENT_REDIRECT),
    ] {
        let (status, _, body) = send(&state, Method::GET, uri, &[], "").await;
        assert_eq!(status, want, "{uri}: {body}");
    }
}

#[tokio::test]
async fn a_read_token_signs_in_to_a_cookie_that_only_reads() {
    let (state, _running) = open("signin", true).await;
    let (status, headers, _) = send(&state, Method::GET, "/ui/", &[], "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/login");
    let (status, _, form) = send(&state, Method::GET, "/ui/login", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("type=\"password\""));
    let form_type = [("content-type", "application/x-www-form-urlencoded")];
    for wrong in ["token=nope", &format!("token={REPORT}")] {
        let (status, headers, body) =
            send(&state, Method::POST, "/ui/login", &form_type, wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}: {body}");
        assert!(headers.get(header::SET_COOKIE).is_none());
    }
    let (status, headers, _) = send(
        &state,
        Method::POST,
        "/ui/login",
        &form_type,
        &format!("token={READ}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let with = [("cookie", pair.as_str())];
    let (status, _, _) = send(&state, Method::GET, "/ui/", &with, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, Method::GET, "/v1/services", &with, "").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the cookie reads the API the pages use"
    );
    // ...and nothing else: no report, no admin.
    let json = [
        ("cookie", pair.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _, _) = send(
        &state,
        Method::POST,
        "/v1/observations",
        &json,
        r#"{"service":"a","member":"b","seq":1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&state, Method::POST, "/v1/reconcile/pause", &json, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
