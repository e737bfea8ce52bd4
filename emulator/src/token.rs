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
mod tests {
    use super::*;
    use crate::client_auth::JWT_BEARER;
    use crate::config::TenantConfig;
    use crate::identity::AccessLookup;

    const ROOT: &str = "https://graph.microsoft.com";

    fn directory() -> Directory {
        let tenant: TenantConfig = serde_json::from_value(json!({
            "id": "tid",
            "clients": [
                {"clientId": "public", "refreshTokens": ["rt0"], "subject": "admin-1",
                 "scopes": ["UserAuthenticationMethod.ReadWrite.All"]},
                {"clientId": "conf", "clientSecret": "s3cret", "refreshTokens": ["rt1"]},
                {"clientId": "wif", "federatedAssertion": "a.b.c"},
                {"clientId": "any", "acceptAnyAssertion": true,
                 "scopes": ["UserAuthenticationMethod.Read.All"]}
            ]
        }))
        .unwrap();
        let mut d = Directory::new();
        d.put_tenant(tenant);
        d
    }

    fn run(d: &mut Directory, pairs: &[(&str, &str)]) -> Result<Value, TokenError> {
        let form = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let settings = GrantSettings {
            graph_root: ROOT,
            access_token_lifetime: Duration::from_secs(3599),
            refresh_single_use: Some(Duration::ZERO),
        };
        grant(d, &settings, "tid", &form, Timestamp::now(), Instant::now())
    }

    fn refresh(client: &str, token: &str) -> Vec<(&'static str, String)> {
        vec![
            ("grant_type", "refresh_token".into()),
            ("client_id", client.into()),
            ("refresh_token", token.into()),
            ("scope", "https://graph.microsoft.com/UserAuthenticationMethod.Read.All offline_access".into()),
        ]
    }

    fn as_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn refresh_rotates() {
        let mut d = directory();
        // Granted ReadWrite.All does not cover a request for Read.All.
        let err = run(&mut d, &as_pairs(&refresh("public", "rt0"))).unwrap_err();
        assert_eq!((err.error, err.code), ("invalid_grant", 65001));

        let mut req = refresh("public", "rt0");
        req[3].1 = "UserAuthenticationMethod.ReadWrite.All offline_access".into();
        let ok = run(&mut d, &as_pairs(&req)).unwrap();
        assert_eq!(ok["scope"], "https://graph.microsoft.com/UserAuthenticationMethod.ReadWrite.All offline_access");
        let next = ok["refresh_token"].as_str().unwrap().to_owned();
        let access = ok["access_token"].as_str().unwrap();
        match d.lookup_access(access, Timestamp::now()) {
            AccessLookup::Valid(t) => {
                assert_eq!(t.kind, TokenKind::Delegated);
                assert_eq!(t.subject.as_deref(), Some("admin-1"));
            }
            _ => panic!("issued token must be valid"),
        }
        let err = run(&mut d, &as_pairs(&req)).unwrap_err();
        assert_eq!(err.error, "invalid_grant");
        req[2].1 = next;
        assert!(run(&mut d, &as_pairs(&req)).is_ok());
    }

    #[test]
    fn confidential_refresh_needs_the_secret() {
        let mut d = directory();
        let mut req = refresh("conf", "rt1");
        req[3].1 = ".default".into();
        let err = run(&mut d, &as_pairs(&req)).unwrap_err();
        assert_eq!((err.status, err.error), (StatusCode::UNAUTHORIZED, "invalid_client"));
        req.push(("client_secret", "wrong".into()));
        assert_eq!(run(&mut d, &as_pairs(&req)).unwrap_err().code, 7000215);
        req.last_mut().unwrap().1 = "s3cret".into();
        assert!(run(&mut d, &as_pairs(&req)).is_ok());
    }

    #[test]
    fn client_credentials_variants() {
        let mut d = directory();
        let base = [("grant_type", "client_credentials"), ("scope", "https://graph.microsoft.com/.default")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        let ok = run(&mut d, &with(&[("client_id", "conf"), ("client_secret", "s3cret")])).unwrap();
        assert!(ok.get("refresh_token").is_none());
        assert_eq!(ok["expires_in"], 3599);
        let assertion = [("client_id", "wif"), ("client_assertion_type", JWT_BEARER), ("client_assertion", "a.b.c")];
        assert!(run(&mut d, &with(&assertion)).is_ok());
        let wrong = [("client_id", "wif"), ("client_assertion_type", JWT_BEARER), ("client_assertion", "x.y.z")];
        assert_eq!(run(&mut d, &with(&wrong)).unwrap_err().code, 700213);
        let any = [
            ("client_id", "any"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
        ];
        assert!(run(&mut d, &with(&any)).is_ok());
        let junk = [("client_id", "any"), ("client_assertion_type", JWT_BEARER), ("client_assertion", "not a jwt")];
        assert_eq!(run(&mut d, &with(&junk)).unwrap_err().code, 50027);
        // A public client has no credential for app-only tokens.
        assert_eq!(run(&mut d, &with(&[("client_id", "public")])).unwrap_err().error, "invalid_client");
    }

    #[test]
    fn scope_errors() {
        let mut d = directory();
        let creds = [("grant_type", "client_credentials"), ("client_id", "conf"), ("client_secret", "s3cret")];
        let with_scope = |scope: &'static str| {
            let mut v = creds.to_vec();
            v.push(("scope", scope));
            v
        };
        let err = run(&mut d, &with_scope("https://graph.microsoft.us/.default")).unwrap_err();
        assert_eq!((err.error, err.code), ("invalid_scope", 500011));
        let err = run(&mut d, &with_scope("https://graph.microsoft.com/User.Read")).unwrap_err();
        assert_eq!(err.code, 1002012);
        let err = run(&mut d, &creds).unwrap_err();
        assert_eq!((err.error, err.code), ("invalid_request", 900144));
    }

    #[test]
    fn request_errors() {
        let mut d = directory();
        let err = run(&mut d, &[("grant_type", "password")]).unwrap_err();
        assert_eq!(err.error, "unsupported_grant_type");
        let err = run(&mut d, &[("grant_type", "client_credentials"), ("client_id", "nope")]).unwrap_err();
        assert_eq!((err.error, err.code), ("unauthorized_client", 700016));
        let settings = GrantSettings {
            graph_root: ROOT,
            access_token_lifetime: Duration::from_secs(1),
            refresh_single_use: Some(Duration::ZERO),
        };
        let form = [("grant_type".to_string(), "client_credentials".to_string())].into();
        let err = grant(&mut d, &settings, "other", &form, Timestamp::now(), Instant::now()).unwrap_err();
        assert_eq!((err.error, err.code), ("invalid_request", 90002));
    }

    #[test]
    fn interaction_required_blocks_refresh() {
        let mut d = directory();
        d.update_client("tid", "public", |c| c.interaction_required = true);
        let mut req = refresh("public", "rt0");
        req[3].1 = ".default offline_access".into();
        let err = run(&mut d, &as_pairs(&req)).unwrap_err();
        assert_eq!(err.error, "interaction_required");
    }
}
