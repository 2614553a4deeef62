//! `casesync doctor`: why a connection imports nothing (or less than expected), in plain words,
//! with what to do about it.

use std::path::Path;

use casesync_core::diagnostics::{Check, CheckStatus, Diagnosis};
use casesync_core::domain::ConnectionState;

use crate::app::{self, App};
use crate::cli::DoctorArgs;
use crate::error::{CliError, Exit, failed};
use crate::output::{self, outln};

pub async fn run(dir: &Path, args: DoctorArgs) -> Result<Exit, CliError> {
    let id = &args.connection;
    let secret = app::client_secret_from_env()?;
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let c = app.connection(id).await?;

    // Local checks first: what Salesforce cannot tell.
    let mut local = Vec::new();
    let secrets = app.secrets.clone();
    match tokio::task::spawn_blocking(move || secrets.check()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => local.push(Check {
            name: "secrets file",
            status: CheckStatus::Failed,
            detail: e.to_string(),
            fix: None,
        }),
        Err(e) => return Err(failed!("checking the secrets file: {e}")),
    }
    local.push(match c.state {
        ConnectionState::Active => Check {
            name: "connection",
            status: CheckStatus::Ok,
            detail: "active: every sync imports it".into(),
            fix: None,
        },
        ConnectionState::NeedsReauth => Check {
            name: "connection",
            status: CheckStatus::Failed,
            detail: format!(
                "needs re-authorization: {}",
                c.state_reason
                    .as_deref()
                    .unwrap_or("Salesforce refused its refresh token")
            ),
            fix: Some(format!("casesync connect --reauthorize {id}")),
        },
        ConnectionState::Pending => Check {
            name: "connection",
            status: CheckStatus::Warning,
            detail: "authorized, but its channel, queues and backfill are not chosen yet; syncs \
                     skip it"
                .into(),
            fix: Some(
                "Choose them in the console (casesync ui): Sources > Configure import.".into(),
            ),
        },
        ConnectionState::Disconnected => Check {
            name: "connection",
            status: CheckStatus::Warning,
            detail: format!(
                "disconnected: {}; syncs skip it",
                c.state_reason.as_deref().unwrap_or("by the user")
            ),
            fix: Some(format!(
                "To import again: casesync connect --reauthorize {id}"
            )),
        },
    });

    let manager = app.manager(app::salesforce(app::client_id_of(&c), secret)?);
    let (_, diagnosis) = manager
        .diagnose(id)
        .await
        .map_err(|e| app::manage_error(e, dir))?;
    let checks: Vec<Check> = local.into_iter().chain(diagnosis.checks).collect();
    let all = Diagnosis {
        checks,
        api_calls: diagnosis.api_calls,
    };
    let healthy = all.healthy();

    if args.json {
        let json = serde_json::json!({
            "connection_id": id,
            "healthy": healthy,
            "checks": all.checks,
            "api_calls": all.api_calls,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        print_human(&c, &all, healthy);
    }
    Ok(if healthy {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn print_human(c: &casesync_core::domain::Connection, d: &Diagnosis, healthy: bool) {
    outln!(
        "Checking {} at {} (queues {}, backfill {})",
        output::label(c),
        c.instance_url,
        c.scope,
        c.backfill
    );
    outln!();
    let width = d.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &d.checks {
        let mark = match check.status {
            CheckStatus::Ok => "[ ok ]",
            CheckStatus::Warning => "[warn]",
            CheckStatus::Failed => "[FAIL]",
            CheckStatus::Skipped => "[skip]",
        };
        outln!("{mark} {:width$}  {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            outln!("       {:width$}  fix: {fix}", "");
        }
    }
    outln!();
    let failed = d
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .count() as u64;
    if healthy {
        outln!(
            "Everything casesync needs is in place ({} API {} used).",
            d.api_calls,
            output::plural(d.api_calls, "call", "calls")
        );
    } else {
        outln!(
            "{failed} {} failed ({} API {} used): see the fixes above.",
            output::plural(failed, "check", "checks"),
            d.api_calls,
            output::plural(d.api_calls, "call", "calls")
        );
    }
}
