//! In-memory adapters for every port, for unit tests of the core.
//!
//! They keep the semantics the real adapters promise (conditional cursor commits, upserts that
//! never rewrite unchanged points nor overwrite newer ones, single-use auth states) and can
//! simulate a crash: after `crash_after_writes(n)`, the n+1-th write and every later one fails
//! as if the process had died, until `heal()`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::data_point::{DataPoint, Supersedes, decide};
use crate::domain::BackfillPlan;
use crate::domain::{
    BackfillWindow, CaseFailure, CaseId, ChannelName, Connection, ConnectionId, ConnectionState,
    Cursor, InstanceUrl, OrgId, QueueScope,
};
use crate::ports::*;

#[derive(Default)]
struct Inner {
    connections: BTreeMap<ConnectionId, Connection>,
    leases: HashMap<ConnectionId, (String, DateTime<Utc>)>,
    secrets: HashMap<ConnectionId, String>,
    points: BTreeMap<(ConnectionId, CaseId), Stored>,
    /// The last change stamp handed out: stamps only grow, as a single writer's would.
    last_change: Option<DateTime<Utc>>,
    auth_states: HashMap<String, PendingAuthorization>,
    queue: VecDeque<WorkItem>,
    /// Writes that may still succeed before the simulated crash; `None` = no crash planned.
    writes_left: Option<u64>,
}

/// A stored data point, its digest, its change stamp and its contract JSON.
struct Stored {
    point: DataPoint,
    hash: String,
    changed_at: DateTime<Utc>,
    json: String,
}

impl Stored {
    fn entry(&self) -> ChangeEntry {
        ChangeEntry {
            position: ChangePosition {
                changed_at: self.changed_at,
                id: self.point.id.clone(),
            },
            connection_id: self.point.connection_id.clone(),
            case_id: self.point.case_id.clone(),
            escaped_len: crate::data_point::escaped_len(self.json.as_bytes()),
        }
    }
}

/// Every port in one in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Data point writes that reached the store, one per point (created or updated).
    pub point_writes: AtomicU64,
    /// Points per write call, to behave like a batching store (0: any number).
    write_batch: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic in another test thread must not hide this store's contents.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After `n` more successful writes, every write fails until [`MemoryStore::heal`].
    pub fn crash_after_writes(&self, n: u64) {
        self.lock().writes_left = Some(n);
    }

    pub fn heal(&self) {
        self.lock().writes_left = None;
    }

    /// Makes the store ask for whole batches of `n` points, as DynamoDB does with 25.
    pub fn set_write_batch_size(&self, n: Option<usize>) {
        self.write_batch
            .store(n.unwrap_or(0) as u64, Ordering::Relaxed);
    }

    /// Takes one write from the crash budget, or fails as a crashed process would.
    fn write_permit(inner: &mut Inner) -> StoreResult<()> {
        match &mut inner.writes_left {
            None => Ok(()),
            Some(0) => Err(StoreError::Unexpected(anyhow!("simulated crash"))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
        }
    }

    pub fn all_data_points(&self) -> Vec<DataPoint> {
        self.lock()
            .points
            .values()
            .map(|s| s.point.clone())
            .collect()
    }

    pub fn drain_queue(&self) -> Vec<WorkItem> {
        self.lock().queue.drain(..).collect()
    }

    fn with_connection<T>(
        &self,
        id: &ConnectionId,
        f: impl FnOnce(&mut Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        let c = inner
            .connections
            .get_mut(id)
            .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        f(c)
    }
}

#[async_trait]
impl ConnectionReader for MemoryStore {
    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<Connection>> {
        Ok(self.lock().connections.get(id).cloned())
    }

    async fn list_connections(&self) -> StoreResult<Vec<Connection>> {
        Ok(self.lock().connections.values().cloned().collect())
    }
}

#[async_trait]
impl ConnectionWriter for MemoryStore {
    async fn insert_connection(&self, connection: &Connection) -> StoreResult<()> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        if inner.connections.contains_key(&connection.id) {
            return Err(StoreError::Conflict(format!(
                "connection {} exists",
                connection.id
            )));
        }
        inner
            .connections
            .insert(connection.id.clone(), connection.clone());
        Ok(())
    }

    async fn update_settings(
        &self,
        id: &ConnectionId,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.scope = scope.clone();
            c.backfill = backfill;
            c.cursor = cursor.clone();
            c.last_lookback_at = None;
            c.backfill_plan = None;
            Ok(())
        })
    }

    async fn complete_setup(
        &self,
        id: &ConnectionId,
        channel: &ChannelName,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        self.with_connection(id, |c| {
            if c.state != ConnectionState::Pending {
                return Err(StoreError::Conflict(format!(
                    "connection {id} is not pending"
                )));
            }
            c.channel = channel.clone();
            c.scope = scope.clone();
            c.backfill = backfill;
            c.cursor = cursor.clone();
            c.last_lookback_at = None;
            c.backfill_plan = None;
            c.state = ConnectionState::Active;
            c.state_reason = None;
            Ok(())
        })
    }

    async fn reauthorized(&self, id: &ConnectionId, instance_url: &InstanceUrl) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.state = ConnectionState::Active;
            c.state_reason = None;
            c.instance_url = instance_url.clone();
            Ok(())
        })
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<()> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        inner.connections.remove(id);
        inner.leases.remove(id);
        Ok(())
    }
}

