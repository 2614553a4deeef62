use std::sync::Arc;

use casesync_core::domain::{
    BackfillWindow, CaseFailure, ConnectionId, ConnectionState, Cursor, InstanceUrl, QueueScope,
};
use casesync_core::ports::{
    ConnectionReader, ConnectionWriter, CursorStore, LeaseStore, RunRecord, RunRecorder,
    StateWriter, StoreError,
};
use casesync_core::sync::{SyncCounts, SyncOutcome, SyncReport};
use chrono::TimeDelta;

use crate::common::*;

fn report(before: &Cursor, after: &Cursor) -> SyncReport {
    SyncReport {
        outcome: SyncOutcome::MoreWork,
        counts: SyncCounts {
            fetched: 200,
            created: 150,
            updated: 40,
            unchanged: 8,
            failed: 2,
            pages: 1,
            api_calls: 3,
        },
        cursor_before: before.clone(),
        cursor_after: after.clone(),
        started_at: t("2024-03-05T10:00:00Z"),
        finished_at: t("2024-03-05T10:00:09.250Z"),
        error: None,
    }
}

#[tokio::test]
async fn connections_round_trip_and_list_in_id_order() {
    // Given three connections, one with every optional field set
    let env = env("conn-list").await;
    let store = env.connections();
    let now = t("2024-03-05T10:00:00Z");
    let mut full = connection(now);
    full.state = ConnectionState::NeedsReauth;
    full.client_id = Some("3MVG9consumer-key".into());
    full.state_reason = Some("Salesforce refused the refresh token".into());
    full.cursor = Cursor::new(t("2024-03-04T17:00:00Z"), case(7));
    full.last_lookback_at = Some(t("2024-03-05T09:00:00.123456789Z"));
    full.last_run = Some(report(&Cursor::at(now), &full.cursor));
    full.failures = vec![CaseFailure {
        case_id: case(9),
        error: "no email".into(),
        first_seen: t("2024-03-05T09:59:00Z"),
        attempts: 2,
    }];
    let mut all = vec![full, connection(now), connection(now)];
    for c in &all {
        store.insert_connection(c).await.unwrap();
    }

    // When they are read back
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let listed = store.list_connections().await.unwrap();

    // Then they are exactly what was stored, ordered by id
    assert_eq!(listed, all);
    for c in &all {
        assert_eq!(store.get_connection(&c.id).await.unwrap().as_ref(), Some(c));
    }
    assert_eq!(
        store
            .get_connection(&ConnectionId::new_random())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn listing_pages_through_a_scan_larger_than_one_page() {
    // Given connections whose items add up to more than one 1 MB scan page
    let env = env("conn-scan").await;
    let store = env.connections();
    let now = t("2024-03-05T10:00:00Z");
    let mut ids = Vec::new();
    for _ in 0..6 {
        let mut c = connection(now);
        c.failures = (0..200)
            .map(|i| CaseFailure {
                case_id: case(i),
                error: "x".repeat(1000),
                first_seen: now,
                attempts: 1,
            })
            .collect();
        store.insert_connection(&c).await.unwrap();
        ids.push(c.id);
    }
    ids.sort();

    // When listed, then every one comes back, in order
    let listed: Vec<_> = store
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn inserting_an_existing_id_is_a_conflict() {
    let env = env("conn-dup").await;
    let store = env.connections();
    let c = connection(t("2024-03-05T10:00:00Z"));
    store.insert_connection(&c).await.unwrap();
    let mut other = c.clone();
    other.state_reason = Some("second".into());
    assert!(matches!(
        store.insert_connection(&other).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_connection(&c.id).await.unwrap(), Some(c));
}

#[tokio::test]
async fn settings_state_reauthorization_and_runs_change_only_their_fields() {
    let env = env("conn-upd").await;
    let store = env.connections();
    let now = t("2024-03-05T10:00:00Z");
    let mut c = connection(now);
    c.last_lookback_at = Some(now);
    store.insert_connection(&c).await.unwrap();

    // update_settings: scope, backfill and cursor replaced, lookback clock reset
    let scope = QueueScope::All;
    let restart = Cursor::at(t("2024-01-01T00:00:00Z"));
    store
        .update_settings(&c.id, &scope, BackfillWindow::Months6, &restart)
        .await
        .unwrap();
    c.scope = scope;
    c.backfill = BackfillWindow::Months6;
    c.cursor = restart.clone();
    c.last_lookback_at = None;
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().as_ref(),
        Some(&c)
    );

    // set_state with and without a reason
    store
        .set_state(
            &c.id,
            ConnectionState::Disconnected,
            Some("stopped by user"),
        )
        .await
        .unwrap();
    c.state = ConnectionState::Disconnected;
    c.state_reason = Some("stopped by user".into());
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().as_ref(),
        Some(&c)
    );

    // reauthorized: active, no reason, new instance URL, cursor kept
    let url = InstanceUrl::parse("https://acme2.my.salesforce.com").unwrap();
    store.reauthorized(&c.id, &url).await.unwrap();
    c.state = ConnectionState::Active;
    c.state_reason = None;
    c.instance_url = url;
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().as_ref(),
        Some(&c)
    );

    // record_run: report and failures replaced, lookback set only when swept
    let run = RunRecord {
        report: report(&restart, &restart),
        failures: vec![CaseFailure {
            case_id: case(1),
            error: "bad".into(),
            first_seen: now,
            attempts: 1,
        }],
        lookback_swept_at: None,
    };
    store.record_run(&c.id, &run).await.unwrap();
    c.last_run = Some(run.report.clone());
    c.failures = run.failures.clone();
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().as_ref(),
        Some(&c)
    );
    let swept = RunRecord {
        failures: vec![],
        lookback_swept_at: Some(now + TimeDelta::hours(1)),
        ..run
    };
    store.record_run(&c.id, &swept).await.unwrap();
    c.failures = vec![];
    c.last_lookback_at = swept.lookback_swept_at;
    assert_eq!(
        store.get_connection(&c.id).await.unwrap().as_ref(),
        Some(&c)
    );

    // delete: gone, and deleting again is fine
    store.delete_connection(&c.id).await.unwrap();
    assert_eq!(store.get_connection(&c.id).await.unwrap(), None);
    store.delete_connection(&c.id).await.unwrap();
}

