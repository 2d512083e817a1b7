//! Accepting connections with bounds a hostile network cannot push past: a
//! cap on connections in total and per peer address, a deadline for every
//! request head (which also closes idle keep-alive connections and
//! header-dribbling "slowloris" clients), a back-off when the process runs
//! out of file descriptors, and a graceful shutdown that gives up after a
//! deadline instead of waiting on slow clients forever. With TLS, the
//! handshake must finish within the same deadline as a request head.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::tls::Tls;

/// How the listener bounds its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once, in total.
    pub max: usize,
    /// Connections open at once from one peer address.
    pub per_peer: usize,
    /// Time to send a whole request head, counted from when the connection
    /// waits for one (so also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
}

/// Open connections per peer address; an entry leaves with its last connection.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

impl Peers {
    fn enter(&self, ip: IpAddr, cap: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Refuses a connection over a cap with a short 503 (best effort, never waits).
fn refuse(stream: TcpStream, why: &str) {
    let body = format!("{{\"errors\":[{{\"message\":\"{why}; retry later\"}}]}}");
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

/// Serves `router` on `listener` until `stop` turns true, then lets requests
/// in flight finish for at most `limits.drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max));
    let peers = Arc::new(Peers::default());
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // Out of file descriptors (or a reset before accept): wait a
                // little instead of spinning, longer each time it repeats.
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream, "too many connections");
            continue;
        };
        let ip = addr.ip();
        if !peers.enter(ip, limits.per_peer) {
            refuse(stream, "too many connections from this address");
            continue;
        }
        let _ = stream.set_nodelay(true);
        // Every request carries the peer address (for fair ingest), put on
        // as it arrives rather than by layering the router per connection.
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(crate::fairness::PeerAddr(ip));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let peers = peers.clone();
        let stop = stop.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(stream, service, limits, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => serve_connection(tls, service, limits, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, %ip, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%ip, "TLS handshake timed out"),
                    }
                }
            }
            peers.leave(ip);
            drop(slot);
        });
    }
    // Wait for the connections to finish (each gives up after `drain`).
    let all = u32::try_from(limits.max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        limits.drain + Duration::from_millis(500),
        slots.acquire_many(all),
    )
    .await;
}

/// Serves one connection until it ends, or until shutdown and the drain.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.drain, conn.as_mut()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::fairness::PeerAddr;

    #[tokio::test]
    async fn every_request_knows_its_peer_address() {
        let router =
            Router::new().route(
                "/peer",
                get(
                    |axum::Extension(PeerAddr(ip)): axum::Extension<PeerAddr>| async move {
                        ip.to_string()
                    },
                ),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let limits = ConnectionLimits {
            max: 8,
            per_peer: 8,
            header_read_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(1),
        };
        let server = tokio::spawn(serve(listener, router, limits, None, stop));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 7], 0)))
            .unwrap();
        let mut c = socket.connect(addr).await.unwrap();
        c.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).await.unwrap();
        assert!(reply.ends_with("127.0.0.7"), "{reply}");
        stop_tx.send(true).unwrap();
        server.await.unwrap();
    }
}
