use super::*;

const ROOT: &str = "https://graph.microsoft.com";

fn spec(json: Value) -> OperationSpec {
    serde_json::from_value(json).unwrap()
}

fn build(json: Value, now: Timestamp) -> Operation {
    let progression = [Step::new("running", 1000), Step::new("succeeded", 3000)];
    let defaults = Defaults { progression: &progression, graph_root: ROOT };
    Operation::from_spec(spec(json), now, &defaults)
}

fn req<'a>(user: &'a str, id: &'a str) -> PollRequest<'a> {
    PollRequest { user, id, tenant: "t1", graph_root: ROOT, include_unknown_members: false }
}

fn t0() -> Timestamp {
    "2026-01-02T03:04:05.1234567Z".parse().unwrap()
}

fn at(ms: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_millis(ms)).unwrap()
}

#[test]
fn renders_graph_shape_over_time() {
    let op = build(json!({"userId": "U1", "id": "op1"}), t0());
    let b = op.render(at(500), "u1", ROOT, false);
    assert_eq!(b["status"], "notStarted");
    assert_eq!(b["createdDateTime"], "2026-01-02T03:04:05.1234567Z");
    assert_eq!(b["lastActionDateTime"], "2026-01-02T03:04:05.1234567Z");
    assert_eq!(
        b["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users('u1')/authentication/operations/$entity"
    );
    assert_eq!(b["resourceLocation"], format!("{ROOT}/v1.0/users/U1/authentication/methods/{PASSWORD_METHOD_ID}"));
    assert_eq!(b["statusDetail"], Value::Null);
    let b = op.render(at(3500), "u1", ROOT, false);
    assert_eq!(b["status"], "succeeded");
    assert_eq!(b["lastActionDateTime"], "2026-01-02T03:04:08.1234567Z");
}

#[test]
fn extra_fields_and_null_styles() {
    let op = build(
        json!({"userId": "u", "status": "failed", "statusDetail": "nope",
               "timestampStyle": "null", "resourceLocation": null,
               "extraFields": {"percentageComplete": 40}}),
        t0(),
    );
    let b = op.render(at(0), "u", ROOT, false);
    assert_eq!(b["status"], "failed");
    assert_eq!(b["statusDetail"], "nope");
    assert_eq!(b["createdDateTime"], Value::Null);
    assert_eq!(b["resourceLocation"], Value::Null);
    assert_eq!(b["percentageComplete"], 40);
}

#[test]
fn lookup_by_id_case_and_upn() {
    let mut store = OperationStore::new(10);
    store.insert(build(json!({"userId": "ABC", "id": "op", "userPrincipalName": "a@contoso.com"}), t0()));
    assert!(store.get("abc", "op").is_some());
    assert!(store.get("A@Contoso.com", "op").is_some());
    assert!(store.get("abc", "OP").is_none());
    assert!(store.remove("a@contoso.com", "op").is_some());
    assert_eq!(store.len(), 0);
    assert!(store.get("a@contoso.com", "op").is_none());
}

#[test]
fn appear_and_purge_windows() {
    let mut store = OperationStore::new(10);
    store.insert(build(json!({"userId": "u", "id": "op", "appearAfterMs": 1000, "purgeAfterMs": 5000}), t0()));
    assert!(matches!(store.poll(&req("u", "op"), at(999)), Poll::NotFound));
    assert!(matches!(store.poll(&req("u", "op"), at(1000)), Poll::Found(_)));
    assert!(matches!(store.poll(&req("u", "op"), at(5000)), Poll::NotFound));
}

#[test]
fn respond_queue_comes_first_and_tenant_scopes() {
    let mut store = OperationStore::new(10);
    store.insert(build(
        json!({"userId": "u", "id": "op", "tenant": "T1",
               "respond": [{"status": 429, "retryAfter": "2.128"}]}),
        t0(),
    ));
    let mut other = req("u", "op");
    other.tenant = "t2";
    assert!(matches!(store.poll(&other, at(0)), Poll::NotFound));
    match store.poll(&req("u", "op"), at(0)) {
        Poll::Scripted { response, normal } => {
            assert_eq!(response.status, 429);
            assert!(normal.is_some());
        }
        _ => panic!("expected the scripted 429"),
    }
    assert!(matches!(store.poll(&req("u", "op"), at(0)), Poll::Found(_)));
}

#[test]
fn set_status_sticks() {
    let mut op = build(json!({"userId": "u"}), t0());
    op.set_status(at(1500), "failed".into(), Some(Some("admin said so".into())));
    let b = op.render(at(10_000), "u", ROOT, false);
    assert_eq!(b["status"], "failed");
    assert_eq!(b["statusDetail"], "admin said so");
    assert_eq!(b["lastActionDateTime"], "2026-01-02T03:04:06.6234567Z");
}

#[test]
fn oldest_are_evicted_beyond_max() {
    let mut store = OperationStore::new(2);
    for id in ["a", "b", "a", "c"] {
        store.insert(build(json!({"userId": "u", "id": id}), t0()));
    }
    // "b" is the oldest live one: "a" was replaced after it.
    assert_eq!(store.len(), 2);
    assert!(store.get("u", "b").is_none());
    assert!(store.get("u", "a").is_some() && store.get("u", "c").is_some());
}
