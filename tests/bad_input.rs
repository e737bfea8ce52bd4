//! Bad input the operator must turn into a condition a person can act on: Secrets that
//! cannot work, and Graph answers that are broken in every way seen in the wild. Never a
//! crash (the process stays up, /healthz answers 200, no "panicked" in its logs), never a
//! hot loop (backoff starts at 5 s), never a secret value in a message.
//!
//! Admission (what the apiserver refuses) is covered in `tests/crd.rs`, not here.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use kube::api::{Api, ListParams, PostParams};
use pwreset_testkit::Harness;
use pwreset_testkit::observe::{History, Seen, Table, now_ms, operation_gets, request_log};
use serde_json::{Value, json};

/// A Secret that cannot give a token, and what the condition message must say.
struct SecretCase {
    name: &'static str,
    data: Vec<(&'static str, &'static [u8])>,
    /// The message names the key (or the keys expected): this text must appear in it.
    says: &'static str,
}

fn secret_cases() -> Vec<SecretCase> {
    let case = |name, data: Vec<(&'static str, &'static [u8])>, says| SecretCase { name, data, says };
    vec![
        case("no-keys", vec![], "none of the keys `token`"),
        case("only-unknown-key", vec![("accessToken", b"v4lue-unknown-key")], "none of the keys `token`"),
        case("token-empty", vec![("token", b"")], "key token is empty"),
        case("token-whitespace", vec![("token", b"  \t \r\n ")], "key token is empty"),
        case("token-not-utf8", vec![("token", b"\xff\xfe\xfdv4lue")], "key token is not valid UTF-8"),
        case("token-bell", vec![("token", b"v4lue-bell\x07x")], "key token contains control characters"),
        case(
            "token-inner-newline",
            vec![("token", b"v4lue-line-one\nline-two")],
            "key token contains control characters",
        ),
        case("token-nul", vec![("token", b"v4lue-nul\x00x")], "key token contains control characters"),
        case("token-escape", vec![("token", b"\x1b[31mv4lue-escape")], "key token contains control characters"),
        case(
            "tenant-missing",
            vec![("clientId", b"app-1"), ("clientSecret", b"v4lue-cs-1")],
            "key tenantId is missing",
        ),
        case(
            "tenant-empty",
            vec![("tenantId", b""), ("clientId", b"app-1"), ("clientSecret", b"v4lue-cs-2")],
            "key tenantId is empty",
        ),
        case(
            "client-missing",
            vec![("tenantId", b"contoso"), ("clientSecret", b"v4lue-cs-3")],
            "key clientId is missing",
        ),
        case(
            "no-credential",
            vec![("tenantId", b"contoso"), ("clientId", b"app-1")],
            "`refreshToken`, `clientSecret` or `federatedTokenFile`",
        ),
        case(
            "secret-and-file",
            vec![
                ("tenantId", b"contoso"),
                ("clientId", b"app-1"),
                ("clientSecret", b"v4lue-cs-4"),
                ("federatedTokenFile", b"/var/run/secrets/azure/tokens/t"),
            ],
            "set only one of `refreshToken`",
        ),
        case(
            "refresh-and-file",
            vec![
                ("tenantId", b"contoso"),
                ("clientId", b"app-1"),
                ("refreshToken", b"v4lue-rt-1"),
                ("federatedTokenFile", b"/var/run/secrets/azure/tokens/t"),
            ],
            "set only one of `refreshToken`",
        ),
        case(
            "all-three",
            vec![
                ("tenantId", b"contoso"),
                ("clientId", b"app-1"),
                ("refreshToken", b"v4lue-rt-2"),
                ("clientSecret", b"v4lue-cs-5"),
                ("federatedTokenFile", b"/var/run/secrets/azure/tokens/t"),
            ],
            "set only one of `refreshToken`",
        ),
        case(
            "tenant-path",
            vec![("tenantId", b"contoso/../evil"), ("clientId", b"app-1"), ("clientSecret", b"v4lue-cs-6")],
            "key tenantId must be a tenant GUID",
        ),
        case(
            "file-relative",
            vec![("tenantId", b"contoso"), ("clientId", b"app-1"), ("federatedTokenFile", b"tokens/azure-token")],
            "key federatedTokenFile must be an absolute path",
        ),
        case(
            "client-secret-whitespace",
            vec![("tenantId", b"contoso"), ("clientId", b"app-1"), ("clientSecret", b"   ")],
            "key clientSecret is empty",
        ),
        case(
            "refresh-not-utf8",
            vec![("tenantId", b"contoso"), ("clientId", b"app-1"), ("refreshToken", b"v4lue\xc3\x28rt")],
            "key refreshToken is not valid UTF-8",
        ),
        case(
            "client-id-control",
            vec![("tenantId", b"contoso"), ("clientId", b"app\x01v4lue"), ("clientSecret", b"v4lue-cs-7")],
            "key clientId contains control characters",
        ),
        case(
            "scope-empty",
            vec![("tenantId", b"contoso"), ("clientId", b"app-1"), ("clientSecret", b"v4lue-cs-8"), ("scope", b" ")],
            "key scope is empty",
        ),
    ]
}

