//! HTTP plumbing shared by all routes (the router is in `routes`): the middleware that
//! stamps Graph's correlation headers and feeds the request log, error
//! bodies, bounded body reading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::reqlog::{LogEntry, RouteKind};
use super::state::{Emulator, lock};
use super::timefmt::inner_error_date;

/// Graph and token request bodies are tiny; anything bigger is refused.
pub const API_BODY_LIMIT: usize = 64 * 1024;
/// Admin bodies may carry a whole config with thousands of operations.
pub const ADMIN_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Graph's diagnostic header: a small JSON document about the serving node.
const AGS_DIAGNOSTIC: &str = r#"{"ServerInfo":{"DataCenter":"Emulator","Slice":"E","Ring":"0","ScaleUnit":"000","RoleInstance":"graph-emulator","ADSiteName":"LOC"}}"#;

/// Content type of Graph's JSON entity answers.
pub const GRAPH_JSON: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// Per-request identifiers, set by the middleware before any handler runs.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    /// The caller's `client-request-id`, or the request id (as Graph does).
    pub client_request_id: String,
    pub received: Timestamp,
}

/// What a handler understood of a request, for the request log. Handlers
/// attach it to their response; the middleware takes it off again.
#[derive(Debug, Clone, Default)]
pub struct LogInfo {
    pub kind: Option<RouteKind>,
    pub user_id: Option<String>,
    pub operation_id: Option<String>,
    pub tenant: Option<String>,
    pub grant_type: Option<String>,
}

impl LogInfo {
    pub fn new(kind: RouteKind) -> Self {
        LogInfo { kind: Some(kind), ..LogInfo::default() }
    }

    pub fn attach(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}
/// Records a request whose client went away before the answer (see `observe`).
struct Abandoned {
    emulator: Arc<Emulator>,
    entry: Option<LogEntry>,
    started: Instant,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            lock(&self.emulator.log).record(entry);
        }
    }
}

/// The route kind from the raw path, for requests that never got an answer.
fn kind_of_path(method: &str, path: &str) -> RouteKind {
    if path.starts_with("/_emulator") {
        RouteKind::Admin
    } else if method == "GET" && operation_of_path(path).is_some() {
        RouteKind::OperationGet
    } else if path.ends_with("/resetPassword") {
        RouteKind::ResetPassword
    } else if path.ends_with("/oauth2/v2.0/token") {
        RouteKind::Token
    } else if path.ends_with("/oauth2/v2.0/devicecode") {
        RouteKind::DeviceCode
    } else {
        RouteKind::Other
    }
}

/// `{operation}` of `/v1.0/users/{user}/authentication/operations/{operation}`, decoded.
fn operation_of_path(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1.0", "users", _, "authentication", "operations", op] => {
            Some(percent_encoding::percent_decode_str(op).decode_utf8_lossy().into_owned())
        }
        _ => None,
    }
}

