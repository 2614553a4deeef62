//! `casesync disconnect`: stop importing; what was imported stays.

use std::path::Path;

use crate::app::{self, App};
use crate::cli::DisconnectArgs;
use crate::error::{CliError, Exit};
use crate::output::{self, outln};

pub async fn run(dir: &Path, args: DisconnectArgs) -> Result<Exit, CliError> {
    let id = &args.connection;
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let done = app
        .offline_manager()?
        .disconnect(id)
        .await
        .map_err(|e| app::manage_error(e, dir))?;
    let (c, points) = (&done.connection, done.data_points);
    if done.already {
        outln!(
            "{} is already disconnected; its {points} data points stay.",
            output::label(c)
        );
        return Ok(Exit::Success);
    }
    outln!(
        "Disconnected {}: no new data will be imported (a sync running elsewhere stops before \
         its next page). The {points} data points already imported stay: `casesync export \
         --connection {id}` still works.",
        output::label(c)
    );
    outln!(
        "To resume: casesync connect --reauthorize {id}. To remove everything: casesync delete {id}."
    );
    Ok(Exit::Success)
}
