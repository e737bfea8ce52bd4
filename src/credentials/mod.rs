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
//!
//! Files: `credential` (the kinds, parsed), `secrets` (reading and writing Secrets),
//! `entra` (the token endpoint), `error` (why no token), and here the access-token cache.

pub(crate) mod credential;
mod entra;
mod error;
mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use credential::{AuthSettings, SecretString, WorkloadIdentity};
pub use error::CredentialError;

use crate::metrics::Metrics;
use credential::{Credential, Source};
use entra::TokenEndpoint;
use secrets::SecretStore;

/// Access tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// After a token endpoint failure that a person must fix, the same inputs are not tried
/// again for this long (a Secret edit changes the inputs and is tried at once).
const FAILURE_HOLD: Duration = Duration::from_secs(60);
/// After a passing token endpoint failure.
const TRANSIENT_HOLD: Duration = Duration::from_secs(5);

/// A token ready to send, and the Graph budget it draws on (for rate limits and metrics).
#[derive(Debug, Clone)]
pub struct BearerToken {
    pub token: SecretString,
    /// Graph throttles per app and tenant: `{tenantId}/{clientId}`, known to be right because
    /// the token endpoint gave a token for exactly that pair. A static token's claims are not
    /// verified, so it gets a budget of its own Secret (`secret:{namespace}/{name}`): a Secret
    /// can never draw on, or drain, another team's budget by naming its tenant.
    pub budget: String,
    /// An app-only token (client credentials): Microsoft documents these APIs as not
    /// supporting application permissions.
    pub app_only: bool,
    /// How long the token stays valid, when the token endpoint said (a static token's
    /// lifetime is not known); `check` reports it.
    pub expires_in: Option<Duration>,
}

#[derive(Clone)]
struct CachedToken {
    fingerprint: u64,
    token: SecretString,
    renew_at: Instant,
    expires_at: Instant,
}

#[derive(Clone)]
struct HeldFailure {
    fingerprint: u64,
    error: CredentialError,
    until: Instant,
}

struct TokenSlot {
    token: Option<CachedToken>,
    failure: Option<HeldFailure>,
}

/// Per source: an async lock held across the token request (single flight), and when it
/// was last asked for (so credentials nobody uses any more are forgotten).
struct Slot {
    state: Arc<tokio::sync::Mutex<TokenSlot>>,
    used_at: Instant,
}

/// Reads credentials (Secrets cached briefly), gets and caches access tokens, one token
/// request in flight per credential however many resources share it.
pub struct Credentials {
    secrets: SecretStore,
    endpoint: TokenEndpoint,
    slots: Mutex<HashMap<Source, Slot>>,
}

impl Credentials {
    pub fn new(kube: kube::Client, http: reqwest::Client, settings: AuthSettings, metrics: Arc<Metrics>) -> Self {
        Credentials {
            secrets: SecretStore::new(kube),
            endpoint: TokenEndpoint::new(http, settings, metrics),
            slots: Mutex::default(),
        }
    }

    /// The bearer token for resources in `namespace` whose credentials are in Secret
    /// `secret` (None: the operator's workload identity, if it has one).
    pub async fn token(&self, namespace: &str, secret: Option<&str>) -> Result<BearerToken, CredentialError> {
        let (source, credential, resource_version) = match secret {
            Some(name) => {
                let (credential, rv) = self.secrets.read(namespace, name).await?;
                (Source::Secret { namespace: namespace.into(), name: name.into() }, credential, rv)
            }
            None => {
                let wi = self
                    .endpoint
                    .settings()
                    .workload_identity_for(namespace)
                    .map_err(|why| CredentialError::NotConfigured { why })?
                    .clone();
                let credential = Credential::Federated {
                    tenant: wi.tenant_id,
                    client_id: wi.client_id,
                    token_file: wi.token_file,
                    scope: None,
                };
                (Source::Environment, credential, None)
            }
        };
        let budget = credential.budget().unwrap_or_else(|| format!("secret:{namespace}/{}", secret.unwrap_or("")));
        let app_only = credential.is_app_only();
        if let Credential::Static(token) = &credential {
            return Ok(BearerToken { token: token.clone(), budget, app_only, expires_in: None });
        }

        let slot = {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.entry(source.clone()).or_insert_with(|| Slot {
                state: Arc::new(tokio::sync::Mutex::new(TokenSlot { token: None, failure: None })),
                used_at: Instant::now(),
            });
            slot.used_at = Instant::now();
            slot.state.clone()
        };
        let mut slot = slot.lock().await;
        let fingerprint = credential.fingerprint();
        if let Some(cached) = &slot.token
            && cached.fingerprint == fingerprint
            && Instant::now() < cached.renew_at
        {
            let expires_in = Some(cached.expires_at.saturating_duration_since(Instant::now()));
            return Ok(BearerToken { token: cached.token.clone(), budget, app_only, expires_in });
        }
        if let Some(failure) = &slot.failure
            && failure.fingerprint == fingerprint
            && Instant::now() < failure.until
        {
            return Err(failure.error.clone());
        }
        // Boxed: rarely taken, and it would otherwise size every poll's future (`reconcile`).
        match Box::pin(self.endpoint.request(&source.to_string(), &credential, &budget)).await {
            Ok(grant) => {
                slot.failure = None;
                let mut fingerprint = fingerprint;
                if let (Some(new_refresh), Source::Secret { namespace, name }) = (&grant.refresh_token, &source)
                    && matches!(credential, Credential::Refresh { .. })
                {
                    // A rotated refresh token changes the credential: cache under the new inputs.
                    let persisted = Box::pin(self.secrets.persist_refresh_token(
                        namespace,
                        name,
                        &credential,
                        new_refresh,
                        resource_version,
                    ))
                    .await;
                    if let Some(stored) = persisted {
                        fingerprint = stored.fingerprint();
                    }
                }
                let renew_in = grant.lifetime.saturating_sub(EXPIRY_MARGIN).max(grant.lifetime / 2);
                let token = grant.access_token;
                let now = Instant::now();
                slot.token = Some(CachedToken {
                    fingerprint,
                    token: token.clone(),
                    renew_at: now + renew_in,
                    expires_at: now + grant.lifetime,
                });
                Ok(BearerToken { token, budget, app_only, expires_in: Some(grant.lifetime) })
            }
            Err(error) => {
                let hold = match &error {
                    // The token endpoint said when to come back: not a moment sooner.
                    CredentialError::TokenEndpoint { retry_after: Some(after), .. } => (*after).max(TRANSIENT_HOLD),
                    e if e.needs_person() => FAILURE_HOLD,
                    _ => TRANSIENT_HOLD,
                };
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
                self.secrets.forget(&(namespace.to_string(), name.to_string()));
                Source::Secret { namespace: namespace.into(), name: name.into() }
            }
            None => Source::Environment,
        };
        self.slots.lock().unwrap().remove(&source);
    }

    /// Forgets credentials no reconcile has asked for within `idle` (and expired Secret
    /// reads), so retired Secrets and deleted namespaces leave nothing in memory.
    pub fn sweep(&self, idle: Duration) {
        self.secrets.sweep();
        self.slots
            .lock()
            .unwrap()
            .retain(|_, slot| slot.used_at.elapsed() < idle || Arc::strong_count(&slot.state) > 1);
    }

    /// (cache name, entries) for `pwreset_cache_entries`.
    pub fn sizes(&self) -> [(&'static str, usize); 3] {
        let (secrets, reads) = self.secrets.sizes();
        [("secrets", secrets), ("secret_reads", reads), ("tokens", self.slots.lock().unwrap().len())]
    }
}
