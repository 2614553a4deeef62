//! Response bodies. These field names are the API's contract (the docs and the app quote
//! them), so they are spelled out here rather than borrowed from the core's types. No view
//! holds a secret: connections carry none, and tokens never leave Secrets Manager.

use casesync_core::diagnostics::{Check, Diagnosis};
use casesync_core::domain::{CaseFailure, Connection, Cursor, QueueScope};
use casesync_core::salesforce::records::QueueRecord;
use casesync_core::sync::{SyncCounts, SyncReport};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `"all"` or the queue ids (18 characters).
#[derive(Serialize)]
#[serde(untagged)]
pub enum QueuesView {
    All(&'static str),
    Ids(Vec<String>),
}

impl From<&QueueScope> for QueuesView {
    fn from(s: &QueueScope) -> Self {
        match s {
            QueueScope::All => Self::All("all"),
            QueueScope::Specific(ids) => Self::Ids(ids.iter().map(|q| q.to_string()).collect()),
        }
    }
}

#[derive(Serialize)]
pub struct CursorView {
    pub system_modstamp: DateTime<Utc>,
    pub case_id: Option<String>,
}

impl From<&Cursor> for CursorView {
    fn from(c: &Cursor) -> Self {
        Self {
            system_modstamp: c.system_modstamp,
            case_id: c.case_id.as_ref().map(|id| id.to_string()),
        }
    }
}

#[derive(Serialize)]
pub struct RunView {
    pub outcome: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub counts: CountsView,
    pub error: Option<String>,
    pub cursor_before: CursorView,
    pub cursor_after: CursorView,
}

#[derive(Serialize)]
pub struct CountsView {
    pub fetched: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub pages: u64,
    pub api_calls: u64,
}

impl From<&SyncCounts> for CountsView {
    fn from(c: &SyncCounts) -> Self {
        Self {
            fetched: c.fetched,
            created: c.created,
            updated: c.updated,
            unchanged: c.unchanged,
            failed: c.failed,
            pages: c.pages,
            api_calls: c.api_calls,
        }
    }
}

impl From<&SyncReport> for RunView {
    fn from(r: &SyncReport) -> Self {
        Self {
            outcome: r.outcome.as_str(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            counts: (&r.counts).into(),
            error: r.error.clone(),
            cursor_before: (&r.cursor_before).into(),
            cursor_after: (&r.cursor_after).into(),
        }
    }
}

#[derive(Serialize)]
pub struct FailureView {
    pub case_id: String,
    pub error: String,
    pub first_seen: DateTime<Utc>,
    pub attempts: u32,
}

impl From<&CaseFailure> for FailureView {
    fn from(f: &CaseFailure) -> Self {
        Self {
            case_id: f.case_id.to_string(),
            error: f.error.clone(),
            first_seen: f.first_seen,
            attempts: f.attempts,
        }
    }
}

/// A connection as listed.
#[derive(Serialize)]
pub struct ConnectionView {
    pub id: String,
    pub channel: String,
    /// `active`, `disconnected` or `needs_reauth`.
    pub state: &'static str,
    pub state_reason: Option<String>,
    pub login_url: String,
    pub instance_url: String,
    pub api_version: String,
    pub queues: QueuesView,
    pub backfill: &'static str,
    pub created_at: DateTime<Utc>,
    /// Where the next sync starts.
    pub cursor: CursorView,
    /// How far the import has read, in time: the cursor's stamp, or while a sliced backfill
    /// is under way the point one stream would have reached with as much left to read (the
    /// cursor only moves once the first slice is done). The backfill is
    /// `(progress_point - window start) / (now - window start)` done.
    pub progress_point: DateTime<Utc>,
    /// Slices of a sliced backfill still being read; 0 when none is under way.
    pub backfill_slices_left: usize,
    pub last_run: Option<RunView>,
    /// How many Cases are recorded as failing to map (listed by `GET /connections/{id}`).
    pub failing_cases: usize,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.to_string(),
            channel: c.channel.to_string(),
            state: c.state.as_str(),
            state_reason: c.state_reason.clone(),
            login_url: c.login_url.to_string(),
            instance_url: c.instance_url.to_string(),
            api_version: c.api_version.to_string(),
            queues: (&c.scope).into(),
            backfill: c.backfill.as_str(),
            created_at: c.created_at,
            cursor: (&c.cursor).into(),
            progress_point: c.progress_point(),
            backfill_slices_left: c.backfill_slices_left(),
            last_run: c.last_run.as_ref().map(Into::into),
            failing_cases: c.failures.len(),
        }
    }
}

