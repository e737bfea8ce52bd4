//! Which URL to GET for an operation, and the rules that keep the bearer token on the
//! configured Graph host and on the operation endpoint only.

use url::Url;

use super::client::GraphErrorKind;

/// Why a URL was refused (no request was made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationError {
    /// `ForeignHost` or `BadLocation`.
    pub kind: GraphErrorKind,
    pub message: String,
}

/// Which operation to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationRef<'a> {
    ById {
        user: &'a str,
        operation: &'a str,
    },
    /// The Location URL from resetPassword, polled as given (its query routes the request).
    Location(&'a str),
}

/// The URL to GET.
///
/// By id: `{root}/v1.0/users/{user}/authentication/operations/{operation}`, each id one
/// percent-encoded path segment (a guest's `#EXT#` is sent as `%23EXT%23`); a UPN that starts
/// with `$` is addressed as `users('$x@y')`, as Graph requires.
///
/// A Location must be exactly `https://{Graph host}/v1.0/users/{id}/authentication/operations/{id}`
/// plus an optional query: the same scheme, host and port as the configured root, no user name
/// or password, no dot segments and no encoded slashes, so a resource author can never make the
/// operator send its token anywhere else, or to another Graph path.
pub fn operation_url(root: &Url, op: &OperationRef<'_>) -> Result<Url, LocationError> {
    match op {
        OperationRef::ById { user, operation } => {
            for id in [user, operation] {
                if id.is_empty() || id.chars().all(|c| c == '.') {
                    return Err(bad(format!("{id:?} is not an id")));
                }
            }
            let user_segment = match user.strip_prefix('$') {
                Some(_) => format!("('{}')", user.replace('\'', "''")),
                None => user.to_string(),
            };
            let mut url = root.clone();
            let mut segments =
                url.path_segments_mut().map_err(|()| bad("the Graph URL cannot carry a path".to_string()))?;
            segments.pop_if_empty();
            if user.starts_with('$') {
                segments.extend(["v1.0", &format!("users{user_segment}"), "authentication", "operations", operation]);
            } else {
                segments.extend(["v1.0", "users", &user_segment, "authentication", "operations", operation]);
            }
            drop(segments);
            Ok(url)
        }
        OperationRef::Location(location) => {
            let url = Url::parse(location).map_err(|e| bad(format!("location is not a valid URL: {e}")))?;
            if url.origin() != root.origin() {
                return Err(LocationError {
                    kind: GraphErrorKind::ForeignHost,
                    message: format!(
                        "location points to {}, but this operator only sends credentials to {}; no request was made",
                        url.origin().ascii_serialization(),
                        root.origin().ascii_serialization()
                    ),
                });
            }
            check_location(location, &url)?;
            Ok(url)
        }
    }
}

/// The user and operation ids a Location names, decoded (`%23EXT%23` → `#EXT#`,
/// `users('$o''x')` → `$o'x`), for showing them in status; None if it is not an operation URL.
/// Showing only: what is polled is decided by [`operation_url`].
pub fn ids_in_location(location: &str) -> Option<(String, String)> {
    let url = Url::parse(location).ok()?;
    let segments: Vec<&str> = url.path_segments()?.collect();
    let (user, op) = match segments.as_slice() {
        ["v1.0", "users", user, "authentication", "operations", op] => (percent_decoded(user), *op),
        ["v1.0", users, "authentication", "operations", op] => {
            let key = users.strip_prefix("users('")?.strip_suffix("')")?;
            (percent_decoded(key).replace("''", "'"), *op)
        }
        _ => return None,
    };
    let op = percent_decoded(op);
    (!user.is_empty() && !op.is_empty()).then_some((user, op))
}

/// `%XX` → the byte; anything else as is (invalid UTF-8 is shown with replacement characters).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bad(message: String) -> LocationError {
    LocationError { kind: GraphErrorKind::BadLocation, message }
}

