//! The run loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use super::lease::SyncLease;
use super::source::{Batch, PageSource};
use super::{SyncConfig, SyncCounts, SyncOutcome, SyncReport};
use crate::data_point::DataPoint;
use crate::domain::{
    CaseFailure, CaseId, Connection, ConnectionId, ConnectionState, Cursor, MAX_RECORDED_FAILURES,
};
use crate::mapping::{MappingContext, map_case, position};
use crate::ports::{
    Clock, DataPointWriter, LeaseStore, RunRecord, SecretStore, StoreError, SyncStateStore,
};
use crate::salesforce::soql::{self, OwnerFilter, Window};
use crate::salesforce::{OrgApi, Salesforce, SalesforceError, TokenCache};

/// How often an expired query locator may be replaced by a fresh query in one run.
const MAX_QUERY_RESTARTS: u32 = 3;
/// How many times a timed-out query's window may be halved before the run gives up.
const MAX_WINDOW_HALVINGS: u32 = 12;
/// Failed Cases retried per run.
const FAILURE_RETRY_BATCH: usize = 200;

/// What a run reports after each page, for progress bars and logs.
#[derive(Debug, Clone)]
pub struct Progress {
    pub connection_id: ConnectionId,
    pub counts: SyncCounts,
    /// The position reached (the last Case read).
    pub position: Cursor,
    /// The end of the range this run reads.
    pub until: DateTime<Utc>,
    /// How far the run has read, in time: the position, or in a sliced backfill the point one
    /// stream would have reached (see [`crate::domain::BackfillPlan::progress_point`]).
    pub progress_point: DateTime<Utc>,
}

pub trait ProgressObserver: Send + Sync {
    fn on_page(&self, progress: &Progress);
}

/// Runs syncs. Built once per process with its stores and clients, shared by every run.
pub struct SyncEngine {
    pub(super) connections: Arc<dyn SyncStateStore>,
    pub(super) points: Arc<dyn DataPointWriter>,
    secrets: Arc<dyn SecretStore>,
    pub(super) clock: Arc<dyn Clock>,
    salesforce: Salesforce,
    pub(super) config: SyncConfig,
}

/// Why a run stopped, before it is turned into a report.
enum Stop {
    Done,
    MoreWork,
    Disconnected(String),
    Busy(String),
    RateLimited(String),
    NeedsReauth(String),
    Failed(String),
}

/// Records that `id` could not be imported (again): one more attempt, the latest error.
pub(super) fn record_failure(
    failures: &mut BTreeMap<CaseId, CaseFailure>,
    id: CaseId,
    error: String,
    now: DateTime<Utc>,
) {
    failures
        .entry(id.clone())
        .and_modify(|f| {
            f.attempts += 1;
            f.error = error.clone();
        })
        .or_insert(CaseFailure {
            case_id: id,
            error,
            first_seen: now,
            attempts: 1,
        });
}

/// What [`SyncEngine::fetch_changes`] did.
#[derive(Debug, Clone)]
pub struct ChangesReport {
    /// `done`; `more_work` (out of budget: fetch the rest again); `busy` (another run holds
    /// the connection); `disconnected`, `needs_reauth`, `rate_limited`, `failed` as for a sync.
    pub outcome: SyncOutcome,
    pub counts: SyncCounts,
    pub error: Option<String>,
}

/// The length of `https://host/services/data/vXX.X/query`, which every query URL starts with.
fn query_base_len(connection: &Connection) -> usize {
    connection
        .instance_url
        .join(&format!(
            "/services/data/{}/query",
            connection.api_version.path_segment()
        ))
        .len()
}

/// What [`SyncEngine::start`] found.
pub enum Start {
    /// The lease is taken: run it with [`SyncEngine::run`], then [`LeasedRun::release`] it.
    Ready(Box<LeasedRun>),
    /// Nothing to run: the connection is not active, or another run holds its lease. The
    /// report says which.
    Skipped(SyncReport),
}

/// A run that holds its connection's lease. The caller keeps it across the run, so that a run
/// it cancels (Ctrl-C) can still give the lease back.
pub struct LeasedRun {
    lease: SyncLease,
    connection: Connection,
    started_at: DateTime<Utc>,
    deadline: Instant,
}

impl LeasedRun {
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Gives the connection's lease back.
    pub async fn release(self) {
        self.lease.release().await;
    }
}

