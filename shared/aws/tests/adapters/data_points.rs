use std::sync::Arc;
use std::time::Instant;

use casesync_aws::{DynamoDataPointStore, Metrics};
use casesync_core::data_point::DataPoint;
use casesync_core::domain::ConnectionId;
use casesync_core::memory::MemoryStore;
use casesync_core::ports::{DataPointDeleter, DataPointReader, DataPointWriter, UpsertCounts};

use crate::common::*;

fn counts(created: u64, updated: u64, unchanged: u64, stale: u64) -> UpsertCounts {
    UpsertCounts {
        created,
        updated,
        unchanged,
        stale,
    }
}

#[tokio::test]
async fn upserts_reads_and_deletes_match_the_memory_store() {
    // Given the same sequence of upserts on DynamoDB and in memory
    let env = env("dp-contract").await;
    let dynamo = env.data_points();
    let memory = MemoryStore::new();
    let (c1, c2) = (ConnectionId::new_random(), ConnectionId::new_random());
    let v1: Vec<DataPoint> = (0..30)
        .map(|i| point(&c1, &case(i), "2024-03-04T17:00:00Z", "v1"))
        .collect();
    let other = vec![point(
        &c2,
        &case(0),
        "2024-03-04T17:00:00Z",
        "other connection",
    )];
    let mut mixed = Vec::new();
    for (i, unchanged) in v1.iter().enumerate() {
        mixed.push(match i % 4 {
            0 => point(&c1, &case(i), "2024-03-04T18:00:00Z", "v2"), // newer
            1 => point(&c1, &case(i), "2024-03-04T17:00:00Z", "v1 edited"), // same stamp, new content
            2 => point(&c1, &case(i), "2024-03-04T16:00:00Z", "v0"),        // older
            _ => unchanged.clone(),                                         // unchanged
        });
    }
    mixed.push(point(&c1, &case(40), "2024-03-04T17:00:00Z", "new"));
    // the same Case twice in one batch: applied in order
    mixed.push(point(&c1, &case(41), "2024-03-04T17:00:00Z", "first"));
    mixed.push(point(&c1, &case(41), "2024-03-04T19:00:00Z", "second"));
    let batches = [v1.clone(), other, mixed];

    for batch in &batches {
        let expected = memory.upsert_data_points(batch).await.unwrap();
        let got = dynamo.upsert_data_points(batch).await.unwrap();
        // Then each upsert reports the same counts
        assert_eq!(got, expected);
    }

    // and every read agrees
    for c in [&c1, &c2] {
        assert_eq!(
            dynamo.count_data_points(c).await.unwrap(),
            memory.count_data_points(c).await.unwrap()
        );
        assert_eq!(
            dynamo.list_data_points(c, None, 1000).await.unwrap(),
            memory.list_data_points(c, None, 1000).await.unwrap()
        );
        for (after, limit) in [
            (None, 7),
            (Some(case(5)), 10),
            (Some(case(41)), 10),
            (None, 0),
        ] {
            assert_eq!(
                dynamo
                    .list_data_points(c, after.as_ref(), limit)
                    .await
                    .unwrap(),
                memory
                    .list_data_points(c, after.as_ref(), limit)
                    .await
                    .unwrap(),
                "after {after:?} limit {limit}"
            );
        }
    }
    for i in [0, 1, 2, 3, 40, 41, 99] {
        assert_eq!(
            dynamo.get_data_point(&c1, &case(i)).await.unwrap(),
            memory.get_data_point(&c1, &case(i)).await.unwrap(),
            "case {i}"
        );
    }

    // Deleting one connection's points leaves the other's
    assert_eq!(dynamo.delete_data_points(&c1).await.unwrap(), 32);
    assert_eq!(dynamo.count_data_points(&c1).await.unwrap(), 0);
    assert_eq!(dynamo.count_data_points(&c2).await.unwrap(), 1);
    assert_eq!(dynamo.delete_data_points(&c1).await.unwrap(), 0);
}

#[tokio::test]
async fn unchanged_points_are_not_rewritten() {
    let env = env("dp-unchanged").await;
    let metrics = Arc::new(Metrics::new());
    let store = env.data_points().with_metrics(metrics.clone());
    let c = ConnectionId::new_random();
    let points: Vec<_> = (0..60)
        .map(|i| point(&c, &case(i), "2024-03-04T17:00:00Z", "v1"))
        .collect();
    store.upsert_data_points(&points).await.unwrap();

    // When the same points arrive again (a lookback sweep, a replay)
    let before = metrics.snapshot();
    let got = store.upsert_data_points(&points).await.unwrap();
    let used = metrics.snapshot() - before;

    // Then nothing is written: only the heads are read
    assert_eq!(got, counts(0, 0, 60, 0));
    assert_eq!(used.dynamodb_write_calls(), 0, "{used:?}");
    assert_eq!(used.batch_get_item_calls, 1);

    // and one changed point is one item written
    let mut changed = points.clone();
    changed[7] = point(&c, &case(7), "2024-03-04T18:00:00Z", "v2");
    let before = metrics.snapshot();
    assert_eq!(
        store.upsert_data_points(&changed).await.unwrap(),
        counts(0, 1, 59, 0)
    );
    let used = metrics.snapshot() - before;
    assert_eq!(used.batch_write_item_calls, 1);
    assert_eq!(used.batch_write_item_requests, 1);
}

