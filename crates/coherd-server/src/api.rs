//! HTTP handlers: parse, call the core, map the result. No detection logic here.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use coherd_engine::{Divergence, Kind};
use coherd_model::{Intent, Time};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::AppState;
use crate::auth::Scope;
use crate::error::{ApiError, Path, Query};
use crate::fairness::{PeerAddr, Reporter};
use crate::ingest::{ClockRules, Framing, Parsed, parse_batch};
use coherd_model::time::wall_now;

use crate::page;
use crate::pipeline::{Ingested, SubmitError, Work, WorkError};

type ApiResult<T> = Result<T, ApiError>;

fn submit(state: &AppState, work: Work) -> ApiResult<()> {
    state.writer.submit(work).map_err(|e| match e {
        SubmitError::Full => ApiError::Overloaded(1),
        SubmitError::Stopped => ApiError::Overloaded(5),
    })
}

async fn wait<T>(rx: oneshot::Receiver<Result<T, WorkError>>) -> ApiResult<T> {
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(WorkError::Store)) => Err(ApiError::Internal("the store could not commit".into())),
        Ok(Err(WorkError::Refused(m))) => {
            Err(ApiError::Request(StatusCode::UNPROCESSABLE_ENTITY, m))
        }
        Err(_) => Err(ApiError::Overloaded(5)),
    }
}

/// Reads a request body of at most `limit` bytes within the configured
/// body-read timeout; call it only once auth passed.
pub(crate) async fn read_body(
    state: &AppState,
    body: Body,
    limit: usize,
    what: &str,
) -> ApiResult<Bytes> {
    let timeout = state.config.body_read_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::Request(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {what} is larger than {limit} bytes"),
        )),
        Err(_) => Err(ApiError::Request(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the {what} did not arrive within {}s (body_read_timeout)",
                timeout.as_secs()
            ),
        )),
    }
}

/// `POST /v1/observations`.
pub(crate) async fn post_observations(
    State(state): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let token = state.tokens.check(&headers, Scope::Report)?;
    let framing = Framing::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    // The body first: a slow upload holds its own connection, not an ingest slot.
    let body = read_body(&state, body, state.config.limits.body_bytes, "batch").await?;
    // Capacity is shared fairly: by token, else by peer address.
    let reporter = match (token, peer) {
        (Some(i), _) => Reporter::Token(i),
        (None, Some(Extension(PeerAddr(ip)))) => Reporter::Peer(ip),
        (None, None) => Reporter::Peer(std::net::Ipv4Addr::UNSPECIFIED.into()),
    };
    let Some(_slot) = state.ingest_slots.try_acquire(reporter) else {
        return Err(ApiError::Overloaded(1));
    };
    let clock = ClockRules {
        max_future: state.config.max_future,
        max_age: state.config.max_report_age,
    };
    let Parsed {
        observations,
        rejected,
    } = parse_batch(&body, framing, &state.config.limits, clock, wall_now())?;
    for o in &observations {
        state.tokens.may_report_for(token, &o.service, &o.member)?;
    }
    let got = if observations.is_empty() {
        Ingested::default()
    } else {
        let (tx, rx) = oneshot::channel();
        submit(
            &state,
            Work::Observations {
                observations,
                reply: tx,
            },
        )?;
        wait(rx).await?
    };
    state
        .shared
        .metrics
        .ingest_rejected
        .inc_by(rejected.len() as u64);
    state
        .shared
        .metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(IngestAnswer {
        accepted: got.accepted,
        duplicates: got.duplicates,
        rejected,
    })
    .into_response())
}

/// The answer to an ingest request (DESIGN 6).
#[derive(serde::Serialize)]
struct IngestAnswer {
    accepted: usize,
    duplicates: usize,
    /// Items refused for their time only; the others were stored.
    rejected: Vec<crate::error::ItemError>,
}

/// `GET /v1/services`.
pub(crate) async fn get_services(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    let services = state.shared.engine().services();
    Ok(Json(services).into_response())
}

