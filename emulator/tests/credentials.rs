//! The token endpoint's grants and the credential-related named options (`allowAppOnly`,
//! `refreshTokenSingleUse`), against the real binary.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn refresh_grant_rotates_and_revocation_sticks() {
    let emu = Emulator::start().await;
    let (status, first) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 3599);
    assert_eq!(first["ext_expires_in"], 3599);
    assert_eq!(first["scope"], DELEGATED_SCOPE);
    let rotated = first["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, "rt-initial");

    // As Entra does, the used token stays valid until it expires or is revoked.
    let (status, again) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::OK, "{again}");

    // The new one works and yields a delegated token that reads operations.
    let (status, second) = refresh(&emu, &rotated).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let access = second["access_token"].as_str().unwrap();
    let newest = second["refresh_token"].as_str().unwrap().to_owned();
    emu.create_op(json!({"userId": "u1", "id": "op1", "status": "running"})).await;
    let resp = emu.get(&emu.op_url("u1", "op1"), Some(access)).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Revoked through the admin API: next use fails.
    let (status, _) = emu.admin(Method::POST, "/refresh-tokens/revoke", Some(json!({"token": newest}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = refresh(&emu, &newest).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(err["error_codes"], json!([50173]));

    // A client that now needs an interactive sign-in.
    let (status, fresh) = {
        let (s, _) = emu
            .admin(
                Method::POST,
                "/tenants",
                Some(json!({"id": "t2", "clients": [{"clientId": "c", "refreshTokens": ["rt-t2"]}]})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, v) =
            emu.admin(Method::PATCH, "/tenants/t2/clients/c", Some(json!({"interactionRequired": true}))).await;
        (s, v)
    };
    assert_eq!(status, StatusCode::OK, "{fresh}");
    let (status, err) = emu
        .token(
            "t2",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "c"),
                ("refresh_token", "rt-t2"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("interaction_required")));

    // Unknown tenant and unknown client.
    let (status, err) = emu.token("nowhere", &[("grant_type", "client_credentials"), ("client_id", "x")]).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (_, err) = emu.token(TENANT, &[("grant_type", "client_credentials"), ("client_id", "x")]).await;
    assert_eq!(err["error"], "unauthorized_client");

    // The log names grant types but never carries tokens or secrets.
    let log = serde_json::to_string(&emu.log(0).await).unwrap();
    assert!(log.contains(r#""grantType":"refresh_token""#));
    for secret in ["rt-initial", rotated.as_str(), newest.as_str(), access] {
        assert!(!log.contains(secret), "log leaks a token");
    }
}

#[tokio::test]
async fn single_use_refresh_tokens_are_an_opt_in() {
    let emu = Emulator::start_with(&format!("refreshTokenSingleUse: true\n{CONFIG}")).await;
    let (status, first) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let rotated = first["refresh_token"].as_str().unwrap().to_owned();

    // The used token is dead (overlap 0 s by default).
    let (status, err) = refresh(&emu, "rt-initial").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_grant");
    assert!(err["error_description"].as_str().unwrap().starts_with("AADSTS70000:"));
    assert_eq!(err["error_codes"], json!([70000]));
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(err[field].is_string(), "{field} in {err}");
    }
    let (status, _) = refresh(&emu, &rotated).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn client_credentials_with_secret_and_assertions() {
    let emu = Emulator::start().await;
    let dot_default = "https://graph.microsoft.com/.default";
    let (status, body) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "daemon-secret"),
                ("scope", dot_default),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none());
    let app_token = body["access_token"].as_str().unwrap().to_owned();
    assert!(!app_token.contains("daemon-secret"));

    // Graph documents application permissions as not supported: 403 on the
    // GET and on resetPassword.
    emu.create_op(json!({"userId": "u1", "id": "op1"})).await;
    let (status, _, err) = json_of(emu.get(&emu.op_url("u1", "op1"), Some(&app_token)).await).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("Authorization_RequestDenied")));
    assert!(err["error"]["message"].as_str().unwrap().contains("Application permissions are not supported"));
    let resp = emu
        .http
        .post(emu.url(&format!("/v1.0/users/u1/authentication/methods/{PASSWORD_METHOD}/resetPassword")))
        .bearer_auth(&app_token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, _, err) = json_of(resp).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "Authorization_RequestDenied");

    let (status, err) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "wrong"),
                ("scope", dot_default),
            ],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    let assertion = |client: &'static str, assertion: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
            ("scope", dot_default),
        ]
    };
    let (status, body) = emu.token(TENANT, &assertion("wif", "header.payload.signature")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = emu.token(TENANT, &assertion("wif", "other.jwt.value")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = emu.token(TENANT, &assertion("anywif", "eyJh.eyJz.c2ln")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = emu.token(TENANT, &assertion("anywif", "not-a-jwt")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Another cloud's scope.
    let (status, err) = emu
        .token(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "daemon"),
                ("client_secret", "daemon-secret"),
                ("scope", "https://graph.microsoft.us/.default"),
            ],
        )
        .await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
}

#[tokio::test]
async fn app_only_tokens_read_operations_with_the_allow_app_only_opt_in() {
    let emu = Emulator::start_with(&format!("allowAppOnly: true\n{CONFIG}")).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "daemon"),
        ("client_secret", "daemon-secret"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (status, body) = emu.token(TENANT, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let app_token = body["access_token"].as_str().unwrap().to_owned();
    emu.create_op(json!({"userId": "u1", "id": "op1", "status": "running"})).await;
    let resp = emu.get(&emu.op_url("u1", "op1"), Some(&app_token)).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A tenant's own setting wins over the global one.
    let tenant = json!({"id": "strict", "allowAppOnly": false,
        "clients": [{"clientId": "d2", "clientSecret": "s2"}]});
    let (status, _) = emu.admin(Method::POST, "/tenants", Some(tenant)).await;
    assert_eq!(status, StatusCode::CREATED);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "d2"),
        ("client_secret", "s2"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (_, body) = emu.token("strict", &form).await;
    let strict_token = body["access_token"].as_str().unwrap().to_owned();
    emu.create_op(json!({"userId": "u1", "id": "op2", "tenant": "strict"})).await;
    let resp = emu.get(&emu.op_url("u1", "op2"), Some(&strict_token)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
