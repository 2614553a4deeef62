//! SqliteStore as a data point store: upserts follow `DataPoint::supersedes` exactly, pages are
//! atomic, exports page in Case id order.

mod common;

use casesync_core::data_point::DataPoint;
use casesync_core::domain::{CaseId, ConnectionId};
use casesync_core::memory::MemoryStore;
use casesync_core::ports::*;
use casesync_local::{CorruptRow, SqliteStore};
use chrono::TimeDelta;
use common::*;

fn counts(created: u64, updated: u64, unchanged: u64, stale: u64) -> UpsertCounts {
    UpsertCounts {
        created,
        updated,
        unchanged,
        stale,
    }
}

#[tokio::test]
async fn new_points_are_created_and_read_back_exactly() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let points: Vec<_> = (0..3)
        .map(|n| point(&conn, &case(n), secs(n as i64), 5_000))
        .collect();

    assert_eq!(
        store.upsert_data_points(&points).await.unwrap(),
        counts(3, 0, 0, 0)
    );
    for p in &points {
        assert_eq!(
            store
                .get_data_point(&conn, &p.case_id)
                .await
                .unwrap()
                .as_ref(),
            Some(p)
        );
        assert_eq!(revision(&store, &conn, &p.case_id), Some(1));
    }
    assert_eq!(store.count_data_points(&conn).await.unwrap(), 3);
    assert_eq!(store.point_writes(), 3);
    assert_eq!(
        store.upsert_data_points(&[]).await.unwrap(),
        counts(0, 0, 0, 0)
    );
}

#[tokio::test]
async fn an_unchanged_point_is_not_rewritten() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let p = small_point(&conn, 1, secs(10));
    store
        .upsert_data_points(std::slice::from_ref(&p))
        .await
        .unwrap();

    // A replay (lookback overlap): same modstamp, same content.
    assert_eq!(
        store
            .upsert_data_points(std::slice::from_ref(&p))
            .await
            .unwrap(),
        counts(0, 0, 1, 0)
    );
    assert_eq!(
        revision(&store, &conn, &p.case_id),
        Some(1),
        "row not rewritten"
    );
    assert_eq!(store.point_writes(), 1);
}

#[tokio::test]
async fn a_newer_version_replaces_the_stored_point() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let v1 = small_point(&conn, 1, secs(10));
    let mut v2 = small_point(&conn, 1, secs(20));
    v2.status = "Closed - Resolved".into();
    store.upsert_data_points(&[v1]).await.unwrap();

    assert_eq!(
        store.upsert_data_points(&[v2.clone()]).await.unwrap(),
        counts(0, 1, 0, 0)
    );
    assert_eq!(
        store.get_data_point(&conn, &v2.case_id).await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(revision(&store, &conn, &v2.case_id), Some(2));
    assert_eq!(store.point_writes(), 2);
}

#[tokio::test]
async fn equally_new_but_different_content_is_an_update() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let v1 = small_point(&conn, 1, secs(10));
    let mut v1b = v1.clone();
    v1b.subject = Some("mapping changed".into());
    store.upsert_data_points(&[v1]).await.unwrap();
    assert_eq!(
        store.upsert_data_points(&[v1b.clone()]).await.unwrap(),
        counts(0, 1, 0, 0)
    );
    assert_eq!(
        store.get_data_point(&conn, &v1b.case_id).await.unwrap(),
        Some(v1b)
    );
}

#[tokio::test]
async fn an_older_version_never_overwrites_a_newer_one() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let newer = small_point(&conn, 1, secs(20));
    let mut older = small_point(&conn, 1, secs(10));
    older.status = "Working".into();
    store
        .upsert_data_points(std::slice::from_ref(&newer))
        .await
        .unwrap();

    assert_eq!(
        store.upsert_data_points(&[older]).await.unwrap(),
        counts(0, 0, 0, 1)
    );
    assert_eq!(
        store.get_data_point(&conn, &newer.case_id).await.unwrap(),
        Some(newer)
    );
    assert_eq!(revision(&store, &conn, &case(1)), Some(1));
}

