//! The `PasswordResetOperation` custom resource (group `pwreset.dev`, version `v1alpha1`).
//!
//! Doc comments on these fields are what `kubectl explain` shows: they are written for
//! the people who operate the cluster, not for Rust readers.

// kube's `printcolumn(...)` repeats keys such as `type_` by design; clippy reads them as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rejects characters that would let an id escape its URL path segment, and control characters.
pub(crate) const PATH_SEGMENT_RULE: &str = "!self.matches('[/?#%\\\\s\\\\x00-\\\\x1f\\\\x7f]')";
/// The same for a user id, where `#` is allowed: guests' UPNs contain `#EXT#` (sent encoded).
pub(crate) const USER_SEGMENT_RULE: &str = "!self.matches('[/?%\\\\\\\\\\\\s\\\\x00-\\\\x1f\\\\x7f]')";
/// `.` and `..` are not ids: URL libraries collapse them into the parent path.
pub(crate) const NOT_DOTS_RULE: &str = "!self.matches('^[.]+$')";

/// Tracks one Microsoft Entra ID password-reset operation (a Microsoft Graph
/// longRunningOperation read with GET /users/{id}/authentication/operations/{id}) and mirrors
/// its state into status. Conditions: Ready (the operation succeeded), Reconciling (not yet
/// finished), Stalled (failed, or cannot progress without a person), Finished (either end).
/// Wait for the end with `kubectl wait --for=condition=Finished`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pwreset.dev",
    version = "v1alpha1",
    kind = "PasswordResetOperation",
    plural = "passwordresetoperations",
    singular = "passwordresetoperation",
    shortname = "pwreset",
    category = "pwreset",
    namespaced,
    status = "PasswordResetOperationStatus",
    derive = "PartialEq",
    doc = "PasswordResetOperation tracks one Microsoft Entra ID password-reset operation and mirrors its state into status.",
    // Like Flux and cert-manager: READY and REASON first, then who and when. The ids come
    // from status, which is filled for a location-based resource too. LAST ACTION is Graph's
    // timestamp as an age (`<invalid>` if Graph sent a malformed one; status keeps it verbatim).
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "User", type_ = "string", json_path = ".status.userId"),
    printcolumn(name = "Last Action", type_ = "date", json_path = ".status.lastActionDateTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Graph's own word; REASON already says it for people, so only with -o wide.
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status", priority = 1),
    printcolumn(name = "Operation", type_ = "string", json_path = ".status.operationId", priority = 1),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    )
)]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("spec is immutable: delete this PasswordResetOperation and create a new one to track another operation"),
    validation = Rule::new("has(self.location) || (has(self.userId) && has(self.operationId))").message("name the operation: set userId and operationId, or set location"),
    validation = Rule::new("!(has(self.location) && (has(self.userId) || has(self.operationId)))").message("set either location, or userId with operationId, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetOperationSpec {
    /// The user whose password is being reset: their Entra object id (a GUID) or
    /// userPrincipalName (such as alice@contoso.com). Use together with operationId, or use
    /// location instead of both. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(
        validation = Rule::new(USER_SEGMENT_RULE).message("userId must not contain '/', '\\', '?', '%', whitespace or control characters: it is used as one URL path segment (a guest's #EXT# is fine)"),
        validation = Rule::new(NOT_DOTS_RULE).message("userId must be an object id or userPrincipalName, not '.' or '..'")
    )]
    pub user_id: Option<String>,

    /// The id of the operation, the last segment of the Location URL that resetPassword
    /// returned. It is not always a GUID. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = Rule::new(PATH_SEGMENT_RULE).message("operationId must not contain '/', '?', '#', '%', whitespace or control characters: it is used as one URL path segment"),
        validation = Rule::new(NOT_DOTS_RULE).message("operationId must be the id from the Location URL, not '.' or '..'")
    )]
    pub operation_id: Option<String>,

    /// The full URL from the Location header of the resetPassword answer, query string
    /// included (it carries routing parameters such as aadgdc and aadgsu). It is polled
    /// exactly as given, and only if its host is the operator's configured Graph host:
    /// the operator never sends a token anywhere else. Alternative to userId and
    /// operationId. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(
        validation = Rule::new("self.startsWith('https://') || self.matches('^http://(127\\\\.0\\\\.0\\\\.1|localhost|\\\\[::1\\\\])(:[0-9]+)?/')").message("location must be an https:// URL of Microsoft Graph (plain http is accepted only for a Graph emulator on the loopback address)"),
        validation = Rule::new("self.matches('^https?://[^/?#@\\\\\\\\]+/v1[.]0/users(/[^/?#\\\\\\\\]+|[(]\\\\x27[^/?#\\\\\\\\]+\\\\x27[)])/authentication/operations/[^/?#\\\\\\\\]+([?][^#]*)?$')").message("location must be a Graph operation URL of the form https://HOST/v1.0/users/{user}/authentication/operations/{id}[?query], with no user name or password in it"),
        validation = Rule::new("!self.matches('/[.]{1,2}([/?]|$)') && !self.matches('(?i)%2f|%5c|%2e')").message("location must not contain dot segments ('.', '..') or encoded slashes or dots"),
        validation = Rule::new("!self.matches('[\\\\s\\\\x00-\\\\x1f\\\\x7f]')").message("location must not contain whitespace or control characters")
    )]
    pub location: Option<String>,

    /// The Secret, in this resource's namespace, holding the Graph credentials. Optional
    /// when the operator was started with a default credentials Secret name. A resource can
    /// never read another namespace's Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// How often to poll Graph while the operation runs, as a duration such as 15s, 1m or
    /// 1m30s, from 1s to 1h. Defaults to the operator's --poll-interval. Graph's Retry-After
    /// and error backoff can make individual waits longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("pollInterval must be a duration from 1s to 1h, such as 15s, 1m or 1m30s"))]
    pub poll_interval: Option<String>,

    /// Seconds after creation of this resource after which tracking gives up: the resource
    /// becomes Stalled and Finished with reason DeadlineExceeded, like a Job's
    /// activeDeadlineSeconds. Unset: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub active_deadline_seconds: Option<i64>,

    /// Seconds to keep this resource after it finished (succeeded, failed or gave up);
    /// then the operator deletes it, like a Job's ttlSecondsAfterFinished. 0 deletes it
    /// right after it finishes. Unset: kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub ttl_seconds_after_finished: Option<i32>,
}

