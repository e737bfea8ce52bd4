//! The device authorization grant (RFC 8628, as Entra documents it): pending
//! sign-ins, what a poll of the token endpoint answers, and the admin API
//! that approves or declines them in place of a person with a browser.
//!
//! The store is synchronous and takes `now` as an argument, so the whole
//! state machine is tested without HTTP or sleeping; `http` is the thin layer.

mod http;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

pub use http::{admin_routes, devicecode_endpoint, grant as device_code_grant};

/// `grant_type` of the token request that redeems a device code.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Codes are remembered this long after they expire, so a late poll gets
/// `expired_token` rather than `bad_verification_code`.
const EXPIRED_RETENTION: Duration = Duration::from_secs(600);
/// Pending sign-ins kept at most; the oldest go first.
const MAX_CODES: usize = 10_000;
/// A poll may arrive this much early without counting as too fast: clients
/// sleep `interval` after the previous answer, so only scheduling jitter
/// brings two arrivals closer than that.
const EARLY_TOLERANCE: Duration = Duration::from_millis(100);
/// User codes: upper-case letters and digits without the look-alikes (0/O, 1/I).
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending,
    /// A person signed in (as `subject`, or the client's own subject).
    Approved {
        subject: Option<String>,
    },
    Declined,
    /// Tokens were issued (acting as `subject`); the code is spent.
    Redeemed {
        subject: Option<String>,
    },
}

/// What the device-code request asked for, checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCode {
    /// Canonical tenant id.
    pub tenant: String,
    pub client_id: String,
    /// Graph permission names the tokens will carry.
    pub permissions: Vec<String>,
    /// OIDC scopes (`offline_access`, …), echoed in the token answer's scope.
    pub oidc: Vec<String>,
}

/// Timing of new codes (from the `deviceCode` config).
#[derive(Debug, Clone)]
pub struct Timing {
    pub expires_in: Duration,
    pub interval: Duration,
    pub auto_approve_after: Option<Duration>,
    pub auto_approve_user: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    request: NewCode,
    device_code: String,
    user_code: String,
    issued: Instant,
    expires: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
    polls: u64,
    slow_downs: u64,
    auto_approve_at: Option<Instant>,
    auto_approve_user: Option<String>,
    state: State,
}

impl Entry {
    /// Applies an automatic approval that is due: no timer runs, the state is
    /// brought up to date whenever someone looks.
    fn catch_up(&mut self, now: Instant) {
        if self.state == State::Pending && self.auto_approve_at.is_some_and(|at| now >= at) && now < self.expires {
            self.state = State::Approved { subject: self.auto_approve_user.clone() };
        }
    }

    fn state_name(&self, now: Instant) -> &'static str {
        match &self.state {
            State::Redeemed { .. } => "redeemed",
            _ if now >= self.expires => "expired",
            State::Pending => "pending",
            State::Approved { .. } => "approved",
            State::Declined => "declined",
        }
    }
}

/// The answer to one poll of the token endpoint with a device code.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    Pending,
    /// Polled sooner than the interval after the previous poll.
    SlowDown,
    Declined,
    Expired,
    /// Unknown code, or a code of another client or tenant.
    BadCode,
    /// Already exchanged for tokens.
    Redeemed,
    /// Issue tokens for this request, acting as `subject` if set.
    Approved {
        request: NewCode,
        subject: Option<String>,
    },
}

/// Why the admin API could not approve or decline a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRefusal {
    Unknown,
    /// Not pending any more (approved, declined, redeemed or expired): its state.
    NotPending(&'static str),
}

#[derive(Default)]
pub struct DeviceCodes {
    /// By device code.
    entries: HashMap<String, Entry>,
    /// Upper-cased user code → device code.
    by_user_code: HashMap<String, String>,
}

fn random_string(alphabet: Option<&[u8]>, len: usize) -> String {
    let mut rng = rand::rng();
    match alphabet {
        Some(a) => (0..len).map(|_| char::from(a[rng.random_range(0..a.len())])).collect(),
        None => rng.sample_iter(Alphanumeric).take(len).map(char::from).collect(),
    }
}

impl DeviceCodes {
    pub fn clear(&mut self) {
        *self = DeviceCodes::default();
    }