#[tokio::test]
async fn the_same_case_of_two_connections_is_two_points() {
    let (_dir, store) = temp_store();
    let (a, b) = (ConnectionId::new_random(), ConnectionId::new_random());
    let pa = small_point(&a, 1, secs(10));
    let pb = small_point(&b, 1, secs(5));
    assert_eq!(
        store
            .upsert_data_points(&[pa.clone(), pb.clone()])
            .await
            .unwrap(),
        counts(2, 0, 0, 0)
    );
    assert_eq!(store.get_data_point(&a, &case(1)).await.unwrap(), Some(pa));
    assert_eq!(store.get_data_point(&b, &case(1)).await.unwrap(), Some(pb));
    assert_eq!(store.get_data_point(&a, &case(2)).await.unwrap(), None);
}

/// Deterministic pseudo-random numbers for the differential test.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn random_batches_give_the_same_counts_and_contents_as_the_memory_store() {
    let (_dir, store) = temp_store();
    let memory = MemoryStore::new();
    let conns = [ConnectionId::new_random(), ConnectionId::new_random()];
    let mut rng = Lcg(7);
    for round in 0..60 {
        // Batches may hold the same Case twice, with older, equal or newer versions.
        let batch: Vec<DataPoint> = (0..rng.next(12))
            .map(|_| {
                let conn = &conns[rng.next(2) as usize];
                let mut p = small_point(conn, rng.next(15), secs(rng.next(4) as i64));
                if rng.next(3) == 0 {
                    p.priority = Some(format!("P{}", rng.next(2)));
                }
                p
            })
            .collect();
        let expected = memory.upsert_data_points(&batch).await.unwrap();
        let got = store.upsert_data_points(&batch).await.unwrap();
        assert_eq!(got, expected, "round {round}");
    }
    assert_eq!(
        store.point_writes(),
        memory
            .point_writes
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    for conn in &conns {
        let want: Vec<_> = memory
            .all_data_points()
            .into_iter()
            .filter(|p| &p.connection_id == conn)
            .collect();
        assert_eq!(
            store.list_data_points(conn, None, 1000).await.unwrap(),
            want
        );
        assert_eq!(
            store.count_data_points(conn).await.unwrap(),
            memory.count_data_points(conn).await.unwrap()
        );
    }
}

#[tokio::test]
async fn a_page_that_fails_midway_leaves_nothing_written() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    // Case 150 is stored with a corrupt modstamp, so the upsert fails when it reaches it, after
    // 149 points of its batch were written inside the transaction.
    store
        .upsert_data_points(&[small_point(&conn, 150, secs(0))])
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    raw.execute("UPDATE data_points SET system_modstamp = 'garbage'", [])
        .unwrap();

    let page: Vec<_> = (0..200).map(|n| small_point(&conn, n, secs(1))).collect();
    let err = store.upsert_data_points(&page).await.unwrap_err();
    let StoreError::Unexpected(e) = &err else {
        panic!("{err:?}")
    };
    let corrupt = e.downcast_ref::<CorruptRow>().expect("a CorruptRow");
    assert_eq!(corrupt.column, "system_modstamp");

    assert_eq!(
        store.count_data_points(&conn).await.unwrap(),
        1,
        "only case 150"
    );
    assert_eq!(store.get_data_point(&conn, &case(0)).await.unwrap(), None);
    assert_eq!(store.point_writes(), 1);

    // After repair, the same page goes through whole.
    raw.execute(
        "UPDATE data_points SET system_modstamp = '2024-03-04T17:00:00.000000000Z'",
        [],
    )
    .unwrap();
    assert_eq!(
        store.upsert_data_points(&page).await.unwrap(),
        counts(199, 1, 0, 0)
    );
}

