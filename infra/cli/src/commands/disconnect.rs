//! `casesync disconnect`: stop importing; what was imported stays.

use std::path::Path;

use casesync_core::domain::ConnectionState;
use casesync_core::ports::{ConnectionWriter, DataPointReader};

use crate::app::{self, App};
use crate::cli::DisconnectArgs;
use crate::error::{CliError, Context, Exit};
use crate::output::{self, outln};

pub async fn run(dir: &Path, args: DisconnectArgs) -> Result<Exit, CliError> {
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
    if c.state == ConnectionState::Disconnected {
        outln!(
            "{} is already disconnected; its {points} data points stay.",
            output::label(&c)
        );
        return Ok(Exit::Success);
    }
    let reason = format!(
        "disconnected with `casesync disconnect` on {}",
        output::instant(chrono::Utc::now())
    );
    app.store
        .set_state(id, ConnectionState::Disconnected, Some(&reason))
        .await
        .context("disconnecting")?;
    outln!(
        "Disconnected {}: no new data will be imported (a sync running elsewhere stops before \
         its next page). The {points} data points already imported stay: `casesync export \
         --connection {id}` still works.",
        output::label(&c)
    );
    outln!(
        "To resume: casesync connect --reauthorize {id}. To remove everything: casesync delete {id}."
    );
    Ok(Exit::Success)
}