impl SyncEngine {
    pub fn new(
        connections: Arc<dyn SyncStateStore>,
        points: Arc<dyn DataPointWriter>,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        salesforce: Salesforce,
        config: SyncConfig,
    ) -> Self {
        Self {
            connections,
            points,
            secrets,
            clock,
            salesforce,
            config,
        }
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The process-wide access token cache (to forget a connection's token on disconnect).
    pub fn token_cache(&self) -> &Arc<TokenCache> {
        &self.salesforce.tokens
    }

    /// Syncs one connection for at most `budget`: [`start`](Self::start), [`run`](Self::run),
    /// release. Store failures before anything was read are returned as errors (the caller
    /// retries the work item); everything after is in the report.
    pub async fn sync(
        &self,
        id: &ConnectionId,
        budget: Duration,
        progress: Option<&dyn ProgressObserver>,
    ) -> Result<SyncReport, StoreError> {
        match self.start(id, budget).await? {
            Start::Skipped(report) => Ok(report),
            Start::Ready(run) => {
                let report = self.run(&run, progress).await;
                run.release().await;
                Ok(report)
            }
        }
    }

    /// Reads the connection and takes its lease for a run of at most `budget`, unless it is not
    /// active or another run holds the lease.
    pub async fn start(&self, id: &ConnectionId, budget: Duration) -> Result<Start, StoreError> {
        let deadline = Instant::now() + budget;
        let started_at = self.clock.now();
        let connection = self
            .connections
            .get_connection(id)
            .await?
            .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        let idle = |outcome, error: Option<String>| {
            Start::Skipped(SyncReport {
                outcome,
                counts: SyncCounts::default(),
                cursor_before: connection.cursor.clone(),
                cursor_after: connection.cursor.clone(),
                started_at,
                finished_at: started_at,
                error,
            })
        };
        match connection.state {
            ConnectionState::Active => {}
            // Not importing: stopped by the user, or not set up yet.
            ConnectionState::Disconnected | ConnectionState::Pending => {
                return Ok(idle(
                    SyncOutcome::Disconnected,
                    connection.state_reason.clone(),
                ));
            }
            ConnectionState::NeedsReauth => {
                return Ok(idle(
                    SyncOutcome::NeedsReauth,
                    connection.state_reason.clone(),
                ));
            }
        }
        let lease_until = started_at
            + TimeDelta::from_std(budget).unwrap_or(TimeDelta::hours(1))
            + TimeDelta::minutes(2);
        let leases: Arc<dyn LeaseStore> = self.connections.clone();
        let holder = uuid::Uuid::new_v4().to_string();
        match SyncLease::acquire(leases, id, holder, started_at, lease_until).await? {
            Some(lease) => Ok(Start::Ready(Box::new(LeasedRun {
                lease,
                connection,
                started_at,
                deadline,
            }))),
            None => Ok(idle(
                SyncOutcome::Busy,
                Some("another sync of this connection is running".into()),
            )),
        }
    }

    /// Puts the connection's data points stored before the change order existed into it, for
    /// at most `budget`, holding its sync lease (so no run writes them meanwhile), and records
    /// on the connection when none is left. `Ok(None)`: another run holds the lease;
    /// `Ok(Some(done))` otherwise.
    pub async fn index_points(
        &self,
        id: &ConnectionId,
        budget: Duration,
    ) -> Result<Option<bool>, StoreError> {
        let now = self.clock.now();
        let until = now
            + TimeDelta::from_std(budget).unwrap_or(TimeDelta::hours(1))
            + TimeDelta::minutes(2);
        let leases: Arc<dyn LeaseStore> = self.connections.clone();
        let holder = format!("index-{}", uuid::Uuid::new_v4());
        let Some(lease) = SyncLease::acquire(leases, id, holder, now, until).await? else {
            return Ok(None);
        };
        let result = self.points.index_existing_points(id, budget).await;
        let marked = match &result {
            Ok(true) => self.connections.mark_points_indexed(id).await,
            _ => Ok(()),
        };
        lease.release().await;
        marked?;
        result.map(Some)
    }

    /// Fetches exactly the Cases a change event named, with the scope filters and the email
    /// subquery of a sync, and upserts them (an older version never replaces a newer one; an
    /// unchanged one is not rewritten). Cases no longer closed, out of scope, deleted or not
    /// visible come back from no query and are left alone. The keyset cursor does **not** move
    /// and no run is recorded: the polling sync remains what guarantees completeness, and
    /// catches whatever an event missed. Holds the connection's lease like a sync; the outcome
    /// `busy` means another run holds it (try again later).
    pub async fn fetch_changes(
        &self,
        id: &ConnectionId,
        case_ids: &[CaseId],
        budget: Duration,
    ) -> Result<ChangesReport, StoreError> {
        let leased = match self.start(id, budget).await? {
            Start::Skipped(report) => {
                return Ok(ChangesReport {
                    outcome: report.outcome,
                    counts: SyncCounts::default(),
                    error: report.error,
                });
            }
            Start::Ready(run) => run,
        };
        let connection = &leased.connection;
        let api = self.salesforce.org(connection, self.secrets.clone());
        let ctx = MappingContext {
            connection_id: connection.id.clone(),
            channel: connection.channel.clone(),
            instance_url: connection.instance_url.clone(),
        };
        let base = query_base_len(connection);
        // The ids are known: no lag is needed (a little slack for clock skew).
        let until = Cursor::at(self.clock.now() + TimeDelta::hours(1)).system_modstamp;
        let mut ids: Vec<CaseId> = case_ids.to_vec();
        ids.sort();
        ids.dedup();
        let queries = soql::owner_filters(&connection.scope, base)
            .iter()
            .flat_map(|owner| soql::cases_by_ids(owner, &ids, until, base))
            .collect();
        let mut source = PageSource::new(api.clone(), queries, self.config.batch_size);
        let mut counts = SyncCounts::default();
        let mut outcome = SyncOutcome::Done;
        let mut error = None;
        loop {
            if Instant::now() >= leased.deadline {
                outcome = SyncOutcome::MoreWork;
                break;
            }
            let pages_before = source.pages();
            let batch = source.next_batch(false).await;
            counts.pages += source.pages() - pages_before;
            let batch = match batch {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    (outcome, error) = if e.is_rate_limited() {
                        (SyncOutcome::RateLimited, Some(e.to_string()))
                    } else if e.needs_reauth() {
                        let reason = e.to_string();
                        self.connections
                            .set_state(id, ConnectionState::NeedsReauth, Some(&reason))
                            .await
                            .unwrap_or_else(|se| tracing::error!(connection = %id, error = %se, "could not mark the connection needs_reauth"));
                        self.salesforce.tokens.forget(id);
                        (SyncOutcome::NeedsReauth, Some(reason))
                    } else {
                        (SyncOutcome::Failed, Some(e.to_string()))
                    };
                    break;
                }
            };
            counts.fetched += (batch.records.len() + batch.broken.len()) as u64;
            // What cannot be mapped is left to the polling sync, which records it.
            counts.failed += batch.broken.len() as u64;
            let mut points = Vec::with_capacity(batch.records.len());
            for record in batch.records {
                match map_case(&ctx, record) {
                    Ok(p) => points.push(p),
                    Err(_) => counts.failed += 1,
                }
            }
            if !points.is_empty() {
                match self.points.upsert_data_points(&points).await {
                    Ok(c) => {
                        counts.created += c.created;
                        counts.updated += c.updated;
                        counts.unchanged += c.unchanged + c.stale;
                    }
                    Err(e) => {
                        outcome = SyncOutcome::Failed;
                        error = Some(format!("could not store data points: {e}"));
                        break;
                    }
                }
            }
        }
        counts.api_calls = api.api_calls();
        if connection.org_id.is_none()
            && counts.api_calls > 0
            && let Some(org) = api.org_id().await
        {
            self.record_org(id, &org).await;
        }
        leased.release().await;
        tracing::info!(
            connection = %id,
            %outcome,
            cases = ids.len(),
            fetched = counts.fetched,
            created = counts.created,
            updated = counts.updated,
            api_calls = counts.api_calls,
            error = error.as_deref().unwrap_or(""),
            "changed Cases fetched"
        );
        Ok(ChangesReport {
            outcome,
            counts,
            error,
        })
    }

    async fn record_org(&self, id: &ConnectionId, org: &crate::domain::OrgId) {
        match self.connections.set_org_id(id, org).await {
            Ok(()) => tracing::info!(connection = %id, org = %org, "recorded the connection's org"),
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "could not record the connection's org")
            }
        }
    }

    /// Runs a leased connection until done, out of budget, or stopped. Cancelling it (dropping
    /// the future) loses nothing: the cursor holds the last page written.
    pub async fn run(
        &self,
        leased: &LeasedRun,
        progress: Option<&dyn ProgressObserver>,
    ) -> SyncReport {
        Run::new(
            self,
            leased.connection.clone(),
            leased.started_at,
            leased.deadline,
            progress,
        )
        .execute()
        .await
    }
}

