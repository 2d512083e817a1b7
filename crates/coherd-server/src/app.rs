//! The router and the state every handler shares.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::sync::watch;

use crate::auth::Tokens;
use crate::config::ServerConfig;
use crate::pipeline::{Shared, Writer};
use crate::{alerting, api, dephase, reconcile_api, ui};

/// Shared by every handler: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The engine and the stream.
    pub(crate) shared: Arc<Shared>,
    /// The writer's queue.
    pub(crate) writer: Writer,
    /// Bearer tokens.
    pub(crate) tokens: Arc<Tokens>,
    /// The configuration.
    pub(crate) config: Arc<ServerConfig>,
    /// Ingest requests allowed at once.
    pub(crate) ingest_slots: Arc<crate::fairness::IngestSlots>,
    /// Becomes true when the server shuts down (ends open streams).
    pub(crate) stopping: watch::Receiver<bool>,
    /// Alerting: rules, SLOs, routing, silences.
    pub(crate) alerts: Arc<alerting::AlertState>,
    /// The reconcile loop: its planner, lease and audit log.
    pub(crate) reconcile: Arc<crate::reconcile::Control>,
    /// The store, for reads of the history (off the engine and the writer).
    pub(crate) history: Arc<std::sync::Mutex<coherd_store::SqliteStore>>,
}

/// The router, with every route and its limits.
pub fn app(state: AppState) -> Router {
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        state.config.request_timeout,
    );
    let api = Router::new()
        .route("/v1/observations", post(api::post_observations))
        .route("/v1/services", get(api::get_services))
        .route(
            "/v1/services/{service}",
            get(api::get_service).delete(api::delete_service),
        )
        .route("/v1/services/{service}/members", get(api::get_members))
        .route("/v1/history/timeline", get(api::get_timeline))
        .route("/v1/history/sli", get(api::get_sli_minutes))
        .route("/v1/history/intents", get(api::get_intents))
        .route(
            "/v1/services/{service}/members/{member}",
            get(api::get_member).delete(api::delete_member),
        )
        .route("/v1/divergences", get(api::get_divergences))
        .route("/v1/alerts", get(alerting::get_alerts))
        .route("/v1/slos", get(alerting::get_slos))
        .route(
            "/v1/silences",
            get(alerting::get_silences).post(alerting::post_silence),
        )
        .route("/v1/silences/{id}", delete(alerting::delete_silence))
        .route("/v1/dephase/{service}/{job}", get(dephase::get_slot))
        .route("/v1/reconcile", get(reconcile_api::get_status))
        .route("/v1/reconcile/pause", post(reconcile_api::pause))
        .route("/v1/reconcile/resume", post(reconcile_api::resume))
        .route("/v1/reconcile/release", post(reconcile_api::release))
        .route("/v1/reconcile/outcome", post(reconcile_api::outcome))
        .route("/v1/audit", get(reconcile_api::get_audit))
        .route("/v1/intent", get(api::get_intent).put(api::put_intent))
        .route("/v1/openapi.json", get(api::openapi))
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::permanent("/ui/") }),
        )
        .route("/ui/", get(ui::executive))
        .route("/ui/oncall", get(ui::oncall))
        .route("/ui/services/{service}", get(ui::service))
        .route("/ui/services/{service}/members/{member}", get(ui::member))
        .route("/ui/assets/{name}", get(ui::asset))
        .route("/ui/login", get(ui::login_form).post(ui::login))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .layer(timeout);
    Router::new()
        .route("/v1/stream", get(api::stream))
        .merge(api)
        .fallback(api::not_found)
        .layer(middleware::from_fn(refuse_encoded_bodies))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A compressed body would be read as garbage: refuse it by name (415).
async fn refuse_encoded_bodies(req: Request, next: Next) -> Response {
    let encoding = req
        .headers()
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => next.run(req).await,
        Some(other) => crate::error::ApiError::Request(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not accepted; send the body uncompressed"),
        )
        .into_response(),
    }
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    // Methods come from the client: a fixed set, anything else is `other`.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let res = next.run(req).await;
    let class = format!("{}xx", res.status().as_u16() / 100);
    state
        .shared
        .metrics
        .requests
        .get_or_create(&vec![
            ("route".into(), route),
            ("method".into(), method),
            ("code".into(), class),
        ])
        .inc();
    res
}
