//! The directory: tenants and their app registrations, issued and static
//! access tokens, refresh tokens (with rotation), and throttling buckets.
//!
//! Tokens are opaque random strings from the OS-seeded RNG, never derived
//! from secrets, and are never logged.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand::distr::Alphanumeric;

use super::config::{ClientConfig, ScriptedResponse, StaticToken, TenantConfig, ThrottleConfig, TokenKind};
use super::throttle::{Decision, TokenBucket};

/// Expired access tokens are remembered this long, so callers get "expired"
/// rather than "unknown" for a while.
const EXPIRED_RETENTION: SignedDuration = SignedDuration::from_secs(3600);
/// Rotated refresh tokens are remembered this long past their overlap, so a
/// replay is reported as such.
const ROTATED_RETENTION: Duration = Duration::from_secs(600);

/// What a bearer token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessToken {
    /// Canonical tenant id (as configured).
    pub tenant: String,
    pub client_id: Option<String>,
    pub kind: TokenKind,
    /// Permission names without the Graph root (`UserAuthenticationMethod.Read.All`).
    pub scopes: Vec<String>,
    pub subject: Option<String>,
    pub expires_at: Option<Timestamp>,
}

impl AccessToken {
    pub fn has_any(&self, permissions: &[&str]) -> bool {
        self.scopes.iter().any(|s| permissions.iter().any(|p| p.eq_ignore_ascii_case(s)))
    }
}

/// `https://graph.microsoft.com/X` → `X`; bare names stay as they are.
pub fn permission_name(scope: &str) -> &str {
    match scope.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, name)| name),
        None => scope,
    }
}

pub enum AccessLookup {
    Valid(AccessToken),
    Expired,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Active,
    /// Used at that moment; still accepted during the configured overlap.
    Rotated(Instant),
    Revoked,
}

#[derive(Debug, Clone)]
struct RefreshRecord {
    tenant: String,
    client: String,
    state: RefreshState,
    /// The user who signed in (device-code flow); `None`: the client's `subject`.
    subject: Option<String>,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    OtherClient,
    Revoked,
    /// Already exchanged and past the overlap.
    Reused,
}

struct Tenant {
    config: TenantConfig,
    /// Lower-cased client id → index into `config.clients`.
    clients: HashMap<String, usize>,
}

#[derive(Default)]
pub struct Directory {
    /// Keyed by lower-cased tenant id.
    tenants: HashMap<String, Tenant>,
    /// Lower-cased alias → lower-cased tenant id.
    aliases: HashMap<String, String>,
    static_tokens: HashMap<String, StaticToken>,
    issued: HashMap<String, AccessToken>,
    issued_order: VecDeque<(Timestamp, String)>,
    refresh: HashMap<String, RefreshRecord>,
    rotated_order: VecDeque<(Instant, String)>,
    buckets: HashMap<String, TokenBucket>,
}

