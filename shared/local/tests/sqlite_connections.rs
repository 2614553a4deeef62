//! SqliteStore as a connection store: the contracts of ConnectionReader, ConnectionWriter,
//! CursorStore, RunRecorder, LeaseStore and AuthStateStore, as MemoryStore defines them.

mod common;

use casesync_core::domain::{
    BackfillWindow, CaseFailure, ConnectionId, ConnectionState, Cursor, InstanceUrl, QueueScope,
};
use casesync_core::ports::*;
use casesync_core::sync::{SyncCounts, SyncOutcome, SyncReport};
use casesync_local::{CorruptRow, Lease, SqliteStore};
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use secrecy::SecretString;

fn report(outcome: SyncOutcome, before: &Cursor, after: &Cursor) -> SyncReport {
    SyncReport {
        outcome,
        counts: SyncCounts {
            fetched: 3,
            created: 2,
            updated: 1,
            ..Default::default()
        },
        cursor_before: before.clone(),
        cursor_after: after.clone(),
        started_at: secs(10) + TimeDelta::nanoseconds(1),
        finished_at: secs(12),
        error: None,
    }
}

fn failure(n: u64) -> CaseFailure {
    CaseFailure {
        case_id: case(n),
        error: "no subject".into(),
        first_seen: secs(5),
        attempts: 2,
    }
}

fn is_conflict<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

fn is_not_found<T: std::fmt::Debug>(r: StoreResult<T>, id: &ConnectionId) -> bool {
    matches!(r, Err(StoreError::ConnectionNotFound(got)) if &got == id)
}

#[tokio::test]
async fn a_connection_round_trips_every_field_exactly() {
    let (_dir, store) = temp_store();
    let mut c = connection();
    c.state = ConnectionState::NeedsReauth;
    c.state_reason = Some("Salesforce refused the refresh token".into());
    c.scope = QueueScope::parse("00Gxx000000BBBB,00Gxx000000AAAA").unwrap();
    c.backfill = BackfillWindow::Months6;
    c.cursor = Cursor::new(secs(1), case(7));
    c.last_lookback_at = Some(secs(2) + TimeDelta::nanoseconds(7));
    c.last_run = Some(report(
        SyncOutcome::MoreWork,
        &Cursor::at(secs(0)),
        &c.cursor,
    ));
    c.failures = vec![failure(1), failure(2)];
    let c = c.with_client_id("3MVG9consumer-key");

    store.insert_connection(&c).await.unwrap();

    assert_eq!(store.get_connection(&c.id).await.unwrap(), Some(c.clone()));
    // ... and through a second, independent store on the same file.
    let other = SqliteStore::open(store.path()).unwrap();
    assert_eq!(other.get_connection(&c.id).await.unwrap(), Some(c));
}

