//! [`FileSecretStore`]: refresh tokens in `secrets.json`, mode 0600, replaced atomically.
//!
//! - Created with mode 0600 by `open(2)` itself (never chmod-ed afterwards, so there is no moment
//!   when another user could open it), in a temp file in the same directory that is fsynced,
//!   renamed over `secrets.json`, and followed by an fsync of the directory: a reader sees the
//!   old file or the new one, never half of one, even across a crash.
//! - Writers (put, delete) serialise on an exclusive `flock` of `secrets.lock`, so two processes
//!   cannot lose each other's update (read-modify-write). Readers take no lock: a rename is
//!   atomic. The lock is released by the kernel when its holder exits, even by a crash.
//! - A `secrets.json` that group or others may read or write, that another user owns, or that is
//!   a symlink or not a regular file is refused with a clear error instead of being used.
//! - Tokens are `SecretString`s; the file's bytes are wiped from memory after use and never reach
//!   an error message (a corrupt file is reported by line and column only) or a log.
//!
//! File format: `{"version": 1, "refresh_tokens": {"conn_…": "<token>", …}}`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use casesync_core::domain::ConnectionId;
use casesync_core::ports::{SecretStore, StoreError, StoreResult};
use rustix::fs::{FlockOperation, Mode, OFlags};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::sqlite::json_error_position;

/// The secrets file's name in the data dir.
pub(crate) const FILE_NAME: &str = "secrets.json";
/// The lock file's name in the data dir.
pub(crate) const LOCK_NAME: &str = "secrets.lock";
const FORMAT_VERSION: u32 = 1;
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the secrets file could not be used. No variant carries file content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error(
        "refusing to use the secrets file {path}: its mode {mode:04o} lets group or others read \
         or write it; it must be 0600 (if the file is yours and nobody else could have read it, \
         `chmod 600` it; otherwise revoke its tokens in Salesforce)"
    )]
    Insecure { path: PathBuf, mode: u32 },
    #[error(
        "refusing to use the secrets file {path}: it belongs to uid {owner}, not to this user \
         (uid {me})"
    )]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("refusing to use the secrets file {path}: it is not a regular file (a symlink?)")]
    NotAFile { path: PathBuf },
    #[error("the secrets file {path} is corrupt ({position}); its tokens cannot be read")]
    Corrupt { path: PathBuf, position: String },
    #[error(
        "the secrets file {path} has format version {found}, newer than this build understands \
         ({supported}): upgrade casesync"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("timed out after {waited:?} waiting for the lock {path} held by another process")]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl From<SecretFileError> for StoreError {
    fn from(e: SecretFileError) -> Self {
        match e {
            SecretFileError::LockTimeout { .. } => StoreError::Unavailable(e.into()),
            e => StoreError::Unexpected(e.into()),
        }
    }
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SecretFileError + 'a {
    move |source| SecretFileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Token(#[serde(with = "casesync_core::secret_serde")] SecretString);

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    version: u32,
    refresh_tokens: BTreeMap<String, Token>,
}

impl Default for SecretsFile {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            refresh_tokens: BTreeMap::new(),
        }
    }
}

/// Refresh tokens in `<dir>/secrets.json` (see the module documentation).
#[derive(Debug, Clone)]
pub struct FileSecretStore {
    dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    lock_timeout: Duration,
}

impl FileSecretStore {
    /// The store whose files are `secrets.json` and `secrets.lock` in `dir`. Touches nothing
    /// until used; `dir` must exist (see [`crate::DataDir`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            path: dir.join(FILE_NAME),
            lock_path: dir.join(LOCK_NAME),
            dir,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// How long a write waits for another process's write before failing with
    /// `StoreError::Unavailable`. Default 10 s.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// `<dir>/secrets.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the secrets file, if it exists, is safe and readable. Blocking; for the CLI's
    /// start-up checks (`casesync doctor`).
    pub fn check(&self) -> Result<(), SecretFileError> {
        self.load().map(drop)
    }

