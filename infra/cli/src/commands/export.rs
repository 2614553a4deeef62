//! `casesync export`: data points on stdout, a page at a time (memory stays flat whatever the
//! number of Cases).
//!
//! JSONL is the data point contract, one per line. CSV flattens a data point to one row per Case
//! (see [`CSV_COLUMNS`]); the conversation becomes a readable transcript.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use casesync_core::channel::{self, PageRequest};
use casesync_core::data_point::{DataPoint, Direction, rfc3339};
use casesync_core::domain::{CaseId, Connection};
use casesync_core::ports::{ConnectionReader, DataPointReader};

use crate::app::App;
use crate::cli::{ExportArgs, ExportFormat};
use crate::error::{CliError, Context, Exit};

/// Data points read from the database at a time.
const PAGE: usize = 200;

/// The CSV header, in order.
pub const CSV_COLUMNS: [&str; 20] = [
    "id",
    "connection_id",
    "channel",
    "case_id",
    "case_number",
    "subject",
    "status",
    "priority",
    "origin",
    "type",
    "created_date",
    "system_modstamp",
    "salesforce_link",
    "participant_email",
    "participant_name",
    "content_source",
    "message_count",
    "first_message_at",
    "last_message_at",
    "transcript",
];

pub async fn run(dir: &Path, args: ExportArgs) -> Result<Exit, CliError> {
    let app = App::existing(dir).await?;
    let connections: Vec<Connection> = match (&app, &args.connection) {
        (Some(app), Some(id)) => vec![app.connection(id).await?],
        (None, Some(id)) => return Err(crate::app::unknown_connection(id, dir)),
        (Some(app), None) => app
            .store
            .list_connections()
            .await
            .context("listing the connections")?,
        (None, None) => Vec::new(),
    };
    if let (Some(channel), Some(app)) = (&args.channel, &app) {
        let known = app
            .store
            .list_connections()
            .await
            .context("listing the connections")?
            .iter()
            .any(|c| &c.channel == channel);
        if !known {
            return Err(CliError::input(format!(
                "no connection feeds channel {channel:?} (`casesync status` shows each \
                 connection's channel)"
            )));
        }
    }
    let stdout = io::stdout();
    let mut sink = Sink::new(args.format, BufWriter::new(stdout.lock()));
    let written = async {
        sink.header()?;
        match (&app, &args.channel) {
            (Some(app), Some(channel)) => {
                let request = PageRequest {
                    channel: channel.clone(),
                    connection: args.connection.clone(),
                    since: args.changed_since,
                    after: None,
                    limit: PAGE,
                    budget: None,
                };
                export_channel(app, request, &mut sink).await?;
            }
            (Some(app), None) => export_all(app, &connections, &mut sink).await?,
            (None, _) => {}
        }
        sink.flush()
    };
    match written.await {
        Ok(()) => Ok(Exit::Success),
        // The reader went away (`casesync export | head`): not an error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(crate::error::failed!("writing the export: {e}")),
    }
}

async fn export_all<W: Write>(
    app: &App,
    connections: &[Connection],
    sink: &mut Sink<W>,
) -> io::Result<()> {
    for c in connections {
        let mut after: Option<CaseId> = None;
        loop {
            let page = app
                .store
                .list_data_points(&c.id, after.as_ref(), PAGE)
                .await
                .map_err(|e| io::Error::other(format!("reading data points of {}: {e}", c.id)))?;
            for point in &page {
                sink.write(point)?;
            }
            // Each page reaches the reader before the next is read.
            sink.flush()?;
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.case_id.clone()),
                _ => break,
            }
        }
    }
    Ok(())
}

/// A channel's points in the order they last changed, through the same use case as the read
/// API, each exactly as stored.
async fn export_channel<W: Write>(
    app: &App,
    mut request: PageRequest,
    sink: &mut Sink<W>,
) -> io::Result<()> {
    loop {
        let page = channel::read_page(&app.store, &request, chrono::Utc::now())
            .await
            .map_err(|e| io::Error::other(format!("reading channel {}: {e}", request.channel)))?;
        if page.points.is_empty() && page.omitted.is_empty() {
            return Ok(());
        }
        for point in &page.points {
            sink.write_json(&point.json)?;
        }
        sink.flush()?;
        request.after = page.next;
    }
}

