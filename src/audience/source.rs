//! What an audience source is: a CSV file (with its column types), a
//! JSON-lines file, or rows written inline in the campaign file.

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub enum SourceKind {
    Csv {
        types: Vec<(String, ColumnType)>,
        delimiter: u8,
    },
    Jsonl,
    /// Rows written in the campaign file, each with its line there.
    Inline {
        rows: Arc<Vec<(serde_json::Map<String, serde_json::Value>, u64)>>,
    },
}

/// One audience source, its path resolved against the campaign's folder.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: SourceKind,
    /// The file to read (for inline rows: the campaign file).
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Integer,
    Number,
    Boolean,
}
