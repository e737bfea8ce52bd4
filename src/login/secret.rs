//! The credentials Secret `login` writes: exactly the keys `credentials::credential`
//! parses as a delegated credential, created or updated in place (other keys, labels and
//! annotations kept), conditional on the resourceVersion read.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Map, Value, json};

use crate::credentials::SecretString;

/// Keys that would shadow or contradict the new refresh token: a `token` is used before
/// anything else, and a `federatedTokenFile` (app-only) cannot go with a refresh token.
/// A `clientSecret` is kept only when this sign-in used one.
const CONFLICTING_KEYS: [&str; 3] = ["token", "federatedTokenFile", "clientSecret"];

/// What a sign-in produced, to be stored.
pub struct Contents {
    pub tenant: String,
    pub client_id: String,
    pub refresh_token: SecretString,
    pub client_secret: Option<SecretString>,
    /// Written only when given (the operator's default is the read scope).
    pub scope: Option<String>,
}

/// The `data` of the Secret: keys to set (values) and keys to drop (`null`, as a merge
/// patch removes them).
fn data(c: &Contents, existing: &[String]) -> Map<String, Value> {
    let bytes = |s: &str| serde_json::to_value(ByteString(s.as_bytes().to_vec())).expect("bytes serialize");
    let mut data = Map::new();
    for key in existing {
        if CONFLICTING_KEYS.contains(&key.as_str()) {
            data.insert(key.clone(), Value::Null);
        }
    }
    data.insert("tenantId".into(), bytes(&c.tenant));
    data.insert("clientId".into(), bytes(&c.client_id));
    data.insert("refreshToken".into(), bytes(c.refresh_token.expose()));
    if let Some(secret) = &c.client_secret {
        data.insert("clientSecret".into(), bytes(secret.expose()));
    }
    if let Some(scope) = &c.scope {
        data.insert("scope".into(), bytes(scope));
    }
    data
}

/// The keys a store removed (for the summary line).
pub fn removed_keys(c: &Contents, existing: &[String]) -> Vec<String> {
    data(c, existing).into_iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k).collect()
}

#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    Created,
    /// Updated; the keys removed because they conflicted with the new token.
    Updated {
        removed: Vec<String>,
    },
}

/// Creates the Secret or updates it in place. A concurrent change (409) is read again and
/// the update retried on top of it: the new sign-in is the newest credential there is.
pub async fn store(kube: &kube::Client, namespace: &str, name: &str, c: &Contents) -> anyhow::Result<Stored> {
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    for _attempt in 0..3 {
        let current = secrets.get_opt(name).await.with_context(|| format!("reading Secret {namespace}/{name}"))?;
        let Some(current) = current else {
            let data: BTreeMap<String, ByteString> = serde_json::from_value(Value::Object(data(c, &[])))?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(data),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => return Ok(Stored::Created),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e).with_context(|| format!("creating Secret {namespace}/{name}")),
            }
        };
        let existing: Vec<String> = current.data.iter().flat_map(|d| d.keys().cloned()).collect();
        let patch = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "data": data(c, &existing),
        });
        match secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(Stored::Updated { removed: removed_keys(c, &existing) }),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e).with_context(|| format!("updating Secret {namespace}/{name}")),
        }
    }
    bail!("Secret {namespace}/{name} kept changing while it was written; run login again")
}

/// The Secret `login` would write, as YAML, with placeholders for the secret values.
pub fn dry_run_yaml(
    namespace: &str,
    name: &str,
    tenant: &str,
    client_id: &str,
    client_secret: bool,
    scope: Option<&str>,
) -> String {
    let mut string_data = serde_json::Map::new();
    string_data.insert("tenantId".into(), json!(tenant));
    string_data.insert("clientId".into(), json!(client_id));
    string_data.insert("refreshToken".into(), json!("<the refresh token from the sign-in>"));
    if client_secret {
        string_data.insert("clientSecret".into(), json!("<the contents of --client-secret-file>"));
    }
    if let Some(scope) = scope {
        string_data.insert("scope".into(), json!(scope));
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": string_data,
    });
    serde_yaml::to_string(&secret).expect("YAML of a JSON value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(client_secret: bool) -> Contents {
        Contents {
            tenant: "contoso".into(),
            client_id: "app".into(),
            refresh_token: SecretString::new("rt-value"),
            client_secret: client_secret.then(|| SecretString::new("cs-value")),
            scope: None,
        }
    }

    #[test]
    fn the_data_is_what_the_operator_parses_and_conflicting_keys_go() {
        let existing: Vec<String> = ["token", "refreshToken", "notes", "clientSecret", "federatedTokenFile"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let data = data(&contents(false), &existing);
        let set: BTreeMap<String, ByteString> = data
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), serde_json::from_value(v.clone()).unwrap()))
            .collect();
        let secret = Secret { data: Some(set), ..Default::default() };
        let parsed = crate::credentials::credential::parse_secret(&secret).unwrap();
        assert!(matches!(parsed, crate::credentials::credential::Credential::Refresh { client_secret: None, .. }));
        assert_eq!(removed_keys(&contents(false), &existing), ["clientSecret", "federatedTokenFile", "token"]);
        assert!(!data.contains_key("notes"), "other keys are left alone");
        // With a client secret, it is written, not removed.
        assert_eq!(removed_keys(&contents(true), &existing), ["federatedTokenFile", "token"]);
    }

    #[test]
    fn the_dry_run_shows_no_secret_value() {
        let yaml = dry_run_yaml("team-a", "graph-credentials", "contoso", "app", true, Some("s"));
        for expected in
            ["name: graph-credentials", "namespace: team-a", "tenantId: contoso", "refreshToken: <the refresh token"]
        {
            assert!(yaml.contains(expected), "{yaml}");
        }
        let secret: Secret = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(secret.string_data.unwrap().len(), 5, "tenantId, clientId, refreshToken, clientSecret, scope");
    }
}