enum Sink<W: Write> {
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Sink<W> {
    fn new(format: ExportFormat, out: W) -> Self {
        match format {
            ExportFormat::Jsonl => Self::Jsonl(out),
            ExportFormat::Csv => Self::Csv(Box::new(csv::Writer::from_writer(out))),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        match self {
            Self::Jsonl(_) => Ok(()),
            Self::Csv(w) => w.write_record(CSV_COLUMNS).map_err(csv_error),
        }
    }

    fn write(&mut self, p: &DataPoint) -> io::Result<()> {
        match self {
            Self::Jsonl(w) => {
                serde_json::to_writer(&mut *w, p).map_err(io::Error::from)?;
                w.write_all(b"\n")
            }
            Self::Csv(w) => w.write_record(csv_row(p)).map_err(csv_error),
        }
    }

    /// A point given as its stored JSON: verbatim in JSONL.
    fn write_json(&mut self, json: &str) -> io::Result<()> {
        match self {
            Self::Jsonl(w) => {
                w.write_all(json.as_bytes())?;
                w.write_all(b"\n")
            }
            Self::Csv(_) => {
                let point: DataPoint = serde_json::from_str(json).map_err(io::Error::from)?;
                self.write(&point)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Jsonl(w) => w.flush(),
            Self::Csv(w) => w.flush(),
        }
    }
}

fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// One CSV row: [`CSV_COLUMNS`], in order, each cell safe to open in a spreadsheet.
pub fn csv_row(p: &DataPoint) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let first = p.conversation.first().map(|m| rfc3339::format(&m.sent_at));
    let last = p.conversation.last().map(|m| rfc3339::format(&m.sent_at));
    let content_source = serde_json::to_value(p.content_source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    [
        p.id.clone(),
        p.connection_id.to_string(),
        p.channel.to_string(),
        p.case_id.to_string(),
        p.case_number.clone(),
        opt(&p.subject),
        p.status.clone(),
        opt(&p.priority),
        opt(&p.origin),
        opt(&p.case_type),
        rfc3339::format(&p.created_date),
        rfc3339::format(&p.system_modstamp),
        p.salesforce_link.clone(),
        opt(&p.participant.email),
        opt(&p.participant.name),
        content_source,
        p.conversation.len().to_string(),
        first.unwrap_or_default(),
        last.unwrap_or_default(),
        transcript(p),
    ]
    .into_iter()
    .map(|cell| defuse_formula(&cell))
    .collect()
}

/// The conversation as text: a header line per message, then its text.
fn transcript(p: &DataPoint) -> String {
    let mut out = String::new();
    for (i, m) in p.conversation.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        let direction = match m.direction {
            Some(Direction::Inbound) => "inbound",
            Some(Direction::Outbound) => "outbound",
            None => "description",
        };
        out.push_str(&format!("[{}] {direction}", rfc3339::format(&m.sent_at)));
        let from = match (&m.from_name, &m.from_address) {
            (Some(n), Some(a)) => Some(format!("{n} <{a}>")),
            (Some(n), None) => Some(n.clone()),
            (None, Some(a)) => Some(format!("<{a}>")),
            (None, None) => None,
        };
        if let Some(from) = from {
            out.push_str(", ");
            out.push_str(&from);
        }
        out.push_str(":\n");
        out.push_str(&m.text);
    }
    out
}

/// Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` (or tab, carriage return) as a
/// formula; Case subjects and emails come from customers. Such cells get a leading `'`.
fn defuse_formula(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_other_cells_kept() {
        assert_eq!(defuse_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse_formula("-1"), "'-1");
        assert_eq!(defuse_formula("Printer on fire"), "Printer on fire");
        assert_eq!(defuse_formula(""), "");
    }
}