    /// Reads the whole file; a missing file is an empty one.
    fn load(&self) -> Result<SecretsFile, SecretFileError> {
        let path = &self.path;
        // O_NOFOLLOW: a symlink planted in place of the file is refused, not followed.
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(SecretsFile::default()),
            Err(rustix::io::Errno::LOOP) => {
                return Err(SecretFileError::NotAFile { path: path.clone() });
            }
            Err(e) => return Err(io_error("open", path)(e.into())),
        };
        let mut file = File::from(fd);
        // fstat of the open file: what is checked is what is read.
        let meta = file.metadata().map_err(io_error("inspect", path))?;
        if !meta.file_type().is_file() {
            return Err(SecretFileError::NotAFile { path: path.clone() });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(SecretFileError::WrongOwner {
                path: path.clone(),
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretFileError::Insecure {
                path: path.clone(),
                mode,
            });
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
        file.read_to_end(&mut bytes)
            .map_err(io_error("read", path))?;
        let parsed: SecretsFile =
            serde_json::from_slice(&bytes).map_err(|e| SecretFileError::Corrupt {
                path: path.clone(),
                position: json_error_position(&e),
            })?;
        if parsed.version > FORMAT_VERSION {
            return Err(SecretFileError::NewerFormat {
                path: path.clone(),
                found: parsed.version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(parsed)
    }

    /// Writes `contents` to a 0600 temp file beside the secrets file, fsyncs it, renames it over
    /// the secrets file and fsyncs the directory.
    fn store(&self, contents: &SecretsFile) -> Result<(), SecretFileError> {
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(contents).map_err(|e| {
            SecretFileError::Corrupt {
                path: self.path.clone(),
                position: format!("cannot serialise: {}", json_error_position(&e)),
            }
        })?);
        let mut tmp = tempfile::Builder::new()
            .prefix(".secrets.json.")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io_error("create a temporary file in", &self.dir))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_error("write", tmp.path()))?;
        tmp.persist(&self.path)
            .map_err(|e| io_error("replace", &self.path)(e.error))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync the directory", &self.dir))
    }

    /// Takes the writers' lock: an exclusive `flock` on `secrets.lock`, released when the
    /// returned file is dropped (or the process dies).
    fn lock(&self) -> Result<File, SecretFileError> {
        let path = &self.lock_path;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(io_error("open the lock file", path))?;
        let started = Instant::now();
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(file),
                Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => {
                    if started.elapsed() >= self.lock_timeout {
                        return Err(SecretFileError::LockTimeout {
                            path: path.clone(),
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io_error("lock", path)(e.into())),
            }
        }
    }

    /// Read-modify-write under the lock.
    fn update(&self, f: impl FnOnce(&mut SecretsFile) -> bool) -> Result<(), SecretFileError> {
        let _lock = self.lock()?;
        let mut contents = self.load()?;
        if f(&mut contents) {
            contents.version = FORMAT_VERSION;
            self.store(&contents)?;
        }
        Ok(())
    }

    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Self) -> Result<T, SecretFileError> + Send + 'static,
    {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || f(&this)).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unexpected(anyhow::anyhow!(
                "the secrets file task was cancelled: {e}"
            ))),
        }
    }
}

#[async_trait]
impl SecretStore for FileSecretStore {
    async fn get_refresh_token(&self, id: &ConnectionId) -> StoreResult<Option<SecretString>> {
        let id = id.clone();
        self.blocking(move |s| {
            Ok(s.load()?
                .refresh_tokens
                .remove(id.as_str())
                .map(|Token(t)| t))
        })
        .await
    }

    async fn put_refresh_token(&self, id: &ConnectionId, token: &SecretString) -> StoreResult<()> {
        let id = id.clone();
        let token = token.clone();
        self.blocking(move |s| {
            s.update(|file| {
                file.refresh_tokens
                    .insert(id.as_str().to_owned(), Token(token));
                true
            })
        })
        .await
    }

    async fn delete_refresh_token(&self, id: &ConnectionId) -> StoreResult<()> {
        let id = id.clone();
        self.blocking(move |s| s.update(|file| file.refresh_tokens.remove(id.as_str()).is_some()))
            .await
    }
}
