//! The admin API under `/_emulator`: JSON in, JSON out, no auth (loopback
//! callers only). Shapes are the config file's (see `config.rs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::config::{Config, Faults, OperationSpec, StaticToken, TenantConfig};
use super::faults::FaultState;
use super::http::{ADMIN_BODY_LIMIT, BodyError, admin_error, read_body};
use super::state::{Emulator, lock};

type AppState = Arc<Emulator>;

/// Default and maximum page size of `GET /_emulator/requests`.
const DEFAULT_PAGE: usize = 10_000;
const MAX_PAGE: usize = 200_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/config", get(get_config).put(put_config))
        .route("/operations", get(list_operations).post(post_operations))
        .route("/operations/{user}/{operation}", get(get_operation).patch(patch_operation).delete(delete_operation))
        .route("/tokens", post(post_token))
        .route("/tenants", get(list_tenants).post(post_tenant))
        .route("/tenants/{tenant}/clients/{client}", patch(patch_client))
        .route("/refresh-tokens/revoke", post(revoke_refresh))
        .route("/credentials", get(credentials))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/requests", get(requests))
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .merge(super::admin_ledger::routes())
}

/// Handlers answer `Ok` or `Err` with a ready response either way.
type AdminResult = Result<Response, Response>;

#[allow(clippy::result_large_err, reason = "the error is the HTTP answer, handed straight back to the client")]
fn ok(status: StatusCode, body: Value) -> AdminResult {
    Ok((status, axum::Json(body)).into_response())
}

fn bad_request(message: impl AsRef<str>) -> Response {
    admin_error(StatusCode::BAD_REQUEST, message.as_ref())
}

