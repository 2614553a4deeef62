//! The store contract: one set of tests, run against every adapter of the store ports: SQLite
//! and the secrets file (`casesync-local`), DynamoDB and Secrets Manager on moto
//! (`casesync-aws`), and the in-memory doubles the core's unit tests use. The use cases and the
//! sync engine rely on exactly these behaviours; any difference between two adapters is a bug
//! in one of them.
//!
//! Each contract is an `async fn` taking fresh [`Stores`]; the `contract!` macro instantiates
//! every one of them once per adapter (`sqlite::`, `dynamodb::`, `memory::`).

use std::sync::Arc;

use casesync_core::data_point::{ContentSource, DataPoint, Direction, Message, Participant};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, CaseFailure, CaseId, ChannelName, Connection, ConnectionId,
    ConnectionState, Cursor, InstanceUrl, LoginUrl, QueueScope, SyncCounts, SyncOutcome,
    SyncReport,
};
use casesync_core::ports::{
    AuthStateStore, ChangeEntry, ChangeFeed, ChangeQuery, ConnectionStore, DataPointStore,
    PendingAuthorization, RunRecord, SecretStore, StoreError, UpsertCounts,
};
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};

/// Every store port of one adapter, and whatever keeps it alive (a temporary directory, a moto
/// fixture).
struct Stores {
    connections: Arc<dyn ConnectionStore>,
    points: Arc<dyn DataPointStore>,
    auth_states: Arc<dyn AuthStateStore>,
    secrets: Arc<dyn SecretStore>,
    feed: Arc<dyn ChangeFeed>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn sqlite() -> Stores {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = casesync_local::DataDir::open(dir.path().join("data")).expect("a data dir");
    let stores = data_dir.open_stores().expect("the stores open");
    let store = Arc::new(stores.store);
    Stores {
        connections: store.clone(),
        points: store.clone(),
        auth_states: store.clone(),
        secrets: Arc::new(stores.secrets),
        feed: store,
        _keep: Box::new(dir),
    }
}

async fn dynamodb() -> Stores {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("contract").await;
    let dynamodb = aws.dynamodb();
    let points = Arc::new(casesync_aws::DynamoDataPointStore::new(
        dynamodb.clone(),
        &names.tables.data_points,
    ));
    Stores {
        connections: Arc::new(casesync_aws::DynamoConnectionStore::new(
            dynamodb.clone(),
            &names.tables.connections,
        )),
        points: points.clone(),
        feed: points,
        auth_states: Arc::new(casesync_aws::DynamoAuthStateStore::new(
            dynamodb,
            &names.tables.auth_states,
        )),
        secrets: Arc::new(casesync_aws::SecretsManagerStore::new(
            aws.secrets_manager(),
            &names.secret_prefix,
        )),
        _keep: Box::new(aws),
    }
}

async fn memory() -> Stores {
    let store = Arc::new(casesync_core::memory::MemoryStore::new());
    Stores {
        connections: store.clone(),
        points: store.clone(),
        auth_states: store.clone(),
        secrets: store.clone(),
        feed: store,
        _keep: Box::new(()),
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $name() { super::$name(super::dynamodb().await).await })*
        }
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::memory().await).await })*
        }
    };
}

contract!(
    a_connection_round_trips_and_its_id_is_unique,
    connections_are_listed_by_id,
    changes_to_a_missing_connection_are_not_found,
    settings_restart_the_cursor_and_the_lookback_clock,
    state_and_reauthorization,
    a_pending_connection_is_set_up_once,
    the_cursor_moves_by_compare_and_swap_and_never_backwards,
    a_lease_is_held_until_released_or_expired,
    a_lease_lives_with_its_connection,
    a_run_record_leaves_state_and_cursor_alone,
    failures_are_replaced_as_a_set,
    deleting_a_connection_removes_it_and_its_lease,
    upserts_create_update_skip_unchanged_and_refuse_older,
    data_points_are_read_counted_listed_and_deleted_per_connection,
    a_five_megabyte_thread_round_trips_intact,
    an_auth_state_is_taken_once,
    secrets_are_stored_replaced_and_deleted,
    a_channel_lists_its_points_in_the_order_they_last_changed,
    the_change_order_is_filtered_and_bounded,
    bodies_and_ids_give_the_stored_contract_json,
    newest_first_and_modstamps,
    the_org_of_a_connection_is_stored_and_recorded_later,
    a_sliced_backfill_commits_its_plan_with_the_cursor,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn t(raw: &str) -> DateTime<Utc> {
    raw.parse().expect("a valid test timestamp")
}

/// The `i`-th Case id: `500xx` + 10 digits, in the order of `i`.
fn case(i: usize) -> CaseId {
    CaseId::parse(&format!("500xx{i:010}")).expect("a valid Case id")
}

fn connection() -> Connection {
    Connection::new(
        ConnectionId::new_random(),
        ChannelName::parse("Support").expect("valid"),
        LoginUrl::default(),
        InstanceUrl::parse("https://acme.my.salesforce.com").expect("valid"),
        ApiVersion::DEFAULT,
        QueueScope::parse("00Gxx000000AAAA,00Gxx000000BBBB").expect("valid"),
        BackfillWindow::Days30,
        t("2024-03-04T17:00:00Z"),
    )
}

fn point(connection: &ConnectionId, case: &CaseId, modstamp: &str, subject: &str) -> DataPoint {
    DataPoint {
        id: DataPoint::id_for(connection, case),
        connection_id: connection.clone(),
        channel: ChannelName::parse("Support").expect("valid"),
        case_id: case.clone(),
        case_number: format!("0000{}", &case.as_str()[10..15]),
        subject: Some(subject.to_owned()),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        case_type: None,
        created_date: t("2024-03-01T09:15:02Z"),
        system_modstamp: t(modstamp),
        salesforce_link: format!(
            "https://acme.my.salesforce.com/lightning/r/Case/{}/view",
            case.as_str()
        ),
        participant: Participant {
            email: Some("jane@example.com".into()),
            name: Some("Jane Doe".into()),
        },
        content_source: ContentSource::EmailThread,
        conversation: vec![message(
            0,
            "Help, the printer is on fire. «ünïcödé» \"quoted\" \\ back\nslash".into(),
        )],
    }
}

fn message(i: i64, text: String) -> Message {
    Message {
        message_id: Some(format!("02sxx{i:010}")),
        direction: Some(if i % 2 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        }),
        from_address: Some("jane@example.com".into()),
        from_name: Some("Jane Doe".into()),
        to_address: Some("support@acme.example".into()),
        sent_at: t("2024-03-01T09:15:02Z") + TimeDelta::minutes(i),
        subject: None,
        text,
    }
}

