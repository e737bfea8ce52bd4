//! Credentials: where a resource's bearer token comes from.
//!
//! A resource names a Secret in its own namespace (or the operator's default name). The
//! Secret's keys decide the kind of credential:
//! - `token`: a bearer token, used as is;
//! - `tenantId` + `clientId` + `refreshToken` (+ `clientSecret` for confidential clients):
//!   delegated, refresh-token grant; every use returns a new refresh token, written back;
//! - `tenantId` + `clientId` + `clientSecret`: app-only, client credentials;
//! - `tenantId` + `clientId` + `federatedTokenFile`: app-only with a client assertion read
//!   from a projected service-account token (workload identity federation).
//!
//! Without a Secret, the operator's own `AZURE_CLIENT_ID` / `AZURE_TENANT_ID` /
//! `AZURE_FEDERATED_TOKEN_FILE` (Azure Workload Identity) are the operator-wide default.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize;
use tracing::{debug, info, warn};
use url::Url;

use super::client::error_chain;
use crate::metrics::Metrics;

/// How long a read Secret is reused before it is read again: Secret edits take effect
/// within this time, without a restart, and 10,000 resources sharing one Secret cost one
/// read per period rather than one per poll.
const SECRET_CACHE_TTL: Duration = Duration::from_secs(10);
/// Access tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// After a token endpoint failure that a person must fix, the same inputs are not tried
/// again for this long (a Secret edit changes the inputs and is tried at once).
const FAILURE_HOLD: Duration = Duration::from_secs(60);
/// After a passing token endpoint failure.
const TRANSIENT_HOLD: Duration = Duration::from_secs(5);
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A string that must never be shown: Debug and Display print a placeholder.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The value, for the one place that sends it (a header or a form field).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A token ready to send, and the tenant it belongs to (for per-tenant limits and metrics).
#[derive(Debug, Clone)]
pub struct BearerToken {
    pub token: SecretString,
    pub tenant: String,
}

/// Why no token could be had. Messages name Secrets and keys, never values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no credentials: set spec.credentialsSecretRef.name, start the operator with --default-credentials-secret, \
         or give it workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)"
    )]
    NotConfigured,
    #[error("Secret {namespace}/{name} does not exist; create it with the Graph credentials (see the README)")]
    SecretNotFound { namespace: String, name: String },
    #[error("{source_name} is not usable: {problem}")]
    Invalid { source_name: String, problem: String },
    #[error("reading Secret {namespace}/{name} failed: {message}")]
    Kubernetes { namespace: String, name: String, message: String },
    #[error(
        "Microsoft Entra rejected the refresh token in {source_name} ({code}): a person must sign in again and store \
         a new refreshToken in it"
    )]
    ReauthenticationRequired { source_name: String, code: String },
    #[error("Microsoft Entra rejected the client of {source_name} ({code}): {description}")]
    ClientRejected { source_name: String, code: String, description: String },
    #[error("the token endpoint did not give a token for {source_name}: {message}")]
    TokenEndpoint { source_name: String, message: String },
}

impl CredentialError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::NotConfigured => "CredentialsNotConfigured",
            CredentialError::SecretNotFound { .. } => "CredentialsSecretNotFound",
            CredentialError::Invalid { .. } => "InvalidCredentials",
            CredentialError::Kubernetes { .. } => "KubernetesApiError",
            CredentialError::ReauthenticationRequired { .. } => "ReauthenticationRequired",
            CredentialError::ClientRejected { .. } => "CredentialsRejected",
            CredentialError::TokenEndpoint { .. } => "TokenEndpointUnavailable",
        }
    }

    /// A person has to act (create or fix the Secret, sign in); retrying cannot help.
    pub fn needs_person(&self) -> bool {
        !matches!(self, CredentialError::Kubernetes { .. } | CredentialError::TokenEndpoint { .. })
    }
}

/// Where credentials come from, and what the operator may send where.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Token authority, e.g. `https://login.microsoftonline.com`.
    pub login_url: Url,
    /// Graph root whose host names scopes (`{root}/.default`); the cloud's, even when
    /// --graph-url points elsewhere, because scopes name the resource, not the address.
    pub scope_root: String,
    /// The only directory a `federatedTokenFile` may be read from.
    pub federated_token_dir: PathBuf,
    /// Operator-wide workload identity, from AZURE_* environment variables.
    pub workload_identity: Option<WorkloadIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    pub tenant_id: String,
    pub client_id: String,
    pub token_file: PathBuf,
}

