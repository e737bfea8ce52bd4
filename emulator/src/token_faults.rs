//! Token-endpoint answers that are not grants: a tenant's scripted queue
//! (`tokenRespond`, deterministic 429/503 with `Retry-After` for tests) and
//! global faults (`tokenEndpointFaults`). Shaped as Entra sends them.

use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::config::ScriptedResponse;
use super::faults::Fault;
use super::http::{RequestCtx, set_header};
use super::token_error::TokenError;

/// One entry of a tenant's `tokenRespond` queue. `None` for a 2xx entry
/// without a body: after its delay, the normal grant answers.
pub async fn scripted_token_answer(ctx: &RequestCtx, scripted: ScriptedResponse) -> Option<Response> {
    if let Some(ms) = scripted.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match scripted.body {
        Some(body) => {
            let content_type = scripted
                .content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .unwrap_or(HeaderValue::from_static("application/json; charset=utf-8"));
            (status, [(CONTENT_TYPE, content_type)], body).into_response()
        }
        None if status.is_success() => return None,
        None => {
            let (default_error, code, default_message) = entra_error_for(status);
            let error = scripted.code.as_deref().and_then(oauth_error).unwrap_or(default_error);
            let message = scripted.message.unwrap_or_else(|| default_message.to_owned());
            TokenError::new(status, error, code, message).into_response(ctx)
        }
    };
    if let Some(retry) = &scripted.retry_after {
        set_header(response.headers_mut(), "retry-after", retry.as_str());
    }
    Some(response)
}

/// The OAuth error and AADSTS code Entra uses for a status.
fn entra_error_for(status: StatusCode) -> (&'static str, u32, &'static str) {
    match status.as_u16() {
        // AADSTS90055 TenantThrottlingError: too many requests for the tenant.
        429 => ("temporarily_unavailable", 90055, "There are too many incoming requests. Please try again later."),
        // AADSTS90033 MsodsServiceUnavailable.
        503 => ("temporarily_unavailable", 90033, "A transient error has occurred. Please try again."),
        500..=599 => ("server_error", 90033, "A transient error has occurred. Please try again."),
        401 => ("invalid_client", 7000215, "Invalid client secret provided."),
        _ => ("invalid_request", 900144, "The request is invalid (scripted by the emulator)."),
    }
}

/// The `error` values of RFC 6749 and Entra, so a scripted `code` is sent verbatim.
fn oauth_error(code: &str) -> Option<&'static str> {
    const KNOWN: [&str; 10] = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "interaction_required",
        "consent_required",
        "temporarily_unavailable",
        "server_error",
    ];
    KNOWN.into_iter().find(|k| *k == code)
}

/// Global faults on the token endpoint (only with `tokenEndpointFaults`).
pub fn token_fault(ctx: &RequestCtx, fault: Fault) -> Response {
    let transient = |status, retry: Option<u64>| {
        let mut response = TokenError::new(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
        .into_response(ctx);
        if let Some(secs) = retry {
            set_header(response.headers_mut(), "retry-after", &secs.to_string());
        }
        response
    };
    match fault {
        Fault::Unavailable { retry_after_secs } => transient(StatusCode::SERVICE_UNAVAILABLE, retry_after_secs),
        Fault::Throttled { retry_after_secs } => transient(StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs)),
        Fault::Malformed => (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/json; charset=utf-8")],
            r#"{"token_type":"Bearer","expires_in":3599,"ext_exp"#,
        )
            .into_response(),
        Fault::Html => (
            StatusCode::BAD_GATEWAY,
            [(CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
    }
}
