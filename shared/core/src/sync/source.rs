//! Where Case records come from during a run: one query (or, for a queue list too long for one
//! request, several merged in keyset order), page by page.
//!
//! A page is complete before it is handed over: every truncated `EmailMessages` list has been
//! followed to its end. While the engine writes a page, the next one is already being fetched
//! (when the time budget allows), so store writes overlap Salesforce's latency.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;

use crate::domain::CaseId;
use crate::mapping::position;
use crate::salesforce::records::{CaseRecord, EmailRecord, QueryPage, RecordDecodeError};
use crate::salesforce::soql::Soql;
use crate::salesforce::{OrgApi, SalesforceError};

/// Child lists followed at once within a page.
const CHILD_FETCH_CONCURRENCY: usize = 4;

/// One page's worth of records, complete.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<CaseRecord>,
    /// Records that could not be decoded, or whose email list could not be completed: their
    /// Case ids (when readable) become recorded failures.
    pub broken: Vec<(Option<CaseId>, String)>,
}

type PageResult = Result<(QueryPage<CaseRecord>, Vec<RecordDecodeError>), SalesforceError>;

struct AbortOnDrop(tokio::task::JoinHandle<PageResult>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One query, page by page.
struct Stream {
    soql: Soql,
    started: bool,
    next_url: Option<String>,
    prefetch: Option<AbortOnDrop>,
    buffer: VecDeque<CaseRecord>,
}

impl Stream {
    fn new(soql: Soql) -> Self {
        Self {
            soql,
            started: false,
            next_url: None,
            prefetch: None,
            buffer: VecDeque::new(),
        }
    }

    fn exhausted(&self) -> bool {
        self.started && self.next_url.is_none() && self.prefetch.is_none()
    }

    /// Fetches the next page into the buffer, completing its child lists. Returns false when
    /// the stream had nothing more to fetch.
    async fn fill(
        &mut self,
        api: &Arc<OrgApi>,
        batch_size: u32,
        prefetch: bool,
        batch: &mut Batch,
        pages: &mut u64,
    ) -> Result<bool, SalesforceError> {
        let (page, decode_errors) = if let Some(mut p) = self.prefetch.take() {
            match (&mut p.0).await {
                Ok(r) => r?,
                Err(join) => {
                    return Err(SalesforceError::Transport(format!(
                        "page prefetch stopped: {join}"
                    )));
                }
            }
        } else if !self.started {
            self.started = true;
            api.query::<CaseRecord>(&self.soql, Some(batch_size))
                .await?
        } else if let Some(url) = self.next_url.take() {
            api.query_more::<CaseRecord>(&url, Some(batch_size)).await?
        } else {
            return Ok(false);
        };
        *pages += 1;
        self.next_url = page.next().map(str::to_owned);
        if prefetch && let Some(url) = self.next_url.take() {
            let api = api.clone();
            self.prefetch = Some(AbortOnDrop(tokio::spawn(async move {
                api.query_more::<CaseRecord>(&url, Some(batch_size)).await
            })));
        }
        for e in decode_errors {
            batch.broken.push((
                e.id.as_deref().and_then(|id| CaseId::parse(id).ok()),
                format!(
                    "Salesforce sent a Case this version cannot read: {}",
                    e.error
                ),
            ));
        }
        let mut records = page.records;
        complete_child_lists(api, &mut records, batch).await?;
        self.buffer.extend(records);
        Ok(true)
    }
}

/// Follows every truncated `EmailMessages` list of a page to its end. A Case whose list
/// cannot be completed because a child record is unreadable is moved to `batch.broken`
/// (writing it without some of its emails would store a wrong conversation).
async fn complete_child_lists(
    api: &Arc<OrgApi>,
    records: &mut Vec<CaseRecord>,
    batch: &mut Batch,
) -> Result<(), SalesforceError> {
    let pending: Vec<(usize, String)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let next = r.email_messages.as_ref()?.next()?;
            Some((i, next.to_owned()))
        })
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let results: Vec<_> = futures::stream::iter(pending)
        .map(|(i, url)| {
            let api = api.clone();
            async move { (i, follow_child_list(&api, url).await) }
        })
        .buffer_unordered(CHILD_FETCH_CONCURRENCY)
        .collect()
        .await;
    let mut unreadable = Vec::new();
    for (i, result) in results {
        let (more, errors) = result?;
        let list = records[i]
            .email_messages
            .as_mut()
            .expect("only records with a child list were followed");
        list.records.extend(more);
        list.done = true;
        list.next_records_url = None;
        if !errors.is_empty() {
            unreadable.push((i, errors.len()));
        }
    }
    unreadable.sort_unstable_by_key(|u| std::cmp::Reverse(u.0));
    for (i, n) in unreadable {
        let r = records.remove(i);
        batch.broken.push((
            r.id.as_deref().and_then(|id| CaseId::parse(id).ok()),
            format!("{n} of the Case's emails could not be read"),
        ));
    }
    Ok(())
}