fn unknown_service(service: &str) -> ApiError {
    ApiError::NotFound(format!(
        "unknown service {service:?}; GET /v1/services lists the services coherd knows"
    ))
}

/// The open divergences `GET /v1/services/{service}` lists, most severe first;
/// `/v1/divergences?service=` pages through all of them.
const SERVICE_TOP_DIVERGENCES: usize = 100;

/// `GET /v1/services/{service}`.
pub(crate) async fn get_service(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    let mut engine = state.shared.engine();
    engine.refresh_open_subjects();
    let summary = engine
        .services()
        .into_iter()
        .find(|s| s.service == service)
        .ok_or_else(|| unknown_service(&service))?;
    let facets = engine.facet_distributions(&service).unwrap_or_default();
    let slis = engine.service_slis(&service);
    // Counted whole; listed only the most severe, oldest first.
    let mut counts: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for d in engine.open_divergences().filter(|d| d.service == service) {
        *counts
            .entry(d.kind.as_str())
            .or_default()
            .entry(d.severity.as_str())
            .or_default() += 1;
    }
    let (open, _) = most_severe_open(&engine, Some(&service), SERVICE_TOP_DIVERGENCES);
    let body = json!({
        "service": summary.service,
        "members": summary.members,
        "live": summary.live,
        "coherence": summary.coherence,
        "facets": facets,
        "slis": slis,
        "open_counts": counts,
        "open_divergences": open,
    });
    drop(engine);
    Ok(Json(body).into_response())
}

/// Query of `GET /v1/services/{service}/members`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersQuery {
    state: Option<String>,
    limit: Option<u16>,
    cursor: Option<String>,
}

/// `GET /v1/services/{service}/members`.
pub(crate) async fn get_members(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(service): Path<String>,
    Query(q): Query<MembersQuery>,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    if let Some(s) = &q.state
        && !matches!(s.as_str(), "live" | "silent" | "left")
    {
        return Err(ApiError::Request(
            StatusCode::BAD_REQUEST,
            format!("state={s:?}: use live, silent or left"),
        ));
    }
    let limit = page::limit(q.limit)?;
    if let Some(c) = &q.cursor {
        coherd_model::names::member(c).map_err(|_| page::bad_cursor())?;
    }
    let found = state
        .shared
        .engine()
        .members_page(&service, q.state.as_deref(), q.cursor.as_deref(), limit)
        .ok_or_else(|| unknown_service(&service))?;
    let next = found
        .more
        .then(|| found.members.last().map(|m| m.member.clone()))
        .flatten();
    Ok(page::with_next(&uri, Json(found).into_response(), next))
}

/// `GET /v1/services/{service}/members/{member}`: the member, why it is not
/// coherent, and the divergences open against it.
pub(crate) async fn get_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((service, member)): Path<(String, String)>,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    let (view, open) = member_now(&mut state.shared.engine(), &service, &member)?;
    let mut body = serde_json::to_value(view).unwrap_or_default();
    body["divergences"] = serde_json::to_value(open).unwrap_or_default();
    Ok(Json(body).into_response())
}

/// A member as the engine sees it now, and the divergences open against it
/// (at most [`SERVICE_TOP_DIVERGENCES`]); copied out under the engine lock.
pub(crate) fn member_now(
    engine: &mut coherd_engine::Engine,
    service: &str,
    member: &str,
) -> ApiResult<(coherd_engine::MemberView, Vec<Divergence>)> {
    engine.refresh_open_subjects();
    let view = engine.member(service, member).ok_or_else(|| {
        ApiError::NotFound(format!("service {service:?} has no member {member:?}"))
    })?;
    let open = engine
        .open_divergences()
        .filter(|d| d.service == service && d.subjects.iter().any(|s| s == member))
        .take(SERVICE_TOP_DIVERGENCES)
        .cloned()
        .collect();
    Ok((view, open))
}

