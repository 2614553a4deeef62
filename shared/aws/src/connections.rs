//! Connections, cursors, run records and leases in one DynamoDB table (see the crate docs for
//! the item layout).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use casesync_core::domain::{
    ApiVersion, BackfillPlan, BackfillWindow, CaseFailure, CaseId, ChannelName, Connection,
    ConnectionId, ConnectionState, Cursor, InstanceUrl, LoginUrl, OrgId, QueueScope,
};
use casesync_core::ports::{
    ConnectionReader, ConnectionWriter, CursorStore, LeaseStore, RunRecord, RunRecorder,
    StateWriter, StoreError, StoreResult,
};
use casesync_core::sync::SyncReport;

use crate::error::{ErrorClass, classify, corrupt, store_error};
use crate::item::{Attrs, Expr, Item, s};
use crate::time;

// Attribute names of a connection item.
const ID: &str = "connection_id";
const CHANNEL: &str = "channel";
const CLIENT_ID: &str = "client_id";
const LOGIN_URL: &str = "login_url";
const INSTANCE_URL: &str = "instance_url";
const API_VERSION: &str = "api_version";
const SCOPE: &str = "scope";
const BACKFILL: &str = "backfill";
const STATE: &str = "state";
const STATE_REASON: &str = "state_reason";
const CREATED_AT: &str = "created_at";
const CURSOR_MODSTAMP: &str = "cursor_modstamp";
const CURSOR_CASE_ID: &str = "cursor_case_id";
const LAST_LOOKBACK_AT: &str = "last_lookback_at";
const LAST_RUN: &str = "last_run";
const FAILURES: &str = "failures";
const LEASE_HOLDER: &str = "lease_holder";
/// BOOL, true once every data point of the connection is in the change index; absent on
/// connections created before that index existed.
const POINTS_INDEXED: &str = "points_indexed";
const ORG_ID: &str = "org_id";
/// A sliced backfill's plan (JSON) and its version (what commits compare).
const BACKFILL_PLAN: &str = "backfill_plan";
const PLAN_VERSION: &str = "plan_version";
const LEASE_UNTIL: &str = "lease_until";

/// The `connections` table: [`ConnectionReader`], [`ConnectionWriter`], [`CursorStore`],
/// [`RunRecorder`] and [`LeaseStore`].
///
/// Every write that changes an existing connection is conditional on the item existing, so a
/// write racing a delete never resurrects a half item; the cursor commit is a compare-and-swap
/// and the lease is conditional on its holder and expiry.
#[derive(Debug, Clone)]
pub struct DynamoConnectionStore {
    client: Client,
    table: String,
}

impl DynamoConnectionStore {
    /// `table` is the `connections` table's name (see [`crate::TableNames`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, id: &ConnectionId) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(e, format_args!("read connection {id}")))?;
        Ok(out.item)
    }

    async fn exists(&self, id: &ConnectionId) -> StoreResult<bool> {
        Ok(self.get_item(id).await?.is_some())
    }

    /// An `UpdateItem` on an existing connection: `update` is the update expression built on
    /// `expr`, `condition` an extra condition ANDed with "the connection exists". Returns
    /// whether the condition held; a missing connection is `ConnectionNotFound`.
    async fn update(
        &self,
        id: &ConnectionId,
        what: &str,
        mut expr: Expr,
        update: String,
        condition: Option<String>,
    ) -> StoreResult<bool> {
        let exists = format!("attribute_exists({})", expr.name(ID));
        let condition = match condition {
            Some(c) => format!("{exists} AND ({c})"),
            None => exists,
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, s(id.as_str()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if classify(&e) == ErrorClass::ConditionFailed => {
                if self.exists(id).await? {
                    Ok(false)
                } else {
                    Err(StoreError::ConnectionNotFound(id.clone()))
                }
            }
            Err(e) => Err(store_error(e, format_args!("{what} of connection {id}"))),
        }
    }
}

/// `SET a = :a, ...` and `REMOVE b, ...` clauses of one update expression.
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<String>,
}

impl Update {
    fn set(&mut self, expr: &mut Expr, name: &str, value: AttributeValue) {
        let (n, v) = (expr.name(name), expr.value(name, value));
        self.set.push(format!("{n} = {v}"));
    }

