use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    casesync_cli::main().await
}