/// A Secret in the same namespace as the PasswordResetOperation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret. Keys: `token` (a bearer token), or `tenantId` and `clientId` with
    /// `refreshToken`, `clientSecret` or `federatedTokenFile`; see the operator's README.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// The observed state: Graph's fields mirrored verbatim, plus conditions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetOperationStatus {
    /// Graph's status of the operation, exactly as Graph sent it: notStarted, running,
    /// succeeded, failed, or a value this operator does not know (treated as still running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,

    /// The operation id: Graph's, once Graph has answered; before that the one the spec
    /// names (operationId, or the last path segment of location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,

    /// The user the operation belongs to, as the spec names it (userId, or the user segment
    /// of location), so `kubectl get` shows it for every resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,

    /// When Graph created the operation, verbatim from Graph (not reformatted, so an
    /// unusual timestamp is shown as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,

    /// When Graph last acted on the operation, verbatim from Graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action_date_time: Option<String>,

    /// URI of the resource the operation acts on, if Graph reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_location: Option<String>,

    /// Graph's free-text details about the operation's status, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// When the operator last read the operation from Graph successfully. Updated only
    /// together with another change, so an unchanged poll costs no API write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_polled_time: Option<Time>,

    /// When the operator saw the operation finish, or gave up on it. The TTL counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Since when Graph has answered 404 for the operation (cleared when it is found).
    /// After the operator's --not-found-grace the resource is Stalled with reason
    /// OperationNotFound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found_since: Option<Time>,

    /// Graph's request-id of the failed request that started the current problem: quote it
    /// to Microsoft support (the first of an episode; later retries of the same problem keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    /// The client-request-id the operator sent with that request: Microsoft support asks for
    /// it together with requestId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,

    /// The last value of the pwreset.dev/reconcile-requested-at annotation the operator acted
    /// on by polling Graph. A request on a finished or paused resource is not acted on, so
    /// it is not recorded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// Ready, Reconciling, Stalled and Finished, in the metav1.Condition shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// A list of metav1.Condition merged by `type`, as kstatus and `kubectl wait` expect.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let object = schema.ensure_object();
    object.insert("x-kubernetes-list-type".into(), "map".into());
    object.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// Annotation asking for an immediate poll of Graph: set it to a new value (a timestamp, by
/// convention) and the operator polls at once and records the value in
/// `status.lastHandledReconcileAt`. Like Flux's `reconcile.fluxcd.io/requestedAt`.
pub const RECONCILE_REQUESTED_AT: &str = "pwreset.dev/reconcile-requested-at";
/// Annotation that stops Graph polls while it is `"true"`; removing it resumes polling.
pub const PAUSED: &str = "pwreset.dev/paused";

/// The CRD as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&PasswordResetOperation::crd()).expect("the CRD always serializes")
}

impl PasswordResetOperationSpec {
    /// The Secret that holds this resource's credentials, if it names one.
    pub fn secret_name(&self) -> Option<&str> {
        self.credentials_secret_ref.as_ref().map(|r| r.name.as_str())
    }
}

/// Whether the `pwreset.dev/paused` annotation is `"true"` (any other value: not paused).
pub fn is_paused(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(PAUSED)).is_some_and(|v| v == "true")
}

/// The value of the `pwreset.dev/reconcile-requested-at` annotation, if set.
pub fn reconcile_requested_at(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref().and_then(|a| a.get(RECONCILE_REQUESTED_AT)).map(String::as_str)
}