async fn create_raw_secret(h: &Harness, name: &str, data: &[(&str, &[u8])]) {
    let data: BTreeMap<String, ByteString> =
        data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(h.client.clone(), &h.ns).create(&PostParams::default(), &secret).await.unwrap();
}

/// Values long enough to be recognised if they leaked (never shown anywhere).
fn leakable(values: &[&[u8]]) -> Vec<String> {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| v.len() >= 6 && !v.starts_with('/'))
        .collect()
}

#[tokio::test]
async fn unusable_secrets_stall_with_invalid_credentials_naming_the_key_never_the_value() {
    let h = Harness::start(&[]).await;
    let history = History::start(h.api());
    let cases = secret_cases();
    for c in &cases {
        create_raw_secret(&h, c.name, &c.data).await;
        h.create(
            c.name,
            json!({"userId": "victim", "operationId": format!("op-{}", c.name), "credentialsSecretRef": {"name": c.name}}),
        )
        .await;
    }
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    wait_all(&history, &names, Duration::from_secs(60), |v| v.has("Stalled", "True", "InvalidCredentials")).await;

    let mut failures = Vec::new();
    let mut table = Table::new(&["secret case", "Stalled reason", "message", "verdict"]);
    for c in &cases {
        let versions = history.of(c.name);
        let last = versions.last().unwrap();
        let message = last.condition("Stalled").map(|s| s.message.clone()).unwrap_or_default();
        let mut problems = Vec::new();
        if !message.contains(c.says) {
            problems.push(format!("message does not say {:?}", c.says));
        }
        if !message.contains(&format!("Secret {}/{}", h.ns, c.name)) {
            problems.push("message does not name the Secret".to_string());
        }
        let values: Vec<&[u8]> = c.data.iter().map(|(_, v)| *v).collect();
        for value in leakable(&values) {
            if message.contains(&value) {
                problems.push(format!("message shows a value: {message}"));
            }
        }
        if message.contains('\u{fffd}') || message.chars().any(|ch| ch.is_control()) {
            problems.push(format!("message carries raw bytes of a value: {message:?}"));
        }
        if !(last.has("Ready", "False", "InvalidCredentials") && last.has("Finished", "False", "InvalidCredentials")) {
            problems.push(format!("conditions {:?}", last.conditions));
        }
        // No status churn while it keeps failing: created, WaitingForGraph, InvalidCredentials.
        if versions.len() > 3 {
            problems.push(format!("{} versions: status rewritten while nothing changed", versions.len()));
        }
        let verdict = if problems.is_empty() { "ok".to_string() } else { problems.join("; ") };
        if !problems.is_empty() {
            failures.push(format!("{}: {verdict}", c.name));
        }
        table.row(vec![c.name.into(), last.reason("Stalled").unwrap_or("-").into(), message, verdict]);
    }
    println!("\n{}", table.render());

    // Nothing reached Graph without usable credentials.
    let log = request_log(&h.emulator).await;
    let gets = operation_gets(&log, None);
    if !gets.is_empty() {
        failures.push(format!("{} Graph requests were made without usable credentials", gets.len()));
    }
    // No value anywhere a person (or an attacker) could read it.
    let all_values: Vec<&[u8]> = cases.iter().flat_map(|c| c.data.iter().map(|(_, v)| *v)).collect();
    let events = Api::<CoreEvent>::namespaced(h.client.clone(), &h.ns).list(&ListParams::default()).await.unwrap();
    let haystack = format!("{}{}", h.operator.logs(), serde_json::to_string(&events.items).unwrap());
    for value in leakable(&all_values) {
        if haystack.contains(&value) {
            failures.push(format!("a Secret value ({} chars) appears in the operator's logs or events", value.len()));
        }
    }
    assert_alive(&h, &mut failures).await;
    assert!(failures.is_empty(), "{} problems:\n- {}", failures.len(), failures.join("\n- "));
}

