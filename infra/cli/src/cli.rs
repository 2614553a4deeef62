//! The command line: every command, option and help text. Values are parsed here into the core's
//! domain types, so a bad backfill, queue id, URL or connection id is refused before anything
//! runs.

use std::path::PathBuf;

use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, ConnectionId, LoginUrl, QueueScope,
};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// The loopback port of the OAuth callback when `--redirect-port` is not given. Register
/// `http://127.0.0.1:8765/callback` as a callback URL of the Connected App.
pub const DEFAULT_REDIRECT_PORT: u16 = 8765;

/// The environment variable holding the Connected App's consumer secret.
pub const CLIENT_SECRET_ENV: &str = "CASESYNC_CLIENT_SECRET";

const AFTER_HELP: &str = "\
Examples:
  casesync demo                       Try everything against a bundled Salesforce simulator
  export CASESYNC_CLIENT_SECRET=...   The Connected App's consumer secret (never an argument)
  casesync connect --login-url https://login.salesforce.com --client-id 3MVG9... --backfill 90d
  casesync sync                       Import new and changed closed Cases of every connection
  casesync export --format csv > cases.csv

Exit codes: 0 ok, 1 failed (including a sync stopped by Salesforce's API limit, which resumes
later), 2 bad input (nothing was changed), 3 a connection needs re-authorization, 130
interrupted.";

#[derive(Debug, Parser)]
#[command(
    name = "casesync",
    version,
    about = "Export closed Salesforce Cases with their email threads, incrementally, to JSONL or CSV",
    long_about = "Export closed Salesforce Cases with their email threads, incrementally, to JSONL or CSV.\n\n\
        casesync imports every closed Case owned by the queues you pick, with its EmailMessage \
        thread, as one data point per Case. Each `casesync sync` fetches only what changed since \
        the last one.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Where casesync keeps its database and refresh tokens.
    #[arg(
        long,
        global = true,
        env = "CASESYNC_DATA_DIR",
        default_value = "./casesync-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything against a bundled Salesforce simulator with a sample org.
    #[command(after_help = "\
Starts a Salesforce simulator on 127.0.0.1 with a sample org (queues Tier 1 Support, Billing,
Escalations; about 150 Cases), connects to it through the real OAuth flow with PKCE (the demo
plays the browser), imports 30 days of closed Cases and prints what it got. The simulator stops
when the demo ends: the demo connection is left disconnected, its data stays.

Example:
  casesync demo && casesync status && casesync export | head -n 1")]
    Demo(DemoArgs),

    /// Connect a Salesforce org: authorize casesync and choose what it imports.
    #[command(after_help = CONNECT_HELP)]
    Connect(ConnectArgs),

    /// List the queues the authorizing user can see (to pick --queues).
    #[command(after_help = "\
Examples:
  casesync queues conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f
  casesync queues conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f --json | jq -r '.[].id'")]
    Queues(QueuesArgs),

    /// Change which queues a connection imports and how far back.
    #[command(after_help = "\
The next sync re-reads closed Cases from the start of the (new) backfill window: Cases newly in
scope are imported, Cases already imported and unchanged are not rewritten. Data points of Cases
that fall out of scope stay until the connection is deleted.

Examples:
  casesync configure conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f --queues 00G5g00000AbCdE,00G5g00000FgHiJ
  casesync configure conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f --backfill 6m")]
    Configure(ConfigureArgs),

    /// Import new and changed closed Cases (one scheduler tick and a worker draining it).
    #[command(after_help = SYNC_HELP)]
    Sync(SyncArgs),

    /// Show every connection: state, scope, cursor, last sync, data points, last error.
    #[command(after_help = "\
Examples:
  casesync status
  casesync status --json | jq '.[] | {id, state, data_points}'")]
    Status(StatusArgs),

    /// Write data points to stdout as JSONL (one data point per line) or CSV (one row per Case).
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),

    /// Stop importing new data for a connection; data already imported stays.
    #[command(after_help = "\
To resume later: casesync connect --reauthorize CONNECTION (the cursor is kept).

