//! The one HTTP client for calls to Microsoft (Graph and the token endpoint), and how its
//! failures are told to people.
//!
//! Trust: the system's CA store, read once at start (rustls-platform-verifier, which on
//! Linux reads it through rustls-native-certs: `/etc/ssl/certs/ca-certificates.crt` in the
//! image, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, which *replace* the store), plus the
//! certificates of `--extra-ca-file`, which are *added* to it: a TLS-inspecting proxy's or a
//! private CA works without losing the public roots Graph's own certificate needs.
//!
//! Proxies: `HTTPS_PROXY` / `https_proxy` (also `ALL_PROXY`, and `HTTP_PROXY` for plain-http
//! endpoints) with `NO_PROXY`, read by reqwest. The Kubernetes client is separate: in a pod
//! it talks to the API server directly, whatever these variables say.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::text::error_chain;

/// What the client is built from.
#[derive(Debug, Clone)]
pub struct ClientSettings<'a> {
    /// Timeout of one whole request.
    pub timeout: Duration,
    /// PEM CA certificates trusted in addition to the system's.
    pub extra_ca_file: Option<&'a Path>,
}

/// Built once by `run` and cloned into every user (clones share one connection pool and one
/// TLS configuration).
pub fn client(settings: &ClientSettings<'_>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("pwreset-operator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(settings.timeout)
        // A redirect would carry the bearer token elsewhere; Graph's operation GET does not
        // redirect.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = settings.extra_ca_file {
        let certs = extra_roots(path)?;
        tracing::info!(file = %path.display(), certificates = certs.len(), "trusting extra CA certificates");
        builder = builder.tls_certs_merge(certs);
    }
    // Which store the system roots come from, for a person wondering why a CA is (not) trusted.
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(value) = std::env::var_os(var) {
            tracing::info!(%var, value = %value.to_string_lossy(), "system CA store taken from the environment");
        }
    }
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"] {
        if let Ok(value) = std::env::var(var) {
            tracing::info!(%var, value = %without_userinfo(&value), "proxy setting from the environment");
        }
    }
    builder.build().context("building the HTTP client (is the system CA store readable?)")
}

/// A proxy URL as it may be logged: `user:password@` removed.
fn without_userinfo(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        // NO_PROXY lists, and URLs without credentials, as they are.
        Ok(_) | Err(_) if !value.contains('@') => value.to_string(),
        _ => "(set; not shown: it may hold credentials)".to_string(),
    }
}

/// The certificates of a PEM bundle; refuses a file without one (a wrong key in a Secret
/// or ConfigMap would otherwise silently trust nothing new).
fn extra_roots(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("reading --extra-ca-file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("--extra-ca-file {}: not a PEM certificate bundle", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "--extra-ca-file {} holds no PEM certificate", path.display());
    Ok(certs)
}

/// A failed request on one line; a TLS failure first says so in words, then the chain
/// ("invalid peer certificate: UnknownIssuer" alone leaves a person guessing).
pub fn describe(e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    match tls_error(e) {
        Some(tls) => format!("{}: {chain}", tls_advice(tls)),
        None => chain,
    }
}

/// The rustls error behind a failed request, if TLS is what failed. It arrives as
/// `io::Error(Other, io::Error(InvalidData, rustls::Error))`, and an `io::Error`'s `source()`
/// skips the error it wraps, so unwrap those by hand.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(mut err) = current {
        while let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            err = inner;
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = err.source();
    }
    None
}

fn tls_advice(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "TLS: the server's certificate is not signed by a CA this operator trusts (a TLS-inspecting \
             proxy or a private CA? add its CA with --extra-ca-file, chart value extraCACertificates)"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "TLS: the server's certificate is not valid for this host name"
        }
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => "TLS: the server's certificate has expired or is not valid yet (check the clocks too)",
        rustls::Error::InvalidCertificate(_) => "TLS: the server's certificate was refused",
        _ => "TLS handshake failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = format!("{:#}", extra_roots(&path).unwrap_err());
        assert!(err.contains("--extra-ca-file") && err.contains("ca.pem"), "{err}");
        let missing = format!("{:#}", extra_roots(&dir.path().join("nope.pem")).unwrap_err());
        assert!(missing.contains("reading --extra-ca-file"), "{missing}");
    }

    #[test]
    fn tls_failures_are_found_behind_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper-rustls and hyper-util hand it over.
        let wrapped = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert!(tls_error(&wrapped).is_some());
        assert!(tls_advice(tls_error(&wrapped).unwrap()).contains("--extra-ca-file"));
        assert!(tls_error(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).is_none());
    }

    #[test]
    fn proxy_credentials_are_never_logged() {
        assert_eq!(without_userinfo("http://user:s3cret@proxy.corp:3128"), "http://proxy.corp:3128/");
        assert_eq!(without_userinfo("http://proxy.corp:3128"), "http://proxy.corp:3128");
        assert_eq!(without_userinfo("localhost,.svc,10.0.0.0/8"), "localhost,.svc,10.0.0.0/8");
        assert!(!without_userinfo("user:s3cret@proxy.corp:3128").contains("s3cret"));
    }

    #[test]
    fn each_certificate_problem_is_named() {
        use rustls::CertificateError as C;
        let advice = |c: C| tls_advice(&rustls::Error::InvalidCertificate(c));
        assert!(advice(C::NotValidForName).contains("host name"));
        assert!(advice(C::Expired).contains("expired"));
        assert!(advice(C::Revoked).contains("refused"));
        assert_eq!(tls_advice(&rustls::Error::HandshakeNotComplete), "TLS handshake failed");
    }
}
