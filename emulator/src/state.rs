//! The emulator's shared state.
//!
//! Each part sits behind its own lock, held only for a short, synchronous
//! section: no code path holds two locks at once or a lock across `.await`,
//! so there is no lock ordering to get wrong.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use jiff::Timestamp;
use serde_json::Value;

use super::config::{Config, DeviceCodeConfig, Faults, OperationSpec, ResetPasswordConfig, Step};
use super::device_code::DeviceCodes;
use super::faults::FaultState;
use super::identity::Directory;
use super::operations::{Defaults, Operation, OperationStore};
use super::reqlog::{DEFAULT_CAPACITY, RequestLog};
use super::reset_ledger::ResetLedger;
use super::users::operation_path;

/// Locks a mutex even if a panicking thread poisoned it: every update here
/// leaves the data consistent, and one failed request must not wedge the
/// emulator.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Scalar settings, swapped as a whole on config changes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Effective base URL for `Location`, without a trailing slash.
    pub public_base_url: String,
    /// As configured (`None`: the listen URL).
    pub configured_public_base_url: Option<String>,
    /// Without a trailing slash.
    pub graph_root: String,
    pub default_progression: Vec<Step>,
    pub not_found_code: String,
    pub evolvable_enums: bool,
    pub access_token_lifetime_seconds: u64,
    pub refresh_token_overlap_seconds: u64,
    pub refresh_token_single_use: bool,
    pub allow_app_only: bool,
    pub reset_password: ResetPasswordConfig,
    pub max_operations: usize,
    pub device_code: DeviceCodeConfig,
}

impl Settings {
    /// `Location` URL of an operation, with the routing query.
    pub fn location(&self, user: &str, id: &str) -> String {
        let path = operation_path(user, id);
        let query = &self.reset_password.routing_query;
        if query.is_empty() {
            format!("{}{path}", self.public_base_url)
        } else {
            format!("{}{path}?{query}", self.public_base_url)
        }
    }

    pub fn operation_defaults(&self) -> Defaults<'_> {
        Defaults { progression: &self.default_progression, graph_root: &self.graph_root }
    }
}

pub struct Emulator {
    /// Base of `Location` URLs when `publicBaseUrl` is not configured.
    default_public_url: String,
    settings: RwLock<Arc<Settings>>,
    pub ops: Mutex<OperationStore>,
    pub directory: Mutex<Directory>,
    pub faults: Mutex<FaultState>,
    pub log: Mutex<RequestLog>,
    /// Pending device authorizations (device-code flow).
    pub device_codes: Mutex<DeviceCodes>,
    /// Processed resetPasswords, current passwords and the resetPassword fault script.
    pub resets: Mutex<ResetLedger>,
}

impl Emulator {
    pub fn new(default_public_url: String, config: Config) -> Result<Self, String> {
        let emulator = Emulator {
            settings: RwLock::new(Arc::new(settings_of(&config, &default_public_url))),
            default_public_url,
            ops: Mutex::new(OperationStore::new(config.max_operations)),
            directory: Mutex::new(Directory::new()),
            faults: Mutex::new(FaultState::new(Faults::default())),
            log: Mutex::new(RequestLog::new(DEFAULT_CAPACITY)),
            device_codes: Mutex::new(DeviceCodes::default()),
            resets: Mutex::new(ResetLedger::default()),
        };
        emulator.apply_config(config)?;
        Ok(emulator)
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the whole configuration. Issued access tokens stay valid
    /// (a running client keeps working); refresh tokens of clients that
    /// still exist keep their state; operations are replaced.
    pub fn apply_config(&self, config: Config) -> Result<(), String> {
        config.validate()?;
        let settings = Arc::new(settings_of(&config, &self.default_public_url));
        *self.settings.write().unwrap_or_else(PoisonError::into_inner) = settings.clone();
        {
            let mut dir = lock(&self.directory);
            dir.replace_tenants(config.tenants);
            dir.replace_static_tokens(config.tokens);
        }
        let now = Timestamp::now();
        let ops: Vec<Operation> = config
            .operations
            .into_iter()
            .map(|spec| Operation::from_spec(spec, now, &settings.operation_defaults()))
            .collect();
        {
            let mut store = lock(&self.ops);
            store.clear();
            store.set_max(settings.max_operations);
            for op in ops {
                store.insert(op);
            }
        }
        *lock(&self.faults) = FaultState::new(config.faults);
        Ok(())
    }

    /// The configuration as it stands now: operations as currently
    /// scripted, clients with their currently valid refresh tokens.
    pub fn config(&self) -> Config {
        let s = self.settings();
        let (tenants, tokens) = {
            let dir = lock(&self.directory);
            (dir.tenant_configs(), dir.static_tokens())
        };
        let operations = lock(&self.ops).all().into_iter().map(Operation::to_spec).collect();
        let faults = {
            let state = lock(&self.faults);
            let mut faults = state.config().clone();
            // The seed actually in use, so the run can be replayed.
            faults.seed = Some(state.seed());
            faults
        };
        Config {
            public_base_url: s.configured_public_base_url.clone(),
            graph_root: s.graph_root.clone(),
            default_progression: s.default_progression.clone(),
            not_found_code: s.not_found_code.clone(),
            evolvable_enums: s.evolvable_enums,
            access_token_lifetime_seconds: s.access_token_lifetime_seconds,
            refresh_token_overlap_seconds: s.refresh_token_overlap_seconds,
            refresh_token_single_use: s.refresh_token_single_use,
            allow_app_only: s.allow_app_only,
            reset_password: s.reset_password.clone(),
            max_operations: s.max_operations,
            tenants,
            tokens,
            operations,
            faults,
            device_code: s.device_code.clone(),
        }
    }

    /// Creates or replaces an operation; returns its admin view.
    pub fn put_operation(&self, spec: OperationSpec) -> Result<Value, String> {
        spec.validate()?;
        let settings = self.settings();
        let now = Timestamp::now();
        let op = Operation::from_spec(spec, now, &settings.operation_defaults());
        let view = op.view(now, settings.location(&op.user_id, &op.id));
        lock(&self.ops).insert(op);
        Ok(view)
    }
}

fn settings_of(config: &Config, default_public_url: &str) -> Settings {
    let trim = |s: &str| s.trim_end_matches('/').to_owned();
    Settings {
        public_base_url: trim(config.public_base_url.as_deref().unwrap_or(default_public_url)),
        configured_public_base_url: config.public_base_url.clone(),
        graph_root: trim(&config.graph_root),
        default_progression: config.default_progression.clone(),
        not_found_code: config.not_found_code.clone(),
        evolvable_enums: config.evolvable_enums,
        access_token_lifetime_seconds: config.access_token_lifetime_seconds,
        refresh_token_overlap_seconds: config.refresh_token_overlap_seconds,
        refresh_token_single_use: config.refresh_token_single_use,
        allow_app_only: config.allow_app_only,
        reset_password: config.reset_password.clone(),
        max_operations: config.max_operations,
        device_code: config.device_code.clone(),
    }
}