#[async_trait]
impl StateWriter for MemoryStore {
    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.state = state;
            c.state_reason = reason.map(str::to_owned);
            Ok(())
        })
    }

    async fn mark_points_indexed(&self, id: &ConnectionId) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.points_indexed = true;
            Ok(())
        })
    }

    async fn set_org_id(&self, id: &ConnectionId, org: &OrgId) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.org_id = Some(org.clone());
            Ok(())
        })
    }
}

#[async_trait]
impl CursorStore for MemoryStore {
    async fn commit_cursor(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
    ) -> StoreResult<()> {
        self.with_connection(id, |c| {
            if &c.cursor != expected || next < expected {
                return Err(StoreError::Conflict(format!(
                    "cursor of {id} is {}, expected {expected}",
                    c.cursor
                )));
            }
            c.cursor = next.clone();
            Ok(())
        })
    }

    async fn commit_plan(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
        expected_version: u64,
        plan: Option<&BackfillPlan>,
    ) -> StoreResult<()> {
        self.with_connection(id, |c| {
            let stored = c.backfill_plan.as_ref().map_or(0, |p| p.version);
            if &c.cursor != expected || next < expected || stored != expected_version {
                return Err(StoreError::Conflict(format!(
                    "cursor of {id} is {} (plan version {stored}), expected {expected} (version \
                     {expected_version})",
                    c.cursor
                )));
            }
            c.cursor = next.clone();
            c.backfill_plan = plan.cloned();
            Ok(())
        })
    }
}

#[async_trait]
impl RunRecorder for MemoryStore {
    async fn record_run(&self, id: &ConnectionId, run: &RunRecord) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.last_run = Some(run.report.clone());
            c.failures = run.failures.clone();
            if let Some(at) = run.lookback_swept_at {
                c.last_lookback_at = Some(at);
            }
            Ok(())
        })
    }

    async fn save_failures(&self, id: &ConnectionId, failures: &[CaseFailure]) -> StoreResult<()> {
        self.with_connection(id, |c| {
            c.failures = failures.to_vec();
            Ok(())
        })
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        // The lease lives with its connection, as in every store.
        if !inner.connections.contains_key(id) {
            return Err(StoreError::ConnectionNotFound(id.clone()));
        }
        match inner.leases.get(id) {
            Some((h, exp)) if h != holder && *exp > now => Ok(false),
            _ => {
                inner.leases.insert(id.clone(), (holder.to_owned(), until));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, id: &ConnectionId, holder: &str) -> StoreResult<()> {
        let mut inner = self.lock();
        if inner.leases.get(id).is_some_and(|(h, _)| h == holder) {
            inner.leases.remove(id);
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn get_refresh_token(&self, id: &ConnectionId) -> StoreResult<Option<SecretString>> {
        Ok(self
            .lock()
            .secrets
            .get(id)
            .map(|s| SecretString::from(s.clone())))
    }

    async fn put_refresh_token(&self, id: &ConnectionId, token: &SecretString) -> StoreResult<()> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        inner
            .secrets
            .insert(id.clone(), token.expose_secret().to_owned());
        Ok(())
    }

    async fn delete_refresh_token(&self, id: &ConnectionId) -> StoreResult<()> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        inner.secrets.remove(id);
        Ok(())
    }
}

#[async_trait]
impl DataPointWriter for MemoryStore {
    async fn upsert_data_points(&self, points: &[DataPoint]) -> StoreResult<UpsertCounts> {
        let mut inner = self.lock();
        // One batch is one write: it lands whole or not at all, as a transaction would.
        Self::write_permit(&mut inner)?;
        let mut counts = UpsertCounts::default();
        let now = Utc::now();
        let changed_at = match inner.last_change {
            Some(last) if last >= now => last + TimeDelta::microseconds(1),
            _ => now,
        };
        inner.last_change = Some(changed_at);
        for p in points {
            let key = (p.connection_id.clone(), p.case_id.clone());
            let encoded = p.encode();
            let hash = encoded.hash;
            match inner.points.get(&key) {
                None => counts.created += 1,
                Some(stored) => {
                    match decide(
                        p.system_modstamp,
                        &hash,
                        stored.point.system_modstamp,
                        &stored.hash,
                    ) {
                        Supersedes::Update => counts.updated += 1,
                        Supersedes::Unchanged => {
                            counts.unchanged += 1;
                            continue;
                        }
                        Supersedes::Stale => {
                            counts.stale += 1;
                            continue;
                        }
                    }
                }
            }
            self.point_writes.fetch_add(1, Ordering::Relaxed);
            let json = String::from_utf8(encoded.json).expect("serde_json writes UTF-8");
            inner.points.insert(
                key,
                Stored {
                    point: p.clone(),
                    hash,
                    changed_at,
                    json,
                },
            );
        }
        Ok(counts)
    }

    fn write_batch_size(&self) -> Option<usize> {
        match self.write_batch.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as usize),
        }
    }
}

