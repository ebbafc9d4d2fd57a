//! Audience sources, read as a stream of rows.
//!
//! Rows are never collected: each source is read lazily, one row at a time, so
//! memory does not grow with the audience. Every row keeps its origin (file and
//! the physical line where it starts, the CSV header being line 1) for messages.
//! A broken row (ragged CSV, invalid UTF-8, a cell that does not fit its
//! declared type, a line that is not a JSON object) is yielded as
//! [`RowEvent::Broken`]; it never stops the stream.

mod csv_source;
pub(crate) mod json_row;
mod jsonl_source;
mod line_count;
mod source;

use std::path::Path;
use std::sync::Arc;

use minijinja::Value;

pub use csv_source::read_csv_header;
pub use jsonl_source::jsonl_keys;
pub use source::{ColumnType, Source, SourceKind};

/// Where a row came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: u64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One audience row: its fields as a template value, and where it came from.
#[derive(Debug, Clone)]
pub struct Row {
    pub origin: Origin,
    pub fields: Value,
}

#[derive(Debug, Clone)]
pub enum RowEvent {
    Row(Row),
    Broken {
        origin: Origin,
        reason: String,
    },
    /// The source itself cannot be read (vanished, unreadable): every row it
    /// might hold is unaccounted for, so callers must not treat the stream as whole.
    SourceFailed {
        file: Arc<Path>,
        reason: String,
    },
}

/// Reads several sources one after another.
pub struct AudienceReader {
    pending: std::collections::VecDeque<Source>,
    current: Option<Box<dyn Iterator<Item = RowEvent> + Send>>,
}

impl AudienceReader {
    pub fn new(sources: &[Source]) -> Self {
        AudienceReader {
            pending: sources.iter().cloned().collect(),
            current: None,
        }
    }
}

fn open(source: Source) -> Box<dyn Iterator<Item = RowEvent> + Send> {
    let file: Arc<Path> = Arc::from(source.path.as_path());
    match source.kind {
        SourceKind::Csv { types, delimiter } => csv_source::open(file, &types, delimiter),
        SourceKind::Jsonl => jsonl_source::open(file),
        SourceKind::Inline { rows } => Box::new((0..rows.len()).map(move |i| {
            let (row, line) = &rows[i];
            RowEvent::Row(Row {
                origin: Origin {
                    file: file.clone(),
                    line: *line,
                },
                fields: json_row::row_value(row),
            })
        })),
    }
}

impl Iterator for AudienceReader {
    type Item = RowEvent;

    fn next(&mut self) -> Option<RowEvent> {
        loop {
            if let Some(current) = &mut self.current {
                if let Some(event) = current.next() {
                    return Some(event);
                }
            }
            self.current = Some(open(self.pending.pop_front()?));
        }
    }
}