#[tokio::test]
async fn a_corrupt_body_is_a_typed_error() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    store
        .upsert_data_points(&[small_point(&conn, 1, secs(0))])
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    // Broken JSON in a row written before compression; then compressed bytes that are not LZ4,
    // one whose length prefix claims 4 GB, and one that unpacks to something other than UTF-8.
    let breakages = [
        ("body = '{\"id\": 3', body_lz4 = NULL", "body"),
        ("body = '', body_lz4 = X'0A000000FFFFFFFF'", "body_lz4"),
        ("body = '', body_lz4 = X'FFFFFFFF10'", "body_lz4"),
        ("body = '', body_lz4 = X'0200000020FFFE'", "body_lz4"),
    ];
    for (set, column) in breakages {
        raw.execute(&format!("UPDATE data_points SET {set}"), [])
            .unwrap();
        let mut errors = vec![
            store.get_data_point(&conn, &case(1)).await.unwrap_err(),
            store.list_data_points(&conn, None, 10).await.unwrap_err(),
        ];
        // The export passes stored JSON through unparsed, but cannot pass broken compression.
        if column == "body_lz4" {
            errors.push(
                store
                    .list_data_point_json(&conn, None, 10)
                    .await
                    .unwrap_err(),
            );
        }
        for err in errors {
            let StoreError::Unexpected(e) = &err else {
                panic!("{err:?}")
            };
            let corrupt = e.downcast_ref::<CorruptRow>().unwrap();
            assert_eq!(corrupt.column, column, "{set}: {corrupt}");
        }
    }
}

