//! A backfill read as parallel time slices (see [`BackfillPlan`]).
//!
//! `P` readers share one plan. Each claims an unread slice and reads it in keyset order within
//! `(lower, upper]`, with the query, scope filters and email subquery of a plain run; after each
//! page it writes the page's data points, then (holding the plan) records its position and
//! commits the plan together with the cursor it implies: the end of the contiguous prefix of
//! completed work ([`BackfillPlan::prefix`]). So every guarantee of a plain run holds per slice:
//! a crash after any store write re-reads at most one page of each slice, the cursor never
//! passes a Case that is neither written nor recorded as failed, and a worker that lost the
//! lease cannot commit over a newer plan (the store compares the plan's version).
//!
//! A reader with nothing left to claim takes the upper half of the largest slice still being
//! read ([`BackfillPlan::split`]): that balances the readers whatever the distribution of Cases
//! over time, with no `COUNT()` queries. The reader that loses the half sees its new upper
//! bound at its next page, drops what it already read beyond it (the new slice reads it) and
//! finishes there. `QUERY_TIMEOUT` halves the slice the same way; an expired or invalidated
//! query locator is replaced by a fresh query from the slice's position.
//!
//! Each reader holds at most one open query locator (no prefetch: the readers overlap
//! Salesforce's latency), so `P` readers hold at most `P` of the 10 a user may have open.
//!
//! `P` is a bound per org. A plan records the readers it holds ([`BackfillPlan::readers`]);
//! a run first stores its claim of `P`, then counts the claims of the org's other unfinished
//! backfills and keeps what is left (at least one reader), storing the smaller claim. As
//! each run stores its claim before it counts, of two backfills starting at once each sees
//! the other: both may take less than they could, never more.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::engine::SyncEngine;
use super::source::PageSource;
use super::{SyncCounts, SyncOutcome};
use crate::data_point::DataPoint;
use crate::domain::{
    BackfillPlan, CaseFailure, CaseId, ConnectionId, ConnectionState, Cursor, OrgId,
};
use crate::mapping::{MappingContext, map_case, position};
use crate::salesforce::soql::{self, OwnerFilter, Window};
use crate::salesforce::{OrgApi, SalesforceError};

/// How often in a row (without a page read in between) one slice's expired or invalidated query
/// locator may be replaced by a fresh query in one run.
const MAX_QUERY_RESTARTS: u32 = 3;
/// At most this many slices per reader, splits included: each costs a query.
const MAX_SLICES_PER_READER: usize = 4;

/// Why the readers stopped, before the run turns it into an outcome.
#[derive(Debug, Clone)]
pub(super) enum SliceStop {
    Disconnected(String),
    Busy(String),
    RateLimited(String),
    NeedsReauth(String),
    Failed(String),
}

/// What the readers share.
struct Shared {
    plan: BackfillPlan,
    /// The cursor as stored (what the next commit expects).
    committed: Cursor,
    /// The version stored (0: none yet).
    stored_version: u64,
    /// The slices being read, by their lower bound (a slice's identity: splits change upper
    /// bounds only).
    claimed: Vec<Option<DateTime<Utc>>>,
    failures: BTreeMap<CaseId, CaseFailure>,
    failures_dirty: bool,
    counts: SyncCounts,
    stop: Option<SliceStop>,
}

impl Shared {
    fn index_of(&self, lower: Option<DateTime<Utc>>) -> Option<usize> {
        self.plan.slices.iter().position(|s| s.lower == lower)
    }

    fn stop(&mut self, why: SliceStop) {
        self.stop.get_or_insert(why);
    }
}

/// What a sliced read ended with.
pub(super) struct SlicedResult {
    pub committed: Cursor,
    pub failures: BTreeMap<CaseId, CaseFailure>,
    pub counts: SyncCounts,
    /// `None`: the plan is done or time ran out (see `finished`).
    pub stop: Option<SliceStop>,
    pub finished: bool,
}

/// One sliced read of a connection's backfill, within a run.
pub(super) struct SlicedRead<'a> {
    pub engine: &'a SyncEngine,
    pub id: &'a ConnectionId,
    /// The connection's org (`None`: not known yet, so nothing to share with).
    pub org: Option<&'a OrgId>,
    pub api: Arc<OrgApi>,
    pub ctx: &'a MappingContext,
    pub owners: Vec<OwnerFilter>,
    pub deadline: Instant,
    /// The org's bound on readers; this run starts what the org's other backfills leave.
    pub readers: usize,
    /// Rows per page of each reader.
    pub batch_size: u32,
    /// Told after each commit: the cursor (the completed prefix) and the plan's end.
    pub progress: Option<&'a dyn super::ProgressObserver>,
}

