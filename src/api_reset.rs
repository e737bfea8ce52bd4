//! The `PasswordReset` custom resource: starts one Microsoft Entra ID password reset
//! (Graph resetPassword) and tracks the operation it started through a child
//! `PasswordResetOperation`.
//!
//! Doc comments on these fields are what `kubectl explain` shows: they are written for
//! the people who operate the cluster, not for Rust readers.

// kube's `printcolumn(...)` repeats keys such as `type_` by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{NOT_DOTS_RULE, SecretReference, USER_SEGMENT_RULE, conditions_schema};

/// Resets one Microsoft Entra ID user's password with Graph's resetPassword, at most once,
/// stores the new password in a Secret this resource owns, and tracks the operation Graph
/// started through a child PasswordResetOperation. Conditions: Ready (the reset succeeded),
/// Reconciling, Stalled (failed, or needs a person: see the reason), Finished. Creating a
/// PasswordReset IS the request to reset: deleting and re-creating one (for example a GitOps
/// prune and re-sync) resets the password again.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pwreset.dev",
    version = "v1alpha1",
    kind = "PasswordReset",
    plural = "passwordresets",
    singular = "passwordreset",
    // Not in the `pwreset` category: `pwreset` is PasswordResetOperation's short name, and
    // kubectl expands a category before short names, so `kubectl get pwreset` would list both.
    shortname = "pwr",
    namespaced,
    status = "PasswordResetStatus",
    derive = "PartialEq",
    doc = "PasswordReset resets one Microsoft Entra ID user's password, at most once, and tracks the operation.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.userId"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".status.attempt.number"),
    printcolumn(name = "Operation", type_ = "string", json_path = ".status.operationId"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.attempt.phase", priority = 1),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    )
)]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("spec is immutable: a PasswordReset is one reset; create a new one for another")
)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetSpec {
    /// The user whose password is reset: their Entra object id (a GUID) or
    /// userPrincipalName (such as alice@contoso.com). Never the account the credentials
    /// sign in as (Graph refuses that). Immutable.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(
        validation = Rule::new(USER_SEGMENT_RULE).message("userId must not contain '/', '\\', '?', '%', whitespace or control characters: it is used as one URL path segment (a guest's #EXT# is fine)"),
        validation = Rule::new(NOT_DOTS_RULE).message("userId must be an object id or userPrincipalName, not '.' or '..'")
    )]
    pub user_id: String,

    /// The Secret, in this namespace, holding delegated Graph credentials (tenantId,
    /// clientId, refreshToken) of an administrator whose app has the delegated permission
    /// UserAuthenticationMethod.ReadWrite.All (Microsoft does not support application
    /// permissions for resetPassword). Optional when the operator has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// Name of the Secret the operator creates in this namespace for the new password
    /// (key `password`). It is owned by this PasswordReset and deleted with it. It must
    /// not exist yet, unless an earlier attempt of this same PasswordReset created it.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub password_secret_name: String,

    /// Use this password instead of one the operator generates: a Secret in this namespace
    /// and its key. The value is copied into the password Secret before it is sent.
    /// Graph rejects passwords that do not meet the tenant's complexity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_from: Option<PasswordSource>,

    /// How often the child PasswordResetOperation polls Graph, as a duration such as 15s
    /// or 1m (1s to 1h). Defaults to the operator's --poll-interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("pollInterval must be a duration from 1s to 1h, such as 15s, 1m or 1m30s"))]
    pub poll_interval: Option<String>,

    /// Seconds after the child PasswordResetOperation's creation after which tracking gives
    /// up (DeadlineExceeded). It never causes another reset. Unset: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub active_deadline_seconds: Option<i64>,

    /// Seconds to keep this PasswordReset after it finished; then the operator deletes it,
    /// and with it the password Secret and the child. Unset: kept forever. Beware GitOps:
    /// a tool that re-creates a deleted PasswordReset starts a new reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub ttl_seconds_after_finished: Option<i32>,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PasswordSource {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// The key holding the password. Default: password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Where the current attempt stands. `Sending` is written before the request leaves: a
/// status that still says `Sending` after a crash means nobody knows whether Graph acted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AttemptPhase {
    /// The request is being sent (or was, when the operator stopped before the answer).
    Sending,
    /// Graph certainly did not act (throttled, refused the credentials, or the connection
    /// never reached it): the same attempt is sent again later.
    NotSent,
    /// Graph accepted the reset (202).
    Accepted,
    /// Graph refused the reset for good (for example the password's complexity).
    Rejected,
    /// Nobody knows whether Graph reset the password (timeout, 5xx, connection lost after
    /// sending, operator restart). Nothing more is sent until a person allows it.
    OutcomeUnknown,
}

/// One resetPassword attempt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1 for the first attempt; each attempt a person allows adds one.
    pub number: u32,
    pub phase: AttemptPhase,
    /// When the operator recorded the attempt (before sending it).
    pub started_at: Time,
    /// When the answer that decided the phase came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// NotSent only: not sent again before this time (Graph's Retry-After or backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// How many times this attempt was sent and certainly not acted on (NotSent).
    #[serde(default)]
    pub not_sent_count: u32,
    /// Graph's request-id of the last answer (quote it to Microsoft support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client-request-id the operator sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
}

/// The observed state of the reset. The password is never in status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetStatus {
    /// The current attempt (the history is in Events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// The Location URL Graph answered with (the operation to poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Graph's operation id, from Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The child PasswordResetOperation that tracks the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the reset finished (succeeded, failed or gave up). The TTL counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Ready, Reconciling, Stalled and Finished, in the metav1.Condition shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Annotation that allows exactly one more attempt after `ResetOutcomeUnknown`: set it to
/// the number in `status.attempt.number` (the attempt whose outcome is unknown). A value
/// for an older attempt allows nothing, so a stale annotation can never allow two.
pub const ALLOW_ANOTHER_ATTEMPT: &str = "pwreset.dev/allow-another-attempt";
/// The password method's well-known id (Graph documents it).
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";
/// Key of the password in the password Secret.
pub const PASSWORD_KEY: &str = "password";
/// Label on the password Secret: the attempt whose password it holds.
pub const ATTEMPT_LABEL: &str = "pwreset.dev/attempt";

/// The CRD as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&PasswordReset::crd()).expect("the CRD always serializes")
}

impl PasswordReset {
    /// The value of the allow-another-attempt annotation, if set.
    pub fn allowed_attempt(&self) -> Option<&str> {
        self.metadata.annotations.as_ref().and_then(|a| a.get(ALLOW_ANOTHER_ATTEMPT)).map(String::as_str)
    }
}
