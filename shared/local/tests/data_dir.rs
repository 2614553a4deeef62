//! DataDir: creation, checks and clear errors; the database's own open errors; and no secret in
//! any file but secrets.json.

mod common;

use std::os::unix::fs::PermissionsExt;

use casesync_core::domain::{ConnectionId, ConnectionState, Cursor};
use casesync_core::ports::*;
use casesync_local::{
    DATABASE_FILE, DataDir, DataDirError, OpenError, SCHEMA_VERSION, SQLITE_APPLICATION_ID,
    SqliteStore,
};
use common::*;
use secrecy::SecretString;

#[test]
fn a_missing_data_dir_is_created_private() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("a/b/casesync");
    let dir = DataDir::open(&path).unwrap();
    assert_eq!(dir.path(), path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(dir.database_path(), path.join("casesync.db"));
    assert_eq!(dir.secrets_path(), path.join("secrets.json"));
    // Opening it again is fine and changes nothing.
    DataDir::open(&path).unwrap();
    assert_eq!(
        std::fs::read_dir(&path).unwrap().count(),
        0,
        "no probe file is left"
    );
}

#[test]
fn a_file_in_place_of_the_data_dir_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = DataDir::open(&file).unwrap_err();
    assert!(matches!(err, DataDirError::NotADirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let err = DataDir::open(file.join("below")).unwrap_err();
    assert!(matches!(err, DataDirError::Create { .. }), "{err:?}");
}

#[test]
fn a_data_dir_that_cannot_be_written_is_a_clear_error() {
    // /proc refuses new files even to root.
    let err = DataDir::open("/proc").unwrap_err();
    assert!(matches!(err, DataDirError::NotWritable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("data dir /proc is not writable"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join(DATABASE_FILE),
        "these are my notes, not a database ".repeat(200),
    )
    .unwrap();
    let err = DataDir::open(root.path())
        .unwrap()
        .open_store()
        .unwrap_err();
    assert!(
        matches!(err, DataDirError::Database(OpenError::NotADatabase { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("is not a casesync database"),
        "{err}"
    );
}

#[test]
fn another_applications_sqlite_database_is_refused_and_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("casesync.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');")
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Foreign { .. }), "{err:?}");
    let db = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = db
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);

    let other = root.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("PRAGMA application_id = 1234;")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&other),
        Err(OpenError::Foreign {
            application_id: 1234,
            ..
        })
    ));
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("casesync.db");
    SqliteStore::open(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, OpenError::NewerSchema { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade casesync"), "{err}");
}

#[tokio::test]
async fn a_new_database_is_marked_versioned_in_wal_mode_and_reopens_with_its_data() {
    let root = tempfile::tempdir().unwrap();
    let dir = DataDir::open(root.path()).unwrap();
    let c = connection();
    {
        let stores = dir.open_stores().unwrap();
        stores.store.insert_connection(&c).await.unwrap();
    }
    let db = rusqlite::Connection::open(dir.database_path()).unwrap();
    let get = |pragma: &str| -> i64 {
        db.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(get("application_id"), SQLITE_APPLICATION_ID as i64);
    assert_eq!(get("user_version"), SCHEMA_VERSION);
    assert_eq!(get("page_size"), casesync_local::PAGE_SIZE as i64);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    let stores = dir.open_stores().unwrap();
    assert_eq!(stores.store.get_connection(&c.id).await.unwrap(), Some(c));
}

/// Every file in `dir` except secrets.json, byte for byte.
fn files_other_than_secrets(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "secrets.json")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_refresh_token_never_reaches_the_database_files() {
    const TOKEN: &[u8] = b"5Aep861.refresh.hunter2.9f8e7d6c5b4a";
    let root = tempfile::tempdir().unwrap();
    let dir = DataDir::open(root.path()).unwrap();
    let stores = dir.open_stores().unwrap();
    let c = connection();
    let token = SecretString::from(String::from_utf8(TOKEN.to_vec()).unwrap());

    // Everything a connect + sync + reauthorization does, with the token in play.
    stores.store.insert_connection(&c).await.unwrap();
    stores
        .secrets
        .put_refresh_token(&c.id, &token)
        .await
        .unwrap();
    assert!(
        stores
            .store
            .try_acquire_lease(&c.id, "me", secs(0), secs(60))
            .await
            .unwrap()
    );
    stores
        .store
        .upsert_data_points(&[small_point(&c.id, 1, secs(0))])
        .await
        .unwrap();
    let next = Cursor::new(c.cursor.system_modstamp, case(1));
    stores
        .store
        .commit_cursor(&c.id, &c.cursor, &next)
        .await
        .unwrap();
    stores
        .store
        .set_state(
            &c.id,
            ConnectionState::NeedsReauth,
            Some("refresh token refused"),
        )
        .await
        .unwrap();
    stores
        .secrets
        .put_refresh_token(&c.id, &token)
        .await
        .unwrap();
    stores.store.release_lease(&c.id, "me").await.unwrap();

    let files = files_other_than_secrets(dir.path());
    assert!(files.iter().any(|(name, _)| name == "casesync.db"));
    for (name, bytes) in &files {
        assert!(!contains(bytes, TOKEN), "the token is in {name}");
    }
    // The check can see a token: it is in secrets.json.
    assert!(contains(&std::fs::read(dir.secrets_path()).unwrap(), TOKEN));
    drop(stores);
    for (name, bytes) in files_other_than_secrets(dir.path()) {
        assert!(!contains(&bytes, TOKEN), "the token is in {name}");
    }
    let _ = ConnectionId::new_random();
}
