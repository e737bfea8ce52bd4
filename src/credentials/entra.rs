//! The Microsoft Entra token endpoint: one form-encoded POST per grant.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{debug, warn};

use super::credential::{AuthSettings, Credential, SecretString, read_token_file};
use super::error::CredentialError;
use crate::http::{ReadError, read_limited, retry_after};
use crate::metrics::Metrics;
use crate::outbound;

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime assumed when the answer does not say (Entra's usual).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3599);

/// What a successful token request gives.
pub struct Grant {
    pub access_token: SecretString,
    pub lifetime: Duration,
    /// Entra returns a new refresh token with every refresh-token grant.
    pub refresh_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// A token answer is a few kilobytes; anything larger is not read.
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// AADSTS65001: the user or administrator has not consented to use the application.
const CONSENT_REQUIRED: u64 = 65001;

pub struct TokenEndpoint {
    http: reqwest::Client,
    settings: AuthSettings,
    metrics: Arc<Metrics>,
}

impl TokenEndpoint {
    pub fn new(http: reqwest::Client, settings: AuthSettings, metrics: Arc<Metrics>) -> Self {
        TokenEndpoint { http, settings, metrics }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// One token request for `credential` (never a static token). `source_name` names
    /// where the credential came from in errors; `tenant` labels the metrics.
    pub async fn request(
        &self,
        source_name: &str,
        credential: &Credential,
        tenant: &str,
    ) -> Result<Grant, CredentialError> {
        let app_scope = format!("{}/.default", self.settings.scope_root);
        let delegated_scope = format!("{}/UserAuthenticationMethod.Read.All offline_access", self.settings.scope_root);
        let mut form: Vec<(&str, String)> = Vec::new();
        let (tenant_id, client_id) = match credential {
            Credential::Static(_) => unreachable!("static tokens need no request"),
            Credential::Refresh { tenant, client_id, client_secret, refresh_token, scope } => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", refresh_token.expose().into()));
                form.push(("scope", scope.clone().unwrap_or(delegated_scope)));
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.expose().into()));
                }
                (tenant, client_id)
            }
            Credential::ClientSecret { tenant, client_id, client_secret, scope } => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_secret", client_secret.expose().into()));
                form.push(("scope", scope.clone().unwrap_or(app_scope)));
                (tenant, client_id)
            }
            Credential::Federated { tenant, client_id, token_file, scope } => {
                // Projected tokens rotate: read the file for every request.
                // The operator's own identity is read from the environment's file, which
                // Secrets may not name: `source_name` tells which one this is.
                let forbidden =
                    if source_name.starts_with("Secret ") { self.settings.forbidden_token_file() } else { None };
                let assertion = read_token_file(token_file, &self.settings.federated_token_dir, forbidden)
                    .map_err(|problem| CredentialError::Invalid { source_name: source_name.into(), problem })?;
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
                form.push(("scope", scope.clone().unwrap_or(app_scope)));
                (tenant, client_id)
            }
        };
        form.push(("client_id", client_id.clone()));
        let endpoint_error = |message: String| CredentialError::TokenEndpoint {
            source_name: source_name.into(),
            message,
            retry_after: None,
        };

        let mut url = self.settings.login_url.clone();
        url.path_segments_mut()
            .map_err(|()| endpoint_error("--login-url cannot carry a path".into()))?
            .pop_if_empty()
            .extend([tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        let response = self
            .http
            .post(url)
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                self.metrics.token_request(tenant, "none");
                endpoint_error(outbound::describe(&e))
            })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match read_limited(response, MAX_TOKEN_BODY).await {
            Ok(body) => body,
            Err(ReadError::TooLarge(max)) => {
                self.metrics.token_request(tenant, "invalid");
                return Err(endpoint_error(format!(
                    "the token endpoint's answer is larger than {max} bytes; not read"
                )));
            }
            Err(ReadError::CutOff(e)) => {
                self.metrics.token_request(tenant, "none");
                return Err(endpoint_error(format!(
                    "the token endpoint's answer was cut off: {}",
                    outbound::describe(&e)
                )));
            }
        };
        if !status.is_success() {
            let err: TokenErrorResponse = serde_json::from_slice(&body).unwrap_or_default();
            let code = err.error.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            self.metrics.token_request(tenant, &code);
            // AADSTS descriptions carry codes and trace ids, never the submitted secrets.
            let description = err.error_description.unwrap_or_default().lines().next().unwrap_or("").to_string();
            warn!(
                source = %source_name,
                code = %code,
                error_codes = ?err.error_codes,
                trace_id = err.trace_id.as_deref().unwrap_or(""),
                correlation_id = err.correlation_id.as_deref().unwrap_or(""),
                "token request refused"
            );
            let source_name = source_name.to_string();
            let consent = err.error_codes.contains(&CONSENT_REQUIRED) || description.contains("AADSTS65001");
            if consent || code == "consent_required" {
                return Err(CredentialError::ConsentRequired { source_name, code });
            }
            if status.as_u16() == 429 || status.is_server_error() || code == "temporarily_unavailable" {
                let message = format!("{code}: {description}");
                return Err(CredentialError::TokenEndpoint { source_name, message, retry_after });
            }
            return Err(match code.as_str() {
                "invalid_grant" | "interaction_required" if matches!(credential, Credential::Refresh { .. }) => {
                    CredentialError::ReauthenticationRequired { source_name, code }
                }
                "invalid_grant"
                | "invalid_client"
                | "unauthorized_client"
                | "invalid_scope"
                | "invalid_request"
                | "interaction_required" => CredentialError::ClientRejected { source_name, code, description },
                _ => CredentialError::TokenEndpoint {
                    source_name,
                    message: format!("{code}: {description}"),
                    retry_after,
                },
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| endpoint_error(format!("the token endpoint's answer is not valid: {e}")))?;
        self.metrics.token_request(tenant, "ok");
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        debug!(source = %source_name, lifetime_s = lifetime.as_secs(), "access token obtained");
        Ok(Grant {
            access_token: SecretString::new(parsed.access_token),
            lifetime,
            refresh_token: parsed.refresh_token.map(SecretString::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer_once(response: String) -> Result<Grant, CredentialError> {
        crate::install_crypto_provider();
        let (login_url, _request) = crate::http::serve_once(response).await;
        let settings = AuthSettings {
            login_url,
            scope_root: "https://graph.microsoft.com".into(),
            federated_token_dir: "/nonexistent".into(),
            workload_identity: None,
            workload_identity_namespaces: Vec::new(),
            allow_own_federated_token: false,
        };
        let endpoint = TokenEndpoint::new(reqwest::Client::new(), settings, Arc::new(Metrics::default()));
        let credential = Credential::Refresh {
            tenant: "t".into(),
            client_id: "c".into(),
            client_secret: None,
            refresh_token: SecretString::new("rt"),
            scope: None,
        };
        tokio::time::timeout(Duration::from_secs(10), endpoint.request("Secret ns/s", &credential, "t/c"))
            .await
            .expect("an answer within 10 s")
    }

    fn http(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn a_huge_answer_is_not_read() {
        let body = format!(r#"{{"access_token":"{}"}}"#, "x".repeat(100 * 1024));
        let err = answer_once(http("200 OK", "", &body)).await.err().expect("refused");
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
    }

    #[tokio::test]
    async fn consent_missing_and_retry_after_are_told_apart() {
        let consent = r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented","error_codes":[65001]}"#;
        let err = answer_once(http("400 Bad Request", "", consent)).await.err().expect("refused");
        assert!(matches!(err, CredentialError::ConsentRequired { .. }), "{err:?}");
        let busy = r#"{"error":"temporarily_unavailable","error_description":"AADSTS90055: throttled"}"#;
        let err = answer_once(http("429 Too Many Requests", "retry-after: 7\r\n", busy)).await.err().expect("refused");
        match err {
            CredentialError::TokenEndpoint { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
        let ok = r#"{"access_token":"a","expires_in":3599,"refresh_token":"r2"}"#;
        let grant = answer_once(http("200 OK", "", ok)).await.expect("a token");
        assert_eq!(grant.lifetime, Duration::from_secs(3599));
    }
}
