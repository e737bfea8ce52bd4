//! HTTP of the device authorization grant: `POST /{tenant}/oauth2/v2.0/devicecode`,
//! the token grant `urn:ietf:params:oauth:grant-type:device_code` (called by the
//! token endpoint), and `/_emulator/device-codes` to approve or decline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminRefusal, NewCode, Poll, Timing};
use crate::client_auth::authenticate_client;
use crate::config::TokenKind;
use crate::http::{ADMIN_BODY_LIMIT, API_BODY_LIMIT, BodyError, LogInfo, RequestCtx, admin_error, read_body};
use crate::identity::AccessToken;
use crate::reqlog::RouteKind;
use crate::state::{Emulator, lock};
use crate::token::{consent_missing, granted, parse_delegated_scope};
use crate::token_error::{TokenError, token_json};

type Form = HashMap<String, String>;

fn unknown_tenant(tenant: &str) -> TokenError {
    TokenError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

fn unknown_client(client_id: &str, tenant: &str) -> TokenError {
    TokenError::new(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
    )
}

async fn read_form(body: Body) -> Result<Form, TokenError> {
    match read_body(body, API_BODY_LIMIT).await {
        Ok(bytes) => Ok(url::form_urlencoded::parse(&bytes).into_owned().filter(|(_, v)| !v.is_empty()).collect()),
        Err(BodyError::TooLarge) => Err(TokenError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            90020,
            "The request body is too large.",
        )),
        Err(BodyError::Unreadable) => Err(TokenError::missing("client_id")),
    }
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`
pub async fn devicecode_endpoint(
    State(emulator): State<Arc<Emulator>>,
    Extension(ctx): Extension<RequestCtx>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let mut info = LogInfo::new(RouteKind::DeviceCode);
    let answer = async {
        let Ok(Path(tenant)) = path else { return Err(unknown_tenant("")) };
        info.tenant = Some(tenant.clone());
        let form = read_form(body).await?;
        start(&emulator, &tenant, &form, Instant::now())
    }
    .await;
    let response = match answer {
        Ok(body) => token_json(StatusCode::OK, &body),
        Err(error) => error.into_response(&ctx),
    };
    info.attach(response)
}

/// Checks the request and issues a device code and a user code.
fn start(emulator: &Emulator, tenant: &str, form: &Form, now: Instant) -> Result<Value, TokenError> {
    let settings = emulator.settings();
    let config = &settings.device_code;
    let client_id = form.get("client_id").ok_or_else(|| TokenError::missing("client_id"))?;
    let scope = form.get("scope").ok_or_else(|| TokenError::missing("scope"))?;
    let request = {
        let dir = lock(&emulator.directory);
        let tenant_id = dir.tenant(tenant).map(|t| t.id.clone()).ok_or_else(|| unknown_tenant(tenant))?;
        let client = dir.client(tenant, client_id).ok_or_else(|| unknown_client(client_id, &tenant_id))?;
        let scope = parse_delegated_scope(scope, &settings.graph_root)?;
        NewCode {
            tenant: tenant_id,
            client_id: client.client_id.clone(),
            permissions: scope.permissions,
            oidc: scope.oidc,
        }
    };
    let timing = Timing {
        expires_in: Duration::from_secs(config.expires_in_seconds),
        interval: Duration::from_secs(config.interval_seconds),
        auto_approve_after: config.auto_approve_after_seconds.map(Duration::from_secs),
        auto_approve_user: config.auto_approve_user_id.clone(),
    };
    let (device_code, user_code) = lock(&emulator.device_codes).issue(request, &timing, now);
    let uri = &config.verification_uri;
    Ok(json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": config.expires_in_seconds,
        "interval": config.announced_interval(),
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
    }))
}

/// The token grant with a device code: `form` carries `client_id` and `device_code`.
pub fn grant(emulator: &Emulator, tenant: &str, form: &Form) -> Result<Value, TokenError> {
    let settings = emulator.settings();
    let client_id = form.get("client_id").ok_or_else(|| TokenError::missing("client_id"))?;
    let tenant_id = {
        let dir = lock(&emulator.directory);
        let tenant_id = dir.tenant(tenant).map(|t| t.id.clone()).ok_or_else(|| unknown_tenant(tenant))?;
        let client = dir.client(tenant, client_id).ok_or_else(|| unknown_client(client_id, &tenant_id))?;
        // A confidential client must prove itself; a public one must not try.
        authenticate_client(client, form)?;
        tenant_id
    };
    let device_code = form.get("device_code").ok_or_else(|| TokenError::missing("device_code"))?;
    let poll = lock(&emulator.device_codes).poll(device_code, &tenant_id, client_id, Instant::now());
    let refused = |error, code, message: &str| Err(TokenError::new(StatusCode::BAD_REQUEST, error, code, message));
    let (request, subject) = match poll {
        Poll::Approved { request, subject } => (request, subject),
        Poll::Pending => {
            return refused(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            );
        }
        Poll::SlowDown => {
            return refused("slow_down", 70016, "Polled faster than the interval: add 5 seconds to it (RFC 8628).");
        }
        Poll::Declined => {
            return refused("authorization_declined", 70000, "The end user declined the sign-in request.");
        }
        Poll::Expired => return refused("expired_token", 70019, "Verification code expired."),
        Poll::BadCode => return refused("bad_verification_code", 70000, "The provided device code is not valid."),
        Poll::Redeemed => {
            return refused(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the device code was already redeemed.",
            );
        }
    };
    let mut dir = lock(&emulator.directory);
    let client = dir.client(tenant, client_id).cloned().ok_or_else(|| unknown_client(client_id, &tenant_id))?;
    if client.consent_required {
        return Err(consent_missing(&client.client_id, "all requested permissions"));
    }
    let all_granted = granted(&client);
    let permissions = if request.permissions.is_empty() {
        all_granted
    } else {
        if let Some(missing) =
            request.permissions.iter().find(|p| !all_granted.iter().any(|g| g.eq_ignore_ascii_case(p)))
        {
            return Err(consent_missing(&client.client_id, missing));
        }
        request.permissions
    };
    let now = Timestamp::now();
    let lifetime = settings.access_token_lifetime_seconds;
    let expires_at = now.checked_add(SignedDuration::from_secs(i64::try_from(lifetime).unwrap_or(i64::MAX))).ok();
    let mut scopes: Vec<String> = permissions.iter().map(|p| format!("{}/{p}", settings.graph_root)).collect();
    scopes.extend(request.oidc.iter().cloned());
    let access_token = dir.issue_access(
        AccessToken {
            tenant: tenant_id,
            client_id: Some(client.client_id.clone()),
            kind: TokenKind::Delegated,
            scopes: permissions,
            subject: subject.clone().or_else(|| client.subject.clone()),
            expires_at,
        },
        now,
    );
    let mut answer = json!({
        "token_type": "Bearer",
        "scope": scopes.join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    // As Entra: a refresh token only when offline_access was asked for.
    if request.oidc.iter().any(|s| s.eq_ignore_ascii_case("offline_access")) {
        answer["refresh_token"] = json!(dir.issue_refresh_as(tenant, client_id, subject));
    }
    Ok(answer)
}

pub fn admin_routes() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/device-codes", get(list))
        .route("/device-codes/{user_code}/approve", post(approve))
        .route("/device-codes/{user_code}/decline", post(decline))
}

async fn list(State(emulator): State<Arc<Emulator>>) -> Response {
    axum::Json(lock(&emulator.device_codes).list(Instant::now())).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Approval {
    /// The user who signs in; default: the client's `subject`.
    #[serde(default)]
    user_id: Option<String>,
}

fn admin_answer(result: Result<Value, AdminRefusal>, user_code: &str) -> Response {
    match result {
        Ok(view) => axum::Json(view).into_response(),
        Err(AdminRefusal::Unknown) => {
            admin_error(StatusCode::NOT_FOUND, &format!("no device code with user code {user_code}"))
        }
        Err(AdminRefusal::NotPending(state)) => {
            admin_error(StatusCode::CONFLICT, &format!("user code {user_code} is {state}, not pending"))
        }
    }
}

async fn approve(
    State(emulator): State<Arc<Emulator>>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let Ok(Path(user_code)) = path else { return admin_error(StatusCode::BAD_REQUEST, "bad user code") };
    let approval: Approval = match read_body(body, ADMIN_BODY_LIMIT).await {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Approval::default(),
        // `null` is no approval details, as an empty body.
        Ok(bytes) => match serde_json::from_slice::<Option<Approval>>(&bytes) {
            Ok(a) => a.unwrap_or_default(),
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
        },
        Err(_) => return admin_error(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    let result = lock(&emulator.device_codes).approve(&user_code, approval.user_id, Instant::now());
    tracing::info!(user_code = %user_code, ok = result.is_ok(), "device code approval");
    admin_answer(result, &user_code)
}

async fn decline(State(emulator): State<Arc<Emulator>>, path: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(user_code)) = path else { return admin_error(StatusCode::BAD_REQUEST, "bad user code") };
    let result = lock(&emulator.device_codes).decline(&user_code, Instant::now());
    tracing::info!(user_code = %user_code, ok = result.is_ok(), "device code declined");
    admin_answer(result, &user_code)
}
