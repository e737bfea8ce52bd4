//! The `pwreset-operator` command line: subcommands and flags (each flag also reads
//! `PWRESET_<FLAG>` from the environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use url::Url;

use crate::duration;
use crate::graph::Cloud;
use crate::telemetry::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "pwreset-operator",
    version,
    about = "Mirrors Microsoft Entra ID password-reset operations into PasswordResetOperation resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (uses the kubeconfig or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Print a CustomResourceDefinition as YAML (PasswordResetOperation unless a kind is named).
    Crd {
        /// `password-reset` prints the PasswordReset CRD.
        #[arg(value_enum)]
        kind: Option<CrdKind>,
    },
    /// Check the installation (CRD, RBAC, Graph and login reachable, optionally a credentials
    /// Secret): one line per check; exit code 0 when all pass. Takes every `run` flag.
    Check(Box<CheckArgs>),
    /// Sign a person in (device code) and store the refresh token in the credentials Secret.
    Login(Box<LoginArgs>),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    PasswordResetOperation,
    PasswordReset,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// National cloud: sets the Graph root and the token authority together.
    #[arg(long, env = "PWRESET_CLOUD", value_enum, default_value_t = Cloud::Global)]
    pub cloud: Cloud,

    /// Graph root URL, overriding the cloud's (e.g. a Graph emulator: http://127.0.0.1:8080).
    #[arg(long, env = "PWRESET_GRAPH_URL")]
    pub graph_url: Option<Url>,

    /// Token authority URL, overriding the cloud's (e.g. a Graph emulator).
    #[arg(long, env = "PWRESET_LOGIN_URL")]
    pub login_url: Option<Url>,

    /// Allow plain http for --graph-url and --login-url on any address (an emulator on a test
    /// network); without it only https, or http on the loopback address, is accepted.
    #[arg(long, env = "PWRESET_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,

    /// PEM file of CA certificates trusted for Graph and the token endpoint in addition to the
    /// system's (a TLS-inspecting proxy's CA, a private CA). SSL_CERT_FILE, by contrast,
    /// replaces the system's.
    #[arg(long, env = "PWRESET_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,

    /// The only directory a Secret's federatedTokenFile may point into.
    #[arg(long, env = "PWRESET_FEDERATED_TOKEN_DIR", default_value = "/var/run/secrets/azure/tokens")]
    pub federated_token_dir: std::path::PathBuf,

    /// Namespaces whose resources may use the operator's own workload identity (AZURE_*
    /// environment) when they name no Secret; comma-separated, `*` for all. Default: none.
    #[arg(long, env = "PWRESET_WORKLOAD_IDENTITY_NAMESPACES", value_delimiter = ',')]
    pub workload_identity_namespaces: Vec<String>,

    /// Let a Secret's federatedTokenFile name the operator's own projected token (off: a
    /// Secret can never borrow the operator's identity).
    #[arg(long, env = "PWRESET_ALLOW_OWN_FEDERATED_TOKEN")]
    pub allow_own_federated_token: bool,

    /// Graph requests per second allowed per tenant (shared by all its resources); lowered
    /// automatically while Graph throttles, then slowly raised back.
    #[arg(long, env = "PWRESET_TENANT_RATE", default_value_t = 50.0, value_parser = positive_f64)]
    pub tenant_rate: f64,

    /// Graph requests a tenant may send at once after a quiet period.
    #[arg(long, env = "PWRESET_TENANT_BURST", default_value_t = 100.0, value_parser = positive_f64)]
    pub tenant_burst: f64,

    /// Also run the PasswordReset controller, which CALLS resetPassword (changes users'
    /// passwords) and creates Secrets. Off by default: without it PasswordResets are ignored.
    /// With --total-shards, only shard 0 handles PasswordResets.
    #[arg(long, env = "PWRESET_ENABLE_PASSWORD_RESET")]
    pub enable_password_reset: bool,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "PWRESET_NAMESPACE")]
    pub namespace: Option<String>,

    /// Secret name used by resources that set no spec.credentialsSecretRef (read from the
    /// resource's own namespace).
    #[arg(long, env = "PWRESET_DEFAULT_CREDENTIALS_SECRET")]
    pub default_credentials_secret: Option<String>,

    /// Default poll interval while an operation runs (spec.pollInterval overrides it).
    #[arg(long, env = "PWRESET_POLL_INTERVAL", default_value = "15s", value_parser = duration::parse)]
    pub poll_interval: Duration,

    /// How long Graph may answer 404 for an operation before it counts as not found.
    #[arg(long, env = "PWRESET_NOT_FOUND_GRACE", default_value = "2m", value_parser = duration::parse)]
    pub not_found_grace: Duration,

    /// Resources reconciled at the same time.
    #[arg(long, env = "PWRESET_MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Timeout of one Graph request.
    #[arg(long, env = "PWRESET_GRAPH_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    pub graph_timeout: Duration,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "PWRESET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "PWRESET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Elect a leader among replicas with a coordination.k8s.io Lease; only the leader works.
    #[arg(long, env = "PWRESET_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE).
    #[arg(long, env = "PWRESET_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, env = "PWRESET_LEADER_ELECTION_LEASE_NAME", default_value = "pwreset-operator")]
    pub leader_election_lease_name: String,

    /// How long a Lease stays valid without renewal; a follower takes over after it.
    #[arg(long, env = "PWRESET_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = duration::parse)]
    pub leader_election_lease_duration: Duration,

    /// Credentials, tokens and tenants nobody used for this long are forgotten (memory
    /// stays bounded as Secrets and tenants come and go).
    #[arg(long, env = "PWRESET_CACHE_IDLE", default_value = "10m", value_parser = duration::parse)]
    pub cache_idle: Duration,

    /// This replica's shard (0-based) when sharding with --total-shards.
    #[arg(long, env = "PWRESET_SHARD", default_value_t = 0)]
    pub shard: u32,

    /// Number of shards; each replica owns the resources whose UID hashes to its shard.
    #[arg(long, env = "PWRESET_TOTAL_SHARDS", default_value_t = 1)]
    pub total_shards: u32,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// `check`'s flags: every `run` flag, and what only `check` needs.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Also get a token with this credentials Secret (`namespace/name`), through the same code
    /// as `run` (a delegated Secret's rotated refresh token is written back, as `run` does).
    /// The token is never shown.
    #[arg(long, env = "PWRESET_CHECK_CREDENTIALS_SECRET", value_parser = SecretRef::parse)]
    pub credentials_secret: Option<SecretRef>,

    /// How long each check may take.
    #[arg(long, env = "PWRESET_CHECK_TIMEOUT", default_value = "5s", value_parser = duration::parse)]
    pub timeout: Duration,

    /// Namespaces where the operator must be allowed to read and patch Secrets, comma-separated
    /// (default: --namespace, else every namespace); the chart passes its rbac.namespaces.
    #[arg(long, env = "PWRESET_CHECK_SECRET_NAMESPACES", value_delimiter = ',')]
    pub secret_namespaces: Vec<String>,

    /// Only these Secret names need to be readable (the chart's rbac.secretNames), comma-separated.
    #[arg(long, env = "PWRESET_CHECK_SECRET_NAMES", value_delimiter = ',')]
    pub secret_names: Vec<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// A Secret named `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl SecretRef {
    pub(crate) fn parse(text: &str) -> Result<SecretRef, String> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(SecretRef { namespace: namespace.into(), name: name.into() })
            }
            _ => Err(format!("{text:?} is not namespace/name")),
        }
    }
}

