//! The password Secret of a `PasswordReset`: written (generated, or copied from
//! `spec.passwordFrom`) before resetPassword is sent, owned by the PasswordReset so the
//! garbage collector deletes it with it. Nothing here logs or returns a password.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};

use crate::api_reset::{ATTEMPT_LABEL, PASSWORD_KEY, PasswordReset};
use crate::credentials::SecretString;
use crate::reason::Reason;

/// Why the password Secret could not be written: a state for status, or a Kubernetes error.
#[derive(Debug)]
pub enum SecretProblem {
    Blocked(Reason, String),
    Kube(kube::Error),
}

impl From<kube::Error> for SecretProblem {
    fn from(e: kube::Error) -> Self {
        SecretProblem::Kube(e)
    }
}

/// The password to send: copied from spec.passwordFrom, else generated.
pub async fn password_for(client: &kube::Client, reset: &PasswordReset) -> Result<SecretString, SecretProblem> {
    let Some(from) = &reset.spec.password_from else {
        return Ok(crate::password::generate());
    };
    let ns = reset.namespace().unwrap_or_default();
    let key = from.key.as_deref().unwrap_or(PASSWORD_KEY);
    let missing = |what: String| SecretProblem::Blocked(Reason::PasswordSourceNotFound, what);
    let secret = match Api::<Secret>::namespaced(client.clone(), &ns).get_opt(&from.name).await? {
        Some(secret) => secret,
        None => return Err(missing(format!("Secret {ns}/{} (spec.passwordFrom) does not exist", from.name))),
    };
    let value = secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone());
    match value.map(String::from_utf8) {
        Some(Ok(p)) if !p.is_empty() => Ok(SecretString::new(p)),
        Some(Ok(_)) | None => Err(missing(format!("Secret {ns}/{} has no non-empty key {key:?}", from.name))),
        Some(Err(_)) => Err(missing(format!("the key {key:?} of Secret {ns}/{} is not UTF-8 text", from.name))),
    }
}

/// Writes `password` for attempt `number` into the password Secret, creating it (owned by
/// `reset`) or replacing one this same PasswordReset owns. Returns once the API server has it.
pub async fn write(
    client: &kube::Client,
    reset: &PasswordReset,
    number: u32,
    password: &SecretString,
) -> Result<(), SecretProblem> {
    let ns = reset.namespace().unwrap_or_default();
    let name = &reset.spec.password_secret_name;
    let api = Api::<Secret>::namespaced(client.clone(), &ns);
    let uid = reset.uid().unwrap_or_default();
    let data = BTreeMap::from([(PASSWORD_KEY.to_string(), ByteString(password.expose().as_bytes().to_vec()))]);
    let labels = BTreeMap::from([(ATTEMPT_LABEL.to_string(), number.to_string())]);
    match api.get_opt(name).await? {
        Some(existing) => {
            let ours = existing.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true));
            if !ours {
                let message = format!(
                    "Secret {ns}/{name} (spec.passwordSecretName) exists and is not owned by this PasswordReset: \
                     the operator never overwrites it"
                );
                return Err(SecretProblem::Blocked(Reason::PasswordSecretConflict, message));
            }
            let mut secret = existing;
            secret.data = Some(data);
            secret.string_data = None;
            secret.metadata.labels.get_or_insert_with(BTreeMap::new).extend(labels);
            // resourceVersion stays set: a concurrent change makes this fail instead of racing.
            api.replace(name, &PostParams::default(), &secret).await?;
        }
        None => {
            let owner = reset.controller_owner_ref(&()).expect("a stored PasswordReset has a name and uid");
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner]),
                    ..Default::default()
                },
                data: Some(data),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            api.create(&PostParams::default(), &secret).await?;
        }
    }
    Ok(())
}

/// Whether the password Secret holds exactly `password` now (checked right before sending).
pub async fn holds(client: &kube::Client, reset: &PasswordReset, password: &SecretString) -> Result<bool, kube::Error> {
    let ns = reset.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), &ns).get_opt(&reset.spec.password_secret_name).await?;
    let stored = secret.and_then(|s| s.data).and_then(|d| d.get(PASSWORD_KEY).cloned());
    Ok(stored.is_some_and(|v| v.0 == password.expose().as_bytes()))
}
