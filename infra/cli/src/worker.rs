//! The local scheduler and worker: a tick enqueues one work item per connection into the
//! in-process `LocalQueue`, the worker drains it through the core's `SyncEngine`, and a run that
//! stops with work left enqueues its continuation, as the cloud worker does.
//!
//! Two processes on one data dir are kept apart by the SQLite store's lease and its
//! compare-and-swap cursor: the second finds the lease taken and reports `busy`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use casesync_core::domain::{
    BackfillWindow, CaseFailure, Connection, ConnectionId, ConnectionState, Cursor, InstanceUrl,
    QueueScope,
};
use casesync_core::ports::{
    ConnectionReader, ConnectionWriter, CursorStore, LeaseStore, RunRecord, RunRecorder,
    StoreResult, WorkItem, WorkKind, WorkQueue,
};
use casesync_core::sync::{SyncCounts, SyncEngine, SyncOutcome};
use casesync_local::{LocalQueue, SqliteStore};
use chrono::{DateTime, Utc};

use crate::progress::{ConnectionProgress, Display};

/// Continuations in a row that read nothing before the worker gives up on a connection.
const MAX_IDLE_CONTINUATIONS: u32 = 3;
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
            .map(|id| WorkItem {
                connection_id: id.clone(),
                kind: WorkKind::Tick,
                enqueued_at: now,
            })
            .collect();
        // The local queue never fails.
        let _ = self.queue.enqueue(&items).await;
    }

    /// Runs work items until the queue is empty; one result per connection, in the order they
    /// were first run.
    pub async fn drain(&self) -> Vec<ConnectionResult> {
        let mut results: Vec<ConnectionResult> = Vec::new();
        let mut progress: HashMap<ConnectionId, ConnectionProgress> = HashMap::new();
        let mut idle: HashMap<ConnectionId, u32> = HashMap::new();
        while let Some(item) = self.queue.pop() {
            let id = item.connection_id;
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
            let (outcome, counts, error, cursor) = match self.run(&id, bar).await {
                Ok(r) => (r.outcome, r.counts, r.error, r.cursor_after),
                Err(e) => (
                    SyncOutcome::Failed,
                    SyncCounts::default(),
                    Some(e),
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
            add_counts(&mut slot.counts, &counts);
            slot.runs += 1;
            slot.outcome = outcome;
            slot.error = error;
            slot.cursor = cursor;
            slot.elapsed += started.elapsed();

            if outcome == SyncOutcome::MoreWork {
                let stalled = idle.entry(id.clone()).or_default();
                *stalled = if counts.fetched == 0 { *stalled + 1 } else { 0 };
                if *stalled >= MAX_IDLE_CONTINUATIONS {
                    slot.outcome = SyncOutcome::Failed;
                    slot.error = Some(format!(
                        "{MAX_IDLE_CONTINUATIONS} runs in a row read nothing before their time \
                         budget ran out: raise --run-budget"
                    ));
                } else {
                    let _ = self
                        .queue
                        .enqueue(&[WorkItem {
                            connection_id: id.clone(),
                            kind: WorkKind::Continuation,
                            enqueued_at: Utc::now(),
                        }])
                        .await;
                    continue;
                }
            }
            if let Some(bar) = progress.remove(&id) {
                bar.finish();
            }
        }
        results
    }

    /// One run, retrying when the store was busy before anything was read.
    async fn run(
        &self,
        id: &ConnectionId,
        progress: &ConnectionProgress,
    ) -> Result<casesync_core::sync::SyncReport, String> {
        let mut attempt = 1;
        loop {
            match self.engine.sync(id, self.budget, Some(progress)).await {
                Ok(report) => return Ok(report),
                Err(e) if e.is_transient() && attempt < STORE_ATTEMPTS => {
                    tracing::warn!(connection = %id, error = %e, "the database is busy; trying the run again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(format!("could not start the run: {e}")),
            }
        }
    }
}

fn add_counts(total: &mut SyncCounts, run: &SyncCounts) {
    total.fetched += run.fetched;
    total.created += run.created;
    total.updated += run.updated;
    total.unchanged += run.unchanged;
    total.failed += run.failed;
    total.pages += run.pages;
    total.api_calls += run.api_calls;
}

/// Which connections a tick covers: the ones named, or every active one.
pub struct Targets {
    /// To sync.
    pub active: Vec<Connection>,
    /// Need re-authorization: reported, not synced.
    pub needs_reauth: Vec<Connection>,
    /// Disconnected and named explicitly: reported as skipped.
    pub disconnected: Vec<Connection>,
}

impl Targets {
    pub fn split(connections: Vec<Connection>, named: bool) -> Self {
        let mut t = Targets {
            active: Vec::new(),
            needs_reauth: Vec::new(),
            disconnected: Vec::new(),
        };
        for c in connections {
            match c.state {
                ConnectionState::Active => t.active.push(c),
                ConnectionState::NeedsReauth => t.needs_reauth.push(c),
                ConnectionState::Disconnected if named => t.disconnected.push(c),
                ConnectionState::Disconnected => {}
            }
        }
        t
    }
}

/// Remembers the sync leases the engine takes in this process, so a run cancelled by Ctrl-C can
/// give its lease back instead of leaving the connection `busy` until the lease expires.
#[derive(Clone, Default)]
pub struct LeaseTracker {
    held: Arc<Mutex<HashMap<ConnectionId, String>>>,
}

impl LeaseTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// `store`, with its leases recorded here.
    pub fn wrap<S>(&self, store: S) -> TrackedLeases<S> {
        TrackedLeases {
            inner: store,
            held: self.held.clone(),
        }
    }

    /// Releases every lease still held (after a cancelled run).
    pub async fn release_all(&self, store: &dyn LeaseStore) {
        let held: Vec<(ConnectionId, String)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (id, holder) in held {
            if let Err(e) = store.release_lease(&id, &holder).await {
                tracing::warn!(connection = %id, error = %e, "could not release the sync lease; it expires by itself");
            }
        }
    }
}

/// A connection store whose lease operations are recorded in a [`LeaseTracker`].
pub struct TrackedLeases<S> {
    inner: S,
    held: Arc<Mutex<HashMap<ConnectionId, String>>>,
}

impl<S> TrackedLeases<S> {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, String>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for TrackedLeases<S> {
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let taken = self.inner.try_acquire_lease(id, holder, now, until).await?;
        if taken {
            self.held().insert(id.clone(), holder.to_owned());
        }
        Ok(taken)
    }

    async fn release_lease(&self, id: &ConnectionId, holder: &str) -> StoreResult<()> {
        self.inner.release_lease(id, holder).await?;
        let mut held = self.held();
        if held.get(id).is_some_and(|h| h == holder) {
            held.remove(id);
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ConnectionReader> ConnectionReader for TrackedLeases<S> {
    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<Connection>> {
        self.inner.get_connection(id).await
    }

    async fn list_connections(&self) -> StoreResult<Vec<Connection>> {
        self.inner.list_connections().await
    }
}

#[async_trait]
impl<S: ConnectionWriter> ConnectionWriter for TrackedLeases<S> {
    async fn insert_connection(&self, connection: &Connection) -> StoreResult<()> {
        self.inner.insert_connection(connection).await
    }

    async fn update_settings(
        &self,
        id: &ConnectionId,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        self.inner
            .update_settings(id, scope, backfill, cursor)
            .await
    }

    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        self.inner.set_state(id, state, reason).await
    }

    async fn reauthorized(&self, id: &ConnectionId, instance_url: &InstanceUrl) -> StoreResult<()> {
        self.inner.reauthorized(id, instance_url).await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<()> {
        self.inner.delete_connection(id).await
    }
}

#[async_trait]
impl<S: CursorStore> CursorStore for TrackedLeases<S> {
    async fn commit_cursor(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
    ) -> StoreResult<()> {
        self.inner.commit_cursor(id, expected, next).await
    }
}

#[async_trait]
impl<S: RunRecorder> RunRecorder for TrackedLeases<S> {
    async fn record_run(&self, id: &ConnectionId, run: &RunRecord) -> StoreResult<()> {
        self.inner.record_run(id, run).await
    }

    async fn save_failures(&self, id: &ConnectionId, failures: &[CaseFailure]) -> StoreResult<()> {
        self.inner.save_failures(id, failures).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::domain::{ApiVersion, ChannelName, LoginUrl};

    #[tokio::test]
    async fn a_lease_taken_through_the_tracker_is_released_by_release_all() {
        // Given a connection whose lease the engine took through the tracker
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("casesync.db")).unwrap();
        let now = Utc::now();
        let later = now + chrono::TimeDelta::minutes(5);
        let c = Connection::new(
            ConnectionId::new_random(),
            ChannelName::parse("c").unwrap(),
            LoginUrl::parse("http://127.0.0.1:1").unwrap(),
            InstanceUrl::parse("http://127.0.0.1:2").unwrap(),
            ApiVersion::DEFAULT,
            QueueScope::All,
            BackfillWindow::Days7,
            now,
        );
        store.insert_connection(&c).await.unwrap();
        let tracker = LeaseTracker::new();
        let tracked = tracker.wrap(store.clone());
        assert!(
            tracked
                .try_acquire_lease(&c.id, "run-1", now, later)
                .await
                .unwrap()
        );
        assert!(
            !store
                .try_acquire_lease(&c.id, "other", now, later)
                .await
                .unwrap()
        );

        // When the run is cancelled and the tracker releases what it holds
        tracker.release_all(&store).await;

        // Then another process can take the lease at once
        assert!(
            store
                .try_acquire_lease(&c.id, "other", now, later)
                .await
                .unwrap()
        );
    }
}