/// The chart's default credentials Secret (`defaultCredentialsSecret`, `rbac.secretNames`).
pub const DEFAULT_SECRET_NAME: &str = "graph-credentials";

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Tenant id (GUID) or domain name, e.g. contoso.onmicrosoft.com.
    #[arg(long, env = "PWRESET_TENANT")]
    pub tenant: String,

    /// Application (client) id of the app registration ("Allow public client flows" on).
    #[arg(long, env = "PWRESET_CLIENT_ID")]
    pub client_id: String,

    /// File holding a client secret, for a confidential app (written to the Secret too).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,

    /// National cloud: sets the token authority and the scope host together.
    #[arg(long, env = "PWRESET_CLOUD", value_enum, default_value_t = Cloud::Global)]
    pub cloud: Cloud,

    /// Token authority URL, overriding the cloud's (e.g. a Graph emulator).
    #[arg(long, env = "PWRESET_LOGIN_URL")]
    pub login_url: Option<Url>,

    /// Allow plain http for --login-url on any address (an emulator on a test network).
    #[arg(long, env = "PWRESET_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,

    /// PEM file of CA certificates trusted in addition to the system's (as for `run`).
    #[arg(long, env = "PWRESET_EXTRA_CA_FILE")]
    pub extra_ca_file: Option<PathBuf>,

    /// Scopes to ask for (default: the cloud's `UserAuthenticationMethod.Read.All offline_access`).
    /// Written to the Secret's `scope` key when given.
    #[arg(long)]
    pub scope: Option<String>,

    /// Namespace of the Secret (default: the kubeconfig context's).
    #[arg(long, env = "PWRESET_NAMESPACE")]
    pub namespace: Option<String>,

    /// Name of the Secret (the chart's default credentials Secret unless told otherwise).
    #[arg(long, default_value = DEFAULT_SECRET_NAME)]
    pub secret_name: String,

    /// Print the Secret that would be written (values as placeholders); sign nobody in.
    #[arg(long)]
    pub dry_run: bool,
}
