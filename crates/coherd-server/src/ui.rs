//! The web dashboards: `/ui/` (executive), `/ui/oncall`, and a page per
//! service and member. Each handler copies what its page shows out of the
//! engine (under its lock, briefly), the alerts, the reconciler and the
//! history, then renders after every lock is released.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use coherd_engine::Severity;
use coherd_model::Time;
use coherd_model::time::wall_now;
use coherd_web as web;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Scope, UI_COOKIE};
use crate::error::{ApiError, Path, Query};
use crate::page;
use coherd_store::Store;

/// Services per executive page.
const SERVICES_PER_PAGE: usize = 50;
/// Members per service page.
const MEMBERS_PER_PAGE: usize = 500;
/// Open divergences the on-call page lists.
const ONCALL_DIVERGENCES: usize = 200;
/// Alerts the on-call page lists.
const ONCALL_ALERTS: usize = 500;
/// Points of an executive sparkline (24 h).
const SPARK_POINTS: usize = 48;

/// Why a page cannot be shown: not signed in (to the sign-in form), or an error.
pub(crate) enum UiError {
    SignIn,
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> UiError {
        UiError::Api(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn => Redirect::to("/ui/login").into_response(),
            UiError::Api(e) => e.into_response(),
        }
    }
}

fn allow(state: &AppState, headers: &HeaderMap) -> Result<(), UiError> {
    match state.tokens.check(headers, Scope::Read) {
        Ok(_) => Ok(()),
        Err(ApiError::Unauthorized) => Err(UiError::SignIn),
        Err(e) => Err(UiError::Api(e)),
    }
}

fn html(markup: maud::Markup) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// `GET /ui/assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match web::ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            a.body,
        )
            .into_response(),
        None => ApiError::NotFound(format!("no asset {name:?}")).into_response(),
    }
}

/// `GET /ui/login`.
pub(crate) async fn login_form() -> Response {
    html(web::login(None))
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
}

/// `POST /ui/login`: a read token becomes an `HttpOnly`, `SameSite=Strict` cookie.
pub(crate) async fn login(
    State(state): State<AppState>,
    axum::extract::Form(form): axum::extract::Form<SignIn>,
) -> Response {
    if !state.tokens.enabled() {
        return Redirect::to("/ui/").into_response();
    }
    if form.token.len() > 4096 || !state.tokens.reads(&form.token) {
        let mut page = html(web::login(Some(
            "That token is not one with the read scope.",
        )));
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    }
    let secure = if state.config.tls_cert.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{UI_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        form.token.trim()
    );
    let mut r = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Query of `/ui/`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    page: Option<usize>,
}

