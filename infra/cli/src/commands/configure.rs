//! `casesync configure`: change which queues a connection imports, and how far back. The rule
//! (the cursor restarts at the start of the new window) is the core's
//! ([`casesync_core::manage::Manager::configure`]).

use std::path::Path;

use casesync_core::domain::ConnectionState;
use casesync_core::manage::SettingsChange;

use crate::app::{self, App};
use crate::cli::ConfigureArgs;
use crate::error::{CliError, Exit};
use crate::output::{self, outln};

pub async fn run(dir: &Path, args: ConfigureArgs) -> Result<Exit, CliError> {
    let id = &args.connection;
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let manager = app.offline_manager()?;
    let done = manager
        .configure(
            id,
            SettingsChange {
                scope: args.queues.clone(),
                backfill: args.backfill,
            },
        )
        .await
        .map_err(|e| app::manage_error(e, dir))?;
    let (c, after) = (&done.before, &done.after);
    let Some(restarted_at) = done.cursor_restarted_at else {
        outln!(
            "Nothing to change: {} already imports queues {} with a {} backfill.",
            output::label(c),
            c.scope,
            c.backfill
        );
        return Ok(Exit::Success);
    };
    outln!("Configured {}:", output::label(c));
    let change = |before: String, after: String| {
        if before == after {
            format!("{after} (unchanged)")
        } else {
            format!("{before} -> {after}")
        }
    };
    outln!(
        "  queues    {}",
        change(c.scope.to_string(), after.scope.to_string())
    );
    outln!(
        "  backfill  {}",
        change(c.backfill.to_string(), after.backfill.to_string())
    );
    outln!(
        "The next sync re-reads closed Cases from {} (the start of the {} window): Cases \
         newly in scope are imported; Cases already imported and unchanged are not rewritten. \
         Data points of Cases no longer in scope stay until the connection is deleted.",
        output::instant(restarted_at),
        after.backfill
    );
    match c.state {
        ConnectionState::Active => outln!(
            "Run `casesync sync` to apply it now (`casesync doctor {id}` checks the queues)."
        ),
        state => outln!(
            "The connection is {state}: the new settings apply once it is re-authorized \
             (casesync connect --reauthorize {id})."
        ),
    }
    Ok(Exit::Success)
}
