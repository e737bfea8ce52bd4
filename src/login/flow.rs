//! The device authorization grant without I/O: what Microsoft's answers mean, and what the
//! poll loop does next. `login::run` sends the requests and sleeps; everything it decides
//! comes from here, so each answer is a table row in the tests.

use std::time::Duration;

use serde::Deserialize;

use crate::credentials::SecretString;

/// RFC 8628 3.5: after `slow_down` the interval grows by 5 s, for this and every later poll.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Microsoft's documented default when an answer carries no `interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The answer of `POST {authority}/{tenant}/oauth2/v2.0/devicecode`.
#[derive(Debug)]
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: Duration,
    pub interval: Duration,
    /// Microsoft's own instructions for the person (localised with `?mkt=`).
    pub message: Option<String>,
}

/// Seconds as a number or a string (Entra's older endpoints send strings).
fn seconds(v: &serde_json::Value) -> Option<Duration> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())).map(Duration::from_secs)
}

#[derive(Deserialize)]
struct RawAuthorization {
    device_code: Option<String>,
    user_code: Option<String>,
    /// The v1 endpoint calls it `verification_url`.
    #[serde(alias = "verification_url")]
    verification_uri: Option<String>,
    expires_in: Option<serde_json::Value>,
    interval: Option<serde_json::Value>,
    message: Option<String>,
}

/// Parses the device-code answer; errors name the missing field, never a value.
pub fn parse_authorization(body: &[u8]) -> Result<DeviceAuthorization, String> {
    let raw: RawAuthorization =
        serde_json::from_slice(body).map_err(|e| format!("the device-code answer is not valid JSON: {e}"))?;
    let field = |v: Option<String>, name: &str| {
        v.filter(|s| !s.trim().is_empty()).ok_or_else(|| format!("the device-code answer has no {name}"))
    };
    let expires_in = raw.expires_in.as_ref().and_then(seconds).filter(|d| !d.is_zero());
    Ok(DeviceAuthorization {
        device_code: SecretString::new(field(raw.device_code, "device_code")?),
        user_code: field(raw.user_code, "user_code")?,
        verification_uri: field(raw.verification_uri, "verification_uri")?,
        expires_in: expires_in.ok_or("the device-code answer has no expires_in")?,
        interval: raw.interval.as_ref().and_then(seconds).filter(|d| !d.is_zero()).unwrap_or(DEFAULT_INTERVAL),
        message: raw.message.filter(|m| !m.trim().is_empty()),
    })
}

/// What one poll of the token endpoint answered.
#[derive(Debug)]
pub enum Answer {
    Tokens {
        refresh_token: Option<SecretString>,
    },
    Pending,
    SlowDown,
    Declined,
    Expired,
    BadCode,
    /// 429, 5xx, `temporarily_unavailable`, or no answer: try again after the wait.
    Transient {
        retry_after: Option<Duration>,
        why: String,
    },
    /// Any other refusal: `error` and the first line of its description (AADSTS code).
    Refused {
        error: String,
        description: String,
    },
}

#[derive(Deserialize, Default)]
struct RawToken {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Classifies a token-endpoint answer (`status`, body, `Retry-After`).
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Answer {
    let raw: RawToken = serde_json::from_slice(body).unwrap_or_default();
    if (200..300).contains(&status) {
        return match raw.access_token {
            Some(_) => Answer::Tokens { refresh_token: raw.refresh_token.map(SecretString::new) },
            None => Answer::Transient { retry_after, why: "the token answer has no access_token".into() },
        };
    }
    // Descriptions carry AADSTS codes and trace ids, never the submitted device code.
    let description = raw.error_description.unwrap_or_default().lines().next().unwrap_or("").trim().to_string();
    match raw.error.as_deref() {
        Some("authorization_pending") => Answer::Pending,
        Some("slow_down") => Answer::SlowDown,
        Some("authorization_declined" | "access_denied") => Answer::Declined,
        Some("expired_token") => Answer::Expired,
        Some("bad_verification_code") => Answer::BadCode,
        Some("temporarily_unavailable") => Answer::Transient { retry_after, why: description },
        _ if status == 429 || status >= 500 => {
            Answer::Transient { retry_after, why: format!("HTTP {status} {}", raw.error.unwrap_or_default()) }
        }
        Some(error) => Answer::Refused { error: error.to_string(), description },
        None => Answer::Refused { error: format!("HTTP {status}"), description: "no OAuth error in the answer".into() },
    }
}

/// Why a sign-in ended without tokens; each has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Declined,
    Expired,
    BadCode,
    Refused {
        error: String,
        description: String,
    },
    /// Tokens, but no refresh token: the scope lacked `offline_access`.
    NoRefreshToken,
}

