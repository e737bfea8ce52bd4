//! `pwreset-operator login`: signs a person in with the OAuth 2.0 device authorization
//! grant and stores the delegated refresh token in the credentials Secret the operator
//! reads. `flow` decides (pure), this module sends, sleeps and prints; `secret` writes.
//!
//! The refresh token, the access token and the device code are never printed or logged:
//! they live in `SecretString`s and leave the process only in the Secret.

mod flow;
mod secret;

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use url::Url;

pub use crate::cli::{DEFAULT_SECRET_NAME, LoginArgs};
use crate::credentials::SecretString;
use crate::endpoints::{check_endpoint, token_authority};
use crate::http::{ReadError, read_limited, retry_after};
use crate::text::error_chain;
use flow::{Answer, DeviceAuthorization, Failure, Next, PollState};
use secret::{Contents, Stored};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Answers of the identity platform are a few kilobytes.
const MAX_BODY: usize = 64 * 1024;
/// Runs `login`; returns the process exit code (0 success, 1 any other error, 3–7 a sign-in
/// that ended without tokens: see `Failure::exit_code`).
pub async fn run(args: LoginArgs) -> u8 {
    match login(args).await {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Failure>() {
            Some(failure) => {
                eprintln!("login: {}", failure.explain());
                failure.exit_code()
            }
            None => {
                eprintln!("login: {e:#}");
                1
            }
        },
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.explain())
    }
}

impl std::error::Error for Failure {}

async fn login(args: LoginArgs) -> anyhow::Result<()> {
    // Checked here as the operator checks the Secret's key, so what is written parses.
    if args.tenant.is_empty() || !args.tenant.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        bail!("--tenant must be a tenant GUID or domain name");
    }
    if args.client_id.trim().is_empty() {
        bail!("--client-id must not be empty");
    }
    let scope = args
        .scope
        .clone()
        .unwrap_or_else(|| format!("{}/UserAuthenticationMethod.Read.All offline_access", args.cloud.graph_url()));
    let authority_host = std::env::var("AZURE_AUTHORITY_HOST").ok();
    let login_url = token_authority(args.login_url.as_ref(), authority_host.as_deref(), args.cloud)?;
    check_endpoint("--login-url", &login_url, args.allow_plain_http)?;

    if args.dry_run {
        let namespace = match &args.namespace {
            Some(ns) => ns.clone(),
            None => kube::Config::infer().await.map(|c| c.default_namespace).unwrap_or_else(|_| "default".into()),
        };
        let yaml = secret::dry_run_yaml(
            &namespace,
            &args.secret_name,
            &args.tenant,
            &args.client_id,
            args.client_secret_file.is_some(),
            args.scope.as_deref(),
        );
        print!("{yaml}");
        return Ok(());
    }

    let client_secret = match &args.client_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let text = text.trim();
            if text.is_empty() {
                bail!("{} is empty", path.display());
            }
            Some(SecretString::new(text))
        }
        None => None,
    };
    // Kubernetes first: a person should not sign in only to learn the Secret cannot be written.
    let kube = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let namespace = args.namespace.clone().unwrap_or_else(|| kube.default_namespace().to_string());
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(kube.clone(), &namespace);
    secrets
        .get_opt(&args.secret_name)
        .await
        .with_context(|| format!("reading Secret {namespace}/{} before the sign-in", args.secret_name))?;

    // The operator's own client: the same trusted roots and proxies as `run`.
    let settings = crate::outbound::ClientSettings {
        timeout: Duration::from_secs(30),
        extra_ca_file: args.extra_ca_file.as_deref(),
    };
    let http = crate::outbound::client(&settings)?;
    let endpoint = |last: &str| -> anyhow::Result<Url> {
        let mut url = login_url.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--login-url cannot carry a path"))?
            .pop_if_empty()
            .extend([args.tenant.as_str(), "oauth2", "v2.0", last]);
        Ok(url)
    };

    let form = [("client_id", args.client_id.as_str()), ("scope", scope.as_str())];
    let (status, body, _) = post(&http, endpoint("devicecode")?, &form).await?;
    if !(200..300).contains(&status) {
        return Err(match flow::classify(status, &body, None) {
            Answer::Refused { error, description } => Failure::Refused { error, description }.into(),
            _ => anyhow::anyhow!("the device-code endpoint answered HTTP {status}"),
        });
    }
    let auth = flow::parse_authorization(&body).map_err(anyhow::Error::msg)?;
    show_instructions(&auth);

    let refresh_token = poll(&http, endpoint("token")?, &args.client_id, client_secret.as_ref(), &auth).await?;
    let contents = Contents {
        tenant: args.tenant.clone(),
        client_id: args.client_id.clone(),
        refresh_token,
        client_secret,
        scope: args.scope.clone(),
    };
    let stored = secret::store(&kube, &namespace, &args.secret_name, &contents).await?;
    let what = match stored {
        Stored::Created => "created".to_string(),
        Stored::Updated { removed } if removed.is_empty() => "updated; other keys kept".to_string(),
        Stored::Updated { removed } => {
            format!("updated; removed {} (they would override the refresh token)", removed.join(", "))
        }
    };
    println!("Signed in. Stored the refresh token in Secret {namespace}/{} ({what}).", args.secret_name);
    println!("The operator picks it up within 10 s; resources naming this Secret continue on their own.");
    Ok(())
}

