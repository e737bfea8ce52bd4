//! Configuration shapes. The config file and the admin API use the very same
//! JSON (camelCase) shapes, so everything a file can say can also be said at
//! run time, and `GET /_emulator/config` round-trips into `PUT`.

use std::path::Path;

use anyhow::Context as _;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

mod device_code;
mod faults;
pub use device_code::DeviceCodeConfig;
pub use faults::{Faults, RetryAfter, ScriptedResponse};

/// The well-known id of the password authentication method: the only method
/// `resetPassword` accepts.
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";

/// Whole emulator configuration (file, `PUT /_emulator/config`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Base URL used to build `Location` headers; defaults to the listen URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
    /// Graph root of the emulated cloud: used in `@odata.context` and for
    /// token scopes (`{graphRoot}/.default`).
    #[serde(default = "default_graph_root")]
    pub graph_root: String,
    /// Steps of operations created by `resetPassword` (and by the admin API
    /// when an operation gives neither `steps` nor `status`).
    #[serde(default = "default_progression")]
    pub default_progression: Vec<Step>,
    /// Graph error code for unknown operations (`itemNotFound` or
    /// `Request_ResourceNotFound`; any string is passed through).
    #[serde(default = "default_not_found_code")]
    pub not_found_code: String,
    /// Graph answers statuses outside the known enum as `unknownFutureValue`
    /// unless the caller sends `Prefer: include-unknown-enum-members`.
    /// Set to `false` to always send scripted statuses verbatim.
    #[serde(default = "yes")]
    pub evolvable_enums: bool,
    #[serde(default = "default_access_token_lifetime")]
    pub access_token_lifetime_seconds: u64,
    /// Deviation from Entra, for tests of clients that must persist the
    /// newest refresh token: a redeemed refresh token dies (after
    /// `refreshTokenOverlapSeconds`). Entra keeps the previous one valid.
    #[serde(default)]
    pub refresh_token_single_use: bool,
    /// With `refreshTokenSingleUse`: how long a redeemed refresh token still works.
    #[serde(default)]
    pub refresh_token_overlap_seconds: u64,
    /// Deviation from Graph: accept app-only (client-credentials) tokens on
    /// the operation GET, as if an application permission existed. Graph
    /// documents application permissions as not supported there (403).
    /// A tenant's own `allowAppOnly` wins over this.
    #[serde(default)]
    pub allow_app_only: bool,
    #[serde(default)]
    pub reset_password: ResetPasswordConfig,
    /// Oldest operations are evicted beyond this many, so endless
    /// `resetPassword` traffic cannot exhaust memory.
    #[serde(default = "default_max_operations")]
    pub max_operations: usize,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub tokens: Vec<StaticToken>,
    #[serde(default)]
    pub operations: Vec<OperationSpec>,
    #[serde(default)]
    pub faults: Faults,
    /// The device authorization grant (`/devicecode` and its token grant).
    #[serde(default)]
    pub device_code: DeviceCodeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_base_url: None,
            graph_root: default_graph_root(),
            default_progression: default_progression(),
            not_found_code: default_not_found_code(),
            evolvable_enums: true,
            access_token_lifetime_seconds: default_access_token_lifetime(),
            refresh_token_single_use: false,
            refresh_token_overlap_seconds: 0,
            allow_app_only: false,
            reset_password: ResetPasswordConfig::default(),
            max_operations: default_max_operations(),
            tenants: Vec::new(),
            tokens: Vec::new(),
            operations: Vec::new(),
            faults: Faults::default(),
            device_code: DeviceCodeConfig::default(),
        }
    }
}

/// How `resetPassword` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetPasswordConfig {
    /// Query appended to the `Location` URL (Graph's routing parameters).
    #[serde(default = "default_routing_query")]
    pub routing_query: String,
    /// Graph may leave `Location` out; callers must cope.
    #[serde(default)]
    pub omit_location: bool,
    /// `Retry-After` value sent with the 202, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<RetryAfter>,
}

