//! [`DataDir`]: the directory holding a casesync installation's state.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::secrets::{self, FileSecretStore};
use crate::sqlite::{OpenError, SqliteOptions, SqliteStore};

/// The database's name in the data dir (SQLite adds `casesync.db-wal` and `casesync.db-shm`).
pub const DATABASE_FILE: &str = "casesync.db";
/// The refresh tokens' file in the data dir (mode 0600).
pub const SECRETS_FILE: &str = secrets::FILE_NAME;
/// The lock file serialising writers of [`SECRETS_FILE`].
pub const SECRETS_LOCK_FILE: &str = secrets::LOCK_NAME;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path} could not be created: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data dir {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("data dir {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data dir {path} is not writable: {source}")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Database(#[from] OpenError),
}

/// A data dir, checked to be a writable directory: `DataDir::open`, then `open_stores`.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

/// The stores of one data dir.
#[derive(Debug, Clone)]
pub struct LocalStores {
    /// Connections, cursors, leases, runs, data points and pending OAuth flows.
    pub store: SqliteStore,
    /// Refresh tokens.
    pub secrets: FileSecretStore,
}

impl DataDir {
    /// Where the data dir lives when the user names none: `$XDG_DATA_HOME/casesync`, else
    /// `$HOME/.local/share/casesync`; `None` when neither variable is set (or both are
    /// relative paths, which the XDG spec says to ignore).
    pub fn default_location() -> Option<PathBuf> {
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        absolute("XDG_DATA_HOME")
            .map(|d| d.join("casesync"))
            .or_else(|| absolute("HOME").map(|h| h.join(".local/share/casesync")))
    }

    /// Opens the data dir at `path`, creating it (and missing parents) with mode 0700 if it does
    /// not exist, and checks that it is a directory this process can write to. An existing
    /// directory keeps its mode; a warning is logged when group or others may write to it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataDirError> {
        let given = path.as_ref();
        let path = std::path::absolute(given).map_err(|source| DataDirError::Unreadable {
            path: given.to_owned(),
            source,
        })?;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().mode() & 0o022 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{:04o}", meta.permissions().mode() & 0o7777),
                        "the data dir is writable by group or others"
                    );
                }
            }
            Ok(_) => return Err(DataDirError::NotADirectory { path }),
            // Not a directory: a parent is a file; creating fails with a clear message.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&path)
                    .map_err(|source| DataDirError::Create {
                        path: path.clone(),
                        source,
                    })?;
            }
            Err(source) => return Err(DataDirError::Unreadable { path, source }),
        }
        // Probe: the only reliable answer to "can I write here" (ACLs, read-only mounts).
        tempfile::Builder::new()
            .prefix(".casesync-write-probe.")
            .tempfile_in(&path)
            .map_err(|source| DataDirError::NotWritable {
                path: path.clone(),
                source,
            })?;
        Ok(Self { path })
    }

    /// The data dir (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<data dir>/casesync.db`.
    pub fn database_path(&self) -> PathBuf {
        self.path.join(DATABASE_FILE)
    }

    /// `<data dir>/secrets.json`.
    pub fn secrets_path(&self) -> PathBuf {
        self.path.join(SECRETS_FILE)
    }

    /// Opens (creating or migrating) `casesync.db`. Blocking.
    pub fn open_store(&self) -> Result<SqliteStore, DataDirError> {
        self.open_store_with(&SqliteOptions::default())
    }

    pub fn open_store_with(&self, options: &SqliteOptions) -> Result<SqliteStore, DataDirError> {
        Ok(SqliteStore::open_with(self.database_path(), options)?)
    }

    /// The refresh token store on `secrets.json` (nothing is touched until it is used).
    pub fn secret_store(&self) -> FileSecretStore {
        FileSecretStore::new(&self.path)
    }

    /// Both stores. Blocking (it opens the database).
    pub fn open_stores(&self) -> Result<LocalStores, DataDirError> {
        Ok(LocalStores {
            store: self.open_store()?,
            secrets: self.secret_store(),
        })
    }
}
