//! Shared by the fuzz targets: one in-process coherd server per fuzzing
//! process (temporary SQLite database, no socket), driven through its real
//! router, and the checks every answer must pass.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use coherd_server::{AppState, Running, ServerConfig, app};
use tower::ServiceExt;

/// The server and the runtime that drives it.
pub struct Server {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _state: AppState,
    _running: Running,
}

/// An answer: status and body.
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Vec<u8>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The process's server, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coherd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let config = ServerConfig {
            db: dir.join("coherd.db"),
            ..ServerConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (state, running) = rt
            .block_on(AppState::open(config))
            .expect("the server starts");
        Server {
            rt,
            router: app(state.clone()),
            _state: state,
            _running: running,
        }
    })
}

impl Server {
    /// Sends one request (no token: tokens are off on loopback).
    pub fn send(&self, method: Method, uri: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("a valid request");
        self.rt.block_on(async {
            let res = self.router.clone().oneshot(req).await.expect("infallible");
            let status = res.status();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .expect("a readable body");
            Reply {
                status,
                body: body.to_vec(),
            }
        })
    }

    /// Sends a request that must succeed (for setting up state).
    pub fn must(&self, method: Method, uri: &str, content_type: &str, body: &str) {
        let r = self.send(method, uri, content_type, body.as_bytes().to_vec());
        assert!(
            r.status.is_success(),
            "{uri}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// Panics unless the answer is one a client may get for any input: no 5xx,
/// no request timeout, and every 4xx a JSON list of errors, each with a message.
pub fn check_reply(what: &str, r: &Reply) {
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !r.status.is_server_error() && r.status != StatusCode::REQUEST_TIMEOUT,
        "{what}: {} {text}",
        r.status
    );
    if r.status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
            panic!(
                "{what}: {} with a body that is not JSON ({e}): {text}",
                r.status
            )
        });
        let errors = v["errors"].as_array().expect("an errors list");
        assert!(
            !errors.is_empty(),
            "{what}: {} with no errors: {text}",
            r.status
        );
        for e in errors {
            let m = e["message"].as_str().unwrap_or_default();
            assert!(
                !m.trim().is_empty(),
                "{what}: an error without a message: {text}"
            );
        }
    }
}
