//! Every condition reason the operator writes, in one place: its string, what kind of state
//! it means (still going, blocked until a person acts, failed, succeeded), the event type it
//! gets, and the one line that tells a person what to do. Conditions, events, metric labels,
//! the README's reason table (checked by a test) and the Argo CD health check follow from here.

use std::fmt;

/// What a reason says about where tracking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Still going: waiting for Graph, or retrying a passing error. `Reconciling=True`.
    Progressing,
    /// Cannot progress until a person acts; not finished. `Stalled=True`, `Finished=False`.
    Blocked,
    /// Over, without success. `Stalled=True`, `Finished=True`.
    Failed,
    /// The operation succeeded. `Ready=True`, `Finished=True`.
    Succeeded,
}

impl Kind {
    pub fn is_terminal(self) -> bool {
        matches!(self, Kind::Failed | Kind::Succeeded)
    }

    /// The conditions this kind sets to True, as the README's reason table lists them.
    pub fn true_conditions(self) -> &'static str {
        match self {
            Kind::Progressing => "Reconciling",
            Kind::Blocked => "Stalled",
            Kind::Failed => "Stalled, Finished",
            Kind::Succeeded => "Ready, Finished",
        }
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident => $kind:ident, $problem:literal, $todo:literal;)*) => {
        /// A condition reason (stable, CamelCase: scripts and alerts match on it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason { $($(#[$doc])* $name,)* }

        impl Reason {
            /// Every reason, in the order of the README's table.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name),)* }
            }

            pub fn kind(self) -> Kind {
                match self { $(Reason::$name => Kind::$kind,)* }
            }

            /// A problem is worth a Warning event and counts in `pwreset_reconcile_errors_total`;
            /// ordinary progress is not.
            pub fn is_problem(self) -> bool {
                match self { $(Reason::$name => $problem,)* }
            }

            /// What a person should do about it (the README's "what to do" column).
            pub fn what_to_do(self) -> &'static str {
                match self { $(Reason::$name => $todo,)* }
            }

            pub fn parse(s: &str) -> Option<Reason> {
                match s { $(stringify!($name) => Some(Reason::$name),)* _ => None }
            }
        }
    };
}

