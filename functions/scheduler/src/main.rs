//! The scheduler Lambda: configuration and AWS clients once, then one tick per schedule event.

use casesync_aws::Env;
use casesync_scheduler::{Scheduler, handle};
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    casesync_aws::telemetry::init();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let scheduler = &Scheduler::from_env(&sdk, Env::new())
        .inspect_err(|e| tracing::error!(error = %e, "cannot start"))?;
    lambda_runtime::run(service_fn(move |event| handle(scheduler, event))).await
}