/// A Graph answer served (twice) before the normal ones, and what it must turn into.
struct GraphCase {
    name: &'static str,
    answer: Value,
    /// How many times the bad answer is served before Graph answers normally.
    repeat: usize,
    /// The condition (type, reason) while the bad answers last; None: works at once.
    expect: Option<(&'static str, &'static str)>,
    /// Text the condition message must contain.
    says: &'static str,
    /// Where the operation really ends (what Graph answers once it answers properly).
    ends: &'static str,
}

const HTML_PAGE: &str = "<!DOCTYPE html>\r\n<html><head><title>Service Unavailable</title></head>\r\n<body><h1>Our services \
                         aren't available right now</h1><p>We're working to restore all services as soon as possible.</p>\
                         </body></html>\r\n";

fn graph_cases() -> Vec<GraphCase> {
    let op = |extra: Value| {
        let mut body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('u')/authentication/operations/$entity",
            "id": "x",
            "status": "succeeded",
            "createdDateTime": "2026-03-19T12:01:03.4567891Z",
            "lastActionDateTime": "2026-03-19T12:01:04.4567891Z",
            "resourceLocation": null,
            "statusDetail": null,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let raw = |status: u16, body: String| json!({"status": status, "body": body});
    let padded = |bytes: usize| op(json!({"padding": "x".repeat(bytes)}));
    let bad = |name, answer, expect: (&'static str, &'static str), says| GraphCase {
        name,
        answer,
        repeat: 2,
        expect: Some(expect),
        says,
        ends: "succeeded",
    };
    let invalid = ("Reconciling", "InvalidGraphResponse");
    let unavailable = ("Reconciling", "GraphUnavailable");
    vec![
        bad("empty-200", raw(200, String::new()), invalid, "not a valid operation"),
        bad("whitespace-200", raw(200, " \r\n ".into()), invalid, "not a valid operation"),
        bad("truncated-json", raw(200, r#"{"id": "x", "status": "runn"#.into()), invalid, "not a valid operation"),
        bad(
            "html-200",
            json!({"status": 200, "body": HTML_PAGE, "contentType": "text/html; charset=utf-8"}),
            invalid,
            "not a valid operation",
        ),
        bad("html-502", json!({"status": 502, "body": HTML_PAGE, "contentType": "text/html"}), unavailable, "502"),
        bad(
            "text-500",
            json!({"status": 500, "body": "Internal Server Error", "contentType": "text/plain"}),
            unavailable,
            "500",
        ),
        bad("unavailable-503", json!({"status": 503}), unavailable, "serviceNotAvailable"),
        bad("huge-2mib", raw(200, padded(2 * 1024 * 1024)), invalid, "262144"),
        bad("just-over-256kib", raw(200, padded(256 * 1024)), invalid, "262144"),
        bad("status-number", raw(200, op(json!({"status": 3}))), invalid, "not a valid operation"),
        bad("created-object", raw(200, op(json!({"createdDateTime": {}}))), invalid, "not a valid operation"),
        bad("id-number", raw(200, op(json!({"id": 42}))), invalid, "not a valid operation"),
        bad("json-array", raw(200, "[]".into()), invalid, "not a valid operation"),
        bad("json-null", raw(200, "null".into()), invalid, "not a valid operation"),
        bad("binary-garbage", raw(200, "\u{0}\u{1}\u{2}\u{fffd}PNG\u{1a}".into()), invalid, "not a valid operation"),
        bad("status-null", raw(200, op(json!({"status": null}))), ("Reconciling", "UnknownStatus"), "does not know"),
        bad("throttled-without-retry-after", json!({"status": 429}), ("Reconciling", "Throttled"), "throttling"),
        bad(
            "bad-request-400",
            json!({"status": 400, "code": "BadRequest", "message": "Invalid request: the segment 'operations' is not valid."}),
            ("Stalled", "GraphRequestRejected"),
            "BadRequest",
        ),
        bad(
            "bad-request-400-html",
            json!({"status": 400, "body": HTML_PAGE, "contentType": "text/html"}),
            ("Stalled", "GraphRequestRejected"),
            "400",
        ),
        bad(
            "unauthorized-401",
            json!({"status": 401}),
            ("Stalled", "CredentialsRejected"),
            "InvalidAuthenticationToken",
        ),
        bad("forbidden-403", json!({"status": 403}), ("Stalled", "PermissionDenied"), "Authorization_RequestDenied"),
        GraphCase {
            name: "unknown-fields",
            answer: raw(
                200,
                op(json!({
                    "somethingNew": {"nested": [1, 2, {"deeper": true}]},
                    "percentageComplete": 100,
                    "@odata.etag": "W/\"1\"",
                    "error": null,
                })),
            ),
            repeat: 1,
            expect: None,
            says: "",
            ends: "succeeded",
        },
        GraphCase {
            name: "under-256kib",
            answer: raw(200, padded(200 * 1024)),
            repeat: 1,
            expect: None,
            says: "",
            ends: "succeeded",
        },
        // An array is not an operation, even one whose items line up with the fields:
        // the real operation failed, and the resource must say so.
        GraphCase {
            name: "json-array-positional",
            answer: raw(200, r#"["x", "succeeded"]"#.into()),
            repeat: 2,
            expect: Some(invalid),
            says: "not a valid operation",
            ends: "failed",
        },
    ]
}

#[tokio::test]
async fn broken_graph_answers_become_conditions_never_a_crash_or_a_hot_loop() {
    let h = Harness::start(&[]).await;
    let history = History::start(h.api());
    let cases = graph_cases();
    for c in &cases {
        let respond: Vec<Value> = (0..c.repeat).map(|_| c.answer.clone()).collect();
        h.emulator
            .add_operation(
                json!({"userId": "victim", "id": format!("op-{}", c.name), "status": c.ends, "respond": respond}),
            )
            .await;
        h.create(c.name, json!({"userId": "victim", "operationId": format!("op-{}", c.name), "credentialsSecretRef": {"name": "graph-credentials"}}))
            .await;
    }
    // Every case ends where its operation does: once Graph answers properly again,
    // tracking goes on.
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    wait_all(&history, &names, Duration::from_secs(90), Seen::finished).await;
    let log = request_log(&h.emulator).await;

    let mut failures = Vec::new();
    let mut table = Table::new(&["graph case", "condition seen", "GETs", "1st→2nd GET", "verdict"]);
    for c in &cases {
        let versions = history.of(c.name);
        let op_id = format!("op-{}", c.name);
        let gets = operation_gets(&log, Some(&op_id));
        let times: Vec<i64> = gets.iter().filter_map(|g| g["timeMs"].as_i64()).collect();
        let mut problems = Vec::new();
        let mut seen_as = "-".to_string();
        let last = versions.last().unwrap();
        let ended_right = match c.ends {
            "succeeded" => last.has("Ready", "True", "Succeeded"),
            _ => last.has("Stalled", "True", "OperationFailed"),
        };
        if last.status.as_deref() != Some(c.ends) || !ended_right {
            problems.push(format!("ended {:?} ({:?}); Graph says {}", last.status, last.reason("Ready"), c.ends));
        }
        match c.expect {
            Some((type_, reason)) => {
                let hit = versions.iter().find(|v| v.has(type_, "True", reason));
                match hit {
                    Some(v) => {
                        let message = &v.condition(type_).unwrap().message;
                        seen_as = format!("{type_}={reason}");
                        if !message.contains(c.says) {
                            problems.push(format!("message {message:?} does not say {:?}", c.says));
                        }
                        if message.contains(&h.token) {
                            problems.push("message shows the token".into());
                        }
                        if v.finished() {
                            problems.push("a passing problem was taken as the end".into());
                        }
                        if !v.has("Ready", "False", reason) {
                            problems.push(format!("Ready is not False/{reason}: {:?}", v.condition("Ready")));
                        }
                    }
                    None => problems.push(format!(
                        "never {type_}={reason}; saw {:?}",
                        versions.iter().map(|v| v.reason("Ready")).collect::<Vec<_>>()
                    )),
                }
            }
            None => {
                seen_as = "Ready at once".into();
                let problem_seen = versions
                    .iter()
                    .any(|v| v.reason("Ready").is_some_and(|r| !matches!(r, "WaitingForGraph" | "Succeeded")));
                if problem_seen {
                    problems.push(format!(
                        "a problem was reported: {:?}",
                        versions.iter().map(|v| v.reason("Ready")).collect::<Vec<_>>()
                    ));
                }
            }
        }
        // Exactly the scripted answers plus the good one: no extra polls, no poll after the end.
        if gets.len() != c.repeat + usize::from(c.expect.is_some()) {
            problems.push(format!("{} GETs for {} scripted answers + 1 good one", gets.len(), c.repeat));
        }
        // Backoff: the first retry after a problem comes 5 s later at the earliest.
        let first_gap = times.get(1).zip(times.first()).map(|(b, a)| b - a);
        if c.expect.is_some() {
            let in_six = times.iter().filter(|&&t| t < times[0] + 6000).count();
            if in_six > 2 {
                problems.push(format!("{in_six} GETs within 6 s of the first"));
            }
            if first_gap.is_some_and(|g| g < 5000) {
                problems.push(format!("retried after {} ms (backoff starts at 5 s)", first_gap.unwrap()));
            }
        }
        let verdict = if problems.is_empty() { "ok".to_string() } else { problems.join("; ") };
        if !problems.is_empty() {
            failures.push(format!("{}: {verdict}", c.name));
        }
        table.row(vec![
            c.name.into(),
            seen_as,
            gets.len().to_string(),
            first_gap.map(|g| format!("{:.1}s", g as f64 / 1000.0)).unwrap_or_else(|| "-".into()),
            verdict,
        ]);
    }
    println!("\n{}", table.render());
    assert_alive(&h, &mut failures).await;
    assert!(failures.is_empty(), "{} problems:\n- {}", failures.len(), failures.join("\n- "));
}

/// Waits until the watch has seen every named resource satisfy `done` (in its latest version).
async fn wait_all(history: &History, names: &[&str], timeout: Duration, done: impl Fn(&Seen) -> bool) {
    let deadline = now_ms() + timeout.as_millis() as i64;
    loop {
        let seen = history.snapshot();
        let open: Vec<String> = names
            .iter()
            .filter(|n| !seen.get(**n).and_then(|v| v.last()).is_some_and(&done))
            .map(|n| format!("{n}: {:?}", seen.get(*n).and_then(|v| v.last()).map(|l| &l.conditions)))
            .collect();
        if open.is_empty() {
            return;
        }
        assert!(now_ms() < deadline, "timed out after {timeout:?}; still waiting for:\n{}", open.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator is still up and healthy, and never panicked.
async fn assert_alive(h: &Harness, failures: &mut Vec<String>) {
    match h.operator.http_get("/healthz").await {
        Ok((200, _)) => {}
        other => failures.push(format!("/healthz: {other:?}")),
    }
    if h.operator.logs().contains("panicked") {
        failures.push(format!("the operator panicked: see {}", h.operator.log_path().display()));
    }
}
