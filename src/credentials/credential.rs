//! What a credential is: the kinds a Secret (or the operator's environment) can hold,
//! parsed and validated without ever showing a value.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use url::Url;

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
    /// Namespaces whose resources may use the operator's own workload identity when they name
    /// no Secret. Empty: none (a namespace never gets the operator's identity by omission).
    pub workload_identity_namespaces: Vec<String>,
    /// Whether a Secret's `federatedTokenFile` may name the operator's own projected token
    /// (the file in AZURE_FEDERATED_TOKEN_FILE). Off: a Secret cannot borrow that identity.
    pub allow_own_federated_token: bool,
}

impl AuthSettings {
    /// The operator's own workload identity, if `namespace` may use it.
    pub fn workload_identity_for(&self, namespace: &str) -> Result<&WorkloadIdentity, String> {
        let wi = self.workload_identity.as_ref().ok_or_else(|| "the operator has no workload identity".to_string())?;
        if self.workload_identity_namespaces.iter().any(|n| n == namespace || n == "*") {
            Ok(wi)
        } else {
            Err(format!(
                "the operator's workload identity is not offered to namespace {namespace} (the installer lists the \
                 namespaces that may use it: --workload-identity-namespaces)"
            ))
        }
    }

    /// The file a Secret's `federatedTokenFile` may not name, unless the installer allows it.
    pub fn forbidden_token_file(&self) -> Option<&Path> {
        match (&self.workload_identity, self.allow_own_federated_token) {
            (Some(wi), false) => Some(&wi.token_file),
            _ => None,
        }
    }
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
pub(crate) enum Credential {
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
    /// The Graph budget (app and tenant) this credential draws on, when a token request
    /// proves it; None for a static token.
    pub(crate) fn budget(&self) -> Option<String> {
        match self {
            Credential::Static(_) => None,
            Credential::Refresh { tenant, client_id, .. }
            | Credential::ClientSecret { tenant, client_id, .. }
            | Credential::Federated { tenant, client_id, .. } => Some(format!("{tenant}/{client_id}")),
        }
    }

    /// Client credentials (a secret or a federated assertion) give app-only tokens.
    pub(crate) fn is_app_only(&self) -> bool {
        matches!(self, Credential::ClientSecret { .. } | Credential::Federated { .. })
    }

    /// Identifies these exact inputs without keeping them: a changed Secret is a new key.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// Where a credential came from: a Secret (which may be written back) or the environment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
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

pub(crate) fn refresh_token_of(c: &Credential) -> Option<&SecretString> {
    match c {
        Credential::Refresh { refresh_token, .. } => Some(refresh_token),
        _ => None,
    }
}

pub(crate) fn read_token_file(path: &Path, allowed_dir: &Path, forbidden: Option<&Path>) -> Result<String, String> {
    let canonical = path.canonicalize().map_err(|e| format!("federated token file {}: {e}", path.display()))?;
    if let Some(own) = forbidden
        && own.canonicalize().is_ok_and(|own| own == canonical)
    {
        return Err(format!(
            "federated token file {} is the operator's own identity token, which Secrets may not use \
             (unless the operator runs with --allow-own-federated-token)",
            path.display()
        ));
    }
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
pub(crate) fn parse_secret(secret: &Secret) -> Result<Credential, String> {
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

    use k8s_openapi::ByteString;

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
    fn the_operators_own_identity_is_offered_only_to_listed_namespaces() {
        let wi = WorkloadIdentity { tenant_id: "t".into(), client_id: "c".into(), token_file: "/var/run/t".into() };
        let settings = |namespaces: &[&str]| AuthSettings {
            login_url: "https://login.microsoftonline.com".parse().unwrap(),
            scope_root: "https://graph.microsoft.com".into(),
            federated_token_dir: "/var/run".into(),
            workload_identity: Some(wi.clone()),
            workload_identity_namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            allow_own_federated_token: false,
        };
        let err = settings(&[]).workload_identity_for("team-a").unwrap_err();
        assert!(err.contains("not offered to namespace team-a"), "{err}");
        assert!(settings(&["team-b"]).workload_identity_for("team-a").is_err());
        assert_eq!(settings(&["team-a"]).workload_identity_for("team-a"), Ok(&wi));
        assert_eq!(settings(&["*"]).workload_identity_for("anyone"), Ok(&wi));
        assert_eq!(settings(&[]).forbidden_token_file(), Some(std::path::Path::new("/var/run/t")));
    }

    #[test]
    fn federated_token_files_are_read_only_from_the_allowed_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJ.assertion.sig\n").unwrap();
        assert_eq!(read_token_file(&file, dir.path(), None).unwrap(), "eyJ.assertion.sig");
        let other = tempfile::tempdir().unwrap();
        let err = read_token_file(&file, other.path(), None).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let err = read_token_file(&dir.path().join("../etc/passwd"), dir.path(), None).unwrap_err();
        assert!(err.contains("passwd"), "{err}");
        // The operator's own token, even reached through another path, is refused.
        let err = read_token_file(&dir.path().join("./token"), dir.path(), Some(&file)).unwrap_err();
        assert!(err.contains("operator's own identity token"), "{err}");
        let own = dir.path().join("own");
        std::fs::write(&own, "x").unwrap();
        assert_eq!(read_token_file(&file, dir.path(), Some(&own)).unwrap(), "eyJ.assertion.sig");
    }
}
