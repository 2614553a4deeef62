//! One module per command. Each validates its input before any write or network call, and
//! returns the exit status scripts rely on.

pub mod configure;
pub mod connect;
pub mod delete;
pub mod demo;
pub mod disconnect;
pub mod doctor;
pub mod export;
pub mod queues;
pub mod status;
pub mod sync;
pub mod ui;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Exit};

pub async fn run(cli: Cli) -> Result<Exit, CliError> {
    let dir = cli.data_dir.as_path();
    match cli.command {
        Command::Demo(args) => demo::run(dir, args).await,
        Command::Connect(args) => connect::run(dir, args).await,
        Command::Queues(args) => queues::run(dir, args).await,
        Command::Configure(args) => configure::run(dir, args).await,
        Command::Sync(args) => sync::run(dir, args).await,
        Command::Status(args) => status::run(dir, args).await,
        Command::Export(args) => export::run(dir, args).await,
        Command::Disconnect(args) => disconnect::run(dir, args).await,
        Command::Delete(args) => delete::run(dir, args).await,
        Command::Doctor(args) => doctor::run(dir, args).await,
        Command::Ui(args) => ui::run(dir, args).await,
    }
}
