//! The Kubernetes source in the service: the `coherd-kube` watchers, their
//! reports stored through the writer like any other.

use coherd_model::Limits;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::pipeline::Writer;
use crate::prometheus_source::{KubeSource, store};

/// Batches of reports waiting to be stored; past this a batch is dropped
/// (the next change of the same object reports it whole again).
const QUEUE: usize = 1024;

/// Watches the cluster until `stop`.
pub(crate) async fn run(
    source: KubeSource,
    writer: Writer,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match &source.url {
        Some(url) => match url.parse() {
            Ok(uri) => kube::Client::try_from(kube::Config::new(uri)).map_err(|e| e.to_string()),
            Err(e) => Err(format!("url {url:?}: {e}")),
        },
        None => kube::Client::try_default().await.map_err(|e| e.to_string()),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the Kubernetes API; the Kubernetes source does not run");
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<Vec<Value>>(QUEUE);
    let scope = coherd_kube::Scope {
        namespace: source.namespace.clone(),
        label_selector: source.label_selector.clone(),
    };
    let watching = coherd_kube::run(client, scope, source.mapping.clone(), move |batch| {
        if tx.try_send(batch).is_err() {
            tracing::warn!(
                "Kubernetes reports arrive faster than they are stored; a batch was dropped"
            );
        }
    });
    let storing = async {
        while let Some(batch) = rx.recv().await {
            if let Err(e) = store(&writer, "kubernetes", batch, &limits).await {
                tracing::warn!(error = %e, "Kubernetes reports were not stored");
            }
        }
    };
    tracing::info!("watching Kubernetes");
    tokio::select! {
        _ = watching => {}
        _ = storing => {}
        _ = stop.changed() => {}
    }
}
