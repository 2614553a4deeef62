//! `casesync demo`: the whole system on one machine against the bundled Salesforce simulator,
//! through the same code paths as `connect` and `sync`.

use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use casesync_core::data_point::{ContentSource, DataPoint, Direction};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, Connection, ConnectionState, LoginUrl, QueueScope,
};
use casesync_core::manage::{Manager, NewConnection, Revocation};
use casesync_core::ports::{ConnectionReader, DataPointReader, SecretStore, StateWriter};
use casesync_core::sync::SyncOutcome;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sf_simulator::org::Owner;
use sf_simulator::{Org, SimConfig, SimHandle, Simulator};

use crate::app::{self, App};
use crate::cli::DemoArgs;
use crate::error::{CliError, Context, Exit, failed};
use crate::oauth_loopback::{self, CallbackServer, PendingFlows};
use crate::output::{self, outln};
use crate::progress::Display;
use crate::worker::{ConnectionResult, Worker};

/// The sample org's content is fixed by this seed (its dates follow the clock).
const SAMPLE_SEED: u64 = 1;
const BACKFILL: BackfillWindow = BackfillWindow::Days30;
const DISCONNECT_REASON: &str = "demo connection: its Salesforce simulator stopped when the demo \
     (`casesync demo` or `casesync ui --demo`) ended; its data stays for status and export";
/// How every demo's reason starts (earlier versions worded the rest differently).
const DEMO_REASON_PREFIX: &str = "demo connection:";

pub async fn run(dir: &Path, _args: DemoArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let app = App::create(dir).await?;
    remove_previous_demos(&app).await?;
    eprintln!("Starting a Salesforce simulator with a sample org on 127.0.0.1...");
    let sim = Simulator::start(SimConfig::default(), Org::sample(SAMPLE_SEED, Utc::now()))
        .await
        .map_err(|e| failed!("starting the Salesforce simulator: {e:#}"))?;
    let result = demo(&app, &sim, started).await;
    sim.shutdown().await;
    result
}

/// Each demo run replaces the previous one's connection and data, so running it again does
/// not double the export. Only connections this command left behind are touched: disconnected
/// with the demo's own reason.
pub(crate) async fn remove_previous_demos(app: &App) -> Result<(), CliError> {
    let connections = app
        .store
        .list_connections()
        .await
        .context("listing connections")?;
    let manager = app.offline_manager()?;
    for c in connections {
        let is_demo = c.state == ConnectionState::Disconnected
            && c.state_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(DEMO_REASON_PREFIX));
        if !is_demo {
            continue;
        }
        let deleted = manager
            .delete(&c.id)
            .await
            .map_err(|e| failed!("deleting the previous demo connection {}: {e}", c.id))?;
        eprintln!(
            "Removed the previous demo connection {} and its {} data points.",
            c.id, deleted.data_points_deleted
        );
    }
    Ok(())
}

async fn demo(app: &App, sim: &SimHandle, started: Instant) -> Result<Exit, CliError> {
    let login_url = LoginUrl::parse(&sim.login_url()).context("the simulator's login URL")?;
    let salesforce = app::salesforce(&sim.client_id(), SecretString::from(sim.client_secret()))?;

    let connection = connect(app, &salesforce, &login_url).await?;
    let connected_in = started.elapsed();
    eprintln!(
        "Connected {} through OAuth (web-server flow with PKCE). Importing 30 days of closed Cases...",
        output::label(&connection)
    );

    let sync_started = Instant::now();
    let engine = app.engine(salesforce.clone());
    let worker = Worker::new(
        &engine,
        &app.store,
        Duration::from_secs(60),
        Display::detect(),
    );
    worker.tick(std::slice::from_ref(&connection.id)).await;
    let drained = worker.drain().await;
    let token_note = retire(app, &salesforce, &connection).await;
    let Ok(results) = drained else {
        return Err(CliError::Interrupted);
    };
    let Some(result) = results.into_iter().next() else {
        return Err(failed!("the demo connection was not synced"));
    };
    if !matches!(result.outcome, SyncOutcome::Done) {
        outln!("{}", output::sync_result(&result));
        return Ok(Exit::Failure);
    }
    let sync_time = sync_started.elapsed();
    let points = app
        .store
        .list_data_points(&connection.id, None, 1_000)
        .await
        .context("reading the demo's data points")?;
    let org = OrgBreakdown::of(sim, BACKFILL.start(Utc::now()));
    print_summary(
        app,
        &connection,
        &result,
        &org,
        &points,
        [connected_in, sync_time, started.elapsed()],
        token_note,
    );
    Ok(Exit::Success)
}

