//! The `pwreset-operator` command line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing::{error, info};
use url::Url;

use pwreset_operator::controller::{self, Context, Settings};
use pwreset_operator::graph::auth::{AuthSettings, Credentials, WorkloadIdentity};
use pwreset_operator::graph::limiter::{Limits, TenantLimiter};
use pwreset_operator::graph::{Cloud, GraphClient};
use pwreset_operator::leader::{self, LeaderSettings};
use pwreset_operator::metrics::Metrics;
use pwreset_operator::server::{self, Health};
use pwreset_operator::shard::Shard;
use pwreset_operator::telemetry::{self, LogFormat};
use pwreset_operator::{api, duration, install_crypto_provider};

/// How long in-flight reconciles may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Parser, Debug)]
#[command(
    name = "pwreset-operator",
    version,
    about = "Mirrors Microsoft Entra ID password-reset operations into PasswordResetOperation resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator (uses the kubeconfig or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// National cloud: sets the Graph root and the token authority together.
    #[arg(long, env = "PWRESET_CLOUD", value_enum, default_value_t = Cloud::Global)]
    cloud: Cloud,

    /// Graph root URL, overriding the cloud's (e.g. a Graph emulator: http://127.0.0.1:8080).
    #[arg(long, env = "PWRESET_GRAPH_URL")]
    graph_url: Option<Url>,

    /// Token authority URL, overriding the cloud's (e.g. a Graph emulator).
    #[arg(long, env = "PWRESET_LOGIN_URL")]
    login_url: Option<Url>,

    /// The only directory a Secret's federatedTokenFile may point into.
    #[arg(long, env = "PWRESET_FEDERATED_TOKEN_DIR", default_value = "/var/run/secrets/azure/tokens")]
    federated_token_dir: std::path::PathBuf,

    /// Graph requests per second allowed per tenant (shared by all its resources); lowered
    /// automatically while Graph throttles, then slowly raised back.
    #[arg(long, env = "PWRESET_TENANT_RATE", default_value_t = 50.0, value_parser = positive_f64)]
    tenant_rate: f64,

    /// Graph requests a tenant may send at once after a quiet period.
    #[arg(long, env = "PWRESET_TENANT_BURST", default_value_t = 100.0, value_parser = positive_f64)]
    tenant_burst: f64,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "PWRESET_NAMESPACE")]
    namespace: Option<String>,

    /// Secret name used by resources that set no spec.credentialsSecretRef (read from the
    /// resource's own namespace).
    #[arg(long, env = "PWRESET_DEFAULT_CREDENTIALS_SECRET")]
    default_credentials_secret: Option<String>,

    /// Default poll interval while an operation runs (spec.pollInterval overrides it).
    #[arg(long, env = "PWRESET_POLL_INTERVAL", default_value = "15s", value_parser = duration::parse)]
    poll_interval: Duration,

    /// How long Graph may answer 404 for an operation before it counts as not found.
    #[arg(long, env = "PWRESET_NOT_FOUND_GRACE", default_value = "2m", value_parser = duration::parse)]
    not_found_grace: Duration,

    /// Resources reconciled at the same time.
    #[arg(long, env = "PWRESET_MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,

    /// Timeout of one Graph request.
    #[arg(long, env = "PWRESET_GRAPH_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    graph_timeout: Duration,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "PWRESET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "PWRESET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Elect a leader among replicas with a coordination.k8s.io Lease; only the leader works.
    #[arg(long, env = "PWRESET_LEADER_ELECT")]
    leader_elect: bool,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE).
    #[arg(long, env = "PWRESET_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, env = "PWRESET_LEADER_ELECTION_LEASE_NAME", default_value = "pwreset-operator")]
    leader_election_lease_name: String,

    /// How long a Lease stays valid without renewal; a follower takes over after it.
    #[arg(long, env = "PWRESET_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = duration::parse)]
    leader_election_lease_duration: Duration,

    /// This replica's shard (0-based) when sharding with --total-shards.
    #[arg(long, env = "PWRESET_SHARD", default_value_t = 0)]
    shard: u32,

    /// Number of shards; each replica owns the resources whose UID hashes to its shard.
    #[arg(long, env = "PWRESET_TOTAL_SHARDS", default_value_t = 1)]
    total_shards: u32,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", api::crd_yaml());
            Ok(())
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let result = runtime.block_on(run(*args));
            if let Err(e) = &result {
                error!(error = format!("{e:#}"), "pwreset-operator stopped");
            }
            result
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shard = Shard::new(args.shard, args.total_shards).map_err(anyhow::Error::msg)?;
    let graph_url = args.graph_url.clone().unwrap_or_else(|| Url::parse(args.cloud.graph_url()).expect("valid"));
    if !matches!(graph_url.scheme(), "https" | "http") {
        bail!("--graph-url must be an http(s) URL, got {graph_url}");
    }
    let kube = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::default());
    let http = reqwest::Client::builder()
        .user_agent(concat!("pwreset-operator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(args.graph_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let graph = GraphClient::new(http.clone(), graph_url.clone(), metrics.clone());
    let login_url = args.login_url.clone().unwrap_or_else(|| Url::parse(args.cloud.login_url()).expect("valid"));
    let workload_identity = WorkloadIdentity::from_env();
    let auth = AuthSettings {
        login_url: login_url.clone(),
        scope_root: args.cloud.graph_url().to_string(),
        federated_token_dir: args.federated_token_dir.clone(),
        workload_identity: workload_identity.clone(),
    };
    let credentials = Credentials::new(kube.clone(), http.clone(), auth, metrics.clone());
    let limiter = TenantLimiter::new(Limits { rate: args.tenant_rate, burst: args.tenant_burst }, metrics.clone());
    let settings = Settings {
        default_credentials_secret: args.default_credentials_secret.clone(),
        poll_interval: args.poll_interval,
        not_found_grace: args.not_found_grace,
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        namespace: args.namespace.clone(),
    };
    info!(
        graph = %graph_url,
        login = %login_url,
        workload_identity = workload_identity.is_some(),
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        poll_interval = %duration::human(args.poll_interval),
        shard = args.shard,
        total_shards = args.total_shards,
        "starting pwreset-operator {}",
        env!("CARGO_PKG_VERSION")
    );
    let ctx = Arc::new(Context::new(kube.clone(), graph, credentials, limiter, metrics.clone(), settings));

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

    let ready = health.clone();
    let controller = controller::run(ctx, stopped(stop_rx.clone()), shard, move || {
        info!("cache synced; ready");
        ready.set_ready(true);
    });
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
