//! The `{id | userPrincipalName}` part of a Graph user path, as Graph reads
//! it (user-get page, docs/graph-api.md):
//! - `/users/{id}`: an object id or a UPN, percent-decoded (`%23EXT%23` of a
//!   guest UPN is `#EXT#`, `@` may come as is);
//! - `/users('{upn}')`: the key form, required for a UPN starting with `$`
//!   (a `$` segment is a system query path for OData, so the plain form is
//!   refused with 400); quotes inside are doubled;
//! - `.` and `..` are path syntax, never ids.
//!
//! The paths the emulator builds (`Location`, `resourceLocation`) follow the same rules.
//! The routes of the key form are in `graph_keyed`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters kept as is in a path segment we build (RFC 3986 unreserved
/// plus `@`, which UPNs carry and Graph leaves unencoded).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'@');

pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `/v1.0/users/{user}/authentication/operations/{id}`, encoded.
/// A UPN starting with `$` takes the key form `users('…')`, as Graph
/// requires (the plain form would be refused).
pub fn operation_path(user: &str, id: &str) -> String {
    format!("/v1.0/{}/authentication/operations/{}", user_path(user), encode_segment(id))
}

/// `users/{user}`, or the key form `users('{user}')` for a `$` UPN, encoded.
pub fn user_path(user: &str) -> String {
    if user.starts_with('$') {
        format!("users('{}')", encode_segment(&user.replace('\'', "''")))
    } else {
        format!("users/{}", encode_segment(user))
    }
}

/// Why a user segment is no user id; the message of the 400.
#[derive(Debug, PartialEq, Eq)]
pub struct BadUserId(pub String);

/// The user of a plain `/users/{segment}` path (already percent-decoded).
pub fn plain(segment: &str) -> Result<String, BadUserId> {
    if segment == "." || segment == ".." || segment.is_empty() {
        return Err(BadUserId(format!("Invalid object identifier '{segment}'.")));
    }
    if segment.starts_with('$') {
        return Err(BadUserId(format!(
            "Invalid object identifier '{segment}'. A userPrincipalName starting with '$' must be addressed as users('{segment}')."
        )));
    }
    Ok(segment.to_owned())
}

/// The user of a key-form `/users('…')` path; `key` is what follows `users`
/// (percent-decoded), e.g. `('$x@contoso.com')`.
pub fn keyed(key: &str) -> Result<String, BadUserId> {
    let bad = || BadUserId(format!("Invalid key syntax: users{key}."));
    let inner = key.strip_prefix("('").and_then(|k| k.strip_suffix("')")).ok_or_else(bad)?;
    // OData string literal: a quote is written twice, a lone one ends it.
    if inner.is_empty() || inner.replace("''", "").contains('\'') {
        return Err(bad());
    }
    Ok(inner.replace("''", "'"))
}

/// `{segment}` of `/v1.0/{segment}/…` when it is `users(…)`: the key part.
pub(crate) fn key_of(segment: &str) -> Option<&str> {
    segment.strip_prefix("users").filter(|rest| rest.starts_with('('))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_segments() {
        assert_eq!(plain("alice@contoso.com"), Ok("alice@contoso.com".into()));
        assert_eq!(
            plain("bob_fabrikam.com#EXT#@contoso.onmicrosoft.com").unwrap(),
            "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"
        );
        assert!(plain("$admin@contoso.com").is_err());
        assert!(plain(".").is_err());
        assert!(plain("..").is_err());
    }

    #[test]
    fn key_segments() {
        assert_eq!(keyed("('$admin@contoso.com')"), Ok("$admin@contoso.com".into()));
        assert_eq!(keyed("('o''brien@contoso.com')"), Ok("o'brien@contoso.com".into()));
        assert!(keyed("('a'b')").is_err());
        assert!(keyed("('')").is_err());
        assert!(keyed("($admin)").is_err());
        assert_eq!(key_of("users('x')"), Some("('x')"));
        assert_eq!(key_of("groups('x')"), None);
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(operation_path("a b/c@d.com", "x"), "/v1.0/users/a%20b%2Fc@d.com/authentication/operations/x");
        assert_eq!(operation_path("$a@d.com", "x"), "/v1.0/users('%24a@d.com')/authentication/operations/x");
    }
}