/// The Location's own text, before any normalisation by the URL parser, must already be
/// the operation URL: what is checked is what is sent.
fn check_location(raw: &str, url: &Url) -> Result<(), LocationError> {
    let refuse = |why: &str| Err(bad(format!("location {why}; no request was made")));
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("carries a user name or password");
    }
    if url.fragment().is_some() {
        return refuse("carries a fragment");
    }
    let lower = raw.to_ascii_lowercase();
    if raw.contains('\\') || ["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e)) {
        return refuse("contains a backslash or an encoded slash or dot");
    }
    let after_scheme = raw.split_once("://").map(|(_, rest)| rest).unwrap_or(raw);
    let raw_path = after_scheme.split(['?', '#']).next().unwrap_or("");
    let raw_path = raw_path.find('/').map(|i| &raw_path[i..]).unwrap_or("");
    if raw_path != url.path() {
        return refuse("is not in its normal form (dot segments or unusual escapes)");
    }
    let segments: Vec<&str> = raw_path.split('/').skip(1).collect();
    let is_id = |s: &str| !s.is_empty() && !s.chars().all(|c| c == '.');
    // `users/{id}`, or Graph's key form `users('{upn}')` for a UPN that starts with `$`.
    let key_form = |s: &str| s.strip_prefix("users('").and_then(|s| s.strip_suffix("')")).is_some_and(is_id);
    let shape_ok = match segments.as_slice() {
        ["v1.0", "users", user, "authentication", "operations", op] => is_id(user) && is_id(op),
        ["v1.0", users, "authentication", "operations", op] => key_form(users) && is_id(op),
        _ => false,
    };
    if !shape_ok {
        return refuse(
            "is not a Graph operation URL of the form https://HOST/v1.0/users/{user}/authentication/operations/{id}",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Url {
        Url::parse("https://graph.microsoft.com").unwrap()
    }

    fn by_id(user: &str, operation: &str) -> Result<String, GraphErrorKind> {
        operation_url(&root(), &OperationRef::ById { user, operation }).map(|u| u.to_string()).map_err(|e| e.kind)
    }

    #[test]
    fn ids_are_single_percent_encoded_path_segments_in_graphs_own_forms() {
        let base = "https://graph.microsoft.com/v1.0";
        for (user, op, want) in [
            ("alice@contoso.com", "2d497bb-57bd", "users/alice@contoso.com/authentication/operations/2d497bb-57bd"),
            (
                "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
                "o1",
                "users/bob_fabrikam.com%23EXT%23@contoso.onmicrosoft.com/authentication/operations/o1",
            ),
            ("$svc@contoso.com", "o1", "users('$svc@contoso.com')/authentication/operations/o1"),
            ("$o'brien@contoso.com", "o1", "users('$o''brien@contoso.com')/authentication/operations/o1"),
        ] {
            assert_eq!(by_id(user, op).unwrap(), format!("{base}/{want}"), "{user}");
        }
        let url = by_id("../../admin?x#y", "a/b%2F").unwrap();
        let parsed = Url::parse(&url).unwrap();
        assert_eq!(parsed.path_segments().unwrap().count(), 6, "{url}");
        assert!(parsed.query().is_none() && parsed.fragment().is_none(), "{url}");
        for (user, op) in [("..", "o"), (".", "o"), ("u", ".."), ("u", "")] {
            assert_eq!(by_id(user, op), Err(GraphErrorKind::BadLocation), "{user:?} {op:?}");
        }
    }

    #[test]
    fn the_ids_shown_for_a_location_are_its_decoded_user_and_operation_segments() {
        let base = "https://graph.microsoft.com/v1.0";
        for (path, want) in [
            ("users/u1/authentication/operations/op1?aadgdc=DUB02P", Some(("u1", "op1"))),
            ("users/bob%23EXT%23@contoso.com/authentication/operations/o%201", Some(("bob#EXT#@contoso.com", "o 1"))),
            ("users('$o''brien@contoso.com')/authentication/operations/o1", Some(("$o'brien@contoso.com", "o1"))),
            ("users/u1/authentication/operations/", None),
            ("me/messages", None),
        ] {
            let got = ids_in_location(&format!("{base}/{path}"));
            assert_eq!(got, want.map(|(u, o)| (u.to_string(), o.to_string())), "{path}");
        }
        assert_eq!(ids_in_location("not a url"), None);
    }

    #[test]
    fn a_location_is_polled_as_given_on_the_configured_host_and_operation_path_only() {
        for loc in [
            "https://graph.microsoft.com/v1.0/users/u1/authentication/operations/op1?aadgdc=DUB02P&aadgsu=ssprprod-a",
            "https://graph.microsoft.com/v1.0/users('$svc@contoso.com')/authentication/operations/op1",
        ] {
            assert_eq!(operation_url(&root(), &OperationRef::Location(loc)).unwrap().as_str(), loc);
        }
        for (location, kind) in [
            ("https://evil.example/v1.0/users/u1/authentication/operations/op1", GraphErrorKind::ForeignHost),
            ("http://graph.microsoft.com/v1.0/users/u1/authentication/operations/op1", GraphErrorKind::ForeignHost),
            (
                "https://graph.microsoft.com:8443/v1.0/users/u1/authentication/operations/op1",
                GraphErrorKind::ForeignHost,
            ),
            (
                "https://graph.microsoft.com.evil.example/v1.0/users/u/authentication/operations/o",
                GraphErrorKind::ForeignHost,
            ),
            ("https://x@graph.microsoft.com/v1.0/users/u/authentication/operations/o", GraphErrorKind::BadLocation),
            ("https://x:y@graph.microsoft.com/v1.0/users/u/authentication/operations/o", GraphErrorKind::BadLocation),
            (
                "https://graph.microsoft.com/v1.0/users/u/authentication/operations/../../../me",
                GraphErrorKind::BadLocation,
            ),
            ("https://graph.microsoft.com/v1.0/users/u/authentication/operations/%2e%2e", GraphErrorKind::BadLocation),
            ("https://graph.microsoft.com/v1.0/users/u/authentication/operations/a%2Fb", GraphErrorKind::BadLocation),
            ("https://graph.microsoft.com/v1.0/users/u\\..\\authentication/operations/o", GraphErrorKind::BadLocation),
            ("https://graph.microsoft.com/v1.0/users/./authentication/operations/o", GraphErrorKind::BadLocation),
            ("https://graph.microsoft.com/v1.0/me/messages", GraphErrorKind::BadLocation),
            ("https://graph.microsoft.com/beta/users/u/authentication/operations/o", GraphErrorKind::BadLocation),
            ("https://graph.microsoft.com/v1.0/users/u/authentication/operations/o#f", GraphErrorKind::BadLocation),
        ] {
            let err = operation_url(&root(), &OperationRef::Location(location)).unwrap_err();
            assert_eq!(err.kind, kind, "{location}: {}", err.message);
        }
    }
}
