//! Setting up the control plane's side: CRD, namespace, Secret, and N resources created
//! concurrently through the apiserver.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use pwreset_operator::api::PasswordResetOperation;
use serde_json::{Value, json};

pub type Pro = PasswordResetOperation;

pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).context("reading admin.kubeconfig")?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Applies `crds/` (as users do) and waits until the API serves the resource.
pub async fn install_crd(client: &kube::Client, crd_file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(crd_file).with_context(|| format!("reading {}", crd_file.display()))?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
    let name = crd.metadata.name.clone().context("CRD without a name")?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(&name, &PatchParams::apply("pwreset-bench").force(), &Patch::Apply(&crd)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let established = crds
            .get(&name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        let served = Api::<Pro>::all(client.clone()).list(&ListParams::default().limit(1)).await.is_ok();
        if established && served {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the CRD {name} was not established within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn create_namespace(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
    Ok(())
}

pub async fn create_token_secret(client: &kube::Client, ns: &str, name: &str, token: &str) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"token": token}}))?;
    Api::<Secret>::namespaced(client.clone(), ns).create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// A user with everything the operator needs except writing Events, for the diagnostic run
/// that tells the memory of kube-runtime's event cache apart (the operator impersonates it
/// through kube-rs' `KUBE_RS_DEBUG_IMPERSONATE_USER`).
pub const NO_EVENTS_USER: &str = "pwreset-bench-no-events";

pub async fn create_no_events_user(client: &kube::Client) -> anyhow::Result<()> {
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": NO_EVENTS_USER},
        "rules": [
            {"apiGroups": ["pwreset.dev"], "resources": ["passwordresetoperations"],
             "verbs": ["get", "list", "watch", "patch", "update", "delete"]},
            {"apiGroups": ["pwreset.dev"], "resources": ["passwordresetoperations/status"],
             "verbs": ["get", "patch", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        ],
    }))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": NO_EVENTS_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NO_EVENTS_USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": NO_EVENTS_USER}],
    }))?;
    Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &role).await?;
    Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &binding).await?;
    Ok(())
}

/// Retries what a loaded apiserver may answer now and then (timeouts, 429, 5xx).
async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
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
/// flight; returns how long it took.
pub async fn create_all(
    client: &kube::Client,
    ns: &str,
    resources: Vec<NewResource>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let api: Api<Pro> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(resources)
        .map(|r| {
            let api = api.clone();
            async move {
                let obj: Pro = serde_json::from_value(json!({
                    "apiVersion": "pwreset.dev/v1alpha1",
                    "kind": "PasswordResetOperation",
                    "metadata": {"name": r.name},
                    "spec": r.spec,
                }))?;
                let name = r.name.clone();
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

/// Event writes in `ns`: one create per Event plus one patch per repeat (series).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EventCount {
    pub events: u64,
    pub writes: u64,
}

pub async fn count_events(client: &kube::Client, ns: &str) -> anyhow::Result<EventCount> {
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), ns);
    let mut count = EventCount::default();
    let mut params = ListParams::default().limit(1000);
    loop {
        let page = with_retries("list events", || api.list(&params)).await?;
        for e in &page.items {
            count.events += 1;
            count.writes += e.series.as_ref().map_or(1, |s| s.count.max(1) as u64);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(count),
        }
    }
}

/// Server-side view of one kind of request (kube-apiserver's own /metrics).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApiRequests {
    /// `VERB resource[/subresource]`.
    pub request: String,
    pub count: f64,
    pub mean_ms: f64,
}

fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    let Some(start) = labels.find(&key).map(|i| i + key.len()) else { return "" };
    labels[start..].split('"').next().unwrap_or("")
}

/// Request counts and mean latencies of the apiserver by verb and resource (only those of
/// the benchmark's resources, Events, Secrets), from `apiserver_request_duration_seconds`.
pub async fn apiserver_requests(client: &kube::Client) -> anyhow::Result<Vec<ApiRequests>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut by: std::collections::BTreeMap<String, (f64, f64)> = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_duration_seconds_")) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let Some((name, labels)) = key.split_once('{') else { continue };
        let resource = label(labels, "resource");
        if !matches!(resource, "passwordresetoperations" | "events" | "secrets") {
            continue;
        }
        let sub = label(labels, "subresource");
        let request = format!(
            "{} {resource}{}{sub}{}",
            label(labels, "verb"),
            if sub.is_empty() { "" } else { "/" },
            if label(labels, "group") == "events.k8s.io" { " (events.k8s.io)" } else { "" }
        );
        let entry = by.entry(request).or_default();
        match name {
            "apiserver_request_duration_seconds_sum" => entry.0 += value,
            "apiserver_request_duration_seconds_count" => entry.1 += value,
            _ => {}
        }
    }
    Ok(by
        .into_iter()
        .filter(|(_, (_, count))| *count > 0.0)
        .map(|(request, (sum, count))| ApiRequests { request, count, mean_ms: sum / count * 1000.0 })
        .collect())
}
