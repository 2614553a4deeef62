//! `casesync ui`: the web console on loopback, over this data dir, with the active connections
//! synced in the background while it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use casesync_console::local::{LocalGate, gate};
use casesync_console::{Console, RedirectUri, router, secure};
use casesync_core::channel::CursorKey;
use casesync_core::domain::{ConnectionId, LoginUrl};
use casesync_core::manage::work::Targets;
use casesync_core::ports::ConnectionReader;
use casesync_core::salesforce::Salesforce;
use secrecy::SecretString;
use sf_simulator::{Org, SimConfig, SimHandle, Simulator};
use tokio::sync::Notify;

use crate::app::{self, App};
use crate::cli::UiArgs;
use crate::error::{CliError, Context, Exit, failed};
use crate::oauth_loopback;
use crate::output::outln;
use crate::progress::Display;
use crate::worker::Worker;

/// The sample org of `--demo` (its dates follow the clock).
const DEMO_SEED: u64 = 1;

pub async fn run(dir: &Path, args: UiArgs) -> Result<Exit, CliError> {
    let app = App::create(dir).await?;
    if args.demo {
        super::demo::remove_previous_demos(&app).await?;
    }
    let sim = match args.demo {
        true => Some(
            Simulator::start(
                SimConfig::default(),
                Org::sample(DEMO_SEED, chrono::Utc::now()),
            )
            .await
            .map_err(|e| failed!("starting the Salesforce simulator: {e:#}"))?,
        ),
        false => None,
    };
    let result = serve(&app, &args, sim.as_ref()).await;
    if let Some(sim) = sim {
        retire_demo_connections(&app, &sim).await;
        sim.shutdown().await;
    }
    result
}

/// The connections made against `--demo`'s simulator cannot sync once it stops: like `casesync
/// demo`'s, they are left disconnected, their tokens revoked and removed, their data kept.
async fn retire_demo_connections(app: &App, sim: &SimHandle) {
    let connections = match app.store.list_connections().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the demo's connections");
            return;
        }
    };
    let Ok(salesforce) = app::salesforce(&sim.client_id(), SecretString::from(sim.client_secret()))
    else {
        return;
    };
    let login = sim.login_url();
    let mut retired = 0;
    for c in connections
        .iter()
        .filter(|c| c.login_url.as_str().trim_end_matches('/') == login.trim_end_matches('/'))
        .filter(|c| c.state != casesync_core::domain::ConnectionState::Disconnected)
    {
        super::demo::retire(app, &salesforce, c).await;
        retired += 1;
    }
    if retired > 0 {
        eprintln!(
            "The demo's {retired} connection(s) are now disconnected: the simulator stopped with \
             the console. Their data stays (`casesync status`, `casesync export`)."
        );
    }
}

/// The Connected App the console connects new sources with: the simulator's with `--demo`;
/// else `--client-id`, or the one of the existing connections, and the secret from
/// `CASESYNC_CLIENT_SECRET`.
async fn salesforce(
    app: &App,
    args: &UiArgs,
    sim: Option<&SimHandle>,
) -> Result<Salesforce, CliError> {
    if let Some(sim) = sim {
        return app::salesforce(&sim.client_id(), SecretString::from(sim.client_secret()));
    }
    let secret = app::client_secret_from_env()?;
    let client_id = match &args.client_id {
        Some(id) => id.clone(),
        None => app
            .store
            .list_connections()
            .await
            .context("listing the connections")?
            .iter()
            .find_map(|c| c.client_id.clone())
            .ok_or_else(|| {
                CliError::input(
                    "--client-id is required: no connection here says which Connected App to \
                     use (or try `casesync ui --demo`)",
                )
            })?,
    };
    app::salesforce(&client_id, secret)
}

async fn serve(app: &App, args: &UiArgs, sim: Option<&SimHandle>) -> Result<Exit, CliError> {
    let salesforce = salesforce(app, args, sim).await?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        args.port,
    )))
    .await
    .map_err(|e| {
        CliError::input(format!(
            "cannot listen on 127.0.0.1:{} ({e}): pass --port with a free port (and register \
                 http://127.0.0.1:PORT/callback as a callback URL of the Connected App)",
            args.port
        ))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| failed!("reading the console's address: {e}"))?
        .port();
    let gate_state = Arc::new(LocalGate::new(port));
    let nudge = Arc::new(Notify::new());
    let on_import = {
        let nudge = nudge.clone();
        Arc::new(move |_: ConnectionId| nudge.notify_one())
            as Arc<dyn Fn(ConnectionId) + Send + Sync>
    };
    let suggested_login = match sim {
        Some(sim) => Some(LoginUrl::parse(&sim.login_url()).context("the simulator's login URL")?),
        None => None,
    };
    let form_action = "http://127.0.0.1:* http://localhost:*";
    let console = Arc::new(Console {
        manager: app.manager(salesforce.clone()),
        feed: Arc::new(app.store.clone()),
        base: String::new(),
        redirect_uri: RedirectUri::Fixed(format!("http://127.0.0.1:{port}/callback")),
        suggested_login,
        cursor_key: Arc::new(CursorKey::new(uuid::Uuid::new_v4().as_bytes().to_vec())),
        on_import: Some(on_import),
    });
    let service = secure(
        router(console).layer(axum::middleware::from_fn_with_state(
            gate_state.clone(),
            gate,
        )),
        form_action,
    );

    let url = gate_state.launch_url();
    outln!("casesync console: {url}");
    eprintln!(
        "The console syncs the active connections every {} s while it runs; Ctrl-C stops it.",
        args.interval
    );
    if !args.no_browser && oauth_loopback::open_browser(&url) {
        eprintln!("Opened it in your browser.");
    }

    let syncing = tokio::spawn(background_sync(
        app.store.clone(),
        app.engine(salesforce),
        Duration::from_secs(args.interval),
        nudge,
    ));
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(crate::shutdown::requested())
        .await;
    syncing.abort();
    let _ = syncing.await;
    served.map_err(|e| failed!("the console stopped: {e}"))?;
    eprintln!("Stopped.");
    Ok(Exit::Success)
}

/// The scheduler and worker of the console: the active connections synced every `interval`,
/// and at once when a connection starts importing.
async fn background_sync(
    store: casesync_local::SqliteStore,
    engine: casesync_core::sync::SyncEngine,
    interval: Duration,
    nudge: Arc<Notify>,
) {
    loop {
        let connections = match store.list_connections().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "console: could not list the connections");
                Vec::new()
            }
        };
        let targets = Targets::split(connections);
        if !targets.active.is_empty() {
            let worker = Worker::new(&engine, &store, Duration::from_secs(60), Display::Lines);
            let ids: Vec<ConnectionId> = targets.active.iter().map(|c| c.id.clone()).collect();
            worker.tick(&ids).await;
            match worker.drain().await {
                Ok(results) => {
                    for r in results {
                        tracing::info!(connection = %r.connection.id, outcome = %r.outcome, created = r.counts.created, "console: synced");
                    }
                }
                // Ctrl-C: the server stops too.
                Err(_) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = nudge.notified() => {}
        }
    }
}