fn report(outcome: SyncOutcome, cursor: &Cursor, at: DateTime<Utc>) -> SyncReport {
    SyncReport {
        outcome,
        counts: SyncCounts {
            fetched: 3,
            created: 2,
            updated: 1,
            pages: 1,
            api_calls: 1,
            ..SyncCounts::default()
        },
        cursor_before: cursor.clone(),
        cursor_after: cursor.clone(),
        started_at: at,
        finished_at: at + TimeDelta::seconds(2),
        error: Some("a reason in words".into()),
    }
}

fn failure(i: usize, attempts: u32) -> CaseFailure {
    CaseFailure {
        case_id: case(i),
        error: format!("Case {i} has no CaseNumber"),
        first_seen: t("2024-03-04T17:00:00Z"),
        attempts,
    }
}

fn pending(state: &str) -> PendingAuthorization {
    PendingAuthorization {
        state: state.into(),
        verifier: SecretString::from("verifier-0123456789abcdef0123456789abcdef0123"),
        channel: ChannelName::parse("Support").expect("valid"),
        login_url: LoginUrl::default(),
        redirect_uri: "https://casesync.example.com/oauth/callback".into(),
        scope: QueueScope::All,
        backfill: BackfillWindow::Days7,
        api_version: ApiVersion::DEFAULT,
        reauthorize: None,
        pending_setup: false,
        created_at: Utc::now(),
        expires_at: Utc::now() + TimeDelta::minutes(10),
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::ConnectionNotFound(_)))
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

// ---------------------------------------------------------------------------------------------
// Connections

async fn a_connection_round_trips_and_its_id_is_unique(s: Stores) {
    let c = connection().with_client_id("3MVG9-consumer-key");
    s.connections.insert_connection(&c).await.unwrap();
    assert_eq!(
        s.connections.get_connection(&c.id).await.unwrap(),
        Some(c.clone())
    );
    assert!(is_conflict(s.connections.insert_connection(&c).await));
    assert_eq!(
        s.connections
            .get_connection(&ConnectionId::new_random())
            .await
            .unwrap(),
        None
    );
}

async fn connections_are_listed_by_id(s: Stores) {
    let mut made: Vec<Connection> = (0..5).map(|_| connection()).collect();
    for c in &made {
        s.connections.insert_connection(c).await.unwrap();
    }
    made.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(s.connections.list_connections().await.unwrap(), made);
}

async fn changes_to_a_missing_connection_are_not_found(s: Stores) {
    let c = connection();
    let id = &c.id;
    assert!(is_not_found(
        s.connections
            .update_settings(id, &QueueScope::All, BackfillWindow::Days7, &c.cursor)
            .await
    ));
    assert!(is_not_found(
        s.connections
            .set_state(id, ConnectionState::Disconnected, None)
            .await
    ));
    assert!(is_not_found(
        s.connections.reauthorized(id, &c.instance_url).await
    ));
    let next = Cursor::new(c.cursor.system_modstamp, case(1));
    assert!(is_not_found(
        s.connections.commit_cursor(id, &c.cursor, &next).await
    ));
    let run = RunRecord {
        report: report(SyncOutcome::Done, &c.cursor, Utc::now()),
        failures: vec![],
        lookback_swept_at: None,
    };
    assert!(is_not_found(s.connections.record_run(id, &run).await));
    assert!(is_not_found(
        s.connections.save_failures(id, &[failure(1, 1)]).await
    ));
    let org = casesync_core::domain::OrgId::parse("00DDn0000000001").unwrap();
    assert!(is_not_found(s.connections.set_org_id(id, &org).await));
    // Deleting what is not there is done already.
    s.connections.delete_connection(id).await.unwrap();
    assert_eq!(s.connections.list_connections().await.unwrap(), vec![]);
}

