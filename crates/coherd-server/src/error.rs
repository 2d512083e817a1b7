//! Errors: what the server refuses to start with, and what clients get back.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coherd_model::{FieldError, IntentError};
use serde_json::json;

use crate::auth::Scope;

/// Why the server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] coherd_store::StoreError),
    /// The intent file is invalid.
    #[error("{0}")]
    Intent(String),
    /// Binding or serving failed.
    #[error(
        "cannot listen on {addr}: {source}; pick another --listen address or stop what uses it"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// An IO error while serving.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to a client. Internal details are logged, not sent.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// Items of a batch are invalid (400 or 422).
    Invalid(StatusCode, Vec<ItemError>),
    /// The intent is invalid (422).
    Intent(Vec<IntentError>),
    /// No or unknown token.
    Unauthorized,
    /// The token lacks the scope.
    Forbidden(Scope),
    /// Nothing there (404).
    NotFound(String),
    /// A bad query or header (400, 413, 415).
    Request(StatusCode, String),
    /// Too much load now; try again after the given seconds (503).
    Overloaded(u32),
    /// Something failed inside; the message is logged.
    Internal(String),
}

/// One problem in a batch, by item.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ItemError {
    /// Position of the item in the batch.
    pub index: usize,
    /// Field path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ItemError {
    /// From a field error of item `index`.
    pub(crate) fn new(index: usize, e: FieldError) -> ItemError {
        ItemError {
            index,
            field: e.field,
            message: e.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let msg = |status: StatusCode, m: String| {
            (status, Json(json!({"errors": [{"message": m}]}))).into_response()
        };
        match self {
            ApiError::Invalid(status, errors) => {
                (status, Json(json!({ "errors": errors }))).into_response()
            }
            ApiError::Intent(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "errors": errors })),
            )
                .into_response(),
            ApiError::Unauthorized => {
                let mut r = msg(
                    StatusCode::UNAUTHORIZED,
                    "missing or unknown bearer token; send Authorization: Bearer TOKEN".into(),
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            ApiError::Forbidden(scope) => msg(
                StatusCode::FORBIDDEN,
                format!("this token lacks the {scope:?} scope").to_lowercase(),
            ),
            ApiError::NotFound(m) => msg(StatusCode::NOT_FOUND, m),
            ApiError::Request(status, m) => msg(status, m),
            ApiError::Overloaded(secs) => {
                let mut r = msg(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("coherd is overloaded; retry after {secs}s"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                r
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                msg(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the server log has the details".into(),
                )
            }
        }
    }
}

/// A query string read into `T`, refused with the same JSON error body as
/// every other mistake (axum's own extractor answers in plain text).
pub(crate) struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(Query(q)),
            Err(e) => Err(ApiError::Request(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// Path parameters read into `T`, refused with the same JSON error body as
/// every other mistake (axum's own extractor answers a segment that is not
/// UTF-8 once percent-decoded in plain text).
pub(crate) struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(p)) => Ok(Path(p)),
            Err(e) => Err(ApiError::Request(e.status(), e.body_text())),
        }
    }
}
