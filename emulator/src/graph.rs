//! The Graph routes: GET an authentication operation, POST resetPassword.
//!
//! Request handling order mirrors Graph's layers: authentication, then the
//! tenant's throttling budget, then injected faults, then the resource.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::config::{OperationSpec, PASSWORD_METHOD_ID, TokenKind};
use super::faults::FaultScope;
use super::graph_answers::{apply_roll, not_found, scripted, with_faults};
use super::http::{
    API_BODY_LIMIT, BodyError, GRAPH_JSON, LogInfo, RequestCtx, graph_error, json_response, read_body, set_header,
};
use super::identity::{AccessLookup, AccessToken};
use super::operations::{Operation, Poll, PollRequest};
use super::reqlog::RouteKind;
use super::reset_ledger::{self, ResetFault};
use super::state::{Emulator, lock};
use super::throttle::{Decision, usage_header};
use super::users::{self, BadUserId};

const READ_ALL: &str = "UserAuthenticationMethod.Read.All";
const READ_WRITE_ALL: &str = "UserAuthenticationMethod.ReadWrite.All";

/// What Graph sends with a 401: where to get a token, for which resource.
const WWW_AUTHENTICATE_VALUE: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#;

/// A user path segment as understood (`users` module) and the second id.
pub type UserPath = Option<(Result<String, BadUserId>, String)>;

/// `GET /v1.0/users/{user}/authentication/operations/{operation}`
pub async fn get_operation(
    State(emulator): State<Arc<Emulator>>,
    Extension(ctx): Extension<RequestCtx>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let path = path.ok().map(|Path((user, op))| (users::plain(&user), op));
    get_operation_at(&emulator, &ctx, path, &headers).await
}

/// The operation GET, whichever form the user was addressed in.
pub async fn get_operation_at(emulator: &Emulator, ctx: &RequestCtx, path: UserPath, headers: &HeaderMap) -> Response {
    let mut info = LogInfo::new(RouteKind::OperationGet);
    let response = serve_operation(emulator, ctx, path, headers, &mut info).await;
    info.attach(response)
}

async fn serve_operation(
    emulator: &Emulator,
    ctx: &RequestCtx,
    path: UserPath,
    headers: &HeaderMap,
    info: &mut LogInfo,
) -> Response {
    let Some((user, operation_id)) = path else {
        return bad_path(ctx);
    };
    info.operation_id = Some(operation_id.clone());
    let token = match authenticate(emulator, ctx, headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    info.tenant = Some(token.tenant.clone());
    let user = match user {
        Ok(user) => user,
        Err(bad) => return graph_error(ctx, StatusCode::BAD_REQUEST, "BadRequest", &bad.0),
    };
    info.user_id = Some(user.clone());
    // The v1.0 page: application permissions "Not supported". Tests of
    // app-only clients opt in with `allowAppOnly`.
    if token.kind == TokenKind::App && !allows_app_only(emulator, &token) {
        return app_only_refused(ctx);
    }
    if !token.has_any(&[READ_ALL, READ_WRITE_ALL]) {
        return insufficient_privileges(ctx);
    }
    let throttle = match charge_budget(emulator, ctx, &token.tenant) {
        Ok(throttle) => throttle,
        Err(response) => return response,
    };

    let settings = emulator.settings();
    let include_unknown = !settings.evolvable_enums || prefers_unknown_members(headers);
    let poll = lock(&emulator.ops).poll(
        &PollRequest {
            user: &user,
            id: &operation_id,
            tenant: &token.tenant,
            graph_root: &settings.graph_root,
            include_unknown_members: include_unknown,
        },
        Timestamp::now(),
    );
    let mut response = match poll {
        Poll::Scripted { response, normal } => scripted(ctx, &settings, response, normal).await,
        Poll::Found(body) => {
            let body = Value::Object(body);
            with_faults(emulator, ctx, FaultScope::OperationGet, StatusCode::OK, body).await
        }
        Poll::NotFound => {
            let response = not_found(ctx, &settings);
            let roll = lock(&emulator.faults).roll(FaultScope::OperationGet);
            apply_roll(ctx, roll, response, &Value::Null).await
        }
    };
    throttle.decorate(&mut response);
    response
}

/// The tenant's `allowAppOnly`, else the global one.
fn allows_app_only(emulator: &Emulator, token: &AccessToken) -> bool {
    let tenant = lock(&emulator.directory).allows_app_only(&token.tenant);
    tenant.unwrap_or_else(|| emulator.settings().allow_app_only)
}

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
    let token = match authenticate(emulator, ctx, headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    info.tenant = Some(token.tenant.clone());
    let user = match user {
        Ok(user) => user,
        Err(bad) => return graph_error(ctx, StatusCode::BAD_REQUEST, "BadRequest", &bad.0),
    };
    info.user_id = Some(user.clone());
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Resolves the bearer token or answers 401 the way Graph does.
#[allow(clippy::result_large_err, reason = "the error is the HTTP answer, handed straight back to the client")]
fn authenticate(emulator: &Emulator, ctx: &RequestCtx, headers: &HeaderMap) -> Result<AccessToken, Response> {
    let message = match bearer(headers) {
        None => "Access token is empty.",
        Some(token) => match lock(&emulator.directory).lookup_access(token, Timestamp::now()) {
            AccessLookup::Valid(grant) => return Ok(grant),
            AccessLookup::Expired => "Lifetime validation failed, the token is expired.",
            AccessLookup::Unknown => "Access token validation failure.",
        },
    };
    let mut response = graph_error(ctx, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message);
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE_VALUE));
    Err(response)
}