async fn settings_restart_the_cursor_and_the_lookback_clock(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    let swept = RunRecord {
        report: report(SyncOutcome::Done, &c.cursor, t("2024-03-05T10:00:00Z")),
        failures: vec![],
        lookback_swept_at: Some(t("2024-03-05T10:00:00Z")),
    };
    s.connections.record_run(&c.id, &swept).await.unwrap();
    let restart = Cursor::at(t("2023-09-05T00:00:00Z"));
    s.connections
        .update_settings(&c.id, &QueueScope::All, BackfillWindow::Months6, &restart)
        .await
        .unwrap();
    let after = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(after.scope, QueueScope::All);
    assert_eq!(after.backfill, BackfillWindow::Months6);
    assert_eq!(after.cursor, restart);
    assert_eq!(after.last_lookback_at, None, "the lookback clock restarts");
    assert_eq!(after.last_run, Some(swept.report), "the run history stays");
}

async fn state_and_reauthorization(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    s.connections
        .set_state(
            &c.id,
            ConnectionState::NeedsReauth,
            Some("expired access/refresh token"),
        )
        .await
        .unwrap();
    let mid = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(mid.state, ConnectionState::NeedsReauth);
    assert_eq!(
        mid.state_reason.as_deref(),
        Some("expired access/refresh token")
    );

    let moved = InstanceUrl::parse("https://acme2.my.salesforce.com").unwrap();
    s.connections.reauthorized(&c.id, &moved).await.unwrap();
    let after = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(after.state, ConnectionState::Active);
    assert_eq!(after.state_reason, None);
    assert_eq!(after.instance_url, moved);
    assert_eq!(after.cursor, c.cursor, "re-authorizing keeps the cursor");

    s.connections
        .set_state(&c.id, ConnectionState::Disconnected, None)
        .await
        .unwrap();
    let off = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (off.state, off.state_reason),
        (ConnectionState::Disconnected, None)
    );
}

async fn a_pending_connection_is_set_up_once(s: Stores) {
    let mut c = connection();
    c.state = ConnectionState::Pending;
    c.state_reason = Some("choose what to import".into());
    s.connections.insert_connection(&c).await.unwrap();
    let channel = ChannelName::parse("Billing").unwrap();
    let cursor = Cursor::at(t("2024-02-04T00:00:00Z"));
    s.connections
        .complete_setup(
            &c.id,
            &channel,
            &QueueScope::All,
            BackfillWindow::Days90,
            &cursor,
        )
        .await
        .unwrap();
    let after = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(after.state, ConnectionState::Active);
    assert_eq!(after.state_reason, None);
    assert_eq!(after.channel, channel);
    assert_eq!(after.scope, QueueScope::All);
    assert_eq!(after.backfill, BackfillWindow::Days90);
    assert_eq!(after.cursor, cursor);
    // Only a pending connection is set up, and only once.
    assert!(is_conflict(
        s.connections
            .complete_setup(
                &c.id,
                &channel,
                &QueueScope::All,
                BackfillWindow::Days7,
                &cursor
            )
            .await
    ));
    assert_eq!(
        s.connections
            .get_connection(&c.id)
            .await
            .unwrap()
            .unwrap()
            .backfill,
        BackfillWindow::Days90
    );
    assert!(is_not_found(
        s.connections
            .complete_setup(
                &ConnectionId::new_random(),
                &channel,
                &QueueScope::All,
                BackfillWindow::Days7,
                &cursor
            )
            .await
    ));
}

async fn the_cursor_moves_by_compare_and_swap_and_never_backwards(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    let at = c.cursor.system_modstamp;
    let first = Cursor::new(at + TimeDelta::seconds(1), case(5));
    let tie_later_id = Cursor::new(at + TimeDelta::seconds(1), case(9));
    s.connections
        .commit_cursor(&c.id, &c.cursor, &first)
        .await
        .unwrap();
    // A commit from a stale position changes nothing.
    assert!(is_conflict(
        s.connections
            .commit_cursor(&c.id, &c.cursor, &tie_later_id)
            .await
    ));
    assert_eq!(
        s.connections
            .get_connection(&c.id)
            .await
            .unwrap()
            .unwrap()
            .cursor,
        first
    );
    // Backwards, even from the right position, is refused: the Id breaks the tie.
    let back = Cursor::new(at + TimeDelta::seconds(1), case(2));
    assert!(is_conflict(
        s.connections.commit_cursor(&c.id, &first, &back).await
    ));
    // Forward on a tie (same second, later Id) is fine; so is staying put.
    s.connections
        .commit_cursor(&c.id, &first, &tie_later_id)
        .await
        .unwrap();
    s.connections
        .commit_cursor(&c.id, &tie_later_id, &tie_later_id)
        .await
        .unwrap();
    assert_eq!(
        s.connections
            .get_connection(&c.id)
            .await
            .unwrap()
            .unwrap()
            .cursor,
        tie_later_id
    );
}

