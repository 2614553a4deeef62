//! Timestamps as stored attributes.

use chrono::{DateTime, SecondsFormat, Utc};

use casesync_core::ports::StoreError;

use crate::error::corrupt;

/// Fixed-width RFC 3339 in UTC with milliseconds (`2024-03-04T17:00:00.000Z`), so that two values
/// compare as strings the way they compare as instants; DynamoDB condition expressions rely on
/// it. Salesforce stamps have millisecond precision; a finer fraction is truncated, which moves
/// a position back by less than a millisecond (a re-read, never a skip).
pub(crate) fn fixed_ms(t: &DateTime<Utc>) -> Result<String, StoreError> {
    if !(0..=9999).contains(&chrono::Datelike::year(t)) {
        return Err(StoreError::Unexpected(anyhow::anyhow!(
            "timestamp {t} is outside years 0000-9999 and cannot be stored fixed-width"
        )));
    }
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Fixed-width RFC 3339 in UTC with microseconds (`2024-03-04T17:00:00.000000Z`): change stamps,
/// which order the read API and must tell apart writes a few microseconds apart.
pub(crate) fn fixed_us(t: &DateTime<Utc>) -> Result<String, StoreError> {
    if !(0..=9999).contains(&chrono::Datelike::year(t)) {
        return Err(StoreError::Unexpected(anyhow::anyhow!(
            "timestamp {t} is outside years 0000-9999 and cannot be stored fixed-width"
        )));
    }
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// Exact RFC 3339 (nanoseconds kept when present), for timestamps that are only read back.
pub(crate) fn exact(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn parse(what: &str, raw: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(what, format_args!("timestamp {raw:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_timestamps_sort_as_instants_and_parse_back() {
        let a: DateTime<Utc> = "2024-03-04T17:00:00Z".parse().unwrap();
        let b: DateTime<Utc> = "2024-03-04T17:00:00.5Z".parse().unwrap();
        let c: DateTime<Utc> = "2024-03-04T17:00:01Z".parse().unwrap();
        let (fa, fb, fc) = (
            fixed_ms(&a).unwrap(),
            fixed_ms(&b).unwrap(),
            fixed_ms(&c).unwrap(),
        );
        assert_eq!(fa, "2024-03-04T17:00:00.000Z");
        assert_eq!(fb, "2024-03-04T17:00:00.500Z");
        assert!(fa < fb && fb < fc);
        assert_eq!(parse("t", &fb).unwrap(), b);
    }

    #[test]
    fn sub_millisecond_fractions_are_truncated() {
        let t: DateTime<Utc> = "2024-03-04T17:00:00.123456Z".parse().unwrap();
        assert_eq!(fixed_ms(&t).unwrap(), "2024-03-04T17:00:00.123Z");
    }
}
