//! Ports: the small capabilities the core needs from the outside world, one trait per store
//! operation group, so a handler asks only for what it uses. Adapters live beside the core:
//! in memory (`crate::memory`, for unit tests), SQLite and files (`casesync-local`), and AWS
//! (`casesync-aws`).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::data_point::DataPoint;
use crate::domain::{
    ApiVersion, BackfillPlan, BackfillWindow, CaseFailure, CaseId, ChannelName, Connection,
    ConnectionId, ConnectionState, Cursor, InstanceUrl, LoginUrl, OrgId, QueueScope, SyncReport,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("connection {0} not found")]
    ConnectionNotFound(ConnectionId),
    /// A conditional write lost: another writer got there first, or the write would move
    /// something backwards. The caller must not assume its write happened.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Throttled or unreachable; trying again later may succeed.
    #[error("store temporarily unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ConnectionReader: Send + Sync {
    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<Connection>>;
    /// Every connection, ordered by id.
    async fn list_connections(&self) -> StoreResult<Vec<Connection>>;
}

#[async_trait]
pub trait ConnectionWriter: Send + Sync {
    /// Stores a new connection; `Conflict` if its id exists.
    async fn insert_connection(&self, connection: &Connection) -> StoreResult<()>;
    /// Changes queues and backfill. The cursor restarts at `cursor` (the new window's start) and
    /// the lookback clock resets, so Cases newly in scope are imported.
    async fn update_settings(
        &self,
        id: &ConnectionId,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()>;
    /// Completes a `Pending` connection: its channel and import settings, the cursor at the
    /// start of its backfill window, active. `Conflict` when it is not pending.
    async fn complete_setup(
        &self,
        id: &ConnectionId,
        channel: &ChannelName,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()>;
    /// After the user authorized again: active, no reason, the (possibly new) instance URL.
    /// The cursor is kept, so the sync resumes where it stopped.
    async fn reauthorized(&self, id: &ConnectionId, instance_url: &InstanceUrl) -> StoreResult<()>;
    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<()>;
}

/// A connection's state: active, disconnected by the user, or waiting for re-authorization.
#[async_trait]
pub trait StateWriter: Send + Sync {
    /// Sets the state and the reason shown for it (`None` clears the reason).
    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        reason: Option<&str>,
    ) -> StoreResult<()>;

    /// Records that every data point of the connection is in the change order.
    async fn mark_points_indexed(&self, id: &ConnectionId) -> StoreResult<()>;

    /// Records the org the connection's token belongs to (its change events carry it).
    /// `ConnectionNotFound` when there is no such connection.
    async fn set_org_id(&self, id: &ConnectionId, org: &OrgId) -> StoreResult<()>;
}

#[async_trait]
pub trait CursorStore: Send + Sync {
    /// Moves the cursor from `expected` to `next`. Fails with `Conflict`, changing nothing, when
    /// the stored cursor is not `expected` (another worker or a reconfiguration moved it) or
    /// when `next < expected`: a cursor never moves backwards.
    async fn commit_cursor(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
    ) -> StoreResult<()>;

    /// Commits a sliced backfill's progress: its plan (`None`: finished, removed) and the cursor
    /// it implies, together. Fails with `Conflict`, changing nothing, when the stored cursor is
    /// not `expected`, when `next < expected`, or when the stored plan's version is not
    /// `expected_version` (0: no plan stored), so a worker that lost its lease cannot undo a
    /// newer commit. Changing the settings removes the plan.
    async fn commit_plan(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
        expected_version: u64,
        plan: Option<&BackfillPlan>,
    ) -> StoreResult<()>;
}

/// What a finished run leaves on its connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub report: SyncReport,
    /// The complete set of Cases still failing to map (replaces the stored set).
    pub failures: Vec<CaseFailure>,
    /// Set when this run swept the lookback overlap.
    pub lookback_swept_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait RunRecorder: Send + Sync {
    /// Records a finished run; leaves state and cursor alone.
    async fn record_run(&self, id: &ConnectionId, run: &RunRecord) -> StoreResult<()>;
    /// Replaces the connection's recorded failures during a run, before the cursor moves past
    /// a Case that failed: a crash then cannot lose the record of it.
    async fn save_failures(&self, id: &ConnectionId, failures: &[CaseFailure]) -> StoreResult<()>;
}

/// Keeps two workers (two Lambda invocations, two CLI processes) off one connection at a time.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the connection's sync lease for `holder` until `until`, unless someone else holds
    /// an unexpired one. `Ok(false)` when it is taken.
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Gives the lease back if `holder` still has it.
    async fn release_lease(&self, id: &ConnectionId, holder: &str) -> StoreResult<()>;
}

/// Refresh tokens. They live only here: never in the connection store, a log or an error.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get_refresh_token(&self, id: &ConnectionId) -> StoreResult<Option<SecretString>>;
    async fn put_refresh_token(&self, id: &ConnectionId, token: &SecretString) -> StoreResult<()>;
    async fn delete_refresh_token(&self, id: &ConnectionId) -> StoreResult<()>;
}