async fn a_lease_is_held_until_released_or_expired(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    let now = t("2024-03-04T17:00:00Z");
    let until = now + TimeDelta::minutes(5);
    let l = &s.connections;
    assert!(l.try_acquire_lease(&c.id, "a", now, until).await.unwrap());
    assert!(
        !l.try_acquire_lease(&c.id, "b", now, until).await.unwrap(),
        "held by a"
    );
    assert!(
        l.try_acquire_lease(&c.id, "a", now, until + TimeDelta::minutes(1))
            .await
            .unwrap(),
        "the holder may extend it"
    );
    l.release_lease(&c.id, "b").await.unwrap();
    assert!(
        !l.try_acquire_lease(&c.id, "b", now, until).await.unwrap(),
        "only its holder releases a lease"
    );
    l.release_lease(&c.id, "a").await.unwrap();
    assert!(
        l.try_acquire_lease(&c.id, "b", now, until).await.unwrap(),
        "released"
    );
    // Past its end, anyone may take it.
    let later = until + TimeDelta::minutes(5);
    assert!(
        l.try_acquire_lease(&c.id, "c", later, later + TimeDelta::minutes(5))
            .await
            .unwrap()
    );
    // Holding the lease changes nothing else on the connection.
    let mut expected = c.clone();
    let next = Cursor::new(c.cursor.system_modstamp, case(1));
    l.commit_cursor(&c.id, &c.cursor, &next).await.unwrap();
    expected.cursor = next;
    assert_eq!(l.get_connection(&c.id).await.unwrap(), Some(expected));
}

async fn a_lease_lives_with_its_connection(s: Stores) {
    let id = ConnectionId::new_random();
    let now = Utc::now();
    assert!(is_not_found(
        s.connections
            .try_acquire_lease(&id, "a", now, now + TimeDelta::minutes(1))
            .await
    ));
    // Releasing the lease of a connection that is gone is nothing to do.
    s.connections.release_lease(&id, "a").await.unwrap();
}

async fn a_run_record_leaves_state_and_cursor_alone(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    s.connections
        .set_state(&c.id, ConnectionState::Disconnected, Some("by the user"))
        .await
        .unwrap();
    let at = t("2024-03-05T10:00:00Z");
    let run = RunRecord {
        report: report(SyncOutcome::Disconnected, &c.cursor, at),
        failures: vec![failure(1, 2), failure(2, 1)],
        lookback_swept_at: None,
    };
    s.connections.record_run(&c.id, &run).await.unwrap();
    let after = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(after.last_run, Some(run.report.clone()));
    assert_eq!(after.failures, run.failures);
    assert_eq!(after.last_lookback_at, None, "no sweep, no stamp");
    assert_eq!(after.state, ConnectionState::Disconnected);
    assert_eq!(after.state_reason.as_deref(), Some("by the user"));
    assert_eq!(after.cursor, c.cursor);

    let swept = RunRecord {
        lookback_swept_at: Some(at),
        failures: vec![],
        ..run
    };
    s.connections.record_run(&c.id, &swept).await.unwrap();
    let after = s.connections.get_connection(&c.id).await.unwrap().unwrap();
    assert_eq!(after.last_lookback_at, Some(at));
    assert_eq!(after.failures, vec![]);
}

async fn failures_are_replaced_as_a_set(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    let first = vec![failure(1, 1), failure(2, 1)];
    s.connections.save_failures(&c.id, &first).await.unwrap();
    assert_eq!(
        s.connections
            .get_connection(&c.id)
            .await
            .unwrap()
            .unwrap()
            .failures,
        first
    );
    let second = vec![failure(2, 2)];
    s.connections.save_failures(&c.id, &second).await.unwrap();
    assert_eq!(
        s.connections
            .get_connection(&c.id)
            .await
            .unwrap()
            .unwrap()
            .failures,
        second
    );
}

