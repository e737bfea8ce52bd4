//! Config shapes of injected failures: global random faults and scripted answers
//! (an operation's `respond`, a tenant's `tokenRespond`), with their `Retry-After`.

use serde::{Deserialize, Serialize};

/// One scripted answer of an operation's `respond` queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedResponse {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<RetryAfter>,
    /// Raw body. Without it an error status gets a Graph error body and a
    /// 2xx status gets the normal answer (useful with `delayMs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Graph error code; defaults to the usual one for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Global, random faults (seeded for reproducibility).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// RNG seed; a random one is used (and logged) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub rate503: f64,
    #[serde(default)]
    pub rate429: f64,
    #[serde(default)]
    pub rate_malformed: f64,
    #[serde(default)]
    pub rate_html: f64,
    /// Independent of the others: any answer may also be slow.
    #[serde(default)]
    pub rate_slow: f64,
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
    #[serde(default)]
    pub retry_after_on503: bool,
    /// Inclusive range the fault `Retry-After` seconds are drawn from.
    #[serde(default = "default_retry_after_range")]
    pub retry_after_seconds: [u64; 2],
    /// Faults also hit the token endpoint.
    #[serde(default)]
    pub token_endpoint_faults: bool,
    /// Faults also hit `resetPassword`.
    #[serde(default)]
    pub reset_password_faults: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: None,
            rate503: 0.0,
            rate429: 0.0,
            rate_malformed: 0.0,
            rate_html: 0.0,
            rate_slow: 0.0,
            slow_ms: default_slow_ms(),
            retry_after_on503: false,
            retry_after_seconds: default_retry_after_range(),
            token_endpoint_faults: false,
            reset_password_faults: false,
        }
    }
}

/// A `Retry-After` value: a string (`"2"`, `"2.128"`) or a number in the
/// config; kept as the exact header text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RetryAfterRepr", into = "String")]
pub struct RetryAfter(String);

impl RetryAfter {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<RetryAfter> for String {
    fn from(value: RetryAfter) -> Self {
        value.0
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RetryAfterRepr {
    Text(String),
    Whole(u64),
    Fraction(f64),
}

impl TryFrom<RetryAfterRepr> for RetryAfter {
    type Error = String;

    fn try_from(value: RetryAfterRepr) -> Result<Self, Self::Error> {
        let text = match value {
            RetryAfterRepr::Text(s) => s,
            RetryAfterRepr::Whole(n) => n.to_string(),
            RetryAfterRepr::Fraction(f) => f.to_string(),
        };
        // It ends up in a header: refuse what a header cannot carry.
        if text.is_empty() || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!("retryAfter {text:?} is not a valid header value"));
        }
        Ok(RetryAfter(text))
    }
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("rate503", self.rate503),
            ("rate429", self.rate429),
            ("rateMalformed", self.rate_malformed),
            ("rateHtml", self.rate_html),
            ("rateSlow", self.rate_slow),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("faults.{name} must be within 0..1, got {rate}"));
            }
        }
        // The four failure kinds share one draw, so together they are a
        // probability too.
        let exclusive = self.rate503 + self.rate429 + self.rate_malformed + self.rate_html;
        if exclusive > 1.0 + 1e-9 {
            return Err(format!(
                "faults: rate503 + rate429 + rateMalformed + rateHtml must not exceed 1, got {exclusive}"
            ));
        }
        let [min, max] = self.retry_after_seconds;
        if min > max {
            return Err(format!("faults.retryAfterSeconds: min {min} > max {max}"));
        }
        Ok(())
    }
}

fn default_slow_ms() -> u64 {
    2000
}

fn default_retry_after_range() -> [u64; 2] {
    [1, 5]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_strings_and_numbers() {
        let r: ScriptedResponse = serde_yaml::from_str("{status: 429, retryAfter: 2.128}").unwrap();
        assert_eq!(r.retry_after.unwrap().as_str(), "2.128");
        let r: ScriptedResponse = serde_json::from_str(r#"{"status":429,"retryAfter":"2"}"#).unwrap();
        assert_eq!(r.retry_after.unwrap().as_str(), "2");
        let r: ScriptedResponse = serde_json::from_str(r#"{"status":429,"retryAfter":3}"#).unwrap();
        assert_eq!(r.retry_after.unwrap().as_str(), "3");
        assert!(serde_json::from_str::<ScriptedResponse>(r#"{"status":429,"retryAfter":"a\nb"}"#).is_err());
    }

    #[test]
    fn fault_rates_are_checked() {
        let f = Faults { rate503: 0.7, rate429: 0.7, ..Faults::default() };
        assert!(f.validate().is_err());
        let f = Faults { rate_slow: 1.5, ..Faults::default() };
        assert!(f.validate().is_err());
    }
}
