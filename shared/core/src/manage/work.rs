//! The scheduling rules: which connections a tick covers, which work items are already done,
//! and what follows a run. The scheduler and worker functions and the CLI's `sync` apply them.

use chrono::{DateTime, Utc};

use crate::domain::{Connection, ConnectionState, SyncOutcome, SyncReport};
use crate::ports::{WorkItem, WorkKind};

/// Continuations in a row that read nothing before their time ran out, after which the chain
/// stops (the next tick starts a new one): a run that cannot read one page in its budget will
/// not read one in the next either, and would otherwise loop forever.
pub const MAX_IDLE_RUNS: u32 = 3;

/// Which connections a tick covers.
#[derive(Debug, Default)]
pub struct Targets {
    /// Synced.
    pub active: Vec<Connection>,
    /// Salesforce refused their refresh token: reported, not synced (a run could only fail).
    pub needs_reauth: Vec<Connection>,
    /// Stopped by the user: not synced.
    pub disconnected: Vec<Connection>,
    /// Authorized, waiting for their import settings: not synced.
    pub pending: Vec<Connection>,
}

impl Targets {
    pub fn split(connections: impl IntoIterator<Item = Connection>) -> Self {
        let mut t = Self::default();
        for c in connections {
            match c.state {
                ConnectionState::Active => t.active.push(c),
                ConnectionState::NeedsReauth => t.needs_reauth.push(c),
                ConnectionState::Disconnected => t.disconnected.push(c),
                ConnectionState::Pending => t.pending.push(c),
            }
        }
        t
    }

    /// One tick per active connection, stamped `at`; and for every connection (whatever its
    /// state) whose data points are not all in the change order yet, the work of putting them
    /// there.
    pub fn work(&self, at: DateTime<Utc>) -> Vec<WorkItem> {
        let ticks = self.active.iter().map(|c| WorkItem::tick(c.id.clone(), at));
        let index = self
            .active
            .iter()
            .chain(&self.needs_reauth)
            .chain(&self.disconnected)
            .chain(&self.pending)
            .filter(|c| !c.points_indexed)
            .map(|c| WorkItem {
                kind: WorkKind::IndexPoints,
                ..WorkItem::tick(c.id.clone(), at)
            });
        ticks.chain(index).collect()
    }
}

/// Why a work item needs no run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The connection was deleted since the item was queued.
    Deleted,
    /// Disconnected or waiting for re-authorization: a run could do nothing.
    NotActive(ConnectionState),
    /// A run started after the item was queued: it covered what the item asked for. Ticks pile
    /// up behind a long run (one a minute); this drains them without touching Salesforce. It
    /// holds for continuations too: a run records itself only after queueing its own follow-up,
    /// so a continuation older than the last run is redundant, and skipping it keeps one chain
    /// of continuations per connection.
    Stale { last_run_started_at: DateTime<Utc> },
    /// Its data points are all in the change order already.
    AlreadyIndexed,
}

/// Whether `item` still needs a run, given its connection as stored now.
pub fn needs_run(item: &WorkItem, connection: Option<&Connection>) -> Result<(), Skip> {
    let Some(c) = connection else {
        return Err(Skip::Deleted);
    };
    if item.kind == WorkKind::IndexPoints {
        // Whatever the connection's state: its points are in a channel either way.
        return if c.points_indexed {
            Err(Skip::AlreadyIndexed)
        } else {
            Ok(())
        };
    }
    if c.state != ConnectionState::Active {
        return Err(Skip::NotActive(c.state));
    }
    // A run reads only up to now − lag: one that started after a change event was queued has
    // not necessarily read the Cases it names.
    if item.kind == WorkKind::Changes {
        return Ok(());
    }
    match &c.last_run {
        Some(run) if run.started_at > item.enqueued_at => Err(Skip::Stale {
            last_run_started_at: run.started_at,
        }),
        _ => Ok(()),
    }
}

/// What follows a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Nothing: the run caught up, or stopped for a reason a later tick deals with (rate
    /// limit, re-authorization, disconnect, another run, a failure recorded on the
    /// connection).
    Nothing,
    /// Work is left: queue this continuation.
    Continue(WorkItem),
    /// Work is left, but [`MAX_IDLE_RUNS`] runs in a row read nothing before their budget ran
    /// out; the next tick starts again. The reason is for the user.
    GiveUp(String),
}

/// What follows indexing a connection's points: another pass when time ran out first.
pub fn follow_up_indexing(item: &WorkItem, done: bool, now: DateTime<Utc>) -> FollowUp {
    if done {
        return FollowUp::Nothing;
    }
    FollowUp::Continue(WorkItem {
        kind: WorkKind::IndexPoints,
        ..WorkItem::tick(item.connection_id.clone(), now)
    })
}

