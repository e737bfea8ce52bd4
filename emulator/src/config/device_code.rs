//! Config shape of the device authorization grant (`deviceCode`).

use serde::{Deserialize, Serialize};

/// How the device-code endpoint and grant behave. Defaults are Microsoft's
/// documented ones (15 minutes, 5 s interval, microsoft.com/devicelogin);
/// `announcedIntervalSeconds` and `autoApproveAfterSeconds` are named
/// deviations for tests and demos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceCodeConfig {
    /// Lifetime of a device code and its user code (`expires_in`).
    #[serde(default = "default_expires_in")]
    pub expires_in_seconds: u64,
    /// The interval the emulator enforces: a poll sooner than this after the
    /// previous one gets `slow_down` (RFC 8628).
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Deviation: the `interval` the answer announces, when it should differ
    /// from the enforced one (smaller, to see a client handle `slow_down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_interval_seconds: Option<u64>,
    /// Where the person signs in (`verification_uri`).
    #[serde(default = "default_verification_uri")]
    pub verification_uri: String,
    /// Deviation for demos: a pending code counts as approved this long after
    /// it was issued, as if a person had signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve_after_seconds: Option<u64>,
    /// The user an automatic approval signs in as (default: the client's `subject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve_user_id: Option<String>,
}

impl Default for DeviceCodeConfig {
    fn default() -> Self {
        DeviceCodeConfig {
            expires_in_seconds: default_expires_in(),
            interval_seconds: default_interval(),
            announced_interval_seconds: None,
            verification_uri: default_verification_uri(),
            auto_approve_after_seconds: None,
            auto_approve_user_id: None,
        }
    }
}

impl DeviceCodeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.expires_in_seconds == 0 {
            return Err("deviceCode.expiresInSeconds must be at least 1".into());
        }
        if self.interval_seconds == 0 || self.announced_interval_seconds == Some(0) {
            return Err("deviceCode.intervalSeconds and announcedIntervalSeconds must be at least 1".into());
        }
        url::Url::parse(&self.verification_uri).map_err(|e| format!("deviceCode.verificationUri: {e}"))?;
        Ok(())
    }

    /// The interval the answer carries.
    pub fn announced_interval(&self) -> u64 {
        self.announced_interval_seconds.unwrap_or(self.interval_seconds)
    }
}

fn default_expires_in() -> u64 {
    900
}

fn default_interval() -> u64 {
    5
}

fn default_verification_uri() -> String {
    "https://microsoft.com/devicelogin".into()
}
