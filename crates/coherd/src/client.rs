//! A small HTTP client for a running `coherd serve`.
//!
//! The base URL comes from `--server` (or `COHERD_SERVER`), the bearer token
//! from `--token` (or `COHERD_TOKEN`). Every failure becomes a [`ClientError`]
//! whose message says what to do next, and which says whether trying the same
//! request again may help ([`ClientError::is_retryable`]).
//!
//! The response types at the end of this file are lenient on purpose: they
//! read the fields the commands print and ignore the rest, so a newer server
//! that adds fields still works with an older client.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use coherd_dephase::{Backoff, Jitter};
use reqwest::{Method, StatusCode, Url, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where coherd listens when nothing else is said.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Where the server is and how to authenticate; flattened into every command
/// that talks to one.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServerArgs {
    /// URL of the coherd server.
    #[arg(long, env = "COHERD_SERVER", hide_env_values = true, default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// Bearer token; the command needs its scope (`report`, `read` or `admin`).
    #[arg(
        long,
        env = "COHERD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// How long to wait for the answer to one request.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// A CA certificate (PEM) to trust for an https:// server, besides the system's.
    #[arg(long, env = "COHERD_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// Parses `10s`, `500ms`, `2m` for clap.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    coherd_model::time::parse_duration(s)
}

/// What a request needs from the token, for the message when it lacks it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    /// The scope the server checks: `read`, `report` or `admin`.
    pub scope: &'static str,
    /// What the request does, completing "needed to ...".
    pub action: &'static str,
}

/// A read of fleet state.
pub(crate) const READ: Need = Need {
    scope: "read",
    action: "read fleet state",
};

/// Why a request to coherd failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// Nothing answered at the address.
    #[error("cannot reach coherd at {base}: {cause}; is `coherd serve` running?")]
    Unreachable {
        /// The server's base URL.
        base: String,
        /// The lowest-level reason, such as "connection refused".
        cause: String,
    },
    /// The server took longer than the timeout.
    #[error(
        "coherd at {base} did not answer within {timeout}; it may be overloaded: try again, or raise --timeout"
    )]
    Timeout {
        /// The server's base URL.
        base: String,
        /// The timeout, printed.
        timeout: String,
    },
    /// The connection broke during the exchange.
    #[error("lost the connection to coherd at {base}: {cause}")]
    Broken {
        /// The server's base URL.
        base: String,
        /// What broke.
        cause: String,
    },
    /// The server wants a token (401).
    #[error("coherd at {base} {}", if *had_token {
        "refused the token: check --token or COHERD_TOKEN"
    } else {
        "needs a token: pass --token or set COHERD_TOKEN"
    })]
    Unauthorized {
        /// The server's base URL.
        base: String,
        /// Whether a token was sent.
        had_token: bool,
    },
    /// The token lacks the scope (403).
    #[error(
        "the token lacks the `{}` scope needed to {}; use a token that has it", need.scope, need.action
    )]
    Forbidden {
        /// What the request needed.
        need: Need,
    },
    /// The server sheds load (503).
    #[error("coherd at {base} is overloaded (503){}; try again later", retry_after.map_or(String::new(), |d| format!(", retry after {}s", d.as_secs())))]
    Overloaded {
        /// The server's base URL.
        base: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Any other answer that is not a success.
    #[error("coherd at {base} answered {status} to {method} {path}: {message}")]
    Status {
        /// The server's base URL.
        base: String,
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The status code.
        status: StatusCode,
        /// The most useful line of the body.
        message: String,
        /// The body as sent, for callers that read structured errors.
        body: String,
    },
    /// The answer was not what this client expects.
    #[error(
        "coherd at {base} sent an answer to {path} that this client cannot read ({cause}); are client and server the same version?"
    )]
    Decode {
        /// The server's base URL.
        base: String,
        /// The request's path.
        path: String,
        /// The parse error.
        cause: String,
    },
}

impl ClientError {
    /// Whether sending the same request again may succeed: the server was
    /// unreachable, slow, overloaded or failed with a 5xx.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Broken { .. }
            | ClientError::Overloaded { .. } => true,
            ClientError::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// How long the server asked us to wait, if it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Overloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The status code, when the server answered.
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            ClientError::Forbidden { .. } => Some(StatusCode::FORBIDDEN),
            ClientError::Overloaded { .. } => Some(StatusCode::SERVICE_UNAVAILABLE),
            _ => None,
        }
    }
}

