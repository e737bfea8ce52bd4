//! The admin routes of the resetPassword ledger (`/_emulator/reset-password…`): what was
//! processed, the scripted faults, and "does this password match?".

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::http::{ADMIN_BODY_LIMIT, read_body};
use super::reset_ledger::Script;
use super::state::{Emulator, lock};

type AppState = Arc<Emulator>;

/// `/_emulator/reset-password…` admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/reset-password", get(ledger_view))
        .route("/reset-password/faults", put(put_script).get(get_script))
        .route("/reset-password/verify", post(verify))
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": message }))).into_response()
}

async fn body_json<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, Response> {
    let bytes = read_body(body, ADMIN_BODY_LIMIT).await.map_err(|_| bad("unreadable body".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid body: {e}")))
}

/// `{"processed": {user: n}, "total": n}` (users lower-cased).
async fn ledger_view(State(emulator): State<AppState>) -> Response {
    let ledger = lock(&emulator.resets);
    let total: u64 = ledger.processed.values().sum();
    axum::Json(json!({ "processed": ledger.processed, "total": total })).into_response()
}

/// Replaces the fault script: `{"faults": [{"fault": "dropAfterProcessing"}, …]}`.
async fn put_script(State(emulator): State<AppState>, body: Body) -> Response {
    match body_json::<Script>(body).await {
        Ok(script) => {
            let n = script.faults.len();
            lock(&emulator.resets).script = script.faults.into();
            axum::Json(json!({ "pending": n })).into_response()
        }
        Err(response) => response,
    }
}

async fn get_script(State(emulator): State<AppState>) -> Response {
    axum::Json(json!({ "pending": lock(&emulator.resets).script.len() })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Verify {
    user_id: String,
    password: String,
}

/// `{"userId", "password"}` → `{"matches": bool}`: is this the user's current password?
async fn verify(State(emulator): State<AppState>, body: Body) -> Response {
    match body_json::<Verify>(body).await {
        Ok(v) => {
            let ledger = lock(&emulator.resets);
            let current: Option<&String> = ledger.passwords.get(&v.user_id.to_ascii_lowercase());
            axum::Json(json!({ "matches": current.is_some_and(|p| *p == v.password), "known": current.is_some() }))
                .into_response()
        }
        Err(response) => response,
    }
}