/// The `k` most severe open divergences (oldest first among equals), of one
/// service or all, and how many are open in all; one pass over the records.
pub(crate) fn most_severe_open(
    engine: &coherd_engine::Engine,
    service: Option<&str>,
    k: usize,
) -> (Vec<Divergence>, usize) {
    let mut total = 0;
    let open = engine
        .divergences()
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_open() && service.is_none_or(|s| d.service == s))
        .map(|(i, d)| {
            total += 1;
            (Reverse(d.severity), d.opened_at, d.id.as_str(), i)
        });
    let top = page::smallest(open, k)
        .into_iter()
        .map(|(.., i)| engine.divergences()[i].clone())
        .collect();
    (top, total)
}

/// Query of `GET /v1/history/timeline` and `GET /v1/history/sli`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    service: String,
    /// The timeline's member (required there, refused for `sli`).
    member: Option<String>,
    since: Option<Time>,
    until: Option<Time>,
    limit: Option<u16>,
    cursor: Option<String>,
}

/// A record from the history, written as it was stored, with where a page after it starts.
struct StoredRecord {
    cursor: String,
    record: Box<serde_json::value::RawValue>,
}

impl serde::Serialize for StoredRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.record.serialize(s)
    }
}

/// A service name from the query, or 400 saying what is wrong with it.
fn check_service(service: &str) -> ApiResult<()> {
    coherd_model::names::service(service)
        .map_err(|e| ApiError::Request(StatusCode::BAD_REQUEST, format!("service: {e}")))?;
    Ok(())
}

/// Reads the history off the engine and the writer.
pub(crate) async fn read_history<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&mut coherd_store::SqliteStore) -> Result<T, coherd_store::StoreError>
    + Send
    + 'static,
) -> ApiResult<T> {
    let store = state.history.clone();
    tokio::task::spawn_blocking(move || read(&mut store.lock().unwrap_or_else(|e| e.into_inner())))
        .await
        .map_err(|e| ApiError::Internal(format!("the history read stopped: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot read the history: {e}")))
}

/// `GET /v1/history/timeline?service=&member=`: what happened to a member
/// (joins, facet changes, silences, departures), oldest first, a page at a
/// time; history, so also for a member deleted or forgotten since.
pub(crate) async fn get_timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HistoryParams>,
) -> ApiResult<Response> {
    use coherd_store::Store;
    state.tokens.check(&headers, Scope::Read)?;
    let service = q.service;
    check_service(&service)?;
    let member = q
        .member
        .ok_or_else(|| page::bad("member: give the member whose timeline to show"))?;
    coherd_model::names::member(&member)
        .map_err(|e| ApiError::Request(StatusCode::BAD_REQUEST, format!("member: {e}")))?;
    let limit = page::limit(q.limit)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| parse_time_cursor(c).map(|(at, what)| (at, what.to_string())))
        .transpose()?;
    let (since, until) = window(q.since, q.until, Time::EPOCH)?;
    let query = coherd_store::TimelineQuery {
        service,
        member,
        since,
        until,
        after,
        limit: limit + 1,
    };
    let events = read_history(&state, move |store| store.member_events(&query)).await?;
    let rows = events
        .into_iter()
        .map(|e| (format!("{}.{}", e.at.as_nanos(), e.what), e.record));
    stored_page(&uri, rows, limit)
}

