//! Client authentication at the token endpoint: confidential clients prove themselves with
//! a secret or a federated assertion, public clients must not send either.

use std::collections::HashMap;

use axum::http::StatusCode;

use super::config::ClientConfig;
use super::token_error::TokenError;

/// The client assertion type of a signed JWT (a certificate credential).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    None,
    Secret,
    Assertion,
}

pub(crate) fn no_credential() -> TokenError {
    TokenError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

/// Checks the client credential the request carries against the client's
/// registration: confidential clients must present one, public ones must not.
pub(crate) fn authenticate_client(
    client: &ClientConfig,
    form: &HashMap<String, String>,
) -> Result<Credential, TokenError> {
    let secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    if (secret.is_some() || assertion.is_some()) && !client.is_confidential() {
        return Err(TokenError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        ));
    }
    if let Some(secret) = secret {
        return if client.client_secret.as_deref() == Some(secret.as_str()) {
            Ok(Credential::Secret)
        } else {
            Err(TokenError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    client.client_id
                ),
            ))
        };
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return Err(TokenError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                format!("client_assertion_type must be '{JWT_BEARER}'."),
            ));
        }
        if client.federated_assertion.as_deref() == Some(assertion.as_str()) {
            return Ok(Credential::Assertion);
        }
        if client.accept_any_assertion {
            return if looks_like_jwt(assertion) {
                Ok(Credential::Assertion)
            } else {
                Err(TokenError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    50027,
                    "JWT token is invalid or malformed.",
                ))
            };
        }
        return Err(TokenError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700213,
            "No matching federated identity record found for presented assertion subject.",
        ));
    }
    if client.is_confidential() {
        return Err(no_credential());
    }
    Ok(Credential::None)
}

/// Three dot-separated base64url parts, header and payload non-empty (the
/// signature may be empty for unsigned tokens).
fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    let b64url = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=');
    parts.len() == 3 && !parts[0].is_empty() && !parts[1].is_empty() && parts.iter().all(|p| b64url(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("a.b."));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b c.d"));
    }
}
