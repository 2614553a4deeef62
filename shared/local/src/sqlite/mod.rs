//! [`SqliteStore`]: every store port of the core in one SQLite database, `casesync.db`.
//!
//! # Concurrency
//! - Across processes: WAL journal mode (readers never block the writer), a busy timeout (a
//!   writer waits for another process's write transaction instead of failing), and a
//!   `BEGIN IMMEDIATE` transaction around every write, so a read-modify-write takes the write
//!   lock before it reads and can never act on a stale read. The cursor commit is a
//!   compare-and-swap, leases are conditional updates, data point upserts compare modstamps
//!   inside their transaction: two `casesync sync` processes neither import a Case twice nor
//!   move a cursor backwards.
//! - Inside a process: rusqlite is blocking, so each call runs on tokio's blocking pool
//!   (`spawn_blocking`) and never stalls an async worker thread. The store holds two SQLite
//!   connections, each behind a mutex: one for writes, one (`query_only`) for reads, so a status
//!   read is not queued behind a page write.
//!
//! # Durability
//! `synchronous = NORMAL` by default ([`Synchronous`]): a committed transaction survives a crash
//! of the process; a power loss may lose the last transactions. That never breaks an invariant
//! because data points and cursors live in the same write-ahead log, which is replayed in order:
//! if a page of data points is lost, so is every later cursor commit, and the Cases are fetched
//! again. Choose [`Synchronous::Full`] to fsync on every commit.

mod auth_states;
mod changes;
mod codec;
mod connections;
mod data_points;
mod leases;
mod runs;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use casesync_core::domain::ConnectionId;
use casesync_core::ports::{StoreError, StoreResult};
use casesync_core::sync::SyncReport;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use codec::CorruptRow;
pub(crate) use codec::json_error_position;
pub use schema::{SCHEMA_VERSION, SQLITE_APPLICATION_ID};

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path} is not a casesync database: it is not an SQLite database at all")]
    NotADatabase { path: PathBuf },
    #[error(
        "{path} is not a casesync database: it is an SQLite database of another application \
         (application_id {application_id:#x})"
    )]
    Foreign { path: PathBuf, application_id: i32 },
    #[error(
        "{path} was written by a newer casesync (schema version {found}; this build understands \
         up to {supported}): upgrade casesync"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path} is read-only: casesync needs to write its database")]
    ReadOnly { path: PathBuf },
    #[error(
        "{path} could not be switched to WAL mode (it stayed in {mode:?} mode); casesync needs \
         a local file system"
    )]
    NoWal { path: PathBuf, mode: String },
    #[error("{path} is busy: another casesync process held it longer than the busy timeout")]
    Busy {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot open the casesync database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// When SQLite fsyncs. See the module documentation for why `Normal` is safe for casesync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at checkpoints: survives a process crash, may lose the last commits on power loss.
    #[default]
    Normal,
    /// fsync on every commit.
    Full,
}

/// Tuning for [`SqliteStore::open_with`]; `SqliteOptions::default()` is what the CLI uses.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a write waits for another process's write transaction before failing with
    /// `StoreError::Unavailable`. Default 10 s.
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
    /// Checkpoint the write-ahead log into the database once it holds this many pages of
    /// [`PAGE_SIZE`] bytes. Default 1000 (16 MiB).
    pub wal_autocheckpoint_pages: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            synchronous: Synchronous::Normal,
            wal_autocheckpoint_pages: 1000,
        }
    }
}

/// The page size of a new database. Data points are ~1-30 KB of JSON: with 16 KiB pages most fit
/// in one or two pages instead of a chain of 4 KiB overflow pages, which measured about twice
/// as fast to write. (Only a new, empty database takes it; an existing one keeps its own.)
pub const PAGE_SIZE: u32 = 16 * 1024;

/// Past a checkpoint, the WAL file is truncated back to this size.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Who holds a connection's sync lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub until: DateTime<Utc>,
}

/// One recorded run from the `sync_runs` history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHistoryEntry {
    /// Increases with every run recorded in this database.
    pub seq: i64,
    pub connection_id: ConnectionId,
    pub report: SyncReport,
    /// How many Cases were still failing to map after the run.
    pub failures: u64,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// Data points created or rewritten through this instance (one per point), like
    /// `MemoryStore::point_writes`.
    point_writes: AtomicU64,
}

/// Every store port of `casesync_core::ports` except secrets and the work queue, on one SQLite
/// file: `ConnectionReader`, `ConnectionWriter`, `CursorStore`, `RunRecorder`, `LeaseStore`,
/// `DataPointWriter`, `DataPointReader`, `DataPointDeleter`, `AuthStateStore`.
///
/// Cheap to clone (the connections are shared). Its async methods need a tokio runtime (they
/// use `spawn_blocking`).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn open_connection(path: &Path, options: &SqliteOptions) -> Result<Connection, OpenError> {
    let err = schema::map_open_error(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.busy_timeout(options.busy_timeout).map_err(&err)?;
    // A no-op unless the database is still empty.
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(&err)?;
    // The first statement that reads the file: a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(&err)?;
    conn.pragma_update(None, "wal_autocheckpoint", options.wal_autocheckpoint_pages)
        .map_err(&err)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
        .map_err(&err)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` with default options, and creates
    /// or migrates its schema. Blocking: call it before the work starts, or in `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self, OpenError> {
        let path = path.as_ref();
        // Stores opening a fresh database at the same moment can meet SQLITE_BUSY where SQLite
        // does not wait (the new file's switch to WAL): try again within the busy timeout.
        let deadline = std::time::Instant::now() + options.busy_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match Self::open_once(path, options) {
                Err(OpenError::Busy { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path, options: &SqliteOptions) -> Result<Self, OpenError> {
        let mut writer = open_connection(path, options)?;
        schema::migrate(&mut writer, path)?;
        let reader = open_connection(path, options)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(schema::map_open_error(path))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                point_writes: AtomicU64::new(0),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Data points created or rewritten through this store instance since it was opened (one per
    /// point; unchanged and stale points are not counted).
    pub fn point_writes(&self) -> u64 {
        self.inner.point_writes.load(Ordering::Relaxed)
    }

    /// Runs `f` with the write connection on the blocking pool.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn, &inner)
        })
        .await
    }

    /// Runs `f` with the read-only connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let conn = inner.reader.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await
    }
}

async fn run_blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Unexpected(anyhow!(
            "the SQLite task was cancelled: {e}"
        ))),
    }
}

/// Maps an SQLite error: a lock held past the busy timeout is transient, the rest is not.
pub(crate) fn sql_error(
    what: impl std::fmt::Display,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        let transient = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        let e = anyhow::Error::new(e).context(what.to_string());
        if transient {
            StoreError::Unavailable(e)
        } else {
            StoreError::Unexpected(e)
        }
    }
}