/// A connection to one coherd server. Cheap to clone; clones share connections.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing `/`.
    base: String,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    /// A client whose requests time out after `--timeout`.
    pub(crate) fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        Client::build(args, Some(args.timeout))
    }

    /// A client for long-lived streams: only connecting is bounded by `--timeout`.
    pub(crate) fn for_stream(args: &ServerArgs) -> anyhow::Result<Client> {
        Client::build(args, None)
    }

    fn build(args: &ServerArgs, total: Option<Duration>) -> anyhow::Result<Client> {
        let base = base_url(&args.server)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(args.timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("coherd/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--ca-cert {}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!("--ca-cert {}: not a PEM certificate: {e}", path.display())
            })?;
            builder = builder.tls_certs_merge([cert]);
        }
        builder = match total {
            Some(t) => builder.timeout(t),
            // A stream may be quiet for long; keepalive notices a dead peer.
            None => builder.tcp_keepalive(Duration::from_secs(30)),
        };
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
            timeout: args.timeout,
        })
    }

    /// The server's base URL, as printed in messages.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) with `query` appended;
    /// empty query values are left out.
    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = Url::parse(&format!("{}{}", self.base, path)).unwrap_or_else(|_| {
            panic!("{}{} is a valid URL: the base was checked", self.base, path)
        });
        let pairs: Vec<_> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
        if !pairs.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// A request to `url` with the token attached.
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req` and returns the body of a success; everything else becomes a [`ClientError`].
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
        need: Need,
    ) -> Result<(StatusCode, String), ClientError> {
        let resp = self.start(req, need).await?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| self.transport(e))?;
        Ok((status, body))
    }

    /// Sends `req` and returns the response of a success without reading its body (for streams).
    pub(crate) async fn start(
        &self,
        req: reqwest::RequestBuilder,
        need: Need,
    ) -> Result<reqwest::Response, ClientError> {
        let req = req.build().map_err(|e| self.transport(e))?;
        let (method, path) = (req.method().clone(), req.url().path().to_string());
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        Err(match status {
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized {
                base: self.base.clone(),
                had_token: self.token.is_some(),
            },
            StatusCode::FORBIDDEN => ClientError::Forbidden { need },
            StatusCode::SERVICE_UNAVAILABLE => ClientError::Overloaded {
                base: self.base.clone(),
                retry_after,
            },
            _ => ClientError::Status {
                base: self.base.clone(),
                method,
                path,
                status,
                message: body_message(&body),
                body,
            },
        })
    }

    /// `GET path?query` and parse the JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let req = self.request(Method::GET, self.url(path, query));
        let (_, body) = self.send(req, READ).await?;
        self.decode(path, &body)
    }

    /// `GET path?query` of a list endpoint, following its `Link: <...>;
    /// rel="next"` headers page by page until the last.
    pub(crate) async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, ClientError> {
        self.get_all_in(path, query, None, None).await
    }

    /// [`Client::get_all`] for pages that are objects holding the list under
    /// `key`, stopping once `max` items are in.
    pub(crate) async fn get_all_in<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        key: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<T>, ClientError> {
        let mut url = self.url(path, query);
        let mut all = Vec::new();
        loop {
            let resp = self
                .start(self.request(Method::GET, url.clone()), READ)
                .await?;
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .and_then(|link| url.join(link).ok());
            let body = resp.text().await.map_err(|e| self.transport(e))?;
            match key {
                None => all.extend(self.decode::<Vec<T>>(path, &body)?),
                Some(key) => {
                    let mut page: serde_json::Value = self.decode(path, &body)?;
                    all.extend(self.decode::<Vec<T>>(path, &page[key].take().to_string())?);
                }
            }
            if let Some(max) = max
                && all.len() >= max
            {
                all.truncate(max);
                return Ok(all);
            }
            match next {
                Some(n) => url = n,
                None => return Ok(all),
            }
        }
    }

    /// Parses a JSON answer to `path`.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &str,
    ) -> Result<T, ClientError> {
        serde_json::from_str(body).map_err(|e| ClientError::Decode {
            base: self.base.clone(),
            path: path.to_string(),
            cause: e.to_string(),
        })
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                base: self.base.clone(),
                timeout: humantime::format_duration(self.timeout).to_string(),
            }
        } else if e.is_connect() {
            ClientError::Unreachable {
                base: self.base.clone(),
                cause: root_cause(&e),
            }
        } else {
            ClientError::Broken {
                base: self.base.clone(),
                cause: root_cause(&e),
            }
        }
    }
}

