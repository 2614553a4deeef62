//! `casesync delete`: a connection's data points, its refresh token (revoked at Salesforce) and
//! the connection itself, permanently.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use casesync_core::domain::{Connection, ConnectionState};
use casesync_core::ports::{ConnectionWriter, DataPointDeleter, DataPointReader, SecretStore};
use casesync_core::salesforce::{HttpSettings, OAuthApp, OAuthClient, build_client};
use chrono::Utc;

use crate::app::{self, App};
use crate::cli::DeleteArgs;
use crate::error::{CliError, Context, Exit, failed};
use crate::output::{self, outln};

/// How long to wait for a sync running elsewhere to notice the connection is going away.
const WAIT_FOR_RUNNING_SYNC: Duration = Duration::from_secs(30);

pub async fn run(dir: &Path, args: DeleteArgs) -> Result<Exit, CliError> {
    let id = &args.connection;
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let c = app.connection(id).await?;
    let points = app
        .store
        .count_data_points(id)
        .await
        .context("counting data points")?;
    if !args.yes && !confirmed(&c, points)? {
        outln!("Nothing was deleted.");
        return Ok(Exit::Success);
    }

    // Disconnected first: a sync running in another process stops before its next page.
    app.store
        .set_state(
            id,
            ConnectionState::Disconnected,
            Some("being deleted with `casesync delete`"),
        )
        .await
        .context("disconnecting before the delete")?;
    wait_for_running_sync(&app, &c).await?;

    let token = app
        .secrets
        .get_refresh_token(id)
        .await
        .context("reading the refresh token")?;
    let revoked = match &token {
        None => "no refresh token was stored, so there was nothing to revoke".to_owned(),
        Some(token) => match oauth_for(&c)?.revoke(&c.login_url, token).await {
            Ok(()) => format!("its refresh token was revoked at {}", c.login_url),
            Err(e) if args.skip_revoke => format!(
                "its refresh token could NOT be revoked ({e}): revoke it in Salesforce Setup \
                 (Connected Apps OAuth Usage)"
            ),
            Err(e) => {
                return Err(failed!(
                    "could not revoke the refresh token at {} ({e}), so nothing was deleted (the \
                     connection is now disconnected). Try again, or pass --skip-revoke to delete \
                     it anyway and revoke the token in Salesforce Setup yourself",
                    c.login_url
                ));
            }
        },
    };
    app.secrets
        .delete_refresh_token(id)
        .await
        .context("removing the refresh token")?;
    let deleted = app
        .store
        .delete_data_points(id)
        .await
        .context("deleting the data points")?;
    // Last: until here, running delete again finishes the job.
    app.store
        .delete_connection(id)
        .await
        .context("deleting the connection")?;
    outln!(
        "Deleted {} permanently: {deleted} data points removed; {revoked}; the token was removed \
         from {}. This cannot be undone.",
        output::label(&c),
        app.data_dir.secrets_path().display()
    );
    Ok(Exit::Success)
}

/// Asks on the terminal. Without one (a script, CI) it refuses: deleting needs `--yes` there.
fn confirmed(c: &Connection, points: u64) -> Result<bool, CliError> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::input(format!(
            "refusing to delete {} without confirmation: there is no terminal to ask on; pass \
             --yes to delete it",
            c.id
        )));
    }
    eprintln!(
        "This permanently deletes {}: its {points} data points, and its refresh token (revoked at \
         Salesforce). It cannot be undone.",
        output::label(c)
    );
    dialoguer::Confirm::new()
        .with_prompt(format!("Delete {}?", c.id))
        .default(false)
        .interact()
        .map_err(|e| failed!("reading the confirmation: {e}"))
}

/// Waits until no other process holds the connection's sync lease (it stops at its next page
/// now that the connection is disconnected).
async fn wait_for_running_sync(app: &App, c: &Connection) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_RUNNING_SYNC;
    let mut told = false;
    loop {
        let lease = app
            .store
            .lease(&c.id)
            .await
            .context("reading the sync lease")?;
        match lease {
            Some(l) if l.until > Utc::now() => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(failed!(
                        "{} is still being synced by another process; nothing was deleted (the \
                         connection is now disconnected, so that sync stops soon): try again",
                        c.id
                    ));
                }
                if !told {
                    eprintln!(
                        "Waiting for a sync of {} in another process to stop...",
                        c.id
                    );
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => return Ok(()),
        }
    }
}

/// The OAuth client of the app that issued the connection's token. Revoking needs no secret.
fn oauth_for(c: &Connection) -> Result<OAuthClient, CliError> {
    let settings = HttpSettings::default();
    let http = build_client(&settings).context("building the HTTP client")?;
    Ok(OAuthClient::new(
        http,
        OAuthApp {
            client_id: app::client_id_of(c).to_owned(),
            client_secret: None,
        },
        settings.retry,
    ))
}