Example:
  casesync disconnect conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f")]
    Disconnect(DisconnectArgs),

    /// Permanently delete a connection: its data points, its refresh token (revoked at Salesforce).
    #[command(after_help = "\
Asks for confirmation on a terminal; without a terminal (scripts, CI) it refuses unless --yes is
given. The connection is disconnected first (a sync running elsewhere stops at its next page),
then its refresh token is revoked at Salesforce. If Salesforce cannot be reached, the delete goes
on all the same (every data point is removed, as promised) and says so: revoke the token in
Salesforce Setup > Connected Apps OAuth Usage yourself.

Examples:
  casesync delete conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f
  casesync delete conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f --yes")]
    Delete(DeleteArgs),

    /// Find out why a connection imports nothing (or less than expected), and how to fix it.
    #[command(after_help = "\
Checks, in order: the refresh token; read access to Case and EmailMessage; that each selected
queue exists and is visible; how many closed Cases are in scope in the backfill window and how
many are owned by users (and therefore excluded); the org's API usage. Exits 1 when a check fails.

Example:
  CASESYNC_CLIENT_SECRET=... casesync doctor conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f")]
    Doctor(DoctorArgs),

    /// The web console: connect, pick queues and backfill, watch the import, browse the Channel,
    /// disconnect or delete, in a browser.
    #[command(after_help = "\
Listens on 127.0.0.1 (port 8765 by default: the callback http://127.0.0.1:8765/callback that a
Connected App for `casesync connect` already has works here too), prints `casesync console:
<URL>` and opens it in a browser (not under CI or without a display). The URL holds a secret
of this launch: only a browser given it gets in. The console syncs active connections in the
background while it runs. Ctrl-C (or SIGTERM) stops it.

Reads the Connected App's consumer secret from CASESYNC_CLIENT_SECRET, as connect does.
With --demo, the bundled Salesforce simulator runs too and is offered as the environment to
connect: no Salesforce org and no Connected App needed.

Examples:
  casesync ui --demo
  CASESYNC_CLIENT_SECRET=... casesync ui --client-id 3MVG9...")]
    Ui(UiArgs),
}

const CONNECT_HELP: &str = "\
Two ways to authorize (the Connected App's consumer secret comes from CASESYNC_CLIENT_SECRET):

  In a browser (default): casesync listens on http://127.0.0.1:PORT/callback (PORT 8765 unless
  --redirect-port is given; register that exact URL as a callback URL of the Connected App),
  prints the authorize URL and opens a browser when there is one. It waits up to 10 minutes for
  Salesforce to redirect back; the flow uses PKCE (S256) and a single-use state.

  Headless: --refresh-token-file FILE holds a refresh token obtained elsewhere; casesync exchanges
  it at LOGIN_URL/services/oauth2/token and takes the org's instance URL from the answer.

The new connection's id is printed alone on the last line of stdout.

Re-authorizing (after `sync` exited 3, or to resume a disconnected connection): pass
--reauthorize CONNECTION, with either way above. The connection keeps its id, settings and
cursor, so the next sync resumes where it stopped.

Examples:
  casesync connect --login-url https://login.salesforce.com --client-id 3MVG9... \\
      --queues 00G5g00000AbCdE,00G5g00000FgHiJ --backfill 90d --channel support
  casesync connect --login-url https://acme.my.salesforce.com --client-id 3MVG9... \\
      --refresh-token-file ./refresh-token.txt
  casesync connect --reauthorize conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f";

const SYNC_HELP: &str = "\
Enqueues one work item per active connection (or per CONNECTION given) and drains the queue:
a run that reaches --run-budget continues in a new run. Connections that need re-authorization
are reported; disconnected ones are skipped.

Exit codes: 0 every connection synced (or was being synced by another casesync process, which
does the work); 3 a connection needs re-authorization; 1 another failure, including a sync
stopped by Salesforce's API limit (the cursor is kept; a later sync resumes; the message says
so). When several apply: a failure, then re-authorization, then a rate limit.