/// `GET /ui/`: the executive page.
pub(crate) async fn executive(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, UiError> {
    allow(&state, &headers)?;
    let now = wall_now();
    let at = q.page.unwrap_or(0);
    let (mut rows, totals) = {
        let mut engine = state.shared.engine();
        let mut summaries = engine.services();
        let mut open: BTreeMap<String, [u32; 3]> = BTreeMap::new();
        let mut totals = web::Totals {
            services: summaries.len(),
            ..Default::default()
        };
        for d in engine.open_divergences() {
            let i = severity_index(d.severity);
            open.entry(d.service.clone()).or_default()[i] += 1;
            totals.open[i] += 1;
        }
        let (mut weighted, mut live) = (0.0, 0u64);
        for s in &summaries {
            totals.members += u64::from(s.members);
            totals.live += u64::from(s.live);
            if let Some(c) = s.coherence {
                weighted += c * f64::from(s.live);
                live += u64::from(s.live);
            }
        }
        totals.coherence = (live > 0).then(|| weighted / live as f64);
        summaries.sort_by(|a, b| {
            let key = |c: Option<f64>| c.unwrap_or(2.0);
            key(a.coherence)
                .total_cmp(&key(b.coherence))
                .then_with(|| a.service.cmp(&b.service))
        });
        let rows: Vec<web::ServiceRow> = summaries
            .into_iter()
            .skip(at.saturating_mul(SERVICES_PER_PAGE))
            .take(SERVICES_PER_PAGE + 1)
            .map(|summary| web::ServiceRow {
                open: open.get(&summary.service).copied().unwrap_or_default(),
                exposure: engine
                    .service_slis(&summary.service)
                    .map(|slis| {
                        slis.exposure
                            .iter()
                            .map(|(f, e)| (f.clone(), e.w5m))
                            .collect()
                    })
                    .unwrap_or_default(),
                budget_left: None,
                coherence_24h: Vec::new(),
                summary,
            })
            .collect();
        (rows, totals)
    };
    let more = rows.len() > SERVICES_PER_PAGE;
    rows.truncate(SERVICES_PER_PAGE);
    let budgets: BTreeMap<String, Option<f64>> = state
        .alerts
        .lock()
        .slo_status(now)
        .into_iter()
        .map(|(service, s)| (service, s.error_budget_remaining))
        .collect();
    let names: Vec<String> = rows.iter().map(|r| r.summary.service.clone()).collect();
    let since = now.sub(Duration::from_secs(86_400));
    let mut trends = crate::api::read_history(&state, move |store| {
        names
            .iter()
            .map(|name| Ok(trend(&store.sli_minutes(name, since, now, 1440)?, since)))
            .collect::<Result<Vec<Vec<Option<f64>>>, _>>()
    })
    .await?
    .into_iter();
    for r in &mut rows {
        r.budget_left = budgets.get(&r.summary.service).copied().flatten();
        r.coherence_24h = trends.next().unwrap_or_default();
    }
    let page = web::Executive {
        totals,
        services: rows,
        next: more.then(|| format!("/ui/?page={}", at + 1)),
    };
    Ok(html(page.render()))
}

fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// Coherence in [`SPARK_POINTS`] even steps from `since`, the last minute of
/// each step; only the minutes used are parsed.
fn trend(minutes: &[coherd_store::SliMinute], since: Time) -> Vec<Option<f64>> {
    let step = 86_400 / SPARK_POINTS as i64;
    let mut points = vec![None; SPARK_POINTS];
    let mut last_slot = usize::MAX;
    for m in minutes.iter().rev() {
        let slot = ((m.minute.as_nanos() - since.as_nanos()) / 1_000_000_000 / step)
            .clamp(0, SPARK_POINTS as i64 - 1) as usize;
        if slot == last_slot || points[slot].is_some() {
            continue;
        }
        last_slot = slot;
        let v: serde_json::Value = serde_json::from_str(&m.record).unwrap_or_default();
        points[slot] = v["coherence"].as_f64();
    }
    points
}

/// `GET /ui/oncall`.
pub(crate) async fn oncall(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    allow(&state, &headers)?;
    let now = wall_now();
    let (divergences, open_total) = {
        let mut engine = state.shared.engine();
        engine.refresh_open_subjects();
        crate::api::most_severe_open(&engine, None, ONCALL_DIVERGENCES)
    };
    let alerts: Vec<web::AlertRow> = {
        let mut alerting = state.alerts.lock();
        let router = alerting.router();
        router
            .alerts_after(None)
            .filter(|a| a.ends_at.is_none())
            .take(ONCALL_ALERTS)
            .map(|a| web::AlertRow {
                name: a.labels.get("alertname").cloned().unwrap_or_default(),
                severity: a.labels.get("severity").cloned().unwrap_or_default(),
                service: a.labels.get("service").cloned(),
                summary: a.annotations.get("summary").cloned().unwrap_or_default(),
                starts_at: a.starts_at,
                silenced: router.silenced(now, &a.labels),
                inhibited: router.inhibited(&a.labels),
            })
            .collect()
    };
    let c = state.reconcile.clone();
    let work = tokio::task::spawn_blocking(move || c.work())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let page = web::Oncall {
        now,
        divergences,
        open_total,
        alerts,
        reconcile: work.is_some(),
        remediations: work.as_ref().map(|w| w.0.clone()).unwrap_or_default(),
        quarantined: work.map(|w| w.1).unwrap_or_default(),
    };
    Ok(html(page.render()))
}

/// Query of a service page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersQuery {
    after: Option<String>,
}