/// Stamps correlation headers and records every request in the log.
pub(crate) async fn observe(State(emulator): State<Arc<Emulator>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let received = Timestamp::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let sent_client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned);
    let ctx = RequestCtx {
        client_request_id: sent_client_request_id.clone().unwrap_or_else(|| request_id.clone()),
        request_id,
        received,
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    req.extensions_mut().insert(ctx.clone());

    // A client that gives up (its timeout) drops this future: the request still happened
    // and must be in the log, as 499 (client closed request).
    let mut abandoned = Abandoned {
        emulator: emulator.clone(),
        entry: Some(LogEntry {
            seq: 0,
            time_ms: received.as_millisecond(),
            kind: kind_of_path(&method, &path),
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status: 499,
            duration_ms: 0,
            retry_after: None,
            user_id: None,
            operation_id: operation_of_path(&path),
            tenant: None,
            client_request_id: sent_client_request_id.clone(),
            grant_type: None,
        }),
        started,
    };
    let mut response = next.run(req).await;
    abandoned.entry = None;

    let info = response.extensions_mut().remove::<LogInfo>().unwrap_or_default();
    let kind = info.kind.unwrap_or(if path.starts_with("/_emulator") { RouteKind::Admin } else { RouteKind::Other });
    let headers = response.headers_mut();
    match kind {
        RouteKind::Admin => {}
        RouteKind::Token | RouteKind::DeviceCode => {
            set_header(headers, "x-ms-request-id", &ctx.request_id);
            set_header(headers, "client-request-id", &ctx.client_request_id);
            set_header(headers, "x-ms-ests-server", "2.1.emulator");
        }
        RouteKind::OperationGet | RouteKind::ResetPassword | RouteKind::Other => {
            set_header(headers, "request-id", &ctx.request_id);
            set_header(headers, "client-request-id", &ctx.client_request_id);
            set_header(headers, "x-ms-ags-diagnostic", AGS_DIAGNOSTIC);
        }
    }
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = response.status().as_u16();
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(
        kind = ?kind,
        %method,
        %path,
        status,
        duration_ms,
        request_id = %ctx.request_id,
        "request"
    );
    lock(&emulator.log).record(LogEntry {
        seq: 0, // assigned by the log
        time_ms: received.as_millisecond(),
        kind,
        method,
        path,
        query,
        status,
        duration_ms,
        retry_after,
        user_id: info.user_id,
        operation_id: info.operation_id,
        tenant: info.tenant,
        client_request_id: sent_client_request_id,
        grant_type: info.grant_type,
    });
    response
}

/// The admin API changes what every client sees: loopback callers only,
/// unless the operator of the emulator opted out.
pub(crate) async fn admin_guard(State(allow_remote): State<bool>, req: Request, next: Next) -> Response {
    let loopback =
        req.extensions().get::<ConnectInfo<SocketAddr>>().is_some_and(|ConnectInfo(addr)| addr.ip().is_loopback());
    if allow_remote || loopback {
        next.run(req).await
    } else {
        admin_error(StatusCode::FORBIDDEN, "the admin API only answers loopback callers (see --allow-remote-admin)")
    }
}

pub fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// A Graph error body with `innerError` (its `date` has no time zone, as
/// Graph sometimes sends it).
pub fn graph_error(ctx: &RequestCtx, status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": inner_error_date(ctx.received),
                "request-id": ctx.request_id,
                "client-request-id": ctx.client_request_id,
            }
        }
    });
    json_response(status, "application/json", &body)
}

pub fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    (status, [(CONTENT_TYPE, HeaderValue::from_static(content_type))], body.to_string()).into_response()
}

/// Admin API errors: `{"error": "..."}`.
pub fn admin_error(status: StatusCode, message: &str) -> Response {
    json_response(status, "application/json", &json!({ "error": message }))
}

pub enum BodyError {
    TooLarge,
    Unreadable,
}

/// Reads a request body, refusing more than `limit` bytes (checked as the
/// data arrives, so an endless body cannot fill memory).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Graph-style 404 for paths the emulator does not serve.
pub(crate) async fn unknown_route(ctx: Option<axum::Extension<RequestCtx>>, uri: Uri) -> Response {
    if uri.path().starts_with("/_emulator") {
        return admin_error(StatusCode::NOT_FOUND, "no such admin endpoint");
    }
    let segment = uri.path().rsplit('/').find(|s| !s.is_empty()).unwrap_or_default();
    let message = format!("Resource not found for the segment '{segment}'.");
    match ctx {
        Some(axum::Extension(ctx)) => graph_error(&ctx, StatusCode::NOT_FOUND, "BadRequest", &message),
        None => admin_error(StatusCode::NOT_FOUND, &message),
    }
}

pub(crate) async fn method_not_allowed(ctx: Option<axum::Extension<RequestCtx>>, method: Method, uri: Uri) -> Response {
    let message = format!("The HTTP method '{method}' is not allowed for this resource.");
    match ctx {
        Some(axum::Extension(ctx)) if !uri.path().starts_with("/_emulator") => {
            graph_error(&ctx, StatusCode::METHOD_NOT_ALLOWED, "BadRequest", &message)
        }
        _ => admin_error(StatusCode::METHOD_NOT_ALLOWED, &message),
    }
}