    fn set_or_remove(&mut self, expr: &mut Expr, name: &str, value: Option<AttributeValue>) {
        match value {
            Some(v) => self.set(expr, name, v),
            None => self.remove.push(expr.name(name)),
        }
    }

    fn set_cursor(&mut self, expr: &mut Expr, cursor: &Cursor) -> StoreResult<()> {
        self.set(
            expr,
            CURSOR_MODSTAMP,
            s(time::fixed_ms(&cursor.system_modstamp)?),
        );
        self.set_or_remove(
            expr,
            CURSOR_CASE_ID,
            cursor.case_id.as_ref().map(|c| s(c.as_str())),
        );
        Ok(())
    }

    fn build(self) -> String {
        let mut out = String::new();
        if !self.set.is_empty() {
            out.push_str("SET ");
            out.push_str(&self.set.join(", "));
        }
        if !self.remove.is_empty() {
            out.push_str(" REMOVE ");
            out.push_str(&self.remove.join(", "));
        }
        out
    }
}

fn to_item(c: &Connection) -> StoreResult<Item> {
    let mut item = Item::from([
        (ID.to_owned(), s(c.id.as_str())),
        (CHANNEL.to_owned(), s(c.channel.as_str())),
        (LOGIN_URL.to_owned(), s(c.login_url.as_str())),
        (INSTANCE_URL.to_owned(), s(c.instance_url.as_str())),
        (API_VERSION.to_owned(), s(c.api_version.to_string())),
        (SCOPE.to_owned(), s(c.scope.to_string())),
        (BACKFILL.to_owned(), s(c.backfill.as_str())),
        (STATE.to_owned(), s(c.state.as_str())),
        (CREATED_AT.to_owned(), s(time::exact(&c.created_at))),
        (
            CURSOR_MODSTAMP.to_owned(),
            s(time::fixed_ms(&c.cursor.system_modstamp)?),
        ),
        (FAILURES.to_owned(), failures_value(&c.failures)?),
    ]);
    if let Some(case) = &c.cursor.case_id {
        item.insert(CURSOR_CASE_ID.to_owned(), s(case.as_str()));
    }
    if let Some(client_id) = &c.client_id {
        item.insert(CLIENT_ID.to_owned(), s(client_id));
    }
    if let Some(reason) = &c.state_reason {
        item.insert(STATE_REASON.to_owned(), s(reason));
    }
    if let Some(at) = &c.last_lookback_at {
        item.insert(LAST_LOOKBACK_AT.to_owned(), s(time::exact(at)));
    }
    if let Some(run) = &c.last_run {
        item.insert(LAST_RUN.to_owned(), run_value(run)?);
    }
    if c.points_indexed {
        item.insert(POINTS_INDEXED.to_owned(), AttributeValue::Bool(true));
    }
    if let Some(org) = &c.org_id {
        item.insert(ORG_ID.to_owned(), s(org.as_str()));
    }
    if let Some(plan) = &c.backfill_plan {
        item.insert(BACKFILL_PLAN.to_owned(), s(plan_json(plan)?));
        item.insert(
            PLAN_VERSION.to_owned(),
            AttributeValue::N(plan.version.to_string()),
        );
    }
    Ok(item)
}

fn plan_json(plan: &BackfillPlan) -> StoreResult<String> {
    serde_json::to_string(plan)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("encode backfill plan: {e}")))
}

fn run_value(run: &SyncReport) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(run)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("encode run report: {e}")))
}

fn failures_value(failures: &[CaseFailure]) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(failures)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("encode case failures: {e}")))
}

