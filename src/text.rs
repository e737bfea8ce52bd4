//! Text shown to people (conditions, events, logs): bounded in size and free of control
//! characters, whatever a remote service sent.

/// The error and its sources on one line, e.g. "error sending request: connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Text from elsewhere made safe to show: control characters (ANSI escapes included) written
/// as `\u{..}` so they cannot rewrite a terminal or break a table, then at most `max` bytes.
pub fn for_people(s: &str, max: usize) -> String {
    let escaped: String = if s.chars().any(char::is_control) {
        s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
    } else {
        s.to_string()
    };
    truncate(&escaped, max)
}

/// At most `max` bytes of `s` (cut on a character boundary), with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééé", 3), "é…");
    }

    #[test]
    fn text_for_people_has_no_control_characters_and_a_bound() {
        assert_eq!(for_people("plain", 10), "plain");
        assert_eq!(for_people("red \u{1b}[31mX\nY", 100), "red \\u{1b}[31mX\\u{a}Y");
        assert!(!for_people("a\u{7}b\u{9b}c", 100).chars().any(char::is_control));
        let long = "x".repeat(300 * 1024);
        assert_eq!(for_people(&long, 1024).len(), 1024 + "…".len());
    }

    #[test]
    fn error_chain_names_every_distinct_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("sending failed", Some(Box::new(E("connection refused", Some(Box::new(E("refused", None)))))));
        assert_eq!(error_chain(&e), "sending failed: connection refused");
    }
}
