//! "Authentication succeeds, but no Cases import": the checks that find out why, in the order
//! a support engineer would run them, each with what is wrong and how to fix it. Shared by
//! `casesync doctor` and the management API.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Connection, QueueScope};
use crate::ports::SecretStore;
use crate::salesforce::records::QueueRecord;
use crate::salesforce::soql;
use crate::salesforce::tokens::TokenCache;
use crate::salesforce::{OrgApi, SObject, Salesforce, SalesforceError};
use crate::sync::SyncConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Warning,
    Failed,
    /// Not run because an earlier check failed.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    /// What was found, in plain words.
    pub detail: String,
    /// What to do about it, when something is wrong.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub checks: Vec<Check>,
    /// Salesforce API calls the checks used.
    pub api_calls: u64,
}

impl Diagnosis {
    pub fn healthy(&self) -> bool {
        self.checks
            .iter()
            .all(|c| matches!(c.status, CheckStatus::Ok | CheckStatus::Warning))
    }
}

fn check(name: &'static str, status: CheckStatus, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        fix,
    }
}

/// Every queue the authorizing user can see, following pages.
pub async fn list_queues(api: &OrgApi) -> Result<Vec<QueueRecord>, SalesforceError> {
    let (mut page, _) = api.query::<QueueRecord>(&soql::queues(), None).await?;
    let mut queues = std::mem::take(&mut page.records);
    let mut next = page.next().map(str::to_owned);
    while let Some(url) = next {
        let (p, _) = api.query_more::<QueueRecord>(&url, None).await?;
        queues.extend(p.records.iter().cloned());
        next = p.next().map(str::to_owned);
    }
    Ok(queues)
}