impl WorkloadIdentity {
    /// From `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, when all are set.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(WorkloadIdentity {
            tenant_id: var("AZURE_TENANT_ID")?,
            client_id: var("AZURE_CLIENT_ID")?,
            token_file: PathBuf::from(var("AZURE_FEDERATED_TOKEN_FILE")?),
        })
    }
}

/// What a Secret (or the environment) holds, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Credential {
    Static(SecretString),
    Refresh {
        tenant: String,
        client_id: String,
        client_secret: Option<SecretString>,
        refresh_token: SecretString,
        scope: Option<String>,
    },
    ClientSecret {
        tenant: String,
        client_id: String,
        client_secret: SecretString,
        scope: Option<String>,
    },
    Federated {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
        scope: Option<String>,
    },
}

impl Credential {
    fn tenant(&self) -> Option<&str> {
        match self {
            Credential::Static(_) => None,
            Credential::Refresh { tenant, .. }
            | Credential::ClientSecret { tenant, .. }
            | Credential::Federated { tenant, .. } => Some(tenant),
        }
    }

    /// Identifies these exact inputs without keeping them: a changed Secret is a new key.
    fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// Where a credential came from: a Secret (which may be written back) or the environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Secret { namespace: String, name: String },
    Environment,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Secret { namespace, name } => write!(f, "Secret {namespace}/{name}"),
            Source::Environment => f.write_str("the operator's workload identity"),
        }
    }
}

/// (namespace, name) of a Secret.
type SecretKey = (String, String);

struct CachedSecret {
    read_at: Instant,
    credential: Credential,
    resource_version: Option<String>,
}

#[derive(Clone)]
struct CachedToken {
    fingerprint: u64,
    token: SecretString,
    renew_at: Instant,
}

#[derive(Clone)]
struct HeldFailure {
    fingerprint: u64,
    error: CredentialError,
    until: Instant,
}

#[derive(Default)]
struct TokenSlot {
    token: Option<CachedToken>,
    failure: Option<HeldFailure>,
}