/// What follows `report`, the run of `item`.
pub fn follow_up(item: &WorkItem, report: &SyncReport, now: DateTime<Utc>) -> FollowUp {
    if report.outcome != SyncOutcome::MoreWork {
        return FollowUp::Nothing;
    }
    let idle_runs = if report.counts.fetched == 0 {
        item.idle_runs + 1
    } else {
        0
    };
    if idle_runs >= MAX_IDLE_RUNS {
        return FollowUp::GiveUp(format!(
            "{MAX_IDLE_RUNS} runs in a row read nothing before their time budget ran out: \
             Salesforce answers too slowly for the budget (raise it)"
        ));
    }
    FollowUp::Continue(WorkItem {
        kind: WorkKind::Continuation,
        idle_runs,
        ..WorkItem::tick(item.connection_id.clone(), now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ApiVersion, BackfillWindow, ChannelName, ConnectionId, Cursor, InstanceUrl, LoginUrl,
        QueueScope, SyncCounts,
    };

    fn connection(state: ConnectionState) -> Connection {
        let mut c = Connection::new(
            ConnectionId::new_random(),
            ChannelName::parse("Support").unwrap(),
            LoginUrl::default(),
            InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
            ApiVersion::DEFAULT,
            QueueScope::All,
            BackfillWindow::Days30,
            Utc::now(),
        );
        c.state = state;
        c
    }

    fn report(outcome: SyncOutcome, fetched: u64, started_at: DateTime<Utc>) -> SyncReport {
        SyncReport {
            outcome,
            counts: SyncCounts {
                fetched,
                ..SyncCounts::default()
            },
            cursor_before: Cursor::at(started_at),
            cursor_after: Cursor::at(started_at),
            started_at,
            finished_at: started_at,
            error: None,
        }
    }

    #[test]
    fn a_tick_covers_the_active_connections_only() {
        let t = Targets::split([
            connection(ConnectionState::Active),
            connection(ConnectionState::Disconnected),
            connection(ConnectionState::NeedsReauth),
            connection(ConnectionState::Active),
        ]);
        let at = Utc::now();
        let ticks = t.work(at);
        assert_eq!(ticks.len(), 2);
        assert!(
            ticks
                .iter()
                .all(|w| w.kind == WorkKind::Tick && w.enqueued_at == at)
        );
        assert_eq!((t.disconnected.len(), t.needs_reauth.len()), (1, 1));
    }

    #[test]
    fn work_queued_before_the_last_run_started_is_stale() {
        let mut c = connection(ConnectionState::Active);
        let queued = Utc::now();
        let item = WorkItem::tick(c.id.clone(), queued);
        assert_eq!(needs_run(&item, Some(&c)), Ok(()));
        c.last_run = Some(report(
            SyncOutcome::Done,
            1,
            queued - chrono::TimeDelta::seconds(1),
        ));
        assert_eq!(needs_run(&item, Some(&c)), Ok(()));
        let later = queued + chrono::TimeDelta::seconds(1);
        c.last_run = Some(report(SyncOutcome::Done, 1, later));
        assert_eq!(
            needs_run(&item, Some(&c)),
            Err(Skip::Stale {
                last_run_started_at: later
            })
        );
        assert_eq!(needs_run(&item, None), Err(Skip::Deleted));
        let off = connection(ConnectionState::Disconnected);
        assert_eq!(
            needs_run(&item, Some(&off)),
            Err(Skip::NotActive(ConnectionState::Disconnected))
        );
    }

    #[test]
    fn more_work_continues_until_runs_in_a_row_read_nothing() {
        let now = Utc::now();
        let tick = WorkItem::tick(ConnectionId::new_random(), now);
        assert_eq!(
            follow_up(&tick, &report(SyncOutcome::Done, 5, now), now),
            FollowUp::Nothing
        );
        let FollowUp::Continue(next) =
            follow_up(&tick, &report(SyncOutcome::MoreWork, 5, now), now)
        else {
            panic!("a run with work left continues");
        };
        assert_eq!((next.kind, next.idle_runs), (WorkKind::Continuation, 0));
        let mut item = next;
        for expected in 1..MAX_IDLE_RUNS {
            let FollowUp::Continue(next) =
                follow_up(&item, &report(SyncOutcome::MoreWork, 0, now), now)
            else {
                panic!("continues while under the limit");
            };
            assert_eq!(next.idle_runs, expected);
            item = next;
        }
        assert!(matches!(
            follow_up(&item, &report(SyncOutcome::MoreWork, 0, now), now),
            FollowUp::GiveUp(_)
        ));
        // One run that reads something resets the count.
        let FollowUp::Continue(next) =
            follow_up(&item, &report(SyncOutcome::MoreWork, 1, now), now)
        else {
            panic!("progress resets the idle count");
        };
        assert_eq!(next.idle_runs, 0);
    }
}
