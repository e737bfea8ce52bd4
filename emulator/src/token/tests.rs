use super::*;
use crate::client_auth::JWT_BEARER;
use crate::config::TenantConfig;
use crate::identity::AccessLookup;

const ROOT: &str = "https://graph.microsoft.com";

fn directory() -> Directory {
    let tenant: TenantConfig = serde_json::from_value(json!({
        "id": "tid",
        "clients": [
            {"clientId": "public", "refreshTokens": ["rt0"], "subject": "admin-1",
             "scopes": ["UserAuthenticationMethod.ReadWrite.All"]},
            {"clientId": "conf", "clientSecret": "s3cret", "refreshTokens": ["rt1"]},
            {"clientId": "wif", "federatedAssertion": "a.b.c"},
            {"clientId": "any", "acceptAnyAssertion": true,
             "scopes": ["UserAuthenticationMethod.Read.All"]}
        ]
    }))
    .unwrap();
    let mut d = Directory::new();
    d.put_tenant(tenant);
    d
}

fn run(d: &mut Directory, pairs: &[(&str, &str)]) -> Result<Value, TokenError> {
    let form = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let settings = GrantSettings {
        graph_root: ROOT,
        access_token_lifetime: Duration::from_secs(3599),
        refresh_single_use: Some(Duration::ZERO),
    };
    grant(d, &settings, "tid", &form, Timestamp::now(), Instant::now())
}

fn refresh(client: &str, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token".into()),
        ("client_id", client.into()),
        ("refresh_token", token.into()),
        ("scope", "https://graph.microsoft.com/UserAuthenticationMethod.Read.All offline_access".into()),
    ]
}

fn as_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn refresh_rotates() {
    let mut d = directory();
    // Granted ReadWrite.All does not cover a request for Read.All.
    let err = run(&mut d, &as_pairs(&refresh("public", "rt0"))).unwrap_err();
    assert_eq!((err.error, err.code), ("invalid_grant", 65001));

    let mut req = refresh("public", "rt0");
    req[3].1 = "UserAuthenticationMethod.ReadWrite.All offline_access".into();
    let ok = run(&mut d, &as_pairs(&req)).unwrap();
    assert_eq!(ok["scope"], "https://graph.microsoft.com/UserAuthenticationMethod.ReadWrite.All offline_access");
    let next = ok["refresh_token"].as_str().unwrap().to_owned();
    let access = ok["access_token"].as_str().unwrap();
    match d.lookup_access(access, Timestamp::now()) {
        AccessLookup::Valid(t) => {
            assert_eq!(t.kind, TokenKind::Delegated);
            assert_eq!(t.subject.as_deref(), Some("admin-1"));
        }
        _ => panic!("issued token must be valid"),
    }
    let err = run(&mut d, &as_pairs(&req)).unwrap_err();
    assert_eq!(err.error, "invalid_grant");
    req[2].1 = next;
    assert!(run(&mut d, &as_pairs(&req)).is_ok());
}

#[test]
fn confidential_refresh_needs_the_secret() {
    let mut d = directory();
    let mut req = refresh("conf", "rt1");
    req[3].1 = ".default".into();
    let err = run(&mut d, &as_pairs(&req)).unwrap_err();
    assert_eq!((err.status, err.error), (StatusCode::UNAUTHORIZED, "invalid_client"));
    req.push(("client_secret", "wrong".into()));
    assert_eq!(run(&mut d, &as_pairs(&req)).unwrap_err().code, 7000215);
    req.last_mut().unwrap().1 = "s3cret".into();
    assert!(run(&mut d, &as_pairs(&req)).is_ok());
}

#[test]
fn client_credentials_variants() {
    let mut d = directory();
    let base = [("grant_type", "client_credentials"), ("scope", "https://graph.microsoft.com/.default")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let ok = run(&mut d, &with(&[("client_id", "conf"), ("client_secret", "s3cret")])).unwrap();
    assert!(ok.get("refresh_token").is_none());
    assert_eq!(ok["expires_in"], 3599);
    let assertion = [("client_id", "wif"), ("client_assertion_type", JWT_BEARER), ("client_assertion", "a.b.c")];
    assert!(run(&mut d, &with(&assertion)).is_ok());
    let wrong = [("client_id", "wif"), ("client_assertion_type", JWT_BEARER), ("client_assertion", "x.y.z")];
    assert_eq!(run(&mut d, &with(&wrong)).unwrap_err().code, 700213);
    let any = [
        ("client_id", "any"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
    ];
    assert!(run(&mut d, &with(&any)).is_ok());
    let junk = [("client_id", "any"), ("client_assertion_type", JWT_BEARER), ("client_assertion", "not a jwt")];
    assert_eq!(run(&mut d, &with(&junk)).unwrap_err().code, 50027);
    // A public client has no credential for app-only tokens.
    assert_eq!(run(&mut d, &with(&[("client_id", "public")])).unwrap_err().error, "invalid_client");
}

#[test]
fn scope_errors() {
    let mut d = directory();
    let creds = [("grant_type", "client_credentials"), ("client_id", "conf"), ("client_secret", "s3cret")];
    let with_scope = |scope: &'static str| {
        let mut v = creds.to_vec();
        v.push(("scope", scope));
        v
    };
    let err = run(&mut d, &with_scope("https://graph.microsoft.us/.default")).unwrap_err();
    assert_eq!((err.error, err.code), ("invalid_scope", 500011));
    let err = run(&mut d, &with_scope("https://graph.microsoft.com/User.Read")).unwrap_err();
    assert_eq!(err.code, 1002012);
    let err = run(&mut d, &creds).unwrap_err();
    assert_eq!((err.error, err.code), ("invalid_request", 900144));
}

#[test]
fn request_errors() {
    let mut d = directory();
    let err = run(&mut d, &[("grant_type", "password")]).unwrap_err();
    assert_eq!(err.error, "unsupported_grant_type");
    let err = run(&mut d, &[("grant_type", "client_credentials"), ("client_id", "nope")]).unwrap_err();
    assert_eq!((err.error, err.code), ("unauthorized_client", 700016));
    let settings = GrantSettings {
        graph_root: ROOT,
        access_token_lifetime: Duration::from_secs(1),
        refresh_single_use: Some(Duration::ZERO),
    };
    let form = [("grant_type".to_string(), "client_credentials".to_string())].into();
    let err = grant(&mut d, &settings, "other", &form, Timestamp::now(), Instant::now()).unwrap_err();
    assert_eq!((err.error, err.code), ("invalid_request", 90002));
}

#[test]
fn interaction_required_blocks_refresh() {
    let mut d = directory();
    d.update_client("tid", "public", |c| c.interaction_required = true);
    let mut req = refresh("public", "rt0");
    req[3].1 = ".default offline_access".into();
    let err = run(&mut d, &as_pairs(&req)).unwrap_err();
    assert_eq!(err.error, "interaction_required");
}
