//! Credentials Secrets: read (briefly cached, one read in flight per Secret) and the
//! rotated refresh token written back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tracing::{info, warn};

use super::credential::{Credential, SecretString, parse_secret, refresh_token_of};
use super::error::CredentialError;

/// How long a read Secret is reused before it is read again: Secret edits take effect
/// within this time, without a restart, and 10,000 resources sharing one Secret cost one
/// read per period rather than one per poll.
pub const SECRET_CACHE_TTL: Duration = Duration::from_secs(10);

/// (namespace, name) of a Secret.
pub type SecretKey = (String, String);

struct CachedSecret {
    read_at: Instant,
    credential: Credential,
    resource_version: Option<String>,
}

pub struct SecretStore {
    kube: kube::Client,
    cache: Mutex<HashMap<SecretKey, CachedSecret>>,
    /// Per Secret: an async lock held across its read, so an expired cache entry costs one
    /// apiserver read however many reconciles want it at that moment.
    reads: Mutex<HashMap<SecretKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl SecretStore {
    pub fn new(kube: kube::Client) -> Self {
        SecretStore { kube, cache: Mutex::default(), reads: Mutex::default() }
    }

    fn cached(&self, key: &SecretKey) -> Option<(Credential, Option<String>)> {
        let cache = self.cache.lock().unwrap();
        let hit = cache.get(key).filter(|c| c.read_at.elapsed() < SECRET_CACHE_TTL)?;
        Some((hit.credential.clone(), hit.resource_version.clone()))
    }

    fn remember(&self, key: SecretKey, credential: Credential, resource_version: Option<String>) {
        self.cache.lock().unwrap().insert(key, CachedSecret { read_at: Instant::now(), credential, resource_version });
    }

    pub fn forget(&self, key: &SecretKey) {
        self.cache.lock().unwrap().remove(key);
    }

    /// Drops what has expired anyway, and the read locks nobody holds: a deleted Secret or
    /// namespace leaves nothing behind.
    pub fn sweep(&self) {
        self.cache.lock().unwrap().retain(|_, c| c.read_at.elapsed() < SECRET_CACHE_TTL);
        self.reads.lock().unwrap().retain(|_, lock| Arc::strong_count(lock) > 1);
    }

    /// Entries held (cached Secrets, read locks), for `pwreset_cache_entries`.
    pub fn sizes(&self) -> (usize, usize) {
        (self.cache.lock().unwrap().len(), self.reads.lock().unwrap().len())
    }

    /// The parsed credential in Secret `namespace/name`, and the resourceVersion it was read at.
    pub async fn read(&self, namespace: &str, name: &str) -> Result<(Credential, Option<String>), CredentialError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let read_lock = self.reads.lock().unwrap().entry(key.clone()).or_default().clone();
        let _reading = read_lock.lock().await;
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let source_name = format!("Secret {namespace}/{name}");
        // Boxed: rarely taken, and it would otherwise size every poll's future (`reconcile`).
        let secret = match Box::pin(secrets.get_opt(name)).await {
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
        self.remember(key, credential.clone(), rv.clone());
        Ok((credential, rv))
    }

    /// Writes the new refresh token into the Secret before anything else happens: Entra
    /// returns a new one with every use. The write is conditional on the Secret's
    /// resourceVersion, so a Secret a person updated in the meantime is never overwritten.
    /// Returns the credential as stored, or None when the person's version was kept.
    pub async fn persist_refresh_token(
        &self,
        namespace: &str,
        name: &str,
        used: &Credential,
        new_refresh: &SecretString,
        mut resource_version: Option<String>,
    ) -> Option<Credential> {
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let key = (namespace.to_string(), name.to_string());
        for _attempt in 0..3 {
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": resource_version},
                "data": {"refreshToken": ByteString(new_refresh.expose().as_bytes().to_vec())},
            });
            match secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(written) => {
                    info!(secret = %format!("{namespace}/{name}"), "stored the rotated refresh token");
                    let credential = parse_secret(&written).ok()?;
                    self.remember(key, credential.clone(), written.metadata.resource_version.clone());
                    return Some(credential);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Someone changed the Secret. If it still holds the token we used, our
                    // rotated one is the newest: write again on top. Otherwise theirs wins.
                    self.forget(&key);
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
