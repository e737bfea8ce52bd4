//! `pwreset-operator check`: is this installation able to work? One line per check and an
//! exit code (0: all passed), for people after an install and for `helm test`.
//!
//! It takes every flag `run` takes (the chart's test pod passes the Deployment's own), so it
//! checks the Graph and login URLs, namespace and leader-election settings `run` would use.
//! The checks themselves are in `probes` (CRD, RBAC) and `reach` (HTTP, credentials); this
//! file holds the flags, the order and the output, which is pure.

mod probes;
mod reach;

use std::time::Duration;

use crate::duration;
use crate::text::for_people;

pub use crate::cli::{CheckArgs, SecretRef};
pub use probes::{Permission, permissions};
pub use reach::{Failure, classify, unreachable};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl CheckResult {
    pub fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        CheckResult { check, ok: true, detail: detail.into() }
    }

    pub fn fail(check: &'static str, detail: impl Into<String>) -> Self {
        CheckResult { check, ok: false, detail: detail.into() }
    }
}

/// `ok   crd         passwordresetoperations.pwreset.dev established (v1alpha1)`. Details come
/// partly from servers (error texts), so they are made safe for a terminal and bounded.
pub fn line(result: &CheckResult) -> String {
    let status = if result.ok { "ok" } else { "FAIL" };
    format!("{status:<4} {:<11} {}", result.check, for_people(&result.detail, 600))
}

/// The report and the exit code: 0 when every check passed (and there was one), else 1.
pub fn report(results: &[CheckResult]) -> (String, i32) {
    let text: String = results.iter().map(|r| line(r) + "\n").collect();
    let code = if !results.is_empty() && results.iter().all(|r| r.ok) { 0 } else { 1 };
    (text, code)
}

/// Runs every check; none stops the others, so one run shows everything that is wrong.
pub async fn check(args: &CheckArgs) -> Vec<CheckResult> {
    let timeout = args.timeout;
    let graph_url = crate::endpoints::graph_url(&args.run);
    let login_url = crate::endpoints::login_url(&args.run);
    // The operator's own client: the same trusted roots (--extra-ca-file) and proxies.
    let settings = crate::outbound::ClientSettings { timeout, extra_ca_file: args.run.extra_ca_file.as_deref() };
    let http = match crate::outbound::client(&settings) {
        Ok(http) => http,
        Err(e) => return vec![CheckResult::fail("http", format!("{e:#}"))],
    };
    let kube = bounded(timeout, "connecting to Kubernetes", async {
        kube::Client::try_default().await.map_err(|e| format!("connecting to Kubernetes: {e}"))
    })
    .await;

    let cluster = async {
        match &kube {
            Ok(client) => {
                let crd = bounded_check(timeout, "crd", probes::crd(client)).await;
                let rbac = match permissions(args, std::env::var("POD_NAMESPACE").ok().as_deref()) {
                    Ok(wanted) => probes::rbac(client, &wanted, timeout).await,
                    Err(e) => vec![CheckResult::fail("rbac", e)],
                };
                std::iter::once(crd).chain(rbac).collect()
            }
            Err(e) => vec![CheckResult::fail("kubernetes", e.clone())],
        }
    };
    let endpoint = |check: &'static str, url: &anyhow::Result<url::Url>| {
        let http = http.clone();
        let url = match url {
            Ok(url) => Ok(url.clone()),
            Err(e) => Err(format!("{e:#}")),
        };
        async move {
            match url {
                Ok(url) => reach::reachable(check, &http, &url, timeout).await,
                Err(e) => CheckResult::fail(check, e),
            }
        }
    };
    let (cluster, graph, login) =
        tokio::join!(cluster, endpoint("graph", &graph_url), endpoint("login-host", &login_url));

    let mut results: Vec<CheckResult> = cluster;
    results.extend([graph, login]);
    if let Some(secret) = &args.credentials_secret {
        let result = match (&kube, &login_url) {
            (Ok(client), Ok(login)) => {
                let auth = crate::endpoints::auth_settings(&args.run, login.clone());
                bounded_check(timeout, "credentials", reach::credentials(client.clone(), http.clone(), auth, secret))
                    .await
            }
            (Err(_), _) => CheckResult::fail("credentials", "not checked: no connection to Kubernetes"),
            (_, Err(e)) => CheckResult::fail("credentials", format!("not checked: {e:#}")),
        };
        results.push(result);
    }
    results
}

/// `work`, or a failure naming `what` once `timeout` has passed: no check hangs the run.
async fn bounded<T>(timeout: Duration, what: &str, work: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("{what}: no answer within {}", duration::human(timeout))),
    }
}

async fn bounded_check(timeout: Duration, check: &'static str, work: impl Future<Output = CheckResult>) -> CheckResult {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => CheckResult::fail(check, format!("no answer within {}", duration::human(timeout))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_aligned_line_per_check_and_exit_code_one_on_any_failure() {
        let pass = CheckResult::pass("crd", "passwordresetoperations.pwreset.dev established (v1alpha1)");
        let fail = CheckResult::fail("login-host", "https://login.example: connection refused");
        assert_eq!(line(&pass), "ok   crd         passwordresetoperations.pwreset.dev established (v1alpha1)");
        assert_eq!(line(&fail), "FAIL login-host  https://login.example: connection refused");
        assert_eq!(report(std::slice::from_ref(&pass)), (format!("{}\n", line(&pass)), 0));
        let (text, code) = report(&[pass.clone(), fail.clone()]);
        assert_eq!(code, 1);
        assert_eq!(text.lines().collect::<Vec<_>>(), [line(&pass), line(&fail)]);
        // Nothing checked is not a pass.
        assert_eq!(report(&[]).1, 1);
    }

    #[test]
    fn details_from_servers_cannot_break_the_line() {
        let hostile = CheckResult::fail("graph", format!("x\n\u{1b}[2Jok   fake{}", "y".repeat(2000)));
        let out = line(&hostile);
        assert!(!out.contains('\n') && !out.contains('\u{1b}'), "{out}");
        assert!(out.len() < 700, "{}", out.len());
    }

    #[test]
    fn a_secret_ref_is_namespace_slash_name() {
        assert_eq!(
            SecretRef::parse("team-a/graph").unwrap(),
            SecretRef { namespace: "team-a".into(), name: "graph".into() }
        );
        for bad in ["graph", "/graph", "team-a/", "a/b/c", ""] {
            assert!(SecretRef::parse(bad).unwrap_err().contains("namespace/name"), "{bad}");
        }
    }
}