#[tokio::test]
async fn writes_to_a_missing_connection_are_not_found_and_create_nothing() {
    let env = env("conn-missing").await;
    let store = env.connections();
    let id = ConnectionId::new_random();
    let cursor = Cursor::at(t("2024-01-01T00:00:00Z"));
    let not_found = |r: Result<(), StoreError>| matches!(r, Err(StoreError::ConnectionNotFound(_)));
    assert!(not_found(
        store.set_state(&id, ConnectionState::Active, None).await
    ));
    assert!(not_found(
        store
            .update_settings(&id, &QueueScope::All, BackfillWindow::Days7, &cursor)
            .await
    ));
    assert!(not_found(
        store
            .reauthorized(
                &id,
                &InstanceUrl::parse("https://a.my.salesforce.com").unwrap()
            )
            .await
    ));
    assert!(not_found(store.commit_cursor(&id, &cursor, &cursor).await));
    let run = RunRecord {
        report: report(&cursor, &cursor),
        failures: vec![],
        lookback_swept_at: None,
    };
    assert!(not_found(store.record_run(&id, &run).await));
    assert!(matches!(
        store
            .try_acquire_lease(
                &id,
                "w1",
                t("2024-01-01T00:00:00Z"),
                t("2024-01-01T00:05:00Z")
            )
            .await,
        Err(StoreError::ConnectionNotFound(_))
    ));
    store.release_lease(&id, "w1").await.unwrap();
    assert_eq!(store.list_connections().await.unwrap(), vec![]);
}

