//! The router: every route of the emulator and the middleware around them. Kept apart from
//! `http` (the plumbing the routes share), so the routes depend on the plumbing and not the
//! other way round.

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use super::http::{admin_guard, method_not_allowed, observe, unknown_route};
use super::state::Emulator;
use super::{admin, device_code, graph, graph_keyed, graph_reset, token};

/// Graph's and the token endpoint's routes, and the admin API under `/_emulator` (refused to
/// other machines unless `allow_remote_admin`).
pub fn router(emulator: Arc<Emulator>, allow_remote_admin: bool) -> Router {
    let admin = admin::routes()
        .merge(device_code::admin_routes())
        .route_layer(middleware::from_fn_with_state(allow_remote_admin, admin_guard));
    Router::new()
        .route("/v1.0/users/{user}/authentication/operations/{operation}", get(graph::get_operation))
        .route("/v1.0/users/{user}/authentication/methods/{method}/resetPassword", post(graph_reset::reset_password))
        // `/users('$x@contoso.com')/…`: the key form of a user (see `users`).
        .route("/v1.0/{users}/authentication/operations/{operation}", get(graph_keyed::get_operation_keyed))
        .route("/v1.0/{users}/authentication/methods/{method}/resetPassword", post(graph_keyed::reset_password_keyed))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_endpoint))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code::devicecode_endpoint))
        .nest("/_emulator", admin)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(emulator.clone(), observe))
        .with_state(emulator)
}