/// A page of records read from the history, each with where a page after it
/// starts, written as they were stored.
fn stored_page(
    uri: &Uri,
    rows: impl Iterator<Item = (String, String)>,
    limit: usize,
) -> ApiResult<Response> {
    let list = rows
        .map(|(cursor, record)| {
            let record = serde_json::value::RawValue::from_string(record).map_err(|err| {
                ApiError::Internal(format!("a record in the history at {cursor}: {err}"))
            })?;
            Ok(StoredRecord { cursor, record })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(page::respond(uri, list, limit, |r| r.cursor.clone()))
}

/// `GET /v1/history/sli?service=`: the service's SLIs per minute, oldest
/// first, a page at a time (the default window: the last 24 hours).
pub(crate) async fn get_sli_minutes(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HistoryParams>,
) -> ApiResult<Response> {
    use coherd_store::Store;
    state.tokens.check(&headers, Scope::Read)?;
    let service = q.service;
    check_service(&service)?;
    if q.member.is_some() {
        return Err(page::bad("member: SLIs are per service; leave member out"));
    }
    let limit = page::limit(q.limit)?;
    let day_ago = coherd_model::time::wall_now().sub(std::time::Duration::from_secs(86_400));
    let (mut since, until) = window(q.since, q.until, day_ago)?;
    if let Some(cursor) = &q.cursor {
        let after: i64 = cursor.parse().map_err(|_| page::bad_cursor())?;
        since = since.max(Time::from_nanos(after.saturating_add(1)));
    }
    let minutes = read_history(&state, move |store| {
        store.sli_minutes(&service, since, until, limit + 1)
    })
    .await?;
    let rows = minutes
        .into_iter()
        .map(|m| (m.minute.as_nanos().to_string(), m.record));
    stored_page(&uri, rows, limit)
}

/// Query of `GET /v1/history/intents`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowParams {
    since: Option<Time>,
    until: Option<Time>,
    limit: Option<u16>,
    cursor: Option<String>,
}

/// `GET /v1/history/intents`: every revision of the intent, oldest first,
/// with the text the operator sent.
pub(crate) async fn get_intents(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<WindowParams>,
) -> ApiResult<Response> {
    use coherd_store::Store;
    state.tokens.check(&headers, Scope::Read)?;
    let limit = page::limit(q.limit)?;
    let (since, until) = window(q.since, q.until, Time::EPOCH)?;
    let after = match &q.cursor {
        Some(c) => c.parse().map_err(|_| page::bad_cursor())?,
        None => 0,
    };
    let current = state.shared.intent().map_or(0, |i| i.revision);
    let revisions = read_history(&state, move |store| {
        store.intents(since, until, after, limit + 1)
    })
    .await?;
    let rows = revisions.into_iter().map(|r| {
        let revision = current.saturating_sub(r.newer);
        let record = json!({"revision": revision, "at": r.at, "source": r.source});
        (r.id.to_string(), record.to_string())
    });
    stored_page(&uri, rows, limit)
}

/// A history window from `since` (default: `from`) to `until` (default:
/// open-ended); 422 when it ends before it starts.
fn window(since: Option<Time>, until: Option<Time>, from: Time) -> ApiResult<(Time, Time)> {
    let since = since.unwrap_or(from);
    let until = until.unwrap_or(Time::from_nanos(i64::MAX));
    if since >= until {
        return Err(ApiError::Request(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("since ({since}) must be before until ({until}): the window holds no time"),
        ));
    }
    Ok((since, until))
}

/// `DELETE /v1/services/{service}`: forget a service and its members now.
pub(crate) async fn delete_service(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Admin)?;
    if state
        .shared
        .intent()
        .is_some_and(|i| i.intent.services.contains_key(&service))
    {
        return Err(ApiError::Request(
            StatusCode::CONFLICT,
            format!(
                "the intent names {service:?}: remove it from the intent first, then delete it"
            ),
        ));
    }
    if !state
        .shared
        .engine()
        .services()
        .iter()
        .any(|s| s.service == service)
    {
        return Err(unknown_service(&service));
    }
    let (tx, rx) = oneshot::channel();
    submit(
        &state,
        Work::DeleteService {
            service: service.clone(),
            reply: tx,
        },
    )?;
    if wait(rx).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(unknown_service(&service))
    }
}

