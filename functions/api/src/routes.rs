//! One method per route: parse the input into domain types, call one use case of
//! [`casesync_core::manage::Manager`], answer with a view. No rule lives here.

use casesync_core::domain::{BackfillWindow, ConnectionId, ConnectionState, QueueScope};
use casesync_core::manage::{NewConnection, SettingsChange, StartedAuthorization};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::error::ApiError;
use crate::input::Fields;
use crate::views::{
    AuthorizationStarted, ConnectionDetail, ConnectionList, Deleted, DiagnosisView, Disconnected,
    QueueList, SettingsUpdated,
};
use crate::{Api, json};

type Answer = Result<Response<Body>, ApiError>;

/// A connection id from the path; a malformed one is as unknown as a missing one.
fn connection_id(raw: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(raw).map_err(|_| {
        ApiError::NotFound(
            "no such connection (connection ids are conn_ followed by 32 hex digits)".into(),
        )
    })
}

fn started(started: StartedAuthorization) -> Response<Body> {
    json(
        StatusCode::CREATED,
        &AuthorizationStarted {
            authorize_url: started.authorize_url.to_string(),
            expires_at: started.expires_at,
        },
    )
}

impl Api {
    /// `POST /connections`: stores a single-use state (10 minutes) bound to these settings and
    /// returns the Salesforce authorize URL (PKCE S256).
    pub(crate) async fn create_connection(&self, req: &Request) -> Answer {
        let mut f = Fields::parse(
            req.body(),
            &["channel", "login_url", "queues", "backfill", "api_version"],
        )?;
        let request = NewConnection {
            channel: f.channel()?,
            login_url: f.login_url()?.unwrap_or_default(),
            scope: f.queues()?.unwrap_or(QueueScope::All),
            backfill: f.backfill()?.unwrap_or(BackfillWindow::Days30),
            api_version: f.api_version()?.unwrap_or_default(),
        };
        let redirect_uri = self.redirect_uri(req)?;
        Ok(started(
            self.manager
                .start_connection(request, &redirect_uri)
                .await?,
        ))
    }

    /// `GET /connections`
    pub(crate) async fn list_connections(&self) -> Answer {
        let views = self.manager.list().await?;
        Ok(json(
            StatusCode::OK,
            &ConnectionList {
                connections: views.iter().map(|v| (&v.connection).into()).collect(),
            },
        ))
    }

    /// `GET /connections/{id}`
    pub(crate) async fn get_connection(&self, raw_id: &str) -> Answer {
        let view = self.manager.get(&connection_id(raw_id)?).await?;
        Ok(json(
            StatusCode::OK,
            &ConnectionDetail::new(&view.connection, view.data_points),
        ))
    }

    /// `PUT /connections/{id}`: new queues and/or backfill.
    pub(crate) async fn update_connection(&self, raw_id: &str, req: &Request) -> Answer {
        let id = connection_id(raw_id)?;
        // An unknown connection is a 404 before its body is looked at.
        self.manager.connection(&id).await?;
        let mut f = Fields::parse(req.body(), &["queues", "backfill"])?;
        let change = SettingsChange {
            scope: f.queues()?,
            backfill: f.backfill()?,
        };
        let done = self.manager.configure(&id, change).await?;
        let after = &done.after;
        let message = match done.cursor_restarted_at {
            None => format!(
                "Nothing changed: the connection already imports queues {} with a {} backfill. \
                 The cursor was left where it was.",
                after.scope, after.backfill
            ),
            Some(at) => {
                let mut m = format!(
                    "The cursor restarted at {} (the start of the {} window): the next sync \
                     re-reads closed Cases from there, imports those newly in scope and leaves \
                     unchanged data points alone. Data points of Cases no longer in scope stay \
                     until the connection is deleted.",
                    at.to_rfc3339(),
                    after.backfill
                );
                if after.state != ConnectionState::Active {
                    m.push_str(&format!(
                        " The connection is {}: the new settings apply once it is re-authorized.",
                        after.state
                    ));
                }
                m
            }
        };
        Ok(json(
            StatusCode::OK,
            &SettingsUpdated {
                changed: done.changed(),
                cursor_restarted_at: done.cursor_restarted_at,
                message,
                connection: after.into(),
            },
        ))
    }

    /// `POST /connections/{id}/disconnect`: no more syncs; the data points stay.
    pub(crate) async fn disconnect(&self, raw_id: &str) -> Answer {
        let done = self.manager.disconnect(&connection_id(raw_id)?).await?;
        Ok(json(
            StatusCode::OK,
            &Disconnected {
                message: "Syncing stopped. The data points already imported stay; re-authorize \
                          the connection to resume where it stopped, or delete it to remove \
                          everything.",
                connection: (&done.connection).into(),
            },
        ))
    }

    /// `POST /connections/{id}/reauthorize`: an authorize URL whose callback gives this
    /// connection a new refresh token (the old one is revoked) and makes it active again,
    /// keeping its cursor.
    pub(crate) async fn reauthorize(&self, raw_id: &str, req: &Request) -> Answer {
        let id = connection_id(raw_id)?;
        self.manager.connection(&id).await?;
        Fields::parse(req.body(), &[])?;
        let redirect_uri = self.redirect_uri(req)?;
        Ok(started(
            self.manager
                .start_reauthorization(&id, &redirect_uri)
                .await?,
        ))
    }

    /// `GET /connections/{id}/queues`: what the authorizing user can see in Salesforce.
    pub(crate) async fn list_queues(&self, raw_id: &str) -> Answer {
        let (c, queues) = self.manager.queues(&connection_id(raw_id)?).await?;
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
        let (_, diagnosis) = self.manager.diagnose(&connection_id(raw_id)?).await?;
        Ok(json(StatusCode::OK, &DiagnosisView::from(&diagnosis)))
    }

    /// `DELETE /connections/{id}`: the core's delete policy
    /// ([`casesync_core::manage`]); `409 sync_running` when a sync still holds the connection.
    pub(crate) async fn delete_connection(&self, raw_id: &str) -> Answer {
        let done = self.manager.delete(&connection_id(raw_id)?).await?;
        Ok(json(
            StatusCode::OK,
            &Deleted {
                id: done.connection.id.to_string(),
                deleted: true,
                data_points_deleted: done.data_points_deleted,
                token: (&done.token).into(),
            },
        ))
    }
}