/// One run's state.
struct Run<'a> {
    engine: &'a SyncEngine,
    connection: Connection,
    api: Arc<OrgApi>,
    ctx: MappingContext,
    started_at: DateTime<Utc>,
    deadline: Instant,
    progress: Option<&'a dyn ProgressObserver>,
    /// The cursor as stored (what the next commit must expect).
    committed: Cursor,
    /// The last position read in this run (behind `committed` during a lookback sweep).
    position: Cursor,
    until: DateTime<Utc>,
    counts: SyncCounts,
    failures: BTreeMap<CaseId, CaseFailure>,
    /// The failure set changed since it was last saved.
    failures_dirty: bool,
    /// Mapped points read but not yet written (a batching store takes whole batches), each
    /// with its record's position.
    pending: Vec<(DataPoint, Cursor)>,
    /// The position of the last record read: everything up to it is written, recorded as a
    /// failure, or in `pending`.
    read_to: Option<Cursor>,
    last_page_time: Duration,
    /// The end of a sliced backfill this run finished: the stream that follows reports its
    /// progress from there, as the slices read everything before it.
    sliced_to: Option<DateTime<Utc>>,
}

impl<'a> Run<'a> {
    fn new(
        engine: &'a SyncEngine,
        connection: Connection,
        started_at: DateTime<Utc>,
        deadline: Instant,
        progress: Option<&'a dyn ProgressObserver>,
    ) -> Self {
        let api = engine.salesforce.org(&connection, engine.secrets.clone());
        let ctx = MappingContext {
            connection_id: connection.id.clone(),
            channel: connection.channel.clone(),
            instance_url: connection.instance_url.clone(),
        };
        // Whole seconds: SystemModstamp has second granularity.
        let until = Cursor::at(started_at - engine.config.lag).system_modstamp;
        let failures = connection
            .failures
            .iter()
            .map(|f| (f.case_id.clone(), f.clone()))
            .collect();
        Self {
            engine,
            committed: connection.cursor.clone(),
            position: connection.cursor.clone(),
            connection,
            api,
            ctx,
            started_at,
            deadline,
            progress,
            until,
            counts: SyncCounts::default(),
            failures,
            failures_dirty: false,
            pending: Vec::new(),
            read_to: None,
            last_page_time: Duration::ZERO,
            sliced_to: None,
        }
    }

