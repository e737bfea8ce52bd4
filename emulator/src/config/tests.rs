use super::*;

#[test]
fn empty_config_gets_documented_defaults() {
    let c: Config = serde_json::from_str("{}").unwrap();
    assert_eq!(c.graph_root, "https://graph.microsoft.com");
    assert_eq!(c.access_token_lifetime_seconds, 3599);
    assert_eq!(c.refresh_token_overlap_seconds, 0);
    // Documented behaviour unless a test opts out.
    assert!(!c.allow_app_only);
    assert!(!c.refresh_token_single_use);
    assert_eq!(c.not_found_code, "itemNotFound");
    assert_eq!(
        c.default_progression,
        vec![Step::new("notStarted", 0), Step::new("running", 1000), Step::new("succeeded", 3000)]
    );
    assert!(c.validate().is_ok());
}

#[test]
fn explicit_null_differs_from_absent() {
    let s: OperationSpec = serde_json::from_str(r#"{"userId":"u","resourceLocation":null}"#).unwrap();
    assert_eq!(s.resource_location, Some(None));
    let s: OperationSpec = serde_json::from_str(r#"{"userId":"u"}"#).unwrap();
    assert_eq!(s.resource_location, None);
    let step: Step = serde_json::from_str(r#"{"status":"failed","statusDetail":null}"#).unwrap();
    assert_eq!(step.status_detail, Some(None));
}

#[test]
fn typos_are_rejected() {
    assert!(serde_json::from_str::<Config>(r#"{"tenant":[]}"#).is_err());
}
