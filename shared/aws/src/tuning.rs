//! How hard the adapters push: parallel calls and retry pacing.

use std::time::Duration;

use backon::BackoffBuilder;

/// Retries of what AWS left undone (unprocessed items and keys, failed queue entries, lost or
/// conflicting conditional writes): jittered exponential backoff, bounded. When the retries are
/// spent the call fails with `StoreError::Unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
            max_retries: 8,
        }
    }
}

impl RetryPolicy {
    /// The delays before each retry; `None` once they are spent.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

/// Tuning shared by the batch-writing adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// At most this many calls of one kind in flight at once, per adapter call.
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            concurrency: 16,
            retry: RetryPolicy::default(),
        }
    }
}