#[tokio::test]
async fn an_unknown_connection_reads_as_none() {
    let (_dir, store) = temp_store();
    assert_eq!(
        store
            .get_connection(&ConnectionId::new_random())
            .await
            .unwrap(),
        None
    );
    assert!(store.list_connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn inserting_an_existing_id_conflicts_and_keeps_the_first() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let mut again = c.clone();
    again.state_reason = Some("second".into());
    assert!(is_conflict(store.insert_connection(&again).await));
    assert_eq!(store.get_connection(&c.id).await.unwrap(), Some(c));
}

#[tokio::test]
async fn connections_are_listed_by_id() {
    let (_dir, store) = temp_store();
    let mut all: Vec<_> = (0..5).map(|_| connection()).collect();
    for c in &all {
        store.insert_connection(c).await.unwrap();
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(store.list_connections().await.unwrap(), all);
}

#[tokio::test]
async fn new_settings_restart_the_cursor_and_the_lookback_clock() {
    let (_dir, store) = temp_store();
    let mut c = connection();
    c.cursor = Cursor::new(secs(100), case(9));
    c.last_lookback_at = Some(secs(50));
    store.insert_connection(&c).await.unwrap();

    let scope = QueueScope::parse("00Gxx000000AAAA").unwrap();
    let restart = Cursor::at(secs(-1000));
    store
        .update_settings(&c.id, &scope, BackfillWindow::Days90, &restart)
        .await
        .unwrap();

    let got = store.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(got.scope, scope);
    assert_eq!(got.backfill, BackfillWindow::Days90);
    assert_eq!(
        got.cursor, restart,
        "the cursor may move back on reconfiguration"
    );
    assert_eq!(got.last_lookback_at, None);
    assert_eq!(got.state, c.state);
}

#[tokio::test]
async fn state_changes_and_reauthorization() {
    let (_dir, store) = temp_store();
    let mut c = connection();
    c.cursor = Cursor::new(secs(100), case(9));
    store.insert_connection(&c).await.unwrap();

    store
        .set_state(&c.id, ConnectionState::NeedsReauth, Some("token refused"))
        .await
        .unwrap();
    let got = store.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(got.state, ConnectionState::NeedsReauth);
    assert_eq!(got.state_reason.as_deref(), Some("token refused"));

    let moved = InstanceUrl::parse("https://acme2.my.salesforce.com").unwrap();
    store.reauthorized(&c.id, &moved).await.unwrap();
    let got = store.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(got.state, ConnectionState::Active);
    assert_eq!(got.state_reason, None);
    assert_eq!(got.instance_url, moved);
    assert_eq!(got.cursor, c.cursor, "the cursor is kept");

    store
        .set_state(&c.id, ConnectionState::Disconnected, None)
        .await
        .unwrap();
    let got = store.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.state_reason),
        (ConnectionState::Disconnected, None)
    );
}

#[tokio::test]
async fn writes_to_a_missing_connection_say_not_found() {
    let (_dir, store) = temp_store();
    let id = ConnectionId::new_random();
    let cursor = Cursor::at(secs(0));
    assert!(is_not_found(
        store
            .update_settings(&id, &QueueScope::All, BackfillWindow::Days7, &cursor)
            .await,
        &id
    ));
    assert!(is_not_found(
        store.set_state(&id, ConnectionState::Active, None).await,
        &id
    ));
    assert!(is_not_found(
        store
            .reauthorized(
                &id,
                &InstanceUrl::parse("https://a.my.salesforce.com").unwrap()
            )
            .await,
        &id
    ));
    assert!(is_not_found(
        store.commit_cursor(&id, &cursor, &cursor).await,
        &id
    ));
    let run = RunRecord {
        report: report(SyncOutcome::Done, &cursor, &cursor),
        failures: vec![],
        lookback_swept_at: None,
    };
    assert!(is_not_found(store.record_run(&id, &run).await, &id));
    assert!(store.list_runs(&id, 10).await.unwrap().is_empty());
    store.delete_connection(&id).await.unwrap();
}

#[tokio::test]
async fn the_cursor_moves_forward_from_the_expected_position() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let start = c.cursor.clone();
    let a = Cursor::new(start.system_modstamp, case(1));
    let b = Cursor::at(start.system_modstamp + TimeDelta::seconds(1));

    store.commit_cursor(&c.id, &start, &a).await.unwrap();
    store.commit_cursor(&c.id, &a, &b).await.unwrap();
    // Committing the same position again is not a move backwards.
    store.commit_cursor(&c.id, &b, &b).await.unwrap();
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().unwrap().cursor,
        b
    );
}

#[tokio::test]
async fn a_stale_expected_cursor_conflicts_and_changes_nothing() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let start = c.cursor.clone();
    let a = Cursor::new(start.system_modstamp, case(1));
    let b = Cursor::new(start.system_modstamp, case(2));
    store.commit_cursor(&c.id, &start, &a).await.unwrap();

    // Another worker still believes the cursor is at `start`.
    assert!(is_conflict(store.commit_cursor(&c.id, &start, &b).await));
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().unwrap().cursor,
        a
    );
}