Examples:
  casesync sync
  casesync sync conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f
  casesync sync --watch --interval 300      Keep syncing every 5 minutes until Ctrl-C";

const EXPORT_HELP: &str = "\
JSONL: one data point per line, exactly the data point contract.

CSV: one row per Case with the columns id, connection_id, channel, case_id, case_number,
subject, status, priority, origin, type, created_date, system_modstamp, salesforce_link,
participant_email, participant_name, content_source, message_count, first_message_at,
last_message_at, transcript. The transcript holds the whole conversation as text, one block per
message headed \"[sent_at] direction, from_name <from_address>:\". Cells that begin with = + - @
(and tab or carriage return) are prefixed with ' so spreadsheets do not run them as formulas;
JSONL carries every value verbatim.

Without --channel, points come connection by connection, by Case id. With --channel, they come
in the order they last changed, then by id (the read API's order), and --changed-since keeps
those created or changed since an instant: export again from the time of the last export to
get what changed.

Examples:
  casesync export > cases.jsonl
  casesync export --connection conn_6f1d0c1e8a2b4b0e9d3f5a7c1b2e4d6f --format csv > cases.csv
  casesync export --channel Support --changed-since 2024-03-04T17:00:00Z";

#[derive(Debug, Args)]
pub struct DemoArgs {}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("authorization").args(["refresh_token_file", "redirect_port"])))]
pub struct ConnectArgs {
    /// Where to authorize: https://login.salesforce.com, https://test.salesforce.com or
    /// https://<MyDomain>.my.salesforce.com (plain http only for 127.0.0.1, localhost, [::1]).
    #[arg(long, value_name = "URL", required_unless_present = "reauthorize")]
    pub login_url: Option<LoginUrl>,

    /// The Connected App's consumer key.
    #[arg(
        long,
        value_name = "ID",
        value_parser = parse_client_id,
        required_unless_present = "reauthorize"
    )]
    pub client_id: Option<String>,

    /// Connect headlessly with the refresh token in FILE (no browser).
    #[arg(long, value_name = "FILE")]
    pub refresh_token_file: Option<PathBuf>,

    /// The loopback port of the OAuth callback [default: 8765].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub redirect_port: Option<u16>,

    /// The channel the data points go to.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "support",
        value_parser = ChannelName::parse,
        conflicts_with = "reauthorize"
    )]
    pub channel: ChannelName,

    /// `all` queues, or a comma-separated list of queue ids (see `casesync queues`).
    #[arg(
        long,
        value_name = "all|ID,ID,...",
        default_value = "all",
        conflicts_with = "reauthorize"
    )]
    pub queues: QueueScope,

    /// How far back the first sync reaches: 7d, 30d, 90d or 6m.
    #[arg(
        long,
        value_name = "WINDOW",
        default_value = "30d",
        conflicts_with = "reauthorize"
    )]
    pub backfill: BackfillWindow,

    /// The Salesforce REST API version.
    #[arg(
        long,
        value_name = "VERSION",
        default_value = "59.0",
        conflicts_with = "reauthorize"
    )]
    pub api_version: ApiVersion,

    /// Re-authorize this existing connection instead of creating one; it keeps its cursor.
    #[arg(long, value_name = "CONNECTION")]
    pub reauthorize: Option<ConnectionId>,

    /// Do not try to open a browser; just print the authorize URL.
    #[arg(long, conflicts_with = "refresh_token_file")]
    pub no_browser: bool,
}

#[derive(Debug, Args)]
pub struct QueuesArgs {
    pub connection: ConnectionId,
    /// Print a JSON array of {id, name, developer_name}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").args(["queues", "backfill"]).required(true).multiple(true)))]
pub struct ConfigureArgs {
    pub connection: ConnectionId,
    /// `all` queues, or a comma-separated list of queue ids.
    #[arg(long, value_name = "all|ID,ID,...")]
    pub queues: Option<QueueScope>,
    /// 7d, 30d, 90d or 6m.
    #[arg(long, value_name = "WINDOW")]
    pub backfill: Option<BackfillWindow>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Connections to sync [default: every active one].
    #[arg(value_name = "CONNECTION")]
    pub connections: Vec<ConnectionId>,