    fn id(&self) -> &ConnectionId {
        &self.connection.id
    }

    async fn execute(mut self) -> SyncReport {
        let cursor_before = self.committed.clone();
        let config = &self.engine.config;
        let now = self.started_at;
        // The lookback sweep: not on a connection's first run (nothing lies before its window
        // that matters), then at most once per `lookback_every`.
        let sweep = self.connection.last_run.is_some()
            && self
                .connection
                .last_lookback_at
                .is_none_or(|at| now - at >= config.lookback_every);
        if sweep {
            self.position = Cursor::at(self.committed.system_modstamp - config.lookback);
        }

        let mut stop = Stop::Done;
        let planned = self.connection.backfill_plan.clone();
        let sliced = planned.is_some()
            || (self.connection.last_run.is_none()
                && config.slices > 1
                && self.until - self.committed.system_modstamp
                    >= crate::domain::backfill_plan::MIN_SLICE * 2
                && self.worth_slicing().await);
        if sliced {
            // A backfill: no lookback sweep, no failures to retry yet. Once every slice is
            // read, the run goes on as one stream from the cursor to now − lag (the plan ended
            // at the lag of the run that planned it).
            stop = self.read_sliced(planned).await;
            if matches!(stop, Stop::Done) {
                stop = self.read_forward().await;
            }
        } else {
            if sweep
                && !self.failures.is_empty()
                && let Some(s) = self.retry_failures().await
            {
                stop = s;
            }
            if matches!(stop, Stop::Done) {
                stop = self.read_forward().await;
            }
        }
        let sweep = sweep && !sliced;

        // A sweep counts once it has read past where the cursor stood, or to the end.
        let swept = sweep
            && (matches!(stop, Stop::Done)
                || (matches!(stop, Stop::MoreWork) && self.position >= cursor_before));
        let first_run = self.connection.last_run.is_none();
        let (outcome, error) = match stop {
            Stop::Done => (SyncOutcome::Done, None),
            Stop::MoreWork => (SyncOutcome::MoreWork, None),
            Stop::Disconnected(e) => (SyncOutcome::Disconnected, Some(e)),
            Stop::Busy(e) => (SyncOutcome::Busy, Some(e)),
            Stop::RateLimited(e) => (SyncOutcome::RateLimited, Some(e)),
            Stop::NeedsReauth(e) => {
                if let Err(se) = self
                    .engine
                    .connections
                    .set_state(self.id(), ConnectionState::NeedsReauth, Some(&e))
                    .await
                {
                    tracing::error!(connection = %self.id(), error = %se, "could not mark the connection needs_reauth");
                }
                self.engine.salesforce.tokens.forget(self.id());
                (SyncOutcome::NeedsReauth, Some(e))
            }
            Stop::Failed(e) => (SyncOutcome::Failed, Some(e)),
        };
        self.counts.api_calls = self.api.api_calls();
        // Connections made before the org was recorded learn it from their token.
        if self.connection.org_id.is_none()
            && self.counts.api_calls > 0
            && let Some(org) = self.api.org_id().await
        {
            self.engine.record_org(self.id(), &org).await;
        }
        let report = SyncReport {
            outcome,
            counts: self.counts,
            cursor_before,
            cursor_after: self.committed.clone(),
            started_at: self.started_at,
            finished_at: self.engine.clock.now(),
            error,
        };
        let mut failures: Vec<CaseFailure> =
            std::mem::take(&mut self.failures).into_values().collect();
        if failures.len() > MAX_RECORDED_FAILURES {
            failures.sort_by_key(|f| std::cmp::Reverse(f.first_seen));
            failures.truncate(MAX_RECORDED_FAILURES);
        }
        let record = RunRecord {
            report: report.clone(),
            failures,
            // A first run starts the lookback clock: nothing before its window matters.
            lookback_swept_at: (swept || first_run).then_some(self.started_at),
        };
        if (outcome != SyncOutcome::Disconnected || self.connection_exists().await)
            && let Err(e) = self
                .engine
                .connections
                .record_run(&self.connection.id, &record)
                .await
        {
            tracing::error!(connection = %self.connection.id, error = %e, "could not record the run");
        }
        tracing::info!(
            connection = %self.connection.id,
            outcome = %report.outcome,
            fetched = report.counts.fetched,
            created = report.counts.created,
            updated = report.counts.updated,
            pages = report.counts.pages,
            api_calls = report.counts.api_calls,
            cursor = %report.cursor_after,
            error = report.error.as_deref().unwrap_or(""),
            "sync run finished"
        );
        report
    }