    /// Starts a sign-in; returns (device_code, user_code).
    pub fn issue(&mut self, request: NewCode, timing: &Timing, now: Instant) -> (String, String) {
        self.prune(now);
        let device_code = format!("emu-dc-{}", random_string(None, 80));
        let user_code = loop {
            let candidate = random_string(Some(USER_CODE_ALPHABET), 9);
            if !self.by_user_code.contains_key(&candidate) {
                break candidate;
            }
        };
        let entry = Entry {
            request,
            device_code: device_code.clone(),
            user_code: user_code.clone(),
            issued: now,
            expires: now + timing.expires_in,
            interval: timing.interval,
            last_poll: None,
            polls: 0,
            slow_downs: 0,
            auto_approve_at: timing.auto_approve_after.map(|d| now + d),
            auto_approve_user: timing.auto_approve_user.clone(),
            state: State::Pending,
        };
        self.by_user_code.insert(user_code.clone(), device_code.clone());
        self.entries.insert(device_code.clone(), entry);
        (device_code, user_code)
    }

    /// Drops codes long expired or spent, and the oldest beyond the cap.
    fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, e| now.saturating_duration_since(e.expires) < EXPIRED_RETENTION);
        while self.entries.len() >= MAX_CODES {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.issued).map(|(k, _)| k.clone()) else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let entries = &self.entries;
        self.by_user_code.retain(|_, device_code| entries.contains_key(device_code));
    }

    /// One poll with `device_code` by `tenant`/`client_id` (canonical tenant id).
    pub fn poll(&mut self, device_code: &str, tenant: &str, client_id: &str, now: Instant) -> Poll {
        let Some(entry) = self.entries.get_mut(device_code) else { return Poll::BadCode };
        if !entry.request.tenant.eq_ignore_ascii_case(tenant)
            || !entry.request.client_id.eq_ignore_ascii_case(client_id)
        {
            return Poll::BadCode;
        }
        entry.polls += 1;
        entry.catch_up(now);
        let previous = entry.last_poll.replace(now);
        match &entry.state {
            State::Redeemed { .. } => Poll::Redeemed,
            _ if now >= entry.expires => Poll::Expired,
            State::Declined => Poll::Declined,
            State::Approved { subject } => {
                let subject = subject.clone();
                entry.state = State::Redeemed { subject: subject.clone() };
                Poll::Approved { request: entry.request.clone(), subject }
            }
            State::Pending => {
                // RFC 8628 3.5: the client adds 5 s to its interval on slow_down; the
                // emulator keeps enforcing the configured interval, which the slowed
                // client then clears with room to spare.
                let too_soon =
                    previous.is_some_and(|p| now.saturating_duration_since(p) + EARLY_TOLERANCE < entry.interval);
                if too_soon {
                    entry.slow_downs += 1;
                    Poll::SlowDown
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn pending_by_user_code(&mut self, user_code: &str, now: Instant) -> Result<&mut Entry, AdminRefusal> {
        let key = user_code.trim().replace('-', "").to_uppercase();
        let device_code = self.by_user_code.get(&key).ok_or(AdminRefusal::Unknown)?;
        let entry = self.entries.get_mut(device_code).ok_or(AdminRefusal::Unknown)?;
        entry.catch_up(now);
        match entry.state_name(now) {
            "pending" => Ok(entry),
            other => Err(AdminRefusal::NotPending(other)),
        }
    }

    /// A person signed in with `user_code` (as `subject`, if given) and consented.
    pub fn approve(&mut self, user_code: &str, subject: Option<String>, now: Instant) -> Result<Value, AdminRefusal> {
        let entry = self.pending_by_user_code(user_code, now)?;
        entry.state = State::Approved { subject };
        Ok(view(entry, now))
    }

    /// A person refused the sign-in.
    pub fn decline(&mut self, user_code: &str, now: Instant) -> Result<Value, AdminRefusal> {
        let entry = self.pending_by_user_code(user_code, now)?;
        entry.state = State::Declined;
        Ok(view(entry, now))
    }

    /// Every remembered code, oldest first.
    pub fn list(&mut self, now: Instant) -> Vec<Value> {
        let mut entries: Vec<&mut Entry> = self.entries.values_mut().collect();
        entries.sort_by_key(|e| e.issued);
        entries
            .into_iter()
            .map(|e| {
                e.catch_up(now);
                view(e, now)
            })
            .collect()
    }
}

/// The admin view of a code. It includes the device code, as `GET /_emulator/config`
/// includes refresh tokens: the admin API is for tests, which scan outputs for it.
fn view(e: &Entry, now: Instant) -> Value {
    let subject = match &e.state {
        State::Approved { subject } | State::Redeemed { subject } => subject.clone(),
        _ => None,
    };
    json!({
        "userCode": e.user_code,
        "deviceCode": e.device_code,
        "tenant": e.request.tenant,
        "clientId": e.request.client_id,
        "state": e.state_name(now),
        "expiresInSeconds": e.expires.saturating_duration_since(now).as_secs(),
        "intervalSeconds": e.interval.as_secs(),
        "polls": e.polls,
        "slowDowns": e.slow_downs,
        "userId": subject,
    })
}

#[cfg(test)]
mod tests;
