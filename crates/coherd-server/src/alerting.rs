//! Alerting in the service: the sans-IO [`Alerting`] fed from the engine,
//! notifiers that deliver its notifications, and the silences and alerts API.
//!
//! The engine's divergence changes reach alerting through a queue as they
//! happen; a task wakes every second to hand them over, with SLI samples every
//! ten seconds, fires what is due, and queues notifications. Each receiver has its own queue and task
//! ([`crate::delivery`]), so a receiver that is down never blocks ingest,
//! detection or the other receivers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use coherd_alert::{AlertConfig, Alerting, Matcher, Notification, Silence};
use coherd_engine::Severity;
use coherd_model::Time;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::AppState;
use crate::auth::Scope;
use crate::error::{ApiError, Path, Query};
use crate::page;
use coherd_model::time::wall_now;

use crate::delivery::{DeliveryMetrics, Receiver};
use crate::pipeline::Shared;

/// Where notifications go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Webhooks that receive the Alertmanager webhook payload (version 4).
    pub webhooks: Vec<String>,
    /// Alertmanager base URLs; alerts go to `/api/v2/alerts`.
    pub alertmanagers: Vec<String>,
    /// The URL put in `externalURL` and `generatorURL`.
    pub external_url: Option<String>,
}

/// Alerting state shared by the task and the API.
pub(crate) struct AlertState {
    alerting: Mutex<Alerting>,
    /// Where silences are kept across restarts.
    silences_file: Option<std::path::PathBuf>,
    queue: Mutex<VecDeque<Notification>>,
    wake: Notify,
    /// Notifications dropped because receivers were too slow.
    pub dropped: std::sync::atomic::AtomicU64,
}

impl AlertState {
    /// Alerting with `config`; silences are kept in `silences_file` and loaded from it.
    pub(crate) fn new(
        config: AlertConfig,
        silences_file: Option<std::path::PathBuf>,
    ) -> Arc<AlertState> {
        let mut alerting = Alerting::new(config);
        if let Some(path) = &silences_file
            && let Ok(text) = std::fs::read_to_string(path)
        {
            match serde_json::from_str::<Vec<StoredSilence>>(&text) {
                Ok(list) => {
                    for s in list {
                        let matchers = s
                            .matchers
                            .iter()
                            .filter_map(|m| Matcher::parse(m).ok())
                            .collect();
                        let silence = Silence {
                            id: s.id,
                            matchers,
                            starts_at: s.starts_at,
                            ends_at: s.ends_at,
                            comment: s.comment,
                            created_by: s.created_by,
                        };
                        alerting.router().add_silence(s.starts_at, silence);
                    }
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot read the saved silences; starting without them")
                }
            }
        }
        Arc::new(AlertState {
            alerting: Mutex::new(alerting),
            silences_file,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            dropped: Default::default(),
        })
    }

    /// The alerting core, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Alerting> {
        self.alerting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the silences to their file (atomically: a temporary file, then a rename).
    fn save_silences(&self, alerting: &mut Alerting) {
        let Some(path) = &self.silences_file else {
            return;
        };
        let list: Vec<StoredSilence> = alerting
            .router()
            .silences()
            .iter()
            .map(|s| StoredSilence {
                id: s.id.clone(),
                matchers: s.matchers.iter().map(|m| m.to_string()).collect(),
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                comment: s.comment.clone(),
                created_by: s.created_by.clone(),
            })
            .collect();
        let tmp = path.with_extension("tmp");
        let write = serde_json::to_vec_pretty(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = write {
            tracing::error!(path = %path.display(), error = %e, "cannot save silences");
        }
    }

    fn enqueue(&self, n: Notification) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= 1000 {
            q.pop_front();
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        q.push_back(n);
        drop(q);
        self.wake.notify_one();
    }
}

/// Feeds alerting until shutdown: each divergence change as the engine
/// raises it (cost per change, not per open divergence), every second the
/// deadlines, every ten seconds the SLIs. Only when the feed fell behind (or
/// at start) does it compare the open divergences with what it knows.
pub(crate) async fn run(
    shared: Arc<Shared>,
    alerts: Arc<AlertState>,
    reconcile: Arc<crate::reconcile::Control>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(feed) = shared
        .alert_feed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return;
    };
    let mut known: BTreeMap<String, (Time, Severity)> = BTreeMap::new();
    let mut last_sli = Time::EPOCH;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let now = wall_now();
        if shared
            .alerts_lost
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // Drop what is queued: the resync below covers it.
            while feed.try_recv().is_ok() {}
            resync(&shared, &alerts, &mut known, now);
        }
        // The changes since the last round, off the engine lock.
        let changes: Vec<coherd_engine::Divergence> =
            std::iter::from_fn(|| feed.try_recv().ok()).collect();
        let mut alerting = alerts.lock();
        for d in &changes {
            if d.is_open() {
                known.insert(d.id.clone(), (d.opened_at, d.severity));
            } else {
                known.remove(&d.id);
            }
            alerting.on_divergence(now, d);
        }
        drop(alerting);
        if now.as_nanos().saturating_sub(last_sli.as_nanos()) >= 10_000_000_000 {
            last_sli = now;
            // The SLIs are copied under the engine's lock; the rules run after.
            let slis: Vec<(String, coherd_engine::ServiceSlis)> =
                shared.engine().all_service_slis().into_iter().collect();
            let troubles = reconcile.troubles();
            let mut alerting = alerts.lock();
            let names: std::collections::BTreeSet<String> =
                slis.iter().map(|(name, _)| name.clone()).collect();
            for (service, s) in slis {
                let mut samples = coherd_alert::sli::samples(&s);
                let (halted, quarantined) = troubles.get(&service).copied().unwrap_or_default();
                samples.extend(coherd_alert::sli::reconcile_samples(halted, quarantined));
                alerting.on_sli(now, &service, &samples, s.members);
            }
            alerting.retain_sli_services(now, &names);
        }
        let mut alerting = alerts.lock();
        alerting.handle_timeout(now);
        let notes: Vec<Notification> =
            std::iter::from_fn(|| alerting.poll_notification()).collect();
        drop(alerting);
        for n in notes {
            alerts.enqueue(n);
        }
    }
}