#[async_trait]
impl DataPointReader for MemoryStore {
    async fn get_data_point(
        &self,
        connection: &ConnectionId,
        case: &CaseId,
    ) -> StoreResult<Option<DataPoint>> {
        Ok(self
            .lock()
            .points
            .get(&(connection.clone(), case.clone()))
            .map(|s| s.point.clone()))
    }

    async fn count_data_points(&self, connection: &ConnectionId) -> StoreResult<u64> {
        Ok(self
            .lock()
            .points
            .keys()
            .filter(|(c, _)| c == connection)
            .count() as u64)
    }

    async fn list_data_points(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> StoreResult<Vec<DataPoint>> {
        Ok(self
            .lock()
            .points
            .iter()
            .filter(|((c, case), _)| c == connection && after.is_none_or(|a| case > a))
            .take(limit)
            .map(|(_, s)| s.point.clone())
            .collect())
    }
}

#[async_trait]
impl ChangeFeed for MemoryStore {
    /// Writes are visible when they return.
    fn visibility_lag(&self) -> TimeDelta {
        TimeDelta::zero()
    }

    async fn changes(&self, q: &ChangeQuery) -> StoreResult<Vec<ChangedPoint>> {
        let inner = self.lock();
        let mut entries: Vec<ChangeEntry> = inner
            .points
            .values()
            .filter(|s| s.point.channel == q.channel)
            .filter(|s| {
                q.connection
                    .as_ref()
                    .is_none_or(|c| &s.point.connection_id == c)
            })
            .filter(|s| q.since.is_none_or(|since| s.changed_at >= since))
            .filter(|s| s.changed_at < q.until)
            .map(Stored::entry)
            .filter(|e| {
                q.after.as_ref().is_none_or(|a| match q.descending {
                    false => &e.position > a,
                    true => &e.position < a,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.position.cmp(&b.position));
        if q.descending {
            entries.reverse();
        }
        entries.truncate(q.limit);
        // Bodies are left to `bodies`, as a store with a keys-only index would.
        Ok(entries
            .into_iter()
            .map(|entry| ChangedPoint { entry, json: None })
            .collect())
    }

    async fn bodies(&self, entries: &[ChangeEntry]) -> StoreResult<Vec<StoredJson>> {
        let inner = self.lock();
        Ok(entries
            .iter()
            .filter_map(|e| {
                let s = inner
                    .points
                    .get(&(e.connection_id.clone(), e.case_id.clone()))?;
                Some(StoredJson {
                    entry: s.entry(),
                    json: s.json.clone(),
                })
            })
            .collect())
    }

    async fn modstamps(
        &self,
        channel: &ChannelName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>> {
        Ok(self
            .lock()
            .points
            .values()
            .filter(|s| &s.point.channel == channel && s.point.system_modstamp >= since)
            .map(|s| s.point.system_modstamp)
            .collect())
    }

    async fn by_id(&self, id: &str) -> StoreResult<Option<StoredJson>> {
        Ok(self
            .lock()
            .points
            .values()
            .find(|s| s.point.id == id)
            .map(|s| StoredJson {
                entry: s.entry(),
                json: s.json.clone(),
            }))
    }
}

#[async_trait]
impl DataPointDeleter for MemoryStore {
    async fn delete_data_points(&self, connection: &ConnectionId) -> StoreResult<u64> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        let before = inner.points.len();
        inner.points.retain(|(c, _), _| c != connection);
        Ok((before - inner.points.len()) as u64)
    }
}

#[async_trait]
impl WorkQueue for MemoryStore {
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        inner.queue.extend(items.iter().cloned());
        Ok(())
    }
}

#[async_trait]
impl AuthStateStore for MemoryStore {
    async fn put_auth_state(&self, pending: &PendingAuthorization) -> StoreResult<()> {
        let mut inner = self.lock();
        Self::write_permit(&mut inner)?;
        inner
            .auth_states
            .insert(pending.state.clone(), pending.clone());
        Ok(())
    }

    async fn take_auth_state(&self, state: &str) -> StoreResult<Option<PendingAuthorization>> {
        Ok(self.lock().auth_states.remove(state))
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(AtomicI64::new(at.timestamp_millis()))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.0.store(at.timestamp_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: TimeDelta) {
        self.0.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap_or_default()
    }
}
