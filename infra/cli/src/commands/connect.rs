//! `casesync connect`: a new connection (or a re-authorized one), headless or through a browser.

use std::path::Path;

use casesync_core::connect::{self, ConnectionSettings, StartedAuthorization};
use casesync_core::domain::{Connection, ConnectionId, LoginUrl};
use casesync_core::salesforce::OAuthClient;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};

use crate::app::{self, App};
use crate::cli::{ConnectArgs, DEFAULT_REDIRECT_PORT};
use crate::error::{CliError, Exit, failed};
use crate::oauth_loopback::{self, CallbackServer, Completion, PendingFlows};
use crate::output::{self, outln};

/// Refresh tokens are a few hundred bytes; a bigger file is not one.
const MAX_TOKEN_FILE: u64 = 16 * 1024;

pub async fn run(dir: &Path, args: ConnectArgs) -> Result<Exit, CliError> {
    // Everything that can be checked is checked before any write or network call.
    let secret = app::client_secret_from_env()?;
    let token = args
        .refresh_token_file
        .as_deref()
        .map(read_refresh_token)
        .transpose()?;
    let existing = match &args.reauthorize {
        Some(id) => Some(connection_to_reauthorize(dir, id, &args).await?),
        None => None,
    };
    // The callback port must be free before the flow starts.
    let server = match token {
        Some(_) => None,
        None => {
            Some(CallbackServer::bind(args.redirect_port.unwrap_or(DEFAULT_REDIRECT_PORT)).await?)
        }
    };
    let (app, login_url, client_id, settings) = match existing {
        Some((app, c)) => {
            let settings = settings_of(&c);
            let client_id = app::client_id_of(&c).to_owned();
            (app, c.login_url.clone(), client_id, settings)
        }
        None => {
            let settings = ConnectionSettings {
                channel: args.channel.clone(),
                scope: args.queues.clone(),
                backfill: args.backfill,
                api_version: args.api_version,
            };
            let login_url = args
                .login_url
                .clone()
                .ok_or_else(|| CliError::input("--login-url is required"))?;
            let client_id = args
                .client_id
                .clone()
                .ok_or_else(|| CliError::input("--client-id is required"))?;
            (App::create(dir).await?, login_url, client_id, settings)
        }
    };
    let salesforce = app::salesforce(&client_id, secret)?;
    let oauth = &salesforce.oauth;

    let connection = match (token, server) {
        (Some(token), _) => {
            let result = match &args.reauthorize {
                Some(id) => {
                    connect::reauthorize_with_refresh_token(
                        oauth,
                        &app.store,
                        &app.secrets,
                        id,
                        token,
                    )
                    .await
                }
                None => {
                    connect::with_refresh_token(
                        oauth,
                        &app.store,
                        &app.secrets,
                        login_url,
                        token,
                        settings,
                        Utc::now(),
                    )
                    .await
                }
            };
            result.map_err(|e| failed!("{e}"))?
        }
        (None, Some(mut server)) => {
            let flows = PendingFlows::new();
            let started = start_web_flow(
                oauth,
                &flows,
                &server,
                login_url,
                settings,
                args.reauthorize.clone(),
            )
            .await?;
            eprintln!(
                "Open this URL in a browser to authorize casesync (it waits up to 10 minutes for \
                 Salesforce to redirect to {}):\n\n  {}\n",
                server.redirect_uri(),
                started.authorize_url
            );
            if !args.no_browser && oauth_loopback::open_browser(started.authorize_url.as_str()) {
                eprintln!("Opened it in your browser.");
            }
            let completion = Completion {
                oauth,
                states: &flows,
                store: &app.store,
                secrets: &app.secrets,
            };
            let result = tokio::select! {
                r = oauth_loopback::await_callback(&mut server, &started, completion) => r,
                _ = crate::shutdown::requested() => Err(CliError::Interrupted),
            };
            server.shutdown().await;
            result?
        }
        (None, None) => unreachable!("a callback server is bound whenever there is no token"),
    };

    report(&app, &connection, args.reauthorize.is_some(), &args);
    Ok(Exit::Success)
}

