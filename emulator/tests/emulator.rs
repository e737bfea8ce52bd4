//! Starts the real `graph-emulator` binary on a free port and talks to it
//! over HTTP, the way the operator and the e2e tests do.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout};

#[tokio::test]
async fn graph_calls_need_a_valid_bearer() {
    let emu = Emulator::start().await;
    emu.create_op(json!({"userId": "u1", "id": "op1"})).await;
    let url = emu.op_url("u1", "op1");

    let resp = emu.http.get(&url).header("client-request-id", "my-correlation-id").send().await.unwrap();
    let (status, headers, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(header(&headers, "www-authenticate").starts_with("Bearer "));
    assert_eq!(header(&headers, "client-request-id"), "my-correlation-id");
    let request_id = header(&headers, "request-id");
    assert_eq!(body["error"]["innerError"]["request-id"], request_id);
    assert_eq!(body["error"]["innerError"]["client-request-id"], "my-correlation-id");
    // innerError.date carries no time zone.
    let date = body["error"]["innerError"]["date"].as_str().unwrap();
    assert_eq!(date.len(), "2026-01-02T03:04:05".len(), "{date}");
    assert!(serde_json::from_str::<Value>(header(&headers, "x-ms-ags-diagnostic")).is_ok());
    assert!(header(&headers, "date").ends_with("GMT"));

    for (token, message) in [
        ("unknown", "Access token validation failure."),
        ("static-expired", "Lifetime validation failed, the token is expired."),
    ] {
        let (status, _, body) = json_of(emu.get(&url, Some(token)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["message"], message);
    }

    // Without client-request-id Graph sends its own.
    let resp = emu.get(&url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!header(resp.headers(), "client-request-id").is_empty());

    let (status, _, body) = json_of(emu.get(&emu.op_url("u1", "nope"), Some("static-read")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "itemNotFound");
    let (status, _, body) = json_of(emu.get(&emu.url("/v1.0/me/foo"), Some("static-read")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "BadRequest");
}

#[tokio::test]
async fn operation_progresses_over_time() {
    let emu = Emulator::start().await;
    let view = emu
        .create_op(json!({
            "userId": "alice@contoso.com",
            "id": "2d497bb-57bd-47a6-8749-5ccd0869f2bd",
            "steps": [
                {"status": "running", "afterMs": 200},
                {"status": "succeeded", "afterMs": 600, "statusDetail": "done"}
            ],
            "extraFields": {"percentageComplete": 100, "somethingNew": {"a": 1}}
        }))
        .await;
    let location = view["location"].as_str().unwrap().to_owned();
    assert!(location.ends_with("?aadgdc=DUB02P&aadgsu=ssprprod-a"), "{location}");
    let created: jiff::Timestamp = view["createdAt"].as_str().unwrap().parse().unwrap();

    // Poll as a client would, until terminal or the deadline.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let last = loop {
        let (status, headers, body) = json_of(emu.get(&location, Some("static-read")).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(header(&headers, "content-type").starts_with("application/json"));
        let status = body["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "succeeded" {
            break body;
        }
        assert!(Instant::now() < deadline, "no success in time: {seen:?}");
        sleep(Duration::from_millis(50)).await;
    };
    let order = ["notStarted", "running", "succeeded"];
    let positions: Vec<usize> = seen.iter().map(|s| order.iter().position(|o| o == s).expect("known status")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(last["id"], "2d497bb-57bd-47a6-8749-5ccd0869f2bd");
    assert_eq!(last["statusDetail"], "done");
    assert_eq!(last["percentageComplete"], 100);
    assert_eq!(
        last["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users('alice@contoso.com')/authentication/operations/$entity"
    );
    let created_text = last["createdDateTime"].as_str().unwrap();
    assert_eq!(created_text.parse::<jiff::Timestamp>().unwrap(), created);
    assert_eq!(created_text.split('.').nth(1).unwrap().len(), 8, "7 digits + Z");
    let last_action: jiff::Timestamp = last["lastActionDateTime"].as_str().unwrap().parse().unwrap();
    assert_eq!((last_action - created).get_milliseconds(), 600);

    // Setting the state through the admin API shows on the next GET.
    let path = "/operations/alice@contoso.com/2d497bb-57bd-47a6-8749-5ccd0869f2bd";
    let (status, view) =
        emu.admin(Method::PATCH, path, Some(json!({"status": "failed", "statusDetail": "policy"}))).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let (_, _, body) = json_of(emu.get(&location, Some("static-read")).await).await;
    assert_eq!((body["status"].as_str(), body["statusDetail"].as_str()), (Some("failed"), Some("policy")));

    let (status, _) = emu.admin(Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let resp = emu.get(&location, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scripted_429_queue_then_normal_answers() {
    let emu = Emulator::start().await;
    let view = emu
        .create_op(json!({
            "userId": "u1", "id": "op1", "status": "succeeded",
            "respond": [
                {"status": 429, "retryAfter": "2.128"},
                {"status": 503, "retryAfter": 1},
                {"status": 200, "body": "{\"id\":\"op1\",\"status\":\"running\",\"weird\":"}
            ]
        }))
        .await;
    let url = view["location"].as_str().unwrap();
    let (status, headers, body) = json_of(emu.get(url, Some("static-read")).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "retry-after"), "2.128");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    let (status, headers, body) = json_of(emu.get(url, Some("static-read")).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&headers, "retry-after"), "1");
    assert_eq!(body["error"]["code"], "serviceNotAvailable");
    let resp = emu.get(url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&resp.text().await.unwrap()).is_err());
    let (status, _, body) = json_of(emu.get(url, Some("static-read")).await).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("succeeded")));

    // The log shows what the client met, Retry-After included.
    let log = emu.log(0).await;
    let statuses: Vec<u64> = log.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![429, 503, 200, 200]);
    assert_eq!(log[0]["retryAfter"], "2.128");
    assert_eq!(log[0]["query"], "aadgdc=DUB02P&aadgsu=ssprprod-a");
}

#[tokio::test]
async fn reset_password_returns_a_pollable_location() {
    let emu = Emulator::start().await;
    let (status, tokens) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "headless"),
                ("refresh_token", "rt-initial"),
                ("scope", "UserAuthenticationMethod.ReadWrite.All offline_access"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let reset_url = |user: &str, method: &str| {
        emu.url(&format!("/v1.0/users/{user}/authentication/methods/{method}/resetPassword"))
    };

    // Without `Content-Type: application/json` Graph cannot read the body: 400.
    let resp =
        emu.http.post(reset_url("bob%40contoso.com", PASSWORD_METHOD)).bearer_auth(&access).send().await.unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")), "{body}");

    // Generated password: returned once.
    let resp = emu
        .http
        .post(reset_url("bob%40contoso.com", PASSWORD_METHOD))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let generated = body["newPassword"].as_str().expect("generated password").to_owned();
    assert!(generated.len() >= 12);
    assert!(body["@odata.context"].as_str().unwrap().ends_with("#microsoft.graph.passwordResetResponse"));
    let location = header(&headers, "location").to_owned();
    assert!(
        location.starts_with(&format!("{}/v1.0/users/bob@contoso.com/authentication/operations/", emu.base)),
        "{location}"
    );
    assert!(location.ends_with("?aadgdc=DUB02P&aadgsu=ssprprod-a"), "{location}");

    // The Location URL, polled as given, works (default progression).
    let (status, _, op) = json_of(emu.get(&location, Some(&access)).await).await;
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["status"], "notStarted");
    assert!(location.contains(op["id"].as_str().unwrap()));

    // Caller-chosen password: not echoed.
    let resp = emu
        .http
        .post(reset_url("carol", PASSWORD_METHOD))
        .bearer_auth(&access)
        .json(&json!({"newPassword": "Chosen-Pa55word!"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["newPassword"], Value::Null);

    let refused = |user: &'static str, method: &'static str, token: &'static str, body: &'static str| {
        let request = emu
            .http
            .post(reset_url(user, method))
            .bearer_auth(if token.is_empty() { access.as_str() } else { token })
            .header("content-type", "application/json")
            .body(body);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (status, _, body) = refused("carol", "00000000-0000-0000-0000-000000000000", "", "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("itemNotFound")));
    let (status, _, body) = refused("carol", PASSWORD_METHOD, "", "{not json").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")));
    // Read.All is not enough; the caller's own account is refused.
    let (status, _, _) = refused("carol", PASSWORD_METHOD, "static-read", "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = refused("admin-1", PASSWORD_METHOD, "static-rw", "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("Authorization_RequestDenied")));

    let log = emu.log(0).await;
    let resets: Vec<&Value> = log.iter().filter(|e| e["kind"] == "resetPassword" && e["status"] == 202).collect();
    assert_eq!(resets[0]["userId"], "bob@contoso.com");
    assert_eq!(
        resets[0]["path"],
        format!("/v1.0/users/bob%40contoso.com/authentication/methods/{PASSWORD_METHOD}/resetPassword")
    );
    assert!(resets[0]["operationId"].is_string());
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("Chosen-Pa55word!"));
    assert!(!text.contains(&generated));
}

#[tokio::test]
async fn timestamp_styles() {
    let emu = Emulator::start().await;
    let created = "2026-03-19T12:01:03.4567891Z";
    for (style, created_text) in [
        ("iso7", json!("2026-03-19T12:01:03.4567891Z")),
        ("millis", json!("2026-03-19T12:01:03.456Z")),
        ("offset", json!("2026-03-19T12:01:03.4567891+00:00")),
        ("docsMalformed", json!("2026-03-19T12-01-03.45Z")),
        ("null", Value::Null),
    ] {
        emu.create_op(json!({
            "userId": "u1", "id": style, "createdAt": created,
            "timestampStyle": style, "status": "succeeded", "resourceLocation": null
        }))
        .await;
        let (status, _, body) = json_of(emu.get(&emu.op_url("u1", style), Some("static-read")).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["createdDateTime"], created_text, "{style}");
        assert_eq!(body["lastActionDateTime"], created_text, "{style}");
        assert_eq!(body["resourceLocation"], Value::Null);
    }
}

#[tokio::test]
async fn request_log_and_stats() {
    let emu = Emulator::start().await;
    emu.create_op(json!({"userId": "alice@contoso.com", "id": "op1"})).await;
    let resp = emu
        .http
        .get(emu.url("/v1.0/users/alice%40contoso.com/authentication/operations/op1?aadgdc=X&aadgsu=Y"))
        .bearer_auth("static-read")
        .header("client-request-id", "crid-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let _ = emu.get(&emu.op_url("u9", "missing"), Some("static-read")).await;

    let log = emu.log(0).await;
    assert_eq!(log.len(), 2, "admin calls are not logged: {log:?}");
    let e = &log[0];
    assert_eq!(e["seq"], 1);
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/v1.0/users/alice%40contoso.com/authentication/operations/op1");
    assert_eq!(e["query"], "aadgdc=X&aadgsu=Y");
    assert_eq!(e["status"], 200);
    assert_eq!(e["kind"], "operationGet");
    assert_eq!(e["userId"], "alice@contoso.com");
    assert_eq!(e["operationId"], "op1");
    assert_eq!(e["tenant"], TENANT);
    assert_eq!(e["clientRequestId"], "crid-1");
    assert!(e["timeMs"].as_i64().unwrap() <= before);
    assert_eq!(log[1]["status"], 404);
    assert!(log[1].get("clientRequestId").is_none());

    let since_one = emu.log(1).await;
    assert_eq!(since_one.len(), 1);
    assert_eq!(since_one[0]["seq"], 2);

    let (_, stats) = emu.admin(Method::GET, "/stats", None).await;
    assert_eq!(stats["byKind"]["operationGet"], 2);
    assert_eq!(stats["byStatus"]["404"], 1);
    assert!(stats["byKind"]["admin"].as_u64().unwrap() >= 3);

    let (status, _) = emu.admin(Method::POST, "/reset", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(emu.log(0).await.is_empty());
    let (_, stats) = emu.admin(Method::GET, "/stats", None).await;
    assert_eq!(stats["operations"], 0);
    // Tenants survive a plain reset.
    let (_, tenants) = emu.admin(Method::GET, "/tenants", None).await;
    assert_eq!(tenants.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenant_throttling_and_global_faults() {
    let emu = Emulator::start().await;
    let (status, _) = emu
        .admin(
            Method::POST,
            "/tenants",
            // The test reads with an app-only token: opt in.
            Some(json!({"id": "small", "allowAppOnly": true, "throttle": {"capacity": 3, "refillPerSecond": 0.5}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = emu
        .admin(
            Method::POST,
            "/tokens",
            Some(json!({"token": "small-token", "tenant": "small", "kind": "app",
                        "scopes": ["UserAuthenticationMethod.Read.All"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    emu.create_op(json!({"userId": "u1", "id": "op1"})).await;
    let url = emu.op_url("u1", "op1");

    let mut answers = Vec::new();
    for _ in 0..4 {
        let resp = emu.get(&url, Some("small-token")).await;
        answers.push((resp.status(), resp.headers().clone()));
    }
    assert!(answers[..3].iter().all(|(s, _)| *s == StatusCode::OK));
    assert!(answers[0].1.get("x-ms-throttle-limit-percentage").is_none());
    assert_eq!(header(&answers[2].1, "x-ms-throttle-limit-percentage"), "1.00");
    let (status, headers) = &answers[3];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(headers, "retry-after").parse().unwrap();
    assert!(retry >= 1);
    assert!(header(headers, "x-ms-throttle-scope").contains("small"));
    // Another tenant is not affected.
    assert_eq!(emu.get(&url, Some("static-read")).await.status(), StatusCode::OK);

    // Global faults hit operation GETs but spare the token endpoint.
    let (status, faults) =
        emu.admin(Method::PUT, "/faults", Some(json!({"seed": 7, "rate429": 1.0, "retryAfterSeconds": [3, 4]}))).await;
    assert_eq!((status, faults["seed"].as_u64()), (StatusCode::OK, Some(7)));
    let resp = emu.get(&url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(resp.headers(), "retry-after").parse().unwrap();
    assert!((3..=4).contains(&retry));
    let (status, _) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "daemon-secret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    emu.admin(Method::PUT, "/faults", Some(json!({"rateHtml": 1.0}))).await;
    let resp = emu.get(&url, Some("static-read")).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(header(resp.headers(), "content-type").starts_with("text/html"));
    emu.admin(Method::PUT, "/faults", Some(json!({}))).await;
    assert_eq!(emu.get(&url, Some("static-read")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn config_round_trips_and_sigterm_stops() {
    let mut emu = Emulator::start().await;
    emu.create_op(json!({"userId": "u1", "id": "op1", "appearAfterMs": 60000})).await;
    assert_eq!(
        emu.get(&emu.op_url("u1", "op1"), Some("static-read")).await.status(),
        StatusCode::NOT_FOUND,
        "not visible right after creation"
    );
    let (status, config) = emu.admin(Method::GET, "/config", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["operations"][0]["appearAfterMs"], 60000);
    assert_eq!(config["tenants"][0]["clients"][0]["refreshTokens"], json!(["rt-initial"]));
    let (status, counts) = emu.admin(Method::PUT, "/config", Some(config)).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(counts["operations"], 1);
    let (status, _) = emu.admin(Method::PUT, "/config", Some(json!({"tenantz": []}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let pid = emu.child.id().expect("running");
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    let exit =
        timeout(Duration::from_secs(10), emu.child.wait()).await.expect("stops within 10 s").expect("exit status");
    assert!(exit.success(), "{exit:?}");
}
