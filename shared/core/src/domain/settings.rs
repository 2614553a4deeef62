//! The per-connection settings a user chooses: backfill window, API version and queue scope.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{IdError, QueueId};

/// How far back the first sync of a connection reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BackfillWindow {
    Days7,
    Days30,
    Days90,
    /// Six calendar months (not 180 days).
    Months6,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backfill window {0:?}: expected one of 7d, 30d, 90d, 6m")]
pub struct BackfillError(pub String);

impl BackfillWindow {
    pub const ALL: [BackfillWindow; 4] = [Self::Days7, Self::Days30, Self::Days90, Self::Months6];

    pub fn parse(raw: &str) -> Result<Self, BackfillError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "7d" => Ok(Self::Days7),
            "30d" => Ok(Self::Days30),
            "90d" => Ok(Self::Days90),
            "6m" => Ok(Self::Months6),
            _ => Err(BackfillError(raw.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Days7 => "7d",
            Self::Days30 => "30d",
            Self::Days90 => "90d",
            Self::Months6 => "6m",
        }
    }

    /// The earliest instant the window covers, counted back from `now`.
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Days7 => now - TimeDelta::days(7),
            Self::Days30 => now - TimeDelta::days(30),
            Self::Days90 => now - TimeDelta::days(90),
            // checked_sub_months clamps to the month's last day (31 Aug - 6 months = 28/29 Feb);
            // it only fails before year -262143, which a clock cannot reach.
            Self::Months6 => now
                .checked_sub_months(Months::new(6))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

impl fmt::Display for BackfillWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackfillWindow {
    type Err = BackfillError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for BackfillWindow {
    type Error = BackfillError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<BackfillWindow> for String {
    fn from(w: BackfillWindow) -> String {
        w.as_str().to_owned()
    }
}

/// A Salesforce REST API version such as `59.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiVersion(u16);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid API version {0:?}: expected a version such as 59.0 (20.0 to 99.0)")]
pub struct ApiVersionError(pub String);

impl ApiVersion {
    pub const DEFAULT: ApiVersion = ApiVersion(59);

    /// Accepts `59.0`, `59` and `v59.0`.
    pub fn parse(raw: &str) -> Result<Self, ApiVersionError> {
        let err = || ApiVersionError(raw.to_owned());
        let s = raw.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let major = s.strip_suffix(".0").unwrap_or(s);
        if major.is_empty() || major.len() > 2 || !major.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: u16 = major.parse().map_err(|_| err())?;
        if !(20..=99).contains(&n) {
            return Err(err());
        }
        Ok(Self(n))
    }

    /// The path segment used in REST URLs: `v59.0`.
    pub fn path_segment(self) -> String {
        format!("v{}.0", self.0)
    }
}

impl Default for ApiVersion {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.0", self.0)
    }
}

impl FromStr for ApiVersion {
    type Err = ApiVersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ApiVersion {
    type Error = ApiVersionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ApiVersion> for String {
    fn from(v: ApiVersion) -> String {
        v.to_string()
    }
}

/// Which queues' Cases a connection imports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum QueueScope {
    /// Every Case owned by any queue. Cases owned by users are excluded.
    All,
    /// Cases owned by these queues: never empty, sorted, without duplicates.
    Specific(Vec<QueueId>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueScopeError {
    #[error("no queues given: use \"all\" or a comma-separated list of queue ids")]
    Empty,
    #[error("invalid queue id {raw:?}: {source}")]
    Id {
        raw: String,
        #[source]
        source: IdError,
    },
}

impl QueueScope {
    /// Parses `all` or a comma-separated list of 15- or 18-character queue ids.
    pub fn parse(raw: &str) -> Result<Self, QueueScopeError> {
        if raw.trim().eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        let mut ids = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                QueueId::parse(s).map_err(|source| QueueScopeError::Id {
                    raw: s.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::specific(std::mem::take(&mut ids))
    }

    pub fn specific(mut ids: Vec<QueueId>) -> Result<Self, QueueScopeError> {
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Err(QueueScopeError::Empty);
        }
        Ok(Self::Specific(ids))
    }

    pub fn queue_ids(&self) -> &[QueueId] {
        match self {
            Self::All => &[],
            Self::Specific(ids) => ids,
        }
    }
}

impl fmt::Display for QueueScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Specific(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(id.as_str())?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for QueueScope {
    type Err = QueueScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for QueueScope {
    type Error = QueueScopeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<QueueScope> for String {
    fn from(s: QueueScope) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backfill_windows_parse_and_six_months_are_calendar_months() {
        let now = Utc.with_ymd_and_hms(2026, 8, 31, 12, 0, 0).unwrap();
        assert_eq!(
            BackfillWindow::parse("7d").unwrap().start(now),
            Utc.with_ymd_and_hms(2026, 8, 24, 12, 0, 0).unwrap()
        );
        assert_eq!(
            BackfillWindow::parse("6M").unwrap().start(now),
            Utc.with_ymd_and_hms(2026, 2, 28, 12, 0, 0).unwrap()
        );
        for w in BackfillWindow::ALL {
            assert_eq!(BackfillWindow::parse(w.as_str()).unwrap(), w);
        }
        assert!(BackfillWindow::parse("14d").is_err());
        assert!(BackfillWindow::parse("").is_err());
    }

    #[test]
    fn api_versions_parse() {
        assert_eq!(ApiVersion::parse("59.0").unwrap(), ApiVersion::DEFAULT);
        assert_eq!(ApiVersion::parse("v61.0").unwrap().path_segment(), "v61.0");
        assert_eq!(ApiVersion::parse("60").unwrap().to_string(), "60.0");
        for bad in ["59.1", "5", "100.0", "abc", "", "59.0.0", "-59"] {
            assert!(ApiVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_scopes_parse_sort_and_dedupe() {
        assert_eq!(QueueScope::parse("ALL").unwrap(), QueueScope::All);
        let s = QueueScope::parse("00Gxx000000BBBB, 00Gxx000000AAAA,00Gxx000000BBBB").unwrap();
        let ids: Vec<_> = s.queue_ids().iter().map(|q| &q.as_str()[..15]).collect();
        assert_eq!(ids, ["00Gxx000000AAAA", "00Gxx000000BBBB"]);
        assert_eq!(QueueScope::parse(&s.to_string()).unwrap(), s);
        assert_eq!(QueueScope::parse(" , "), Err(QueueScopeError::Empty));
        assert!(matches!(
            QueueScope::parse("00Gxx000000AAAA,00G'x"),
            Err(QueueScopeError::Id { .. })
        ));
    }
}
