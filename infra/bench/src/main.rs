//! `casesync-bench`: runs casesync against the Salesforce simulator and prints each figure
//! beside the physical limit it is measured against. Run it with `infra/scripts/bench.sh`
//! (release build); `--smoke` runs a small configuration with no thresholds (CI).

mod channel;
mod child;
mod figures;
mod freshness;
mod lambda;
mod sim;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "casesync-bench",
    about = "Benchmarks casesync against the simulator"
)]
struct Cli {
    /// A small, fast configuration (CI): same figures, smaller sizes, no valgrind.
    #[arg(long)]
    smoke: bool,
    /// Run only the figures whose name contains one of these words (e.g. `calls rss`).
    #[arg(long, num_args = 1..)]
    only: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// (internal) One measured backfill into SQLite; prints a JSON line.
    #[command(hide = true)]
    ChildBackfill(child::ChildArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::ChildBackfill(args)) => {
            // One worker thread: the figures are per core.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(child::run(args))
        }
        None => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(figures::run_all(cli.smoke, &cli.only))
        }
    }
}
