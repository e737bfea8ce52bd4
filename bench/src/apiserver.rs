//! What the benchmark asks the apiserver beyond the shared harness: a user that may not
//! write Events, how many Event writes a run caused, and the apiserver's own request counts.

use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams, PostParams};
use pwreset_testkit::kube::with_retries;
use serde_json::json;

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