async fn deleting_a_connection_removes_it_and_its_lease(s: Stores) {
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    let now = Utc::now();
    assert!(
        s.connections
            .try_acquire_lease(&c.id, "a", now, now + TimeDelta::hours(1))
            .await
            .unwrap()
    );
    s.connections.delete_connection(&c.id).await.unwrap();
    assert_eq!(s.connections.get_connection(&c.id).await.unwrap(), None);
    assert!(is_not_found(
        s.connections
            .try_acquire_lease(&c.id, "b", now, now + TimeDelta::hours(1))
            .await
    ));
    // The same id can be used again, without the old lease.
    s.connections.insert_connection(&c).await.unwrap();
    assert!(
        s.connections
            .try_acquire_lease(&c.id, "b", now, now + TimeDelta::hours(1))
            .await
            .unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Data points

async fn upserts_create_update_skip_unchanged_and_refuse_older(s: Stores) {
    let conn = ConnectionId::new_random();
    let v1: Vec<DataPoint> = (0..30)
        .map(|i| point(&conn, &case(i), "2024-03-04T17:00:00Z", "first"))
        .collect();
    let counts = s.points.upsert_data_points(&v1).await.unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            created: 30,
            ..UpsertCounts::default()
        }
    );
    // The same again: nothing is rewritten.
    let counts = s.points.upsert_data_points(&v1).await.unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            unchanged: 30,
            ..UpsertCounts::default()
        }
    );
    // Newer versions of some, an older one, and the same content re-stamped newer.
    let newer = point(&conn, &case(1), "2024-03-04T18:00:00Z", "second");
    let older = point(&conn, &case(2), "2024-03-04T16:00:00Z", "stale");
    let restamped = point(&conn, &case(3), "2024-03-04T18:00:00Z", "first");
    let new = point(&conn, &case(99), "2024-03-04T18:00:00Z", "new");
    let counts = s
        .points
        .upsert_data_points(&[newer.clone(), older, restamped.clone(), new.clone()])
        .await
        .unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            created: 1,
            updated: 2,
            unchanged: 0,
            stale: 1,
        }
    );
    let get = |c: CaseId| {
        let points = s.points.clone();
        let conn = conn.clone();
        async move { points.get_data_point(&conn, &c).await.unwrap() }
    };
    assert_eq!(get(case(1)).await, Some(newer));
    assert_eq!(
        get(case(2)).await,
        Some(v1[2].clone()),
        "an older version never wins"
    );
    assert_eq!(get(case(3)).await, Some(restamped));
    assert_eq!(get(case(99)).await, Some(new));
}

