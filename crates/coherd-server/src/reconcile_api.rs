//! The reconcile loop's API: status, the emergency stop and its release,
//! quarantine release, outcomes reported by asynchronous executors, and the
//! audit log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use coherd_reconcile::Outcome;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Scope;
use crate::error::{ApiError, Query};
use crate::page;
use crate::reconcile::ControlError;

/// Bytes a control request's body may hold.
const BODY_LIMIT: usize = 16 << 10;

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::NotHolding(why) => {
                ApiError::Request(StatusCode::SERVICE_UNAVAILABLE, why)
            }
            ControlError::Stale { epoch, current } => ApiError::Request(
                StatusCode::CONFLICT,
                format!(
                    "fencing epoch {epoch} is not the reconciler's ({current}): the outcome was refused and audited"
                ),
            ),
            ControlError::Unknown(key) => ApiError::NotFound(format!(
                "no reconcile task has idempotency key {key:?}; GET /v1/audit lists what was dispatched"
            )),
            ControlError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Runs a control request off the async threads: it stores under the fence.
async fn control<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::reconcile::Control) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    let c = state.reconcile.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

async fn parse<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: axum::body::Body,
    what: &str,
) -> Result<T, ApiError> {
    let bytes = crate::api::read_body(state, body, BODY_LIMIT, what).await?;
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Request(
            StatusCode::BAD_REQUEST,
            format!("the {what} is not valid: {e}"),
        )
    })
}

/// Body of `POST /v1/reconcile/pause` and `/resume`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    /// One service; none: every service.
    #[serde(default)]
    service: Option<String>,
}

/// `GET /v1/reconcile`.
pub(crate) async fn get_status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Read)?;
    let c = state.reconcile.clone();
    let status = tokio::task::spawn_blocking(move || c.status())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(status).into_response())
}

/// `POST /v1/reconcile/pause` (admin): the emergency stop, for every service
/// or one; it takes effect before the next dispatch.
pub(crate) async fn pause(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Admin)?;
    let s: Target = parse(&state, body, "pause request").await?;
    let decisions = control(&state, move |c| {
        c.command(|r, now| r.pause(s.service.as_deref(), now))
    })
    .await?;
    Ok(Json(json!({"decisions": decisions})).into_response())
}

/// `POST /v1/reconcile/resume` (admin): lifts the pause and the halts.
pub(crate) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Admin)?;
    let s: Target = parse(&state, body, "resume request").await?;
    let decisions = control(&state, move |c| {
        c.command(|r, now| r.resume(s.service.as_deref(), now))
    })
    .await?;
    Ok(Json(json!({"decisions": decisions})).into_response())
}

/// Body of `POST /v1/reconcile/release`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Release {
    divergence_id: String,
}

/// `POST /v1/reconcile/release` (admin): ends a subject's quarantine.
pub(crate) async fn release(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Admin)?;
    let r: Release = parse(&state, body, "release request").await?;
    let id = r.divergence_id.clone();
    let decisions = control(&state, move |c| {
        c.command(|rec, now| rec.release(&r.divergence_id, now).into_iter().collect())
    })
    .await?;
    if decisions.as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::NotFound(format!(
            "{id:?} is not quarantined; GET /v1/reconcile lists the quarantine"
        )));
    }
    Ok(Json(json!({"decisions": decisions})).into_response())
}

/// Body of `POST /v1/reconcile/outcome`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reported {
    idempotency_key: String,
    fencing_epoch: u64,
    outcome: ReportedOutcome,
    #[serde(default)]
    detail: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReportedOutcome {
    Succeeded,
    Failed,
}

/// `POST /v1/reconcile/outcome` (admin): an executor that took an action and
/// finished it later reports how it ended, with the fencing epoch it was
/// given; an older epoch is refused (409) and audited.
pub(crate) async fn outcome(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Admin)?;
    let r: Reported = parse(&state, body, "outcome").await?;
    if r.idempotency_key.len() > 128 || r.detail.len() > 4096 {
        return Err(ApiError::Request(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key is at most 128 bytes and detail at most 4096".into(),
        ));
    }
    let outcome = match r.outcome {
        ReportedOutcome::Succeeded => Outcome::Succeeded,
        ReportedOutcome::Failed => Outcome::Failed {
            retry: true,
            detail: r.detail,
        },
    };
    let decisions = control(&state, move |c| {
        c.report(&r.idempotency_key, r.fencing_epoch, outcome)
    })
    .await?;
    Ok(Json(json!({"decisions": decisions})).into_response())
}

/// Query of `GET /v1/audit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    service: Option<String>,
    member: Option<String>,
    action: Option<String>,
    limit: Option<u16>,
    cursor: Option<String>,
}

/// `GET /v1/audit`: the reconcile loop's decisions, newest first.
pub(crate) async fn get_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Read)?;
    let limit = page::limit(q.limit)?;
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| page::bad_cursor())?),
    };
    let query = coherd_store::AuditQuery {
        service: q.service,
        member: q.member,
        action: q.action,
        before,
        limit: limit + 1,
    };
    let c = state.reconcile.clone();
    let rows = tokio::task::spawn_blocking(move || c.audit(&query))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut v: Value = serde_json::from_str(&r.entry.record).unwrap_or_else(|_| json!({}));
            v["id"] = json!(r.id);
            v
        })
        .collect();
    Ok(page::respond(&uri, list, limit, |v| v["id"].to_string()))
}
