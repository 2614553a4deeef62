//! `casesync configure`: change which queues a connection imports, and how far back.

use std::path::Path;

use casesync_core::domain::{ConnectionState, Cursor};
use casesync_core::ports::ConnectionWriter;
use chrono::Utc;

use crate::app::{self, App};
use crate::cli::ConfigureArgs;
use crate::error::{CliError, Context, Exit};
use crate::output::{self, outln};

pub async fn run(dir: &Path, args: ConfigureArgs) -> Result<Exit, CliError> {
    let id = &args.connection;
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let c = app.connection(id).await?;
    let scope = args.queues.clone().unwrap_or_else(|| c.scope.clone());
    let backfill = args.backfill.unwrap_or(c.backfill);
    if scope == c.scope && backfill == c.backfill {
        outln!(
            "Nothing to change: {} already imports queues {} with a {} backfill.",
            output::label(&c),
            c.scope,
            c.backfill
        );
        return Ok(Exit::Success);
    }
    let cursor = Cursor::backfill_start(backfill, Utc::now());
    app.store
        .update_settings(id, &scope, backfill, &cursor)
        .await
        .context("changing the settings")?;
    outln!("Configured {}:", output::label(&c));
    let change = |before: String, after: String| {
        if before == after {
            format!("{after} (unchanged)")
        } else {
            format!("{before} -> {after}")
        }
    };
    outln!(
        "  queues    {}",
        change(c.scope.to_string(), scope.to_string())
    );
    outln!(
        "  backfill  {}",
        change(c.backfill.to_string(), backfill.to_string())
    );
    outln!(
        "The next sync re-reads closed Cases from {} (the start of the {backfill} window): Cases \
         newly in scope are imported; Cases already imported and unchanged are not rewritten. \
         Data points of Cases no longer in scope stay until the connection is deleted.",
        output::instant(cursor.system_modstamp)
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