fn from_item(item: &Item) -> StoreResult<Connection> {
    let what_owned = match item.get(ID) {
        Some(AttributeValue::S(id)) => format!("connection {id}"),
        _ => "connection item".to_owned(),
    };
    let a = Attrs::new(item, &what_owned);
    let what = what_owned.as_str();
    let cursor = Cursor {
        system_modstamp: time::parse(what, a.s(CURSOR_MODSTAMP)?)?,
        case_id: a
            .opt_s(CURSOR_CASE_ID)?
            .map(CaseId::parse)
            .transpose()
            .map_err(|e| corrupt(what, format_args!("attribute {CURSOR_CASE_ID}: {e}")))?,
    };
    let state = a.s(STATE)?;
    let opt_time = |name: &str| -> StoreResult<Option<DateTime<Utc>>> {
        a.opt_s(name)?.map(|raw| time::parse(what, raw)).transpose()
    };
    let last_run = match item.get(LAST_RUN) {
        None | Some(AttributeValue::Null(_)) => None,
        Some(v) => Some(
            serde_dynamo::from_attribute_value(v.clone())
                .map_err(|e| corrupt(what, format_args!("attribute {LAST_RUN}: {e}")))?,
        ),
    };
    let failures = match item.get(FAILURES) {
        None | Some(AttributeValue::Null(_)) => Vec::new(),
        Some(v) => serde_dynamo::from_attribute_value(v.clone())
            .map_err(|e| corrupt(what, format_args!("attribute {FAILURES}: {e}")))?,
    };
    let login_url = a.parse(LOGIN_URL, LoginUrl::parse)?;
    Ok(Connection {
        id: a.parse(ID, ConnectionId::parse)?,
        channel: a.parse(CHANNEL, ChannelName::parse)?,
        client_id: a.opt_s(CLIENT_ID)?.map(str::to_owned),
        instance_url: a.parse(INSTANCE_URL, |raw| InstanceUrl::issued_by(raw, &login_url))?,
        login_url,
        api_version: a.parse(API_VERSION, ApiVersion::parse)?,
        scope: a.parse(SCOPE, QueueScope::parse)?,
        backfill: a.parse(BACKFILL, BackfillWindow::parse)?,
        state: ConnectionState::parse(state)
            .ok_or_else(|| corrupt(what, format_args!("unknown state {state:?}")))?,
        cursor,
        created_at: time::parse(what, a.s(CREATED_AT)?)?,
        state_reason: a.opt_s(STATE_REASON)?.map(str::to_owned),
        last_lookback_at: opt_time(LAST_LOOKBACK_AT)?,
        last_run,
        failures,
        points_indexed: matches!(item.get(POINTS_INDEXED), Some(AttributeValue::Bool(true))),
        org_id: a
            .opt_s(ORG_ID)?
            .map(OrgId::parse)
            .transpose()
            .map_err(|e| corrupt(what, format_args!("attribute {ORG_ID}: {e}")))?,
        backfill_plan: a
            .opt_s(BACKFILL_PLAN)?
            .map(serde_json::from_str::<BackfillPlan>)
            .transpose()
            .map_err(|e| corrupt(what, format_args!("attribute {BACKFILL_PLAN}: {e}")))?,
    })
}

#[async_trait]
impl ConnectionReader for DynamoConnectionStore {
    async fn get_connection(&self, id: &ConnectionId) -> StoreResult<Option<Connection>> {
        self.get_item(id).await?.as_ref().map(from_item).transpose()
    }

    async fn list_connections(&self) -> StoreResult<Vec<Connection>> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(e, "scan connections"))?;
            for item in page.items() {
                out.push(from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[async_trait]
impl ConnectionWriter for DynamoConnectionStore {
    async fn insert_connection(&self, connection: &Connection) -> StoreResult<()> {
        let mut expr = Expr::new();
        let condition = format!("attribute_not_exists({})", expr.name(ID));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(connection)?))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == ErrorClass::ConditionFailed => Err(StoreError::Conflict(
                format!("connection {} exists", connection.id),
            )),
            Err(e) => Err(store_error(
                e,
                format_args!("insert connection {}", connection.id),
            )),
        }
    }

    async fn update_settings(
        &self,
        id: &ConnectionId,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, SCOPE, s(scope.to_string()));
        u.set(&mut expr, BACKFILL, s(backfill.as_str()));
        u.set_cursor(&mut expr, cursor)?;
        u.set_or_remove(&mut expr, LAST_LOOKBACK_AT, None);
        u.set_or_remove(&mut expr, BACKFILL_PLAN, None);
        u.set_or_remove(&mut expr, PLAN_VERSION, None);
        self.update(id, "update settings", expr, u.build(), None)
            .await
            .map(drop)
    }

    async fn complete_setup(
        &self,
        id: &ConnectionId,
        channel: &ChannelName,
        scope: &QueueScope,
        backfill: BackfillWindow,
        cursor: &Cursor,
    ) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, CHANNEL, s(channel.as_str()));
        u.set(&mut expr, SCOPE, s(scope.to_string()));
        u.set(&mut expr, BACKFILL, s(backfill.as_str()));
        u.set_cursor(&mut expr, cursor)?;
        u.set_or_remove(&mut expr, LAST_LOOKBACK_AT, None);
        u.set_or_remove(&mut expr, BACKFILL_PLAN, None);
        u.set_or_remove(&mut expr, PLAN_VERSION, None);
        u.set(&mut expr, STATE, s(ConnectionState::Active.as_str()));
        u.set_or_remove(&mut expr, STATE_REASON, None);
        let condition = format!(
            "{} = {}",
            expr.name(STATE),
            expr.value("pending", s(ConnectionState::Pending.as_str()))
        );
        let updated = self
            .update(id, "complete the setup", expr, u.build(), Some(condition))
            .await?;
        if updated {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "connection {id} is not pending"
            )))
        }
    }

    async fn reauthorized(&self, id: &ConnectionId, instance_url: &InstanceUrl) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, STATE, s(ConnectionState::Active.as_str()));
        u.set_or_remove(&mut expr, STATE_REASON, None);
        u.set(&mut expr, INSTANCE_URL, s(instance_url.as_str()));
        self.update(id, "record reauthorization", expr, u.build(), None)
            .await
            .map(drop)
    }

    async fn delete_connection(&self, id: &ConnectionId) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(ID, s(id.as_str()))
            .send()
            .await
            .map_err(|e| store_error(e, format_args!("delete connection {id}")))?;
        Ok(())
    }
}

