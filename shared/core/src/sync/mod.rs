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
mod slices;
mod source;

pub use engine::{ChangesReport, LeasedRun, Progress, ProgressObserver, Start, SyncEngine};
pub use lease::SyncLease;

use chrono::TimeDelta;

pub use crate::domain::{SyncCounts, SyncOutcome, SyncReport};

/// The smallest and largest `batchSize` Salesforce accepts.
pub const BATCH_SIZES: std::ops::RangeInclusive<u32> = 200..=2_000;
/// The default page size. Email rows count toward it, so a page of 1,000 rows holds about 160
/// Cases of the benchmark org. Measured on a 10,000-Case backfill (README, "Performance"):
/// 200 → 305 calls, 25 MiB peak; 500 → 121, 34 MiB; 1,000 → 61, 50 MiB; 2,000 → 30, 79 MiB.
/// 1,000 is the fewest calls within the 64 MiB budget.
pub const DEFAULT_BATCH_SIZE: u32 = 1_000;

/// A `batchSize` from configuration: a whole number in [`BATCH_SIZES`].
pub fn parse_batch_size(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n) if BATCH_SIZES.contains(&n) => Ok(n),
        _ => Err(format!(
            "{raw:?} is not a batch size: a whole number from {} to {}",
            BATCH_SIZES.start(),
            BATCH_SIZES.end()
        )),
    }
}

/// Engine tuning; the defaults are what production uses.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `Sforce-Query-Options: batchSize`: rows per page, email rows included (Salesforce
    /// accepts 200..=2000 and may return fewer).
    pub batch_size: u32,
    /// Never read Cases stamped later than now − lag: rows become visible late.
    pub lag: TimeDelta,
    /// How far before the cursor the periodic lookback sweep re-reads.
    pub lookback: TimeDelta,
    /// How often the lookback sweep runs per connection.
    pub lookback_every: TimeDelta,
    /// Stop when `Sforce-Limit-Info` shows more than this share of the daily allotment used.
    pub max_api_usage_share: f64,
    /// A connection's first backfill is read as up to this many parallel time slices (1: one
    /// stream), and this is the bound **per org**: backfills of several connections of one org
    /// share it (each keeps at least one reader). Each reader holds one open query locator
    /// (Salesforce allows 10 per user) and reads pages of [`ROWS_IN_FLIGHT`] / `slices` rows
    /// (at least 200, at most `batch_size`).
    pub slices: usize,
    /// Backfills of fewer closed Cases are read as one stream ([`SLICE_MIN_CASES`]).
    pub slice_min_cases: u64,
}

/// Rows held in memory at once by a sliced backfill's readers together (one page each, no
/// prefetch). 4 readers read pages of 600 rows, 8 of 300. Measured on the benchmark org
/// (100,000 Cases at 300 ms per call): peak RSS 43 MiB at 4 readers and 47 at 8, 87 s either
/// way (the rows in flight bound it, not the readers); 3,200 rows took 68–76 s at 58 MiB, and
/// 4,000 took 54–59 s at 57–70 MiB, over the 64 MiB budget.
pub const ROWS_IN_FLIGHT: u32 = 2_400;

/// Backfills of fewer closed Cases than this are read as one stream: slices would cost more
/// queries than they save time.
pub const SLICE_MIN_CASES: u64 = 2_000;

/// The default number of parallel slices of a backfill: 4 of the user's 10 open query
/// locators, leaving room for other tools of the same integration user.
pub const DEFAULT_SLICES: usize = 4;
/// At most this many slices.
pub const MAX_SLICES: usize = 8;

/// A number of slices from configuration: 1 to [`MAX_SLICES`].
pub fn parse_slices(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SLICES).contains(&n) => Ok(n),
        _ => Err(format!(
            "{raw:?} is not a number of slices: a whole number from 1 to {MAX_SLICES}"
        )),
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            lag: TimeDelta::minutes(5),
            lookback: TimeDelta::minutes(15),
            lookback_every: TimeDelta::hours(1),
            max_api_usage_share: 0.8,
            slices: DEFAULT_SLICES,
            slice_min_cases: SLICE_MIN_CASES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_what_salesforce_accepts() {
        assert_eq!(parse_batch_size("1000"), Ok(1000));
        assert_eq!(parse_batch_size(" 200 "), Ok(200));
        assert_eq!(parse_batch_size("2000"), Ok(2000));
        for bad in ["199", "2001", "0", "-5", "1e3", "", "lots"] {
            assert!(parse_batch_size(bad).is_err(), "{bad}");
        }
        assert!(BATCH_SIZES.contains(&SyncConfig::default().batch_size));
    }
}
