//! A connection: one Salesforce org feeding one channel, and where its sync has got to.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cursor::Cursor;
use super::ids::{CaseId, OrgId};
use super::settings::{ApiVersion, BackfillWindow, QueueScope};
use super::sync_report::SyncReport;
use super::urls::{InstanceUrl, LoginUrl};

/// An opaque connection id, e.g. `conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnectionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection id {0:?}: expected conn_ followed by 32 hex digits")]
pub struct ConnectionIdError(pub String);

impl ConnectionId {
    pub fn new_random() -> Self {
        Self(format!("conn_{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn parse(raw: &str) -> Result<Self, ConnectionIdError> {
        let raw = raw.trim();
        match raw.strip_prefix("conn_") {
            Some(hex)
                if hex.len() == 32
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Self(raw.to_owned()))
            }
            _ => Err(ConnectionIdError(raw.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

impl std::str::FromStr for ConnectionId {
    type Err = ConnectionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ConnectionId {
    type Error = ConnectionIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ConnectionId> for String {
    fn from(id: ConnectionId) -> String {
        id.0
    }
}

/// The name of the channel whose data points a connection feeds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel name {0:?}: 1 to 100 printable characters")]
pub struct ChannelNameError(pub String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, ChannelNameError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
            return Err(ChannelNameError(raw.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ChannelName {
    type Error = ChannelNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ChannelName> for String {
    fn from(c: ChannelName) -> String {
        c.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Synced on every scheduler tick.
    Active,
    /// Stopped by the user; data already imported stays.
    Disconnected,
    /// Salesforce refused the refresh token (`invalid_grant`): the user must authorize again.
    NeedsReauth,
    /// Authorized in the console, waiting for the user to choose its channel, queues and
    /// backfill; not synced until then.
    Pending,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disconnected => "disconnected",
            Self::NeedsReauth => "needs_reauth",
            Self::Pending => "pending",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "disconnected" => Some(Self::Disconnected),
            "needs_reauth" => Some(Self::NeedsReauth),
            "pending" => Some(Self::Pending),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Case that could not be turned into a data point. It stays recorded on its connection and is
/// fetched again on a later run until it maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFailure {
    pub case_id: CaseId,
    pub error: String,
    pub first_seen: DateTime<Utc>,
    pub attempts: u32,
}

/// At most this many failures are kept per connection; older ones are dropped first.
pub const MAX_RECORDED_FAILURES: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub channel: ChannelName,
    /// The Connected App (consumer key) that issued the refresh token; `None` means the
    /// deployment's one app. A refresh token only works with the app that issued it.
    #[serde(default)]
    pub client_id: Option<String>,
    pub login_url: LoginUrl,
    pub instance_url: InstanceUrl,
    pub api_version: ApiVersion,
    pub scope: QueueScope,
    pub backfill: BackfillWindow,
    pub state: ConnectionState,
    pub cursor: Cursor,
    pub created_at: DateTime<Utc>,
    /// Why the connection is not active, in words a user can act on.
    #[serde(default)]
    pub state_reason: Option<String>,
    /// When the lookback overlap was last swept (see `SyncConfig::lookback`).
    #[serde(default)]
    pub last_lookback_at: Option<DateTime<Utc>>,
    /// The last completed sync run.
    #[serde(default)]
    pub last_run: Option<SyncReport>,
    /// Cases that could not be mapped, retried on later runs.
    #[serde(default)]
    pub failures: Vec<CaseFailure>,
    /// Every data point of this connection is in its channel's change order. False only for a
    /// connection whose points were stored before that order existed (a store upgraded in
    /// place); the scheduler then queues [`crate::ports::WorkKind::IndexPoints`] work for it.
    #[serde(default)]
    pub points_indexed: bool,
    /// The Salesforce org the refresh token belongs to (from the token's identity URL):
    /// what routes the org's change events to this connection. Recorded at connect; filled in
    /// by the next sync for connections made before it was recorded.
    #[serde(default)]
    pub org_id: Option<OrgId>,
    /// A backfill being read as parallel slices (see [`super::BackfillPlan`]); `None` once it
    /// is done, and for connections read as one stream.
    #[serde(default)]
    pub backfill_plan: Option<super::BackfillPlan>,
}

impl Connection {
    /// A new, active connection whose cursor starts at the beginning of its backfill window.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ConnectionId,
        channel: ChannelName,
        login_url: LoginUrl,
        instance_url: InstanceUrl,
        api_version: ApiVersion,
        scope: QueueScope,
        backfill: BackfillWindow,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            channel,
            client_id: None,
            login_url,
            instance_url,
            api_version,
            scope,
            backfill,
            state: ConnectionState::Active,
            cursor: Cursor::backfill_start(backfill, now),
            created_at: now,
            state_reason: None,
            last_lookback_at: None,
            last_run: None,
            failures: Vec::new(),
            points_indexed: true,
            org_id: None,
            backfill_plan: None,
        }
    }
}

impl Connection {
    /// What last went wrong, in words a user can act on: why it needs re-authorization, or the
    /// error of its last run. A disconnected connection's reason is the user's choice, not an
    /// error.
    pub fn last_error(&self) -> Option<&str> {
        match self.state {
            ConnectionState::NeedsReauth => self.state_reason.as_deref(),
            _ => None,
        }
        .or_else(|| self.last_run.as_ref().and_then(|r| r.error.as_deref()))
    }

    /// How far the import has read, in time: the cursor, or while a sliced backfill is under
    /// way the point one stream would have reached ([`super::BackfillPlan::progress_point`]).
    pub fn progress_point(&self) -> DateTime<Utc> {
        match &self.backfill_plan {
            Some(plan) => plan.progress_point().max(self.cursor.system_modstamp),
            None => self.cursor.system_modstamp,
        }
    }

    /// Slices of a sliced backfill still being read; 0 when none is under way.
    pub fn backfill_slices_left(&self) -> usize {
        self.backfill_plan
            .as_ref()
            .map_or(0, |p| p.slices.iter().filter(|s| !s.done).count())
    }

    /// Records which Connected App issued this connection's refresh token.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_parse() {
        let id = ConnectionId::new_random();
        assert_eq!(ConnectionId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "conn_",
            "conn_XYZ",
            "x_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f",
            "conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6F",
        ] {
            assert!(ConnectionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sliced_backfill_progresses_with_every_slice_not_only_the_first() {
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
        assert_eq!(c.progress_point(), start);
        let mut plan = super::super::BackfillPlan::new(&c.cursor, now, 4);
        plan.slices[2].done = true;
        plan.slices[3].done = true;
        c.backfill_plan = Some(plan);
        // The cursor has not moved (the first slice is unfinished); half the window is read.
        assert_eq!(c.cursor.system_modstamp, start);
        assert_eq!(c.progress_point(), start + (now - start) / 2);
        assert_eq!(c.backfill_slices_left(), 2);
    }

    #[test]
    fn channel_names_are_bounded_and_printable() {
        assert_eq!(ChannelName::parse(" Support ").unwrap().as_str(), "Support");
        assert!(ChannelName::parse("").is_err());
        assert!(ChannelName::parse("a\nb").is_err());
        assert!(ChannelName::parse(&"x".repeat(101)).is_err());
    }
}