#[tokio::test]
async fn a_thousand_points_take_ten_reads_and_forty_batch_writes() {
    let env = env("dp-1000").await;
    let metrics = Arc::new(Metrics::new());
    let store = env.data_points().with_metrics(metrics.clone());
    let c = ConnectionId::new_random();
    let points: Vec<_> = (0..1000)
        .map(|i| point(&c, &case(i), "2024-03-04T17:00:00Z", "v1"))
        .collect();

    let started = Instant::now();
    let got = store.upsert_data_points(&points).await.unwrap();
    let elapsed = started.elapsed();
    let used = metrics.snapshot();
    eprintln!(
        "1,000 points: {elapsed:?}; {} BatchWriteItem, {} BatchGetItem, {} retries",
        used.batch_write_item_calls, used.batch_get_item_calls, used.retries
    );

    assert_eq!(got, counts(1000, 0, 0, 0));
    // 1,000 / 100 head reads and 1,000 / 25 batch writes; nothing left unprocessed by moto
    assert_eq!(used.retries, 0);
    assert_eq!(used.batch_get_item_calls, 10);
    assert_eq!(used.batch_write_item_calls, 40);
    assert_eq!(
        used.batch_write_item_requests, 1000,
        "small points have no parts"
    );
    assert_eq!(store.count_data_points(&c).await.unwrap(), 1000);
    let listed = store.list_data_points(&c, None, 2000).await.unwrap();
    assert_eq!(listed, points);
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    // Given the newer version of each Case stored (a lookback re-read or a redelivered page
    // brings older ones back later)
    let env = env("dp-stale").await;
    let store = env.data_points();
    let c = ConnectionId::new_random();
    let cases: Vec<_> = (0..30).map(case).collect();
    let newer: Vec<_> = cases
        .iter()
        .map(|k| point(&c, k, "2024-03-05T10:30:00Z", "newer"))
        .collect();
    store.upsert_data_points(&newer).await.unwrap();
    // When older versions arrive, mixed with one Case twice in one batch
    let mut older: Vec<_> = cases
        .iter()
        .map(|k| point(&c, k, "2024-03-05T10:00:00Z", "older"))
        .collect();
    older.push(point(&c, &cases[0], "2024-03-05T09:00:00Z", "oldest"));
    let got = store.upsert_data_points(&older).await.unwrap();
    // Then none is written and every Case stays at its newest version
    assert_eq!(got, counts(0, 0, 0, 31));
    for (k, want) in cases.iter().zip(&newer) {
        assert_eq!(
            store.get_data_point(&c, k).await.unwrap().as_ref(),
            Some(want)
        );
    }
}