/// Brings alerting in line with the engine's open divergences: new and
/// escalated ones, and the latest record of each that resolved meanwhile.
fn resync(
    shared: &Shared,
    alerts: &AlertState,
    known: &mut BTreeMap<String, (Time, Severity)>,
    now: Time,
) {
    // What changed is copied out under the engine lock, and fed to alerting
    // after it is released: ingest never waits on alert routing.
    let (open, changed) = {
        let engine = shared.engine();
        let mut open: BTreeMap<String, (Time, Severity)> = BTreeMap::new();
        let mut changed: Vec<coherd_engine::Divergence> = Vec::new();
        for d in engine.open_divergences() {
            open.insert(d.id.clone(), (d.opened_at, d.severity));
            if known.get(&d.id) != Some(&(d.opened_at, d.severity)) {
                changed.push(d.clone());
            }
        }
        if known.keys().any(|id| !open.contains_key(id)) {
            // One pass over the records finds the latest of each id that left.
            let mut latest: BTreeMap<&str, &coherd_engine::Divergence> = BTreeMap::new();
            for d in engine.divergences() {
                if known.contains_key(&d.id) && !open.contains_key(&d.id) {
                    latest.insert(&d.id, d);
                }
            }
            changed.extend(latest.into_values().cloned());
        }
        (open, changed)
    };
    let mut alerting = alerts.lock();
    for d in &changed {
        alerting.on_divergence(now, d);
    }
    *known = open;
}

/// Hands queued notifications to every configured receiver, each with its
/// own queue and task ([`crate::delivery`]): a receiver that is down delays
/// only itself.
pub(crate) async fn deliver(
    alerts: Arc<AlertState>,
    notify: NotifyConfig,
    metrics: DeliveryMetrics,
    stop: watch::Receiver<bool>,
) {
    if notify.webhooks.is_empty() && notify.alertmanagers.is_empty() {
        return;
    }
    // https:// receivers: ring's primitives, unless the process chose others.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the notifier's HTTP client; alerts will not be delivered");
            return;
        }
    };
    let receiver = |kind: &str, i: usize, url: String| {
        let r = Receiver::new(format!("{kind}-{i}"), url, metrics.clone());
        tokio::spawn(r.clone().run(client.clone(), stop.clone()));
        r
    };
    let webhooks: Vec<Arc<Receiver>> = notify
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, url)| receiver("webhook", i, url.clone()))
        .collect();
    let alertmanagers: Vec<Arc<Receiver>> = notify
        .alertmanagers
        .iter()
        .enumerate()
        .map(|(i, base)| {
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            receiver("alertmanager", i, url)
        })
        .collect();
    let external = notify.external_url.clone().unwrap_or_default();
    // Alertmanager resolves alerts it has not heard of for a while: keep firing ones fresh.
    let mut firing: BTreeMap<String, Value> = BTreeMap::new();
    let mut refresh = tokio::time::interval(Duration::from_secs(60));
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = alerts.wake.notified() => {}
            _ = refresh.tick() => {}
            _ = stop.changed() => return,
        }
        let batch: Vec<Notification> = alerts
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for n in &batch {
            let payload = n.webhook_payload(&external);
            for r in &webhooks {
                r.enqueue(payload.clone());
            }
            for a in payload["alerts"].as_array().into_iter().flatten() {
                let fp = a["fingerprint"].as_str().unwrap_or_default().to_string();
                let am = json!({"labels": a["labels"], "annotations": a["annotations"], "startsAt": a["startsAt"], "endsAt": a["endsAt"], "generatorURL": external});
                if a["status"] == "firing" {
                    firing.insert(fp, am);
                } else {
                    firing.remove(&fp);
                    for r in &alertmanagers {
                        r.enqueue(json!([am]));
                    }
                }
            }
        }
        if !firing.is_empty() {
            let list: Vec<Value> = firing.values().cloned().collect();
            for r in &alertmanagers {
                r.enqueue(json!(list));
            }
        }
    }
}

