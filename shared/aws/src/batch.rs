//! `BatchGetItem` and `BatchWriteItem` done properly: chunked to DynamoDB's limits, calls in
//! parallel (bounded), and what DynamoDB leaves unprocessed retried with jittered exponential
//! backoff until the retries are spent (then `StoreError::Unavailable`).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::anyhow;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{KeysAndAttributes, WriteRequest};
use futures::{StreamExt, TryStreamExt};

use casesync_core::ports::{StoreError, StoreResult};

use crate::error::store_error;
use crate::item::Item;
use crate::metrics::Metrics;
use crate::tuning::Tuning;

/// Keys per `BatchGetItem` call (DynamoDB's limit).
pub(crate) const GET_CHUNK: usize = 100;
/// Requests per `BatchWriteItem` call (DynamoDB's limit).
pub(crate) const WRITE_CHUNK: usize = 25;

/// Rewrites a put item right before each attempt to send it (see [`Batcher::write_restamped`]).
pub(crate) type Restamp<'a> = dyn Fn(&mut Item) -> StoreResult<()> + Send + Sync + 'a;

#[derive(Clone)]
pub(crate) struct Batcher {
    pub client: Client,
    pub table: String,
    pub metrics: Arc<Metrics>,
    pub tuning: Tuning,
}

/// A projection for `BatchGetItem`: the expression and its `#name` placeholders.
#[derive(Clone, Default)]
pub(crate) struct Projection {
    pub expression: Option<String>,
    pub names: Option<HashMap<String, String>>,
}

impl Batcher {
    /// Reads `keys` with strongly consistent reads; missing items are simply absent from the
    /// result, whose order is unspecified.
    pub async fn get(&self, keys: Vec<Item>, projection: &Projection) -> StoreResult<Vec<Item>> {
        let chunks: Vec<Vec<Item>> = keys.chunks(GET_CHUNK).map(<[Item]>::to_vec).collect();
        let calls: Vec<_> = chunks
            .into_iter()
            .map(|chunk| self.get_chunk(chunk, projection))
            .collect();
        let pages: Vec<Vec<Item>> = futures::stream::iter(calls)
            .buffer_unordered(self.tuning.concurrency.max(1))
            .try_collect()
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    async fn get_chunk(&self, keys: Vec<Item>, projection: &Projection) -> StoreResult<Vec<Item>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut delays = self.tuning.retry.delays();
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .set_projection_expression(projection.expression.clone())
            .set_expression_attribute_names(projection.names.clone())
            .build()
            .map_err(|e| StoreError::Unexpected(anyhow!("build BatchGetItem request: {e}")))?;
        loop {
            self.metrics.batch_get();
            let resp = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| store_error(e, format_args!("BatchGetItem on {}", self.table)))?;
            if let Some(mut responses) = resp.responses {
                out.extend(responses.remove(&self.table).unwrap_or_default());
            }
            match resp
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys().is_empty())
            {
                None => return Ok(out),
                Some(rest) => {
                    let Some(delay) = delays.next() else {
                        return Err(StoreError::Unavailable(anyhow!(
                            "BatchGetItem on {}: {} keys still unprocessed after retries",
                            self.table,
                            rest.keys().len()
                        )));
                    };
                    self.metrics.retry();
                    tokio::time::sleep(delay).await;
                    request = rest;
                }
            }
        }
    }

    /// Sends `requests` (puts and deletes; no two for the same key) in chunks of 25, in
    /// parallel. Returns when every request has been processed.
    pub async fn write(&self, requests: Vec<WriteRequest>) -> StoreResult<()> {
        self.write_restamped(requests, None).await
    }

    /// [`Batcher::write`], calling `restamp` on every put item right before each attempt that
    /// sends it (the first, and every retry of what DynamoDB left unprocessed): a stamp taken
    /// then tells when the write was made to within one attempt.
    pub async fn write_restamped(
        &self,
        requests: Vec<WriteRequest>,
        restamp: Option<&Restamp<'_>>,
    ) -> StoreResult<()> {
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(WRITE_CHUNK)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        let calls: Vec<_> = chunks
            .into_iter()
            .map(|chunk| self.write_chunk(chunk, restamp))
            .collect();
        futures::stream::iter(calls)
            .buffer_unordered(self.tuning.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn write_chunk(
        &self,
        mut requests: Vec<WriteRequest>,
        restamp: Option<&Restamp<'_>>,
    ) -> StoreResult<()> {
        let mut delays = self.tuning.retry.delays();
        loop {
            if let Some(restamp) = restamp {
                for put in requests.iter_mut().filter_map(|r| r.put_request.as_mut()) {
                    restamp(&mut put.item)?;
                }
            }
            self.metrics.batch_write(requests.len());
            let resp = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| store_error(e, format_args!("BatchWriteItem on {}", self.table)))?;
            match resp
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .filter(|r| !r.is_empty())
            {
                None => return Ok(()),
                Some(rest) => {
                    let Some(delay) = delays.next() else {
                        return Err(StoreError::Unavailable(anyhow!(
                            "BatchWriteItem on {}: {} requests still unprocessed after retries",
                            self.table,
                            rest.len()
                        )));
                    };
                    self.metrics.retry();
                    tokio::time::sleep(delay).await;
                    requests = rest;
                }
            }
        }
    }
}
