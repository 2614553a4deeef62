//! Finished runs: the last one on the connection's row, every one in the `sync_runs` history.
//! [`RunRecorder`] of [`SqliteStore`].

use async_trait::async_trait;
use casesync_core::domain::{CaseFailure, ConnectionId};
use casesync_core::ports::*;
use rusqlite::{TransactionBehavior, params};

use super::codec::{RowDecoder, json, timestamp};
use super::connections::not_found;
use super::{RunHistoryEntry, SqliteStore, sql_error};

#[async_trait]
impl RunRecorder for SqliteStore {
    /// Sets `last_run` and `failures` (and `last_lookback_at` when the run swept the lookback)
    /// and appends the run to the `sync_runs` history, in one transaction.
    async fn record_run(&self, id: &ConnectionId, run: &RunRecord) -> StoreResult<()> {
        let id = id.clone();
        let report = json("the run report", &run.report)?;
        let failures = json("the failures", &run.failures)?;
        let failure_count = run.failures.len() as i64;
        let swept = run.lookback_swept_at.map(timestamp);
        let outcome = run.report.outcome.as_str();
        let started = timestamp(run.report.started_at);
        let finished = timestamp(run.report.finished_at);
        self.write(move |db, _| {
            let err = || sql_error(format!("recording a run of connection {id}"));
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            let changed = tx
                .execute(
                    "UPDATE connections SET last_run = ?2, failures = ?3, \
                     last_lookback_at = COALESCE(?4, last_lookback_at) WHERE id = ?1",
                    params![id.as_str(), report, failures, swept],
                )
                .map_err(err())?;
            if changed == 0 {
                return Err(not_found(&id));
            }
            tx.execute(
                "INSERT INTO sync_runs (connection_id, outcome, started_at, finished_at, \
                 failures, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id.as_str(),
                    outcome,
                    started,
                    finished,
                    failure_count,
                    report
                ],
            )
            .map_err(err())?;
            tx.commit().map_err(err())
        })
        .await
    }

    async fn save_failures(&self, id: &ConnectionId, failures: &[CaseFailure]) -> StoreResult<()> {
        let id = id.clone();
        let failures = json("the failures", &failures)?;
        self.write(move |db, _| {
            let changed = db
                .execute(
                    "UPDATE connections SET failures = ?2 WHERE id = ?1",
                    params![id.as_str(), failures],
                )
                .map_err(sql_error(format!("saving the failures of connection {id}")))?;
            if changed == 0 {
                return Err(not_found(&id));
            }
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// The last `limit` recorded runs of a connection, newest first.
    pub async fn list_runs(
        &self,
        id: &ConnectionId,
        limit: usize,
    ) -> StoreResult<Vec<RunHistoryEntry>> {
        let id = id.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |db| {
            let rows: Vec<(i64, String, i64)> = db
                .prepare_cached(
                    "SELECT seq, report, failures FROM sync_runs WHERE connection_id = ?1 \
                     ORDER BY seq DESC LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![id.as_str(), limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect()
                })
                .map_err(sql_error(format!("listing the runs of connection {id}")))?;
            rows.into_iter()
                .map(|(seq, report, failures)| {
                    let key = format!("{id}#{seq}");
                    let d = RowDecoder {
                        table: "sync_runs",
                        key: &key,
                    };
                    Ok(RunHistoryEntry {
                        seq,
                        connection_id: id.clone(),
                        report: d.json("report", &report)?,
                        failures: u64::try_from(failures)
                            .map_err(|_| d.corrupt("failures", "negative"))?,
                    })
                })
                .collect()
        })
        .await
    }
}
