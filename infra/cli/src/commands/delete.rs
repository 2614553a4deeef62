//! `casesync delete`: a connection's data points, its refresh token (revoked at Salesforce) and
//! the connection itself, permanently, following the core's delete policy
//! ([`casesync_core::manage`]): when Salesforce cannot be reached to revoke the token, the delete
//! goes on and says so.

use std::io::IsTerminal;
use std::path::Path;

use casesync_core::domain::Connection;
use casesync_core::manage::{ManageError, Revocation};
use casesync_core::ports::DataPointReader;

use crate::app::{self, App};
use crate::cli::DeleteArgs;
use crate::error::{CliError, Context, Exit, failed};
use crate::output::{self, outln};

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
    eprintln!(
        "Deleting {} (a sync running in another process stops at its next page first)...",
        output::label(&c)
    );
    let done = app
        .offline_manager()?
        .delete(id)
        .await
        .map_err(|e| match e {
            ManageError::SyncRunning => failed!(
                "{id} is still being synced by another process; nothing was deleted (the \
                 connection is now disconnected, so that sync stops soon): try again"
            ),
            e => app::manage_error(e, dir),
        })?;
    let token = match &done.token {
        Revocation::Failed { .. } => format!("WARNING: {}", done.token),
        other => other.to_string(),
    };
    outln!(
        "Deleted {} permanently: {} data points removed; {token}; the token was removed from {}. \
         This cannot be undone.",
        output::label(&done.connection),
        done.data_points_deleted,
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
