//! The device authorization grant over HTTP, against the real binary: the devicecode
//! answer, a poll before and after approval, the refresh token it gives working with the
//! refresh grant as the approving user, and what the admin API refuses.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn devicecode(emu: &Emulator, client: &str, scope: &str) -> (StatusCode, Value) {
    let resp = emu
        .http
        .post(emu.url("/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"))
        .form(&[("client_id", client), ("scope", scope)])
        .send()
        .await
        .expect("devicecode request");
    let status = resp.status();
    (status, resp.json().await.expect("devicecode JSON"))
}

async fn poll(emu: &Emulator, device_code: &str) -> (StatusCode, Value) {
    emu.token(
        "contoso.onmicrosoft.com",
        &[("grant_type", GRANT), ("client_id", "headless"), ("device_code", device_code)],
    )
    .await
}

#[tokio::test]
async fn a_device_code_sign_in_yields_a_refresh_token_of_the_approving_user() {
    let emu = Emulator::start().await;
    let (status, code) = devicecode(&emu, "headless", DELEGATED_SCOPE).await;
    assert_eq!(status, StatusCode::OK, "{code}");
    assert_eq!((code["expires_in"].as_u64(), code["interval"].as_u64()), (Some(900), Some(5)));
    assert_eq!(code["verification_uri"], "https://microsoft.com/devicelogin");
    let user_code = code["user_code"].as_str().unwrap();
    assert!(code["message"].as_str().unwrap().contains(user_code));
    let device_code = code["device_code"].as_str().unwrap();

    let (status, pending) = poll(&emu, device_code).await;
    assert_eq!((status, pending["error"].as_str()), (StatusCode::BAD_REQUEST, Some("authorization_pending")));
    assert_eq!(pending["error_codes"], json!([70016]));
    // At once again: sooner than the interval.
    let (_, fast) = poll(&emu, device_code).await;
    assert_eq!(fast["error"], "slow_down");

    let (status, view) = emu
        .admin(Method::POST, &format!("/device-codes/{user_code}/approve"), Some(json!({"userId": "admin-9"})))
        .await;
    assert_eq!((status, view["state"].as_str()), (StatusCode::OK, Some("approved")), "{view}");
    let (status, tokens) = poll(&emu, device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let (_, again) = poll(&emu, device_code).await;
    assert_eq!(again["error"], "invalid_grant", "a device code is spent once redeemed");
    let (_, codes) = emu.admin(Method::GET, "/device-codes", None).await;
    assert_eq!((codes[0]["state"].as_str(), codes[0]["userId"].as_str()), (Some("redeemed"), Some("admin-9")));
    assert_eq!(codes[0]["slowDowns"], 1);

    // The refresh token works with the refresh grant; its tokens act as admin-9, which the
    // self-reset check shows: admin-9 may not reset admin-9's password.
    let (status, refreshed) = refresh(&emu, refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap();
    let reset = |user: &'static str| {
        emu.http
            .post(emu.url(&format!("/v1.0/users/{user}/authentication/methods/{PASSWORD_METHOD}/resetPassword")))
            .bearer_auth(access)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    assert_eq!(reset("admin-9").await.unwrap().status(), StatusCode::FORBIDDEN, "the token acts as admin-9");
    assert_eq!(reset("admin-1").await.unwrap().status(), StatusCode::ACCEPTED, "and not as the client's subject");
    let log = emu.log(0).await;
    assert!(log.iter().any(|e| e["kind"] == "deviceCode"), "{log:#?}");
}

#[tokio::test]
async fn unknown_clients_codes_and_admin_targets_are_refused() {
    let emu = Emulator::start().await;
    let (status, err) = devicecode(&emu, "nobody", DELEGATED_SCOPE).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));
    let (_, err) = poll(&emu, "emu-dc-made-up").await;
    assert_eq!(err["error"], "bad_verification_code");
    let (status, _) = emu.admin(Method::POST, "/device-codes/NOPE12345/approve", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, code) = devicecode(&emu, "headless", DELEGATED_SCOPE).await;
    let user_code = code["user_code"].as_str().unwrap();
    let (status, _) = emu.admin(Method::POST, &format!("/device-codes/{user_code}/decline"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = emu.admin(Method::POST, &format!("/device-codes/{user_code}/approve"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "only pending codes can be approved");
    let (_, declined) = poll(&emu, code["device_code"].as_str().unwrap()).await;
    assert_eq!(declined["error"], "authorization_declined");
}