    async fn connection_exists(&self) -> bool {
        matches!(
            self.engine.connections.get_connection(self.id()).await,
            Ok(Some(_))
        )
    }

    /// Whether the backfill is large enough for slices to pay for their extra queries: one
    /// `COUNT()` of the window. A count Salesforce refuses (a timeout on a huge org) says yes.
    async fn worth_slicing(&self) -> bool {
        if self.engine.config.slice_min_cases == 0 {
            return true;
        }
        let mut total = 0u64;
        for owner in self.owner_filters() {
            let soql = soql::count_closed(&owner, self.committed.system_modstamp, self.until);
            match self.api.count(&soql).await {
                Ok(n) => total += n,
                Err(_) => return true,
            }
        }
        total >= self.engine.config.slice_min_cases
    }

    /// The backfill as parallel slices (a new plan, or the stored one resumed).
    async fn read_sliced(&mut self, planned: Option<crate::domain::BackfillPlan>) -> Stop {
        let config = &self.engine.config;
        let readers = config.slices.max(1);
        // Each reader holds one page (no prefetch): together no more rows than
        // ROWS_IN_FLIGHT, and no more than a plain run's page each.
        let batch_size = (super::ROWS_IN_FLIGHT / readers as u32).clamp(
            *super::BATCH_SIZES.start(),
            config.batch_size.max(*super::BATCH_SIZES.start()),
        );
        let until = planned.as_ref().map_or(self.until, |p| p.until);
        let read = super::slices::SlicedRead {
            engine: self.engine,
            id: &self.connection.id,
            org: self.connection.org_id.as_ref(),
            api: self.api.clone(),
            ctx: &self.ctx,
            owners: self.owner_filters(),
            deadline: self.deadline,
            readers,
            batch_size,
            progress: self.progress,
        };
        let failures = std::mem::take(&mut self.failures);
        let r = read
            .run(planned, self.committed.clone(), until, failures)
            .await;
        self.counts += r.counts;
        self.failures = r.failures.clone();
        self.committed = r.committed.clone();
        self.position = self.committed.clone();
        match super::slices::outcome_of(&r) {
            (SyncOutcome::Done, _) => {
                self.sliced_to = Some(until);
                Stop::Done
            }
            (SyncOutcome::MoreWork, _) => Stop::MoreWork,
            (SyncOutcome::Disconnected, e) => Stop::Disconnected(e.unwrap_or_default()),
            (SyncOutcome::Busy, e) => Stop::Busy(e.unwrap_or_default()),
            (SyncOutcome::RateLimited, e) => Stop::RateLimited(e.unwrap_or_default()),
            (SyncOutcome::NeedsReauth, e) => Stop::NeedsReauth(e.unwrap_or_default()),
            (SyncOutcome::Failed, e) => Stop::Failed(e.unwrap_or_default()),
        }
    }

