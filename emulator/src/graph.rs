//! The Graph routes: GET an authentication operation, POST resetPassword.
//!
//! Request handling order mirrors Graph's layers: authentication, then the
//! tenant's throttling budget, then injected faults, then the resource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Map, Value, json};

use super::config::{OperationSpec, PASSWORD_METHOD_ID, ScriptedResponse, TokenKind};
use super::faults::{Fault, FaultScope};
use super::http::{
    API_BODY_LIMIT, BodyError, GRAPH_JSON, LogInfo, RequestCtx, graph_error, json_response, read_body, set_header,
};
use super::identity::{AccessLookup, AccessToken};
use super::operations::{Operation, Poll, PollRequest};
use super::reqlog::RouteKind;
use super::state::{Emulator, Settings, lock};
use super::throttle::{Decision, usage_header};

const READ_ALL: &str = "UserAuthenticationMethod.Read.All";
const READ_WRITE_ALL: &str = "UserAuthenticationMethod.ReadWrite.All";

/// What Graph sends with a 401: where to get a token, for which resource.
const WWW_AUTHENTICATE_VALUE: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#;

/// `GET /v1.0/users/{user}/authentication/operations/{operation}`
pub async fn get_operation(
    State(emulator): State<Arc<Emulator>>,
    Extension(ctx): Extension<RequestCtx>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut info = LogInfo::new(RouteKind::OperationGet);
    let response = serve_operation(&emulator, &ctx, path, &headers, &mut info).await;
    info.attach(response)
}

