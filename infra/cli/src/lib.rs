//! `casesync`: the whole system on one machine. The core's sync engine, connect flows and
//! diagnostics run here on the local adapters (SQLite, a 0600 secrets file, an in-process work
//! queue); `casesync demo` adds the bundled Salesforce simulator.
//!
//! `cli` is the command-line contract, `commands` one module per command, `app` the wiring,
//! `worker` the local scheduler and worker, `oauth_loopback` the browser flow's callback server,
//! `progress` the progress bar, `output` what gets printed, `telemetry` the logs.

pub mod app;
pub mod cli;
pub mod commands;
pub mod error;
pub mod oauth_loopback;
pub mod output;
pub mod progress;
pub mod shutdown;
pub mod telemetry;
pub mod worker;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the command line, runs the command, and turns the result into the exit code.
pub async fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    telemetry::init();
    match commands::run(cli).await {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Help and version print as clap prints them; a bad command line is one line on stderr.
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            // The message and its details (such as which arguments are missing) up to clap's
            // usage block, on one line.
            let text = e.to_string();
            let message = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let message = if message.is_empty() {
                "error: invalid command line".to_owned()
            } else {
                message
            };
            eprintln!("{message} (see --help)");
            ExitCode::from(error::EXIT_USAGE)
        }
    }
}
