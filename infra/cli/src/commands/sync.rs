//! `casesync sync`: one scheduler tick and a worker draining it; with `--watch`, ticks until
//! Ctrl-C.

use std::path::Path;
use std::time::Duration;

use casesync_core::domain::Connection;
use casesync_core::manage::work::Targets;
use casesync_core::ports::ConnectionReader;
use casesync_core::sync::SyncOutcome;

use crate::app::{self, App};
use crate::cli::SyncArgs;
use crate::error::{CliError, Context, Exit};
use crate::output::{self, outln};
use crate::progress::Display;
use crate::worker::{ConnectionResult, Interrupted, Worker};

pub async fn run(dir: &Path, args: SyncArgs) -> Result<Exit, CliError> {
    let Some(app) = App::existing(dir).await? else {
        if let Some(id) = args.connections.first() {
            return Err(app::unknown_connection(id, dir));
        }
        outln!(
            "No connections in {}: run `casesync connect` (or `casesync demo`) first.",
            dir.display()
        );
        return Ok(Exit::Success);
    };
    let named = !args.connections.is_empty();
    // Every named connection must exist before anything runs.
    let mut chosen = Vec::new();
    for id in &args.connections {
        chosen.push(app.connection(id).await?);
    }
    let budget = Duration::from_secs(args.run_budget);
    let interval = Duration::from_secs(args.interval);
    let config = casesync_core::sync::SyncConfig {
        batch_size: args.batch_size,
        slices: args.slices,
        ..casesync_core::sync::SyncConfig::default()
    };
    // The secret is needed only when there is something to sync; checked once, up front.
    let mut secret = None;
    loop {
        let connections = if named {
            refresh(&app, &chosen).await?
        } else {
            app.store
                .list_connections()
                .await
                .context("listing the connections")?
        };
        let targets = Targets::split(connections);
        if secret.is_none() && !targets.active.is_empty() {
            secret = Some(app::client_secret_from_env()?);
        }
        let outcome = match tick(&app, &targets, named, secret.clone(), budget, &config).await {
            Ok(outcome) => outcome,
            Err(Interrupted) => {
                eprintln!(
                    "Interrupted: every page written so far is saved; the next sync resumes from there."
                );
                return if args.watch {
                    Ok(Exit::Success)
                } else {
                    Err(CliError::Interrupted)
                };
            }
        };
        if !args.watch {
            return outcome;
        }
        // With --watch a failed tick is reported and the next one tries again.
        if let Err(e) = outcome {
            eprintln!("error: {e}");
        }
        eprintln!(
            "Next sync in {} (Ctrl-C to stop).",
            output::duration(interval)
        );
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::shutdown::requested() => {
                eprintln!("Stopped.");
                return Ok(Exit::Success);
            }
        }
    }
}

/// The named connections as stored now.
async fn refresh(app: &App, chosen: &[Connection]) -> Result<Vec<Connection>, CliError> {
    let mut out = Vec::with_capacity(chosen.len());
    for c in chosen {
        // Deleted since: nothing to sync.
        if let Some(c) = app
            .store
            .get_connection(&c.id)
            .await
            .context("reading the connection")?
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// One tick: reports the connections that cannot sync (the disconnected ones only when they
/// were named), syncs the active ones.
async fn tick(
    app: &App,
    targets: &Targets,
    named: bool,
    secret: Option<secrecy::SecretString>,
    budget: Duration,
    config: &casesync_core::sync::SyncConfig,
) -> Result<Result<Exit, CliError>, Interrupted> {
    let mut exit = Exit::Success;
    for c in &targets.needs_reauth {
        outln!(
            "{}: needs re-authorization: {}. Run: casesync connect --reauthorize {}",
            output::label(c),
            c.state_reason
                .as_deref()
                .unwrap_or("Salesforce refused its refresh token"),
            c.id
        );
        exit = exit.worst(Exit::NeedsReauth);
    }
    for c in targets.disconnected.iter().filter(|_| named) {
        outln!(
            "{}: not synced: disconnected{}",
            output::label(c),
            c.state_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    let Some(secret) = secret.filter(|_| !targets.active.is_empty()) else {
        if targets.needs_reauth.is_empty() && (targets.disconnected.is_empty() || !named) {
            outln!("No active connections to sync (`casesync status` lists them).");
        }
        return Ok(Ok(exit));
    };
    let first = &targets.active[0];
    let salesforce = match app::salesforce(app::client_id_of(first), secret) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let engine = app.engine_with(salesforce, config.clone());
    let worker = Worker::new(&engine, &app.store, budget, Display::detect());
    let ids: Vec<_> = targets.active.iter().map(|c| c.id.clone()).collect();
    worker.tick(&ids).await;
    for result in worker.drain().await? {
        outln!("{}", output::sync_result(&result));
        exit = exit.worst(exit_of(&result));
    }
    Ok(Ok(exit))
}

/// What a connection's result means for the exit code.
pub fn exit_of(r: &ConnectionResult) -> Exit {
    match r.outcome {
        // Busy: another process holds the lease and is importing this connection's Cases.
        SyncOutcome::Done | SyncOutcome::MoreWork | SyncOutcome::Busy => Exit::Success,
        // Disconnected during the run (by `casesync disconnect`): what the user asked for.
        SyncOutcome::Disconnected => Exit::Success,
        SyncOutcome::RateLimited => Exit::RateLimited,
        SyncOutcome::NeedsReauth => Exit::NeedsReauth,
        SyncOutcome::Failed => Exit::Failure,
    }
}
