//! App wiring: the data dir and its stores, the Salesforce clients, the sync engine. Built once
//! per command and handed to it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use casesync_core::domain::{Connection, ConnectionId};
use casesync_core::manage::{ManageError, Manager, Policy};
use casesync_core::ports::{ConnectionReader, SystemClock};
use casesync_core::salesforce::{HttpSettings, OAuthApp, Salesforce};
use casesync_core::sync::{SyncConfig, SyncEngine};
use casesync_local::{DATABASE_FILE, DataDir, FileSecretStore, SqliteStore};
use secrecy::SecretString;

use crate::cli::CLIENT_SECRET_ENV;
use crate::error::{CliError, Context, failed};

/// How long `casesync delete` waits for a sync running in another process to stop.
const DELETE_WAIT: Duration = Duration::from_secs(30);

/// An open data dir.
pub struct App {
    pub data_dir: DataDir,
    pub store: SqliteStore,
    pub secrets: FileSecretStore,
}

impl App {
    /// Opens the data dir at `path`, creating it (mode 0700) and its database if needed.
    pub async fn create(path: &Path) -> Result<Self, CliError> {
        let path = path.to_owned();
        // Opening creates or migrates the database: blocking work.
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| crate::error::failed!("opening the data dir: {e}"))?
    }

    /// Opens the data dir at `path` if it holds a casesync database; `None` (and nothing
    /// created) otherwise.
    pub async fn existing(path: &Path) -> Result<Option<Self>, CliError> {
        if !path.join(DATABASE_FILE).is_file() {
            return Ok(None);
        }
        Self::create(path).await.map(Some)
    }

    fn open_blocking(path: &Path) -> Result<Self, CliError> {
        let data_dir = DataDir::open(path).context("opening the data dir")?;
        let stores = data_dir.open_stores().context("opening the data dir")?;
        Ok(Self {
            data_dir,
            store: stores.store,
            secrets: stores.secrets,
        })
    }

    pub fn path(&self) -> &Path {
        self.data_dir.path()
    }

    /// The stored connection `id`; a one-line input error when there is none.
    pub async fn connection(&self, id: &ConnectionId) -> Result<Connection, CliError> {
        self.store
            .get_connection(id)
            .await
            .context("reading the connection")?
            .ok_or_else(|| unknown_connection(id, self.path()))
    }

    /// The engine that syncs this data dir's connections with `salesforce`.
    pub fn engine(&self, salesforce: Salesforce) -> SyncEngine {
        self.engine_with(salesforce, SyncConfig::default())
    }

    /// [`App::engine`] with another tuning (`sync --batch-size`).
    pub fn engine_with(&self, salesforce: Salesforce, config: SyncConfig) -> SyncEngine {
        SyncEngine::new(
            Arc::new(self.store.clone()),
            Arc::new(self.store.clone()),
            Arc::new(self.secrets.clone()),
            Arc::new(SystemClock),
            salesforce,
            config,
        )
    }

    /// The connection use cases on this data dir, talking to Salesforce through `salesforce`.
    pub fn manager(&self, salesforce: Salesforce) -> Manager {
        Manager {
            connections: Arc::new(self.store.clone()),
            data_points: Arc::new(self.store.clone()),
            auth_states: Arc::new(self.store.clone()),
            secrets: Arc::new(self.secrets.clone()),
            salesforce,
            clock: Arc::new(SystemClock),
            policy: Policy {
                // Whoever types a loopback login URL runs both ends (the simulator).
                allow_loopback_login: true,
                delete_wait: DELETE_WAIT,
                ..Policy::default()
            },
            actor: "the casesync CLI",
        }
    }

    /// The use cases that need no client secret (status, configure, disconnect, delete: a
    /// revocation needs only the consumer key, which the connection records).
    pub fn offline_manager(&self) -> Result<Manager, CliError> {
        let salesforce = Salesforce::new(
            OAuthApp {
                client_id: String::new(),
                client_secret: None,
            },
            &HttpSettings::default(),
        )
        .context("building the HTTP client")?;
        Ok(self.manager(salesforce))
    }
}

/// A use case's error as the CLI reports it.
pub fn manage_error(e: ManageError, dir: &Path) -> CliError {
    match e {
        ManageError::NotFound(id) => unknown_connection(&id, dir),
        ManageError::Invalid { .. } | ManageError::NothingToChange => {
            CliError::input(e.to_string())
        }
        ManageError::Salesforce(se) if se.needs_reauth() => CliError::NeedsReauth(se.to_string()),
        other => failed!("{other}"),
    }
}

/// The error for a connection id that is not in `dir`.
pub fn unknown_connection(id: &ConnectionId, dir: &Path) -> CliError {
    CliError::input(format!(
        "unknown connection {id}: it is not in {} (`casesync status` lists the connections)",
        dir.display()
    ))
}

/// The Connected App's consumer secret from `CASESYNC_CLIENT_SECRET`.
pub fn client_secret_from_env() -> Result<SecretString, CliError> {
    match std::env::var(CLIENT_SECRET_ENV) {
        Ok(s) if !s.trim().is_empty() => Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(CliError::input(format!(
            "{CLIENT_SECRET_ENV} is not set: export the Connected App's consumer secret in it \
             (it is never taken as an argument)"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::input(format!(
            "{CLIENT_SECRET_ENV} is not valid UTF-8"
        ))),
    }
}

/// The process-wide Salesforce clients for the Connected App `client_id`. Connections remember
/// the app that authorized them; `Salesforce::org` uses theirs.
pub fn salesforce(client_id: &str, secret: SecretString) -> Result<Salesforce, CliError> {
    Salesforce::new(
        OAuthApp {
            client_id: client_id.to_owned(),
            client_secret: Some(secret),
        },
        &HttpSettings::default(),
    )
    .context("building the HTTP client")
}

/// The consumer key that authorized `connection`. Every connection `casesync connect` makes
/// records it.
pub fn client_id_of(connection: &Connection) -> &str {
    connection.client_id.as_deref().unwrap_or_default()
}