/// Connects through the web-server flow, as `casesync connect` does; the demo plays the
/// browser: it GETs the authorize URL, the simulator approves and redirects to the callback.
async fn connect(
    app: &App,
    salesforce: &casesync_core::salesforce::Salesforce,
    login_url: &LoginUrl,
) -> Result<Connection, CliError> {
    let mut server = CallbackServer::bind(0).await?;
    // The pending flow stays in this process, as with `casesync connect`.
    let manager = Manager {
        auth_states: Arc::new(PendingFlows::new()),
        ..app.manager(salesforce.clone())
    };
    let request = NewConnection {
        channel: ChannelName::parse("demo").expect("a valid channel name"),
        login_url: login_url.clone(),
        scope: QueueScope::All,
        backfill: BACKFILL,
        api_version: ApiVersion::DEFAULT,
    };
    let started = manager
        .start_connection(request, &server.redirect_uri())
        .await
        .map_err(|e| failed!("{e}"))?;
    let mut browser = tokio::spawn(play_browser(started.authorize_url.to_string()));
    let authorized = {
        let flow = oauth_loopback::await_callback(&mut server, &started, &manager);
        tokio::pin!(flow);
        tokio::select! {
            r = &mut flow => r?,
            b = &mut browser => {
                match b {
                    Ok(Ok(())) => tokio::time::timeout(Duration::from_secs(10), &mut flow)
                        .await
                        .map_err(|_| failed!("the simulator's redirect never reached the callback"))??,
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(failed!("the demo's browser stopped: {e}")),
                }
            }
            _ = crate::shutdown::requested() => return Err(CliError::Interrupted),
        }
    };
    // The browser's request ends with the callback page.
    let _ = tokio::time::timeout(Duration::from_secs(5), browser).await;
    server.shutdown().await;
    Ok(authorized.connection)
}

/// What a user's browser does: follow the authorize URL through the redirect to the callback.
async fn play_browser(authorize_url: String) -> Result<(), CliError> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the demo's browser")?;
    let page = browser.get(&authorize_url).send().await.map_err(|e| {
        failed!(
            "the demo could not open the authorize page: {}",
            e.without_url()
        )
    })?;
    if !page.status().is_success() {
        return Err(failed!(
            "the callback answered {} to the demo's browser",
            page.status()
        ));
    }
    Ok(())
}

