//! `casesync connect`: a new connection (or a re-authorized one), headless or through a browser.

use std::path::Path;
use std::sync::Arc;

use casesync_core::domain::{Connection, ConnectionId};
use casesync_core::manage::{Authorized, ManageError, Manager, NewConnection, Revocation};
use secrecy::{ExposeSecret, SecretString};

use crate::app::{self, App};
use crate::cli::{ConnectArgs, DEFAULT_REDIRECT_PORT};
use crate::error::{CliError, Exit, failed};
use crate::oauth_loopback::{self, CallbackServer, PendingFlows};
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
    let (app, client_id, new) = match existing {
        Some((app, c)) => {
            let client_id = app::client_id_of(&c).to_owned();
            (app, client_id, None)
        }
        None => {
            let new = NewConnection {
                channel: args.channel.clone(),
                login_url: args
                    .login_url
                    .clone()
                    .ok_or_else(|| CliError::input("--login-url is required"))?,
                scope: args.queues.clone(),
                backfill: args.backfill,
                api_version: args.api_version,
            };
            let client_id = args
                .client_id
                .clone()
                .ok_or_else(|| CliError::input("--client-id is required"))?;
            (App::create(dir).await?, client_id, Some(new))
        }
    };
    let manager = app.manager(app::salesforce(&client_id, secret)?);
    let failed = |e: ManageError| failed!("{e}");

    let authorized = match (token, server) {
        (Some(token), _) => match (&args.reauthorize, new) {
            (Some(id), _) => manager
                .reauthorize_with_refresh_token(id, token)
                .await
                .map_err(failed)?,
            (None, Some(new)) => Authorized {
                connection: manager
                    .connect_with_refresh_token(new, token)
                    .await
                    .map_err(failed)?,
                reauthorized: false,
                superseded: None,
            },
            (None, None) => {
                unreachable!("a new connection is described whenever none is re-authorized")
            }
        },
        (None, Some(mut server)) => {
            // The pending flow (state and PKCE verifier) stays in this process.
            let manager = Manager {
                auth_states: Arc::new(PendingFlows::new()),
                ..manager
            };
            let redirect_uri = server.redirect_uri();
            let started = match (&args.reauthorize, new) {
                (Some(id), _) => manager.start_reauthorization(id, &redirect_uri).await,
                (None, Some(new)) => manager.start_connection(new, &redirect_uri).await,
                (None, None) => {
                    unreachable!("a new connection is described whenever none is re-authorized")
                }
            }
            .map_err(failed)?;
            eprintln!(
                "Open this URL in a browser to authorize casesync (it waits up to 10 minutes for \
                 Salesforce to redirect to {}):\n\n  {}\n",
                redirect_uri, started.authorize_url
            );
            if !args.no_browser && oauth_loopback::open_browser(started.authorize_url.as_str()) {
                eprintln!("Opened it in your browser.");
            }
            let result = tokio::select! {
                r = oauth_loopback::await_callback(&mut server, &started, &manager) => r,
                _ = crate::shutdown::requested() => Err(CliError::Interrupted),
            };
            server.shutdown().await;
            result?
        }
        (None, None) => unreachable!("a callback server is bound whenever there is no token"),
    };

    report(&app, &authorized, &args);
    Ok(Exit::Success)
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

fn report(app: &App, authorized: &Authorized, args: &ConnectArgs) {
    let c = &authorized.connection;
    if authorized.reauthorized {
        eprintln!(
            "Re-authorized {}: it is active again and the next sync resumes from its cursor, {}.",
            output::label(c),
            output::cursor(&c.cursor)
        );
        match &authorized.superseded {
            Some(r @ Revocation::Failed { .. }) => eprintln!("The previous refresh token: {r}."),
            Some(Revocation::Revoked { .. }) => {
                eprintln!("The previous refresh token was revoked at Salesforce.")
            }
            _ => {}
        }
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
