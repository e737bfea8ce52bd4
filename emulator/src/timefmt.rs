//! Timestamp shapes: the operation timestamp styles, the zone-less
//! `innerError.date` Graph sometimes sends, and Entra's error `timestamp`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use super::config::TimestampStyle;

fn utc(ts: Timestamp) -> DateTime {
    TimeZone::UTC.to_datetime(ts)
}

fn date_part(dt: &DateTime) -> String {
    format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day())
}

/// Formats an operation timestamp; `None` means JSON `null`.
pub fn format_operation_time(ts: Timestamp, style: TimestampStyle) -> Option<String> {
    let dt = utc(ts);
    let date = date_part(&dt);
    let (h, m, s) = (dt.hour(), dt.minute(), dt.second());
    let nanos = dt.subsec_nanosecond();
    Some(match style {
        // .NET's "o" format: 7 fractional digits (100 ns ticks).
        TimestampStyle::Iso7 => format!("{date}T{h:02}:{m:02}:{s:02}.{:07}Z", nanos / 100),
        TimestampStyle::Millis => {
            format!("{date}T{h:02}:{m:02}:{s:02}.{:03}Z", nanos / 1_000_000)
        }
        TimestampStyle::Offset => {
            format!("{date}T{h:02}:{m:02}:{s:02}.{:07}+00:00", nanos / 100)
        }
        // Reproduces the docs' example `2020-03-19T12-01-03.45Z` literally.
        TimestampStyle::DocsMalformed => {
            format!("{date}T{h:02}-{m:02}-{s:02}.{:02}Z", nanos / 10_000_000)
        }
        TimestampStyle::Null => return None,
    })
}

/// `innerError.date`: Graph writes it without a time zone.
pub fn inner_error_date(ts: Timestamp) -> String {
    let dt = utc(ts);
    format!("{}T{:02}:{:02}:{:02}", date_part(&dt), dt.hour(), dt.minute(), dt.second())
}

/// Entra token-error `timestamp`: `2026-01-02 03:04:05Z`.
pub fn entra_timestamp(ts: Timestamp) -> String {
    let dt = utc(ts);
    format!("{} {:02}:{:02}:{:02}Z", date_part(&dt), dt.hour(), dt.minute(), dt.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> Timestamp {
        "2020-03-19T12:01:03.4512345Z".parse().unwrap()
    }

    #[test]
    fn styles() {
        let f = |s| format_operation_time(ts(), s);
        assert_eq!(f(TimestampStyle::Iso7).unwrap(), "2020-03-19T12:01:03.4512345Z");
        assert_eq!(f(TimestampStyle::Millis).unwrap(), "2020-03-19T12:01:03.451Z");
        assert_eq!(f(TimestampStyle::Offset).unwrap(), "2020-03-19T12:01:03.4512345+00:00");
        assert_eq!(f(TimestampStyle::DocsMalformed).unwrap(), "2020-03-19T12-01-03.45Z");
        assert_eq!(f(TimestampStyle::Null), None);
    }

    #[test]
    fn iso7_parses_back_and_pads() {
        let t: Timestamp = "2026-01-02T03:04:05.000000100Z".parse().unwrap();
        let s = format_operation_time(t, TimestampStyle::Iso7).unwrap();
        assert_eq!(s, "2026-01-02T03:04:05.0000001Z");
        assert_eq!(s.parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn zone_less_and_entra_shapes() {
        assert_eq!(inner_error_date(ts()), "2020-03-19T12:01:03");
        assert_eq!(entra_timestamp(ts()), "2020-03-19 12:01:03Z");
    }
}