/// Checks `--server` and returns it without a trailing `/`.
fn base_url(server: &str) -> anyhow::Result<String> {
    let url = Url::parse(server).map_err(|e| {
        anyhow::anyhow!("--server {server:?} is not a URL ({e}); write it like {DEFAULT_SERVER}")
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => anyhow::bail!(
            "--server {server}: unsupported scheme {other:?}; use http:// or https://"
        ),
    }
    if url.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("--server {server} has no host; write it like {DEFAULT_SERVER}");
    }
    if url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("--server {server} must not have a query or fragment");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Whether `server` names this machine (a loopback address or `localhost`).
pub(crate) fn is_loopback(server: &str) -> bool {
    let Ok(url) = Url::parse(server) else {
        return false;
    };
    match url.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The innermost cause of a transport error, in words.
pub(crate) fn root_cause(e: &reqwest::Error) -> String {
    let mut source = e.source();
    let mut last = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset by the server".into(),
                std::io::ErrorKind::TimedOut => "connection timed out".into(),
                _ => io.to_string(),
            };
        }
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| e.to_string())
}

/// The line of an error body worth printing: `error`/`message`, the first of
/// `errors`, or the start of the text.
fn body_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(s) = v[key].as_str() {
                return s.to_string();
            }
        }
        if let Some(errs) = v["errors"].as_array() {
            let first: Vec<String> = errs.iter().take(3).map(describe_error).collect();
            let more = errs.len().saturating_sub(3);
            return if more > 0 {
                format!("{} (and {more} more)", first.join("; "))
            } else {
                first.join("; ")
            };
        }
    }
    let text = body.trim();
    if text.is_empty() {
        "no details given".into()
    } else {
        text.chars().take(200).collect()
    }
}

/// One entry of an `errors` array, as `field: message` (with its `index` or `line` when given).
pub(crate) fn describe_error(e: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(i) = e["index"].as_u64() {
        out.push_str(&format!("item {i}: "));
    }
    if let Some(l) = e["line"].as_u64() {
        out.push_str(&format!("line {l}"));
        if let Some(c) = e["column"].as_u64() {
            out.push_str(&format!(":{c}"));
        }
        out.push_str(": ");
    }
    for key in ["field", "path"] {
        if let Some(f) = e[key].as_str().filter(|f| !f.is_empty()) {
            out.push_str(f);
            out.push_str(": ");
        }
    }
    out.push_str(e["message"].as_str().unwrap_or("invalid"));
    out
}

/// Retry delays for one request: 200 ms doubling to 10 s, with full jitter.
pub(crate) fn retry_policy(retries: u32) -> coherd_dephase::Retries {
    Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(10),
        Jitter::Full,
    )
    .expect("base below cap")
    .with_max_retries(retries)
    .retries()
}

/// A current-thread runtime for commands that make a few requests.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

// ---- Response shapes (DESIGN 6) ----

/// One line of `GET /v1/services`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct ServiceSummary {
    /// The service's name.
    pub service: String,
    /// Known members.
    #[serde(default)]
    pub members: u64,
    /// Live members.
    #[serde(default)]
    pub live: u64,
    /// Coherence in [0, 1]; null with no known members.
    #[serde(default)]
    pub coherence: Option<f64>,
    /// Open divergences.
    #[serde(default)]
    pub open_divergences: u64,
}

