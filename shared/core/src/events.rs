//! The change events contract: one event for each data point created, updated (its content
//! changed) or deleted, for consumers to subscribe to. On AWS they are published on the stack's
//! EventBridge bus, derived from the data points table's change stream, so that a write and its
//! event cannot diverge.
//!
//! ```json
//! {
//!   "source": "casesync",
//!   "detail-type": "Data Point Updated",
//!   "detail": {
//!     "id": "6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1",
//!     "channel": "Support",
//!     "connection_id": "conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f",
//!     "case_id": "500xx000003DHb0AAG",
//!     "case_number": "00001026",
//!     "system_modstamp": "2024-03-04T17:00:00Z",
//!     "version": "1100000000017454423009",
//!     "path": "/data-points/6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1"
//!   }
//! }
//! ```
//!
//! No Case text is in an event (events fan out to other accounts' rules, and are limited to
//! 256 KB): fetch the point at `path`. `version` orders the changes of one point: a decimal
//! integer as a string (up to 40 digits; compare by length, then as text); a later change of
//! the same point has a greater version. Delivery is at least once: a consumer may see an event
//! twice, and should apply a change only if its version is greater than the last one it
//! applied for that point.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The `source` of every event.
pub const SOURCE: &str = "casesync";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    /// The event's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::Created => "Data Point Created",
            Self::Updated => "Data Point Updated",
            Self::Deleted => "Data Point Deleted",
        }
    }

    pub fn from_detail_type(raw: &str) -> Option<Self> {
        [Self::Created, Self::Updated, Self::Deleted]
            .into_iter()
            .find(|k| k.detail_type() == raw)
    }
}

/// The `detail` of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPointEvent {
    pub id: String,
    pub channel: String,
    pub connection_id: String,
    pub case_id: String,
    pub case_number: String,
    /// The Case's `SystemModstamp` in the data point (RFC 3339).
    pub system_modstamp: String,
    /// Orders the changes of one point (see the module documentation).
    pub version: String,
    /// Where the point is read whole (`GET` on the read API); gone after a delete.
    pub path: String,
    /// When the change was made (the change order's stamp), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
}

impl DataPointEvent {
    /// The read API path of a data point.
    pub fn path_of(id: &str) -> String {
        format!("/data-points/{id}")
    }
}

/// Compares two versions: decimal integers as strings, of any length.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_types_round_trip() {
        for k in [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Deleted,
        ] {
            assert_eq!(ChangeKind::from_detail_type(k.detail_type()), Some(k));
        }
        assert_eq!(ChangeKind::from_detail_type("Data Point Renamed"), None);
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(compare_versions("9", "10"), Ordering::Less);
        assert_eq!(
            compare_versions("1100000000017454423009", "1100000000017454423010"),
            Ordering::Less
        );
        assert_eq!(compare_versions("0042", "42"), Ordering::Equal);
        assert_eq!(compare_versions("200", "199"), Ordering::Greater);
    }
}
