//! The token endpoint: `POST /{tenant}/oauth2/v2.0/token`, grants
//! `refresh_token` and `client_credentials`, with Entra's error shapes
//! (the device-code grant is handed to `device_code`).
//!
//! The grant logic is synchronous and works on the locked directory, so it
//! is tested without HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::client_auth::{Credential, authenticate_client, no_credential};
use super::config::{ClientConfig, TokenKind};
use super::device_code;
use super::faults::FaultScope;
use super::http::{API_BODY_LIMIT, BodyError, LogInfo, RequestCtx, read_body};
use super::identity::{AccessToken, Directory, RefreshRefusal, permission_name};
use super::reqlog::RouteKind;
use super::state::{Emulator, lock};
use super::token_error::{TokenError, token_json};
use super::token_faults::{scripted_token_answer, token_fault};

/// OpenID Connect scopes: they ask for tokens, not Graph permissions.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Settings the grants need.
pub struct GrantSettings<'a> {
    pub graph_root: &'a str,
    pub access_token_lifetime: Duration,
    /// `None`: refresh tokens stay valid after use (Entra); `Some(overlap)`:
    /// single use, with that grace period (`refreshTokenSingleUse`).
    pub refresh_single_use: Option<Duration>,
}

/// `POST /{tenant}/oauth2/v2.0/token`
pub async fn token_endpoint(
    State(emulator): State<Arc<Emulator>>,
    Extension(ctx): Extension<RequestCtx>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let mut info = LogInfo::new(RouteKind::Token);
    let response = serve_token(&emulator, &ctx, path, body, &mut info).await;
    info.attach(response)
}

async fn serve_token(
    emulator: &Emulator,
    ctx: &RequestCtx,
    path: Result<Path<String>, PathRejection>,
    body: Body,
    info: &mut LogInfo,
) -> Response {
    let Ok(Path(tenant)) = path else {
        return TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            "Tenant not found: the tenant segment could not be decoded.",
        )
        .into_response(ctx);
    };
    info.tenant = Some(tenant.clone());

    let queued = lock(&emulator.directory).next_token_response(&tenant);
    if let Some(scripted) = queued
        && let Some(response) = scripted_token_answer(ctx, scripted).await
    {
        return response;
    }
    let roll = lock(&emulator.faults).roll(FaultScope::Token);
    if let Some(delay) = roll.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = roll.fault {
        return token_fault(ctx, fault);
    }

    let bytes = match read_body(body, API_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return TokenError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                90020,
                "The request body is too large.",
            )
            .into_response(ctx);
        }
        Err(BodyError::Unreadable) => return TokenError::missing("grant_type").into_response(ctx),
    };
    let form: HashMap<String, String> =
        url::form_urlencoded::parse(&bytes).into_owned().filter(|(_, v)| !v.is_empty()).collect();
    info.grant_type = form.get("grant_type").cloned();
    if info.grant_type.as_deref() == Some(device_code::GRANT_TYPE) {
        return match device_code::device_code_grant(emulator, &tenant, &form) {
            Ok(body) => token_json(StatusCode::OK, &body),
            Err(error) => error.into_response(ctx),
        };
    }

    let settings = emulator.settings();
    let grant_settings = GrantSettings {
        graph_root: &settings.graph_root,
        access_token_lifetime: Duration::from_secs(settings.access_token_lifetime_seconds),
        refresh_single_use: settings
            .refresh_token_single_use
            .then(|| Duration::from_secs(settings.refresh_token_overlap_seconds)),
    };
    let result =
        grant(&mut lock(&emulator.directory), &grant_settings, &tenant, &form, Timestamp::now(), Instant::now());
    match result {
        Ok(body) => token_json(StatusCode::OK, &body),
        Err(error) => {
            tracing::debug!(
                tenant = %tenant,
                error = error.error,
                code = error.code,
                "token request refused"
            );
            error.into_response(ctx)
        }
    }
}

