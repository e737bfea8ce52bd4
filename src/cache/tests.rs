use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ManagedFieldsEntry, Time};
use k8s_openapi::jiff::Timestamp;
use kube::CustomResourceExt;
use serde_json::Value;

use super::*;
use crate::api::SecretReference;

fn time(secs: i64, nanos: i32) -> Time {
    Time(Timestamp::new(secs, nanos).unwrap())
}

fn condition(type_: &str, reason: &str, message: &str, generation: Option<i64>, secs: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: time(secs, 0),
    }
}

/// Every field of spec and status set, to values that differ from each other.
fn full() -> Pro {
    let spec = PasswordResetOperationSpec {
        user_id: Some("alice@contoso.com".into()),
        operation_id: Some("op-1".into()),
        location: Some("https://graph.microsoft.com/v1.0/users/a/authentication/operations/b?aadgdc=x".into()),
        credentials_secret_ref: Some(SecretReference { name: "graph".into() }),
        poll_interval: Some("15s".into()),
        active_deadline_seconds: Some(31_536_000),
        ttl_seconds_after_finished: Some(0),
    };
    let mut obj = Pro::new("r", spec);
    obj.metadata.namespace = Some("ns".into());
    obj.metadata.uid = Some("uid-1".into());
    obj.status = Some(PasswordResetOperationStatus {
        status: Some("running".into()),
        operation_id: Some("op-1".into()),
        user_id: Some("ünïcødé#EXT#@contoso.com".into()),
        created_date_time: Some("2026-11-30T10:00:00.1234567Z".into()),
        last_action_date_time: Some("not a timestamp".into()),
        resource_location: Some("".into()),
        status_detail: Some("x".repeat(300)),
        observed_generation: Some(-3),
        last_polled_time: Some(time(1_790_000_000, 123_456_789)),
        completion_time: Some(time(-1, 0)),
        not_found_since: Some(time(0, 1)),
        request_id: Some("req".into()),
        client_request_id: Some("client-req".into()),
        last_handled_reconcile_at: Some("2026-11-30T10:00:00Z".into()),
        conditions: vec![
            condition("Ready", "Running", "Graph reports running", Some(7), 1_790_000_001),
            condition("Reconciling", "Running", "", None, 1_790_000_002),
            condition("Stalled", "", "m", Some(i64::MAX), 1_790_000_003),
            condition("Finished", "NotFinished", "…", Some(i64::MIN), 1_790_000_004),
        ],
    });
    obj
}

#[test]
fn every_field_survives_packing() {
    let obj = full();
    assert_eq!(Cached::from(obj.clone()).to_resource(), obj);

    let mut no_status = full();
    no_status.status = None;
    assert_eq!(Cached::from(no_status.clone()).to_resource(), no_status);

    let mut empty_status = full();
    empty_status.status = Some(PasswordResetOperationStatus::default());
    assert_eq!(Cached::from(empty_status.clone()).to_resource(), empty_status);

    let mut bare = full();
    bare.spec = PasswordResetOperationSpec { location: None, credentials_secret_ref: None, ..bare.spec };
    bare.spec.poll_interval = None;
    bare.spec.active_deadline_seconds = None;
    bare.spec.ttl_seconds_after_finished = None;
    bare.status = None;
    assert_eq!(Cached::from(bare.clone()).to_resource(), bare);
}

/// The sample above must set every field the CRD has, or the test before proves nothing
/// about a new one.
#[test]
fn the_sample_sets_every_field_of_the_schema() {
    let crd = serde_json::to_value(Pro::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let sample = serde_json::to_value(full()).unwrap();
    for part in ["spec", "status"] {
        let fields = schema[part]["properties"].as_object().unwrap();
        assert!(fields.len() >= 7, "{part} has fields in the schema");
        for name in fields.keys() {
            assert!(!sample[part][name].is_null(), "the sample sets {part}.{name}");
        }
    }
}

#[test]
fn the_gauges_read_what_unpacking_reads() {
    let mut no_ready = full();
    no_ready.status.as_mut().unwrap().conditions.remove(0);
    let mut no_state = full();
    no_state.status.as_mut().unwrap().status = None;
    let mut no_status = full();
    no_status.status = None;
    let cases = [
        (full(), Some("running"), Some("Running")),
        (no_ready, Some("running"), None),
        (no_state, None, Some("Running")),
        (no_status, None, None),
    ];
    for (obj, state, reason) in cases {
        assert_eq!(Cached::from(obj).state_and_ready_reason(), (state, reason));
    }
}

#[test]
fn the_cache_drops_managed_fields_and_kubectls_copy_and_keeps_the_rest() {
    let mut obj = full();
    obj.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
    obj.metadata.annotations = Some(
        [(LAST_APPLIED.to_string(), "{...}".to_string()), ("pwreset.dev/paused".to_string(), "true".to_string())]
            .into(),
    );
    let json: Value = serde_json::to_value(&obj).unwrap();
    let cached: Cached = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(cached.metadata.managed_fields, None);
    let annotations = cached.metadata.annotations.clone().unwrap();
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["pwreset.dev/paused"]);
    // JSON carries metav1.Time in whole seconds; the rest must come back as it went in.
    let mut expected: Pro = serde_json::from_value(json).unwrap();
    expected.metadata.managed_fields = None;
    expected.metadata.annotations.as_mut().unwrap().remove(LAST_APPLIED);
    assert_eq!(cached.to_resource(), expected);
}