#[tokio::test]
async fn the_cursor_never_moves_backwards() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let ahead = Cursor::new(c.cursor.system_modstamp + TimeDelta::seconds(5), case(5));
    store.commit_cursor(&c.id, &c.cursor, &ahead).await.unwrap();

    for back in [
        Cursor::new(ahead.system_modstamp, case(4)),
        Cursor::at(ahead.system_modstamp),
        c.cursor.clone(),
    ] {
        assert!(
            is_conflict(store.commit_cursor(&c.id, &ahead, &back).await),
            "{back}"
        );
    }
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().unwrap().cursor,
        ahead
    );
}

#[tokio::test]
async fn a_run_is_recorded_on_the_connection_and_in_the_history() {
    let (_dir, store) = temp_store();
    let mut c = connection();
    c.last_lookback_at = Some(secs(1));
    store.insert_connection(&c).await.unwrap();
    store
        .set_state(&c.id, ConnectionState::NeedsReauth, Some("why"))
        .await
        .unwrap();

    let first = RunRecord {
        report: report(SyncOutcome::MoreWork, &c.cursor, &c.cursor),
        failures: vec![failure(1), failure(2)],
        lookback_swept_at: Some(secs(30)),
    };
    store.record_run(&c.id, &first).await.unwrap();
    let second = RunRecord {
        report: report(SyncOutcome::Done, &c.cursor, &c.cursor),
        failures: vec![failure(3)],
        lookback_swept_at: None,
    };
    store.record_run(&c.id, &second).await.unwrap();

    let got = store.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(got.last_run, Some(second.report.clone()));
    assert_eq!(got.failures, second.failures, "the failure set is replaced");
    assert_eq!(
        got.last_lookback_at,
        Some(secs(30)),
        "a run without a sweep keeps the last sweep time"
    );
    assert_eq!(
        got.state,
        ConnectionState::NeedsReauth,
        "state is left alone"
    );
    assert_eq!(got.cursor, c.cursor, "cursor is left alone");

    let runs = store.list_runs(&c.id, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].report, second.report, "newest first");
    assert_eq!(runs[0].failures, 1);
    assert_eq!(runs[1].report, first.report);
    assert_eq!(runs[1].failures, 2);
    assert!(runs[0].seq > runs[1].seq);
    assert_eq!(store.list_runs(&c.id, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_a_connection_removes_it_its_lease_and_history_but_not_its_points() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let run = RunRecord {
        report: report(SyncOutcome::Done, &c.cursor, &c.cursor),
        failures: vec![],
        lookback_swept_at: None,
    };
    store.record_run(&c.id, &run).await.unwrap();
    assert!(
        store
            .try_acquire_lease(&c.id, "a", secs(0), secs(60))
            .await
            .unwrap()
    );
    store
        .upsert_data_points(&[small_point(&c.id, 1, secs(0))])
        .await
        .unwrap();

    store.delete_connection(&c.id).await.unwrap();

    assert_eq!(store.get_connection(&c.id).await.unwrap(), None);
    assert!(store.list_runs(&c.id, 10).await.unwrap().is_empty());
    assert_eq!(store.lease(&c.id).await.unwrap(), None);
    assert_eq!(store.count_data_points(&c.id).await.unwrap(), 1);
    // The id is free again.
    store.insert_connection(&c).await.unwrap();
    assert!(
        store
            .try_acquire_lease(&c.id, "b", secs(0), secs(60))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_lease_keeps_other_holders_out_until_it_expires_or_is_released() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let id = &c.id;

    assert!(
        store
            .try_acquire_lease(id, "a", secs(0), secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        store.lease(id).await.unwrap(),
        Some(Lease {
            holder: "a".into(),
            until: secs(60)
        })
    );
    assert!(
        !store
            .try_acquire_lease(id, "b", secs(59), secs(120))
            .await
            .unwrap()
    );
    // The holder may renew.
    assert!(
        store
            .try_acquire_lease(id, "a", secs(59), secs(90))
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_lease(id, "b", secs(89), secs(120))
            .await
            .unwrap()
    );
    // Releasing someone else's lease does nothing.
    store.release_lease(id, "b").await.unwrap();
    assert!(
        !store
            .try_acquire_lease(id, "b", secs(89), secs(120))
            .await
            .unwrap()
    );
    // An expired lease (until <= now) is taken over.
    assert!(
        store
            .try_acquire_lease(id, "b", secs(90), secs(150))
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_lease(id, "a", secs(100), secs(160))
            .await
            .unwrap()
    );
    store.release_lease(id, "b").await.unwrap();
    assert_eq!(store.lease(id).await.unwrap(), None);
    assert!(
        store
            .try_acquire_lease(id, "a", secs(100), secs(160))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn sub_second_lease_expiry_compares_exactly() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let until = secs(10) + TimeDelta::milliseconds(500);
    assert!(
        store
            .try_acquire_lease(&c.id, "a", secs(0), until)
            .await
            .unwrap()
    );
    let just_before = until - TimeDelta::nanoseconds(1);
    assert!(
        !store
            .try_acquire_lease(&c.id, "b", just_before, secs(20))
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_lease(&c.id, "b", until, secs(20))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn leases_and_cursor_commits_do_not_touch_each_other() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    assert!(
        store
            .try_acquire_lease(&c.id, "a", secs(0), secs(60))
            .await
            .unwrap()
    );
    let next = Cursor::new(c.cursor.system_modstamp, case(1));
    store.commit_cursor(&c.id, &c.cursor, &next).await.unwrap();
    assert_eq!(store.lease(&c.id).await.unwrap().unwrap().holder, "a");
    let mut expected = c.clone();
    expected.cursor = next;
    assert_eq!(store.get_connection(&c.id).await.unwrap(), Some(expected));
}

fn pending(state: &str, created: DateTime<Utc>) -> PendingAuthorization {
    PendingAuthorization {
        state: state.into(),
        verifier: SecretString::from("verifier-0123456789"),
        channel: casesync_core::domain::ChannelName::parse("support").unwrap(),
        login_url: Default::default(),
        redirect_uri: "http://127.0.0.1:8976/callback".into(),
        scope: QueueScope::All,
        backfill: BackfillWindow::Days7,
        api_version: Default::default(),
        reauthorize: Some(ConnectionId::new_random()),
        pending_setup: false,
        created_at: created,
        expires_at: created + TimeDelta::minutes(10),
    }
}

fn same_pending(a: &PendingAuthorization, b: &PendingAuthorization) -> bool {
    use secrecy::ExposeSecret;
    a.state == b.state
        && a.verifier.expose_secret() == b.verifier.expose_secret()
        && a.channel == b.channel
        && a.login_url == b.login_url
        && a.redirect_uri == b.redirect_uri
        && a.scope == b.scope
        && a.backfill == b.backfill
        && a.api_version == b.api_version
        && a.reauthorize == b.reauthorize
        && a.created_at == b.created_at
        && a.expires_at == b.expires_at
}

#[tokio::test]
async fn an_auth_state_is_taken_once() {
    let (_dir, store) = temp_store();
    let p = pending("state-1", secs(0));
    store.put_auth_state(&p).await.unwrap();
    let taken = store.take_auth_state("state-1").await.unwrap().unwrap();
    assert!(same_pending(&taken, &p));
    assert!(store.take_auth_state("state-1").await.unwrap().is_none());
    assert!(store.take_auth_state("never-put").await.unwrap().is_none());
}

#[tokio::test]
async fn an_expired_auth_state_is_still_returned_the_caller_checks_expiry() {
    let (_dir, store) = temp_store();
    // Far in the past relative to the wall clock: the store must not use its own clock.
    let old = pending("old", secs(-86_400 * 365));
    store.put_auth_state(&old).await.unwrap();
    assert!(store.take_auth_state("old").await.unwrap().is_some());
}

#[tokio::test]
async fn flows_expired_for_more_than_a_day_are_pruned_when_a_new_one_is_stored() {
    let (_dir, store) = temp_store();
    store
        .put_auth_state(&pending("ancient", secs(0)))
        .await
        .unwrap();
    store
        .put_auth_state(&pending("recent", secs(3600)))
        .await
        .unwrap();
    store
        .put_auth_state(&pending("new", secs(86_400 + 3600)))
        .await
        .unwrap();
    assert!(store.take_auth_state("ancient").await.unwrap().is_none());
    assert!(store.take_auth_state("recent").await.unwrap().is_some());
    assert!(store.take_auth_state("new").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_takes_of_one_state_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    for i in 0..30 {
        let state = format!("s{i}");
        a.put_auth_state(&pending(&state, secs(0))).await.unwrap();
        let (x, y) = tokio::join!(a.take_auth_state(&state), b.take_auth_state(&state));
        let winners = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|p| p.is_some())
            .count();
        assert_eq!(winners, 1);
    }
}

#[tokio::test]
async fn a_corrupt_row_is_a_typed_error_naming_table_row_and_column() {
    let (_dir, store) = temp_store();
    let c = connection();
    store.insert_connection(&c).await.unwrap();
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    raw.execute(
        "UPDATE connections SET cursor_modstamp = 'last tuesday' WHERE id = ?1",
        [c.id.as_str()],
    )
    .unwrap();

    let err = store.get_connection(&c.id).await.unwrap_err();
    let StoreError::Unexpected(e) = &err else {
        panic!("{err:?}")
    };
    let corrupt = e.downcast_ref::<CorruptRow>().expect("a CorruptRow");
    assert_eq!(corrupt.table, "connections");
    assert_eq!(corrupt.key, c.id.as_str());
    assert_eq!(corrupt.column, "cursor_modstamp");
    assert!(store.list_connections().await.is_err());
    assert!(matches!(
        store.commit_cursor(&c.id, &c.cursor, &c.cursor).await,
        Err(StoreError::Unexpected(_))
    ));

    raw.execute(
        "UPDATE connections SET cursor_modstamp = ?2, failures = '[{\"oops\"' WHERE id = ?1",
        [c.id.as_str(), "2024-03-04T17:00:00.000000000Z"],
    )
    .unwrap();
    let err = store.get_connection(&c.id).await.unwrap_err();
    assert!(err.to_string().contains("failures"), "{err}");
}

#[tokio::test]
async fn a_corrupt_auth_state_does_not_show_its_content() {
    let (_dir, store) = temp_store();
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    raw.execute(
        "INSERT INTO auth_states (state, expires_at, body) VALUES ('st', 'x', ?1)",
        [r#"{"state": "st", "verifier": 12345678987654321}"#],
    )
    .unwrap();
    let err = store.take_auth_state("st").await.unwrap_err();
    let shown = format!("{err:#} {err:?}");
    assert!(!shown.contains("12345678987654321"), "{shown}");
    assert!(shown.contains("auth_states"), "{shown}");
}

#[tokio::test]
async fn a_transient_lock_is_reported_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let store = SqliteStore::open_with(
        &path,
        &casesync_local::SqliteOptions {
            busy_timeout: std::time::Duration::from_millis(50),
            ..Default::default()
        },
    )
    .unwrap();
    let c = connection();
    store.insert_connection(&c).await.unwrap();

    // Another process holds the write lock.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let err = store
        .set_state(&c.id, ConnectionState::Disconnected, None)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // Reads still work under WAL.
    assert!(store.get_connection(&c.id).await.unwrap().is_some());
    drop(tx);
    store
        .set_state(&c.id, ConnectionState::Disconnected, None)
        .await
        .unwrap();
}