    /// Keep syncing every --interval seconds until Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// Seconds between two syncs with --watch.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300,
        requires = "watch",
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub interval: u64,

    /// Rows per Salesforce page (`batchSize`, email rows included; 200 to 2000). Larger pages
    /// mean fewer API calls and more memory.
    #[arg(long, value_name = "ROWS", default_value_t = casesync_core::sync::DEFAULT_BATCH_SIZE,
          value_parser = |s: &str| casesync_core::sync::parse_batch_size(s))]
    pub batch_size: u32,

    /// A connection's first backfill is read as this many parallel time slices (1 to 8; 1: one
    /// stream), at most this many per org. Each holds one of the 10 query cursors Salesforce
    /// allows a user.
    #[arg(long, value_name = "N", default_value_t = casesync_core::sync::DEFAULT_SLICES,
          value_parser = |s: &str| casesync_core::sync::parse_slices(s))]
    pub slices: usize,

    /// Seconds one run may take before it hands over to a continuation run (which holds the
    /// connection's lease afresh).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub run_budget: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print a JSON array, one object per connection.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this connection's data points [default: every connection's].
    #[arg(long, value_name = "CONNECTION")]
    pub connection: Option<ConnectionId>,
    /// Only this channel's data points, in the order they last changed (then by id): the read
    /// API's order.
    #[arg(long, value_name = "NAME", value_parser = ChannelName::parse)]
    pub channel: Option<ChannelName>,
    /// With --channel: only data points created or changed at or after this instant
    /// (RFC 3339, e.g. 2024-03-04T17:00:00Z).
    #[arg(long, value_name = "TIME", requires = "channel", value_parser = parse_instant)]
    pub changed_since: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

fn parse_instant(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let at = chrono::DateTime::parse_from_rfc3339(raw)
        .map_err(|_| format!("{raw:?} is not an RFC 3339 time, e.g. 2024-03-04T17:00:00Z"))?
        .with_timezone(&chrono::Utc);
    if at > chrono::Utc::now() {
        return Err(format!("{raw} is in the future"));
    }
    Ok(at)
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    pub connection: ConnectionId,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub connection: ConnectionId,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// The port on 127.0.0.1 (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_REDIRECT_PORT)]
    pub port: u16,
    /// The Connected App's consumer key, for connecting new sources [default: the one that
    /// authorized the existing connections].
    #[arg(long, value_name = "ID", value_parser = parse_client_id)]
    pub client_id: Option<String>,
    /// Do not open a browser; just print the URL.
    #[arg(long)]
    pub no_browser: bool,
    /// Start the bundled Salesforce simulator with a sample org, to connect to.
    #[arg(long)]
    pub demo: bool,
    /// Seconds between two background syncs of the active connections.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub interval: u64,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    pub connection: ConnectionId,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A consumer key: printable ASCII without spaces, at most 255 characters.
fn parse_client_id(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "a client id is the Connected App's consumer key: 1 to 255 printable characters without spaces"
                .into(),
        );
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connect_takes_one_way_to_authorize() {
        let parse = |args: &[&str]| Cli::try_parse_from(["casesync", "connect"].iter().chain(args));
        let base = [
            "--login-url",
            "https://login.salesforce.com",
            "--client-id",
            "abc",
        ];
        assert!(parse(&base).is_ok());
        let both = [
            &base[..],
            &["--refresh-token-file", "f", "--redirect-port", "9"],
        ]
        .concat();
        assert!(parse(&both).is_err());
        assert!(parse(&["--reauthorize", "conn_0123456789abcdef0123456789abcdef"]).is_ok());
        assert!(
            parse(&["--client-id", "abc"]).is_err(),
            "login url required"
        );
        let bad_window = [&base[..], &["--backfill", "14d"]].concat();
        assert!(parse(&bad_window).is_err());
        let bad_port = [&base[..], &["--redirect-port", "0"]].concat();
        assert!(parse(&bad_port).is_err());
    }
}
