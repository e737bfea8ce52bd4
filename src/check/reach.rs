//! The network side of `check`: Graph and the token authority answer at all, and a
//! credentials Secret gives a token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::Url;

use super::{CheckResult, SecretRef};
use crate::credentials::{AuthSettings, Credentials};
use crate::duration::human;
use crate::metrics::Metrics;
use crate::text::error_chain;

/// Why a host did not answer, told apart because each has its own fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Dns,
    Refused,
    NoRoute,
    Tls,
    Other,
}

/// Classifies a failed request from reqwest's timeout flag and its error chain (hyper,
/// the resolver and rustls only say what happened in their messages).
pub fn classify(timed_out: bool, chain: &str) -> Failure {
    let chain = chain.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| chain.contains(n));
    if timed_out || has(&["timed out", "deadline has elapsed"]) {
        Failure::Timeout
    } else if has(&["dns error", "failed to lookup address", "name or service not known", "no such host"]) {
        Failure::Dns
    } else if has(&["connection refused"]) {
        Failure::Refused
    } else if has(&["network is unreachable", "no route to host", "host is unreachable"]) {
        Failure::NoRoute
    } else if has(&["certificate", "tls", "handshake", "peer sent", "alert"]) {
        Failure::Tls
    } else {
        Failure::Other
    }
}

/// The line for a host that did not answer: the URL, what went wrong, and the likely fix.
pub fn unreachable(url: &Url, failure: Failure, timeout: Duration, chain: &str) -> String {
    let host = url.host_str().unwrap_or("?");
    let port = url.port_or_known_default().map(|p| p.to_string()).unwrap_or_default();
    match failure {
        Failure::Timeout => format!(
            "{url}: no answer within {} (timeout: a firewall, NetworkPolicy or proxy dropping the traffic?)",
            human(timeout)
        ),
        Failure::Dns => format!("{url}: DNS lookup of {host} failed ({chain})"),
        Failure::Refused => format!("{url}: connection refused by {host}:{port} (nothing listens there)"),
        Failure::NoRoute => format!("{url}: no route to {host} ({chain})"),
        Failure::Tls => format!("{url}: TLS handshake failed ({chain})"),
        Failure::Other => format!("{url}: {chain}"),
    }
}

/// Any HTTP answer counts: an unauthenticated GET of a root gets 4xx from Graph and Entra,
/// and that is enough to know DNS, routing, TLS and any proxy work from here.
pub async fn reachable(check: &'static str, http: &reqwest::Client, url: &Url, timeout: Duration) -> CheckResult {
    let started = Instant::now();
    let sent = tokio::time::timeout(timeout, http.get(url.clone()).send()).await;
    let took = started.elapsed().as_millis();
    let over = if url.scheme() == "https" { "over TLS" } else { "over plain http" };
    match sent {
        Ok(Ok(response)) => CheckResult::pass(
            check,
            format!("{url} reachable {over} (HTTP {} in {took} ms)", response.status().as_u16()),
        ),
        Ok(Err(e)) => {
            let chain = error_chain(&e);
            CheckResult::fail(check, unreachable(url, classify(e.is_timeout(), &chain), timeout, &chain))
        }
        Err(_) => CheckResult::fail(check, unreachable(url, Failure::Timeout, timeout, "")),
    }
}

/// A token from `secret` through the operator's own credentials code; only its lifetime is
/// shown, never the token.
pub async fn credentials(
    kube: kube::Client,
    http: reqwest::Client,
    auth: AuthSettings,
    secret: &SecretRef,
) -> CheckResult {
    let credentials = Credentials::new(kube, http, auth, Arc::new(Metrics::default()));
    let name = format!("Secret {}/{}", secret.namespace, secret.name);
    match credentials.token(&secret.namespace, Some(&secret.name)).await {
        Ok(token) => match token.expires_in {
            Some(left) => {
                CheckResult::pass("credentials", format!("{name}: token obtained, expires in {}s", left.as_secs()))
            }
            None => {
                CheckResult::pass("credentials", format!("{name}: holds a static token (used as is; expiry unknown)"))
            }
        },
        Err(e) => CheckResult::fail("credentials", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_by_what_went_wrong() {
        let url = Url::parse("https://login.example").unwrap();
        let five = Duration::from_secs(5);
        let cases = [
            (
                false,
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                Failure::Refused,
                "connection refused by login.example:443",
            ),
            (
                false,
                "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known",
                Failure::Dns,
                "DNS lookup of login.example failed",
            ),
            (true, "error sending request: operation timed out", Failure::Timeout, "no answer within 5s"),
            (
                false,
                "client error (Connect): invalid peer certificate: UnknownIssuer",
                Failure::Tls,
                "TLS handshake failed (client error (Connect): invalid peer certificate: UnknownIssuer)",
            ),
            (
                false,
                "tcp connect error: Network is unreachable (os error 101)",
                Failure::NoRoute,
                "no route to login.example",
            ),
            (
                false,
                "connection closed before message completed",
                Failure::Other,
                "https://login.example/: connection closed",
            ),
        ];
        for (timed_out, chain, want, text) in cases {
            assert_eq!(classify(timed_out, chain), want, "{chain}");
            let line = unreachable(&url, want, five, chain);
            assert!(line.starts_with("https://login.example/: "), "{line}");
            assert!(line.contains(text), "{line}");
        }
    }
}
