//! Durations written the way Kubernetes users write them (`15s`, `1m30s`, `1.5h`, `500ms`):
//! the Go syntax that the CRD's CEL `duration()` check accepts, so what the apiserver
//! admits, the operator parses the same way.

use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` with units ms, s, m, h.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: use a number with a unit, such as 500ms, 15s, 1m30s or 1h");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration for people: `1h2m`, `45s`, `1.5s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        let (h, m) = (secs / 3600, (secs % 3600) / 60);
        if m == 0 { format!("{h}h") } else { format!("{h}h{m}m") }
    } else if secs >= 60 {
        let (m, s) = (secs / 60, secs % 60);
        if s == 0 { format!("{m}m") } else { format!("{m}m{s}s") }
    } else if d.subsec_millis() == 0 {
        format!("{secs}s")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_kubernetes_users_write() {
        assert_eq!(parse("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "15", "s", "1d", "-1s", "1m 30s", "1e3s", "abc"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