#[async_trait]
impl StateWriter for DynamoConnectionStore {
    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        reason: Option<&str>,
    ) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, STATE, s(state.as_str()));
        u.set_or_remove(&mut expr, STATE_REASON, reason.map(s));
        self.update(id, "set state", expr, u.build(), None)
            .await
            .map(drop)
    }

    async fn mark_points_indexed(&self, id: &ConnectionId) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, POINTS_INDEXED, AttributeValue::Bool(true));
        self.update(id, "mark points indexed", expr, u.build(), None)
            .await
            .map(drop)
    }

    async fn set_org_id(&self, id: &ConnectionId, org: &OrgId) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, ORG_ID, s(org.as_str()));
        self.update(id, "record the org id", expr, u.build(), None)
            .await
            .map(drop)
    }
}

#[async_trait]
impl CursorStore for DynamoConnectionStore {
    /// A compare-and-swap: the update is conditional on the stored cursor being `expected`
    /// (both attributes, the case id's absence included). Together with the check that `next`
    /// is not before `expected`, the stored cursor can only move forward, and of two workers
    /// committing from the same `expected` exactly one wins.
    async fn commit_cursor(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
    ) -> StoreResult<()> {
        if next < expected {
            return Err(StoreError::Conflict(format!(
                "cursor of {id} would move backwards from {expected} to {next}"
            )));
        }
        let mut expr = Expr::new();
        let condition = cursor_is(&mut expr, expected)?;
        let mut u = Update::default();
        u.set_cursor(&mut expr, next)?;
        if self
            .update(id, "commit cursor", expr, u.build(), Some(condition))
            .await?
        {
            return Ok(());
        }
        let current = match self.get_connection(id).await? {
            Some(c) => c.cursor.to_string(),
            None => return Err(StoreError::ConnectionNotFound(id.clone())),
        };
        Err(StoreError::Conflict(format!(
            "cursor of {id} is {current}, expected {expected}"
        )))
    }

    /// One conditional update: the cursor and the plan's version as expected.
    async fn commit_plan(
        &self,
        id: &ConnectionId,
        expected: &Cursor,
        next: &Cursor,
        expected_version: u64,
        plan: Option<&BackfillPlan>,
    ) -> StoreResult<()> {
        if next < expected {
            return Err(StoreError::Conflict(format!(
                "cursor of {id} would move backwards from {expected} to {next}"
            )));
        }
        let mut expr = Expr::new();
        let cursor = cursor_is(&mut expr, expected)?;
        let version = match expected_version {
            0 => format!("attribute_not_exists({})", expr.name(PLAN_VERSION)),
            v => format!(
                "{} = {}",
                expr.name(PLAN_VERSION),
                expr.value("expected_version", AttributeValue::N(v.to_string()))
            ),
        };
        let mut u = Update::default();
        u.set_cursor(&mut expr, next)?;
        match plan {
            Some(p) => {
                u.set(&mut expr, BACKFILL_PLAN, s(plan_json(p)?));
                u.set(
                    &mut expr,
                    PLAN_VERSION,
                    AttributeValue::N(p.version.to_string()),
                );
            }
            None => {
                u.set_or_remove(&mut expr, BACKFILL_PLAN, None);
                u.set_or_remove(&mut expr, PLAN_VERSION, None);
            }
        }
        let condition = format!("{cursor} AND {version}");
        if self
            .update(id, "commit backfill plan", expr, u.build(), Some(condition))
            .await?
        {
            return Ok(());
        }
        match self.get_connection(id).await? {
            Some(c) => Err(StoreError::Conflict(format!(
                "cursor of {id} is {} (plan version {}), expected {expected} (version \
                 {expected_version})",
                c.cursor,
                c.backfill_plan.map_or(0, |p| p.version)
            ))),
            None => Err(StoreError::ConnectionNotFound(id.clone())),
        }
    }
}