/// `DELETE /v1/services/{service}/members/{member}`.
pub(crate) async fn delete_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((service, member)): Path<(String, String)>,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Admin)?;
    let unknown = || ApiError::NotFound(format!("service {service:?} has no member {member:?}"));
    if !state.shared.engine().has_member(&service, &member) {
        // Nothing to store: an unknown member is not written to the log.
        return Err(unknown());
    }
    let (tx, rx) = oneshot::channel();
    submit(
        &state,
        Work::DeleteMember {
            service: service.clone(),
            member: member.clone(),
            reply: tx,
        },
    )?;
    if wait(rx).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(unknown())
    }
}

/// Query of `GET /v1/divergences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DivergencesQuery {
    service: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    limit: Option<u16>,
    cursor: Option<String>,
    /// With `until`: episodes open at some point in the window, from the history.
    since: Option<Time>,
    until: Option<Time>,
}

/// Where a divergence page continues: after this `opened_at` and id.
fn cursor_after(opened_at: Time, id: &str) -> String {
    format!("{}.{id}", opened_at.as_nanos())
}

fn divergence_cursor(d: &Divergence) -> String {
    cursor_after(d.opened_at, &d.id)
}

fn parse_time_cursor(cursor: &str) -> Result<(Time, &str), ApiError> {
    cursor
        .split_once('.')
        .and_then(|(nanos, id)| Some((Time::from_nanos(nanos.parse().ok()?), id)))
        .ok_or_else(page::bad_cursor)
}

/// `GET /v1/divergences`.
pub(crate) async fn get_divergences(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<DivergencesQuery>,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    let kind = match &q.kind {
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::Request(
                StatusCode::BAD_REQUEST,
                format!(
                    "kind={k:?} is not a divergence kind; use one of {}",
                    all.join(", ")
                ),
            )
        })?),
        None => None,
    };
    let in_window = q.since.is_some() || q.until.is_some();
    // Open ones now, by default; every episode in a window of the history.
    let open: Option<bool> =
        match q
            .state
            .as_deref()
            .unwrap_or(if in_window { "all" } else { "open" })
        {
            "open" => Some(true),
            "resolved" => Some(false),
            "all" => None,
            other => {
                return Err(ApiError::Request(
                    StatusCode::BAD_REQUEST,
                    format!("state={other:?}: use open, resolved or all"),
                ));
            }
        };
    if let Some(service) = &q.service {
        check_service(service)?;
    }
    let limit = page::limit(q.limit)?;
    let after = q.cursor.as_deref().map(parse_time_cursor).transpose()?;
    if in_window {
        let (since, until) = window(q.since, q.until, Time::EPOCH)?;
        let query = coherd_store::EpisodeQuery {
            since,
            until,
            service: q.service.clone(),
            kind: kind.map(|k| k.as_str().to_string()),
            open,
            after: after.map(|(at, id)| (at, id.to_string())),
            limit: limit + 1,
        };
        return history_page(&state, &uri, query, limit).await;
    }
    let want = |d: &Divergence| open.is_none_or(|o| d.is_open() == o);
    let mut engine = state.shared.engine();
    engine.refresh_open_subjects();
    // The page's items are picked in one pass holding at most a page, copied
    // out, and written after the engine is released.
    let matching = engine
        .divergences()
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let key = (d.opened_at, d.id.as_str());
            let wanted = want(d)
                && kind.is_none_or(|k| d.kind == k)
                && q.service.as_deref().is_none_or(|s| d.service == s)
                && after.is_none_or(|a| key > a);
            wanted.then_some((key, i))
        });
    // One more than the page, to know whether another follows.
    let list: Vec<Divergence> = page::smallest(matching, limit + 1)
        .into_iter()
        .map(|(_, i)| engine.divergences()[i].clone())
        .collect();
    drop(engine);
    Ok(page::respond(&uri, list, limit, divergence_cursor))
}

/// A page of episodes from the history, read off the engine and the writer.
async fn history_page(
    state: &AppState,
    uri: &Uri,
    query: coherd_store::EpisodeQuery,
    limit: usize,
) -> ApiResult<Response> {
    use coherd_store::Store;
    let episodes = read_history(state, move |store| store.episodes(&query)).await?;
    let rows = episodes
        .into_iter()
        .map(|e| (cursor_after(e.opened_at, &e.id), e.record));
    stored_page(uri, rows, limit)
}

