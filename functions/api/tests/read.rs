//! The read API over moto: channels, a channel's data points by last change with cursors,
//! pages cut by size, one data point by id, and every kind of bad input.

mod common;

use std::io::Read;
use std::time::Duration;

use casesync_core::data_point::DataPoint;
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionId, InstanceUrl, LoginUrl,
    QueueScope,
};
use casesync_core::ports::{ConnectionWriter, DataPointDeleter, DataPointWriter};
use chrono::Utc;
use common::{Answer, World, event, point, world};
use lambda_http::Body;
use serde_json::Value;

/// A connection feeding channel `support`, as the callback would store it.
async fn connection(w: &World) -> ConnectionId {
    let c = Connection::new(
        ConnectionId::new_random(),
        ChannelName::parse("support").unwrap(),
        LoginUrl::default(),
        InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
        ApiVersion::DEFAULT,
        QueueScope::All,
        BackfillWindow::Days30,
        Utc::now(),
    );
    w.connections.insert_connection(&c).await.unwrap();
    c.id
}

/// Past the read's visibility lag.
async fn settle() {
    tokio::time::sleep(common::VISIBILITY_LAG.to_std().unwrap() + Duration::from_millis(50)).await;
}

/// A request with extra headers.
async fn call_with(w: &World, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut json: Value = serde_json::from_str(&event("GET", path, None)).unwrap();
    for (k, v) in headers {
        json["headers"][*k] = Value::String((*v).to_owned());
    }
    w.call_event(&json.to_string()).await
}

/// Every page of the channel from `cursor` on: the points' ids, the omitted ids, the last cursor.
async fn drain(
    w: &World,
    query: &str,
    mut cursor: Option<String>,
) -> (Vec<Value>, Vec<Value>, String) {
    let mut points = Vec::new();
    let mut omitted = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/channels/support/data-points?cursor={c}&{query}"),
            None => format!("/channels/support/data-points?{query}"),
        };
        let r = w.call("GET", &path, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json["data_points"].as_array().unwrap().clone();
        let skipped = r.json["omitted"].as_array().unwrap().clone();
        let next = r.json["next_cursor"].as_str().unwrap().to_owned();
        let done = page.is_empty() && skipped.is_empty();
        points.extend(page);
        omitted.extend(skipped);
        if done {
            return (points, omitted, next);
        }
        cursor = Some(next);
    }
}

fn json_of(p: &DataPoint) -> Value {
    serde_json::from_slice(&p.encode().json).unwrap()
}

#[tokio::test]
async fn channels_are_listed_with_their_connections_and_points() {
    let w = world().await;
    let a = connection(&w).await;
    let b = connection(&w).await;
    w.seed_points(&a, 3).await;
    w.seed_points(&b, 2).await;

    let r = w.call("GET", "/channels", None).await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        serde_json::json!({"channels": [{"name": "support", "connections": 2, "data_points": 5}]})
    );
}

#[tokio::test]
async fn a_consumer_that_keeps_its_cursor_gets_every_create_and_update_in_change_order() {
    // Given points written one batch after another
    let w = world().await;
    let c = connection(&w).await;
    let first: Vec<DataPoint> = (0..7).map(|i| point(&c, i)).collect();
    for chunk in first.chunks(3) {
        w.data_points.upsert_data_points(chunk).await.unwrap();
    }
    settle().await;

    // When a consumer pages through with limit 2
    let (seen, omitted, cursor) = drain(&w, "limit=2", None).await;

    // Then it has every point once, as the export prints it, in change order
    assert!(omitted.is_empty());
    assert_eq!(seen.len(), 7);
    let ids: Vec<&str> = seen.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);
    for p in &first {
        assert!(seen.contains(&json_of(p)), "{} as exported", p.id);
    }

    // When points change and new ones arrive after it finished
    let mut updated = point(&c, 2);
    updated.subject = Some("Printer 2 is still on fire".into());
    updated.system_modstamp += chrono::TimeDelta::hours(1);
    let new = point(&c, 50);
    w.data_points
        .upsert_data_points(&[updated.clone(), new.clone(), point(&c, 3)])
        .await
        .unwrap();
    settle().await;
    let (later, _, _) = drain(&w, "limit=2", Some(cursor.clone())).await;

    // Then its cursor yields exactly those (the unchanged rewrite of point 3 is not news)
    assert_eq!(later.len(), 2, "{later:?}");
    assert!(later.contains(&json_of(&updated)));
    assert!(later.contains(&json_of(&new)));

    // And the same cursor with nothing new gives an empty page and a cursor to keep
    let (none, _, again) = drain(&w, "limit=2", Some(cursor)).await;
    assert_eq!(
        none.len(),
        2,
        "the cursor is not consumed: asking again gives the same"
    );
    assert!(!again.is_empty());
}