/// Stores a pending flow (in this process) and builds the authorize URL for `server`.
pub async fn start_web_flow(
    oauth: &OAuthClient,
    flows: &PendingFlows,
    server: &CallbackServer,
    login_url: LoginUrl,
    settings: ConnectionSettings,
    reauthorize: Option<ConnectionId>,
) -> Result<StartedAuthorization, CliError> {
    connect::start(
        oauth,
        flows,
        login_url,
        &server.redirect_uri(),
        settings,
        reauthorize,
        Utc::now(),
    )
    .await
    .map_err(|e| failed!("{e}"))
}

/// The connection `id` and its data dir, checked against what the command line says.
async fn connection_to_reauthorize(
    dir: &Path,
    id: &ConnectionId,
    args: &ConnectArgs,
) -> Result<(App, Connection), CliError> {
    let app = App::existing(dir)
        .await?
        .ok_or_else(|| app::unknown_connection(id, dir))?;
    let c = app.connection(id).await?;
    if let Some(url) = &args.login_url
        && url != &c.login_url
    {
        return Err(CliError::input(format!(
            "{id} was authorized at {}, not {url}: re-authorize it at the same login URL (or \
             leave --login-url out)",
            c.login_url
        )));
    }
    if let Some(client_id) = &args.client_id
        && c.client_id
            .as_deref()
            .is_some_and(|known| known != client_id)
    {
        return Err(CliError::input(format!(
            "{id} was authorized through another Connected App: a refresh token only works with \
             the app that issued it (leave --client-id out to use the connection's)"
        )));
    }
    Ok((app, c))
}

fn settings_of(c: &Connection) -> ConnectionSettings {
    ConnectionSettings {
        channel: c.channel.clone(),
        scope: c.scope.clone(),
        backfill: c.backfill,
        api_version: c.api_version,
    }
}

/// Reads a refresh token file: one token, alone on its line. Its content never reaches an error.
fn read_refresh_token(path: &Path) -> Result<SecretString, CliError> {
    let unreadable = |why: String| {
        CliError::input(format!(
            "cannot use the refresh token file {}: {why}",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("it is not a file".into()));
    }
    if meta.len() > MAX_TOKEN_FILE {
        return Err(unreadable(format!(
            "it is {} bytes; a refresh token file holds one token",
            meta.len()
        )));
    }
    let raw = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let text = String::from_utf8(raw).map_err(|_| unreadable("it is not UTF-8 text".into()))?;
    let token = SecretString::from(text);
    let trimmed = token.expose_secret().trim();
    if trimmed.is_empty() {
        return Err(unreadable("it is empty".into()));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(unreadable(
            "it must hold just the refresh token, on one line".into(),
        ));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

fn report(app: &App, c: &Connection, reauthorized: bool, args: &ConnectArgs) {
    if reauthorized {
        eprintln!(
            "Re-authorized {}: it is active again and the next sync resumes from its cursor, {}.",
            output::label(c),
            output::cursor(&c.cursor)
        );
    } else {
        eprintln!(
            "Connected {} to {}: queues {}, backfill {} (closed Cases since {}).",
            output::label(c),
            c.instance_url,
            c.scope,
            c.backfill,
            output::instant(c.cursor.system_modstamp)
        );
    }
    if let Some(file) = &args.refresh_token_file {
        eprintln!(
            "The refresh token is stored in {} (mode 0600); you can delete {} now.",
            app.data_dir.secrets_path().display(),
            file.display()
        );
    }
    eprintln!("Next: casesync sync   (then casesync status, casesync export)");
    outln!("{}", c.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_holds_one_token_whose_value_never_reaches_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "  5Aep861secretvalue\n").unwrap();
        assert_eq!(
            read_refresh_token(&file).unwrap().expose_secret(),
            "5Aep861secretvalue"
        );
        std::fs::write(&file, "5Aep861secret value\n").unwrap();
        let e = read_refresh_token(&file).unwrap_err().to_string();
        assert!(e.contains("one line") && !e.contains("secret"), "{e}");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_refresh_token(&file).is_err());
        assert!(read_refresh_token(&dir.path().join("missing")).is_err());
        assert!(read_refresh_token(dir.path()).is_err());
    }
}
