//! The sync engine: one connection, from its cursor forward, exactly once.
//! (Engine body lands in the next commit; these are the types the ports share.)

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Cursor;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    /// Caught up to now − lag.
    Done,
    /// Stopped at the time budget with work left; the cursor holds the position.
    MoreWork,
    /// Salesforce's daily API allotment is exhausted or above the configured share; the run
    /// stopped without burning more calls and resumes on a later tick.
    RateLimited,
    /// The refresh token was refused: the user must authorize again.
    NeedsReauth,
    /// The connection was disconnected (or deleted) before or during the run.
    Disconnected,
    /// Another error; the cursor holds the last durable position.
    Failed,
}

impl SyncOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::MoreWork => "more_work",
            Self::RateLimited => "rate_limited",
            Self::NeedsReauth => "needs_reauth",
            Self::Disconnected => "disconnected",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for SyncOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounts {
    /// Cases received from Salesforce.
    pub fetched: u64,
    pub created: u64,
    pub updated: u64,
    /// Received again but identical to the stored data point (lookback overlap, replays).
    pub unchanged: u64,
    /// Cases that could not be mapped this run.
    pub failed: u64,
    /// Pages of Cases (each a query or `nextRecordsUrl` call).
    pub pages: u64,
    /// Every call under `/services/data`, child-list pages and retries included.
    pub api_calls: u64,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub outcome: SyncOutcome,
    pub counts: SyncCounts,
    pub cursor_before: Cursor,
    pub cursor_after: Cursor,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Why the run did not finish `done`, in words a user can act on. Never holds a token.
    pub error: Option<String>,
}

/// Engine tuning; the defaults are what production uses.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `Sforce-Query-Options: batchSize` (Salesforce clamps it to 200..=2000).
    pub batch_size: u32,
    /// Never read Cases stamped later than now − lag: rows become visible late.
    pub lag: TimeDelta,
    /// How far before the cursor the periodic lookback sweep re-reads.
    pub lookback: TimeDelta,
    /// How often the lookback sweep runs per connection.
    pub lookback_every: TimeDelta,
    /// Stop when `Sforce-Limit-Info` shows more than this share of the daily allotment used.
    pub max_api_usage_share: f64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch_size: 200,
            lag: TimeDelta::minutes(5),
            lookback: TimeDelta::minutes(15),
            lookback_every: TimeDelta::hours(1),
            max_api_usage_share: 0.8,
        }
    }
}