fn random_token(prefix: &str, len: usize) -> String {
    let body: String = rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect();
    format!("{prefix}{body}")
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Canonical key of a tenant named by id or alias.
    fn tenant_key(&self, name: &str) -> Option<String> {
        let lower = name.to_lowercase();
        if self.tenants.contains_key(&lower) {
            return Some(lower);
        }
        self.aliases.get(&lower).cloned()
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantConfig> {
        let k = self.tenant_key(name)?;
        self.tenants.get(&k).map(|t| &t.config)
    }

    pub fn client(&self, tenant: &str, client_id: &str) -> Option<&ClientConfig> {
        let t = self.tenants.get(&self.tenant_key(tenant)?)?;
        let &i = t.clients.get(&client_id.to_lowercase())?;
        t.config.clients.get(i)
    }

    /// Registers or replaces a tenant. Refresh tokens of clients that still
    /// exist keep their state (a rotated chain survives a re-registration
    /// that only flips a flag); configured tokens not seen before become
    /// valid; tokens of removed clients are dropped.
    pub fn put_tenant(&mut self, config: TenantConfig) {
        let k = config.id.to_lowercase();
        self.aliases.retain(|_, target| *target != k);
        for alias in &config.aliases {
            self.aliases.insert(alias.to_lowercase(), k.clone());
        }
        let clients: HashMap<String, usize> =
            config.clients.iter().enumerate().map(|(i, c)| (c.client_id.to_lowercase(), i)).collect();
        self.refresh.retain(|_, r| r.tenant != k || clients.contains_key(&r.client));
        for client in &config.clients {
            for token in &client.refresh_tokens {
                self.refresh.entry(token.clone()).or_insert(RefreshRecord {
                    tenant: k.clone(),
                    client: client.client_id.to_lowercase(),
                    state: RefreshState::Active,
                    subject: None,
                });
            }
        }
        // Throttle settings may have changed: start with a fresh bucket.
        self.buckets.remove(&k);
        self.tenants.insert(k, Tenant { config, clients });
    }

    /// Replaces all tenants (config PUT).
    pub fn replace_tenants(&mut self, tenants: Vec<TenantConfig>) {
        let keep: Vec<String> = tenants.iter().map(|t| t.id.to_lowercase()).collect();
        self.tenants.retain(|k, _| keep.contains(k));
        self.refresh.retain(|_, r| keep.contains(&r.tenant));
        self.aliases.clear();
        self.buckets.clear();
        for t in tenants {
            self.put_tenant(t);
        }
    }

    /// Applies `f` to a client's registration; false if it does not exist.
    pub fn update_client(&mut self, tenant: &str, client_id: &str, f: impl FnOnce(&mut ClientConfig)) -> bool {
        let Some(t) = self.tenant_key(tenant).and_then(|k| self.tenants.get_mut(&k)) else {
            return false;
        };
        let Some(&i) = t.clients.get(&client_id.to_lowercase()) else {
            return false;
        };
        match t.config.clients.get_mut(i) {
            Some(c) => {
                f(c);
                true
            }
            None => false,
        }
    }

    /// Tenants as configured, with each client's currently valid refresh
    /// tokens (so a saved config resumes where the run stands).
    pub fn tenant_configs(&self) -> Vec<TenantConfig> {
        let mut out: Vec<TenantConfig> = self
            .tenants
            .iter()
            .map(|(k, t)| {
                let mut config = t.config.clone();
                for client in &mut config.clients {
                    let ck = client.client_id.to_lowercase();
                    let mut active: Vec<String> = self
                        .refresh
                        .iter()
                        .filter(|(_, r)| r.tenant == *k && r.client == ck && r.state == RefreshState::Active)
                        .map(|(token, _)| token.clone())
                        .collect();
                    active.sort();
                    client.refresh_tokens = active;
                }
                config
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn put_static_token(&mut self, token: StaticToken) {
        self.static_tokens.insert(token.token.clone(), token);
    }

    pub fn replace_static_tokens(&mut self, tokens: Vec<StaticToken>) {
        self.static_tokens.clear();
        for t in tokens {
            self.put_static_token(t);
        }
    }

    pub fn static_tokens(&self) -> Vec<StaticToken> {
        let mut v: Vec<_> = self.static_tokens.values().cloned().collect();
        v.sort_by(|a, b| a.token.cmp(&b.token));
        v
    }

    /// Every credential value known: access and refresh tokens issued (spent ones while
    /// remembered), static tokens and client secrets. For tests that scan what a client
    /// printed or stored for leaks.
    pub fn credentials(&self) -> Vec<String> {
        let secrets =
            self.tenants.values().flat_map(|t| t.config.clients.iter().filter_map(|c| c.client_secret.clone()));
        let mut all: Vec<String> = self
            .issued
            .keys()
            .chain(self.refresh.keys())
            .chain(self.static_tokens.keys())
            .cloned()
            .chain(secrets)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Forgets everything (the admin API's `reset` with `all`).
    pub fn clear(&mut self) {
        *self = Directory::default();
    }

    pub fn lookup_access(&self, token: &str, now: Timestamp) -> AccessLookup {
        let found = match self.issued.get(token) {
            Some(t) => t.clone(),
            None => match self.static_tokens.get(token) {
                Some(s) => AccessToken {
                    tenant: s.tenant.clone(),
                    client_id: s.client_id.clone(),
                    kind: s.kind,
                    scopes: s.scopes.iter().map(|p| permission_name(p).to_owned()).collect(),
                    subject: s.subject.clone(),
                    expires_at: s.expires_at,
                },
                None => return AccessLookup::Unknown,
            },
        };
        match found.expires_at {
            Some(exp) if exp <= now => AccessLookup::Expired,
            _ => AccessLookup::Valid(found),
        }
    }

    /// Issues an access token; returns the opaque token string.
    pub fn issue_access(&mut self, grant: AccessToken, now: Timestamp) -> String {
        while let Some((exp, _)) = self.issued_order.front() {
            if exp.saturating_add(EXPIRED_RETENTION).is_ok_and(|t| t > now) {
                break;
            }
            if let Some((_, token)) = self.issued_order.pop_front() {
                self.issued.remove(&token);
            }
        }
        let token = random_token("emu-at-", 48);
        if let Some(exp) = grant.expires_at {
            self.issued_order.push_back((exp, token.clone()));
        }
        self.issued.insert(token.clone(), grant);
        token
    }

    /// Redeems a refresh token of `tenant`/`client_id`. As Entra does, it
    /// stays valid after use (`single_use: None`); with `Some(overlap)`
    /// (the `refreshTokenSingleUse` option) success marks it rotated: it
    /// keeps working for `overlap`, then fails as reused.
    pub fn redeem_refresh(
        &mut self,
        token: &str,
        tenant: &str,
        client_id: &str,
        now: Instant,
        single_use: Option<Duration>,
    ) -> Result<(), RefreshRefusal> {
        let tenant_key = self.tenant_key(tenant).ok_or(RefreshRefusal::Unknown)?;
        let record = self.refresh.get_mut(token).ok_or(RefreshRefusal::Unknown)?;
        if record.tenant != tenant_key || record.client != client_id.to_lowercase() {
            return Err(RefreshRefusal::OtherClient);
        }
        let Some(overlap) = single_use else {
            return match record.state {
                RefreshState::Revoked => Err(RefreshRefusal::Revoked),
                // Rotated under an earlier single-use setting: still dead.
                RefreshState::Rotated(_) => Err(RefreshRefusal::Reused),
                RefreshState::Active => Ok(()),
            };
        };
        match record.state {
            RefreshState::Revoked => Err(RefreshRefusal::Revoked),
            RefreshState::Rotated(at) if now.saturating_duration_since(at) > overlap => Err(RefreshRefusal::Reused),
            RefreshState::Rotated(_) => Ok(()),
            RefreshState::Active => {
                record.state = RefreshState::Rotated(now);
                self.rotated_order.push_back((now, token.to_owned()));
                self.prune_rotated(now, overlap);
                Ok(())
            }
        }
    }

    fn prune_rotated(&mut self, now: Instant, overlap: Duration) {
        let keep_for = overlap + ROTATED_RETENTION;
        while let Some((at, _)) = self.rotated_order.front() {
            if now.saturating_duration_since(*at) <= keep_for {
                break;
            }
            if let Some((_, token)) = self.rotated_order.pop_front()
                && self.refresh.get(&token).is_some_and(|r| matches!(r.state, RefreshState::Rotated(_)))
            {
                self.refresh.remove(&token);
            }
        }
    }

    /// A fresh refresh token for a client (its previous one was just redeemed).
    #[cfg(test)]
    pub fn issue_refresh(&mut self, tenant: &str, client_id: &str) -> String {
        self.issue_refresh_as(tenant, client_id, None)
    }

    /// A fresh refresh token that acts as `subject` (the user who signed in),
    /// or as the client's configured subject when `None`.
    pub fn issue_refresh_as(&mut self, tenant: &str, client_id: &str, subject: Option<String>) -> String {
        let token = random_token("emu-rt-", 64);
        let tenant = self.tenant_key(tenant).unwrap_or_else(|| tenant.to_lowercase());
        let record = RefreshRecord { tenant, client: client_id.to_lowercase(), state: RefreshState::Active, subject };
        self.refresh.insert(token.clone(), record);
        token
    }

    /// The user a refresh token acts as, when it remembers one (device-code sign-ins).
    pub fn refresh_subject(&self, token: &str) -> Option<String> {
        self.refresh.get(token).and_then(|r| r.subject.clone())
    }

    /// Revokes one refresh token; false if unknown.
    pub fn revoke_refresh(&mut self, token: &str) -> bool {
        match self.refresh.get_mut(token) {
            Some(r) => {
                r.state = RefreshState::Revoked;
                true
            }
            None => false,
        }
    }

    /// Revokes every refresh token of a client; returns how many.
    pub fn revoke_client_refresh(&mut self, tenant: &str, client_id: &str) -> usize {
        let Some(tk) = self.tenant_key(tenant) else {
            return 0;
        };
        let ck = client_id.to_lowercase();
        let mut n = 0;
        for r in self.refresh.values_mut() {
            if r.tenant == tk && r.client == ck && r.state != RefreshState::Revoked {
                r.state = RefreshState::Revoked;
                n += 1;
            }
        }
        n
    }

    /// The tenant's own `allowAppOnly`, if it sets one.
    pub fn allows_app_only(&self, tenant: &str) -> Option<bool> {
        self.tenant(tenant)?.allow_app_only
    }

    /// Takes the next scripted token-endpoint answer of a tenant, if any.
    pub fn next_token_response(&mut self, tenant: &str) -> Option<ScriptedResponse> {
        let k = self.tenant_key(tenant)?;
        let queue = &mut self.tenants.get_mut(&k)?.config.token_respond;
        (!queue.is_empty()).then(|| queue.remove(0))
    }

    /// Charges one request to the tenant's bucket; `None` when the tenant
    /// has no throttling configured.
    pub fn throttle(&mut self, tenant: &str, now: Instant) -> Option<Decision> {
        let k = self.tenant_key(tenant)?;
        let config: ThrottleConfig = self.tenants.get(&k)?.config.throttle?;
        let bucket = self.buckets.entry(k).or_insert_with(|| TokenBucket::new(config, now));
        if bucket.config() != config {
            *bucket = TokenBucket::new(config, now);
        }
        Some(bucket.take(now))
    }

    /// Refills every bucket (the admin API's `reset`).
    pub fn reset_buckets(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests;
