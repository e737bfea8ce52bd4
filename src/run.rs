//! `pwreset-operator run`: wires the parts together and runs until SIGTERM (or until a
//! lost leader Lease).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tracing::{error, info};

use crate::cli::RunArgs;
use crate::context::{Context, Settings};
use crate::controller;
use crate::credentials::Credentials;
use crate::decide::Policy;
use crate::duration;
use crate::endpoints::{auth_settings, graph_url, login_url};
use crate::graph::limiter::{Limits, TenantLimiter};
use crate::graph::{Graph, GraphClient};
use crate::leader::{self, LeaderSettings};
use crate::metrics::Metrics;
use crate::outbound::{self, ClientSettings};
use crate::server::{self, Health};
use crate::shard::Shard;

/// How long in-flight reconciles may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shard = Shard::new(args.shard, args.total_shards).map_err(anyhow::Error::msg)?;
    let graph_url = graph_url(&args)?;
    let kube = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::default());
    // One client (one TLS configuration, one pool) for Graph and the token endpoint.
    let http = outbound::client(&ClientSettings {
        timeout: args.graph_timeout,
        extra_ca_file: args.extra_ca_file.as_deref(),
    })?;
    let client = GraphClient::new(http.clone(), graph_url.clone(), metrics.clone());
    let login_url = login_url(&args)?;
    let auth = auth_settings(&args, login_url.clone());
    let workload_identity = auth.workload_identity.is_some();
    let credentials = Credentials::new(kube.clone(), http.clone(), auth, metrics.clone());
    let limiter = TenantLimiter::new(Limits { rate: args.tenant_rate, burst: args.tenant_burst }, metrics.clone());
    let graph = Graph::new(client, credentials, limiter, metrics.clone());
    let settings = Settings {
        default_credentials_secret: args.default_credentials_secret.clone(),
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        namespace: args.namespace.clone(),
        cache_idle: args.cache_idle,
    };
    let policy = Policy {
        graph_root: graph_url.clone(),
        poll_interval: args.poll_interval,
        not_found_grace: args.not_found_grace,
    };
    info!(
        graph = %graph_url,
        login = %login_url,
        workload_identity = workload_identity,
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        poll_interval = %duration::human(args.poll_interval),
        shard = args.shard,
        total_shards = args.total_shards,
        "starting pwreset-operator {}",
        env!("CARGO_PKG_VERSION")
    );
    let ctx = Arc::new(Context::new(kube.clone(), graph, metrics.clone(), settings, policy));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested; finishing in-flight work");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let health = Health::new(metrics);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding --metrics-addr {}", args.metrics_addr))?;
    let server = tokio::spawn(server::serve(listener, health.clone(), stopped(stop_rx.clone())));
    let mut leadership = None;
    if args.leader_elect {
        // A follower is ready: it is there to take over.
        health.set_ready(true);
        let settings = LeaderSettings {
            namespace: args
                .leader_election_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .context("--leader-elect needs --leader-election-namespace or POD_NAMESPACE")?,
            lease_name: args.leader_election_lease_name.clone(),
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("pwreset-operator-{}", uuid::Uuid::new_v4().simple())),
            lease_duration: args.leader_election_lease_duration,
            renew_before: args.leader_election_lease_duration / 3,
        };
        tokio::select! {
            acquired = leader::acquire(kube.clone(), &settings) => leadership = Some(acquired?),
            () = stopped(stop_rx.clone()) => {
                info!("stopped before becoming the leader");
                server.abort();
                return Ok(());
            }
        }
        health.set_ready(false);
    }

    // This replica does the work from here on (it holds the Lease, or there is none).
    health.metrics.set_leader(true);
    let ready = health.clone();
    // One writer per PasswordReset: two processes could each write the password Secret before
    // one of them wins the conditional Sending write. Shards split PasswordResetOperations
    // only; PasswordResets all go to shard 0 (and leader election leaves one active replica).
    let reset_writer = args.enable_password_reset && args.shard == 0;
    if args.enable_password_reset && !reset_writer {
        info!("--enable-password-reset: PasswordResets are handled by shard 0, not this shard");
    }
    if !reset_writer {
        // The family exists everywhere, so dashboards and alerts see zero, not nothing.
        ctx.metrics.add_source(Box::new(|| crate::reconcile_reset::gauges(None)));
    }
    let resets = reset_writer.then(|| crate::reconcile_reset::run(ctx.clone(), stopped(stop_rx.clone())));
    if resets.is_some() {
        info!("the PasswordReset controller is enabled: it calls resetPassword");
    }
    let trackers = controller::run(ctx, stopped(stop_rx.clone()), shard, move || {
        info!("cache synced; ready");
        ready.set_ready(true);
    });
    let controller = async move {
        match resets {
            Some(resets) => drop(tokio::join!(trackers, resets)),
            None => trackers.await,
        }
    };
    let lost = async {
        match leadership.as_mut() {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = controller => {}
        () = lost => {
            // Another replica may already be polling: stop at once, without finishing
            // in-flight work; the pod restarts as a follower.
            server.abort();
            bail!("lost the leader lease; stopping at once");
        }
        () = async {
            stopped(stop_rx.clone()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            error!("in-flight reconciles did not finish within {}s; exiting", SHUTDOWN_GRACE.as_secs());
        }
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    server.abort();
    if !*stop_rx.borrow() {
        bail!("the controller stopped unexpectedly");
    }
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
