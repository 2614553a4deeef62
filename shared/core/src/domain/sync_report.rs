//! What a sync run did: its outcome, its counts and the report stored on its connection.
//! Domain records: the engine produces them, the stores keep them, the CLI, the API and the
//! console show them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cursor::Cursor;

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

impl std::ops::AddAssign for SyncCounts {
    fn add_assign(&mut self, o: Self) {
        self.fetched += o.fetched;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.failed += o.failed;
        self.pages += o.pages;
        self.api_calls += o.api_calls;
    }
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
