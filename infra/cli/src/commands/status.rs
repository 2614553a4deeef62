//! `casesync status`: every connection, what it imports and how its syncs went.

use std::path::Path;

use casesync_core::domain::{Connection, ConnectionState};
use casesync_core::sync::SyncReport;
use serde::Serialize;

use crate::app::{self, App};
use crate::cli::StatusArgs;
use crate::error::{CliError, Exit};
use crate::output::{self, outln};

/// One connection in `status --json`. Field names are part of the command-line contract.
#[derive(Serialize)]
struct ConnectionStatus<'a> {
    id: &'a str,
    channel: &'a str,
    state: &'a str,
    state_reason: Option<&'a str>,
    login_url: &'a str,
    instance_url: &'a str,
    queues: String,
    backfill: &'a str,
    api_version: String,
    cursor: Cursor,
    /// How far the import has read, in time (every slice of a sliced backfill counted).
    progress_point: String,
    /// Slices of a sliced backfill still being read; 0 when none is under way.
    backfill_slices_left: usize,
    last_sync: Option<&'a SyncReport>,
    data_points: u64,
    /// Cases that could not be mapped and are retried on later syncs.
    failing_cases: usize,
    last_error: Option<&'a str>,
}

#[derive(Serialize)]
struct Cursor {
    system_modstamp: String,
    case_id: Option<String>,
}

pub async fn run(dir: &Path, args: StatusArgs) -> Result<Exit, CliError> {
    let connections: Vec<(Connection, u64)> = match App::existing(dir).await? {
        Some(app) => app
            .offline_manager()?
            .list()
            .await
            .map_err(|e| app::manage_error(e, dir))?
            .into_iter()
            .map(|v| (v.connection, v.data_points))
            .collect(),
        None => Vec::new(),
    };
    let statuses: Vec<ConnectionStatus> =
        connections.iter().map(|(c, n)| status_of(c, *n)).collect();
    if args.json {
        let json = serde_json::to_string_pretty(&statuses)
            .map_err(|e| crate::error::failed!("formatting the status: {e}"))?;
        outln!("{json}");
        return Ok(Exit::Success);
    }
    if statuses.is_empty() {
        outln!(
            "No connections in {}: run `casesync demo` to try casesync, or `casesync connect`.",
            dir.display()
        );
        return Ok(Exit::Success);
    }
    for (i, ((c, _), s)) in connections.iter().zip(&statuses).enumerate() {
        if i > 0 {
            outln!();
        }
        print_human(c, s);
    }
    Ok(Exit::Success)
}

fn status_of(c: &Connection, data_points: u64) -> ConnectionStatus<'_> {
    let last_error = c.last_error();
    ConnectionStatus {
        id: c.id.as_str(),
        channel: c.channel.as_str(),
        state: c.state.as_str(),
        state_reason: c.state_reason.as_deref(),
        login_url: c.login_url.as_str(),
        instance_url: c.instance_url.as_str(),
        queues: c.scope.to_string(),
        backfill: c.backfill.as_str(),
        api_version: c.api_version.to_string(),
        cursor: Cursor {
            system_modstamp: output::instant(c.cursor.system_modstamp),
            case_id: c.cursor.case_id.as_ref().map(|id| id.to_string()),
        },
        progress_point: output::instant(c.progress_point()),
        backfill_slices_left: c.backfill_slices_left(),
        last_sync: c.last_run.as_ref(),
        data_points,
        failing_cases: c.failures.len(),
        last_error,
    }
}

fn print_human(c: &Connection, s: &ConnectionStatus) {
    let state = match s.state_reason {
        Some(reason) if c.state != ConnectionState::Active => format!("{} ({reason})", s.state),
        _ => s.state.to_owned(),
    };
    outln!("{}", c.id);
    outln!("  channel      {}", s.channel);
    outln!("  state        {state}");
    outln!("  Salesforce   {}", s.instance_url);
    outln!("  queues       {}", s.queues);
    outln!(
        "  backfill     {} (closed Cases since {})",
        s.backfill,
        output::instant(c.backfill.start(chrono::Utc::now()))
    );
    outln!("  cursor       {}", output::cursor(&c.cursor));
    if s.backfill_slices_left > 0 {
        outln!(
            "  slices       {} still being read; read through {} in all",
            s.backfill_slices_left,
            s.progress_point
        );
    }
    match &c.last_run {
        Some(r) => outln!(
            "  last sync    {}: {} ({})",
            output::instant(r.finished_at),
            r.outcome,
            output::counts(&r.counts)
        ),
        None => outln!("  last sync    never"),
    }
    outln!("  data points  {}", s.data_points);
    if s.failing_cases > 0 {
        outln!(
            "  failing      {} Cases could not be imported; retried on later syncs",
            s.failing_cases
        );
    }
    outln!("  last error   {}", s.last_error.unwrap_or("none"));
}
