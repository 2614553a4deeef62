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
mod lease;
mod source;

pub use engine::{ChangesReport, LeasedRun, Progress, ProgressObserver, Start, SyncEngine};
pub use lease::SyncLease;

use chrono::TimeDelta;

pub use crate::domain::{SyncCounts, SyncOutcome, SyncReport};

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
