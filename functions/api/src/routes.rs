//! One method per route. Each parses its input into domain types, calls the core through the
//! ports, and answers with a view.

use std::time::{Duration, Instant};

use casesync_core::connect::{self, ConnectionSettings};
use casesync_core::diagnostics;
use casesync_core::domain::{
    BackfillWindow, Connection, ConnectionId, ConnectionState, Cursor, QueueScope,
};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::error::ApiError;
use crate::input::Fields;
use crate::views::{
    AuthorizationStarted, ConnectionDetail, ConnectionList, Deleted, DiagnosisView, Disconnected,
    QueueList, SettingsUpdated, TokenRevocation,
};
use crate::{Api, json};

/// The sync lease holder `DELETE` uses: every delete of a connection shares it, so a retried
/// delete is not locked out by an earlier attempt's lease.
pub const DELETE_LEASE_HOLDER: &str = "casesync-api:delete";

type Answer = Result<Response<Body>, ApiError>;

impl Api {
    /// The connection named in the path, or 404.
    async fn connection(&self, raw_id: &str) -> Result<Connection, ApiError> {
        let id = ConnectionId::parse(raw_id).map_err(|_| {
            ApiError::NotFound(
                "no such connection (connection ids are conn_ followed by 32 hex digits)".into(),
            )
        })?;
        self.connections
            .get_connection(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no connection {id}")))
    }

    /// `POST /connections`: stores a single-use state (10 minutes) bound to these settings and
    /// returns the Salesforce authorize URL (PKCE S256).
    pub(crate) async fn create_connection(&self, req: &Request) -> Answer {
        let mut f = Fields::parse(
            req.body(),
            &["channel", "login_url", "queues", "backfill", "api_version"],
        )?;
        let channel = f.channel()?;
        let login_url = f.login_url()?.unwrap_or_default();
        if login_url.is_loopback() && !self.options.allow_loopback_login {
            return Err(ApiError::invalid(
                "login_url",
                "loopback login URLs are for local testing only: use https://login.salesforce.com, \
                 https://test.salesforce.com or https://<MyDomain>.my.salesforce.com",
            ));
        }
        let scope = f.queues()?.unwrap_or(QueueScope::All);
        let backfill = f.backfill()?.unwrap_or(BackfillWindow::Days30);
        let api_version = f.api_version()?.unwrap_or_default();
        let redirect_uri = self.redirect_uri(req)?;
        let started = connect::start(
            &self.salesforce.oauth,
            self.auth_states.as_ref(),
            login_url,
            &redirect_uri,
            ConnectionSettings {
                channel,
                scope,
                backfill,
                api_version,
            },
            None,
            self.clock.now(),
        )
        .await?;
        Ok(json(
            StatusCode::CREATED,
            &AuthorizationStarted {
                authorize_url: started.authorize_url.to_string(),
                expires_at: started.expires_at,
            },
        ))
    }

    /// `GET /connections`
    pub(crate) async fn list_connections(&self) -> Answer {
        let connections = self.connections.list_connections().await?;
        Ok(json(
            StatusCode::OK,
            &ConnectionList {
                connections: connections.iter().map(Into::into).collect(),
            },
        ))
    }

    /// `GET /connections/{id}`
    pub(crate) async fn get_connection(&self, raw_id: &str) -> Answer {
        let c = self.connection(raw_id).await?;
        let data_points = self.data_points.count_data_points(&c.id).await?;
        Ok(json(
            StatusCode::OK,
            &ConnectionDetail::new(&c, data_points),
        ))
    }

    /// `PUT /connections/{id}`: new queues and/or backfill. The cursor restarts at the start of
    /// the (new) window so Cases newly in scope are imported.
    pub(crate) async fn update_connection(&self, raw_id: &str, req: &Request) -> Answer {
        let c = self.connection(raw_id).await?;
        let mut f = Fields::parse(req.body(), &["queues", "backfill"])?;
        let (queues, backfill) = (f.queues()?, f.backfill()?);
        if queues.is_none() && backfill.is_none() {
            return Err(ApiError::InvalidBody(
                "nothing to change: give \"queues\", \"backfill\" or both".into(),
            ));
        }
        let scope = queues.unwrap_or_else(|| c.scope.clone());
        let backfill = backfill.unwrap_or(c.backfill);
        if scope == c.scope && backfill == c.backfill {
            return Ok(json(
                StatusCode::OK,
                &SettingsUpdated {
                    changed: false,
                    cursor_restarted_at: None,
                    message: format!(
                        "Nothing changed: the connection already imports queues {scope} with a \
                         {backfill} backfill. The cursor was left where it was."
                    ),
                    connection: (&c).into(),
                },
            ));
        }
        let cursor = Cursor::backfill_start(backfill, self.clock.now());
        self.connections
            .update_settings(&c.id, &scope, backfill, &cursor)
            .await?;
        let updated = self.connection(raw_id).await?;
        let mut message = format!(
            "The cursor restarted at {} (the start of the {backfill} window): the next sync \
             re-reads closed Cases from there, imports those newly in scope and leaves unchanged \
             data points alone. Data points of Cases no longer in scope stay until the connection \
             is deleted.",
            cursor.system_modstamp.to_rfc3339()
        );
        if updated.state != ConnectionState::Active {
            message.push_str(&format!(
                " The connection is {}: the new settings apply once it is re-authorized.",
                updated.state
            ));
        }
        Ok(json(
            StatusCode::OK,
            &SettingsUpdated {
                changed: true,
                cursor_restarted_at: Some(cursor.system_modstamp),
                message,
                connection: (&updated).into(),
            },
        ))
    }

    /// `POST /connections/{id}/disconnect`: no more syncs; the data points stay.
    pub(crate) async fn disconnect(&self, raw_id: &str) -> Answer {
        let c = self.connection(raw_id).await?;
        self.connections
            .set_state(
                &c.id,
                ConnectionState::Disconnected,
                Some("disconnected through the management API"),
            )
            .await?;
        let c = self.connection(raw_id).await?;
        Ok(json(
            StatusCode::OK,
            &Disconnected {
                message: "Syncing stopped. The data points already imported stay; re-authorize \
                          the connection to resume where it stopped, or delete it to remove \
                          everything.",
                connection: (&c).into(),
            },
        ))
    }

    /// `POST /connections/{id}/reauthorize`: an authorize URL whose callback gives this
    /// connection a new refresh token and makes it active again, keeping its cursor.
    pub(crate) async fn reauthorize(&self, raw_id: &str, req: &Request) -> Answer {
        let c = self.connection(raw_id).await?;
        Fields::parse(req.body(), &[])?;
        let redirect_uri = self.redirect_uri(req)?;
        let started = connect::start(
            &self.salesforce.oauth,
            self.auth_states.as_ref(),
            c.login_url.clone(),
            &redirect_uri,
            ConnectionSettings {
                channel: c.channel.clone(),
                scope: c.scope.clone(),
                backfill: c.backfill,
                api_version: c.api_version,
            },
            Some(c.id.clone()),
            self.clock.now(),
        )
        .await?;
        Ok(json(
            StatusCode::CREATED,
            &AuthorizationStarted {
                authorize_url: started.authorize_url.to_string(),
                expires_at: started.expires_at,
            },
        ))
    }

    /// `GET /connections/{id}/queues`: what the authorizing user can see in Salesforce.
    pub(crate) async fn list_queues(&self, raw_id: &str) -> Answer {
        let c = self.connection(raw_id).await?;
        let api = self.salesforce.org(&c, self.secrets.clone());
        let queues = diagnostics::list_queues(&api).await?;
        Ok(json(
            StatusCode::OK,
            &QueueList {
                selected: (&c.scope).into(),
                queues: queues.iter().map(Into::into).collect(),
            },
        ))
    }

    /// `GET /connections/{id}/diagnostics`: the checks of `casesync doctor`. A failing check is
    /// part of the answer (200), not an error.
    pub(crate) async fn diagnostics(&self, raw_id: &str) -> Answer {
        let c = self.connection(raw_id).await?;
        let diagnosis = diagnostics::diagnose(
            &self.salesforce,
            self.secrets.clone(),
            &c,
            &self.options.sync,
            self.clock.now(),
        )
        .await;
        Ok(json(StatusCode::OK, &DiagnosisView::from(&diagnosis)))
    }

    /// `DELETE /connections/{id}`, in an order that a retry can always finish:
    ///
    /// 1. disconnect, so a running sync stops at its next page and no new one starts;
    /// 2. take the sync lease (waiting up to `Options::delete_wait`; 409 `sync_running` if a
    ///    sync still holds it), so no worker writes data points while they are deleted;
    /// 3. revoke the refresh token at Salesforce. If that fails (Salesforce unreachable, or it
    ///    refuses), the delete goes on: the token is deleted here and the answer says so
    ///    (`token.status = "failed"`), so an administrator can revoke it in Setup. Keeping a
    ///    connection a user asked to delete because a third party is down would be worse, and
    ///    a token nobody holds cannot be used;
    /// 4. delete the secret, every data point, and last the connection (until then, calling
    ///    DELETE again finishes the job).
    pub(crate) async fn delete_connection(&self, raw_id: &str) -> Answer {
        let c = self.connection(raw_id).await?;
        let id = &c.id;
        self.connections
            .set_state(
                id,
                ConnectionState::Disconnected,
                Some("being deleted through the management API"),
            )
            .await?;
        self.take_sync_lease(id).await?;
        let token = self.revoke(&c).await?;
        self.secrets.delete_refresh_token(id).await?;
        let data_points_deleted = self.data_points.delete_data_points(id).await?;
        self.connections.delete_connection(id).await?;
        self.salesforce.tokens.forget(id);
        tracing::info!(
            connection = %id,
            data_points_deleted,
            token = token.status,
            "connection deleted"
        );
        Ok(json(
            StatusCode::OK,
            &Deleted {
                id: id.to_string(),
                deleted: true,
                data_points_deleted,
                token,
            },
        ))
    }

    async fn take_sync_lease(&self, id: &ConnectionId) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.options.delete_wait;
        loop {
            let now = self.clock.now();
            let until = now + self.options.delete_lease;
            if self
                .connections
                .try_acquire_lease(id, DELETE_LEASE_HOLDER, now, until)
                .await?
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ApiError::Conflict {
                    code: "sync_running",
                    message: "a sync of this connection is still running; it stops at its next \
                              page now that the connection is disconnected. Nothing was deleted \
                              yet: try again in a minute."
                        .into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn revoke(&self, c: &Connection) -> Result<TokenRevocation, ApiError> {
        let Some(token) = self.secrets.get_refresh_token(&c.id).await? else {
            return Ok(TokenRevocation {
                status: "not_stored",
                message: "no refresh token was stored, so there was nothing to revoke".into(),
            });
        };
        let oauth = match &c.client_id {
            Some(client_id) => self.salesforce.oauth.for_client_id(client_id),
            None => self.salesforce.oauth.clone(),
        };
        Ok(match oauth.revoke(&c.login_url, &token).await {
            Ok(()) => TokenRevocation {
                status: "revoked",
                message: format!("the refresh token was revoked at {}", c.login_url),
            },
            Err(e) => {
                tracing::warn!(connection = %c.id, error = %e, "could not revoke the refresh token; deleting it anyway");
                TokenRevocation {
                    status: "failed",
                    message: format!(
                        "the refresh token could not be revoked at {} ({e}); it was deleted here \
                         all the same. A Salesforce administrator can revoke it in Setup > \
                         Connected Apps OAuth Usage",
                        c.login_url
                    ),
                }
            }
        })
    }
}