/// Reads credentials (Secrets cached briefly), gets and caches access tokens, one token
/// request in flight per credential however many resources share it.
pub struct Credentials {
    kube: kube::Client,
    http: reqwest::Client,
    settings: AuthSettings,
    metrics: Arc<Metrics>,
    secrets: Mutex<HashMap<SecretKey, CachedSecret>>,
    /// Per Secret: an async lock held across its read, so an expired cache entry costs one
    /// apiserver read however many reconciles want it at that moment.
    secret_reads: Mutex<HashMap<SecretKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Per source: an async lock held across the token request (single flight).
    slots: Mutex<HashMap<Source, Arc<tokio::sync::Mutex<TokenSlot>>>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl Credentials {
    pub fn new(kube: kube::Client, http: reqwest::Client, settings: AuthSettings, metrics: Arc<Metrics>) -> Self {
        Credentials {
            kube,
            http,
            settings,
            metrics,
            secrets: Mutex::default(),
            secret_reads: Mutex::default(),
            slots: Mutex::default(),
        }
    }

    /// The bearer token for resources in `namespace` whose credentials are in Secret
    /// `secret` (None: the operator's workload identity, if it has one).
    pub async fn token(&self, namespace: &str, secret: Option<&str>) -> Result<BearerToken, CredentialError> {
        let (source, credential, resource_version) = match secret {
            Some(name) => {
                let (credential, rv) = self.read_secret(namespace, name).await?;
                (Source::Secret { namespace: namespace.into(), name: name.into() }, credential, rv)
            }
            None => {
                let wi = self.settings.workload_identity.clone().ok_or(CredentialError::NotConfigured)?;
                let credential = Credential::Federated {
                    tenant: wi.tenant_id,
                    client_id: wi.client_id,
                    token_file: wi.token_file,
                    scope: None,
                };
                (Source::Environment, credential, None)
            }
        };
        let tenant = credential
            .tenant()
            .map(str::to_string)
            .or_else(|| static_token_tenant(&credential))
            .unwrap_or_else(|| format!("secret:{namespace}/{}", secret.unwrap_or("")));
        if let Credential::Static(token) = &credential {
            return Ok(BearerToken { token: token.clone(), tenant });
        }

        let slot = self.slots.lock().unwrap().entry(source.clone()).or_default().clone();
        let mut slot = slot.lock().await;
        let fingerprint = credential.fingerprint();
        if let Some(cached) = &slot.token
            && cached.fingerprint == fingerprint
            && Instant::now() < cached.renew_at
        {
            return Ok(BearerToken { token: cached.token.clone(), tenant });
        }
        if let Some(failure) = &slot.failure
            && failure.fingerprint == fingerprint
            && Instant::now() < failure.until
        {
            return Err(failure.error.clone());
        }
        match self.request_token(&source, &credential, &tenant, resource_version).await {
            Ok((token, lifetime, persisted)) => {
                slot.failure = None;
                // A rotated refresh token changes the credential: cache under the new inputs.
                let fingerprint = persisted.map(|c| c.fingerprint()).unwrap_or(fingerprint);
                let renew_in = lifetime.saturating_sub(EXPIRY_MARGIN).max(lifetime / 2);
                slot.token =
                    Some(CachedToken { fingerprint, token: token.clone(), renew_at: Instant::now() + renew_in });
                Ok(BearerToken { token, tenant })
            }
            Err(error) => {
                let hold = if error.needs_person() { FAILURE_HOLD } else { TRANSIENT_HOLD };
                slot.failure = Some(HeldFailure { fingerprint, error: error.clone(), until: Instant::now() + hold });
                slot.token = None;
                Err(error)
            }
        }
    }

    /// Forget the Secret's contents and its access token, e.g. after Graph rejected the
    /// token, so the next attempt reads the (maybe already fixed) Secret and asks anew.
    pub fn invalidate(&self, namespace: &str, secret: Option<&str>) {
        let source = match secret {
            Some(name) => {
                self.secrets.lock().unwrap().remove(&(namespace.to_string(), name.to_string()));
                Source::Secret { namespace: namespace.into(), name: name.into() }
            }
            None => Source::Environment,
        };
        self.slots.lock().unwrap().remove(&source);
    }

    fn cached_secret(&self, key: &SecretKey) -> Option<(Credential, Option<String>)> {
        let secrets = self.secrets.lock().unwrap();
        let cached = secrets.get(key).filter(|c| c.read_at.elapsed() < SECRET_CACHE_TTL)?;
        Some((cached.credential.clone(), cached.resource_version.clone()))
    }

    async fn read_secret(&self, namespace: &str, name: &str) -> Result<(Credential, Option<String>), CredentialError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(hit) = self.cached_secret(&key) {
            return Ok(hit);
        }
        let read_lock = self.secret_reads.lock().unwrap().entry(key.clone()).or_default().clone();
        let _reading = read_lock.lock().await;
        if let Some(hit) = self.cached_secret(&key) {
            return Ok(hit);
        }
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let source_name = format!("Secret {namespace}/{name}");
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(CredentialError::SecretNotFound { namespace: namespace.into(), name: name.into() });
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(CredentialError::Invalid {
                    source_name,
                    problem: format!(
                        "the operator is not allowed to read it ({}); allow it in the chart's rbac values",
                        status.message
                    ),
                });
            }
            Err(e) => {
                return Err(CredentialError::Kubernetes {
                    namespace: namespace.into(),
                    name: name.into(),
                    message: e.to_string(),
                });
            }
        };
        let credential = parse_secret(&secret).map_err(|problem| CredentialError::Invalid { source_name, problem })?;
        let rv = secret.metadata.resource_version.clone();
        self.secrets.lock().unwrap().insert(
            key,
            CachedSecret { read_at: Instant::now(), credential: credential.clone(), resource_version: rv.clone() },
        );
        Ok((credential, rv))
    }

    /// One token request. Returns the access token, its lifetime, and the credential as
    /// persisted when a new refresh token was written back.
    async fn request_token(
        &self,
        source: &Source,
        credential: &Credential,
        tenant: &str,
        resource_version: Option<String>,
    ) -> Result<(SecretString, Duration, Option<Credential>), CredentialError> {
        let source_name = source.to_string();
        let app_scope = format!("{}/.default", self.settings.scope_root);
        let delegated_scope = format!("{}/UserAuthenticationMethod.Read.All offline_access", self.settings.scope_root);
        let mut form: Vec<(&str, String)> = Vec::new();
        let (tenant_id, client_id) = match credential {
            Credential::Static(_) => unreachable!("static tokens need no request"),
            Credential::Refresh { tenant, client_id, client_secret, refresh_token, scope } => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", refresh_token.expose().into()));
                form.push(("scope", scope.clone().unwrap_or(delegated_scope)));
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.expose().into()));
                }
                (tenant, client_id)
            }
            Credential::ClientSecret { tenant, client_id, client_secret, scope } => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_secret", client_secret.expose().into()));
                form.push(("scope", scope.clone().unwrap_or(app_scope)));
                (tenant, client_id)
            }
            Credential::Federated { tenant, client_id, token_file, scope } => {
                // Projected tokens rotate: read the file for every request.
                let assertion = read_token_file(token_file, &self.settings.federated_token_dir)
                    .map_err(|problem| CredentialError::Invalid { source_name: source_name.clone(), problem })?;
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
                form.push(("scope", scope.clone().unwrap_or(app_scope)));
                (tenant, client_id)
            }
        };
        form.push(("client_id", client_id.clone()));

        let mut url = self.settings.login_url.clone();
        url.path_segments_mut()
            .map_err(|()| CredentialError::TokenEndpoint {
                source_name: source_name.clone(),
                message: "--login-url cannot carry a path".into(),
            })?
            .pop_if_empty()
            .extend([tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        let response = self
            .http
            .post(url)
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                self.metrics.token_request(tenant, "none");
                CredentialError::TokenEndpoint { source_name: source_name.clone(), message: error_chain(&e) }
            })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let err: TokenErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
            let code = err.error.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            self.metrics.token_request(tenant, &code);
            // AADSTS descriptions carry codes and trace ids, never the submitted secrets.
            let description = err.error_description.unwrap_or_default().lines().next().unwrap_or("").to_string();
            warn!(source = %source_name, code = %code, "token request refused");
            return Err(match code.as_str() {
                "invalid_grant" | "interaction_required" if matches!(credential, Credential::Refresh { .. }) => {
                    CredentialError::ReauthenticationRequired { source_name, code }
                }
                "invalid_grant"
                | "invalid_client"
                | "unauthorized_client"
                | "invalid_scope"
                | "invalid_request"
                | "interaction_required" => CredentialError::ClientRejected { source_name, code, description },
                _ => CredentialError::TokenEndpoint { source_name, message: format!("{code}: {description}") },
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| CredentialError::TokenEndpoint {
            source_name: source_name.clone(),
            message: format!("the token endpoint's answer is not valid: {e}"),
        })?;
        self.metrics.token_request(tenant, "ok");
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(3599));

        let mut persisted = None;
        if let (Credential::Refresh { .. }, Some(new_refresh), Source::Secret { namespace, name }) =
            (credential, parsed.refresh_token, source)
        {
            let rotated = self.persist_refresh_token(namespace, name, credential, new_refresh, resource_version).await;
            persisted = rotated;
        }
        debug!(source = %source_name, lifetime_s = lifetime.as_secs(), "access token obtained");
        Ok((SecretString::new(parsed.access_token), lifetime, persisted))
    }

    /// Writes the new refresh token into the Secret before anything else happens: Entra
    /// returns a new one with every use. The write is conditional on the Secret's
    /// resourceVersion, so a Secret a person updated in the meantime is never overwritten.
    async fn persist_refresh_token(
        &self,
        namespace: &str,
        name: &str,
        used: &Credential,
        new_refresh: String,
        mut resource_version: Option<String>,
    ) -> Option<Credential> {
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        for _attempt in 0..3 {
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": resource_version},
                "data": {"refreshToken": ByteString(new_refresh.clone().into_bytes())},
            });
            match secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(written) => {
                    info!(secret = %format!("{namespace}/{name}"), "stored the rotated refresh token");
                    let credential = parse_secret(&written).ok()?;
                    self.secrets.lock().unwrap().insert(
                        (namespace.into(), name.into()),
                        CachedSecret {
                            read_at: Instant::now(),
                            credential: credential.clone(),
                            resource_version: written.metadata.resource_version.clone(),
                        },
                    );
                    return Some(credential);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Someone changed the Secret. If it still holds the token we used, our
                    // rotated one is the newest: write again on top. Otherwise theirs wins.
                    self.secrets.lock().unwrap().remove(&(namespace.to_string(), name.to_string()));
                    let Ok(Some(current)) = secrets.get_opt(name).await else { return None };
                    let still_ours =
                        parse_secret(&current).map(|c| refresh_token_of(&c) == refresh_token_of(used)).unwrap_or(false);
                    if !still_ours {
                        info!(secret = %format!("{namespace}/{name}"), "Secret was updated meanwhile; keeping its refresh token");
                        return None;
                    }
                    resource_version = current.metadata.resource_version;
                }
                Err(e) => {
                    warn!(secret = %format!("{namespace}/{name}"), error = %e, "could not store the rotated refresh token");
                    return None;
                }
            }
        }
        None
    }
}