/// What an upsert did with each data point it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertCounts {
    pub created: u64,
    pub updated: u64,
    /// Same content as stored: not rewritten.
    pub unchanged: u64,
    /// Older than what is stored (a racing worker wrote a newer version): not written.
    pub stale: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.stale += o.stale;
    }
}

#[async_trait]
pub trait DataPointWriter: Send + Sync {
    /// Upserts keyed by (connection, Case id), following [`DataPoint::supersedes`]: new points
    /// are created, newer or changed ones replace the stored point, unchanged and older ones are
    /// left alone. Durable when it returns `Ok`.
    async fn upsert_data_points(&self, points: &[DataPoint]) -> StoreResult<UpsertCounts>;

    /// The number of points this store writes per call, when it writes in fixed batches
    /// (DynamoDB's `BatchWriteItem` holds 25). The engine then hands it whole batches and
    /// carries the rest of a page over to the next, committing the cursor only past what was
    /// written. `None`: any number is one write.
    fn write_batch_size(&self) -> Option<usize> {
        None
    }

    /// Puts the connection's points stored before the change order existed into it, for at
    /// most `budget`; `Ok(true)` once none is left. A store that upgrades in place (SQLite, when
    /// it opens) has nothing left to do.
    async fn index_existing_points(
        &self,
        _connection: &ConnectionId,
        _budget: std::time::Duration,
    ) -> StoreResult<bool> {
        Ok(true)
    }
}

#[async_trait]
pub trait DataPointReader: Send + Sync {
    async fn get_data_point(
        &self,
        connection: &ConnectionId,
        case: &CaseId,
    ) -> StoreResult<Option<DataPoint>>;
    async fn count_data_points(&self, connection: &ConnectionId) -> StoreResult<u64>;
    /// Up to `limit` data points of a connection with a Case id greater than `after`, ordered by
    /// Case id.
    async fn list_data_points(
        &self,
        connection: &ConnectionId,
        after: Option<&CaseId>,
        limit: usize,
    ) -> StoreResult<Vec<DataPoint>>;
}

/// A position in a channel's change order: when a data point last changed (created, or its
/// content rewritten), then its id. Every change moves a point to a later position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChangePosition {
    pub changed_at: DateTime<Utc>,
    pub id: String,
}

/// One entry of a channel's change order, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEntry {
    pub position: ChangePosition,
    pub connection_id: ConnectionId,
    pub case_id: CaseId,
    /// What the point's contract JSON costs inside a JSON string (its length, plus one byte for
    /// each `"` and `\` it holds): the size budget of a page is spent in these units.
    pub escaped_len: u64,
}

/// What to read of a channel's change order.
#[derive(Debug, Clone)]
pub struct ChangeQuery {
    pub channel: ChannelName,
    /// Only this connection's points.
    pub connection: Option<ConnectionId>,
    /// Strictly after this position (strictly before it, when `descending`).
    pub after: Option<ChangePosition>,
    /// Changed at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Changed strictly before this instant (now minus the feed's visibility lag).
    pub until: DateTime<Utc>,
    pub limit: usize,
    /// The caller keeps entries, in order, while their escaped lengths add up to at most this
    /// (passing over any one larger than it alone): a store that reads bodies along with the
    /// entries need not read the ones past it.
    pub budget: Option<u64>,
    /// Newest first (the console's list), instead of oldest first.
    pub descending: bool,
}

/// A data point's contract JSON, exactly as stored (the bytes the export prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJson {
    pub entry: ChangeEntry,
    pub json: String,
}

/// An entry of the change order, with its JSON when the store read it along with the entry (a
/// store whose index holds the bodies), so that no second read is needed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPoint {
    pub entry: ChangeEntry,
    pub json: Option<String>,
}

/// A channel's data points in the order they last changed: what the read API and the console
/// page through, and the CLI exports with `--changed-since`.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// How long after its change stamp a write may still become visible here. Readers never
    /// read closer to now than this, so a cursor can never pass a write still in flight.
    fn visibility_lag(&self) -> TimeDelta;

    /// Up to `limit` entries of the query, in change order, with their JSON where the store
    /// read it along.
    async fn changes(&self, query: &ChangeQuery) -> StoreResult<Vec<ChangedPoint>>;

    /// The stored JSON of `entries` whose JSON did not come with them, in their order. A point
    /// deleted since it was listed is left out; one rewritten since comes with its current
    /// content (and is listed again at its new position).
    async fn bodies(&self, entries: &[ChangeEntry]) -> StoreResult<Vec<StoredJson>>;

    /// One data point by its id.
    async fn by_id(&self, id: &str) -> StoreResult<Option<StoredJson>>;

    /// The `SystemModstamp` of each data point of `channel` stamped at or after `since` (the
    /// console's chart of closed Cases per week), in no particular order.
    async fn modstamps(
        &self,
        channel: &ChannelName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<DateTime<Utc>>>;
}