fn app_only_refused(ctx: &RequestCtx) -> Response {
    graph_error(
        ctx,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Application permissions are not supported for this API: use a delegated (signed-in user) token.",
    )
}

/// A `/v1.0/{segment}/…` path whose segment is not `users(…)`: Graph's 404
/// for an unknown segment.
pub fn not_a_segment(ctx: &RequestCtx, segment: &str) -> Response {
    let message = format!("Resource not found for the segment '{segment}'.");
    graph_error(ctx, StatusCode::NOT_FOUND, "BadRequest", &message)
}

fn insufficient_privileges(ctx: &RequestCtx) -> Response {
    graph_error(
        ctx,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

fn bad_path(ctx: &RequestCtx) -> Response {
    graph_error(
        ctx,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        "The request URI is not valid: a path segment could not be decoded.",
    )
}

fn prefers_unknown_members(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("include-unknown-enum-members"))
}

/// Throttling headers to add to an allowed answer.
struct Throttle {
    /// `(usage share, scope)` when above 80% of the limit.
    near_limit: Option<(f64, String)>,
}

impl Throttle {
    fn decorate(&self, response: &mut Response) {
        if let Some((usage, scope)) = &self.near_limit {
            let headers = response.headers_mut();
            set_header(headers, "x-ms-throttle-limit-percentage", &usage_header(*usage));
            set_header(headers, "x-ms-throttle-scope", scope);
        }
    }
}

/// Charges one request to the tenant's budget; a 429 when it is exhausted.
#[allow(clippy::result_large_err, reason = "the error is the HTTP answer, handed straight back to the client")]
fn charge_budget(emulator: &Emulator, ctx: &RequestCtx, tenant: &str) -> Result<Throttle, Response> {
    let decision = lock(&emulator.directory).throttle(tenant, Instant::now());
    let scope = format!("Tenant/ReadWrite/{tenant}");
    match decision {
        None | Some(Decision::Allowed { usage: None }) => Ok(Throttle { near_limit: None }),
        Some(Decision::Allowed { usage: Some(usage) }) => Ok(Throttle { near_limit: Some((usage, scope)) }),
        Some(Decision::Throttled { retry_after_secs, usage }) => {
            let mut response = graph_error(
                ctx,
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Retry after the number of seconds in the Retry-After header.",
            );
            let headers = response.headers_mut();
            set_header(headers, "retry-after", &retry_after_secs.to_string());
            set_header(headers, "x-ms-throttle-scope", &scope);
            set_header(headers, "x-ms-throttle-limit-percentage", &usage_header(usage));
            set_header(headers, "x-ms-throttle-information", "ResourceUnitLimitExceeded");
            set_header(headers, "x-ms-resource-unit", "1");
            Err(response)
        }
    }
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

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn prefer_header_opt_in() {
        let mut h = HeaderMap::new();
        h.insert("prefer", HeaderValue::from_static("odata.maxpagesize=5, include-unknown-enum-members"));
        assert!(prefers_unknown_members(&h));
        h.insert("prefer", HeaderValue::from_static("return=minimal"));
        assert!(!prefers_unknown_members(&h));
    }
}