fn refresh_token_of(c: &Credential) -> Option<&SecretString> {
    match c {
        Credential::Refresh { refresh_token, .. } => Some(refresh_token),
        _ => None,
    }
}

/// A static JWT names its tenant in `tid`; opaque tokens do not.
fn static_token_tenant(credential: &Credential) -> Option<String> {
    let Credential::Static(token) = credential else { return None };
    use base64::Engine as _;
    let payload = token.expose().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("tid")?.as_str().map(str::to_string)
}

fn read_token_file(path: &Path, allowed_dir: &Path) -> Result<String, String> {
    let canonical = path.canonicalize().map_err(|e| format!("federated token file {}: {e}", path.display()))?;
    let dir = allowed_dir.canonicalize().unwrap_or_else(|_| allowed_dir.to_path_buf());
    if !canonical.starts_with(&dir) {
        return Err(format!(
            "federated token file {} is outside {} (the operator's --federated-token-dir)",
            path.display(),
            dir.display()
        ));
    }
    let text =
        std::fs::read_to_string(&canonical).map_err(|e| format!("federated token file {}: {e}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(format!("federated token file {} is empty", path.display()));
    }
    Ok(text)
}

/// Validates a Secret's keys. Problems name keys, never values.
fn parse_secret(secret: &Secret) -> Result<Credential, String> {
    let data = secret.data.as_ref();
    let value = |key: &str| -> Result<Option<String>, String> {
        let Some(bytes) = data.and_then(|d| d.get(key)) else { return Ok(None) };
        let text = String::from_utf8(bytes.0.clone()).map_err(|_| format!("key {key} is not valid UTF-8"))?;
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(format!("key {key} is empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(format!("key {key} contains control characters"));
        }
        Ok(Some(text))
    };
    if let Some(token) = value("token")? {
        return Ok(Credential::Static(SecretString::new(token)));
    }
    let scope = value("scope")?;
    let tenant = value("tenantId")?;
    let client_id = value("clientId")?;
    let refresh = value("refreshToken")?;
    let client_secret = value("clientSecret")?;
    let token_file = value("federatedTokenFile")?;
    if tenant.is_none() && client_id.is_none() && refresh.is_none() && client_secret.is_none() && token_file.is_none() {
        return Err("it has none of the keys `token`, or `tenantId` + `clientId` with `refreshToken`, \
                    `clientSecret` or `federatedTokenFile`"
            .into());
    }
    let tenant = tenant.ok_or("key tenantId is missing")?;
    if !tenant.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        return Err("key tenantId must be a tenant GUID or domain name".into());
    }
    let client_id = client_id.ok_or("key clientId is missing")?;
    match (refresh, client_secret, token_file) {
        (Some(refresh), client_secret, None) => Ok(Credential::Refresh {
            tenant,
            client_id,
            client_secret: client_secret.map(SecretString::new),
            refresh_token: SecretString::new(refresh),
            scope,
        }),
        (None, Some(secret), None) => {
            Ok(Credential::ClientSecret { tenant, client_id, client_secret: SecretString::new(secret), scope })
        }
        (None, None, Some(file)) => {
            let path = PathBuf::from(file);
            if !path.is_absolute() {
                return Err("key federatedTokenFile must be an absolute path".into());
            }
            Ok(Credential::Federated { tenant, client_id, token_file: path, scope })
        }
        (None, None, None) => Err("it needs one of `refreshToken`, `clientSecret` or `federatedTokenFile`".into()),
        _ => Err("set only one of `refreshToken` (optionally with `clientSecret`), `clientSecret`, or \
                  `federatedTokenFile`"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect::<BTreeMap<_, _>>()),
            ..Default::default()
        }
    }

    fn parse(pairs: &[(&str, &[u8])]) -> Result<Credential, String> {
        parse_secret(&secret(pairs))
    }

    #[test]
    fn secret_values_never_print() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        for pairs in [
            &[("token", b"hunter2".as_slice())][..],
            &[("tenantId", b"t"), ("clientId", b"c"), ("refreshToken", b"hunter2"), ("clientSecret", b"hunter2")],
            &[("tenantId", b"t"), ("clientId", b"c"), ("clientSecret", b"hunter2")],
        ] {
            let parsed = parse(pairs).unwrap();
            assert!(!format!("{parsed:?}").contains("hunter2"), "{parsed:?}");
        }
    }

    #[test]
    fn each_credential_kind_is_recognised() {
        assert!(matches!(parse(&[("token", b"x")]).unwrap(), Credential::Static(_)));
        let refresh = parse(&[("tenantId", b"t"), ("clientId", b"c"), ("refreshToken", b"r")]).unwrap();
        assert!(matches!(refresh, Credential::Refresh { client_secret: None, .. }));
        let confidential =
            parse(&[("tenantId", b"t"), ("clientId", b"c"), ("refreshToken", b"r"), ("clientSecret", b"s")]).unwrap();
        assert!(matches!(confidential, Credential::Refresh { client_secret: Some(_), .. }));
        let app =
            parse(&[("tenantId", b"t"), ("clientId", b"c"), ("clientSecret", b"s"), ("scope", b"x/.default")]).unwrap();
        assert!(matches!(app, Credential::ClientSecret { scope: Some(_), .. }));
        let wi = parse(&[("tenantId", b"t"), ("clientId", b"c"), ("federatedTokenFile", b"/var/run/x")]).unwrap();
        assert!(matches!(wi, Credential::Federated { .. }));
    }

    #[test]
    fn bad_secrets_say_which_key_is_wrong_without_its_value() {
        type Pairs<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(Pairs, &str)> = vec![
            (vec![], "none of the keys"),
            (vec![("token", b"")], "key token is empty"),
            (vec![("token", b"\xff\xfe")], "not valid UTF-8"),
            (vec![("token", b"abc\x07def")], "control characters"),
            (vec![("clientId", b"c"), ("clientSecret", b"s3cr3t")], "tenantId is missing"),
            (vec![("tenantId", b"t"), ("clientSecret", b"s3cr3t")], "clientId is missing"),
            (vec![("tenantId", b"t"), ("clientId", b"c")], "needs one of"),
            (vec![("tenantId", b"t/../x"), ("clientId", b"c"), ("clientSecret", b"s3cr3t")], "tenant GUID"),
            (vec![("tenantId", b"t"), ("clientId", b"c"), ("federatedTokenFile", b"relative")], "absolute"),
            (
                vec![
                    ("tenantId", b"t"),
                    ("clientId", b"c"),
                    ("clientSecret", b"s3cr3t"),
                    ("federatedTokenFile", b"/f"),
                ],
                "only one of",
            ),
        ];
        for (pairs, expected) in cases {
            let err = parse(&pairs).unwrap_err();
            assert!(err.contains(expected), "{pairs:?}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn federated_token_files_are_read_only_from_the_allowed_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJ.assertion.sig\n").unwrap();
        assert_eq!(read_token_file(&file, dir.path()).unwrap(), "eyJ.assertion.sig");
        let other = tempfile::tempdir().unwrap();
        let err = read_token_file(&file, other.path()).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let err = read_token_file(&dir.path().join("../etc/passwd"), dir.path()).unwrap_err();
        assert!(err.contains("passwd"), "{err}");
    }

    #[test]
    fn a_static_jwt_names_its_tenant() {
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"tid":"tenant-1"}"#);
        let jwt = Credential::Static(SecretString::new(format!("eyJhbGciOiJub25lIn0.{claims}.sig")));
        assert_eq!(static_token_tenant(&jwt).as_deref(), Some("tenant-1"));
        assert_eq!(static_token_tenant(&Credential::Static(SecretString::new("opaque"))), None);
    }
}
