//! Bearer tokens with scopes, compared in constant time. Tokens are never logged.

use axum::http::HeaderMap;
use globset::{Glob, GlobSet, GlobSetBuilder};
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
    /// The services it may report for, as names or glob patterns
    /// (`checkout*`; empty: any). A reporter's token bound to its own
    /// services cannot speak for another fleet.
    #[serde(default)]
    pub services: Vec<String>,
    /// The members it may report as, as glob patterns (`web-*`,
    /// `*.eu-west-1`; empty: any): a member's own token cannot speak for
    /// its neighbours.
    #[serde(default)]
    pub members: Vec<String>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("services", &self.services)
            .field("members", &self.members)
            .finish()
    }
}

/// The configured tokens; empty means open (loopback only).
#[derive(Clone, Default)]
pub(crate) struct Tokens(Vec<Bound>);

/// A token with its service and member patterns compiled.
#[derive(Clone)]
struct Bound {
    entry: TokenEntry,
    services: Option<GlobSet>,
    members: Option<GlobSet>,
}

/// Compiles patterns; none means any.
fn globs(patterns: &[String], what: &str) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| format!("token {what} pattern {p:?}: {e}"))?;
        set.add(glob);
    }
    set.build()
        .map(Some)
        .map_err(|e| format!("token {what} patterns: {e}"))
}

impl Tokens {
    /// From the configuration; an invalid pattern is an error naming it.
    pub(crate) fn new(entries: Vec<TokenEntry>) -> Result<Tokens, String> {
        entries
            .into_iter()
            .map(|entry| {
                Ok(Bound {
                    services: globs(&entry.services, "services")?,
                    members: globs(&entry.members, "members")?,
                    entry,
                })
            })
            .collect::<Result<_, String>>()
            .map(Tokens)
    }

    /// Whether any token is configured.
    pub(crate) fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Refuses a report for a service or member the token `index` is not
    /// bound to.
    pub(crate) fn may_report_for(
        &self,
        index: Option<usize>,
        service: &str,
        member: &str,
    ) -> Result<(), ApiError> {
        let Some(t) = index.and_then(|i| self.0.get(i)) else {
            return Ok(());
        };
        let forbidden = |message: String| {
            Err(ApiError::Request(
                axum::http::StatusCode::FORBIDDEN,
                message,
            ))
        };
        if t.services.as_ref().is_some_and(|s| !s.is_match(service)) {
            return forbidden(format!(
                "this token may report for services {} only, not for {service:?}: use that service's token",
                t.entry.services.join(", ")
            ));
        }
        if t.members.as_ref().is_some_and(|m| !m.is_match(member)) {
            return forbidden(format!(
                "this token may report as members {} only, not as {member:?}: use that member's token",
                t.entry.members.join(", ")
            ));
        }
        Ok(())
    }

    /// Whether `token` is a configured token with the read scope (or admin).
    pub(crate) fn reads(&self, token: &str) -> bool {
        let mut found = false;
        for t in &self.0 {
            if bool::from(t.entry.token.as_bytes().ct_eq(token.trim().as_bytes()))
                && (t.entry.scopes.contains(&Scope::Read) || t.entry.scopes.contains(&Scope::Admin))
            {
                found = true;
            }
        }
        found
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
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // The dashboards' cookie stands for a token on reads only: a page
        // another site makes the browser load can read nothing it is shown,
        // and can change nothing.
        let given = bearer
            .or_else(|| {
                (scope == Scope::Read)
                    .then(|| cookie(headers, UI_COOKIE))
                    .flatten()
            })
            .ok_or(ApiError::Unauthorized)?;
        let mut found = None;
        for (i, t) in self.0.iter().enumerate() {
            // Compare against every token so timing does not reveal which one matched.
            if bool::from(t.entry.token.as_bytes().ct_eq(given.trim().as_bytes())) {
                found = Some((i, t));
            }
        }
        let (i, t) = found.ok_or(ApiError::Unauthorized)?;
        if t.entry.scopes.contains(&scope) || t.entry.scopes.contains(&Scope::Admin) {
            Ok(Some(i))
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }
}

/// The cookie the dashboards' sign-in sets: a read token, `HttpOnly`,
/// `SameSite=Strict`, sent only to this server's paths.
pub(crate) const UI_COOKIE: &str = "coherd_token";

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