/// `GET /ui/services/{service}`.
pub(crate) async fn service(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<Response, UiError> {
    allow(&state, &headers)?;
    if let Some(a) = &q.after {
        coherd_model::names::member(a).map_err(|_| page::bad_cursor())?;
    }
    let now = wall_now();
    let mut page = {
        let mut engine = state.shared.engine();
        engine.refresh_open_subjects();
        let Some(summary) = engine.services().into_iter().find(|s| s.service == service) else {
            return Err(ApiError::NotFound(format!("unknown service {service:?}")).into());
        };
        let members = engine
            .members_page(&service, None, q.after.as_deref(), MEMBERS_PER_PAGE)
            .unwrap_or_else(|| coherd_engine::MembersPage {
                total: 0,
                members: Vec::new(),
                more: false,
            });
        let (open, _) = crate::api::most_severe_open(&engine, Some(&service), 100);
        let next = members
            .more
            .then(|| {
                members.members.last().map(|m| {
                    format!(
                        "{}?after={}",
                        web::service_href(&service),
                        web::segment(&m.member)
                    )
                })
            })
            .flatten();
        web::ServicePage {
            now,
            phase_mismatch: engine
                .service_slis(&service)
                .and_then(|s| s.phase_mismatch_rate),
            facets: engine.facet_distributions(&service).unwrap_or_default(),
            members_total: members.total,
            members: members.members,
            next,
            convergence: Vec::new(),
            open,
            leases: engine.leases(&service).unwrap_or_default(),
            jobs: engine.job_stats(&service),
            summary,
        }
    };
    // Convergence since each targeted facet's last change (at most a day back).
    let changes: Vec<(String, Time)> = page
        .facets
        .iter()
        .filter_map(|(f, d)| {
            Some((
                f.clone(),
                d.target_since?.max(now.sub(Duration::from_secs(86_400))),
            ))
        })
        .collect();
    if let Some(since) = changes.iter().map(|c| c.1).min() {
        let name = service.clone();
        let minutes = crate::api::read_history(&state, move |store| {
            store.sli_minutes(&name, since, now, 1440)
        })
        .await?;
        let parsed: Vec<(Time, serde_json::Value)> = minutes
            .iter()
            .map(|m| {
                (
                    m.minute,
                    serde_json::from_str(&m.record).unwrap_or_default(),
                )
            })
            .collect();
        page.convergence = changes
            .into_iter()
            .map(|(facet, from)| web::Curve {
                points: parsed
                    .iter()
                    .filter(|(t, _)| *t >= from)
                    .filter_map(|(t, v)| {
                        Some((
                            t.seconds_since(from) / 60.0,
                            v["at_target"][&facet].as_f64()?,
                        ))
                    })
                    .collect(),
                facet,
                since: from,
            })
            .filter(|c| !c.points.is_empty())
            .collect();
    }
    Ok(html(page.render()))
}

/// `GET /ui/services/{service}/members/{member}`.
pub(crate) async fn member(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((service, member)): Path<(String, String)>,
) -> Result<Response, UiError> {
    allow(&state, &headers)?;
    let now = wall_now();
    let (view, open) = crate::api::member_now(&mut state.shared.engine(), &service, &member)?;
    let query = coherd_store::TimelineQuery {
        service: service.clone(),
        member: member.clone(),
        since: now.sub(Duration::from_secs(7 * 86_400)),
        until: now.add(Duration::from_secs(1)),
        after: None,
        limit: 1000,
    };
    let episodes_query = coherd_store::EpisodeQuery {
        since: query.since,
        until: query.until,
        service: Some(service.clone()),
        kind: None,
        open: None,
        after: None,
        limit: 10_000,
    };
    let (events, episodes) = crate::api::read_history(&state, move |store| {
        Ok((
            store.member_events(&query)?,
            store.episodes(&episodes_query)?,
        ))
    })
    .await?;
    // The member's divergence episodes: their openings and resolutions, beside its own events.
    let mut timeline: Vec<(Time, String, serde_json::Value)> = events
        .into_iter()
        .map(|e| {
            (
                e.at,
                e.what,
                serde_json::from_str(&e.record).unwrap_or_default(),
            )
        })
        .collect();
    for e in episodes.iter().filter(|e| e.id.contains(member.as_str())) {
        let record: serde_json::Value = serde_json::from_str(&e.record).unwrap_or_default();
        let about = record["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|m| m == member.as_str()));
        if !about {
            continue;
        }
        let brief = serde_json::json!({"id": e.id, "severity": record["severity"], "evidence": record["evidence"]});
        timeline.push((e.opened_at, format!("opened {}", e.kind), brief.clone()));
        if let Some(at) = e.resolved_at {
            timeline.push((
                at,
                format!("resolved {}", e.kind),
                serde_json::json!({"id": e.id}),
            ));
        }
    }
    timeline.sort_by_key(|e| std::cmp::Reverse(e.0));
    timeline.truncate(300);
    let page = web::MemberPage {
        now,
        service,
        member: view,
        open,
        timeline,
    };
    Ok(html(page.render()))
}
