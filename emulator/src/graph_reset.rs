//! `POST …/authentication/methods/{id}/resetPassword`: the reset itself, answered as Graph
//! does (202 with `Location` to the operation), with the ledger's faults that prove a
//! caller's at-most-once handling. Same layers as the GET (`graph`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::config::{OperationSpec, PASSWORD_METHOD_ID, TokenKind};
use super::faults::FaultScope;
use super::graph::{
    READ_WRITE_ALL, UserPath, app_only_refused, bad_path, caller_and_user, charge_budget, insufficient_privileges,
};
use super::graph_answers::apply_roll;
use super::http::{
    API_BODY_LIMIT, BodyError, GRAPH_JSON, LogInfo, RequestCtx, graph_error, json_response, read_body, set_header,
};
use super::identity::AccessToken;
use super::operations::Operation;
use super::reqlog::RouteKind;
use super::reset_ledger::{self, ResetFault};
use super::state::{Emulator, lock};
use super::users;

/// `POST /v1.0/users/{user}/authentication/methods/{method}/resetPassword`
pub async fn reset_password(
    State(emulator): State<Arc<Emulator>>,
    Extension(ctx): Extension<RequestCtx>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = path.ok().map(|Path((user, method))| (users::plain(&user), method));
    reset_password_at(&emulator, &ctx, path, &headers, body).await
}

/// resetPassword, whichever form the user was addressed in.
pub async fn reset_password_at(
    emulator: &Emulator,
    ctx: &RequestCtx,
    path: UserPath,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let mut info = LogInfo::new(RouteKind::ResetPassword);
    let response = serve_reset(emulator, ctx, path, headers, body, &mut info).await;
    info.attach(response)
}

async fn serve_reset(
    emulator: &Emulator,
    ctx: &RequestCtx,
    path: UserPath,
    headers: &HeaderMap,
    body: Body,
    info: &mut LogInfo,
) -> Response {
    let Some((user, method)) = path else {
        return bad_path(ctx);
    };
    let (token, user) = match caller_and_user(emulator, ctx, headers, user, info) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let throttle = match charge_budget(emulator, ctx, &token.tenant) {
        Ok(throttle) => throttle,
        Err(response) => return response,
    };
    let mut response = reset_checked(emulator, ctx, &user, &method, &token, headers, body, info).await;
    throttle.decorate(&mut response);
    response
}

