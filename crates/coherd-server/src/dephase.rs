//! `GET /v1/dephase/{service}/{job}?member=M`: a member's slot for a periodic job.
//! The math is in the engine's getter and `coherd-dephase`; this only translates.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coherd_engine::SlotError;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Scope;
use crate::error::{ApiError, Path, Query};
use coherd_model::time::wall_now;

/// Query of `GET /v1/dephase/{service}/{job}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlotQuery {
    member: Option<String>,
}

/// `GET /v1/dephase/{service}/{job}?member=M`: the member's offset in the job's
/// window and its next start after now, from the live membership.
pub(crate) async fn get_slot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((service, job)): Path<(String, String)>,
    Query(q): Query<SlotQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Read)?;
    let Some(member) = q.member else {
        return Err(ApiError::Request(
            StatusCode::BAD_REQUEST,
            "add ?member=ID: the member whose slot you want".into(),
        ));
    };
    if let Err(e) = coherd_model::names::member(&member) {
        return Err(ApiError::Request(
            StatusCode::BAD_REQUEST,
            format!("member: {e}"),
        ));
    }
    // The intent in force, as GET /v1/intent shows it (the engine applies it
    // only from the first report).
    let current = state.shared.intent();
    let intent = current.as_ref().map(|c| &c.intent);
    let slot = state
        .shared
        .engine()
        .job_slot(intent, &service, &job, &member, wall_now());
    match slot {
        Ok(slot) => Ok(Json(slot).into_response()),
        Err(e @ (SlotError::NoJobs { .. } | SlotError::UnknownJob { .. })) => {
            Err(ApiError::NotFound(e.to_string()))
        }
    }
}
