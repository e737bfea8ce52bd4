//! Unit tests of the directory: refresh-token states, access-token expiry.
use super::*;

fn tenant() -> TenantConfig {
    serde_json::from_value(serde_json::json!({
        "id": "T1",
        "aliases": ["contoso.onmicrosoft.com"],
        "clients": [{"clientId": "C1", "refreshTokens": ["rt0"]}]
    }))
    .unwrap()
}

#[test]
fn rotation_without_overlap() {
    let mut d = Directory::new();
    d.put_tenant(tenant());
    let t0 = Instant::now();
    assert_eq!(d.redeem_refresh("rt0", "t1", "c1", t0, Some(Duration::ZERO)), Ok(()));
    let next = d.issue_refresh("t1", "c1");
    assert_eq!(
        d.redeem_refresh("rt0", "t1", "c1", t0 + Duration::from_millis(1), Some(Duration::ZERO)),
        Err(RefreshRefusal::Reused)
    );
    assert_eq!(d.redeem_refresh(&next, "contoso.onmicrosoft.com", "C1", t0, Some(Duration::ZERO)), Ok(()));
}

#[test]
fn by_default_a_used_token_stays_valid_until_revoked() {
    let mut d = Directory::new();
    d.put_tenant(tenant());
    let t0 = Instant::now();
    assert_eq!(d.redeem_refresh("rt0", "t1", "c1", t0, None), Ok(()));
    let _next = d.issue_refresh("t1", "c1");
    assert_eq!(d.redeem_refresh("rt0", "t1", "c1", t0 + Duration::from_secs(3600), None), Ok(()));
    assert!(d.revoke_refresh("rt0"));
    assert_eq!(d.redeem_refresh("rt0", "t1", "c1", t0, None), Err(RefreshRefusal::Revoked));
}

#[test]
fn overlap_keeps_old_token_briefly() {
    let mut d = Directory::new();
    d.put_tenant(tenant());
    let t0 = Instant::now();
    let overlap = Duration::from_secs(5);
    d.redeem_refresh("rt0", "t1", "c1", t0, Some(overlap)).unwrap();
    assert!(d.redeem_refresh("rt0", "t1", "c1", t0 + Duration::from_secs(4), Some(overlap)).is_ok());
    assert_eq!(
        d.redeem_refresh("rt0", "t1", "c1", t0 + Duration::from_secs(6), Some(overlap)),
        Err(RefreshRefusal::Reused)
    );
}

#[test]
fn revoked_and_foreign_tokens_fail() {
    let mut d = Directory::new();
    d.put_tenant(tenant());
    let now = Instant::now();
    assert_eq!(d.redeem_refresh("rt0", "t1", "other", now, Some(Duration::ZERO)), Err(RefreshRefusal::OtherClient));
    assert!(d.revoke_refresh("rt0"));
    assert_eq!(d.redeem_refresh("rt0", "t1", "c1", now, Some(Duration::ZERO)), Err(RefreshRefusal::Revoked));
    assert_eq!(d.redeem_refresh("nope", "t1", "c1", now, Some(Duration::ZERO)), Err(RefreshRefusal::Unknown));
}

#[test]
fn re_registering_a_tenant_keeps_rotation_state() {
    let mut d = Directory::new();
    d.put_tenant(tenant());
    let now = Instant::now();
    d.redeem_refresh("rt0", "t1", "c1", now, Some(Duration::ZERO)).unwrap();
    let next = d.issue_refresh("t1", "c1");
    let mut again = tenant();
    again.clients[0].interaction_required = true;
    d.put_tenant(again);
    assert!(d.client("T1", "c1").unwrap().interaction_required);
    // The used token stays used, the new one stays valid.
    assert_eq!(
        d.redeem_refresh("rt0", "t1", "c1", now + Duration::from_secs(1), Some(Duration::ZERO)),
        Err(RefreshRefusal::Reused)
    );
    assert_eq!(d.tenant_configs()[0].clients[0].refresh_tokens, vec![next]);
}

#[test]
fn access_tokens_expire_and_are_opaque() {
    let mut d = Directory::new();
    let now = Timestamp::now();
    let grant = AccessToken {
        tenant: "T1".into(),
        client_id: None,
        kind: TokenKind::App,
        scopes: vec![],
        subject: None,
        expires_at: Some(now + SignedDuration::from_secs(10)),
    };
    let a = d.issue_access(grant.clone(), now);
    let b = d.issue_access(grant, now);
    assert_ne!(a, b);
    assert!(a.len() > 40);
    assert!(matches!(d.lookup_access(&a, now), AccessLookup::Valid(_)));
    let later = now + SignedDuration::from_secs(11);
    assert!(matches!(d.lookup_access(&a, later), AccessLookup::Expired));
    assert!(matches!(d.lookup_access("x", now), AccessLookup::Unknown));
}

#[test]
fn permission_names() {
    assert_eq!(
        permission_name("https://graph.microsoft.com/UserAuthenticationMethod.Read.All"),
        "UserAuthenticationMethod.Read.All"
    );
    assert_eq!(permission_name("User.Read"), "User.Read");
    assert_eq!(permission_name("https://graph.microsoft.com/.default"), ".default");
}