/// The simulator stops with the demo: its token is revoked and forgotten, and the connection is
/// left disconnected, saying why. Returns what happened to the token.
pub(crate) async fn retire(
    app: &App,
    salesforce: &casesync_core::salesforce::Salesforce,
    c: &Connection,
) -> &'static str {
    let mut note = "its refresh token was revoked at the simulator and removed";
    match app.secrets.get_refresh_token(&c.id).await {
        Ok(Some(token)) => {
            if let Revocation::Failed { error, .. } =
                Revocation::attempt(&salesforce.oauth, &c.login_url, &token).await
            {
                tracing::warn!(%error, "could not revoke the demo's refresh token");
                note = "its refresh token was removed";
            }
            if let Err(e) = app.secrets.delete_refresh_token(&c.id).await {
                tracing::warn!(error = %e, "could not remove the demo's refresh token");
                note = "its refresh token could not be removed";
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the demo's refresh token"),
    }
    if let Err(e) = app
        .store
        .set_state(
            &c.id,
            ConnectionState::Disconnected,
            Some(DISCONNECT_REASON),
        )
        .await
    {
        tracing::warn!(error = %e, "could not mark the demo connection disconnected");
    }
    note
}

/// Why the sample org's Cases were or were not imported.
struct OrgBreakdown {
    total: usize,
    open: usize,
    user_owned: usize,
    before_window: usize,
}

impl OrgBreakdown {
    fn of(sim: &SimHandle, window_start: DateTime<Utc>) -> Self {
        sim.with_org(|org| {
            let mut b = OrgBreakdown {
                total: org.cases().len(),
                open: 0,
                user_owned: 0,
                before_window: 0,
            };
            for case in org.cases() {
                if !case.is_closed() {
                    b.open += 1;
                } else if matches!(org.owner_of(case), Some(Owner::User(_))) {
                    b.user_owned += 1;
                } else if case.system_modstamp < window_start {
                    b.before_window += 1;
                }
            }
            b
        })
    }
}

fn print_summary(
    app: &App,
    c: &Connection,
    r: &ConnectionResult,
    org: &OrgBreakdown,
    points: &[DataPoint],
    [connect_time, sync_time, total_time]: [Duration; 3],
    token_note: &str,
) {
    let n = &r.counts;
    outln!();
    outln!(
        "casesync demo: imported {} closed Cases with their email threads in {}.",
        n.created + n.updated + n.unchanged,
        output::duration(total_time)
    );
    outln!();
    outln!(
        "  Cases imported  {} ({} new, {} updated): every closed, queue-owned Case of the last 30 days",
        n.created + n.updated + n.unchanged,
        n.created,
        n.updated
    );
    outln!(
        "  not imported    {} of the sample org's {} Cases: {} still open, {} owned by agents \
         (not queues), {} closed before the window",
        org.open + org.user_owned + org.before_window,
        org.total,
        org.open,
        org.user_owned,
        org.before_window
    );
    outln!("  pages           {}", n.pages);
    outln!(
        "  API calls       {} (REST, under /services/data)",
        n.api_calls
    );
    outln!(
        "  time            {} (connect {}, sync {})",
        output::duration(total_time),
        output::duration(connect_time),
        output::duration(sync_time)
    );
    outln!();
    outln!("Three of the data points (conversations shortened):");
    for p in pick_samples(points) {
        outln!();
        print_point(p);
    }
    outln!();
    outln!(
        "Your data is in {} (casesync.db; refresh tokens live in secrets.json, mode 0600).",
        app.path().display()
    );
    outln!(
        "The demo connection {} is now disconnected: the simulator stopped with the demo and {token_note}. \
         Its data stays.",
        c.id
    );
    outln!();
    // Under `cargo run`, `casesync` is not on the PATH yet: show what works from here.
    let me = if std::env::var_os("CARGO").is_some() {
        "cargo run -q --bin casesync --"
    } else {
        "casesync"
    };
    let width = me.len() + 28;
    outln!("Next:");
    outln!(
        "  {:width$} connections, cursors, last sync",
        format!("{me} status")
    );
    outln!(
        "  {:width$} one data point in full (JSONL; or --format csv)",
        format!("{me} export | head -n 1")
    );
    outln!(
        "  {:width$} connect your own Salesforce org",
        format!("{me} connect --help")
    );
    outln!(
        "  {:width$} the web console, with a simulator to connect",
        format!("{me} ui --demo")
    );
}

/// Three data points worth reading: with a conversation, preferring short threads.
fn pick_samples(points: &[DataPoint]) -> Vec<&DataPoint> {
    let mut threads: Vec<&DataPoint> = points
        .iter()
        .filter(|p| p.content_source == ContentSource::EmailThread && p.conversation.len() >= 2)
        .collect();
    threads.sort_by_key(|p| (p.conversation.len() > 4, p.case_number.clone()));
    let mut picked: Vec<&DataPoint> = threads.into_iter().take(3).collect();
    for p in points {
        if picked.len() >= 3 {
            break;
        }
        if !picked.iter().any(|q| q.id == p.id) {
            picked.push(p);
        }
    }
    picked
}

fn print_point(p: &DataPoint) {
    let mut facts = vec![p.status.clone()];
    facts.extend(p.priority.clone());
    if let Some(origin) = &p.origin {
        facts.push(format!("via {origin}"));
    }
    facts.extend(p.case_type.clone());
    outln!(
        "  Case {}  {}  ({})",
        p.case_number,
        p.subject.as_deref().unwrap_or("(no subject)"),
        facts.join(", ")
    );
    let who = match (&p.participant.name, &p.participant.email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (Some(n), None) => n.clone(),
        (None, Some(e)) => e.clone(),
        (None, None) => "unknown".into(),
    };
    outln!("    participant   {who}");
    const SHOWN: usize = 3;
    for m in p.conversation.iter().take(SHOWN) {
        let direction = match m.direction {
            Some(Direction::Inbound) => "in ",
            Some(Direction::Outbound) => "out",
            None => "   ",
        };
        outln!(
            "    {} {direction}  {}",
            m.sent_at.format("%Y-%m-%d %H:%M"),
            shorten(&m.text, 90)
        );
    }
    if p.conversation.len() > SHOWN {
        let more = (p.conversation.len() - SHOWN) as u64;
        outln!(
            "    ... {more} more {}",
            output::plural(more, "message", "messages")
        );
    }
}

/// The text on one line, at most `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max.saturating_sub(3)).collect();
    format!("{}...", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_shortened_to_one_line() {
        assert_eq!(shorten("a\n\n b  c", 10), "a b c");
        assert_eq!(shorten(&"x".repeat(20), 10), "xxxxxxx...");
    }
}
