//! The key form of a user in Graph's routes, `/v1.0/users('{upn}')/…` (see `users`): the
//! same answers as the plain routes in `graph`, once the key is read.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::http::RequestCtx;
use super::state::Emulator;
use super::users::{key_of, keyed};
use super::{graph, graph_reset};

/// `GET /v1.0/users('{upn}')/authentication/operations/{operation}`
pub async fn get_operation_keyed(
    State(emulator): State<Arc<Emulator>>,
    ctx: Extension<RequestCtx>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    match path {
        Ok(Path((segment, op))) => match key_of(&segment) {
            Some(key) => graph::get_operation_at(&emulator, &ctx, Some((keyed(key), op)), &headers).await,
            None => graph::not_a_segment(&ctx, &segment),
        },
        Err(_) => graph::get_operation_at(&emulator, &ctx, None, &headers).await,
    }
}

/// `POST /v1.0/users('{upn}')/authentication/methods/{method}/resetPassword`
pub async fn reset_password_keyed(
    State(emulator): State<Arc<Emulator>>,
    ctx: Extension<RequestCtx>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match path {
        Ok(Path((segment, method))) => match key_of(&segment) {
            Some(key) => {
                graph_reset::reset_password_at(&emulator, &ctx, Some((keyed(key), method)), &headers, body).await
            }
            None => graph::not_a_segment(&ctx, &segment),
        },
        Err(_) => graph_reset::reset_password_at(&emulator, &ctx, None, &headers, body).await,
    }
}
