use super::{print_out, ExitStatus};
use crate::campaign::model::{campaign_schema, project_schema};
use crate::cli::{SchemaArgs, SchemaKind};

pub(super) fn run(args: &SchemaArgs) -> ExitStatus {
    let schema = match args.kind {
        SchemaKind::Campaign => campaign_schema(),
        SchemaKind::Project => project_schema(),
    };
    print_out(&schema_text(&schema));
    ExitStatus::Success
}

/// The checked-in form of a schema (pretty JSON and a final newline).
pub fn schema_text(schema: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}
