//! The local scheduler and worker: a tick enqueues one work item per connection into the
//! in-process `LocalQueue`, the worker drains it through the core's `SyncEngine`, and a run that
//! stops with work left enqueues its continuation, as the cloud worker does.
//!
//! Two processes on one data dir are kept apart by the SQLite store's lease and its
//! compare-and-swap cursor: the second finds the lease taken and reports `busy`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use casesync_core::domain::{Connection, ConnectionId, Cursor};
use casesync_core::manage::work::{self, FollowUp};
use casesync_core::ports::{ConnectionReader, WorkItem, WorkQueue};
use casesync_core::sync::{Start, SyncCounts, SyncEngine, SyncOutcome, SyncReport};
use casesync_local::{LocalQueue, SqliteStore};
use chrono::Utc;

use crate::progress::{ConnectionProgress, Display};

/// Attempts of a run whose store was busy (another process writing) before it counts as failed.
const STORE_ATTEMPTS: u32 = 3;

/// What syncing one connection came to, over all its runs in this drain.
#[derive(Debug, Clone)]
pub struct ConnectionResult {
    pub connection: Connection,
    pub outcome: SyncOutcome,
    pub counts: SyncCounts,
    pub runs: u32,
    pub error: Option<String>,
    pub cursor: Cursor,
    pub elapsed: Duration,
}

/// The drain was interrupted (Ctrl-C or SIGTERM): every page written so far is saved, and the
/// lease of the run in progress was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

pub struct Worker<'a> {
    engine: &'a SyncEngine,
    store: &'a SqliteStore,
    queue: LocalQueue,
    budget: Duration,
    display: Display,
}

impl<'a> Worker<'a> {
    pub fn new(
        engine: &'a SyncEngine,
        store: &'a SqliteStore,
        budget: Duration,
        display: Display,
    ) -> Self {
        Self {
            engine,
            store,
            queue: LocalQueue::new(),
            budget,
            display,
        }
    }

    /// The scheduler tick: one work item per connection.
    pub async fn tick(&self, ids: &[ConnectionId]) {
        let now = Utc::now();
        let items: Vec<WorkItem> = ids
            .iter()
            .map(|id| WorkItem::tick(id.clone(), now))
            .collect();
        // The local queue never fails.
        let _ = self.queue.enqueue(&items).await;
    }

    /// Runs work items until the queue is empty; one result per connection, in the order they
    /// were first run. Stops at Ctrl-C or SIGTERM, giving back the lease of the run in progress.
    pub async fn drain(&self) -> Result<Vec<ConnectionResult>, Interrupted> {
        let mut results: Vec<ConnectionResult> = Vec::new();
        let mut progress: HashMap<ConnectionId, ConnectionProgress> = HashMap::new();
        while let Some(item) = self.queue.pop() {
            let id = item.connection_id.clone();
            let started = Instant::now();
            let connection = match self.store.get_connection(&id).await {
                Ok(Some(c)) => c,
                Ok(None) => continue, // deleted since it was enqueued
                Err(e) => {
                    tracing::error!(connection = %id, error = %e, "could not read the connection");
                    continue;
                }
            };
            let bar = progress
                .entry(id.clone())
                .or_insert_with(|| ConnectionProgress::new(self.display, &connection));
            bar.next_run();
            let run = self.run(&id, bar).await?;
            let (outcome, counts, error, cursor) = match &run {
                Ok(r) => (r.outcome, r.counts, r.error.clone(), r.cursor_after.clone()),
                Err(e) => (
                    SyncOutcome::Failed,
                    SyncCounts::default(),
                    Some(e.clone()),
                    connection.cursor.clone(),
                ),
            };
            let slot = match results.iter().position(|r| r.connection.id == id) {
                Some(i) => &mut results[i],
                None => {
                    results.push(ConnectionResult {
                        connection: connection.clone(),
                        outcome,
                        counts: SyncCounts::default(),
                        runs: 0,
                        error: None,
                        cursor: cursor.clone(),
                        elapsed: Duration::ZERO,
                    });
                    results.last_mut().expect("just pushed")
                }
            };
            slot.counts += counts;
            slot.runs += 1;
            slot.outcome = outcome;
            slot.error = error;
            slot.cursor = cursor;
            slot.elapsed += started.elapsed();

            if let Ok(report) = &run {
                match work::follow_up(&item, report, Utc::now()) {
                    FollowUp::Continue(next) => {
                        let _ = self.queue.enqueue(&[next]).await;
                        continue;
                    }
                    FollowUp::GiveUp(reason) => {
                        slot.outcome = SyncOutcome::Failed;
                        slot.error = Some(format!("{reason} (--run-budget)"));
                    }
                    FollowUp::Nothing => {}
                }
            }
            if let Some(bar) = progress.remove(&id) {
                bar.finish();
            }
        }
        Ok(results)
    }

    /// One run, retrying when the store was busy before anything was read. The run is
    /// cancelled at Ctrl-C or SIGTERM, and its lease given back.
    async fn run(
        &self,
        id: &ConnectionId,
        progress: &ConnectionProgress,
    ) -> Result<Result<SyncReport, String>, Interrupted> {
        let mut attempt = 1;
        let leased = loop {
            match self.engine.start(id, self.budget).await {
                Ok(Start::Skipped(report)) => return Ok(Ok(report)),
                Ok(Start::Ready(leased)) => break leased,
                Err(e) if e.is_transient() && attempt < STORE_ATTEMPTS => {
                    tracing::warn!(connection = %id, error = %e, "the database is busy; trying the run again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Ok(Err(format!("could not start the run: {e}"))),
            }
        };
        let report = tokio::select! {
            report = self.engine.run(&leased, Some(progress)) => Some(report),
            _ = crate::shutdown::requested() => None,
        };
        leased.release().await;
        report.map(Ok).ok_or(Interrupted)
    }
}
