//! Writing to the cluster: clients, namespaces, Secrets and `PasswordResetOperation`s, one
//! at a time or thousands concurrently.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use pwreset_operator::api::PasswordResetOperation;
use serde_json::{Value, json};

/// A client for the cluster of `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    crate::init_crypto();
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

pub async fn create_namespace(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
    Ok(())
}

/// Creates a Secret from string data.
pub async fn create_secret(client: &kube::Client, ns: &str, name: &str, string_data: Value) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": string_data}))?;
    Api::<Secret>::namespaced(client.clone(), ns).create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// A `PasswordResetOperation` named `name` with `spec`, as a user writes it.
pub fn resource(name: &str, spec: Value) -> PasswordResetOperation {
    serde_json::from_value(json!({
        "apiVersion": "pwreset.dev/v1alpha1",
        "kind": "PasswordResetOperation",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a PasswordResetOperation")
}

/// Retries what a loaded apiserver may answer now and then (timeouts, 429, 5xx).
pub async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 8 => {
                let transient = match &e {
                    kube::Error::Api(s) => s.code == 429 || s.code >= 500,
                    _ => true,
                };
                if !transient {
                    return Err(anyhow::anyhow!("{what}: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
            }
            Err(e) => return Err(anyhow::anyhow!("{what}: {e} (after {attempt} attempts)")),
        }
    }
}

/// One resource to create, and optionally the status to write right after.
pub struct NewResource {
    pub name: String,
    pub spec: Value,
    pub status: Option<Value>,
}

/// Creates every resource (and writes its status, if given), `concurrency` requests in
/// flight; returns how long it took. A resource that already exists counts as created, so
/// a retried create that had in fact succeeded is no error.
pub async fn create_all(
    client: &kube::Client,
    ns: &str,
    resources: Vec<NewResource>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let api: Api<PasswordResetOperation> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(resources)
        .map(|r| {
            let api = api.clone();
            async move {
                let obj = resource(&r.name, r.spec);
                let name = r.name;
                with_retries(&format!("create {name}"), || async {
                    match api.create(&PostParams::default(), &obj).await {
                        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        other => other.map(|_| ()),
                    }
                })
                .await?;
                if let Some(status) = &r.status {
                    let patch = Patch::Merge(json!({ "status": status }));
                    let params = PatchParams::default();
                    with_retries(&format!("write status of {name}"), || api.patch_status(&name, &params, &patch))
                        .await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}