/// `GET /v1/services/{service}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct ServiceDetail {
    /// The service's name.
    pub service: String,
    /// Known members.
    #[serde(default)]
    pub members: u64,
    /// Live members.
    #[serde(default)]
    pub live: u64,
    /// Coherence in [0, 1].
    #[serde(default)]
    pub coherence: Option<f64>,
    /// Value distribution per facet.
    #[serde(default)]
    pub facets: BTreeMap<String, FacetDistribution>,
    /// SLIs as the server names them.
    #[serde(default)]
    pub slis: serde_json::Map<String, serde_json::Value>,
    /// Open divergences of the service.
    #[serde(default)]
    pub open_divergences: Vec<DivergenceRecord>,
}

/// How a facet's values are spread over the live members.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct FacetDistribution {
    /// The intended value, if the intent names one.
    #[serde(default)]
    pub target: Option<String>,
    /// Members per value.
    #[serde(default)]
    pub values: BTreeMap<String, u64>,
}

/// One divergence as the API shows it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct DivergenceRecord {
    /// Stable id (kind + service + subject key).
    #[serde(default)]
    pub id: String,
    /// The service it belongs to.
    #[serde(default)]
    pub service: String,
    /// `drift`, `mixed`, `silent`, ...
    #[serde(default)]
    pub kind: String,
    /// `info`, `warning` or `critical`.
    #[serde(default)]
    pub severity: String,
    /// The members (or member pairs) concerned.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Kind-specific detail.
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// RFC 3339.
    #[serde(default)]
    pub opened_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub last_seen_at: Option<String>,
    /// RFC 3339; null while open.
    #[serde(default)]
    pub resolved_at: Option<String>,
    /// Times the same id opened again.
    #[serde(default)]
    pub reopens: u64,
}

/// The target of a `Link` header's `rel="next"`.
pub(crate) fn next_link(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| target.trim().strip_prefix('<')?.strip_suffix('>'))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_link_with_rel_next() {
        assert_eq!(
            next_link(r#"</v1/divergences?cursor=1.a>; rel="next""#),
            Some("/v1/divergences?cursor=1.a")
        );
        assert_eq!(
            next_link(r#"</p?x=1>; rel="prev", </p?x=3>; rel="next""#),
            Some("/p?x=3")
        );
        assert_eq!(next_link(r#"</p?x=1>; rel="prev""#), None);
    }

    #[test]
    fn base_url_trims_and_refuses_what_it_cannot_speak() {
        assert_eq!(
            base_url("http://127.0.0.1:7070/").unwrap(),
            "http://127.0.0.1:7070"
        );
        assert_eq!(base_url("http://h:1/coherd/").unwrap(), "http://h:1/coherd");
        assert_eq!(base_url("https://h:1/").unwrap(), "https://h:1");
        assert!(
            base_url("ftp://h")
                .unwrap_err()
                .to_string()
                .contains("https://")
        );
        assert!(base_url("127.0.0.1:7070").is_err());
    }

    #[test]
    fn loopback_is_recognised() {
        assert!(is_loopback("http://127.0.0.1:7070"));
        assert!(is_loopback("http://localhost:1"));
        assert!(is_loopback("http://[::1]:7070"));
        assert!(!is_loopback("http://10.0.0.1:7070"));
        assert!(!is_loopback("http://coherd.example:7070"));
    }

    #[test]
    fn body_message_prefers_structured_errors() {
        assert_eq!(
            body_message(r#"{"error":"unknown service"}"#),
            "unknown service"
        );
        assert_eq!(
            body_message(r#"{"errors":[{"index":2,"field":"service","message":"bad"}]}"#),
            "item 2: service: bad"
        );
        assert_eq!(body_message(""), "no details given");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let base = String::from("http://x");
        assert!(
            ClientError::Unreachable {
                base: base.clone(),
                cause: "connection refused".into()
            }
            .is_retryable()
        );
        assert!(
            ClientError::Overloaded {
                base: base.clone(),
                retry_after: None
            }
            .is_retryable()
        );
        assert!(!ClientError::Forbidden { need: READ }.is_retryable());
        let status = |s| ClientError::Status {
            base: base.clone(),
            method: Method::POST,
            path: "/v1/observations".into(),
            status: s,
            message: String::new(),
            body: String::new(),
        };
        assert!(status(StatusCode::BAD_GATEWAY).is_retryable());
        assert!(!status(StatusCode::UNPROCESSABLE_ENTITY).is_retryable());
    }
}
