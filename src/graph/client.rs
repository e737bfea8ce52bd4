//! The HTTP client for Graph's operation endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use url::Url;

use super::model::{ErrorBody, LongRunningOperation};
use crate::credentials::SecretString;
use crate::http::{ReadError, read_limited, retry_after};
use crate::metrics::Metrics;
use crate::outbound;
use crate::text::truncate;

/// Answers larger than this are refused unread: an operation is a few hundred bytes.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest Graph message quoted in a condition.
const MAX_QUOTED_MESSAGE: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphErrorKind {
    /// 404: not created yet, purged, or a wrong id.
    NotFound,
    /// 401: the token was not accepted.
    Unauthorized,
    /// 403: the token lacks the permission or the Entra role.
    Forbidden,
    /// 403 to an app-only token: Microsoft documents application permissions as not
    /// supported for this API.
    AppOnlyForbidden,
    /// 429 (or 503 with Retry-After): slow down.
    Throttled,
    /// 5xx, connection failures.
    Unavailable,
    /// No answer within the request timeout.
    Timeout,
    /// A 2xx answer that is not a valid operation (truncated, HTML, wrong types, too big).
    Malformed,
    /// Any other 4xx: the request itself is wrong.
    Rejected,
    /// The operation URL points to a host other than the configured Graph: no request made.
    ForeignHost,
    /// The location is not an operation URL this operator polls (userinfo, dot segments,
    /// encoded slashes, another path): no request made.
    BadLocation,
}

/// A failed Graph call, safe to show: it never contains a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GraphError {
    pub kind: GraphErrorKind,
    pub status: Option<u16>,
    /// Graph's `error.code`; branch on this, never on the message.
    pub code: Option<String>,
    /// Graph's `request-id` header (or `innerError.request-id`): Microsoft support asks for it.
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
    /// Graph's `x-ms-ags-diagnostic` header (where the request was served), for support.
    pub diagnostic: Option<String>,
    /// The `client-request-id` this operator sent (None: no request was sent).
    pub client_request_id: Option<String>,
    pub message: String,
}

impl GraphError {
    pub(crate) fn new(kind: GraphErrorKind, message: impl Into<String>) -> Self {
        GraphError {
            kind,
            status: None,
            code: None,
            request_id: None,
            retry_after: None,
            diagnostic: None,
            client_request_id: None,
            message: message.into(),
        }
    }
}

#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    root: Url,
    metrics: Arc<Metrics>,
}

impl GraphClient {
    pub fn new(http: reqwest::Client, root: Url, metrics: Arc<Metrics>) -> Self {
        GraphClient { http, root, metrics }
    }

    /// The Graph root this client was configured with.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The shared outbound HTTP client (resetPassword builds its own request on it).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET the operation. `tenant` labels the metrics.
    pub async fn get_operation(
        &self,
        url: &Url,
        token: &SecretString,
        tenant: &str,
    ) -> Result<LongRunningOperation, GraphError> {
        let started = Instant::now();
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let result = self.get_operation_inner(url, token, &client_request_id).await.map_err(|mut e| {
            e.client_request_id = Some(client_request_id.clone());
            e
        });
        if let Err(e) = &result {
            // What Microsoft support asks for, with every failure: both request ids and the
            // gateway's diagnostic header.
            tracing::info!(
                url = %url,
                status = e.status,
                request_id = e.request_id.as_deref().unwrap_or(""),
                client_request_id = %client_request_id,
                diagnostic = e.diagnostic.as_deref().unwrap_or(""),
                error = %e.message,
                "Graph request failed"
            );
        }
        let code = match &result {
            Ok(_) => "200".to_string(),
            Err(e) => e.status.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
        };
        self.metrics.graph_request(tenant, &code, started.elapsed());
        result
    }