#[tokio::test]
async fn a_five_megabyte_thread_round_trips_in_items_under_the_limit() {
    let env = env("dp-large").await;
    let metrics = Arc::new(Metrics::new());
    let store = env.data_points().with_metrics(metrics.clone());
    let c = ConnectionId::new_random();

    // Given a 5 MB email thread, and small neighbours on both sides
    let mut big = point(&c, &case(5), "2024-03-04T17:00:00Z", "big");
    big.conversation = big_thread(5 * 1024 * 1024, 1);
    let json_len = serde_json::to_vec(&big).unwrap().len();
    assert!(json_len > 5 * 1024 * 1024);
    let small: Vec<_> = [4, 6]
        .iter()
        .map(|&i| point(&c, &case(i), "2024-03-04T17:00:00Z", "small"))
        .collect();
    let mut batch = small.clone();
    batch.push(big.clone());
    store.upsert_data_points(&batch).await.unwrap();

    // Then it reads back intact, alone and in a listing
    assert_eq!(
        store.get_data_point(&c, &case(5)).await.unwrap().as_ref(),
        Some(&big)
    );
    let listed = store.list_data_points(&c, None, 10).await.unwrap();
    assert_eq!(
        listed,
        vec![small[0].clone(), big.clone(), small[1].clone()]
    );
    assert_eq!(
        store.list_data_points(&c, Some(&case(4)), 1).await.unwrap(),
        vec![big.clone()]
    );
    assert_eq!(store.count_data_points(&c).await.unwrap(), 3);

    // and every stored item is under DynamoDB's limit, the body split over several parts
    let items = raw_items(&env, &c).await;
    let sizes: Vec<usize> = items.iter().map(item_size).collect();
    eprintln!("5 MB thread ({json_len} bytes of JSON): item sizes {sizes:?}");
    assert!(sizes.iter().all(|&s| s < ITEM_LIMIT), "{sizes:?}");
    let parts = items.iter().filter(|i| i.contains_key("part_of")).count();
    assert!(parts >= 2, "expected a split body, got {parts} parts");
    assert_eq!(items.len(), 3 + parts);

    // When a newer version replaces it, the old parts are deleted
    let mut bigger = big.clone();
    bigger.system_modstamp = t("2024-03-04T18:00:00Z");
    bigger.conversation = big_thread(5 * 1024 * 1024, 2);
    assert_eq!(
        store.upsert_data_points(&[bigger.clone()]).await.unwrap(),
        counts(0, 1, 0, 0)
    );
    assert_eq!(
        store.get_data_point(&c, &case(5)).await.unwrap().as_ref(),
        Some(&bigger)
    );
    let items = raw_items(&env, &c).await;
    let part_sets: std::collections::BTreeSet<String> = items
        .iter()
        .filter(|i| i.contains_key("part_of"))
        .filter_map(|i| {
            i.get("case_id")?
                .as_s()
                .ok()?
                .split('#')
                .nth(1)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        part_sets.len(),
        1,
        "superseded parts left behind: {part_sets:?}"
    );

    // and a small version of it goes back inline, leaving no parts at all
    let mut shrunk = bigger.clone();
    shrunk.system_modstamp = t("2024-03-04T19:00:00Z");
    shrunk.conversation.truncate(1);
    store.upsert_data_points(&[shrunk.clone()]).await.unwrap();
    assert_eq!(
        store.get_data_point(&c, &case(5)).await.unwrap().as_ref(),
        Some(&shrunk)
    );
    assert_eq!(raw_items(&env, &c).await.len(), 3);

    // Deleting the connection's points removes everything
    store
        .upsert_data_points(&[bigger_again(&bigger)])
        .await
        .unwrap();
    assert_eq!(store.delete_data_points(&c).await.unwrap(), 3);
    assert!(raw_items(&env, &c).await.is_empty());
}

fn bigger_again(p: &DataPoint) -> DataPoint {
    let mut p = p.clone();
    p.system_modstamp = t("2024-03-04T20:00:00Z");
    p
}

#[tokio::test]
async fn parts_of_a_head_that_never_got_written_are_ignored_and_deleted_with_the_rest() {
    // Given parts a crashed writer left without a head referring to them
    let env = env("dp-orphans").await;
    let store = env.data_points();
    let c = ConnectionId::new_random();
    let client = env.aws.dynamodb();
    for i in 0..2 {
        client
            .put_item()
            .table_name(&env.names.tables.data_points)
            .item("connection_id", AttributeValue::S(c.to_string()))
            .item(
                "case_id",
                AttributeValue::S(format!("{}#deadbeef#000{i}", case(3).as_str())),
            )
            .item("part_of", AttributeValue::S(case(3).to_string()))
            .item("body", AttributeValue::B(vec![0u8; 1000].into()))
            .send()
            .await
            .unwrap();
    }
    let p = point(&c, &case(3), "2024-03-04T17:00:00Z", "v1");
    store
        .upsert_data_points(std::slice::from_ref(&p))
        .await
        .unwrap();

    // Then reads see only the data point, and delete removes the orphans too
    assert_eq!(store.count_data_points(&c).await.unwrap(), 1);
    assert_eq!(store.list_data_points(&c, None, 10).await.unwrap(), vec![p]);
    assert_eq!(store.delete_data_points(&c).await.unwrap(), 1);
    assert!(raw_items(&env, &c).await.is_empty());
}

#[tokio::test]
async fn a_store_with_fast_retries_still_writes_everything_in_parallel() {
    // Given a store tuned for many parallel calls
    let env = env("dp-tuning").await;
    let store: DynamoDataPointStore = env.data_points().with_tuning(casesync_aws::Tuning {
        concurrency: 32,
        ..Default::default()
    });
    let c = ConnectionId::new_random();
    let points: Vec<_> = (0..300)
        .map(|i| point(&c, &case(i), "2024-03-04T17:00:00Z", "v1"))
        .collect();
    assert_eq!(
        store.upsert_data_points(&points).await.unwrap(),
        counts(300, 0, 0, 0)
    );
    assert_eq!(store.count_data_points(&c).await.unwrap(), 300);
}
