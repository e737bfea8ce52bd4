//! Answers of the Graph routes that do not come from the resource: an
//! operation's scripted `respond` queue and the global faults, shaped as
//! Graph (or a proxy in front of it) sends them.

use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::config::ScriptedResponse;
use super::faults::{Fault, FaultScope, Roll};
use super::http::{GRAPH_JSON, RequestCtx, graph_error, json_response, set_header};
use super::state::{Emulator, Settings, lock};

/// Serves one entry of an operation's `respond` queue.
pub async fn scripted(
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

pub fn default_code(status: StatusCode, settings: &Settings) -> &str {
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

pub fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "Too many requests. Retry after the number of seconds in the Retry-After header.",
        503 => "The service is temporarily unavailable. Please retry later.",
        504 => "The gateway timed out.",
        _ => "The request failed (scripted by the emulator).",
    }
}

/// Draws global faults for a successful answer and serves it (or the fault).
pub async fn with_faults(
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
pub async fn apply_roll(ctx: &RequestCtx, roll: Roll, response: Response, body: &Value) -> Response {
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

/// Graph's 404 for an operation it does not know (the code is a setting: see `Settings`).
pub fn not_found(ctx: &RequestCtx, settings: &Settings) -> Response {
    graph_error(
        ctx,
        StatusCode::NOT_FOUND,
        &settings.not_found_code,
        "The requested operation does not exist or one of its queried reference-property objects are not present.",
    )
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;

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