#[async_trait]
pub trait DataPointDeleter: Send + Sync {
    /// Deletes every data point of a connection; returns how many there were.
    async fn delete_data_points(&self, connection: &ConnectionId) -> StoreResult<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Sent by the scheduler.
    Tick,
    /// Sent by a worker whose run stopped with work left.
    Continuation,
    /// Put the connection's data points stored before the change order existed into it (sent
    /// by the scheduler, and by a worker that ran out of time doing it).
    IndexPoints,
    /// Salesforce said these Cases changed (a change event): fetch exactly them, now. The
    /// keyset cursor does not move; the polling sync stays the completeness guarantee.
    Changes,
    /// Salesforce said changes were lost or too many to list (a gap or overflow change
    /// event): sync the connection now, through the keyset cursor, as a tick does.
    Resync,
}

impl WorkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tick => "tick",
            Self::Continuation => "continuation",
            Self::IndexPoints => "index_points",
            Self::Changes => "changes",
            Self::Resync => "resync",
        }
    }
}

/// One unit of work: "sync this connection".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub connection_id: ConnectionId,
    pub kind: WorkKind,
    pub enqueued_at: DateTime<Utc>,
    /// Continuations in a row whose run read nothing before its time ran out (see
    /// `manage::follow_up`). Absent (0) on ticks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_runs: u32,
    /// The Cases a [`WorkKind::Changes`] item names; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub case_ids: Vec<CaseId>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkItem {
    /// A scheduler tick for `connection_id`, stamped `at`.
    pub fn tick(connection_id: ConnectionId, at: DateTime<Utc>) -> Self {
        Self {
            connection_id,
            kind: WorkKind::Tick,
            enqueued_at: at,
            idle_runs: 0,
            case_ids: Vec::new(),
        }
    }

    /// "Fetch these Cases now" for `connection_id`, stamped `at`.
    pub fn changes(connection_id: ConnectionId, case_ids: Vec<CaseId>, at: DateTime<Utc>) -> Self {
        Self {
            kind: WorkKind::Changes,
            case_ids,
            ..Self::tick(connection_id, at)
        }
    }
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, items: &[WorkItem]) -> StoreResult<()>;
}

/// An OAuth flow that was started and awaits its callback.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The `state` parameter: random, single-use.
    pub state: String,
    /// The PKCE code verifier; only its S256 challenge left this system. Serialised (for the
    /// short-lived auth state store) but never printed.
    #[serde(with = "crate::secret_serde")]
    pub verifier: SecretString,
    pub channel: ChannelName,
    pub login_url: LoginUrl,
    pub redirect_uri: String,
    pub scope: QueueScope,
    pub backfill: BackfillWindow,
    pub api_version: ApiVersion,
    /// Set when the flow re-authorizes an existing connection.
    #[serde(default)]
    pub reauthorize: Option<ConnectionId>,
    /// Set when the connection's channel and import settings are chosen after authorizing
    /// (the console): the connection is created `Pending`.
    #[serde(default)]
    pub pending_setup: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("state", &"[REDACTED]")
            .field("verifier", &"[REDACTED]")
            .field("channel", &self.channel)
            .field("login_url", &self.login_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("scope", &self.scope)
            .field("backfill", &self.backfill)
            .field("api_version", &self.api_version)
            .field("reauthorize", &self.reauthorize)
            .field("pending_setup", &self.pending_setup)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[async_trait]
pub trait AuthStateStore: Send + Sync {
    async fn put_auth_state(&self, pending: &PendingAuthorization) -> StoreResult<()>;
    /// Removes and returns the pending flow for `state`, atomically: a second `take` of the same
    /// state returns `None`. Expiry is the caller's to check.
    async fn take_auth_state(&self, state: &str) -> StoreResult<Option<PendingAuthorization>>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What a sync run needs of its connection's record, and nothing more: read it, mark it
/// `needs_reauth`, commit the cursor, record the run, hold the lease.
pub trait SyncStateStore:
    ConnectionReader + StateWriter + CursorStore + RunRecorder + LeaseStore
{
}

impl<T> SyncStateStore for T where
    T: ConnectionReader + StateWriter + CursorStore + RunRecorder + LeaseStore
{
}

/// The connection store as the management use cases see it: everything a sync run uses, plus
/// creating, reconfiguring, re-authorizing and deleting connections.
pub trait ConnectionStore: SyncStateStore + ConnectionWriter {}

impl<T> ConnectionStore for T where T: SyncStateStore + ConnectionWriter {}

/// The data point store as a whole.
pub trait DataPointStore: DataPointReader + DataPointWriter + DataPointDeleter {}

impl<T> DataPointStore for T where T: DataPointReader + DataPointWriter + DataPointDeleter {}