#[tokio::test]
async fn changed_since_and_connection_filter_the_same_order() {
    let w = world().await;
    let a = connection(&w).await;
    let b = connection(&w).await;
    w.seed_points(&a, 2).await;
    settle().await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    w.seed_points(&b, 3).await;
    w.data_points
        .upsert_data_points(&[point(&a, 9)])
        .await
        .unwrap();
    settle().await;

    let since = between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (recent, _, _) = drain(&w, &format!("changed_since={since}"), None).await;
    assert_eq!(recent.len(), 4);
    let (of_a, _, _) = drain(&w, &format!("connection={a}"), None).await;
    assert_eq!(of_a.len(), 3);
    assert!(of_a.iter().all(|p| p["connection_id"] == a.as_str()));
    let (both, _, _) = drain(&w, &format!("connection={a}&changed_since={since}"), None).await;
    assert_eq!(both.len(), 1);
    assert_eq!(both[0], json_of(&point(&a, 9)));
}

#[tokio::test]
async fn pages_are_cut_by_size_and_a_point_too_large_for_any_page_is_fetched_whole() {
    // Given points of ~1.4 MB of JSON each (escaping doubles the quotes), and one whose
    // escaped JSON is over any page's budget
    let w = world().await;
    let c = connection(&w).await;
    let quoted = "\"quoted\" \\ ".repeat(60_000); // 720 KB of text, ~1.4 MB escaped twice
    let mut points: Vec<DataPoint> = (0..6)
        .map(|i| {
            let mut p = point(&c, i);
            p.conversation[0].text = quoted.clone();
            p
        })
        .collect();
    let mut huge = point(&c, 99);
    // 5 MB of text, over 6 MB as a JSON string in a response.
    huge.conversation[0].text = "He said \"no\". ".repeat(360_000);
    points.push(huge.clone());
    for p in &points {
        w.data_points
            .upsert_data_points(std::slice::from_ref(p))
            .await
            .unwrap();
    }
    settle().await;

    // When a consumer pages through
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    let mut seen = Vec::new();
    let mut omitted = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/channels/support/data-points?cursor={c}"),
            None => "/channels/support/data-points".to_owned(),
        };
        let r = w.call("GET", &path, None).await;
        assert_eq!(r.status, 200);
        // Then no response is over Lambda's limit, counting JSON-string escaping
        let body = match r.response.body() {
            Body::Text(t) => t.clone(),
            other => panic!("a text body, got {other:?}"),
        };
        let escaped = casesync_core::data_point::escaped_len(body.as_bytes());
        assert!(escaped < 6 * 1024 * 1024, "page of {escaped} bytes escaped");
        let page = r.json["data_points"].as_array().unwrap().clone();
        let skipped = r.json["omitted"].as_array().unwrap().clone();
        if page.is_empty() && skipped.is_empty() {
            break;
        }
        pages += 1;
        seen.extend(page);
        omitted.extend(skipped);
        cursor = Some(r.json["next_cursor"].as_str().unwrap().to_owned());
    }
    // and every point arrives whole, the huge one marked in its place
    assert!(pages >= 2, "the points do not fit one page");
    assert_eq!(seen.len(), 6);
    for p in &points[..6] {
        assert!(seen.contains(&json_of(p)));
    }
    assert_eq!(omitted.len(), 1);
    assert_eq!(omitted[0]["id"], huge.id.as_str());
    let href = omitted[0]["href"].as_str().unwrap().to_owned();
    assert_eq!(href, format!("/data-points/{}", huge.id));

    // When it fetches that one, taking gzip
    let r = call_with(&w, &href, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let Body::Binary(compressed) = r.response.body() else {
        panic!("a binary body");
    };
    assert!((compressed.len() as u64).div_ceil(3) * 4 < 6 * 1024 * 1024);
    let mut json = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut json)
        .unwrap();
    // Then it is intact, byte for byte
    assert_eq!(json.as_bytes(), huge.encode().json.as_slice());

    // And a client that does not take gzip is told what to do
    let r = w.call("GET", &href, None).await;
    let message = r.error(413, "too_large");
    assert!(message.contains("Accept-Encoding: gzip"), "{message}");
}