impl Failure {
    /// Distinct exit codes, so scripts can tell the cases apart (1 is any other error, 2 a
    /// usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Declined => 3,
            Failure::Expired => 4,
            Failure::BadCode => 5,
            Failure::Refused { .. } => 6,
            Failure::NoRefreshToken => 7,
        }
    }

    /// What happened and what to do, in words for a person.
    pub fn explain(&self) -> String {
        match self {
            Failure::Declined => "the sign-in was declined (authorization_declined): nothing was written; run \
                                  `pwreset-operator login` again and approve the request"
                .into(),
            Failure::Expired => "the code expired before anyone signed in (expired_token): nothing was written; run \
                                 `pwreset-operator login` again and sign in within the time shown"
                .into(),
            Failure::BadCode => "Microsoft Entra does not know this device code (bad_verification_code): nothing was \
                                 written; run `pwreset-operator login` again"
                .into(),
            Failure::Refused { error, description } => format!(
                "Microsoft Entra refused the sign-in ({error}): {description}; nothing was written (check --tenant, \
                 --client-id, \"Allow public client flows\" on the app registration, and admin consent)"
            ),
            Failure::NoRefreshToken => "signed in, but Microsoft Entra returned no refresh token: include \
                                        offline_access in --scope; nothing was written"
                .into(),
        }
    }
}

/// Where the poll loop stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollState {
    pub interval: Duration,
    /// Time left until the code expires.
    pub remaining: Duration,
}

/// What the loop does after an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Poll again after this long (with the interval to use from then on).
    Wait {
        wait: Duration,
        state: PollState,
    },
    /// Store this refresh token.
    Done(SecretString),
    Fail(Failure),
}

/// The poll loop's one decision.
pub fn next(state: &PollState, answer: Answer) -> Next {
    let wait_with = |interval: Duration, wait: Duration| Next::Wait {
        wait,
        state: PollState { interval, remaining: state.remaining },
    };
    match answer {
        Answer::Tokens { refresh_token: Some(rt) } => Next::Done(rt),
        Answer::Tokens { refresh_token: None } => Next::Fail(Failure::NoRefreshToken),
        Answer::Pending => wait_with(state.interval, state.interval),
        Answer::SlowDown => {
            let interval = state.interval + SLOW_DOWN_STEP;
            wait_with(interval, interval)
        }
        // Never sooner than the interval, however short a Retry-After.
        Answer::Transient { retry_after, .. } => {
            wait_with(state.interval, retry_after.unwrap_or(state.interval).max(state.interval))
        }
        Answer::Declined => Next::Fail(Failure::Declined),
        Answer::Expired => Next::Fail(Failure::Expired),
        Answer::BadCode => Next::Fail(Failure::BadCode),
        Answer::Refused { error, description } => Next::Fail(Failure::Refused { error, description }),
    }
}

/// Extra time past `expires_in` before giving up without the server's `expired_token`: the
/// server's word is authoritative, this only bounds a server that never says it.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(5);

/// The progress line shown on stderr while waiting.
pub fn progress(remaining: Duration) -> String {
    let s = remaining.as_secs();
    if s >= 120 {
        format!("waiting for sign-in… {} min {:02} s left", s / 60, s % 60)
    } else {
        format!("waiting for sign-in… {s} s left")
    }
}

#[cfg(test)]
mod tests;
