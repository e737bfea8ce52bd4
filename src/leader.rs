//! Leader election on a coordination.k8s.io Lease: with several replicas, only the
//! holder polls Graph and writes status. kube-rs has none built in; kube-lease-manager
//! renews the Lease with server-side apply, so two holders cannot both win.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct LeaderSettings {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// A holder that stops renewing loses the Lease after this long.
    pub lease_duration: Duration,
    /// The holder renews this long before its Lease would expire.
    pub renew_before: Duration,
}

/// Held leadership. Dropping it (or `release`) gives the Lease up.
pub struct Leadership {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Waits until this replica holds the Lease.
pub async fn acquire(client: kube::Client, settings: &LeaderSettings) -> anyhow::Result<Leadership> {
    let params = LeaseParams::new(
        settings.identity.clone(),
        settings.lease_duration.as_secs().max(2),
        settings.renew_before.as_secs().clamp(1, settings.lease_duration.as_secs().max(2) - 1),
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    info!(lease = %format!("{}/{}", settings.namespace, settings.lease_name), identity = %settings.identity, "waiting for leadership");
    loop {
        let manager = LeaseManager::new(
            client.clone(),
            settings.lease_name.clone(),
            settings.namespace.clone(),
            params.clone(),
            Default::default(),
        )
        .await?;
        let (mut is_leader, task) = manager.watch().await;
        // A follower's LeaseManager sleeps until the holder's lease would run out: a Lease
        // released on a clean shutdown is only noticed by watching it.
        let won = tokio::select! {
            won = is_leader.wait_for(|leader| *leader) => Some(won.map(|_| ())),
            () = released(&leases, &settings.lease_name) => None,
        };
        match won {
            Some(won) => {
                won?;
                info!(identity = %settings.identity, "acquired the lease; now the leader");
                return Ok(Leadership { is_leader, task });
            }
            None => {
                drop(is_leader);
                let _ = task.await;
                info!("the lease was released; trying to take it now");
            }
        }
    }
}

/// Resolves when the Lease, having had a holder, has none (it was released).
async fn released(leases: &Api<Lease>, name: &str) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(leases.clone(), config).default_backoff().applied_objects());
    let mut was_held = false;
    while let Some(event) = stream.next().await {
        let Ok(lease) = event else { continue };
        match lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()) {
            Some(_) => was_held = true,
            None if was_held => return,
            None => {}
        }
    }
    std::future::pending().await
}

impl Leadership {
    /// Resolves when the Lease is lost (another replica took it, or renewing failed).
    pub async fn lost(&mut self) {
        let _ = self.is_leader.wait_for(|leader| !*leader).await;
        warn!("lost the lease");
    }

    /// Gives the Lease up so a follower takes over at once, not after it expires.
    pub async fn release(self) {
        drop(self.is_leader);
        match self.task.await {
            Ok(Ok(_)) => info!("released the lease"),
            Ok(Err(e)) => warn!(error = %e, "releasing the lease failed; it expires on its own"),
            Err(e) => warn!(error = %e, "the lease task failed"),
        }
    }
}