    fn owner_filters(&self) -> Vec<OwnerFilter> {
        soql::owner_filters(&self.connection.scope, query_base_len(&self.connection))
    }

    /// Reads from `position` to `until`, page by page, until done, out of time, or stopped.
    async fn read_forward(&mut self) -> Stop {
        let owners = self.owner_filters();
        let final_until = self.until;
        let mut window = Window {
            after: self.position.clone(),
            floor: None,
            until: final_until,
        };
        if window.until < window.after.system_modstamp {
            return Stop::Done;
        }
        let mut restarts = 0;
        // Consecutive halvings without progress, and the span of the last window that did not
        // time out (the next windows start from it, doubling after each success).
        let mut halvings = 0;
        let mut span: Option<TimeDelta> = None;
        let mut source = self.open(&owners, &window);
        loop {
            if let Some(stop) = self.should_stop().await {
                // Out of time: what was read is written. Disconnected or failing: nothing more.
                if matches!(stop, Stop::MoreWork)
                    && let Some(failed) = self.flush(true).await
                {
                    return failed;
                }
                return stop;
            }
            let prefetch = self.remaining() > self.last_page_time * 3;
            let page_started = Instant::now();
            let pages_before = source.pages();
            let batch = match source.next_batch(prefetch).await {
                Ok(b) => b,
                Err(e) => {
                    self.counts.pages += source.pages() - pages_before;
                    match e.root() {
                        SalesforceError::QueryTimeout { .. } if halvings < MAX_WINDOW_HALVINGS => {
                            halvings += 1;
                            let low = window.floor.map_or(self.position.system_modstamp, |f| {
                                f.max(self.position.system_modstamp)
                            });
                            let half = (window.until - low) / 2;
                            if half < TimeDelta::seconds(1) {
                                return Stop::Failed(e.to_string());
                            }
                            span = Some(half);
                            window = Window {
                                after: self.position.clone(),
                                floor: window.floor,
                                until: Cursor::at(low + half).system_modstamp,
                            };
                            tracing::warn!(connection = %self.id(), until = %window.until, "query timed out; narrowing the window");
                            source = self.open(&owners, &window);
                            continue;
                        }
                        SalesforceError::InvalidQueryLocator { .. }
                            if restarts < MAX_QUERY_RESTARTS =>
                        {
                            restarts += 1;
                            tracing::warn!(connection = %self.id(), "query locator expired; querying again from the last position");
                            window.after = self.position.clone();
                            source = self.open(&owners, &window);
                            continue;
                        }
                        _ => {
                            // What was read before Salesforce refused is good: keep it.
                            if let Some(failed) = self.flush(true).await {
                                return failed;
                            }
                            return self.stop_for(e);
                        }
                    }
                }
            };
            self.counts.pages += source.pages() - pages_before;
            let Some(batch) = batch else {
                // This window is exhausted. A narrowed window hands over to the next one.
                if window.until < final_until {
                    halvings = 0;
                    let low = window.until;
                    let until = match span {
                        Some(s) => {
                            span = Some(s * 2);
                            (low + s * 2).min(final_until)
                        }
                        None => final_until,
                    };
                    window = Window {
                        after: self.position.clone(),
                        floor: Some(low),
                        until,
                    };
                    source = self.open(&owners, &window);
                    continue;
                }
                return self.flush(true).await.unwrap_or(Stop::Done);
            };
            halvings = 0;
            self.last_page_time = page_started.elapsed();
            if let Some(stop) = self.write(batch).await {
                return stop;
            }
            if let Some(stop) = self.over_quota() {
                return self.flush(true).await.unwrap_or(stop);
            }
        }
    }