reasons! {
    /// Conditions written, Graph has not answered yet.
    WaitingForGraph => Progressing, false, "nothing";
    NotStarted => Progressing, false, "nothing";
    Running => Progressing, false, "nothing";
    /// The pwreset.dev/paused annotation is "true": no Graph polls until it is removed.
    Paused => Progressing, false, "remove the pwreset.dev/paused annotation to resume polling";
    Succeeded => Succeeded, false, "nothing";
    OperationFailed => Failed, true, "read the message (Graph's statusDetail)";
    UnknownStatus => Progressing, true, "nothing; Graph sent a status this version does not know, polled with backoff";
    Throttled => Progressing, true, "nothing; the tenant waits as long as Graph asks (Retry-After)";
    GraphUnavailable => Progressing, true, "nothing; retried with backoff";
    InvalidGraphResponse => Progressing, true, "nothing; retried with backoff";
    OperationNotFoundYet => Progressing, true, "nothing; a 404 is retried for --not-found-grace";
    TokenEndpointUnavailable => Progressing, true, "nothing; retried with backoff";
    KubernetesApiError => Progressing, true, "nothing; retried with backoff (check the operator's RBAC if it persists)";
    OperationNotFound => Failed, true, "check userId/operationId; operations are purged after a while";
    DeadlineExceeded => Failed, true, "activeDeadlineSeconds passed";
    LocationHostNotAllowed => Failed, true, "location is not on the operator's Graph host";
    InvalidLocation => Failed, true, "location must be the operation URL resetPassword returned (no user name, dot segments or encoded slashes)";
    InvalidSpec => Failed, true, "set userId with operationId, or location (an older CRD let this through)";
    CredentialsNotConfigured => Blocked, true, "name a Secret (spec.credentialsSecretRef or --default-credentials-secret); picked up within 30 s";
    CredentialsSecretNotFound => Blocked, true, "create the Secret; picked up within 30 s";
    InvalidCredentials => Blocked, true, "fix the Secret's keys as the message says; picked up within 30 s";
    CredentialsRejected => Blocked, true, "fix the credentials in the Secret";
    AppOnlyNotSupported => Blocked, true, "use delegated credentials (tenantId, clientId, refreshToken): Microsoft does not support application permissions for this API";
    PermissionDenied => Blocked, true, "grant UserAuthenticationMethod.Read.All and an Entra role such as Authentication Administrator";
    ReauthenticationRequired => Blocked, true, "a person must sign in again: run `pwreset-operator login` (device code), which stores the new refreshToken in the Secret";
    ConsentRequired => Blocked, true, "an administrator must grant consent to the app's delegated permission; a new sign-in does not help";
    GraphRequestRejected => Blocked, true, "Graph refused the request (400, 405, 409, a redirect): retried twice, then PermanentGraphError";
    PermanentGraphError => Failed, true, "Graph refused the same request three times: check the ids and create a new resource";
    /// PasswordReset: the password Secret is written, resetPassword is about to be sent.
    ResetPending => Progressing, false, "nothing; a PasswordReset is about to send resetPassword";
    /// PasswordReset: Graph accepted the reset (202); the child PasswordResetOperation starts tracking.
    ResetAccepted => Progressing, false, "nothing; the operation Graph started is being tracked";
    /// PasswordReset: nobody knows whether Graph reset the password; nothing more is sent.
    ResetOutcomeUnknown => Blocked, true, "check whether the user's password changed (Entra audit log: Reset password (by admin)); to try once more with a new password, set annotation pwreset.dev/allow-another-attempt to status.attempt.number";
    /// PasswordReset: Graph answered 202 without a Location: the reset was accepted but cannot be tracked.
    ResetAcceptedWithoutLocation => Failed, true, "Graph accepted the reset but gave no operation to track: check the user's sign-in and the Entra audit log";
    /// PasswordReset: Graph refused the reset for good (e.g. password complexity, unknown user).
    ResetRejected => Failed, true, "read the message (Graph's error); fix the cause and create a new PasswordReset";
    /// PasswordReset: the password Secret exists and belongs to something else.
    PasswordSecretConflict => Blocked, true, "choose another spec.passwordSecretName (create a new PasswordReset) or delete that Secret";
    /// PasswordReset: spec.passwordFrom names a Secret or key that does not exist.
    PasswordSourceNotFound => Blocked, true, "create the Secret named in spec.passwordFrom with the key; picked up within 30 s";
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The README's reason table, one row per reason, exactly as this type describes them.
pub fn readme_table() -> String {
    let mut out = String::from("| reason | conditions True | what to do |\n|---|---|---|\n");
    for reason in Reason::ALL {
        out.push_str(&format!("| `{reason}` | {} | {} |\n", reason.kind().true_conditions(), reason.what_to_do()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// metav1.Condition's reason pattern: `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`.
    fn valid_condition_reason(r: &str) -> bool {
        let b = r.as_bytes();
        let inner = |c: &u8| c.is_ascii_alphanumeric() || b"_,:".contains(c);
        let last = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(inner) && b.last().is_some_and(last)
    }

    #[test]
    fn every_reason_is_a_valid_condition_reason_and_parses_back() {
        assert!(!valid_condition_reason("Not Valid") && !valid_condition_reason("1x") && !valid_condition_reason(""));
        for reason in Reason::ALL {
            assert!(valid_condition_reason(reason.as_str()), "{reason}");
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
            assert!(!reason.what_to_do().is_empty());
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    #[test]
    fn ordinary_progress_and_success_are_not_problems_and_everything_else_is() {
        for reason in Reason::ALL {
            let ordinary = matches!(
                reason,
                Reason::WaitingForGraph
                    | Reason::NotStarted
                    | Reason::Running
                    | Reason::Paused
                    | Reason::Succeeded
                    | Reason::ResetPending
                    | Reason::ResetAccepted
            );
            assert_eq!(reason.is_problem(), !ordinary, "{reason}");
            if reason.kind() != Kind::Progressing {
                assert!(reason.is_problem() || reason.kind() == Kind::Succeeded, "{reason}");
            }
        }
    }

    #[test]
    fn the_readme_table_matches_this_type() {
        let readme = include_str!("../README.md");
        let expected = readme_table();
        assert!(
            readme.contains(&expected),
            "README.md's reason table differs from src/reason.rs; replace it with:\n\n{expected}"
        );
    }
}
