//! Why no token could be had. Messages name Secrets and keys, never values.

use crate::reason::Reason;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no credentials: set spec.credentialsSecretRef.name (a Secret with delegated credentials, see the README) \
         or start the operator with --default-credentials-secret ({why})"
    )]
    NotConfigured { why: String },
    #[error("Secret {namespace}/{name} does not exist; create it with the Graph credentials (see the README)")]
    SecretNotFound { namespace: String, name: String },
    #[error("{source_name} is not usable: {problem}")]
    Invalid { source_name: String, problem: String },
    #[error("reading Secret {namespace}/{name} failed: {message}")]
    Kubernetes { namespace: String, name: String, message: String },
    #[error(
        "Microsoft Entra rejected the refresh token in {source_name} ({code}): a person must sign in again \
         (`pwreset-operator login` stores a new refreshToken in it)"
    )]
    ReauthenticationRequired { source_name: String, code: String },
    #[error("Microsoft Entra rejected the client of {source_name} ({code}): {description}")]
    ClientRejected { source_name: String, code: String, description: String },
    #[error(
        "Microsoft Entra says the app in {source_name} lacks consent ({code}): an administrator must grant consent to \
         its delegated permission (UserAuthenticationMethod.Read.All); signing in again does not help"
    )]
    ConsentRequired { source_name: String, code: String },
    #[error("the token endpoint did not give a token for {source_name}: {message}")]
    TokenEndpoint { source_name: String, message: String, retry_after: Option<std::time::Duration> },
}

impl CredentialError {
    /// The condition reason.
    pub fn reason(&self) -> Reason {
        match self {
            CredentialError::NotConfigured { .. } => Reason::CredentialsNotConfigured,
            CredentialError::SecretNotFound { .. } => Reason::CredentialsSecretNotFound,
            CredentialError::Invalid { .. } => Reason::InvalidCredentials,
            CredentialError::Kubernetes { .. } => Reason::KubernetesApiError,
            CredentialError::ReauthenticationRequired { .. } => Reason::ReauthenticationRequired,
            CredentialError::ClientRejected { .. } => Reason::CredentialsRejected,
            CredentialError::TokenEndpoint { .. } => Reason::TokenEndpointUnavailable,
            CredentialError::ConsentRequired { .. } => Reason::ConsentRequired,
        }
    }

    /// A person has to act (create or fix the Secret, sign in); retrying cannot help.
    pub fn needs_person(&self) -> bool {
        self.reason().kind() == crate::reason::Kind::Blocked
    }
}