#[tokio::test]
async fn a_data_point_is_read_by_its_id() {
    let w = world().await;
    let c = connection(&w).await;
    w.seed_points(&c, 2).await;
    let p = point(&c, 1);

    let r = w.call("GET", &format!("/data-points/{}", p.id), None).await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text.as_bytes(), p.encode().json.as_slice());
    assert_eq!(r.header("content-type"), Some("application/json"));

    // Gone with its connection's data
    w.data_points.delete_data_points(&c).await.unwrap();
    w.call("GET", &format!("/data-points/{}", p.id), None)
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_naming_the_parameter() {
    let w = world().await;
    let c = connection(&w).await;
    w.seed_points(&c, 3).await;
    settle().await;
    let first = w
        .call("GET", "/channels/support/data-points?limit=1", None)
        .await;
    let cursor = first.json["next_cursor"].as_str().unwrap().to_owned();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'a' { b'b' } else { b'a' };
    let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    let future = (Utc::now() + chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    let cases: Vec<(String, u16, &str)> = vec![
        ("/channels/support/data-points?limit=0".into(), 400, "limit"),
        (
            "/channels/support/data-points?limit=1000000".into(),
            400,
            "limit",
        ),
        (
            "/channels/support/data-points?limit=ten".into(),
            400,
            "limit",
        ),
        (
            "/channels/support/data-points?cursor=forged.cursor".into(),
            400,
            "cursor",
        ),
        (
            format!("/channels/support/data-points?cursor={tampered}"),
            400,
            "cursor",
        ),
        (
            format!("/channels/support/data-points?cursor={payload}"),
            400,
            "cursor",
        ),
        (
            format!(
                "/channels/support/data-points?cursor={cursor}&connection={}",
                ConnectionId::new_random()
            ),
            400,
            "cursor",
        ),
        (
            format!("/channels/billing/data-points?cursor={cursor}"),
            400,
            "cursor",
        ),
        (
            format!("/channels/support/data-points?changed_since={future}"),
            400,
            "changed_since",
        ),
        (
            "/channels/support/data-points?changed_since=yesterday".into(),
            400,
            "changed_since",
        ),
        (
            "/channels/support/data-points?connection=conn_nope".into(),
            400,
            "connection",
        ),
        (
            "/channels/support/data-points?colour=red".into(),
            400,
            "colour",
        ),
        (
            "/channels/support/data-points?limit=1&limit=2".into(),
            400,
            "limit",
        ),
        ("/channels/nothing-here/data-points".into(), 404, ""),
        ("/data-points/%22%3E%3Cscript%3E".into(), 404, ""),
        ("/data-points/..%2F..%2Fetc%2Fpasswd".into(), 404, ""),
        (
            "/data-points/6b0c1f3e-5a57-4c5e-9a0e-2f64c1c7d5a1".into(),
            404,
            "",
        ),
    ];
    for (path, status, field) in cases {
        let r = w.call("GET", &path, None).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        if status == 400 {
            assert_eq!(r.json["code"], "invalid_request", "{path}");
            assert_eq!(r.json["field"], field, "{path}: {}", r.text);
        } else {
            assert_eq!(r.json["code"], "not_found", "{path}");
        }
    }
    // Nothing changed meanwhile.
    let r = w.call("GET", "/channels", None).await;
    assert_eq!(r.json["channels"][0]["data_points"], 3);
}
