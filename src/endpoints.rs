//! Where credentials are sent: the Graph root and the token authority, from the flags and the
//! environment, the same for `run`, `check` and `login`. Tokens travel only over https
//! (plain http only to this machine, or with `--allow-plain-http`).

use anyhow::{Context as _, bail};
use url::Url;

use crate::cli::RunArgs;
use crate::credentials::{AuthSettings, WorkloadIdentity};

/// The Graph root `run` talks to: `--graph-url`, else the cloud's; refused unless https
/// (see `check_endpoint`). `check` resolves it the same way.
pub fn graph_url(args: &RunArgs) -> anyhow::Result<Url> {
    let url = args.graph_url.clone().unwrap_or_else(|| Url::parse(args.cloud.graph_url()).expect("valid"));
    check_endpoint("--graph-url", &url, args.allow_plain_http)?;
    Ok(url)
}

/// The token authority `run` asks for tokens, with the same rules as `graph_url`.
pub fn login_url(args: &RunArgs) -> anyhow::Result<Url> {
    let authority_host = std::env::var("AZURE_AUTHORITY_HOST").ok();
    let url = token_authority(args.login_url.as_ref(), authority_host.as_deref(), args.cloud)?;
    check_endpoint("--login-url", &url, args.allow_plain_http)?;
    Ok(url)
}

/// Where credentials come from and may be sent, from the flags and the AZURE_* environment.
pub fn auth_settings(args: &RunArgs, login_url: Url) -> AuthSettings {
    AuthSettings {
        login_url,
        scope_root: args.cloud.graph_url().to_string(),
        federated_token_dir: args.federated_token_dir.clone(),
        workload_identity: WorkloadIdentity::from_env(),
        workload_identity_namespaces: args.workload_identity_namespaces.clone(),
        allow_own_federated_token: args.allow_own_federated_token,
    }
}

/// The token authority: `--login-url`, else `AZURE_AUTHORITY_HOST` (Azure Workload Identity
/// sets it to the cloud's authority), else the cloud's.
pub(crate) fn token_authority(
    flag: Option<&Url>,
    env: Option<&str>,
    cloud: crate::graph::Cloud,
) -> anyhow::Result<Url> {
    match (flag, env.map(str::trim).filter(|v| !v.is_empty())) {
        (Some(url), _) => Ok(url.clone()),
        (None, Some(host)) => Url::parse(host).with_context(|| format!("AZURE_AUTHORITY_HOST {host:?} is not a URL")),
        (None, None) => Ok(Url::parse(cloud.login_url()).expect("valid")),
    }
}

/// Tokens and credentials travel only over https; plain http only to this machine (an
/// emulator), or anywhere when the installer says so (`--allow-plain-http`).
pub(crate) fn check_endpoint(flag: &str, url: &Url, allow_plain_http: bool) -> anyhow::Result<()> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_plain_http => Ok(()),
        _ => bail!(
            "{flag} must be an https:// URL (plain http only on the loopback address, or with --allow-plain-http), \
             got {url}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_authority_follows_the_flag_then_azure_authority_host_then_the_cloud() {
        use crate::graph::Cloud;
        let flag = Url::parse("http://127.0.0.1:9").unwrap();
        let usgov = Some("https://login.microsoftonline.us/");
        assert_eq!(token_authority(Some(&flag), usgov, Cloud::Global).unwrap(), flag);
        assert_eq!(token_authority(None, usgov, Cloud::Global).unwrap().as_str(), "https://login.microsoftonline.us/");
        assert_eq!(
            token_authority(None, Some(" "), Cloud::Global).unwrap().host_str(),
            Some("login.microsoftonline.com")
        );
        assert!(token_authority(None, Some("not a url"), Cloud::Global).is_err());
    }

    #[test]
    fn credentials_travel_over_https_or_stay_on_this_machine() {
        for ok in ["https://login.microsoftonline.com", "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"]
        {
            assert!(check_endpoint("--login-url", &Url::parse(ok).unwrap(), false).is_ok(), "{ok}");
        }
        for bad in ["http://login.microsoftonline.com", "http://10.0.0.1", "ftp://127.0.0.1"] {
            let err = check_endpoint("--login-url", &Url::parse(bad).unwrap(), false).unwrap_err().to_string();
            assert!(err.contains("must be an https:// URL"), "{bad}: {err}");
        }
        // The named exception for an emulator on a test network; never another scheme.
        assert!(check_endpoint("--login-url", &Url::parse("http://10.244.0.1:8080").unwrap(), true).is_ok());
        assert!(check_endpoint("--login-url", &Url::parse("ftp://10.244.0.1").unwrap(), true).is_err());
    }
}