/// Runs one grant against the directory.
pub fn grant(
    dir: &mut Directory,
    settings: &GrantSettings<'_>,
    tenant: &str,
    form: &HashMap<String, String>,
    now: Timestamp,
    mono_now: Instant,
) -> Result<Value, TokenError> {
    let param = |name: &str| form.get(name).map(String::as_str);
    let grant_type = param("grant_type").ok_or_else(|| TokenError::missing("grant_type"))?;
    if !matches!(grant_type, "refresh_token" | "client_credentials") {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let tenant_id = dir
        .tenant(tenant)
        .map(|t| t.id.clone())
        .ok_or_else(|| {
            TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            )
        })?;
    let client_id = param("client_id").ok_or_else(|| TokenError::missing("client_id"))?;
    let client = dir.client(tenant, client_id).cloned().ok_or_else(|| {
        TokenError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory '{tenant_id}'."),
        )
    })?;
    let credential = authenticate_client(&client, form)?;
    let expires_at =
        now.checked_add(SignedDuration::try_from(settings.access_token_lifetime).unwrap_or(SignedDuration::MAX)).ok();
    let lifetime = settings.access_token_lifetime.as_secs();

    if grant_type == "client_credentials" {
        if credential == Credential::None {
            return Err(no_credential());
        }
        let scope = param("scope").ok_or_else(|| TokenError::missing("scope"))?;
        check_app_scope(scope, settings.graph_root, &tenant_id)?;
        let access_token = dir.issue_access(
            AccessToken {
                tenant: tenant_id,
                client_id: Some(client.client_id.clone()),
                kind: TokenKind::App,
                scopes: granted(&client),
                subject: None,
                expires_at,
            },
            now,
        );
        return Ok(json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
            "scope": scope,
        }));
    }

    let refresh_token = param("refresh_token").ok_or_else(|| TokenError::missing("refresh_token"))?;
    let scope = param("scope").ok_or_else(|| TokenError::missing("scope"))?;
    let requested = parse_delegated_scope(scope, settings.graph_root)?;
    if client.interaction_required {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "interaction_required",
            50076,
            format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{}'.",
                settings.graph_root
            ),
        ));
    }
    if client.consent_required {
        return Err(consent_missing(&client.client_id, "all requested permissions"));
    }
    let all_granted = granted(&client);
    let permissions = if requested.permissions.is_empty() {
        all_granted
    } else {
        if let Some(missing) =
            requested.permissions.iter().find(|p| !all_granted.iter().any(|g| g.eq_ignore_ascii_case(p)))
        {
            return Err(consent_missing(&client.client_id, missing));
        }
        requested.permissions
    };
    dir.redeem_refresh(refresh_token, tenant, client_id, mono_now, settings.refresh_single_use)
        .map_err(refresh_refused)?;
    // A device-code sign-in's chain acts as the person who signed in.
    let signed_in = dir.refresh_subject(refresh_token);
    let subject = signed_in.clone().or_else(|| client.subject.clone());
    let new_refresh = dir.issue_refresh_as(tenant, client_id, signed_in);
    let mut scopes: Vec<String> = permissions.iter().map(|p| format!("{}/{p}", settings.graph_root)).collect();
    scopes.extend(requested.oidc);
    let access_token = dir.issue_access(
        AccessToken {
            tenant: tenant_id,
            client_id: Some(client.client_id.clone()),
            kind: TokenKind::Delegated,
            scopes: permissions,
            subject,
            expires_at,
        },
        now,
    );
    Ok(json!({
        "token_type": "Bearer",
        "scope": scopes.join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
        "refresh_token": new_refresh,
    }))
}

/// AADSTS65001: an admin must grant consent; signing in again does not help.
pub(crate) fn consent_missing(client_id: &str, missing: &str) -> TokenError {
    TokenError::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource. Missing scope: {missing}."
        ),
    )
}

pub(crate) fn granted(client: &ClientConfig) -> Vec<String> {
    client.scopes.iter().map(|s| permission_name(s).to_owned()).collect()
}

/// App-only tokens: exactly `{graphRoot}/.default`.
fn check_app_scope(scope: &str, graph_root: &str, tenant: &str) -> Result<(), TokenError> {
    let scope = scope.trim();
    let Some(resource) = scope.strip_suffix("/.default") else {
        return Err(TokenError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    if resource.trim_end_matches('/').eq_ignore_ascii_case(graph_root) {
        return Ok(());
    }
    Err(TokenError::new(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        500011,
        format!(
            "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
        ),
    ))
}

pub(crate) struct DelegatedScope {
    /// Graph permission names; empty means "everything granted" (`.default`).
    pub permissions: Vec<String>,
    pub oidc: Vec<String>,
}

/// Splits a delegated `scope` into Graph permissions and OIDC scopes;
/// another resource's scopes (another cloud's Graph) are refused.
pub(crate) fn parse_delegated_scope(scope: &str, graph_root: &str) -> Result<DelegatedScope, TokenError> {
    let mut parsed = DelegatedScope { permissions: Vec::new(), oidc: Vec::new() };
    for item in scope.split_whitespace() {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(item)) {
            parsed.oidc.push(item.to_owned());
            continue;
        }
        let name = if item.contains("://") {
            let resource = item.rsplit_once('/').map_or("", |(r, _)| r);
            if !resource.trim_end_matches('/').eq_ignore_ascii_case(graph_root) {
                return Err(TokenError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    70011,
                    format!(
                        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {item} is not valid."
                    ),
                ));
            }
            permission_name(item)
        } else {
            item
        };
        if name != ".default" && !name.is_empty() {
            parsed.permissions.push(name.to_owned());
        }
    }
    Ok(parsed)
}

fn refresh_refused(refusal: RefreshRefusal) -> TokenError {
    let (code, message) = match refusal {
        RefreshRefusal::Unknown => (70000, "Provided grant is invalid or malformed."),
        RefreshRefusal::OtherClient => {
            (70000, "Provided grant is invalid or malformed: the refresh token was issued to another client or tenant.")
        }
        RefreshRefusal::Revoked => (
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
        ),
        RefreshRefusal::Reused => {
            (70000, "Provided grant is invalid or malformed: the refresh token was already redeemed.")
        }
    };
    TokenError::new(StatusCode::BAD_REQUEST, "invalid_grant", code, message)
}

#[cfg(test)]
mod tests;
