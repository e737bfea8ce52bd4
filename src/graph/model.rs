//! Graph's `longRunningOperation` as it arrives on the wire.

use serde::Deserialize;

/// GET /users/{id}/authentication/operations/{id}. Every field is kept as the string
/// Graph sent: timestamps in the wild do not always parse (the docs' own example is
/// `2020-03-19T12-01-03.45Z`), and a status we do not know must still be shown.
/// Unknown properties (`@odata.context`, future additions) are ignored.
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LongRunningOperation {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<String>,
    #[serde(default)]
    pub last_action_date_time: Option<String>,
    #[serde(default)]
    pub resource_location: Option<String>,
    #[serde(default)]
    pub status_detail: Option<String>,
}

/// What a Graph status means for tracking. Graph's enum is evolvable: anything we do
/// not recognise is `Unknown` and never taken as success or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationState {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl OperationState {
    /// Case-insensitive: an older beta page documents `NotStarted`-style capitals.
    pub fn from_graph(status: Option<&str>) -> Self {
        match status.map(str::to_ascii_lowercase).as_deref() {
            Some("notstarted") => Self::NotStarted,
            Some("running") => Self::Running,
            Some("succeeded") => Self::Succeeded,
            Some("failed") => Self::Failed,
            _ => Self::Unknown,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// A metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "notStarted",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// Graph's error body: `{"error": {"code", "message", "innerError": {"request-id", ...}}}`.
#[derive(Deserialize, Debug, Default)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub inner_error: Option<InnerError>,
}

#[derive(Deserialize, Debug, Default)]
pub struct InnerError {
    #[serde(default, rename = "request-id")]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example_with_unknown_fields_and_malformed_timestamps() {
        let body = r#"{
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/authentication/operations/$entity",
            "id": "2d497bb-57bd-47a6-8749-5ccd0869f2bd",
            "createdDateTime": "2020-03-19T12-01-03.45Z",
            "lastActionDateTime": "2020-03-19T12-01-03.45Z",
            "status": "running",
            "resourceLocation": null,
            "statusDetail": null,
            "somethingNew": {"nested": true}
        }"#;
        let op: LongRunningOperation = serde_json::from_str(body).unwrap();
        assert_eq!(op.id.as_deref(), Some("2d497bb-57bd-47a6-8749-5ccd0869f2bd"));
        assert_eq!(op.created_date_time.as_deref(), Some("2020-03-19T12-01-03.45Z"));
        assert_eq!(OperationState::from_graph(op.status.as_deref()), OperationState::Running);
    }

    #[test]
    fn wrong_types_are_an_error_not_a_default() {
        assert!(serde_json::from_str::<LongRunningOperation>(r#"{"status": 3}"#).is_err());
    }

    #[test]
    fn only_succeeded_and_failed_are_terminal_and_unknown_values_are_never_success() {
        for (s, state) in [
            ("notStarted", OperationState::NotStarted),
            ("NotStarted", OperationState::NotStarted),
            ("running", OperationState::Running),
            ("Succeeded", OperationState::Succeeded),
            ("failed", OperationState::Failed),
            ("unknownFutureValue", OperationState::Unknown),
            ("partiallySucceeded", OperationState::Unknown),
            ("", OperationState::Unknown),
        ] {
            assert_eq!(OperationState::from_graph(Some(s)), state, "{s}");
        }
        assert_eq!(OperationState::from_graph(None), OperationState::Unknown);
        assert!(!OperationState::Unknown.is_terminal());
        assert!(OperationState::Failed.is_terminal());
    }
}