/// `GET /v1/intent`.
pub(crate) async fn get_intent(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    let Some(current) = state.shared.intent() else {
        return Err(ApiError::NotFound(
            "no intent is set; PUT /v1/intent or start with --intent".into(),
        ));
    };
    Ok(Json(json!({
        "source": current.source,
        "intent": current.intent,
        "revision": current.revision,
        "origin": current.origin,
        "at": current.at,
    }))
    .into_response())
}

/// `PUT /v1/intent`: YAML or JSON; refused whole with every error. The body
/// is read only once the token is known to be an admin's.
pub(crate) async fn put_intent(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let token = state.tokens.check(&headers, Scope::Admin)?;
    if let Some(path) = &state.config.intent
        && !state.config.intent_api
    {
        tracing::warn!(file = %path.display(), token = ?token.map(|i| i + 1), "PUT /v1/intent refused: the intent is managed by a file");
        return Err(ApiError::Request(
            StatusCode::CONFLICT,
            format!(
                "the intent is managed by the file {}: edit it (it is reloaded on change and on SIGHUP), or start coherd with intent_api: true to accept it over the API too",
                path.display()
            ),
        ));
    }
    let body = read_body(&state, body, coherd_model::yaml::MAX_BYTES, "intent").await?;
    let source = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::Request(StatusCode::BAD_REQUEST, "the intent is not UTF-8".into())
    })?;
    let intent = Intent::from_yaml(&source).map_err(|e| ApiError::Intent(e.0))?;
    let origin = match token {
        Some(i) => format!("PUT /v1/intent with token #{}", i + 1),
        None => "PUT /v1/intent (no tokens configured)".to_string(),
    };
    apply_intent(&state, source, intent, origin).await?;
    let revision = state.shared.intent().map(|c| c.revision);
    Ok(Json(json!({"applied": true, "revision": revision})).into_response())
}

/// Stores and applies a validated intent.
pub(crate) async fn apply_intent(
    state: &AppState,
    source: String,
    intent: Intent,
    origin: String,
) -> ApiResult<()> {
    let (tx, rx) = oneshot::channel();
    submit(
        state,
        Work::Intent {
            source,
            intent: Box::new(intent),
            origin,
            reply: tx,
        },
    )?;
    wait(rx).await
}

/// `GET /v1/stream`: server-sent events.
pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    state.tokens.check(&headers, Scope::Read)?;
    let rx = state.shared.stream.subscribe();
    let mut stopping = state.stopping.clone();
    let stop = async move {
        while !*stopping.borrow_and_update() {
            if stopping.changed().await.is_err() {
                break;
            }
        }
    };
    let events =
        futures_util::StreamExt::take_until(BroadcastStream::new(rx), Box::pin(stop)).map(|item| {
            Ok(match item {
                Ok((name, data)) => SseEvent::default().event(name).data(data),
                Err(_) => SseEvent::default()
                    .event("lagged")
                    .data("{\"message\":\"events were dropped; re-read /v1/divergences\"}"),
            })
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    use std::sync::atomic::Ordering::SeqCst;
    if !state.shared.ready.load(SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "rebuilding the engine from the store\n",
        )
            .into_response()
    } else if !state.shared.store_ok.load(SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store cannot commit: reports are refused until it can (see the log)\n",
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.tokens.check(&headers, Scope::Read)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::from_accept(accept);
    let slos = state.alerts.lock().slo_status(wall_now());
    // Gauges are read under the engine lock; rendering happens after it.
    let fleet = {
        let mut engine = state.shared.engine();
        state.shared.metrics.read_fleet(&mut engine)
    };
    let text = state.shared.metrics.render(fleet, &slos, format);
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// Unknown paths.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; GET /v1/openapi.json lists them".into())
}
