//! `casesync export`: JSONL is exactly the data point contract; CSV is one parseable row per Case.

use casesync_core::data_point::DataPoint;

use crate::support::*;

/// The contract's top-level fields, in its order.
const CONTRACT_FIELDS: [&str; 16] = [
    "id",
    "connection_id",
    "channel",
    "case_id",
    "case_number",
    "subject",
    "status",
    "priority",
    "origin",
    "type",
    "created_date",
    "system_modstamp",
    "salesforce_link",
    "participant",
    "content_source",
    "conversation",
];

async fn synced_env() -> (TestEnv, String, Vec<String>) {
    let (mut org, queue) = org_with_queue();
    let mut ids = closed_cases(&mut org, &queue, 3, 60);
    ids.push(closed_case(
        &mut org,
        &queue,
        minutes_ago(30),
        "=HYPERLINK(\"https://evil.example\",\"click\")",
    ));
    let env = TestEnv::start(org).await;
    let id = env.connect(&["--backfill", "7d"]).await;
    env.sync().await.assert_code(0);
    (env, id, ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonl_is_one_data_point_per_line_exactly_as_the_contract_says() {
    let (env, id, ids) = synced_env().await;

    let out = env.run(&["export", "--connection", &id]).await;

    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), ids.len());
    for line in lines {
        let raw: serde_json::Value = serde_json::from_str(line).unwrap();
        // Every field of the contract, and nothing else
        let keys: Vec<&str> = raw
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = CONTRACT_FIELDS.to_vec();
        expected.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, expected);
        // It reads as a DataPoint and writes back identically (formats included)
        let point: DataPoint = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_value(&point).unwrap(), raw);
        assert_eq!(serde_json::to_string(&point).unwrap(), line);
        assert_eq!(point.connection_id.as_str(), id);
        assert_eq!(point.conversation.len(), 2);
        assert_eq!(
            point.id,
            DataPoint::id_for(&point.connection_id, &point.case_id)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_is_one_parseable_row_per_case_and_formulas_are_defused() {
    let (env, _id, ids) = synced_env().await;

    let out = env.run(&["export", "--format", "csv"]).await;

    out.assert_code(0);
    let mut reader = csv::Reader::from_reader(out.stdout.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        casesync_cli::commands::export::CSV_COLUMNS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), ids.len());
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let jsonl = env.export().await;
    for row in &rows {
        let case = &row[col("case_id")];
        let point = jsonl.iter().find(|p| p["case_id"] == case).unwrap();
        assert_eq!(&row[col("id")], point["id"].as_str().unwrap());
        assert_eq!(
            &row[col("system_modstamp")],
            point["system_modstamp"].as_str().unwrap()
        );
        assert_eq!(&row[col("message_count")], "2");
        assert_eq!(&row[col("participant_email")], "jane@example.com");
        let transcript = &row[col("transcript")];
        assert!(transcript.contains("inbound, Jane Doe <jane@example.com>:\nHelp, please."));
        assert!(transcript.contains("outbound, Support <support@acme.test>:\nFixed."));
    }
    let formula = rows
        .iter()
        .find(|r| r[col("subject")].contains("HYPERLINK"))
        .unwrap();
    assert!(formula[col("subject")].starts_with("'="), "{formula:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_of_an_empty_data_dir_is_empty_and_a_closed_reader_is_not_an_error() {
    let (env, _id, _) = synced_env().await;
    let fresh = tempfile::tempdir().unwrap();
    let out = Casesync::new(&fresh.path().join("none"), &["export"])
        .output()
        .await;
    out.assert_code(0);
    assert!(out.stdout.is_empty());
    let csv = Casesync::new(&fresh.path().join("none"), &["export", "--format", "csv"])
        .output()
        .await;
    assert_eq!(
        csv.stdout.trim(),
        casesync_cli::commands::export::CSV_COLUMNS.join(",")
    );

    // `casesync export | head -c 10`: the reader leaves early
    let mut child = env.casesync(&["export"]).spawn();
    drop(child.stdout.take());
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_exports_in_the_order_points_last_changed_and_since_an_instant() {
    // Given a synced channel
    let (env, id, ids) = synced_env().await;
    let by_case = env.run(&["export", "--connection", &id]).await;
    let all = env.run(&["export", "--channel", "support"]).await;
    all.assert_code(0);
    // Then the channel holds the same lines, byte for byte (one contract, one encoder)
    let mut a: Vec<&str> = all.stdout.lines().collect();
    let mut b: Vec<&str> = by_case.stdout.lines().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(a.len(), ids.len());

    // When one Case is edited and another closed after an instant, and synced again
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let new = env.sim.with_org(|o| {
        o.update_case(&ids[1], |c| c.subject = Some("Case 1, edited".into()));
        o.touch(&ids[1], minutes_ago(7));
        let queue = o.queues().next().unwrap().id.as_str().to_owned();
        closed_case(o, &queue, minutes_ago(6), "A new one")
    });
    env.sync().await.assert_code(0);

    // Then exporting the channel since that instant gives exactly those two, in change order
    let out = env
        .run(&["export", "--channel", "support", "--changed-since", &since])
        .await;
    out.assert_code(0);
    let changed: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases: Vec<&str> = changed
        .iter()
        .map(|p| p["case_id"].as_str().unwrap())
        .collect();
    let mut expected = vec![ids[1].as_str(), new.as_str()];
    expected.sort();
    let mut got = cases.clone();
    got.sort();
    assert_eq!(got, expected, "{}", out.stdout);
    assert_eq!(
        changed
            .iter()
            .filter(|p| p["subject"] == "Case 1, edited")
            .count(),
        1
    );
    // and the whole channel lists them last
    let all = env.run(&["export", "--channel", "support"]).await;
    let last_two: Vec<String> = all
        .stdout
        .lines()
        .rev()
        .take(2)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["case_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut last_two_sorted = last_two.clone();
    last_two_sorted.sort();
    assert_eq!(last_two_sorted, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_export_refuses_bad_input_clearly() {
    let (env, _, _) = synced_env().await;
    let future = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    for (args, needle) in [
        (
            vec!["export", "--channel", "nothing-here"],
            "no connection feeds channel",
        ),
        (
            vec![
                "export",
                "--channel",
                "support",
                "--changed-since",
                "yesterday",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "export",
                "--channel",
                "support",
                "--changed-since",
                future.as_str(),
            ],
            "future",
        ),
        (
            vec!["export", "--changed-since", "2024-03-04T17:00:00Z"],
            "--channel",
        ),
    ] {
        let out = env.run(&args).await;
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