/// Runs the checks for a connection. Never fails: a failing check is part of the answer.
pub async fn diagnose(
    salesforce: &Salesforce,
    secrets: Arc<dyn SecretStore>,
    connection: &Connection,
    config: &SyncConfig,
    now: DateTime<Utc>,
) -> Diagnosis {
    // A private token cache: the first call must really exercise the refresh token.
    let fresh = Salesforce {
        tokens: TokenCache::new(),
        ..salesforce.clone()
    };
    let api = fresh.org(connection, secrets);
    let mut checks = Vec::new();
    let skipped = |name| {
        check(
            name,
            CheckStatus::Skipped,
            "not checked: an earlier check failed".into(),
            None,
        )
    };

    // 1. The refresh token works (describe is the first call: it refreshes first).
    let case_describe = api.describe(SObject::Case).await;
    let token_ok = match &case_describe {
        Err(e)
            if e.needs_reauth() || matches!(e.root(), SalesforceError::InvalidSession { .. }) =>
        {
            checks.push(check(
                "refresh token",
                CheckStatus::Failed,
                e.to_string(),
                Some("Authorize the connection again (casesync connect ... or the app's Connect button). If it keeps failing, check the Connected App's refresh token policy (\"Refresh token is valid until revoked\") and that the user is active.".into()),
            ));
            false
        }
        Err(e) if e.is_rate_limited() => {
            checks.push(check(
                "refresh token",
                CheckStatus::Ok,
                "the token refreshed".into(),
                None,
            ));
            checks.push(check(
                "API quota",
                CheckStatus::Failed,
                e.to_string(),
                Some("Wait for the rolling 24-hour window to free up, or raise the org's API allotment.".into()),
            ));
            return Diagnosis {
                checks,
                api_calls: api.api_calls(),
            };
        }
        Err(SalesforceError::Transport(t)) => {
            checks.push(check(
                "refresh token",
                CheckStatus::Failed,
                format!("Salesforce could not be reached: {t}"),
                Some(format!(
                    "Check that {} is reachable from here.",
                    connection.instance_url
                )),
            ));
            false
        }
        _ => {
            checks.push(check(
                "refresh token",
                CheckStatus::Ok,
                "Salesforce accepted the refresh token and issued an access token".into(),
                None,
            ));
            true
        }
    };
    if !token_ok {
        for name in ["object access", "queues", "matching Cases", "API usage"] {
            checks.push(skipped(name));
        }
        return Diagnosis {
            checks,
            api_calls: api.api_calls(),
        };
    }

    // 2. Case and EmailMessage are readable.
    let email_describe = api.describe(SObject::EmailMessage).await;
    let readable = |d: &Result<crate::salesforce::records::Describe, SalesforceError>| matches!(d, Ok(x) if x.queryable);
    let access_ok = readable(&case_describe) && readable(&email_describe);
    if access_ok {
        checks.push(check(
            "object access",
            CheckStatus::Ok,
            "this user can query Case and EmailMessage".into(),
            None,
        ));
    } else {
        let mut missing = Vec::new();
        if !readable(&case_describe) {
            missing.push("Case");
        }
        if !readable(&email_describe) {
            missing.push("EmailMessage");
        }
        checks.push(check(
            "object access",
            CheckStatus::Failed,
            format!("this user cannot query {}", missing.join(" and ")),
            Some("Give the integration user Read access to Cases and Email Messages (profile or permission set), and make sure Email-to-Case or Enhanced Email is enabled so EmailMessage exists.".into()),
        ));
    }

    // 3. The selected queues exist and are visible.
    match &connection.scope {
        QueueScope::All => match list_queues(&api).await {
            Ok(q) if q.is_empty() => checks.push(check(
                "queues",
                CheckStatus::Failed,
                "this user can see no queues at all, so no Case can match \"all queues\"".into(),
                Some("Create the support queues in Salesforce, or give the user visibility of them (sharing settings).".into()),
            )),
            Ok(q) => checks.push(check(
                "queues",
                CheckStatus::Ok,
                format!(
                    "all queues: {} visible ({})",
                    q.len(),
                    q.iter().map(|x| x.name.as_str()).take(10).collect::<Vec<_>>().join(", ")
                ),
                None,
            )),
            Err(e) => checks.push(check("queues", CheckStatus::Failed, e.to_string(), None)),
        },
        QueueScope::Specific(ids) => {
            match api.query::<QueueRecord>(&soql::queues_by_id(ids), None).await {
                Ok((page, _)) => {
                    let found: Vec<&QueueRecord> = page.records.iter().collect();
                    let missing: Vec<String> = ids
                        .iter()
                        .filter(|id| !found.iter().any(|q| q.id == id.as_str()))
                        .map(|id| id.to_string())
                        .collect();
                    if missing.is_empty() {
                        checks.push(check(
                            "queues",
                            CheckStatus::Ok,
                            format!(
                                "every selected queue exists: {}",
                                found.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                            None,
                        ));
                    } else {
                        checks.push(check(
                            "queues",
                            CheckStatus::Failed,
                            format!("these selected queues do not exist or are not visible to this user: {}", missing.join(", ")),
                            Some("Pick queues from `casesync queues CONNECTION` and run `casesync configure CONNECTION --queues ...`.".into()),
                        ));
                    }
                }
                Err(e) => checks.push(check("queues", CheckStatus::Failed, e.to_string(), None)),
            }
        }
    }

    // 4. How many closed Cases the scope matches in the backfill window, and how many are
    //    owned by users (and therefore excluded).
    let since = connection.backfill.start(now);
    let until = now - config.lag;
    let owners = soql::owner_filters(&connection.scope, 200);
    let mut in_scope = 0u64;
    let mut count_error = None;
    for o in &owners {
        match api.count(&soql::count_closed(o, since, until)).await {
            Ok(n) => in_scope += n,
            Err(e) => count_error = Some(e),
        }
    }
    let user_owned = api
        .count(&soql::count_closed_user_owned(since, until))
        .await;
    match (count_error, user_owned) {
        (Some(e), _) | (None, Err(e)) => checks.push(check(
            "matching Cases",
            CheckStatus::Failed,
            e.to_string(),
            None,
        )),
        (None, Ok(users)) => {
            let window = connection.backfill;
            let detail = format!(
                "{in_scope} closed Cases in scope in the last {window}; {users} closed Cases in that window are owned by users, not queues, and are therefore excluded"
            );
            if in_scope == 0 && users > 0 {
                checks.push(check(
                    "matching Cases",
                    CheckStatus::Failed,
                    detail,
                    Some("Closed Cases in this org are owned by agents, not queues. casesync imports queue-owned Cases only: route closed Cases back to their queue (an assignment rule or flow), or select the queues your agents' Cases belong to.".into()),
                ));
            } else if in_scope == 0 {
                checks.push(check(
                    "matching Cases",
                    CheckStatus::Warning,
                    detail,
                    Some("No closed Case matches yet. Pick a longer backfill (casesync configure CONNECTION --backfill 6m) or check the queue selection.".into()),
                ));
            } else {
                checks.push(check("matching Cases", CheckStatus::Ok, detail, None));
            }
        }
    }
    // 5. The org's API usage.
    match api.api_usage() {
        Some(u) if u.share() > config.max_api_usage_share => checks.push(check(
            "API usage",
            CheckStatus::Warning,
            u.to_string(),
            Some(format!(
                "Syncing pauses above {:.0} % of the daily allotment to leave room for other integrations; it resumes by itself.",
                config.max_api_usage_share * 100.0
            )),
        )),
        Some(u) => checks.push(check("API usage", CheckStatus::Ok, u.to_string(), None)),
        None => checks.push(check(
            "API usage",
            CheckStatus::Warning,
            "Salesforce sent no Sforce-Limit-Info header".into(),
            None,
        )),
    }
    Diagnosis {
        checks,
        api_calls: api.api_calls(),
    }
}