#[derive(serde::Serialize, Deserialize)]
struct StoredSilence {
    id: String,
    matchers: Vec<String>,
    starts_at: Time,
    ends_at: Time,
    comment: String,
    created_by: String,
}

/// Silences active at once.
const MAX_SILENCES: usize = 1000;
/// Matchers in one silence.
const MAX_MATCHERS: usize = 32;

/// Body of `POST /v1/silences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSilence {
    matchers: Vec<String>,
    #[serde(default)]
    starts_at: Option<Time>,
    #[serde(default)]
    ends_at: Option<Time>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    created_by: String,
}

/// `POST /v1/silences` (admin).
pub(crate) async fn post_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Admin)?;
    let bad = |m: String| ApiError::Request(StatusCode::UNPROCESSABLE_ENTITY, m);
    let bytes = crate::api::read_body(&state, body, 64 << 10, "silence").await?;
    let body: NewSilence = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::Request(
            StatusCode::BAD_REQUEST,
            format!("the silence is not valid: {e}"),
        )
    })?;
    if body.matchers.len() > MAX_MATCHERS {
        return Err(bad(format!("at most {MAX_MATCHERS} matchers per silence")));
    }
    let matchers = body
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if matchers.is_empty() {
        return Err(bad(
            "give at least one matcher, such as kind=split_brain".into()
        ));
    }
    let now = wall_now();
    let starts_at = body.starts_at.unwrap_or(now);
    let ends_at = match (body.ends_at, body.duration.as_deref()) {
        (Some(t), None) => t,
        (None, Some(d)) => starts_at.add(coherd_model::time::parse_duration(d).map_err(bad)?),
        _ => return Err(bad("give either ends_at or duration (such as 2h)".into())),
    };
    if ends_at <= starts_at {
        return Err(bad("ends_at must be after starts_at".into()));
    }
    let silence = Silence {
        id: String::new(),
        matchers,
        starts_at,
        ends_at,
        comment: body.comment,
        created_by: body.created_by,
    };
    let mut alerting = state.alerts.lock();
    let active = alerting
        .router()
        .silences()
        .iter()
        .filter(|s| s.ends_at > now)
        .count();
    if active >= MAX_SILENCES {
        return Err(ApiError::Request(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{active} silences are active, the most coherd keeps; expire some first"),
        ));
    }
    let id = alerting.router().add_silence(now, silence);
    state.alerts.save_silences(&mut alerting);
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

/// `GET /v1/silences`.
pub(crate) async fn get_silences(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Read)?;
    let now = wall_now();
    let mut alerting = state.alerts.lock();
    let list: Vec<Value> = alerting
        .router()
        .silences()
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["state"] = json!(if s.active(now) {
                "active"
            } else if s.ends_at <= now {
                "expired"
            } else {
                "pending"
            });
            v
        })
        .collect();
    Ok(Json(list).into_response())
}

/// `DELETE /v1/silences/{id}` (admin): expires it now.
pub(crate) async fn delete_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Admin)?;
    let mut alerting = state.alerts.lock();
    if alerting.router().expire_silence(wall_now(), &id) {
        state.alerts.save_silences(&mut alerting);
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "no silence {id:?}; GET /v1/silences lists them"
        )))
    }
}

/// `GET /v1/alerts`: alerts known now, with whether they are silenced or inhibited.
pub(crate) async fn get_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<AlertsQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Read)?;
    let limit = page::limit(q.limit)?;
    if let Some(c) = &q.cursor
        && (c.len() != 16 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(page::bad_cursor());
    }
    let now = wall_now();
    // A page is copied out under the lock and written after it is released.
    let list: Vec<Value> = {
        let mut alerting = state.alerts.lock();
        let router = alerting.router();
        router
            .alerts_after(q.cursor.as_deref())
            .take(limit + 1)
            .map(|a| {
                json!({
                    "labels": a.labels, "annotations": a.annotations, "starts_at": a.starts_at, "ends_at": a.ends_at,
                    "fingerprint": a.fingerprint(), "silenced": router.silenced(now, &a.labels), "inhibited": router.inhibited(&a.labels),
                })
            })
            .collect()
    };
    Ok(page::respond(&uri, list, limit, |a| {
        a["fingerprint"].as_str().unwrap_or_default().to_string()
    }))
}

/// Query of `GET /v1/alerts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsQuery {
    limit: Option<u16>,
    cursor: Option<String>,
}

/// `GET /v1/slos`: error budget and burn rates per SLO and service.
pub(crate) async fn get_slos(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.tokens.check(&headers, Scope::Read)?;
    let list: Vec<Value> = state
        .alerts
        .lock()
        .slo_status(wall_now())
        .into_iter()
        .map(|(service, s)| json!({"service": service, "status": s}))
        .collect();
    Ok(Json(list).into_response())
}