/// One connection in full: `GET /connections/{id}`.
#[derive(Serialize)]
pub struct ConnectionDetail {
    #[serde(flatten)]
    pub connection: ConnectionView,
    pub last_lookback_at: Option<DateTime<Utc>>,
    /// Data points stored for this connection.
    pub data_points: u64,
    /// Cases that could not be mapped; retried on every later run.
    pub failures: Vec<FailureView>,
}

impl ConnectionDetail {
    pub fn new(c: &Connection, data_points: u64) -> Self {
        Self {
            connection: c.into(),
            last_lookback_at: c.last_lookback_at,
            data_points,
            failures: c.failures.iter().map(Into::into).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

/// `201` for `POST /connections` and `POST /connections/{id}/reauthorize`.
#[derive(Serialize)]
pub struct AuthorizationStarted {
    /// Send the user's browser here; Salesforce returns it to `/oauth/callback`.
    pub authorize_url: String,
    /// The link works once, until then (10 minutes).
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize)]
pub struct SettingsUpdated {
    pub changed: bool,
    /// Set when the settings changed: the next sync starts here (the new window's start).
    pub cursor_restarted_at: Option<DateTime<Utc>>,
    pub message: String,
    pub connection: ConnectionView,
}

#[derive(Serialize)]
pub struct Disconnected {
    pub message: &'static str,
    pub connection: ConnectionView,
}

#[derive(Serialize)]
pub struct QueueView {
    pub id: String,
    pub name: String,
    pub developer_name: Option<String>,
}

impl From<&QueueRecord> for QueueView {
    fn from(q: &QueueRecord) -> Self {
        Self {
            id: q.id.clone(),
            name: q.name.clone(),
            developer_name: q.developer_name.clone(),
        }
    }
}

#[derive(Serialize)]
pub struct QueueList {
    /// What the connection imports now: `"all"` or ids.
    pub selected: QueuesView,
    /// Every queue the authorizing user can see.
    pub queues: Vec<QueueView>,
}

#[derive(Serialize)]
pub struct DiagnosisView<'a> {
    /// Every check passed (warnings allowed).
    pub healthy: bool,
    pub checks: &'a [Check],
    pub api_calls: u64,
}

impl<'a> From<&'a Diagnosis> for DiagnosisView<'a> {
    fn from(d: &'a Diagnosis) -> Self {
        Self {
            healthy: d.healthy(),
            checks: &d.checks,
            api_calls: d.api_calls,
        }
    }
}

/// What happened to a refresh token that was revoked.
#[derive(Serialize)]
pub struct TokenRevocation {
    /// `revoked` (Salesforce confirmed, or no longer knew the token), `not_stored` (there was no
    /// token to revoke) or `failed` (Salesforce could not be reached or refused: the token was
    /// deleted here, but may stay valid at Salesforce until an admin revokes it).
    pub status: &'static str,
    pub message: String,
}

#[derive(Serialize)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
    pub data_points_deleted: u64,
    pub token: TokenRevocation,
}

impl From<&casesync_core::manage::Revocation> for TokenRevocation {
    fn from(r: &casesync_core::manage::Revocation) -> Self {
        Self {
            status: r.status(),
            message: r.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use casesync_core::domain::{
        ApiVersion, BackfillPlan, BackfillWindow, ChannelName, ConnectionId, InstanceUrl, LoginUrl,
        QueueScope,
    };

    #[test]
    fn a_sliced_backfill_shows_how_far_its_slices_have_read() {
        let now: DateTime<Utc> = "2026-12-06T12:00:00Z".parse().unwrap();
        let mut c = Connection::new(
            ConnectionId::new_random(),
            ChannelName::parse("support").unwrap(),
            LoginUrl::parse("https://login.salesforce.com").unwrap(),
            InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
            ApiVersion::DEFAULT,
            QueueScope::All,
            BackfillWindow::Days7,
            now,
        );
        let start = c.cursor.system_modstamp;
        let view = ConnectionView::from(&c);
        assert_eq!(view.progress_point, start);
        assert_eq!(view.backfill_slices_left, 0);

        let mut plan = BackfillPlan::new(&c.cursor, now, 4);
        plan.slices[1].done = true;
        plan.slices[3].done = true;
        c.backfill_plan = Some(plan);
        let view = ConnectionView::from(&c);
        assert_eq!(view.cursor.system_modstamp, start);
        assert_eq!(view.progress_point, start + (now - start) / 2);
        assert_eq!(view.backfill_slices_left, 2);
    }
}
