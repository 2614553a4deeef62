//! FileSecretStore: refresh tokens in a 0600 file, replaced atomically under a lock, never shown.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use casesync_core::domain::ConnectionId;
use casesync_core::ports::{SecretStore, StoreError};
use casesync_local::{FileSecretStore, SecretFileError};
use secrecy::{ExposeSecret, SecretString};

const TOKEN: &str = "5Aep861-refresh-token-hunter2-QWERTY";

fn token(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn secret_file_error(err: &StoreError) -> &SecretFileError {
    match err {
        StoreError::Unexpected(e) | StoreError::Unavailable(e) => e
            .downcast_ref::<SecretFileError>()
            .unwrap_or_else(|| panic!("not a SecretFileError: {err:?}")),
        _ => panic!("{err:?}"),
    }
}

fn assert_not_shown(err: &StoreError) {
    let shown = format!("{err} {err:#} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn tokens_are_stored_read_replaced_and_deleted_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::new(dir.path());
    let (a, b) = (ConnectionId::new_random(), ConnectionId::new_random());

    assert!(store.get_refresh_token(&a).await.unwrap().is_none());
    store
        .put_refresh_token(&a, &token("token-a"))
        .await
        .unwrap();
    store
        .put_refresh_token(&b, &token("token-b"))
        .await
        .unwrap();
    store
        .put_refresh_token(&a, &token("token-a2"))
        .await
        .unwrap();

    // A second instance (another process) reads the same file.
    let other = FileSecretStore::new(dir.path());
    let got = other.get_refresh_token(&a).await.unwrap().unwrap();
    assert_eq!(got.expose_secret(), "token-a2");
    assert_eq!(
        other
            .get_refresh_token(&b)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "token-b"
    );

    store.delete_refresh_token(&a).await.unwrap();
    store.delete_refresh_token(&a).await.unwrap();
    assert!(store.get_refresh_token(&a).await.unwrap().is_none());
    assert!(store.get_refresh_token(&b).await.unwrap().is_some());
}

#[tokio::test]
async fn the_secrets_file_and_its_lock_are_mode_0600_and_no_temp_file_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::new(dir.path());
    let id = ConnectionId::new_random();
    for i in 0..3 {
        store
            .put_refresh_token(&id, &token(&format!("{TOKEN}{i}")))
            .await
            .unwrap();
    }
    assert_eq!(store.path(), dir.path().join("secrets.json"));
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&dir.path().join("secrets.lock")), 0o600);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["secrets.json", "secrets.lock"]);
    let raw = std::fs::read_to_string(store.path()).unwrap();
    assert!(
        raw.contains(&format!("{TOKEN}2")),
        "the file holds the token itself"
    );
}

#[tokio::test]
async fn a_secrets_file_readable_by_others_is_refused_not_used_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::new(dir.path());
    let id = ConnectionId::new_random();
    store.put_refresh_token(&id, &token(TOKEN)).await.unwrap();
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::read(store.path()).unwrap();

    let err = store.get_refresh_token(&id).await.unwrap_err();
    assert!(
        matches!(
            secret_file_error(&err),
            SecretFileError::Insecure { mode: 0o644, .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("0644"), "{err}");
    assert!(err.to_string().contains("0600"), "{err}");
    assert_not_shown(&err);

    let err = store
        .put_refresh_token(&id, &token("new"))
        .await
        .unwrap_err();
    assert!(matches!(
        secret_file_error(&err),
        SecretFileError::Insecure { .. }
    ));
    assert_eq!(std::fs::read(store.path()).unwrap(), before);
    assert_eq!(
        mode(store.path()),
        0o644,
        "never chmod-ed behind the user's back"
    );

    for m in [0o640, 0o604, 0o620, 0o602] {
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(m)).unwrap();
        assert!(store.get_refresh_token(&id).await.is_err(), "{m:o}");
    }
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(store.get_refresh_token(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_symlink_in_place_of_the_secrets_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&elsewhere)
        .unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("secrets.json")).unwrap();
    let store = FileSecretStore::new(dir.path());
    let err = store
        .get_refresh_token(&ConnectionId::new_random())
        .await
        .unwrap_err();
    assert!(matches!(
        secret_file_error(&err),
        SecretFileError::NotAFile { .. }
    ));
}

#[tokio::test]
async fn a_corrupt_secrets_file_is_reported_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    for content in [
        format!(r#"{{"version": 1, "refresh_tokens": {{"conn_x": "{TOKEN}""#),
        format!(r#"{{"version": 1, "refresh_tokens": ["{TOKEN}"]}}"#),
        format!(r#"{{"version": 1, "refresh_tokens": {{"a": 1}}, "x": "{TOKEN}"}}"#),
    ] {
        let _ = std::fs::remove_file(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, content.as_bytes()))
            .unwrap();
        let store = FileSecretStore::new(dir.path());
        let err = store
            .get_refresh_token(&ConnectionId::new_random())
            .await
            .unwrap_err();
        assert!(
            matches!(secret_file_error(&err), SecretFileError::Corrupt { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_not_shown(&err);
    }
}

#[tokio::test]
async fn a_secrets_file_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, br#"{"version": 2, "refresh_tokens": {}}"#)
        })
        .unwrap();
    let err = FileSecretStore::new(dir.path())
        .get_refresh_token(&ConnectionId::new_random())
        .await
        .unwrap_err();
    assert!(matches!(
        secret_file_error(&err),
        SecretFileError::NewerFormat { found: 2, .. }
    ));
}

#[test]
fn writers_in_parallel_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    const THREADS: usize = 6;
    const EACH: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (barrier, path) = (barrier.clone(), dir.path().to_owned());
            std::thread::spawn(move || {
                // Own instance, own lock file descriptor: flock excludes it like another process.
                let store = FileSecretStore::new(path);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                barrier.wait();
                (0..EACH)
                    .map(|i| {
                        let id = ConnectionId::new_random();
                        rt.block_on(store.put_refresh_token(&id, &token(&format!("{t}-{i}"))))
                            .unwrap();
                        (id, format!("{t}-{i}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let written: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let store = FileSecretStore::new(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (id, value) in &written {
        let got = rt.block_on(store.get_refresh_token(id)).unwrap();
        assert_eq!(
            got.map(|s| s.expose_secret().to_owned()).as_ref(),
            Some(value)
        );
    }
    assert_eq!(written.len(), THREADS * EACH);
}

#[tokio::test]
async fn a_writer_gives_up_with_a_transient_error_when_another_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.path().join("secrets.lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let store = FileSecretStore::new(dir.path()).with_lock_timeout(Duration::from_millis(100));
    let id = ConnectionId::new_random();
    let err = store
        .put_refresh_token(&id, &token(TOKEN))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(
        secret_file_error(&err),
        SecretFileError::LockTimeout { .. }
    ));
    // Readers do not wait for the lock.
    assert!(store.get_refresh_token(&id).await.unwrap().is_none());

    drop(lock);
    store.put_refresh_token(&id, &token(TOKEN)).await.unwrap();
}

#[test]
fn the_store_debug_output_holds_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::new(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(store.put_refresh_token(&ConnectionId::new_random(), &token(TOKEN)))
        .unwrap();
    assert!(!format!("{store:?}").contains("hunter2"));
}