async fn follow_child_list(
    api: &OrgApi,
    mut url: String,
) -> Result<(Vec<EmailRecord>, Vec<RecordDecodeError>), SalesforceError> {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    loop {
        let (page, errs) = api.query_more::<EmailRecord>(&url, None).await?;
        records.extend(page.records);
        errors.extend(errs);
        match page.next_records_url {
            Some(next) if !page.done => url = next,
            _ => return Ok((records, errors)),
        }
    }
}

/// The Case records of one or more queries, in `(SystemModstamp, Id)` order.
pub struct PageSource {
    api: Arc<OrgApi>,
    batch_size: u32,
    streams: Vec<Stream>,
    pages: u64,
}

impl PageSource {
    pub fn new(api: Arc<OrgApi>, queries: Vec<Soql>, batch_size: u32) -> Self {
        Self {
            api,
            batch_size,
            streams: queries.into_iter().map(Stream::new).collect(),
            pages: 0,
        }
    }

    /// Top-level pages fetched so far (child-list pages are API calls, not pages).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The next complete batch, or `None` when every query is exhausted. `prefetch` lets the
    /// source start fetching the following page in the background.
    pub async fn next_batch(&mut self, prefetch: bool) -> Result<Option<Batch>, SalesforceError> {
        if self.streams.len() == 1 {
            return self.next_single(prefetch).await;
        }
        self.next_merged().await
    }

    async fn next_single(&mut self, prefetch: bool) -> Result<Option<Batch>, SalesforceError> {
        let stream = &mut self.streams[0];
        let mut batch = Batch::default();
        // A page can be empty without being the last: keep going until records or the end.
        while stream.buffer.is_empty() && batch.broken.is_empty() {
            if !stream
                .fill(
                    &self.api,
                    self.batch_size,
                    prefetch,
                    &mut batch,
                    &mut self.pages,
                )
                .await?
            {
                break;
            }
        }
        batch.records = stream.buffer.drain(..).collect();
        Ok((!batch.records.is_empty() || !batch.broken.is_empty()).then_some(batch))
    }

    /// Several queries (one per chunk of a long queue list) merged in keyset order. A record
    /// is released only while every unfinished query has a buffered record, so when a batch
    /// ends, everything up to its last position has been seen from every query: committing
    /// that position as the cursor loses nothing.
    async fn next_merged(&mut self) -> Result<Option<Batch>, SalesforceError> {
        let mut batch = Batch::default();
        loop {
            for s in self.streams.iter_mut() {
                while s.buffer.is_empty() && !s.exhausted() {
                    s.fill(
                        &self.api,
                        self.batch_size,
                        false,
                        &mut batch,
                        &mut self.pages,
                    )
                    .await?;
                }
            }
            let mut released = false;
            while batch.records.len() < self.batch_size as usize {
                let live: Vec<usize> = (0..self.streams.len())
                    .filter(|&i| !self.streams[i].buffer.is_empty() || !self.streams[i].exhausted())
                    .collect();
                if live.is_empty() || live.iter().any(|&i| self.streams[i].buffer.is_empty()) {
                    break;
                }
                let next = live
                    .into_iter()
                    .min_by(|&a, &b| {
                        let pa = self.streams[a].buffer.front().and_then(position);
                        let pb = self.streams[b].buffer.front().and_then(position);
                        pa.cmp(&pb)
                    })
                    .expect("live is not empty");
                if let Some(r) = self.streams[next].buffer.pop_front() {
                    batch.records.push(r);
                    released = true;
                }
            }
            let all_done = self
                .streams
                .iter()
                .all(|s| s.buffer.is_empty() && s.exhausted());
            if released || !batch.broken.is_empty() || all_done {
                return Ok((!batch.records.is_empty() || !batch.broken.is_empty()).then_some(batch));
            }
        }
    }
}
