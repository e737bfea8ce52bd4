//! Credentials: where a resource's bearer token comes from.
//!
//! A resource names a Secret in its own namespace (or the operator's default name). The
//! Secret's keys decide the kind of credential; see the README's "Credentials" section.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// How long a read Secret is reused before it is read again: Secret edits take effect
/// within this time, without a restart, and 10,000 resources sharing one Secret cost one
/// read per period rather than one per poll.
const SECRET_CACHE_TTL: Duration = Duration::from_secs(10);

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
        "no credentials: set spec.credentialsSecretRef.name, or start the operator with --default-credentials-secret"
    )]
    NotConfigured,
    #[error(
        "Secret {namespace}/{name} does not exist; create it with the Graph credentials (see the README)"
    )]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} is not usable: {problem}")]
    InvalidSecret {
        namespace: String,
        name: String,
        problem: String,
    },
    #[error("reading Secret {namespace}/{name} failed: {message}")]
    Kubernetes {
        namespace: String,
        name: String,
        message: String,
    },
}

impl CredentialError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::NotConfigured => "CredentialsNotConfigured",
            CredentialError::SecretNotFound { .. } => "CredentialsSecretNotFound",
            CredentialError::InvalidSecret { .. } => "InvalidCredentialsSecret",
            CredentialError::Kubernetes { .. } => "KubernetesApiError",
        }
    }

    /// A person has to act (create or fix the Secret); polling Graph cannot help.
    pub fn needs_person(&self) -> bool {
        !matches!(self, CredentialError::Kubernetes { .. })
    }
}

/// What a Secret holds, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credential {
    /// `token`: a bearer token used as is (its tenant is unknown; the Secret stands in).
    Static(SecretString),
}

struct CachedSecret {
    read_at: Instant,
    credential: Credential,
}

/// Reads credentials Secrets (cached briefly) and turns them into bearer tokens.
pub struct Credentials {
    kube: kube::Client,
    cache: Mutex<HashMap<(String, String), CachedSecret>>,
}

impl Credentials {
    pub fn new(kube: kube::Client) -> Self {
        Credentials {
            kube,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The bearer token for the Secret `namespace/name`.
    pub async fn token(&self, namespace: &str, name: &str) -> Result<BearerToken, CredentialError> {
        let credential = self.credential(namespace, name).await?;
        match credential {
            Credential::Static(token) => Ok(BearerToken {
                token,
                tenant: format!("secret:{namespace}/{name}"),
            }),
        }
    }

    /// Forget what was read from the Secret, e.g. after Graph rejected its token, so the
    /// next attempt reads the (maybe already fixed) Secret again.
    pub fn invalidate(&self, namespace: &str, name: &str) {
        self.cache
            .lock()
            .unwrap()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    async fn credential(&self, namespace: &str, name: &str) -> Result<Credential, CredentialError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(cached) = self.cache.lock().unwrap().get(&key)
            && cached.read_at.elapsed() < SECRET_CACHE_TTL
        {
            return Ok(cached.credential.clone());
        }
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(CredentialError::SecretNotFound {
                    namespace: namespace.into(),
                    name: name.into(),
                });
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(CredentialError::InvalidSecret {
                    namespace: namespace.into(),
                    name: name.into(),
                    problem: format!(
                        "the operator is not allowed to read it ({}); grant it in the chart's rbac values",
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
        let credential =
            parse_secret(&secret).map_err(|problem| CredentialError::InvalidSecret {
                namespace: namespace.into(),
                name: name.into(),
                problem,
            })?;
        self.cache.lock().unwrap().insert(
            key,
            CachedSecret {
                read_at: Instant::now(),
                credential: credential.clone(),
            },
        );
        Ok(credential)
    }
}

/// Validates a Secret's keys. Problems name keys, never values.
fn parse_secret(secret: &Secret) -> Result<Credential, String> {
    let data = secret.data.as_ref();
    let value = |key: &str| -> Result<Option<String>, String> {
        let Some(bytes) = data.and_then(|d| d.get(key)) else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("key {key} is not valid UTF-8"))?;
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
    Err("it has no `token` key (a bearer token for Microsoft Graph)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn secret_values_never_print() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        let parsed = parse_secret(&secret(&[("token", b"hunter2")])).unwrap();
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }

    #[test]
    fn bad_secrets_say_which_key_is_wrong_without_its_value() {
        let cases: [(&[(&str, &[u8])], &str); 4] = [
            (&[], "no `token` key"),
            (&[("token", b"")], "key token is empty"),
            (&[("token", b"\xff\xfe")], "not valid UTF-8"),
            (&[("token", b"abc\x07def")], "control characters"),
        ];
        for (pairs, expected) in cases {
            let err = parse_secret(&secret(pairs)).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
