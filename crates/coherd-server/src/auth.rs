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
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
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