async fn serve_operation(
    emulator: &Emulator,
    ctx: &RequestCtx,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: &HeaderMap,
    info: &mut LogInfo,
) -> Response {
    let Ok(Path((user, operation_id))) = path else {
        return bad_path(ctx);
    };
    info.user_id = Some(user.clone());
    info.operation_id = Some(operation_id.clone());
    let token = match authenticate(emulator, ctx, headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    info.tenant = Some(token.tenant.clone());
    // Older docs: delegated only; newer: application too. Accept both.
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

/// `POST /v1.0/users/{user}/authentication/methods/{method}/resetPassword`
pub async fn reset_password(
    State(emulator): State<Arc<Emulator>>,
    Extension(ctx): Extension<RequestCtx>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut info = LogInfo::new(RouteKind::ResetPassword);
    let response = serve_reset(&emulator, &ctx, path, &headers, body, &mut info).await;
    info.attach(response)
}

async fn serve_reset(
    emulator: &Emulator,
    ctx: &RequestCtx,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: &HeaderMap,
    body: Body,
    info: &mut LogInfo,
) -> Response {
    let Ok(Path((user, method))) = path else {
        return bad_path(ctx);
    };
    info.user_id = Some(user.clone());
    let token = match authenticate(emulator, ctx, headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    info.tenant = Some(token.tenant.clone());
    let throttle = match charge_budget(emulator, ctx, &token.tenant) {
        Ok(throttle) => throttle,
        Err(response) => return response,
    };
    let mut response = reset_checked(emulator, ctx, &user, &method, &token, body, info).await;
    throttle.decorate(&mut response);
    response
}

async fn reset_checked(
    emulator: &Emulator,
    ctx: &RequestCtx,
    user: &str,
    method: &str,
    token: &AccessToken,
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
    if !method.eq_ignore_ascii_case(PASSWORD_METHOD_ID) {
        return graph_error(
            ctx,
            StatusCode::NOT_FOUND,
            "itemNotFound",
            &format!("The authentication method '{method}' was not found."),
        );
    }
    // Delegated ReadWrite.All only: application permissions cannot reset.
    if token.kind != TokenKind::Delegated || !token.has_any(&[READ_WRITE_ALL]) {
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
    response
}

/// The optional `{"newPassword": "..."}` body. Graph rejects unreadable
/// JSON with this very message.
async fn parse_reset_body(body: Body) -> Result<Option<String>, &'static str> {
    const UNREADABLE: &str = "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.";
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

fn not_found(ctx: &RequestCtx, settings: &Settings) -> Response {
    graph_error(
        ctx,
        StatusCode::NOT_FOUND,
        &settings.not_found_code,
        "The requested operation does not exist or one of its queried reference-property objects are not present.",
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

/// Serves one entry of an operation's `respond` queue.
async fn scripted(
    ctx: &RequestCtx,
    settings: &Settings,
    scripted: ScriptedResponse,
    normal: Option<Map<String, Value>>,
) -> Response {
    if let Some(ms) = scripted.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match (scripted.body, normal) {
        (Some(body), _) => {
            let mut response = (status, body).into_response();
            let content_type = scripted
                .content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .unwrap_or(HeaderValue::from_static("application/json"));
            response.headers_mut().insert(CONTENT_TYPE, content_type);
            response
        }
        (None, Some(body)) if status.is_success() => json_response(status, GRAPH_JSON, &Value::Object(body)),
        (None, None) if status.is_success() => not_found(ctx, settings),
        (None, _) => {
            let code = scripted.code.as_deref().unwrap_or_else(|| default_code(status, settings));
            let message = scripted.message.as_deref().unwrap_or_else(|| default_message(status));
            graph_error(ctx, status, code, message)
        }
    };
    if let Some(retry) = &scripted.retry_after {
        set_header(response.headers_mut(), "retry-after", retry.as_str());
    }
    response
}

fn default_code(status: StatusCode, settings: &Settings) -> &str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "InvalidAuthenticationToken",
        403 => "Authorization_RequestDenied",
        404 => &settings.not_found_code,
        409 => "conflict",
        429 => "TooManyRequests",
        500 => "generalException",
        502 => "badGateway",
        503 => "serviceNotAvailable",
        504 => "gatewayTimeout",
        _ => "UnknownError",
    }
}

fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "Too many requests. Retry after the number of seconds in the Retry-After header.",
        503 => "The service is temporarily unavailable. Please retry later.",
        504 => "The gateway timed out.",
        _ => "The request failed (scripted by the emulator).",
    }
}

/// Draws global faults for a successful answer and serves it (or the fault).
async fn with_faults(
    emulator: &Emulator,
    ctx: &RequestCtx,
    scope: FaultScope,
    status: StatusCode,
    body: Value,
) -> Response {
    let roll = lock(&emulator.faults).roll(scope);
    let response = json_response(status, GRAPH_JSON, &body);
    apply_roll(ctx, roll, response, &body).await
}

/// Applies a fault draw to an answer: waits if slow, then replaces the
/// answer when a fault was drawn. `body` is what the answer carries, for
/// the truncated-JSON fault.
async fn apply_roll(ctx: &RequestCtx, roll: super::faults::Roll, response: Response, body: &Value) -> Response {
    if let Some(delay) = roll.delay {
        tokio::time::sleep(delay).await;
    }
    match roll.fault {
        None => response,
        Some(fault) => fault_response(ctx, fault, body),
    }
}

/// A global fault, shaped as Graph (or the proxy in front of it) sends it.
fn fault_response(ctx: &RequestCtx, fault: Fault, body: &Value) -> Response {
    match fault {
        Fault::Unavailable { retry_after_secs } => {
            let mut response = graph_error(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                default_message(StatusCode::SERVICE_UNAVAILABLE),
            );
            if let Some(secs) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Fault::Throttled { retry_after_secs } => {
            let mut response = graph_error(
                ctx,
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                default_message(StatusCode::TOO_MANY_REQUESTS),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Fault::Malformed => {
            let full = if body.is_null() {
                r#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users"}"#.to_owned()
            } else {
                body.to_string()
            };
            // Cut mid-document (on a char boundary): never valid JSON.
            let mut cut = full.len() / 2;
            while !full.is_char_boundary(cut) {
                cut -= 1;
            }
            (
                StatusCode::OK,
                [(CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON))],
                full[..cut].to_owned(),
            )
                .into_response()
        }
        Fault::Html => (
            StatusCode::BAD_GATEWAY,
            [(CONTENT_TYPE, HeaderValue::from_static("text/html"))],
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
        )
            .into_response(),
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

    #[tokio::test]
    async fn malformed_fault_is_not_json() {
        let ctx = RequestCtx { request_id: "r".into(), client_request_id: "c".into(), received: Timestamp::now() };
        // Multi-byte characters: the cut must land on a char boundary.
        let body = json!({"id": "é".repeat(21), "status": "running"});
        let response = fault_response(&ctx, Fault::Malformed, &body);
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with('{'));
        assert!(serde_json::from_str::<Value>(text).is_err());
    }
}
