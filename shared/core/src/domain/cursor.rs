//! The sync position of a connection: the `(SystemModstamp, Id)` of the last Case durably written.
//!
//! `SystemModstamp` alone is not a position: Salesforce stamps whole batches of records with the
//! same second, so a cursor on the timestamp either loses the rest of a tie (strict `>`) or loops
//! on it (`>=` with a page limit). Paired with the Case id, and read with the keyset predicate
//! `SystemModstamp > t OR (SystemModstamp = t AND Id > id)` under `ORDER BY SystemModstamp, Id`,
//! every Case is read exactly once in order.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::ids::CaseId;
use super::settings::BackfillWindow;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub system_modstamp: DateTime<Utc>,
    /// `None` before the first Case at `system_modstamp`: the keyset is then
    /// `SystemModstamp >= system_modstamp`.
    pub case_id: Option<CaseId>,
}

impl Cursor {
    pub fn new(system_modstamp: DateTime<Utc>, case_id: CaseId) -> Self {
        Self {
            system_modstamp,
            case_id: Some(case_id),
        }
    }

    /// A position before every Case stamped at or after `at` (truncated to whole seconds, the
    /// granularity of `SystemModstamp`).
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            system_modstamp: at.trunc_subsecs(0),
            case_id: None,
        }
    }

    /// Where a new connection starts: the beginning of its backfill window.
    pub fn backfill_start(window: BackfillWindow, now: DateTime<Utc>) -> Self {
        Self::at(window.start(now))
    }

    /// Whether a record at `(modstamp, id)` lies after this position.
    pub fn is_before(&self, modstamp: DateTime<Utc>, id: &CaseId) -> bool {
        match modstamp.cmp(&self.system_modstamp) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => self.case_id.as_ref().is_none_or(|c| id > c),
        }
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Cursors order as their positions do; `None` (before any Case at that second) sorts first.
impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> Ordering {
        self.system_modstamp
            .cmp(&other.system_modstamp)
            .then_with(|| self.case_id.cmp(&other.case_id))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = self
            .system_modstamp
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        match &self.case_id {
            Some(id) => write!(f, "{ts} {id}"),
            None => f.write_str(&ts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn case(s: &str) -> CaseId {
        CaseId::parse(s).unwrap()
    }

    #[test]
    fn cursors_order_by_timestamp_then_id_with_none_first() {
        let t = Utc.with_ymd_and_hms(2024, 3, 4, 17, 0, 0).unwrap();
        let a = Cursor::at(t);
        let b = Cursor::new(t, case("500xx000003DHb0"));
        let c = Cursor::new(t, case("500xx000003DHb1"));
        let d = Cursor::at(t + chrono::TimeDelta::seconds(1));
        assert!(a < b && b < c && c < d);
        assert!(a.is_before(t, &case("500xx000003DHb0")));
        assert!(!b.is_before(t, &case("500xx000003DHb0")));
        assert!(b.is_before(t, &case("500xx000003DHb1")));
        assert!(!d.is_before(t, &case("500xx000003DHb1")));
    }

    #[test]
    fn cursor_at_truncates_to_seconds() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        assert_eq!(Cursor::at(t).system_modstamp.timestamp_subsec_millis(), 0);
    }
}
