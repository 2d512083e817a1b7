//! Bearer tokens with scopes, compared in constant time. Tokens are never logged.

use axum::http::HeaderMap;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// POST observations.
    Report,
    /// Read the API, stream and metrics.
    Read,
    /// Change the intent, delete members; implies `read` and `report`.
    Admin,
}

/// One configured token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The secret.
    pub token: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The services it may report for (empty: any). A reporter's token
    /// bound to its own services cannot speak for another fleet.
    #[serde(default)]
    pub services: Vec<String>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("services", &self.services)
            .finish()
    }
}

/// The configured tokens; empty means open (loopback only).
#[derive(Clone, Default)]
pub(crate) struct Tokens(Vec<TokenEntry>);

impl Tokens {
    /// From the configuration.
    pub(crate) fn new(entries: Vec<TokenEntry>) -> Tokens {
        Tokens(entries)
    }

    /// Whether any token is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Refuses a report for a service the token `index` is not bound to.
    pub(crate) fn may_report_for(
        &self,
        index: Option<usize>,
        service: &str,
    ) -> Result<(), ApiError> {
        let Some(t) = index.and_then(|i| self.0.get(i)) else {
            return Ok(());
        };
        if t.services.is_empty() || t.services.iter().any(|s| s == service) {
            Ok(())
        } else {
            Err(ApiError::Request(
                axum::http::StatusCode::FORBIDDEN,
                format!(
                    "this token may report for {} only, not for {service:?}: use that service's token",
                    t.services.join(", ")
                ),
            ))
        }
    }

    /// Checks the request's bearer token for `scope`; the position of the
    /// token that matched (none when tokens are off).
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Option<usize>, ApiError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let mut found = None;
        for (i, t) in self.0.iter().enumerate() {
            // Compare against every token so timing does not reveal which one matched.
            if bool::from(t.token.as_bytes().ct_eq(given.trim().as_bytes())) {
                found = Some((i, t));
            }
        }
        let (i, t) = found.ok_or(ApiError::Unauthorized)?;
        if t.scopes.contains(&scope) || t.scopes.contains(&Scope::Admin) {
            Ok(Some(i))
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }
}