    async fn get_operation_inner(
        &self,
        url: &Url,
        token: &SecretString,
        client_request_id: &str,
    ) -> Result<LongRunningOperation, GraphError> {
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .header("client-request-id", client_request_id)
            .header("return-client-request-id", "true")
            .header(reqwest::header::ACCEPT, "application/json")
            // Evolvable enums: without this Graph hides new status values as unknownFutureValue.
            .header("Prefer", "include-unknown-enum-members")
            .send()
            .await
            .map_err(transport_error)?;

        let status = response.status();
        let headers = response.headers().clone();
        let request_id = header_str(&headers, "request-id");
        let diagnostic = header_str(&headers, "x-ms-ags-diagnostic");
        let retry_after = retry_after(&headers);
        let body = read_bounded(response).await;

        if status.is_success() {
            let body =
                body.map_err(|e| GraphError { request_id: request_id.clone(), diagnostic: diagnostic.clone(), ..e })?;
            // An operation is a JSON object: serde would also fill the struct from an array, by position.
            let parsed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                .and_then(|object| serde_json::from_value::<LongRunningOperation>(serde_json::Value::Object(object)));
            return parsed.map_err(|e| GraphError {
                kind: GraphErrorKind::Malformed,
                status: Some(status.as_u16()),
                code: None,
                request_id,
                retry_after: None,
                diagnostic,
                client_request_id: None,
                message: format!("Graph answered {status} with a body that is not a valid operation: {e}"),
            });
        }

        let parsed: Option<ErrorBody> = body.ok().and_then(|b| serde_json::from_slice(&b).ok());
        let code = parsed.as_ref().and_then(|b| b.error.code.clone());
        let graph_message = parsed.as_ref().and_then(|b| b.error.message.clone()).unwrap_or_default();
        let request_id = request_id
            .or_else(|| parsed.as_ref().and_then(|b| b.error.inner_error.as_ref()).and_then(|i| i.request_id.clone()));
        let kind = match status {
            StatusCode::NOT_FOUND => GraphErrorKind::NotFound,
            StatusCode::UNAUTHORIZED => GraphErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => GraphErrorKind::Forbidden,
            StatusCode::TOO_MANY_REQUESTS => GraphErrorKind::Throttled,
            StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => GraphErrorKind::Throttled,
            s if s.is_server_error() => GraphErrorKind::Unavailable,
            StatusCode::REQUEST_TIMEOUT => GraphErrorKind::Timeout,
            _ => GraphErrorKind::Rejected,
        };
        let mut message = format!("Graph answered {}", status.as_u16());
        if let Some(code) = &code {
            message.push_str(&format!(" {code}"));
        }
        if !graph_message.is_empty() {
            message.push_str(": ");
            message.push_str(&truncate(&graph_message, MAX_QUOTED_MESSAGE));
        }
        Err(GraphError {
            kind,
            status: Some(status.as_u16()),
            code,
            request_id,
            retry_after,
            diagnostic,
            client_request_id: None,
            message,
        })
    }
}

fn transport_error(e: reqwest::Error) -> GraphError {
    // reqwest's message names the URL (no credentials in it) and the cause.
    let kind = if e.is_timeout() { GraphErrorKind::Timeout } else { GraphErrorKind::Unavailable };
    let what = if e.is_timeout() { "timed out" } else { "failed" };
    GraphError::new(kind, format!("the request to Graph {what}: {}", outbound::describe(&e)))
}

async fn read_bounded(response: reqwest::Response) -> Result<Vec<u8>, GraphError> {
    read_limited(response, MAX_BODY_BYTES).await.map_err(|e| match e {
        ReadError::TooLarge(max) => {
            GraphError::new(GraphErrorKind::Malformed, format!("Graph's answer is larger than {max} bytes; not read"))
        }
        ReadError::CutOff(e) => {
            let err = transport_error(e);
            GraphError::new(GraphErrorKind::Malformed, format!("Graph's answer was cut off: {}", err.message))
        }
    })
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|s| truncate(s, 128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_request_asks_for_new_enum_members_and_carries_a_client_request_id() {
        crate::install_crypto_provider();
        let body = r#"{"id":"o","status":"someNewValue"}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (root, request) = crate::http::serve_once(answer).await;
        let client = GraphClient::new(reqwest::Client::new(), root.clone(), Arc::new(Metrics::default()));
        let url = root.join("/v1.0/users/u/authentication/operations/o").unwrap();
        let op =
            tokio::time::timeout(Duration::from_secs(10), client.get_operation(&url, &SecretString::new("t"), "x"))
                .await
                .expect("an answer within 10 s")
                .unwrap();
        assert_eq!(op.status.as_deref(), Some("someNewValue"), "an unknown value is mirrored as sent");
        let request = request.await.unwrap();
        assert!(request.contains("\r\nprefer: include-unknown-enum-members\r\n"), "{request}");
        assert!(request.contains("\r\nclient-request-id: "), "{request}");
    }
}