async fn data_points_are_read_counted_listed_and_deleted_per_connection(s: Stores) {
    let a = ConnectionId::new_random();
    let b = ConnectionId::new_random();
    // Written out of order, in two calls.
    let mut of_a: Vec<DataPoint> = (0..7)
        .rev()
        .map(|i| point(&a, &case(i), "2024-03-04T17:00:00Z", "a"))
        .collect();
    s.points.upsert_data_points(&of_a[..3]).await.unwrap();
    s.points.upsert_data_points(&of_a[3..]).await.unwrap();
    s.points
        .upsert_data_points(&[point(&b, &case(3), "2024-03-04T17:00:00Z", "b")])
        .await
        .unwrap();
    of_a.sort_by(|x, y| x.case_id.cmp(&y.case_id));

    assert_eq!(s.points.count_data_points(&a).await.unwrap(), 7);
    assert_eq!(s.points.count_data_points(&b).await.unwrap(), 1);
    assert_eq!(
        s.points.get_data_point(&b, &case(4)).await.unwrap(),
        None,
        "points are kept per connection"
    );
    // Listing pages by Case id.
    let first = s.points.list_data_points(&a, None, 3).await.unwrap();
    assert_eq!(first, of_a[..3]);
    let next = s
        .points
        .list_data_points(&a, Some(&first[2].case_id), 10)
        .await
        .unwrap();
    assert_eq!(next, of_a[3..]);
    assert_eq!(
        s.points.list_data_points(&a, None, 0).await.unwrap(),
        vec![]
    );

    assert_eq!(s.points.delete_data_points(&a).await.unwrap(), 7);
    assert_eq!(s.points.count_data_points(&a).await.unwrap(), 0);
    assert_eq!(
        s.points.list_data_points(&a, None, 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.points.count_data_points(&b).await.unwrap(),
        1,
        "b is untouched"
    );
    assert_eq!(s.points.delete_data_points(&a).await.unwrap(), 0);
}

async fn a_five_megabyte_thread_round_trips_intact(s: Stores) {
    let conn = ConnectionId::new_random();
    let mut big = point(&conn, &case(1), "2024-03-04T17:00:00Z", "big");
    // Text that compresses poorly, so DynamoDB needs several part items.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    big.conversation = (0..50)
        .map(|i| {
            let text: String = (0..100_000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(b' ' + (seed % 94) as u8)
                })
                .collect();
            message(i, text)
        })
        .collect();
    let small = point(&conn, &case(2), "2024-03-04T17:00:00Z", "small");
    s.points
        .upsert_data_points(&[big.clone(), small.clone()])
        .await
        .unwrap();
    assert_eq!(
        s.points.get_data_point(&conn, &case(1)).await.unwrap(),
        Some(big.clone())
    );
    assert_eq!(s.points.count_data_points(&conn).await.unwrap(), 2);
    assert_eq!(
        s.points.list_data_points(&conn, None, 10).await.unwrap(),
        vec![big.clone(), small]
    );
    // Through the change feed too, whole.
    let json = String::from_utf8(big.encode().json).unwrap();
    assert_eq!(s.feed.by_id(&big.id).await.unwrap().unwrap().json, json);
    let listed = s.feed.changes(&query("Support")).await.unwrap();
    let entry = listed.iter().find(|p| p.entry.case_id == case(1)).unwrap();
    if let Some(prefetched) = &entry.json {
        assert_eq!(prefetched, &json);
    }
    let bodies = s
        .feed
        .bodies(std::slice::from_ref(&entry.entry))
        .await
        .unwrap();
    assert_eq!(bodies[0].json, json);
    // A newer, smaller version replaces it whole.
    let mut shrunk = big.clone();
    shrunk.system_modstamp = t("2024-03-04T18:00:00Z");
    shrunk.conversation.truncate(1);
    s.points
        .upsert_data_points(&[shrunk.clone()])
        .await
        .unwrap();
    assert_eq!(
        s.points.get_data_point(&conn, &case(1)).await.unwrap(),
        Some(shrunk)
    );
    assert_eq!(s.points.delete_data_points(&conn).await.unwrap(), 2);
    assert_eq!(s.points.count_data_points(&conn).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Auth states and secrets

async fn an_auth_state_is_taken_once(s: Stores) {
    let p = pending("state-0123456789abcdef");
    s.auth_states.put_auth_state(&p).await.unwrap();
    let taken = s
        .auth_states
        .take_auth_state(&p.state)
        .await
        .unwrap()
        .expect("the pending flow");
    assert_eq!(taken.state, p.state);
    assert_eq!(taken.verifier.expose_secret(), p.verifier.expose_secret());
    assert_eq!(taken.channel, p.channel);
    assert_eq!(taken.redirect_uri, p.redirect_uri);
    assert_eq!(taken.backfill, p.backfill);
    assert!(
        s.auth_states
            .take_auth_state(&p.state)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.auth_states
            .take_auth_state("never-stored")
            .await
            .unwrap()
            .is_none()
    );
}

async fn secrets_are_stored_replaced_and_deleted(s: Stores) {
    let id = ConnectionId::new_random();
    let other = ConnectionId::new_random();
    assert!(s.secrets.get_refresh_token(&id).await.unwrap().is_none());
    s.secrets
        .put_refresh_token(&id, &SecretString::from("5Aep861-first"))
        .await
        .unwrap();
    s.secrets
        .put_refresh_token(&other, &SecretString::from("5Aep861-other"))
        .await
        .unwrap();
    s.secrets
        .put_refresh_token(&id, &SecretString::from("5Aep861-rotated"))
        .await
        .unwrap();
    let read = |id: ConnectionId| {
        let secrets = s.secrets.clone();
        async move {
            secrets
                .get_refresh_token(&id)
                .await
                .unwrap()
                .map(|t| t.expose_secret().to_owned())
        }
    };
    assert_eq!(read(id.clone()).await.as_deref(), Some("5Aep861-rotated"));
    assert_eq!(read(other.clone()).await.as_deref(), Some("5Aep861-other"));
    s.secrets.delete_refresh_token(&id).await.unwrap();
    assert_eq!(read(id.clone()).await, None);
    s.secrets.delete_refresh_token(&id).await.unwrap();
    assert_eq!(read(other).await.as_deref(), Some("5Aep861-other"));
}

// ---------------------------------------------------------------------------------------------
// The change feed

/// The entries of a change query (whatever JSON came with them).
async fn changes(s: &Stores, q: &ChangeQuery) -> Vec<ChangeEntry> {
    s.feed
        .changes(q)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.entry)
        .collect()
}

fn query(channel: &str) -> ChangeQuery {
    ChangeQuery {
        channel: ChannelName::parse(channel).expect("valid"),
        connection: None,
        after: None,
        since: None,
        until: Utc::now() + TimeDelta::minutes(1),
        limit: 100,
        budget: None,
        descending: false,
    }
}

fn in_channel(mut p: DataPoint, channel: &str) -> DataPoint {
    p.channel = ChannelName::parse(channel).expect("valid");
    p
}

async fn a_channel_lists_its_points_in_the_order_they_last_changed(s: Stores) {
    let a = ConnectionId::new_random();
    let b = ConnectionId::new_random();
    // Writes one after the other (points written in one call may share a stamp and are then
    // ordered by id); points of another channel in between.
    let first: Vec<DataPoint> = (0..3)
        .map(|i| point(&a, &case(i), "2024-03-04T17:00:00Z", "v1"))
        .collect();
    for p in &first {
        s.points
            .upsert_data_points(std::slice::from_ref(p))
            .await
            .unwrap();
    }
    s.points
        .upsert_data_points(&[in_channel(
            point(&b, &case(9), "2024-03-04T17:00:00Z", "elsewhere"),
            "Billing",
        )])
        .await
        .unwrap();
    let second = point(&b, &case(5), "2024-03-04T17:00:00Z", "v1");
    s.points
        .upsert_data_points(std::slice::from_ref(&second))
        .await
        .unwrap();
    // A content update moves case 1 to the end; an unchanged rewrite of case 2 does not move it.
    let updated = point(&a, &case(1), "2024-03-04T18:00:00Z", "v2");
    s.points
        .upsert_data_points(&[updated.clone(), first[2].clone()])
        .await
        .unwrap();

    let entries = changes(&s, &query("Support")).await;
    let order: Vec<&str> = entries.iter().map(|e| e.case_id.as_str()).collect();
    assert_eq!(
        order,
        vec![
            case(0).as_str(),
            case(2).as_str(),
            case(5).as_str(),
            case(1).as_str()
        ]
    );
    assert!(
        entries.windows(2).all(|w| w[0].position < w[1].position),
        "strictly increasing positions"
    );
    assert_eq!(entries[3].position.id, updated.id);
    assert_eq!(entries[2].connection_id, b);
    let billing = changes(&s, &query("Billing")).await;
    assert_eq!(billing.len(), 1);
    assert_eq!(billing[0].case_id, case(9));
}

async fn the_change_order_is_filtered_and_bounded(s: Stores) {
    let a = ConnectionId::new_random();
    let b = ConnectionId::new_random();
    for i in 0..4 {
        let conn = if i % 2 == 0 { &a } else { &b };
        s.points
            .upsert_data_points(&[point(conn, &case(i), "2024-03-04T17:00:00Z", "v1")])
            .await
            .unwrap();
    }
    let all = changes(&s, &query("Support")).await;
    assert_eq!(all.len(), 4);

    // After a position: strictly after.
    let mut q = query("Support");
    q.after = Some(all[1].position.clone());
    let after = changes(&s, &q).await;
    assert_eq!(after, all[2..].to_vec());
    // Since an instant: at or after it.
    let mut q = query("Support");
    q.since = Some(all[2].position.changed_at);
    let since = changes(&s, &q).await;
    assert_eq!(since.first(), Some(&all[2]));
    assert!(!since.contains(&all[1]));
    // Until: strictly before.
    let mut q = query("Support");
    q.until = all[3].position.changed_at;
    assert!(!changes(&s, &q).await.contains(&all[3]));
    let mut q = query("Support");
    q.until = Utc::now() - TimeDelta::hours(1);
    assert_eq!(changes(&s, &q).await, vec![]);
    // One connection's points.
    let mut q = query("Support");
    q.connection = Some(b.clone());
    let of_b = changes(&s, &q).await;
    assert_eq!(of_b, vec![all[1].clone(), all[3].clone()]);
    // A limit.
    let mut q = query("Support");
    q.limit = 3;
    assert_eq!(changes(&s, &q).await, all[..3].to_vec());
    q.limit = 0;
    assert_eq!(changes(&s, &q).await, vec![]);
}

async fn bodies_and_ids_give_the_stored_contract_json(s: Stores) {
    let conn = ConnectionId::new_random();
    let mut quoted = point(
        &conn,
        &case(1),
        "2024-03-04T17:00:00Z",
        "\"quotes\" and \\ slashes",
    );
    quoted
        .conversation
        .push(message(1, "«ünïcödé» \u{0007} <b>bold</b>".into()));
    let plain = point(&conn, &case(2), "2024-03-04T17:00:00Z", "plain");
    s.points
        .upsert_data_points(&[quoted.clone(), plain.clone()])
        .await
        .unwrap();
    let entries = changes(&s, &query("Support")).await;
    assert_eq!(entries.len(), 2);
    let bodies = s.feed.bodies(&entries).await.unwrap();
    let expected = |p: &DataPoint| String::from_utf8(p.encode().json).unwrap();
    assert_eq!(bodies.len(), 2);
    for (b, e) in bodies.iter().zip(&entries) {
        assert_eq!(b.entry.case_id, e.case_id, "in the order asked");
        let p = if e.case_id == case(1) {
            &quoted
        } else {
            &plain
        };
        assert_eq!(b.json, expected(p), "exactly the bytes the encoder wrote");
        assert_eq!(
            b.entry.escaped_len,
            casesync_core::data_point::escaped_len(b.json.as_bytes())
        );
    }
    let by_id = s
        .feed
        .by_id(&quoted.id)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(by_id.json, expected(&quoted));
    assert_eq!(by_id.entry.case_id, case(1));
    assert!(
        s.feed
            .by_id("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap()
            .is_none()
    );

    // Deleted points are gone from bodies and ids.
    s.points.delete_data_points(&conn).await.unwrap();
    assert_eq!(s.feed.bodies(&entries).await.unwrap(), vec![]);
    assert!(s.feed.by_id(&quoted.id).await.unwrap().is_none());
    assert_eq!(changes(&s, &query("Support")).await, vec![]);
}

async fn newest_first_and_modstamps(s: Stores) {
    let conn = ConnectionId::new_random();
    for i in 0..5 {
        s.points
            .upsert_data_points(&[point(
                &conn,
                &case(i),
                &format!("2024-03-0{}T17:00:00Z", i + 1),
                "v",
            )])
            .await
            .unwrap();
    }
    let oldest_first = changes(&s, &query("Support")).await;
    let mut q = query("Support");
    q.descending = true;
    let newest_first = changes(&s, &q).await;
    let mut reversed = oldest_first.clone();
    reversed.reverse();
    assert_eq!(newest_first, reversed);
    // Before a position, newest first: strictly before it.
    q.after = Some(newest_first[1].position.clone());
    q.limit = 2;
    assert_eq!(changes(&s, &q).await, newest_first[2..4].to_vec());

    let since = t("2024-03-03T00:00:00Z");
    let mut stamps = s
        .feed
        .modstamps(&ChannelName::parse("Support").unwrap(), since)
        .await
        .unwrap();
    stamps.sort();
    assert_eq!(
        stamps,
        vec![
            t("2024-03-03T17:00:00Z"),
            t("2024-03-04T17:00:00Z"),
            t("2024-03-05T17:00:00Z")
        ]
    );
    assert!(
        s.feed
            .modstamps(&ChannelName::parse("Billing").unwrap(), since)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_org_of_a_connection_is_stored_and_recorded_later(s: Stores) {
    use casesync_core::domain::OrgId;
    let org = OrgId::parse("00DDn0000000001").unwrap();
    let mut with_org = connection();
    with_org.org_id = Some(org.clone());
    s.connections.insert_connection(&with_org).await.unwrap();
    assert_eq!(
        s.connections.get_connection(&with_org.id).await.unwrap(),
        Some(with_org.clone())
    );
    // A connection stored without it learns it later; nothing else changes.
    let without = connection();
    s.connections.insert_connection(&without).await.unwrap();
    s.connections.set_org_id(&without.id, &org).await.unwrap();
    let got = s
        .connections
        .get_connection(&without.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.org_id, Some(org));
    assert_eq!(
        Connection {
            org_id: None,
            ..got
        },
        without
    );
}

async fn a_sliced_backfill_commits_its_plan_with_the_cursor(s: Stores) {
    use casesync_core::domain::BackfillPlan;
    let c = connection();
    s.connections.insert_connection(&c).await.unwrap();
    let until = c.cursor.system_modstamp + chrono::TimeDelta::days(6);
    let plan = BackfillPlan::new(&c.cursor, until, 3);
    let get = || async { s.connections.get_connection(&c.id).await.unwrap().unwrap() };

    // Planned: stored with the connection, once.
    s.connections
        .commit_plan(&c.id, &c.cursor, &c.cursor, 0, Some(&plan))
        .await
        .unwrap();
    assert_eq!(get().await.backfill_plan, Some(plan.clone()));
    assert!(is_conflict(
        s.connections
            .commit_plan(&c.id, &c.cursor, &c.cursor, 0, Some(&plan))
            .await
    ));

    // Progress: slice 0 read to a Case and done; version 2.
    let mut next = plan.clone();
    next.version = 2;
    next.slices[0].position = Cursor::new(
        c.cursor.system_modstamp + chrono::TimeDelta::hours(5),
        case(7),
    );
    next.slices[0].done = true;
    let prefix = next.reached().unwrap();
    s.connections
        .commit_plan(&c.id, &c.cursor, &prefix, 1, Some(&next))
        .await
        .unwrap();
    let got = get().await;
    assert_eq!(
        (got.cursor.clone(), got.backfill_plan),
        (prefix.clone(), Some(next.clone()))
    );

    // A stale version, a stale cursor, a cursor going back: refused, nothing changes.
    for (expected, to, version) in [
        (&prefix, &prefix, 1),
        (&c.cursor, &prefix, 2),
        (&prefix, &c.cursor, 2),
    ] {
        assert!(is_conflict(
            s.connections
                .commit_plan(&c.id, expected, to, version, Some(&next))
                .await
        ));
    }
    assert_eq!(get().await.backfill_plan, Some(next.clone()));

    // Done: the plan goes, the cursor to the last Case read.
    let end = Cursor::new(until - chrono::TimeDelta::hours(1), case(9));
    s.connections
        .commit_plan(&c.id, &prefix, &end, 2, None)
        .await
        .unwrap();
    let got = get().await;
    assert_eq!((got.cursor, got.backfill_plan), (end.clone(), None));

    // Changing the settings drops a plan in progress.
    s.connections
        .commit_plan(&c.id, &end, &end, 0, Some(&plan))
        .await
        .unwrap();
    let restart = Cursor::at(until - chrono::TimeDelta::days(30));
    s.connections
        .update_settings(&c.id, &QueueScope::All, BackfillWindow::Days30, &restart)
        .await
        .unwrap();
    assert_eq!(get().await.backfill_plan, None);

    // A missing connection.
    assert!(is_not_found(
        s.connections
            .commit_plan(&ConnectionId::new_random(), &restart, &restart, 0, None)
            .await
    ));
}
