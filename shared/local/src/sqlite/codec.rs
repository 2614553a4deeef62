//! Between domain values and columns: fixed-width timestamps, typed errors for corrupt rows.

use casesync_core::ports::{StoreError, StoreResult};
use chrono::{DateTime, SecondsFormat, Utc};

/// A row that does not decode into its domain value: the file was edited by hand, written by a
/// broken build or damaged. Reaches callers as `StoreError::Unexpected` (downcast to read it).
/// The message names the table, the row's key and the column, never the value (a column may hold
/// a PKCE verifier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {table} row {key:?} in the casesync database: column {column}: {reason}")]
pub struct CorruptRow {
    pub table: &'static str,
    pub key: String,
    pub column: &'static str,
    pub reason: String,
}

impl From<CorruptRow> for StoreError {
    fn from(e: CorruptRow) -> Self {
        StoreError::Unexpected(anyhow::Error::new(e))
    }
}

/// Decodes the columns of one row, naming the row in every error.
pub(super) struct RowDecoder<'a> {
    pub table: &'static str,
    pub key: &'a str,
}

impl RowDecoder<'_> {
    pub fn corrupt(&self, column: &'static str, reason: impl Into<String>) -> CorruptRow {
        CorruptRow {
            table: self.table,
            key: self.key.to_owned(),
            column,
            reason: reason.into(),
        }
    }

    /// Parses a column with a domain parser (whose message may echo the value: use it only on
    /// columns that hold no secret).
    pub fn parse<T, E: std::fmt::Display>(
        &self,
        column: &'static str,
        raw: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, CorruptRow> {
        parse(raw).map_err(|e| self.corrupt(column, e.to_string()))
    }

    pub fn timestamp(&self, column: &'static str, raw: &str) -> Result<DateTime<Utc>, CorruptRow> {
        parse_timestamp(raw).ok_or_else(|| self.corrupt(column, "not an RFC 3339 timestamp"))
    }

    pub fn opt_timestamp(
        &self,
        column: &'static str,
        raw: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, CorruptRow> {
        raw.map(|r| self.timestamp(column, r)).transpose()
    }

    /// Parses a JSON column. serde's message may quote the value, so only its position is kept.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        column: &'static str,
        raw: &str,
    ) -> Result<T, CorruptRow> {
        serde_json::from_str(raw).map_err(|e| self.corrupt(column, json_error_position(&e)))
    }
}

/// Describes a serde_json error without its message, which may quote the input.
pub(crate) fn json_error_position(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected JSON content",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

/// Fixed-width RFC 3339 in UTC with nanoseconds, `2024-03-04T17:00:00.000000000Z`, so that
/// timestamps order as text (for the conditional lease update) and round-trip exactly (a cursor
/// read back must equal the cursor written, or the compare-and-swap would fail).
pub(super) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Serialises a value stored as JSON text.
/// A data point's JSON as stored in `body_lz4`: one LZ4 block behind its length (4 bytes, LE).
pub(super) fn pack_body(json: &str) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(json.as_bytes())
}

/// The JSON of a `data_points` row: `body_lz4` unpacked when set (rows written since schema
/// version 4), else `body` (rows written before). `key` names the row in an error.
pub(super) fn body_json(
    key: impl Fn() -> String,
    body: String,
    packed: Option<Vec<u8>>,
) -> Result<String, CorruptRow> {
    let Some(packed) = packed else {
        return Ok(body);
    };
    let corrupt = |reason: String| CorruptRow {
        table: "data_points",
        key: key(),
        column: "body_lz4",
        reason,
    };
    // The length prefix sizes the output buffer: an LZ4 block expands at most ~255 times, so a
    // corrupt prefix is refused before it can ask for gigabytes.
    let claimed = match packed.get(..4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => return Err(corrupt("shorter than its length prefix".into())),
    };
    if claimed > packed.len().saturating_mul(255) {
        return Err(corrupt(format!(
            "claims {claimed} bytes from {} compressed",
            packed.len()
        )));
    }
    let bytes = lz4_flex::block::decompress_size_prepended(&packed)
        .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
    String::from_utf8(bytes).map_err(|e| corrupt(format!("not UTF-8: {e}")))
}

pub(super) fn json<T: serde::Serialize>(what: &'static str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("cannot serialise {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_are_fixed_width_round_trip_and_order_as_text() {
        let a = Utc.with_ymd_and_hms(2024, 3, 4, 17, 0, 0).unwrap();
        let b = a + chrono::TimeDelta::nanoseconds(1);
        let c = a + chrono::TimeDelta::milliseconds(999);
        let d = Utc.with_ymd_and_hms(2024, 3, 4, 17, 0, 1).unwrap();
        let texts: Vec<String> = [a, b, c, d].into_iter().map(timestamp).collect();
        assert_eq!(texts[0], "2024-03-04T17:00:00.000000000Z");
        assert!(texts.iter().all(|t| t.len() == texts[0].len()));
        assert!(texts.windows(2).all(|w| w[0] < w[1]));
        for (t, text) in [a, b, c, d].into_iter().zip(&texts) {
            assert_eq!(parse_timestamp(text), Some(t));
        }
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn json_errors_never_quote_the_input() {
        let e = serde_json::from_str::<Vec<u32>>(r#"["hunter2-secret"]"#).unwrap_err();
        assert!(e.to_string().contains("hunter2"), "serde does quote it");
        let shown = json_error_position(&e);
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