impl Default for ResetPasswordConfig {
    fn default() -> Self {
        ResetPasswordConfig { routing_query: default_routing_query(), omit_location: false, retry_after: None }
    }
}

/// One step of a scripted progression: from `afterMs` after creation on, the
/// operation reports `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    pub status: String,
    #[serde(default)]
    pub after_ms: u64,
    /// Present (even as `null`) overrides the operation's `statusDetail`
    /// while this step is current.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<Option<String>>,
}

impl Step {
    pub fn new(status: &str, after_ms: u64) -> Self {
        Step { status: status.to_owned(), after_ms, status_detail: None }
    }
}

/// A tenant: its app registrations and its throttling budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id as used in `/{tenant}/oauth2/v2.0/token`.
    pub id: String,
    /// Other names accepted in the token URL (e.g. `contoso.onmicrosoft.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Hybrid tenants cannot generate passwords: `newPassword` is required.
    #[serde(default)]
    pub hybrid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleConfig>,
    /// Overrides the global `allowAppOnly` for this tenant's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_app_only: Option<bool>,
    /// Scripted token-endpoint answers (429/503 with `Retry-After`, …), one
    /// per token request for this tenant, before normal answers resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_respond: Vec<ScriptedResponse>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
}

/// Token bucket: `capacity` requests, refilled at `refillPerSecond`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottleConfig {
    pub capacity: f64,
    pub refill_per_second: f64,
}

/// An app registration in a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Confidential clients must authenticate on every grant; public ones
    /// must not. Defaults to "has any credential configured".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidential: Option<bool>,
    /// Refresh tokens valid at start (delegated, headless flow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh_tokens: Vec<String>,
    /// Client assertion accepted verbatim (workload identity federation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_assertion: Option<String>,
    /// Accept any JWT-looking client assertion.
    #[serde(default)]
    pub accept_any_assertion: bool,
    /// Refresh fails with `interaction_required` (e.g. new MFA policy).
    #[serde(default)]
    pub interaction_required: bool,
    /// Nobody consented to the app's permissions yet: refresh fails with
    /// `invalid_grant` AADSTS65001 (an admin must grant consent; signing
    /// in again does not help).
    #[serde(default)]
    pub consent_required: bool,
    /// User id that delegated tokens act as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Granted Graph permissions: delegated scopes for refresh-token grants,
    /// application roles for client-credentials tokens.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

impl ClientConfig {
    pub fn is_confidential(&self) -> bool {
        self.confidential
            .unwrap_or(self.client_secret.is_some() || self.federated_assertion.is_some() || self.accept_any_assertion)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenKind {
    #[default]
    Delegated,
    App,
}

/// A bearer token accepted as is (no token endpoint needed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticToken {
    pub token: String,
    pub tenant: String,
    #[serde(default)]
    pub kind: TokenKind,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// How `createdDateTime`/`lastActionDateTime` are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TimestampStyle {
    /// `2026-01-02T03:04:05.1234567Z`
    #[default]
    Iso7,
    /// `2026-01-02T03:04:05.123Z`
    Millis,
    /// `2026-01-02T03:04:05.1234567+00:00`
    Offset,
    /// The docs' malformed example shape: `2026-01-02T03-04-05.12Z`
    DocsMalformed,
    /// Both timestamps `null`.
    Null,
}

/// A scripted operation (config file, `POST /_emulator/operations`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationSpec {
    pub user_id: String,
    /// Generated (GUID) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The operation can also be read through this UPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// When set, only tokens of this tenant see the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Defaults to the moment the operation is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Shortcut for `steps: [{status, afterMs: 0}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
    #[serde(default)]
    pub timestamp_style: TimestampStyle,
    /// Absent: the user's password method URL; `null`: null.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    pub resource_location: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    /// Merged into the body last (may even override standard fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_fields: Option<Map<String, Value>>,
    /// 404 until this long after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appear_after_ms: Option<u64>,
    /// 404 from this long after creation on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_after_ms: Option<u64>,
    /// Answers served (one per GET) before the normal ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub respond: Vec<ScriptedResponse>,
}