    fn open(&self, owners: &[OwnerFilter], window: &Window) -> PageSource {
        let queries = owners.iter().map(|o| soql::cases(o, window)).collect();
        PageSource::new(self.api.clone(), queries, self.engine.config.batch_size)
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Before each page: out of time, or no longer active?
    async fn should_stop(&self) -> Option<Stop> {
        if self.remaining().is_zero() {
            return Some(Stop::MoreWork);
        }
        match self.engine.connections.get_connection(self.id()).await {
            Ok(Some(c)) if c.state == ConnectionState::Active => None,
            Ok(Some(c)) => Some(Stop::Disconnected(format!(
                "the connection became {} during the run",
                c.state
            ))),
            Ok(None) => Some(Stop::Disconnected(
                "the connection was deleted during the run".into(),
            )),
            Err(e) => Some(Stop::Failed(format!("could not read the connection: {e}"))),
        }
    }

    fn over_quota(&self) -> Option<Stop> {
        let usage = self.api.api_usage()?;
        (usage.share() > self.engine.config.max_api_usage_share).then(|| {
            Stop::RateLimited(format!(
                "the org has used {usage}, above casesync's limit of {:.0} %; syncing resumes \
                 on a later run",
                self.engine.config.max_api_usage_share * 100.0
            ))
        })
    }

    fn stop_for(&self, e: SalesforceError) -> Stop {
        if e.is_rate_limited() {
            Stop::RateLimited(e.to_string())
        } else if e.needs_reauth() {
            Stop::NeedsReauth(e.to_string())
        } else {
            Stop::Failed(e.to_string())
        }
    }

    /// Maps one batch and writes it (or, for a batching store, its whole batches).
    async fn write(&mut self, batch: Batch) -> Option<Stop> {
        let now = self.engine.clock.now();
        self.counts.fetched += (batch.records.len() + batch.broken.len()) as u64;
        for record in batch.records {
            let pos = position(&record).map(|(ts, id)| Cursor::new(ts, id));
            let case_id = record.id.as_deref().and_then(|id| CaseId::parse(id).ok());
            match (map_case(&self.ctx, record), &pos) {
                (Ok(p), Some(pos)) => {
                    if self.failures.remove(&p.case_id).is_some() {
                        self.failures_dirty = true;
                    }
                    self.pending.push((p, pos.clone()));
                }
                (Ok(p), None) => self.fail(Some(p.case_id), "the Case has no position".into(), now),
                (Err(e), _) => self.fail(case_id, e.to_string(), now),
            }
            if let Some(pos) = pos
                && self.read_to.as_ref().is_none_or(|r| pos > *r)
            {
                self.read_to = Some(pos);
            }
        }
        for (case_id, error) in batch.broken {
            self.fail(case_id, error, now);
        }
        self.flush(false).await
    }

    /// Writes pending points — all of them, or only whole batches for a batching store unless
    /// `all` — then commits the cursor to the furthest position below which nothing is left
    /// unwritten. Recorded failures are saved first, so the cursor never passes a Case that is
    /// neither written nor recorded.
    async fn flush(&mut self, all: bool) -> Option<Stop> {
        let n = match self.engine.points.write_batch_size() {
            Some(k) if k > 0 && !all => self.pending.len() / k * k,
            _ => self.pending.len(),
        };
        let target = if n == self.pending.len() {
            self.read_to.clone()
        } else if n > 0 {
            Some(self.pending[n - 1].1.clone())
        } else {
            None
        };
        if n > 0 {
            let points: Vec<DataPoint> = self.pending.drain(..n).map(|(p, _)| p).collect();
            match self.engine.points.upsert_data_points(&points).await {
                Ok(c) => {
                    self.counts.created += c.created;
                    self.counts.updated += c.updated;
                    self.counts.unchanged += c.unchanged + c.stale;
                }
                Err(e) => return Some(Stop::Failed(format!("could not store data points: {e}"))),
            }
        }
        if let Some(next) = target.filter(|t| *t > self.committed) {
            if self.failures_dirty {
                let failures: Vec<CaseFailure> = self.failures.values().cloned().collect();
                if let Err(e) = self
                    .engine
                    .connections
                    .save_failures(self.id(), &failures)
                    .await
                {
                    return Some(Stop::Failed(format!("could not record failed Cases: {e}")));
                }
                self.failures_dirty = false;
            }
            match self
                .engine
                .connections
                .commit_cursor(self.id(), &self.committed, &next)
                .await
            {
                Ok(()) => self.committed = next,
                Err(StoreError::Conflict(e)) => {
                    return Some(Stop::Busy(format!(
                        "the cursor was moved by another run or a reconfiguration ({e}); this run stopped"
                    )));
                }
                Err(e) => return Some(Stop::Failed(format!("could not save the cursor: {e}"))),
            }
        }
        if let Some(read) = &self.read_to
            && *read > self.position
        {
            self.position = read.clone();
        }
        if let Some(observer) = self.progress {
            observer.on_page(&super::Progress {
                connection_id: self.connection.id.clone(),
                counts: SyncCounts {
                    api_calls: self.api.api_calls(),
                    ..self.counts
                },
                position: self.position.clone(),
                until: self.until,
                progress_point: self.sliced_to.map_or(self.position.system_modstamp, |t| {
                    t.max(self.position.system_modstamp)
                }),
            });
        }
        None
    }

    fn fail(&mut self, case_id: Option<CaseId>, error: String, now: DateTime<Utc>) {
        self.counts.failed += 1;
        self.failures_dirty = true;
        tracing::warn!(connection = %self.connection.id, case = ?case_id, %error, "a Case could not be imported");
        if let Some(id) = case_id {
            record_failure(&mut self.failures, id, error, now);
        }
    }

    /// Fetches the recorded failures again. Those that map now are written; those Salesforce no
    /// longer returns (reopened, moved out of scope) are dropped: if they come back they will
    /// carry a newer SystemModstamp and be read in order.
    async fn retry_failures(&mut self) -> Option<Stop> {
        let ids: Vec<CaseId> = self
            .failures
            .keys()
            .take(FAILURE_RETRY_BATCH)
            .cloned()
            .collect();
        let queries = self
            .owner_filters()
            .iter()
            .map(|o| soql::cases_by_id(o, &ids, self.until))
            .collect();
        let mut source = PageSource::new(self.api.clone(), queries, self.engine.config.batch_size);
        let mut seen = std::collections::HashSet::new();
        loop {
            let pages_before = source.pages();
            let batch = match source.next_batch(false).await {
                Ok(b) => b,
                Err(e) => return Some(self.stop_for(e)),
            };
            self.counts.pages += source.pages() - pages_before;
            let Some(batch) = batch else { break };
            let now = self.engine.clock.now();
            let mut points = Vec::new();
            self.counts.fetched += batch.records.len() as u64;
            for record in batch.records {
                let case_id = record.id.as_deref().and_then(|id| CaseId::parse(id).ok());
                if let Some(id) = &case_id {
                    seen.insert(id.clone());
                }
                match map_case(&self.ctx, record) {
                    Ok(p) => {
                        self.failures.remove(&p.case_id);
                        points.push(p);
                    }
                    Err(e) => self.fail(case_id, e.to_string(), now),
                }
            }
            for (case_id, error) in batch.broken {
                if let Some(id) = &case_id {
                    seen.insert(id.clone());
                }
                self.fail(case_id, error, now);
            }
            if !points.is_empty() {
                match self.engine.points.upsert_data_points(&points).await {
                    Ok(c) => {
                        self.counts.created += c.created;
                        self.counts.updated += c.updated;
                        self.counts.unchanged += c.unchanged + c.stale;
                    }
                    Err(e) => {
                        return Some(Stop::Failed(format!("could not store data points: {e}")));
                    }
                }
            }
        }
        for id in ids {
            if !seen.contains(&id) {
                self.failures.remove(&id);
            }
        }
        None
    }
}

/// Compile-time check: a run's future can move between threads (Lambda and the CLI spawn it).
#[allow(dead_code)]
fn assert_send(e: &SyncEngine, id: &ConnectionId) {
    fn is_send<T: Send>(_: T) {}
    is_send(e.sync(id, Duration::ZERO, None));
}
