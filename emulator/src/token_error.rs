//! Entra's token error shape (`AADSTS…` with the request's ids) and the JSON answers of the
//! token endpoints: shared by the grants (`token`), client authentication (`client_auth`),
//! scripted faults (`token_faults`) and the device-code endpoint.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::http::{RequestCtx, set_header};
use super::timefmt::entra_timestamp;

/// An Entra token error before the per-request ids are added.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenError {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

impl TokenError {
    pub(crate) fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        TokenError { status, error, code, message: message.into() }
    }

    pub(crate) fn missing(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }

    /// The JSON Entra sends: the description repeats the ids, as it does.
    pub fn into_response(self, ctx: &RequestCtx) -> Response {
        let timestamp = entra_timestamp(ctx.received);
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.code, self.message, ctx.request_id, ctx.client_request_id, timestamp
        );
        let body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": ctx.request_id,
            "correlation_id": ctx.client_request_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        token_json(self.status, &body)
    }
}

pub(crate) fn token_json(status: StatusCode, body: &Value) -> Response {
    let mut response =
        (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], body.to_string())
            .into_response();
    let headers = response.headers_mut();
    set_header(headers, "cache-control", "no-store, no-cache");
    set_header(headers, "pragma", "no-cache");
    response
}
