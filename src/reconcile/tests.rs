use super::*;
use crate::conditions::Phase;
use crate::context::Settings;
use crate::credentials::{AuthSettings, Credentials};
use crate::decide::Policy;
use crate::graph::limiter::{Limits, TenantLimiter};
use crate::graph::{Graph, GraphClient};
use crate::metrics::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[test]
fn status_patch_clears_every_field_that_became_empty() {
    let full = PasswordResetOperationStatus {
        status: Some("x".into()),
        operation_id: Some("x".into()),
        user_id: Some("x".into()),
        created_date_time: Some("x".into()),
        last_action_date_time: Some("x".into()),
        resource_location: Some("x".into()),
        status_detail: Some("x".into()),
        observed_generation: Some(1),
        last_polled_time: Some(Time(Timestamp::UNIX_EPOCH)),
        completion_time: Some(Time(Timestamp::UNIX_EPOCH)),
        not_found_since: Some(Time(Timestamp::UNIX_EPOCH)),
        request_id: Some("x".into()),
        client_request_id: Some("x".into()),
        last_handled_reconcile_at: Some("x".into()),
        conditions: conditions::conditions_for(
            &Phase::new(Reason::Running, ""),
            Some(1),
            &Time(Timestamp::UNIX_EPOCH),
            &[],
        ),
    };
    let full_keys: Vec<String> = serde_json::to_value(&full).unwrap().as_object().unwrap().keys().cloned().collect();
    let mut listed: Vec<String> = STATUS_FIELDS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    let mut full_sorted = full_keys.clone();
    full_sorted.sort();
    assert_eq!(listed, full_sorted, "STATUS_FIELDS must name every status field");

    let patch = status_patch(&PasswordResetOperationStatus::default(), Some("42"));
    assert_eq!(patch["metadata"]["resourceVersion"], "42");
    for key in STATUS_FIELDS {
        assert!(patch["status"][key].is_null(), "{key} must be cleared");
    }
}

/// A context whose Kubernetes client is a tower-test mock: every API call the
/// reconcile makes shows up on the returned handle.
fn mock_context()
-> (Arc<Context>, tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>) {
    crate::install_crypto_provider();
    let (service, handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let kube = kube::Client::new(service, "default");
    let metrics = Arc::new(Metrics::default());
    let root: url::Url = "http://127.0.0.1:9".parse().unwrap();
    let client = GraphClient::new(reqwest::Client::new(), root.clone(), metrics.clone());
    let auth = AuthSettings {
        login_url: root.clone(),
        scope_root: "https://graph.microsoft.com".into(),
        federated_token_dir: "/nonexistent".into(),
        workload_identity: None,
        workload_identity_namespaces: Vec::new(),
        allow_own_federated_token: false,
    };
    let credentials = Credentials::new(kube.clone(), reqwest::Client::new(), auth, metrics.clone());
    let limiter = TenantLimiter::new(Limits { rate: 10.0, burst: 10.0 }, metrics.clone());
    let graph = Graph::new(client, credentials, limiter, metrics.clone());
    let settings = Settings {
        default_credentials_secret: None,
        max_concurrent_reconciles: 1,
        namespace: None,
        cache_idle: Duration::from_secs(600),
    };
    let policy =
        Policy { graph_root: root, poll_interval: Duration::from_secs(10), not_found_grace: Duration::from_secs(60) };
    (Arc::new(Context::new(kube, graph, metrics, settings, policy)), handle)
}

fn finished(ttl: Option<i32>, finished_secs_ago: i64) -> Pro {
    let done_at = Timestamp::now() - jiff::SignedDuration::from_secs(finished_secs_ago);
    let mut obj = Pro::new(
        "done",
        crate::api::PasswordResetOperationSpec {
            user_id: Some("u".into()),
            operation_id: Some("o".into()),
            location: None,
            credentials_secret_ref: None,
            poll_interval: None,
            active_deadline_seconds: None,
            ttl_seconds_after_finished: ttl,
        },
    );
    obj.metadata.namespace = Some("ns".into());
    obj.metadata.uid = Some("uid-1".into());
    obj.status = Some(PasswordResetOperationStatus {
        status: Some("succeeded".into()),
        completion_time: Some(Time(done_at)),
        conditions: conditions::conditions_for(&Phase::new(Reason::Succeeded, ""), Some(1), &Time(done_at), &[]),
        ..Default::default()
    });
    obj
}

#[tokio::test]
async fn a_finished_resource_costs_no_api_call() {
    let (ctx, mut handle) = mock_context();
    // A deadline of its own: a reconcile that wrongly calls the API would wait forever on the mock.
    let (action, _) = tokio::time::timeout(Duration::from_secs(10), reconcile_inner(&finished(None, 5).into(), &ctx))
        .await
        .expect("a finished resource reconciles without waiting on the API")
        .unwrap();
    assert_eq!(action, None, "nothing brings a finished resource back but a change");
    let waiting = tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await;
    assert!(waiting.is_err(), "no request may be made for a finished resource");
}

#[tokio::test]
async fn ttl_deletes_with_a_uid_precondition_once_due_and_waits_until_then() {
    let (ctx, mut handle) = mock_context();
    let (action, _) =
        tokio::time::timeout(Duration::from_secs(10), reconcile_inner(&finished(Some(60), 5).into(), &ctx))
            .await
            .expect("a resource whose TTL is not due reconciles without waiting on the API")
            .unwrap();
    let wait = action.expect("requeued for when the TTL expires");
    assert!(wait > Duration::from_secs(54) && wait <= Duration::from_secs(56), "the TTL is due in 55 s: {wait:?}");

    let reconcile = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_inner(&finished(Some(60), 61).into(), &ctx).await.unwrap().0 }
    });
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a delete request within 10 s")
        .expect("a delete request");
    assert_eq!(request.method(), http::Method::DELETE);
    assert_eq!(request.uri().path(), "/apis/pwreset.dev/v1alpha1/namespaces/ns/passwordresetoperations/done");
    let body = request.into_body().collect_bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["preconditions"]["uid"], "uid-1", "{body}");
    send.send_response(
        http::Response::builder()
            .status(200)
            .body(kube::client::Body::from(serde_json::to_vec(&finished(Some(60), 61)).unwrap()))
            .unwrap(),
    );
    let action = tokio::time::timeout(Duration::from_secs(10), reconcile).await.expect("the reconcile ends");
    assert_eq!(action.unwrap(), None, "a deleted resource is not looked at again");
}