impl Config {
    /// Reads a YAML or JSON file (JSON when the extension is `.json`; YAML,
    /// a superset of JSON, otherwise).
    pub async fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            tokio::fs::read_to_string(path).await.with_context(|| format!("reading config file {}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let config: Config = if is_json {
            serde_json::from_str(&text).with_context(|| format!("parsing JSON config {}", path.display()))?
        } else {
            serde_yaml::from_str(&text).with_context(|| format!("parsing YAML config {}", path.display()))?
        };
        config.validate().map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks what serde cannot; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.public_base_url {
            url::Url::parse(url).map_err(|e| format!("publicBaseUrl {url:?}: {e}"))?;
        }
        url::Url::parse(&self.graph_root).map_err(|e| format!("graphRoot {:?}: {e}", self.graph_root))?;
        if self.max_operations == 0 {
            return Err("maxOperations must be at least 1".into());
        }
        for tenant in &self.tenants {
            tenant.validate()?;
        }
        for token in &self.tokens {
            if token.token.is_empty() || token.tenant.is_empty() {
                return Err("tokens: token and tenant must not be empty".into());
            }
        }
        for op in &self.operations {
            op.validate()?;
        }
        self.device_code.validate()?;
        self.faults.validate()
    }
}

impl TenantConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("tenant id must not be empty".into());
        }
        if let Some(t) = &self.throttle
            && !(t.capacity >= 1.0 && t.refill_per_second > 0.0)
        {
            return Err(format!("tenant {}: throttle needs capacity >= 1 and refillPerSecond > 0", self.id));
        }
        if let Some(r) = self.token_respond.iter().find(|r| !(100..=599).contains(&r.status)) {
            return Err(format!("tenant {}: tokenRespond status {} is not an HTTP status", self.id, r.status));
        }
        for client in &self.clients {
            if client.client_id.is_empty() {
                return Err(format!("tenant {}: clientId must not be empty", self.id));
            }
        }
        Ok(())
    }
}

impl OperationSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.user_id.is_empty() {
            return Err("operation userId must not be empty".into());
        }
        if self.id.as_deref() == Some("") {
            return Err(format!("operation of {}: id must not be empty", self.user_id));
        }
        if let Some(r) = self.respond.iter().find(|r| !(100..=599).contains(&r.status)) {
            return Err(format!("operation of {}: respond status {} is not an HTTP status", self.user_id, r.status));
        }
        if self.status.is_some() && self.steps.is_some() {
            return Err(format!("operation of {}: give either status or steps, not both", self.user_id));
        }
        Ok(())
    }
}

/// Lets `Option<Option<T>>` tell "absent" (outer `None`, via `default`) from
/// "explicitly null" (`Some(None)`).
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

fn default_graph_root() -> String {
    "https://graph.microsoft.com".into()
}

fn default_progression() -> Vec<Step> {
    vec![Step::new("notStarted", 0), Step::new("running", 1000), Step::new("succeeded", 3000)]
}

fn default_not_found_code() -> String {
    "itemNotFound".into()
}

fn default_access_token_lifetime() -> u64 {
    3599
}

fn default_max_operations() -> usize {
    100_000
}

fn default_routing_query() -> String {
    "aadgdc=DUB02P&aadgsu=ssprprod-a".into()
}

/// Both permissions the emulated routes know: a client or token registered
/// without `scopes` can do everything (the operator asks for Read.All).
fn default_scopes() -> Vec<String> {
    vec!["UserAuthenticationMethod.Read.All".into(), "UserAuthenticationMethod.ReadWrite.All".into()]
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests;