/// The condition "the stored cursor is `expected`" (both attributes, the case id's absence
/// included).
fn cursor_is(expr: &mut Expr, expected: &Cursor) -> StoreResult<String> {
    let modstamp = format!(
        "{} = {}",
        expr.name(CURSOR_MODSTAMP),
        expr.value(
            "expected_modstamp",
            s(time::fixed_ms(&expected.system_modstamp)?)
        )
    );
    let case = match &expected.case_id {
        Some(c) => format!(
            "{} = {}",
            expr.name(CURSOR_CASE_ID),
            expr.value("expected_case_id", s(c.as_str()))
        ),
        None => format!("attribute_not_exists({})", expr.name(CURSOR_CASE_ID)),
    };
    Ok(format!("{modstamp} AND {case}"))
}

#[async_trait]
impl RunRecorder for DynamoConnectionStore {
    async fn record_run(&self, id: &ConnectionId, run: &RunRecord) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, LAST_RUN, run_value(&run.report)?);
        u.set(&mut expr, FAILURES, failures_value(&run.failures)?);
        if let Some(at) = &run.lookback_swept_at {
            u.set(&mut expr, LAST_LOOKBACK_AT, s(time::exact(at)));
        }
        self.update(id, "record run", expr, u.build(), None)
            .await
            .map(drop)
    }

    async fn save_failures(&self, id: &ConnectionId, failures: &[CaseFailure]) -> StoreResult<()> {
        let mut expr = Expr::new();
        let mut u = Update::default();
        u.set(&mut expr, FAILURES, failures_value(failures)?);
        self.update(id, "save failures", expr, u.build(), None)
            .await
            .map(drop)
    }
}

#[async_trait]
impl LeaseStore for DynamoConnectionStore {
    /// Conditional on the lease being free, expired (`lease_until <= now`, compared as
    /// fixed-width strings) or already `holder`'s. The lease lives on the connection item, so
    /// a connection that does not exist has no lease to take: `ConnectionNotFound`.
    async fn try_acquire_lease(
        &self,
        id: &ConnectionId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut expr = Expr::new();
        let (h, u_) = (expr.name(LEASE_HOLDER), expr.name(LEASE_UNTIL));
        let holder_v = expr.value("holder", s(holder));
        let now_v = expr.value("now", s(time::fixed_ms(&now)?));
        let condition = format!("attribute_not_exists({h}) OR {h} = {holder_v} OR {u_} <= {now_v}");
        let mut u = Update::default();
        u.set(&mut expr, LEASE_HOLDER, s(holder));
        u.set(&mut expr, LEASE_UNTIL, s(time::fixed_ms(&until)?));
        self.update(id, "acquire lease", expr, u.build(), Some(condition))
            .await
    }

    async fn release_lease(&self, id: &ConnectionId, holder: &str) -> StoreResult<()> {
        let mut expr = Expr::new();
        let (h, u_) = (expr.name(LEASE_HOLDER), expr.name(LEASE_UNTIL));
        let condition = format!("{h} = {}", expr.value("holder", s(holder)));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, s(id.as_str()))
            .update_expression(format!("REMOVE {h}, {u_}"))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            // Someone else holds it, or nobody does, or the connection is gone: nothing to give back.
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == ErrorClass::ConditionFailed => Ok(()),
            Err(e) => Err(store_error(e, format_args!("release lease of {id}"))),
        }
    }
}
