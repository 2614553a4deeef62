//! The sync engine: one connection, from its cursor forward, exactly once.
//!
//! A run reads closed Cases in `(SystemModstamp, Id)` order after the cursor and never newer
//! than now − lag; it writes each page as upserts keyed by (connection, Case) and only then
//! commits the cursor, compare-and-swap, to the page's last position. A crash between the two
//! re-reads that page on the next run, and the upsert absorbs it. Once an hour (by default) a
//! run starts a little before the cursor to pick up Cases that became visible late with an
//! older `SystemModstamp`; the cursor never moves backwards for it, and unchanged data points
//! are not rewritten. See `engine` for the loop and `source` for paging.

mod engine;
mod source;

pub use engine::{Progress, ProgressObserver, SyncEngine};

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
    /// Another run holds this connection (a concurrent worker or process); this one did nothing
    /// further.
    Busy,
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
            Self::Busy => "busy",
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