/// Parses a JSON body; `empty` is used for an empty body (where allowed).
async fn json_body<T: DeserializeOwned>(body: Body, empty: Option<T>) -> Result<T, Response> {
    let bytes = match read_body(body, ADMIN_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return Err(admin_error(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 32 MiB"));
        }
        Err(BodyError::Unreadable) => return Err(bad_request("body could not be read")),
    };
    if bytes.iter().all(u8::is_ascii_whitespace)
        && let Some(value) = empty
    {
        return Ok(value);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

#[allow(clippy::result_large_err, reason = "the error is the HTTP answer, handed straight back to the client")]
fn path_of<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Response> {
    path.map(|Path(p)| p).map_err(|e| bad_request(format!("invalid path: {e}")))
}

async fn health() -> AdminResult {
    ok(StatusCode::OK, json!({"status": "ok"}))
}

async fn get_config(State(emulator): State<AppState>) -> AdminResult {
    let config = serde_json::to_value(emulator.config())
        .map_err(|e| admin_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    ok(StatusCode::OK, config)
}

async fn put_config(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let config: Config = json_body(body, None).await?;
    let counts = json!({
        "tenants": config.tenants.len(),
        "tokens": config.tokens.len(),
        "operations": config.operations.len(),
    });
    emulator.apply_config(config).map_err(bad_request)?;
    tracing::info!("configuration replaced through the admin API");
    ok(StatusCode::OK, counts)
}

async fn list_operations(State(emulator): State<AppState>) -> AdminResult {
    let settings = emulator.settings();
    let now = Timestamp::now();
    let views: Vec<Value> =
        lock(&emulator.ops).all().into_iter().map(|op| op.view(now, settings.location(&op.user_id, &op.id))).collect();
    ok(StatusCode::OK, Value::Array(views))
}

/// Accepts one operation or an array of them; answers in kind.
async fn post_operations(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let value: Value = json_body(body, None).await?;
    let many = value.is_array();
    let specs = if many {
        serde_json::from_value::<Vec<OperationSpec>>(value)
    } else {
        serde_json::from_value::<OperationSpec>(value).map(|spec| vec![spec])
    }
    .map_err(|e| bad_request(format!("invalid operation: {e}")))?;
    // All or nothing: check every spec before storing any.
    if let Some(e) = specs.iter().find_map(|s| s.validate().err()) {
        return Err(bad_request(e));
    }
    let mut views = Vec::with_capacity(specs.len());
    for spec in specs {
        views.push(emulator.put_operation(spec).map_err(bad_request)?);
    }
    let body = if many { Value::Array(views) } else { views.pop().unwrap_or(Value::Null) };
    ok(StatusCode::CREATED, body)
}

fn no_operation(user: &str, id: &str) -> Response {
    admin_error(StatusCode::NOT_FOUND, &format!("no operation {id} for user {user}"))
}

async fn get_operation(
    State(emulator): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (user, id) = path_of(path)?;
    let settings = emulator.settings();
    let view =
        lock(&emulator.ops).get(&user, &id).map(|op| op.view(Timestamp::now(), settings.location(&op.user_id, &op.id)));
    match view {
        Some(view) => ok(StatusCode::OK, view),
        None => Err(no_operation(&user, &id)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusPatch {
    status: String,
    /// Absent: the operation's own `statusDetail` applies; `null`: null.
    #[serde(default, deserialize_with = "some")]
    status_detail: Option<Option<String>>,
}

fn some<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(de).map(Some)
}

async fn patch_operation(
    State(emulator): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> AdminResult {
    let (user, id) = path_of(path)?;
    let patch: StatusPatch = json_body(body, None).await?;
    let settings = emulator.settings();
    let now = Timestamp::now();
    let view = {
        let mut ops = lock(&emulator.ops);
        ops.get_mut(&user, &id).map(|op| {
            op.set_status(now, patch.status, patch.status_detail);
            op.view(now, settings.location(&op.user_id, &op.id))
        })
    };
    match view {
        Some(view) => ok(StatusCode::OK, view),
        None => Err(no_operation(&user, &id)),
    }
}

async fn delete_operation(
    State(emulator): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> AdminResult {
    let (user, id) = path_of(path)?;
    match lock(&emulator.ops).remove(&user, &id) {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(no_operation(&user, &id)),
    }
}

async fn post_token(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let token: StaticToken = json_body(body, None).await?;
    if token.token.is_empty() || token.tenant.is_empty() {
        return Err(bad_request("token and tenant must not be empty"));
    }
    let echo = json!({
        "tenant": token.tenant,
        "kind": token.kind,
        "scopes": token.scopes,
        "subject": token.subject,
        "expiresAt": token.expires_at,
    });
    lock(&emulator.directory).put_static_token(token);
    ok(StatusCode::CREATED, echo)
}

async fn list_tenants(State(emulator): State<AppState>) -> AdminResult {
    let tenants = lock(&emulator.directory).tenant_configs();
    ok(StatusCode::OK, json!(tenants))
}

async fn post_tenant(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let tenant: TenantConfig = json_body(body, None).await?;
    tenant.validate().map_err(bad_request)?;
    let id = tenant.id.clone();
    let stored = {
        let mut dir = lock(&emulator.directory);
        dir.put_tenant(tenant);
        dir.tenant_configs().into_iter().find(|t| t.id.eq_ignore_ascii_case(&id))
    };
    tracing::info!(tenant = %id, "tenant registered");
    ok(StatusCode::CREATED, json!(stored))
}

/// Fields of a client registration that can be changed in place.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientPatch {
    interaction_required: Option<bool>,
    consent_required: Option<bool>,
    accept_any_assertion: Option<bool>,
    client_secret: Option<String>,
    federated_assertion: Option<String>,
    subject: Option<String>,
    scopes: Option<Vec<String>>,
}

async fn patch_client(
    State(emulator): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> AdminResult {
    let (tenant, client) = path_of(path)?;
    let patch: ClientPatch = json_body(body, None).await?;
    let mut updated = None;
    let found = lock(&emulator.directory).update_client(&tenant, &client, |c| {
        if let Some(v) = patch.interaction_required {
            c.interaction_required = v;
        }
        if let Some(v) = patch.consent_required {
            c.consent_required = v;
        }
        if let Some(v) = patch.accept_any_assertion {
            c.accept_any_assertion = v;
        }
        if let Some(v) = patch.client_secret {
            c.client_secret = Some(v);
        }
        if let Some(v) = patch.federated_assertion {
            c.federated_assertion = Some(v);
        }
        if let Some(v) = patch.subject {
            c.subject = Some(v);
        }
        if let Some(v) = patch.scopes {
            c.scopes = v;
        }
        updated = Some(json!({
            "clientId": c.client_id,
            "interactionRequired": c.interaction_required,
            "consentRequired": c.consent_required,
            "acceptAnyAssertion": c.accept_any_assertion,
            "subject": c.subject,
            "scopes": c.scopes,
        }));
    });
    match (found, updated) {
        (true, Some(view)) => ok(StatusCode::OK, view),
        _ => Err(admin_error(StatusCode::NOT_FOUND, &format!("no client {client} in tenant {tenant}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Revoke {
    token: Option<String>,
    tenant: Option<String>,
    client_id: Option<String>,
}

/// Every credential value the emulator issued or knows, for leak scans.
async fn credentials(State(emulator): State<AppState>) -> AdminResult {
    ok(StatusCode::OK, json!({ "credentials": lock(&emulator.directory).credentials() }))
}

async fn revoke_refresh(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let revoke: Revoke = json_body(body, None).await?;
    let mut dir = lock(&emulator.directory);
    let revoked = match (&revoke.token, &revoke.tenant, &revoke.client_id) {
        (Some(token), None, None) => {
            if !dir.revoke_refresh(token) {
                return Err(admin_error(StatusCode::NOT_FOUND, "unknown refresh token"));
            }
            1
        }
        (None, Some(tenant), Some(client)) => dir.revoke_client_refresh(tenant, client),
        _ => return Err(bad_request("give either {token} or {tenant, clientId}")),
    };
    ok(StatusCode::OK, json!({ "revoked": revoked }))
}

fn faults_view(state: &FaultState) -> Value {
    let mut faults = state.config().clone();
    faults.seed = Some(state.seed());
    json!(faults)
}

async fn get_faults(State(emulator): State<AppState>) -> AdminResult {
    let view = faults_view(&lock(&emulator.faults));
    ok(StatusCode::OK, view)
}

async fn put_faults(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let faults: Faults = json_body(body, None).await?;
    faults.validate().map_err(bad_request)?;
    let state = FaultState::new(faults);
    let view = faults_view(&state);
    *lock(&emulator.faults) = state;
    tracing::info!(faults = %view, "faults replaced");
    ok(StatusCode::OK, view)
}

#[derive(Deserialize)]
struct RequestsQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

async fn requests(
    State(emulator): State<AppState>,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> AdminResult {
    let Query(q) = query.map_err(|e| bad_request(format!("invalid query: {e}")))?;
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (entries, more, last) = {
        let log = lock(&emulator.log);
        let (entries, more) = log.since(since, limit);
        (entries, more, log.last_seq())
    };
    let next_since = entries.last().map_or(since.min(last), |e| e.seq);
    ok(StatusCode::OK, json!({ "entries": entries, "nextSince": next_since, "more": more }))
}

async fn stats(State(emulator): State<AppState>) -> AdminResult {
    let mut stats = json!(lock(&emulator.log).stats());
    let operations = lock(&emulator.ops).len();
    if let Value::Object(map) = &mut stats {
        map.insert("operations".into(), json!(operations));
    }
    ok(StatusCode::OK, stats)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    #[serde(default)]
    all: bool,
}

async fn reset(State(emulator): State<AppState>, body: Body) -> AdminResult {
    let request: ResetRequest = json_body(body, Some(ResetRequest::default())).await?;
    lock(&emulator.ops).clear();
    lock(&emulator.log).clear();
    lock(&emulator.device_codes).clear();
    lock(&emulator.resets).clear();
    {
        let mut dir = lock(&emulator.directory);
        if request.all {
            dir.clear();
        } else {
            dir.reset_buckets();
        }
    }
    if request.all {
        *lock(&emulator.faults) = FaultState::new(Faults::default());
    }
    tracing::info!(all = request.all, "state reset");
    ok(StatusCode::OK, json!({ "reset": true, "all": request.all }))
}
