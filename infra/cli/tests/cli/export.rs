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
