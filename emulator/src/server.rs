//! Command line, logging, and the server's life cycle: bind, announce,
//! serve, stop on SIGTERM/SIGINT.

use std::future::{Future, IntoFuture as _};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;

use super::config::Config;
use super::routes::router;
use super::state::Emulator;
use super::tls::{self, TlsListener};

/// In-flight requests get this long to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Microsoft Graph emulator for pwreset-operator: authentication operations,
/// resetPassword, the Entra token endpoint, scripted progressions and faults.
#[derive(Debug, Parser)]
#[command(name = "graph-emulator", version)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "GRAPH_EMULATOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// YAML or JSON config file (JSON when it ends in `.json`).
    #[arg(long, env = "GRAPH_EMULATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve the admin API (`/_emulator`) to non-loopback callers too.
    #[arg(long)]
    pub allow_remote_admin: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, env = "GRAPH_EMULATOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "GRAPH_EMULATOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber: stderr, filter from `RUST_LOG`
/// (default `info`), so stdout carries only the `listening on` line.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person watching, not for log files and collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the emulator until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Load the config before binding so a broken file fails fast.
    let config = match &args.config {
        Some(path) => Config::load(path).await?,
        None => Config::default(),
    };
    // Read the certificate before binding too: a wrong path fails before anyone waits.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let listen_url = format!("{scheme}://{addr}");
    // Bound to all interfaces: `http://0.0.0.0:…` is no URL to send clients
    // to, so `Location` defaults to loopback (set `publicBaseUrl` otherwise).
    let public_ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let default_public_url = format!("{scheme}://{}", SocketAddr::new(public_ip, addr.port()));
    let emulator = Emulator::new(default_public_url, config).map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    let emulator = Arc::new(emulator);
    let app = router(emulator.clone(), args.allow_remote_admin);

    // The one line tests and scripts wait for.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {listen_url}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    tracing::info!(
        listen = %listen_url,
        public_base_url = %emulator.settings().public_base_url,
        operations = super::state::lock(&emulator.ops).len(),
        "graph emulator ready"
    );

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // An error means the sender is gone: stop as well.
    let stopped = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let mut server: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        // `tap_io` only so that axum's generic `ConnectInfo<SocketAddr>` applies to our listener
        // (the admin API checks for loopback callers).
        Some(config) => Box::pin(
            axum::serve(TlsListener::new(listener, config)?.tap_io(|_| {}), service)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
        None => Box::pin(axum::serve(listener, service).with_graceful_shutdown(stopped).into_future()),
    };

    tokio::select! {
        result = &mut server => return result.context("server failed"),
        signal = stop_signal() => tracing::info!(signal, "stopping"),
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(result) => result.context("server failed while stopping")?,
        Err(_) => tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; exiting anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the emulator");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
