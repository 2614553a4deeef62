//! `casesync queues`: the queues the authorizing user can see.

use std::path::Path;

use casesync_core::manage::ManageError;
use serde::Serialize;

use crate::app::{self, App};
use crate::cli::QueuesArgs;
use crate::error::{CliError, Exit, failed};
use crate::output::outln;

#[derive(Serialize)]
struct Queue<'a> {
    id: &'a str,
    name: &'a str,
    developer_name: Option<&'a str>,
}

pub async fn run(dir: &Path, args: QueuesArgs) -> Result<Exit, CliError> {
    let id = &args.connection;
    let secret = app::client_secret_from_env()?;
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let c = app.connection(id).await?;
    let manager = app.manager(app::salesforce(app::client_id_of(&c), secret)?);
    let (_, queues) = manager.queues(id).await.map_err(|e| match e {
        ManageError::Salesforce(e) if e.needs_reauth() => {
            CliError::NeedsReauth(format!("{e}. Run: casesync connect --reauthorize {id}"))
        }
        ManageError::Salesforce(e) => failed!("listing the queues of {id}: {e}"),
        e => app::manage_error(e, dir),
    })?;
    let queues: Vec<Queue> = queues
        .iter()
        .map(|q| Queue {
            id: &q.id,
            name: &q.name,
            developer_name: q.developer_name.as_deref(),
        })
        .collect();
    if args.json {
        let json = serde_json::to_string_pretty(&queues)
            .map_err(|e| failed!("formatting the queues: {e}"))?;
        outln!("{json}");
        return Ok(Exit::Success);
    }
    if queues.is_empty() {
        outln!("This user can see no queues: casesync imports queue-owned Cases only.");
        return Ok(Exit::Success);
    }
    let width = queues.iter().map(|q| q.id.len()).max().unwrap_or(2).max(2);
    outln!("{:width$}  NAME", "ID");
    for q in &queues {
        outln!("{:width$}  {}", q.id, q.name);
    }
    eprintln!(
        "\nPick some with: casesync configure {id} --queues {}",
        queues
            .iter()
            .take(2)
            .map(|q| q.id)
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(Exit::Success)
}
