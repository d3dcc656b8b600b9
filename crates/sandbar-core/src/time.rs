//! The one timestamp format Sandbar writes: RFC 3339, UTC, milliseconds, `Z`
//! (`2025-01-01T00:00:00.000Z`). Fixed width, so strings sort like the instants they name.

use chrono::{DateTime, SecondsFormat, Utc};

pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses the datetimes clients send: RFC 3339 (`…Z`, `…+00:00`) and the Python SDK's offset
/// without a colon (`2025-01-01T00:00:00.000000+0000`).
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Now, truncated to what [`format`] keeps, so a value read back equals the value written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_datetimes() {
        let expected = parse("2025-01-01T00:00:00Z").unwrap();
        assert_eq!(parse("2025-01-01T00:00:00.000000+0000"), Some(expected));
        assert_eq!(parse("2025-01-01T00:00:00.000Z"), Some(expected));
        assert_eq!(parse("2025-01-01T01:00:00+01:00"), Some(expected));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(format(expected), "2025-01-01T00:00:00.000Z");
    }
}