#[tokio::test]
async fn the_cursor_moves_only_from_the_expected_position_and_never_backwards() {
    let env = env("conn-cursor").await;
    let store = env.connections();
    let c = connection(t("2024-03-05T10:00:00Z"));
    store.insert_connection(&c).await.unwrap();
    let start = c.cursor.clone();
    let a = Cursor::new(t("2024-03-04T17:00:00Z"), case(1));
    let b = Cursor::new(t("2024-03-04T17:00:00Z"), case(2));
    let cursor_now = || async { store.get_connection(&c.id).await.unwrap().unwrap().cursor };

    // From the stored position (no Case id yet) to a: ok
    store.commit_cursor(&c.id, &start, &a).await.unwrap();
    assert_eq!(cursor_now().await, a);

    // From a stale expectation: conflict, nothing changes
    let err = store.commit_cursor(&c.id, &start, &b).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(cursor_now().await, a);

    // Backwards, even from the right expectation: conflict, nothing changes
    let err = store
        .commit_cursor(&c.id, &a, &Cursor::at(t("2024-03-04T16:00:00Z")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(cursor_now().await, a);

    // Same second, later Case id: ok; committing the same position again is allowed
    store.commit_cursor(&c.id, &a, &b).await.unwrap();
    store.commit_cursor(&c.id, &b, &b).await.unwrap();
    assert_eq!(cursor_now().await, b);

    // An expectation that differs only in the Case id is still a conflict
    let err = store
        .commit_cursor(&c.id, &a, &Cursor::at(t("2024-03-06T00:00:00Z")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn of_two_workers_committing_the_same_page_exactly_one_wins() {
    let env = env("conn-race").await;
    let store = Arc::new(env.connections());
    let c = connection(t("2024-03-05T10:00:00Z"));
    store.insert_connection(&c).await.unwrap();
    for round in 0..5 {
        // Given the cursor at some position
        let expected = store.get_connection(&c.id).await.unwrap().unwrap().cursor;
        // When eight workers commit their page from it at once
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let (store, id, expected) = (store.clone(), c.id.clone(), expected.clone());
                let next = Cursor::new(
                    t("2024-03-04T17:00:00Z") + TimeDelta::minutes(round),
                    case(w),
                );
                tokio::spawn(async move {
                    let r = store.commit_cursor(&id, &expected, &next).await;
                    (next, r)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (next, result) = task.await.unwrap();
            match result {
                Ok(()) => winners.push(next),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        // Then exactly one succeeded, and the cursor is its
        assert_eq!(winners.len(), 1, "round {round}");
        assert_eq!(
            store.get_connection(&c.id).await.unwrap().unwrap().cursor,
            winners[0]
        );
    }
}

#[tokio::test]
async fn a_lease_is_held_until_it_expires_or_is_released() {
    let env = env("conn-lease").await;
    let store = env.connections();
    let c = connection(t("2024-03-05T10:00:00Z"));
    store.insert_connection(&c).await.unwrap();
    let now = t("2024-03-05T10:00:00Z");
    let until = now + TimeDelta::minutes(5);

    assert!(
        store
            .try_acquire_lease(&c.id, "w1", now, until)
            .await
            .unwrap()
    );
    // Someone else, before expiry: refused
    assert!(
        !store
            .try_acquire_lease(&c.id, "w2", now + TimeDelta::minutes(4), until)
            .await
            .unwrap()
    );
    // The holder again (extending): granted
    assert!(
        store
            .try_acquire_lease(
                &c.id,
                "w1",
                now + TimeDelta::minutes(1),
                until + TimeDelta::minutes(1)
            )
            .await
            .unwrap()
    );
    // A release by someone else changes nothing
    store.release_lease(&c.id, "w2").await.unwrap();
    assert!(
        !store
            .try_acquire_lease(&c.id, "w2", now + TimeDelta::minutes(5), until)
            .await
            .unwrap()
    );
    // At expiry, someone else gets it
    let later = until + TimeDelta::minutes(1);
    assert!(
        store
            .try_acquire_lease(&c.id, "w2", later, later + TimeDelta::minutes(5))
            .await
            .unwrap()
    );
    // Released by its holder: free for anyone
    store.release_lease(&c.id, "w2").await.unwrap();
    assert!(
        store
            .try_acquire_lease(&c.id, "w3", later, later + TimeDelta::minutes(5))
            .await
            .unwrap()
    );
    // The lease is not part of the connection as the core sees it
    assert_eq!(store.get_connection(&c.id).await.unwrap(), Some(c));
}

#[tokio::test]
async fn of_workers_racing_for_a_free_lease_exactly_one_gets_it() {
    let env = env("conn-lease-race").await;
    let store = Arc::new(env.connections());
    let c = connection(t("2024-03-05T10:00:00Z"));
    store.insert_connection(&c).await.unwrap();
    let now = t("2024-03-05T10:00:00Z");
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (store, id) = (store.clone(), c.id.clone());
            tokio::spawn(async move {
                store
                    .try_acquire_lease(&id, &format!("w{w}"), now, now + TimeDelta::minutes(5))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 1);
}
