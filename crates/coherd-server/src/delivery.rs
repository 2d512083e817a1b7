//! Delivering notifications to receivers (webhooks, Alertmanagers). Each
//! receiver has its own bounded queue and task, so a receiver that is down
//! holds back only its own deliveries. An attempt has a timeout; a failed one
//! is retried after a decorrelated-jitter backoff (the dephasing crate's), a
//! 4xx other than 408 and 429 is not retried (the receiver refuses the body),
//! and nothing waits after the last attempt. When a receiver's queue is full
//! the oldest body is dropped: a newer notification supersedes it.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coherd_dephase::{Backoff, Jitter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use tokio::sync::{Notify, watch};

/// Bodies waiting per receiver.
const QUEUE: usize = 256;
/// Tries per body.
const ATTEMPTS: u32 = 5;
/// Time allowed for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Per receiver: `receiver` (webhook-0, alertmanager-1, ...), never its URL,
/// which may hold a secret.
pub(crate) type ReceiverLabels = Vec<(&'static str, String)>;

/// Delivery metrics, by receiver.
#[derive(Clone, Default)]
pub(crate) struct DeliveryMetrics {
    pub attempts: Family<ReceiverLabels, Counter>,
    pub failures: Family<ReceiverLabels, Counter>,
    pub dropped: Family<ReceiverLabels, Counter>,
    pub queued: Family<ReceiverLabels, Gauge>,
    pub oldest: Family<ReceiverLabels, Gauge<f64, AtomicU64>>,
}

/// One receiver: its queue and what its task reads.
pub(crate) struct Receiver {
    labels: ReceiverLabels,
    url: String,
    queue: Mutex<VecDeque<(Instant, Value)>>,
    wake: Notify,
    metrics: DeliveryMetrics,
}

impl Receiver {
    /// A receiver named `name` at `url`.
    pub(crate) fn new(name: String, url: String, metrics: DeliveryMetrics) -> Arc<Receiver> {
        Arc::new(Receiver {
            labels: vec![("receiver", name)],
            url,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            metrics,
        })
    }

    /// Queues a body; never waits.
    pub(crate) fn enqueue(&self, body: Value) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= QUEUE {
            q.pop_front();
            self.metrics.dropped.get_or_create(&self.labels).inc();
        }
        q.push_back((Instant::now(), body));
        self.gauges(&q);
        drop(q);
        self.wake.notify_one();
    }

    fn gauges(&self, q: &VecDeque<(Instant, Value)>) {
        self.metrics
            .queued
            .get_or_create(&self.labels)
            .set(q.len() as i64);
        let age = q.front().map_or(0.0, |(t, _)| t.elapsed().as_secs_f64());
        self.metrics.oldest.get_or_create(&self.labels).set(age);
    }

    /// Delivers queued bodies, one at a time, until `stop`.
    pub(crate) async fn run(
        self: Arc<Self>,
        client: reqwest::Client,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let next = {
                let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                self.gauges(&q);
                q.front().map(|(_, body)| body.clone())
            };
            let Some(body) = next else {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.changed() => return,
                }
            };
            tokio::select! {
                _ = self.deliver(&client, &body) => {}
                _ = stop.changed() => return,
            }
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            // The body sent is still first unless the queue overflowed meanwhile.
            if q.front().is_some_and(|(_, b)| *b == body) {
                q.pop_front();
            }
            self.gauges(&q);
        }
    }

    /// Tries one body until it is taken, refused, or the attempts run out.
    async fn deliver(&self, client: &reqwest::Client, body: &Value) {
        let policy = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
            Jitter::Decorrelated,
        )
        .expect("base below cap")
        .with_max_retries(ATTEMPTS - 1);
        let mut retries = policy.retries();
        for attempt in 1..=ATTEMPTS {
            self.metrics.attempts.get_or_create(&self.labels).inc();
            let retry = match post(client, &self.url, &[], body, ATTEMPT_TIMEOUT).await {
                Attempt::Delivered => return,
                Attempt::Refused(status) => {
                    tracing::warn!(receiver = %self.labels[0].1, %status, attempt, "a receiver refused a notification");
                    false
                }
                Attempt::Failed(why) => {
                    tracing::warn!(receiver = %self.labels[0].1, error = %why, attempt, "cannot deliver to a receiver");
                    true
                }
            };
            let delay = retries.next_delay(&mut || fastrand::f64());
            match delay {
                Some(d) if retry && attempt < ATTEMPTS => tokio::time::sleep(d).await,
                _ => break,
            }
        }
        self.metrics.failures.get_or_create(&self.labels).inc();
    }
}

/// How one attempt to post a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A 2xx answer.
    Delivered,
    /// A 4xx other than 408 and 429: the receiver refuses the body; trying
    /// again would not help.
    Refused(reqwest::StatusCode),
    /// No answer in time, no connection, a 5xx, 408 or 429: worth another try.
    Failed(String),
}

/// One `POST` of `body` as JSON to `url` with `headers`, within `timeout`:
/// the one place notifications and reconcile webhooks are sent and judged.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: &Value,
    timeout: Duration,
) -> Attempt {
    let mut request = client.post(url).timeout(timeout).json(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Attempt::Delivered,
        Ok(r) => {
            let status = r.status();
            if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Attempt::Refused(status)
            } else {
                Attempt::Failed(format!("answered {status}"))
            }
        }
        Err(e) if e.is_timeout() => Attempt::Failed(format!(
            "no answer within {}",
            coherd_model::time::format_duration(timeout)
        )),
        Err(e) => {
            // reqwest's own message is "error sending request"; the cause is in its sources.
            let mut why = String::from("cannot be reached");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("cannot be reached: {s}");
                source = s.source();
            }
            Attempt::Failed(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};

    use super::*;

    /// A receiver on loopback answering each request with the next status.
    fn answering(statuses: Vec<u16>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (stream, status) in listener.incoming().flatten().zip(statuses) {
                let mut reader = BufReader::new(stream);
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let _ = write!(
                    reader.get_mut(),
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        url
    }

    fn count(f: &Family<ReceiverLabels, Counter>, r: &Receiver) -> u64 {
        f.get_or_create(&r.labels).get()
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_a_throttle_is() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let metrics = DeliveryMetrics::default();
        let refused = Receiver::new(
            "webhook-0".into(),
            answering(vec![400, 200]),
            metrics.clone(),
        );
        refused.deliver(&client, &serde_json::json!({"a": 1})).await;
        assert_eq!(count(&metrics.attempts, &refused), 1, "400 is final");
        assert_eq!(count(&metrics.failures, &refused), 1);

        let throttled = Receiver::new(
            "webhook-1".into(),
            answering(vec![429, 503, 200]),
            metrics.clone(),
        );
        throttled
            .deliver(&client, &serde_json::json!({"a": 1}))
            .await;
        assert_eq!(
            count(&metrics.attempts, &throttled),
            3,
            "429 and 5xx are retried"
        );
        assert_eq!(count(&metrics.failures, &throttled), 0);
    }
}
