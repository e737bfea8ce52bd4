//! The Graph routes: GET an authentication operation (POST resetPassword is in
//! `graph_reset`), and what both share: authentication, the tenant's budget, Graph's errors.
//!
//! Request handling order mirrors Graph's layers: authentication, then the
//! tenant's throttling budget, then injected faults, then the resource.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use jiff::Timestamp;
use serde_json::Value;

use super::config::TokenKind;
use super::faults::FaultScope;
use super::graph_answers::{apply_roll, not_found, scripted, with_faults};
use super::http::{LogInfo, RequestCtx, graph_error, set_header};
use super::identity::{AccessLookup, AccessToken};
use super::operations::{Poll, PollRequest};
use super::reqlog::RouteKind;
use super::state::{Emulator, lock};
use super::throttle::{Decision, usage_header};
use super::users::{self, BadUserId};

const READ_ALL: &str = "UserAuthenticationMethod.Read.All";
pub(crate) const READ_WRITE_ALL: &str = "UserAuthenticationMethod.ReadWrite.All";

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
    let (token, user) = match caller_and_user(emulator, ctx, headers, user, info) {
        Ok(found) => found,
        Err(response) => return response,
    };
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Graph's first layers for a user's route, in its order: the caller's token (401 without
/// one), then the user segment (400 when it is no user id); both go to the request log.
#[allow(clippy::result_large_err, reason = "the error is the HTTP answer, handed straight back to the client")]
pub(crate) fn caller_and_user(
    emulator: &Emulator,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    user: Result<String, BadUserId>,
    info: &mut LogInfo,
) -> Result<(AccessToken, String), Response> {
    let token = authenticate(emulator, ctx, headers)?;
    info.tenant = Some(token.tenant.clone());
    let user = user.map_err(|bad| graph_error(ctx, StatusCode::BAD_REQUEST, "BadRequest", &bad.0))?;
    info.user_id = Some(user.clone());
    Ok((token, user))
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

pub(crate) fn app_only_refused(ctx: &RequestCtx) -> Response {
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

pub(crate) fn insufficient_privileges(ctx: &RequestCtx) -> Response {
    graph_error(
        ctx,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

pub(crate) fn bad_path(ctx: &RequestCtx) -> Response {
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
pub(crate) struct Throttle {
    /// `(usage share, scope)` when above 80% of the limit.
    near_limit: Option<(f64, String)>,
}

impl Throttle {
    pub(crate) fn decorate(&self, response: &mut Response) {
        if let Some((usage, scope)) = &self.near_limit {
            let headers = response.headers_mut();
            set_header(headers, "x-ms-throttle-limit-percentage", &usage_header(*usage));
            set_header(headers, "x-ms-throttle-scope", scope);
        }
    }
}

/// Charges one request to the tenant's budget; a 429 when it is exhausted.
#[allow(clippy::result_large_err, reason = "the error is the HTTP answer, handed straight back to the client")]
pub(crate) fn charge_budget(emulator: &Emulator, ctx: &RequestCtx, tenant: &str) -> Result<Throttle, Response> {
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