#[tokio::test]
async fn bodies_are_stored_compressed_and_rows_written_before_still_read_as_they_were() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let p = point(&conn, &case(1), secs(0), 20_000);
    let json = serde_json::to_string(&p).unwrap();
    store
        .upsert_data_points(std::slice::from_ref(&p))
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    let stored = |raw: &rusqlite::Connection| -> (String, Option<Vec<u8>>) {
        raw.query_row("SELECT body, body_lz4 FROM data_points", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let (body, packed) = stored(&raw);
    assert_eq!(body, "");
    let packed = packed.expect("a compressed body");
    assert!(
        packed.len() * 4 < json.len(),
        "{} bytes stored for {} of JSON",
        packed.len(),
        json.len()
    );
    assert_eq!(
        store.get_data_point(&conn, &case(1)).await.unwrap(),
        Some(p.clone())
    );
    let exported = store.list_data_point_json(&conn, None, 10).await.unwrap();
    assert_eq!(
        exported,
        vec![(case(1), json.clone())],
        "the export's bytes"
    );

    // A row as schema version 3 wrote it: JSON text, nothing compressed.
    raw.execute("UPDATE data_points SET body = ?1, body_lz4 = NULL", [&json])
        .unwrap();
    assert_eq!(
        store.get_data_point(&conn, &case(1)).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.list_data_point_json(&conn, None, 10).await.unwrap(),
        vec![(case(1), json.clone())]
    );
    // Unchanged, it stays as it is; rewritten with a newer version, it is compressed.
    store
        .upsert_data_points(std::slice::from_ref(&p))
        .await
        .unwrap();
    assert_eq!(stored(&raw).0, json);
    let mut newer = p.clone();
    newer.system_modstamp = secs(1);
    newer.status = "Reopened".into();
    store.upsert_data_points(&[newer.clone()]).await.unwrap();
    let (body, packed) = stored(&raw);
    assert_eq!(body, "");
    assert!(packed.is_some());
    assert_eq!(
        store.get_data_point(&conn, &case(1)).await.unwrap(),
        Some(newer)
    );
}

#[tokio::test]
async fn export_pages_through_every_point_in_case_id_order() {
    let (_dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let other = ConnectionId::new_random();
    // Ids whose byte order differs from insertion order, with upper and lower case letters.
    let raw_ids = [
        "500xx000000zzzz",
        "500xx000000AAAA",
        "500xx0000000001",
        "500xx000000aaaa",
        "500xx000000ZZZZ",
        "500xx0000000000",
        "500xx000000mMmM",
        "500xx000000MmMm",
    ];
    let mut ids: Vec<CaseId> = raw_ids.iter().map(|s| CaseId::parse(s).unwrap()).collect();
    ids.extend((0..45).map(|n| case(n * 7919 % 1000)));
    for chunk in ids.chunks(10) {
        let points: Vec<_> = chunk
            .iter()
            .map(|c| point(&conn, c, secs(0), 300))
            .collect();
        store.upsert_data_points(&points).await.unwrap();
    }
    store
        .upsert_data_points(&[small_point(&other, 3, secs(0))])
        .await
        .unwrap();
    ids.sort();
    ids.dedup();

    let mut seen = Vec::new();
    let mut after: Option<CaseId> = None;
    loop {
        let page = store
            .list_data_points(&conn, after.as_ref(), 7)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().map(|p| p.case_id.clone());
        seen.extend(page.into_iter().map(|p| {
            assert_eq!(p.connection_id, conn);
            p.case_id
        }));
    }
    assert_eq!(seen, ids);
    assert_eq!(
        store.count_data_points(&conn).await.unwrap(),
        ids.len() as u64
    );
    assert!(
        store
            .list_data_points(&conn, None, 0)
            .await
            .unwrap()
            .is_empty()
    );

    // The raw JSON export pages the same way, and holds exactly the points.
    let mut raw = Vec::new();
    let mut after: Option<CaseId> = None;
    while let page @ [_, ..] = &store
        .list_data_point_json(&conn, after.as_ref(), 6)
        .await
        .unwrap()[..]
    {
        after = page.last().map(|(c, _)| c.clone());
        raw.extend(page.iter().cloned());
    }
    assert_eq!(raw.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(), ids);
    for (c, json) in &raw {
        let p: DataPoint = serde_json::from_str(json).unwrap();
        assert_eq!(&p, &point(&conn, c, secs(0), 300));
        assert_eq!(json, &serde_json::to_string(&p).unwrap());
    }

    // The memory store pages the same way.
    let memory = MemoryStore::new();
    for id in &ids {
        memory
            .upsert_data_points(&[point(&conn, id, secs(0), 300)])
            .await
            .unwrap();
    }
    let from = &ids[3];
    assert_eq!(
        store.list_data_points(&conn, Some(from), 5).await.unwrap(),
        memory.list_data_points(&conn, Some(from), 5).await.unwrap()
    );
}

#[tokio::test]
async fn deleting_a_connections_points_counts_them_and_spares_other_connections() {
    let (_dir, store) = temp_store();
    let (a, b) = (ConnectionId::new_random(), ConnectionId::new_random());
    let mut page: Vec<_> = (0..5).map(|n| small_point(&a, n, secs(0))).collect();
    page.push(small_point(&b, 1, secs(0)));
    store.upsert_data_points(&page).await.unwrap();

    assert_eq!(store.delete_data_points(&a).await.unwrap(), 5);
    assert_eq!(store.count_data_points(&a).await.unwrap(), 0);
    assert_eq!(store.count_data_points(&b).await.unwrap(), 1);
    assert_eq!(store.delete_data_points(&a).await.unwrap(), 0);
    // Re-importing after a delete creates again.
    assert_eq!(
        store.upsert_data_points(&page[..1]).await.unwrap(),
        counts(1, 0, 0, 0)
    );
}

#[tokio::test]
async fn points_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casesync.db");
    let conn = ConnectionId::new_random();
    let p = point(
        &conn,
        &case(1),
        secs(0) + TimeDelta::milliseconds(250),
        20_000,
    );
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .upsert_data_points(std::slice::from_ref(&p))
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.get_data_point(&conn, &p.case_id).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.upsert_data_points(&[p]).await.unwrap(),
        counts(0, 0, 1, 0),
        "the stored hash matches DataPoint::content_hash"
    );
}

#[tokio::test]
async fn a_version_3_database_is_upgraded_in_place_and_its_points_read_as_before() {
    let (dir, store) = temp_store();
    let conn = ConnectionId::new_random();
    let p = point(&conn, &case(1), secs(0), 8_000);
    let json = serde_json::to_string(&p).unwrap();
    store
        .upsert_data_points(std::slice::from_ref(&p))
        .await
        .unwrap();
    let path = store.path().to_owned();
    drop(store);
    // The database as version 3 left it: the JSON in `body`, no `body_lz4` column.
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(&format!(
            "UPDATE data_points SET body = '{}', body_lz4 = NULL; \
             ALTER TABLE data_points DROP COLUMN body_lz4; PRAGMA user_version = 3;",
            json.replace('\'', "''")
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, casesync_local::SCHEMA_VERSION);
    assert_eq!(
        store.get_data_point(&conn, &case(1)).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.list_data_point_json(&conn, None, 10).await.unwrap(),
        vec![(case(1), json)]
    );
    drop(dir);
}