/// A form POST; (status, body, Retry-After). Errors never carry the form (it holds the
/// device code).
async fn post(
    http: &reqwest::Client,
    url: Url,
    form: &[(&str, &str)],
) -> anyhow::Result<(u16, Vec<u8>, Option<Duration>)> {
    let response = http
        .post(url.clone())
        .header("client-request-id", uuid::Uuid::new_v4().to_string())
        .form(form)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", error_chain(&e.without_url())))?;
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    match read_limited(response, MAX_BODY).await {
        Ok(body) => Ok((status, body, wait)),
        Err(ReadError::TooLarge(max)) => bail!("{url}: the answer is larger than {max} bytes"),
        Err(ReadError::CutOff(e)) => bail!("{url}: the answer was cut off: {}", error_chain(&e.without_url())),
    }
}

fn show_instructions(auth: &DeviceAuthorization) {
    let mut out = std::io::stdout().lock();
    if let Some(message) = &auth.message {
        let _ = writeln!(out, "{message}");
    }
    let _ = writeln!(out, "\n  code:   {}\n  page:   {}", auth.user_code, auth.verification_uri);
    let _ = writeln!(
        out,
        "  sign in within {} s as an administrator with a role that may read password-reset operations \
         (Authentication Administrator, Privileged Authentication Administrator or Global Reader).\n",
        auth.expires_in.as_secs()
    );
    let _ = out.flush();
}

/// Polls the token endpoint until the sign-in ends; the refresh token on success.
async fn poll(
    http: &reqwest::Client,
    url: Url,
    client_id: &str,
    client_secret: Option<&SecretString>,
    auth: &DeviceAuthorization,
) -> anyhow::Result<SecretString> {
    let started = Instant::now();
    let deadline = started + auth.expires_in + flow::EXPIRY_GRACE;
    let remaining = |now: Instant| (started + auth.expires_in).saturating_duration_since(now);
    let mut state = PollState { interval: auth.interval, remaining: auth.expires_in };
    let mut wait = auth.interval;
    let progress = Progress::new();
    loop {
        progress.wait(wait, &remaining).await;
        if Instant::now() >= deadline {
            progress.done();
            return Err(Failure::Expired.into());
        }
        let mut form = vec![
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", client_id),
            ("device_code", auth.device_code.expose()),
        ];
        if let Some(secret) = client_secret {
            form.push(("client_secret", secret.expose()));
        }
        let answer = match post(http, url.clone(), &form).await {
            Ok((status, body, retry_after)) => flow::classify(status, &body, retry_after),
            Err(e) => Answer::Transient { retry_after: None, why: format!("{e:#}") },
        };
        let note = match &answer {
            Answer::SlowDown => Some(format!(
                "the sign-in service asked to poll more slowly (slow_down): every {} s from now on",
                (state.interval + flow::SLOW_DOWN_STEP).as_secs()
            )),
            Answer::Transient { why, .. } => {
                Some(format!("the token endpoint did not answer usefully ({why}); trying again"))
            }
            _ => None,
        };
        state.remaining = remaining(Instant::now());
        match flow::next(&state, answer) {
            Next::Wait { wait: w, state: s } => {
                if let Some(note) = note {
                    progress.note(&note);
                }
                wait = w;
                state = s;
            }
            Next::Done(rt) => {
                progress.done();
                return Ok(rt);
            }
            Next::Fail(failure) => {
                progress.done();
                return Err(failure.into());
            }
        }
    }
}

/// The "waiting for sign-in… N s left" line on stderr: redrawn every second on a terminal,
/// one line per poll otherwise (logs and tests).
struct Progress {
    terminal: bool,
}

impl Progress {
    fn new() -> Self {
        Progress { terminal: std::io::stderr().is_terminal() }
    }

    async fn wait(&self, wait: Duration, remaining: &impl Fn(Instant) -> Duration) {
        let until = Instant::now() + wait;
        if !self.terminal {
            eprintln!("{}", flow::progress(remaining(Instant::now())));
            tokio::time::sleep(wait).await;
            return;
        }
        loop {
            let now = Instant::now();
            eprint!("\r{}\x1b[K", flow::progress(remaining(now)));
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(Duration::from_secs(1))).await;
        }
    }

    fn note(&self, note: &str) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        eprintln!("{note}");
    }

    fn done(&self) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
    }
}