#[allow(clippy::too_many_arguments, reason = "one request's parts, passed through once")]
async fn reset_checked(
    emulator: &Emulator,
    ctx: &RequestCtx,
    user: &str,
    method: &str,
    token: &AccessToken,
    headers: &HeaderMap,
    body: Body,
    info: &mut LogInfo,
) -> Response {
    let roll = lock(&emulator.faults).roll(FaultScope::ResetPassword);
    if roll.fault.is_some() {
        let placeholder = json!({"@odata.context": "#microsoft.graph.passwordResetResponse"});
        return apply_roll(ctx, roll, StatusCode::ACCEPTED.into_response(), &placeholder).await;
    }
    if let Some(delay) = roll.delay {
        tokio::time::sleep(delay).await;
    }
    let fault = lock(&emulator.resets).next_fault();
    if let Some(ResetFault::Throttle { retry_after }) = &fault {
        let mut response = graph_error(ctx, StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many requests.");
        set_header(response.headers_mut(), "retry-after", retry_after);
        return response;
    }
    reset_ledger::before_processing(&fault).await;
    if !method.eq_ignore_ascii_case(PASSWORD_METHOD_ID) {
        return graph_error(
            ctx,
            StatusCode::NOT_FOUND,
            "itemNotFound",
            &format!("The authentication method '{method}' was not found."),
        );
    }
    // Delegated ReadWrite.All only: application permissions are not
    // supported here, not even with `allowAppOnly` (which is about the GET).
    if token.kind != TokenKind::Delegated {
        return app_only_refused(ctx);
    }
    if !token.has_any(&[READ_WRITE_ALL]) {
        return insufficient_privileges(ctx);
    }
    if token.subject.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(user)) {
        return graph_error(
            ctx,
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "The password of the signed-in user cannot be reset with this API.",
        );
    }
    // The page lists `Content-Type: application/json` as required; Graph
    // answers a body it cannot read as JSON with 400 BadRequest (the
    // message names the header), not 415.
    if !is_json(headers) {
        return graph_error(ctx, StatusCode::BAD_REQUEST, "BadRequest", UNREADABLE);
    }
    let new_password = match parse_reset_body(body).await {
        Ok(password) => password,
        Err(message) => return graph_error(ctx, StatusCode::BAD_REQUEST, "BadRequest", message),
    };
    let hybrid = lock(&emulator.directory).tenant(&token.tenant).is_some_and(|t| t.hybrid);
    if hybrid && new_password.is_none() {
        return graph_error(
            ctx,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "A new password must be provided for users in a hybrid (synchronized) tenant.",
        );
    }
    if let Some(problem) = new_password.as_deref().and_then(reset_ledger::complexity_problem) {
        return graph_error(ctx, StatusCode::BAD_REQUEST, "Request_BadRequest", problem);
    }

    let settings = emulator.settings();
    let spec = OperationSpec {
        user_id: user.to_owned(),
        id: None,
        user_principal_name: None,
        tenant: Some(token.tenant.clone()),
        created_at: None,
        status: None,
        steps: None,
        timestamp_style: Default::default(),
        resource_location: None,
        status_detail: None,
        extra_fields: None,
        appear_after_ms: None,
        purge_after_ms: None,
        respond: Vec::new(),
    };
    let op = Operation::from_spec(spec, Timestamp::now(), &settings.operation_defaults());
    let location = settings.location(&op.user_id, &op.id);
    info.operation_id = Some(op.id.clone());
    tracing::info!(user = %user, operation = %op.id, "password reset started");
    lock(&emulator.ops).insert(op);

    // The password comes back only when Graph generated it.
    let generated = new_password.is_none().then(generate_password);
    let in_effect = new_password.as_deref().or(generated.as_deref()).unwrap_or_default();
    lock(&emulator.resets).processed(user, in_effect);
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#microsoft.graph.passwordResetResponse", settings.graph_root),
        "newPassword": generated,
    });
    let mut response = json_response(StatusCode::ACCEPTED, GRAPH_JSON, &body);
    let headers = response.headers_mut();
    if !settings.reset_password.omit_location {
        set_header(headers, "location", &location);
    }
    if let Some(retry) = &settings.reset_password.retry_after {
        set_header(headers, "retry-after", retry.as_str());
    }
    reset_ledger::after_processing(fault, response, |status| {
        graph_error(ctx, status, "serviceNotAvailable", "The service is temporarily unavailable.")
    })
    .await
}

/// Graph's message for a body it cannot read as JSON.
const UNREADABLE: &str = "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.";

/// `Content-Type: application/json`, parameters (`charset`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The optional `{"newPassword": "..."}` body. Graph rejects unreadable
/// JSON with this very message.
async fn parse_reset_body(body: Body) -> Result<Option<String>, &'static str> {
    let bytes = match read_body(body, API_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return Err("The request payload is too large."),
        Err(BodyError::Unreadable) => return Err(UNREADABLE),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| UNREADABLE)?;
    let Value::Object(map) = value else {
        return Err(UNREADABLE);
    };
    match map.get("newPassword") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if p.is_empty() => Err("newPassword must not be empty."),
        Some(Value::String(p)) => Ok(Some(p.clone())),
        Some(_) => Err("Invalid value for property 'newPassword': a string is expected."),
    }
}

/// A password satisfying Entra's complexity rules: all four character
/// classes, 16 characters, no look-alikes.
fn generate_password() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"!@#$%^&*-_=+?";
    let mut rng = rand::rng();
    let mut pick = |set: &[u8]| char::from(set[rng.random_range(0..set.len())]);
    let mut chars: Vec<char> = Vec::with_capacity(16);
    for set in [UPPER, LOWER, DIGITS, SYMBOLS] {
        chars.push(pick(set));
    }
    let all = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    while chars.len() < 16 {
        chars.push(pick(&all));
    }
    chars.shuffle(&mut rand::rng());
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_complex() {
        for _ in 0..50 {
            let p = generate_password();
            assert_eq!(p.chars().count(), 16);
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        }
    }
}
