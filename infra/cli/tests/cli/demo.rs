//! `casesync demo` on a fresh clone: no terminal, CI=true, no client secret.

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_without_a_terminal_leaves_its_data_and_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("casesync-data");

    // When the demo runs
    let out = Casesync::new(&data, &["demo"]).output().await;

    // Then it exits 0 with a summary, three samples, where the data is and what to run next
    out.assert_code(0);
    for expected in [
        "closed Cases with their email threads",
        "Cases imported",
        "API calls",
        "Three of the data points",
        "participant",
        data.to_str().unwrap(),
        "Next:",
        "connections, cursors, last sync",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} missing: {out:?}"
        );
    }
    assert_eq!(out.stdout.matches("  Case ").count(), 3, "{out:?}");

    // And its connection stays, disconnected with the reason, with its data
    let status = Casesync::new(&data, &["status", "--json"]).output().await;
    status.assert_code(0);
    let status: Vec<serde_json::Value> = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["state"], "disconnected");
    assert!(
        status[0]["state_reason"]
            .as_str()
            .unwrap()
            .contains("simulator stopped")
    );
    let imported = status[0]["data_points"].as_u64().unwrap();
    assert!(imported > 20, "{status:?}");
    // A small org is read as one stream: the progress point is the cursor
    assert_eq!(status[0]["backfill_slices_left"], 0);
    assert_eq!(
        status[0]["progress_point"],
        status[0]["cursor"]["system_modstamp"]
    );
    let export = Casesync::new(&data, &["export"]).output().await;
    assert_eq!(export.stdout.lines().count() as u64, imported);

    // And a later sync does not fail on it
    let sync = Casesync::new(&data, &["sync"]).output().await;
    sync.assert_code(0);

    // And the demo runs again, replacing its previous connection and data (not doubling the
    // export), and leaving any other connection alone
    let first_id = status[0]["id"].as_str().unwrap().to_owned();
    let again = Casesync::new(&data, &["demo"]).output().await;
    again.assert_code(0);
    assert!(
        again
            .stderr
            .contains(&format!("Removed the previous demo connection {first_id}")),
        "{again:?}"
    );
    let status = Casesync::new(&data, &["status", "--json"]).output().await;
    let status: Vec<serde_json::Value> = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status.len(), 1);
    assert_ne!(status[0]["id"], first_id.as_str());
    let export = Casesync::new(&data, &["export"]).output().await;
    assert_eq!(export.stdout.lines().count() as u64, imported);
}
