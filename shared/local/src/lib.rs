//! casesync adapters for one machine: the ports of `casesync_core::ports` backed by an SQLite
//! database, a 0600 secrets file and an in-process work queue.
//!
//! Everything lives in one data dir (see [`DataDir`]):
//!
//! | file | what | written by |
//! |---|---|---|
//! | `casesync.db` (+ `-wal`, `-shm`) | connections, cursors, leases, run history, data points, pending OAuth flows | [`SqliteStore`] |
//! | `secrets.json` (mode 0600) | refresh tokens, nothing else | [`FileSecretStore`] |
//! | `secrets.lock` (mode 0600) | `flock` lock serialising writers of `secrets.json` | [`FileSecretStore`] |
//!
//! Several processes may use one data dir at once (two `casesync sync` runs, a `casesync status`
//! beside them): the database is in WAL mode, every read-modify-write is a `BEGIN IMMEDIATE`
//! transaction, the cursor commit is a compare-and-swap and leases are conditional, so a Case is
//! never imported twice and a cursor never moves backwards; secrets are replaced atomically under
//! an exclusive file lock.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use casesync_core::ports::{ConnectionReader, WorkItem, WorkQueue};
//! use casesync_local::{DataDir, LocalQueue};
//!
//! let dir = DataDir::open(DataDir::default_location().expect("HOME is set"))?;
//! let stores = dir.open_stores()?; // SqliteStore + FileSecretStore
//! let queue = LocalQueue::new();
//! for c in stores.store.list_connections().await? {
//!     queue
//!         .enqueue(&[WorkItem::tick(c.id, chrono::Utc::now())])
//!         .await?;
//! }
//! while let Some(item) = queue.pop() {
//!     // run the sync engine for item.connection_id with &stores.store and &stores.secrets
//!     # let _ = item;
//! }
//! # Ok(()) }
//! ```

mod data_dir;
mod queue;
mod secrets;
mod sqlite;

pub use data_dir::{
    DATABASE_FILE, DataDir, DataDirError, LocalStores, SECRETS_FILE, SECRETS_LOCK_FILE,
};
pub use queue::LocalQueue;
pub use secrets::{FileSecretStore, SecretFileError};
pub use sqlite::{
    CorruptRow, Lease, OpenError, PAGE_SIZE, RunHistoryEntry, SCHEMA_VERSION,
    SQLITE_APPLICATION_ID, SqliteOptions, SqliteStore, Synchronous,
};