impl SlicedRead<'_> {
    /// Reads the plan (`None`: plan it now, from `committed` to `until`) until it is done, time
    /// runs out, or something stops it.
    pub async fn run(
        &self,
        plan: Option<BackfillPlan>,
        committed: Cursor,
        until: DateTime<Utc>,
        failures: BTreeMap<CaseId, CaseFailure>,
    ) -> SlicedResult {
        let (plan, stored_version) = match plan {
            Some(p) => {
                let v = p.version;
                (p, v)
            }
            None => (BackfillPlan::new(&committed, until, self.readers), 0),
        };
        let shared = Mutex::new(Shared {
            plan,
            committed,
            stored_version,
            claimed: Vec::new(),
            failures,
            failures_dirty: false,
            counts: SyncCounts::default(),
            stop: None,
        });
        let readers = {
            // The plan and its claim of the org's readers are stored before anything is read;
            // then the claim shrinks to what the org's other backfills leave.
            let mut st = shared.lock().await;
            st.plan.readers = self.readers.max(1);
            self.commit(&mut st).await;
            let share = self.org_share().await;
            if share < st.plan.readers && st.stop.is_none() {
                tracing::info!(connection = %self.id, readers = share, "other backfills of the org hold some of its readers");
                st.plan.readers = share;
                self.commit(&mut st).await;
            }
            st.plan.readers
        };
        let readers = (0..readers).map(|_| self.reader(&shared));
        futures::future::join_all(readers).await;
        let st = shared.into_inner();
        SlicedResult {
            finished: st.plan.is_done() && st.stop.is_none(),
            committed: st.committed,
            failures: st.failures,
            counts: st.counts,
            stop: st.stop,
        }
    }

    /// The readers this run may use: the org's bound less what the org's other unfinished
    /// backfills (of active connections) hold, at least one. If the connections cannot be
    /// listed, one.
    async fn org_share(&self) -> usize {
        let Some(org) = self.org else {
            return self.readers.max(1);
        };
        let others: usize = match self.engine.connections.list_connections().await {
            Ok(all) => all
                .iter()
                .filter(|c| {
                    c.id != *self.id
                        && c.org_id.as_ref() == Some(org)
                        && c.state == ConnectionState::Active
                })
                .filter_map(|c| c.backfill_plan.as_ref())
                .map(|p| p.readers.max(1))
                .sum(),
            Err(e) => {
                tracing::warn!(connection = %self.id, error = %e, "could not list the org's other connections; reading with one reader");
                return 1;
            }
        };
        self.readers.saturating_sub(others).max(1)
    }

    /// Saves the failures if they changed, then commits the plan (bumping its version) with the
    /// cursor it implies; a finished plan is removed. Any failure stops every reader.
    async fn commit(&self, st: &mut Shared) {
        if st.failures_dirty {
            let failures: Vec<CaseFailure> = st.failures.values().cloned().collect();
            if let Err(e) = self
                .engine
                .connections
                .save_failures(self.id, &failures)
                .await
            {
                st.stop(SliceStop::Failed(format!(
                    "could not record failed Cases: {e}"
                )));
                return;
            }
            st.failures_dirty = false;
        }
        st.plan.version = st.stored_version + 1;
        let next = match st.plan.reached() {
            Some(r) if r > st.committed => r,
            _ => st.committed.clone(),
        };
        let stored = (!st.plan.is_done()).then_some(&st.plan);
        match self
            .engine
            .connections
            .commit_plan(self.id, &st.committed, &next, st.stored_version, stored)
            .await
        {
            Ok(()) => {
                st.committed = next;
                st.stored_version = if stored.is_some() { st.plan.version } else { 0 };
                if let Some(observer) = self.progress {
                    observer.on_page(&super::Progress {
                        connection_id: self.id.clone(),
                        counts: SyncCounts {
                            api_calls: self.api.api_calls(),
                            ..st.counts
                        },
                        position: st.committed.clone(),
                        until: st.plan.until,
                        progress_point: st.plan.progress_point(),
                    });
                }
            }
            Err(crate::ports::StoreError::Conflict(e)) => st.stop(SliceStop::Busy(format!(
                "the backfill was moved on by another run or a reconfiguration ({e}); this run \
                 stopped"
            ))),
            Err(e) => st.stop(SliceStop::Failed(format!(
                "could not save the backfill's progress: {e}"
            ))),
        }
    }

    /// Claims an unread slice, or splits the largest one being read; `None` when there is
    /// nothing left to take (or the readers are stopping).
    async fn claim(&self, shared: &Mutex<Shared>) -> Option<Option<DateTime<Utc>>> {
        let mut st = shared.lock().await;
        if st.stop.is_some() {
            return None;
        }
        let free = st
            .plan
            .slices
            .iter()
            .find(|s| !s.done && !st.claimed.contains(&s.lower))
            .map(|s| s.lower);
        if let Some(lower) = free {
            st.claimed.push(lower);
            return Some(lower);
        }
        if st.plan.slices.len() >= st.plan.readers.max(1) * MAX_SLICES_PER_READER {
            return None;
        }
        let largest = st
            .plan
            .slices
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.done)
            .max_by_key(|(_, s)| s.remaining())
            .map(|(i, _)| i)?;
        let new = st.plan.split(largest)?;
        let lower = st.plan.slices[new].lower;
        self.commit(&mut st).await;
        if st.stop.is_some() {
            return None;
        }
        st.claimed.push(lower);
        Some(lower)
    }

    async fn reader(&self, shared: &Mutex<Shared>) {
        while let Some(lower) = self.claim(shared).await {
            self.read_slice(shared, lower).await;
            let mut st = shared.lock().await;
            st.claimed.retain(|c| *c != lower);
            if st.stop.is_some() || Instant::now() >= self.deadline {
                return;
            }
        }
    }

    /// The query of what is left of the slice at `lower`: `None` once it is done.
    async fn open(
        &self,
        shared: &Mutex<Shared>,
        lower: Option<DateTime<Utc>>,
    ) -> Option<PageSource> {
        let st = shared.lock().await;
        let s = &st.plan.slices[st.index_of(lower)?];
        if s.done {
            return None;
        }
        let window = Window {
            after: s.position.clone(),
            floor: s.lower,
            until: s.upper,
        };
        let queries = self
            .owners
            .iter()
            .map(|o| soql::cases(o, &window))
            .collect();
        Some(PageSource::new(self.api.clone(), queries, self.batch_size))
    }

    async fn should_stop(&self) -> Option<SliceStop> {
        match self.engine.connections.get_connection(self.id).await {
            Ok(Some(c)) if c.state == ConnectionState::Active => None,
            Ok(Some(c)) => Some(SliceStop::Disconnected(format!(
                "the connection became {} during the run",
                c.state
            ))),
            Ok(None) => Some(SliceStop::Disconnected(
                "the connection was deleted during the run".into(),
            )),
            Err(e) => Some(SliceStop::Failed(format!(
                "could not read the connection: {e}"
            ))),
        }
    }

    fn stop_for(&self, e: &SalesforceError) -> SliceStop {
        if e.is_rate_limited() {
            SliceStop::RateLimited(e.to_string())
        } else if e.needs_reauth() {
            SliceStop::NeedsReauth(e.to_string())
        } else {
            SliceStop::Failed(e.to_string())
        }
    }

    async fn read_slice(&self, shared: &Mutex<Shared>, lower: Option<DateTime<Utc>>) {
        let Some(mut source) = self.open(shared, lower).await else {
            return;
        };
        let mut restarts = 0;
        loop {
            if Instant::now() >= self.deadline {
                return;
            }
            if shared.lock().await.stop.is_some() {
                return;
            }
            if let Some(stop) = self.should_stop().await {
                shared.lock().await.stop(stop);
                return;
            }
            let pages_before = source.pages();
            let batch = source.next_batch(false).await;
            let pages = source.pages() - pages_before;
            shared.lock().await.counts.pages += pages;
            let batch = match batch {
                Ok(b) => b,
                Err(e) => match e.root() {
                    SalesforceError::QueryTimeout { .. } => {
                        // Halve what is left of this slice; another reader takes the rest.
                        let split = {
                            let mut st = shared.lock().await;
                            let i = st.index_of(lower);
                            let split = i.and_then(|i| st.plan.split(i));
                            if split.is_some() {
                                self.commit(&mut st).await;
                            }
                            split
                        };
                        if split.is_none() {
                            shared.lock().await.stop(SliceStop::Failed(e.to_string()));
                            return;
                        }
                        tracing::warn!(connection = %self.id, "query timed out; the slice was halved");
                        match self.open(shared, lower).await {
                            Some(s) => source = s,
                            None => return,
                        }
                        continue;
                    }
                    SalesforceError::InvalidQueryLocator { .. }
                        if restarts < MAX_QUERY_RESTARTS =>
                    {
                        restarts += 1;
                        tracing::warn!(connection = %self.id, "query locator expired; querying the slice again from its position");
                        match self.open(shared, lower).await {
                            Some(s) => source = s,
                            None => return,
                        }
                        continue;
                    }
                    _ => {
                        let stop = self.stop_for(&e);
                        shared.lock().await.stop(stop);
                        return;
                    }
                },
            };
            // A page read: the locator limit counts restarts without progress.
            restarts = 0;
            let Some(batch) = batch else {
                // The slice is read to its end.
                let mut st = shared.lock().await;
                if let Some(i) = st.index_of(lower) {
                    st.plan.slices[i].done = true;
                    self.commit(&mut st).await;
                }
                return;
            };
            let upper = {
                let st = shared.lock().await;
                match st.index_of(lower) {
                    Some(i) => st.plan.slices[i].upper,
                    None => return,
                }
            };
            // Map the page; what lies beyond the slice's (possibly lowered) upper bound belongs
            // to the slice that took it over.
            let now = self.engine.clock.now();
            let mut points: Vec<DataPoint> = Vec::new();
            let mut failed: Vec<(Option<CaseId>, String)> = batch.broken;
            let mut read_to: Option<Cursor> = None;
            let mut beyond = false;
            let fetched = failed.len() as u64 + batch.records.len() as u64;
            for record in batch.records {
                let pos = position(&record).map(|(ts, id)| Cursor::new(ts, id));
                if pos.as_ref().is_some_and(|p| p.system_modstamp > upper) {
                    beyond = true;
                    continue;
                }
                let case_id = record.id.as_deref().and_then(|id| CaseId::parse(id).ok());
                match (map_case(self.ctx, record), &pos) {
                    (Ok(p), Some(_)) => points.push(p),
                    (Ok(p), None) => {
                        failed.push((Some(p.case_id), "the Case has no position".into()))
                    }
                    (Err(e), _) => failed.push((case_id, e.to_string())),
                }
                if let Some(pos) = pos
                    && read_to.as_ref().is_none_or(|r| pos > *r)
                {
                    read_to = Some(pos);
                }
            }
            let written = if points.is_empty() {
                Ok(Default::default())
            } else {
                self.engine.points.upsert_data_points(&points).await
            };
            let mut st = shared.lock().await;
            st.counts.fetched += fetched;
            match written {
                Ok(c) => {
                    st.counts.created += c.created;
                    st.counts.updated += c.updated;
                    st.counts.unchanged += c.unchanged + c.stale;
                }
                Err(e) => {
                    st.stop(SliceStop::Failed(format!(
                        "could not store data points: {e}"
                    )));
                    return;
                }
            }
            for p in &points {
                if st.failures.remove(&p.case_id).is_some() {
                    st.failures_dirty = true;
                }
            }
            for (case_id, error) in failed {
                st.counts.failed += 1;
                tracing::warn!(connection = %self.id, case = ?case_id, %error, "a Case could not be imported");
                if let Some(id) = case_id {
                    st.failures_dirty = true;
                    super::engine::record_failure(&mut st.failures, id, error, now);
                }
            }
            let Some(i) = st.index_of(lower) else { return };
            if let Some(pos) = read_to
                && pos > st.plan.slices[i].position
            {
                st.plan.slices[i].position = pos;
            }
            if beyond {
                st.plan.slices[i].done = true;
            }
            self.commit(&mut st).await;
            if let Some(usage) = self.api.api_usage()
                && usage.share() > self.engine.config.max_api_usage_share
            {
                st.stop(SliceStop::RateLimited(format!(
                    "the org has used {usage}, above casesync's limit of {:.0} %; syncing \
                     resumes on a later run",
                    self.engine.config.max_api_usage_share * 100.0
                )));
            }
            if beyond || st.stop.is_some() {
                return;
            }
        }
    }
}

/// The outcome of a sliced read as a plain run reports it.
pub(super) fn outcome_of(r: &SlicedResult) -> (SyncOutcome, Option<String>) {
    match &r.stop {
        Some(SliceStop::Disconnected(e)) => (SyncOutcome::Disconnected, Some(e.clone())),
        Some(SliceStop::Busy(e)) => (SyncOutcome::Busy, Some(e.clone())),
        Some(SliceStop::RateLimited(e)) => (SyncOutcome::RateLimited, Some(e.clone())),
        Some(SliceStop::NeedsReauth(e)) => (SyncOutcome::NeedsReauth, Some(e.clone())),
        Some(SliceStop::Failed(e)) => (SyncOutcome::Failed, Some(e.clone())),
        None if r.finished => (SyncOutcome::Done, None),
        None => (SyncOutcome::MoreWork, None),
    }
}
