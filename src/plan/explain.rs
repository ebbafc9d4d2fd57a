//! One recipient's path through the pipeline (`plan --key`), and the rows of one
//! class (`plan --list`): the same pipeline as the plan, told row by row.

use std::sync::Arc;

use serde::Serialize;

use super::{plan_errors, PassInputs, Pipeline, Planned, PriorLookup, Told};
use crate::api::wire::BotEndpoint;
use crate::audience::{AudienceReader, Origin, RowEvent};
use crate::campaign::Campaign;
use crate::diagnostic::Diagnostic;

/// What happened to one row that holds the key.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// `where` is false for the row.
    Filtered,
    /// A suppression list holds the key (its rows are in [`KeyStory::suppressed_by`]).
    Suppressed,
    /// An earlier row holds the key; the first occurrence wins.
    Duplicate {
        first: Option<String>,
    },
    Invalid {
        reason: String,
    },
    /// Sent (or settled) by an earlier attempt of this run: not sent again.
    AlreadySent,
    /// The request as it would leave (a V1 token shown as `***`).
    ToSend {
        request: serde_json::Value,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Appearance {
    pub file: String,
    pub row: u64,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// `plan --key KEY`: every audience row that holds the key, in audience order,
/// and every suppression row that does.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStory {
    pub key: String,
    pub appearances: Vec<Appearance>,
    /// Suppression rows (`file:row`) whose key is this one.
    pub suppressed_by: Vec<String>,
    pub rows_read: u64,
    /// The first row's key, to show what keys look like when this one is in no row.
    pub example_key: Option<String>,
    /// The campaign's `where`, for the filtered rows' story.
    pub where_expr: Option<String>,
}

/// The classes of rows `plan --list` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowClass {
    Filtered,
    Suppressed,
    Duplicates,
    Invalid,
}

/// One row of a class.
#[derive(Debug, Clone, Serialize)]
pub struct ListedRow {
    pub file: String,
    pub row: u64,
    /// `None` when the key itself could not be rendered (an invalid row).
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn place(origin: &Origin) -> String {
    origin.to_string()
}

/// Tells the key of every suppression row equal to `key`.
fn suppression_rows(campaign: &Campaign, inputs: &PassInputs, key: &str) -> Vec<String> {
    AudienceReader::new(&campaign.audience.exclude)
        .filter_map(|event| match event {
            RowEvent::Row(row) => {
                let ctx = inputs.renderer.context(&row);
                (inputs.renderer.key(&ctx).ok().as_deref() == Some(key)).then(|| place(&row.origin))
            }
            _ => None,
        })
        .collect()
}

/// Follows `key` through the plan of `campaign` (its inputs made for the run,
/// `prior` what the run already handled).
pub fn explain_key(
    campaign: &Campaign,
    api_url: &str,
    inputs: PassInputs,
    prior: Option<Arc<dyn PriorLookup>>,
    key: &str,
) -> Result<KeyStory, Vec<Diagnostic>> {
    let suppressed_by = suppression_rows(campaign, &inputs, key);
    let bot = BotEndpoint {
        id: campaign.bot.id.clone(),
        tag_style: campaign.bot.tag_style,
    };
    let mut pipeline = Pipeline::explaining(campaign, inputs.renderer, inputs.suppressed, prior);
    let mut appearances = Vec::new();
    let mut first: Option<String> = None;
    let mut example_key = None;
    while let Some(planned) = pipeline.next() {
        let (origin, row_key) = match &planned {
            Planned::Send(request) => (request.origin.clone(), Some(request.key.clone())),
            _ => match pipeline.told() {
                Some(Told { origin, key }) => (origin.clone(), key.clone()),
                None => continue,
            },
        };
        if example_key.is_none() {
            example_key.clone_from(&row_key);
        }
        if row_key.as_deref() != Some(key) {
            continue;
        }
        let verdict = match planned {
            Planned::Filtered => Verdict::Filtered,
            Planned::Suppressed => Verdict::Suppressed,
            Planned::Duplicate => Verdict::Duplicate {
                first: first.clone(),
            },
            Planned::Invalid(_, reason) => Verdict::Invalid {
                reason: reason.to_string(),
            },
            Planned::AlreadySent => Verdict::AlreadySent,
            // A plan holds nothing out; were it to, the row would still be to send.
            Planned::Send(ref request) => Verdict::ToSend {
                request: crate::report::request_json(request, api_url, &bot),
            },
            Planned::HeldOut => continue,
        };
        if !matches!(
            verdict,
            Verdict::Filtered | Verdict::Suppressed | Verdict::Duplicate { .. }
        ) {
            first.get_or_insert_with(|| place(&origin));
        }
        appearances.push(Appearance {
            file: origin.file.display().to_string(),
            row: origin.line,
            verdict,
        });
    }
    if !pipeline.source_failures.is_empty() {
        return Err(plan_errors(&pipeline.source_failures));
    }
    Ok(KeyStory {
        key: key.to_owned(),
        appearances,
        suppressed_by,
        rows_read: pipeline.counts.read,
        example_key,
        where_expr: campaign.audience.where_expr.clone(),
    })
}

/// Calls `each` with every row of `class` in the plan of `campaign`, in audience
/// order; the number of rows listed.
pub fn list_rows(
    campaign: &Campaign,
    inputs: PassInputs,
    prior: Option<Arc<dyn PriorLookup>>,
    class: RowClass,
    mut each: impl FnMut(ListedRow),
) -> Result<u64, Vec<Diagnostic>> {
    let mut pipeline = Pipeline::explaining(campaign, inputs.renderer, inputs.suppressed, prior);
    let mut listed = 0;
    while let Some(planned) = pipeline.next() {
        let reason = match (&planned, class) {
            (Planned::Filtered, RowClass::Filtered)
            | (Planned::Suppressed, RowClass::Suppressed)
            | (Planned::Duplicate, RowClass::Duplicates) => None,
            (Planned::Invalid(_, reason), RowClass::Invalid) => Some(reason.to_string()),
            _ => continue,
        };
        let Some(told) = pipeline.told() else {
            continue;
        };
        listed += 1;
        each(ListedRow {
            file: told.origin.file.display().to_string(),
            row: told.origin.line,
            key: told.key.clone(),
            reason,
        });
    }
    if !pipeline.source_failures.is_empty() {
        return Err(plan_errors(&pipeline.source_failures));
    }
    Ok(listed)
}

impl KeyStory {
    /// The story as people read it.
    pub fn text(&self, campaign: &str, run_id: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Key `{}` in campaign {campaign} (run {run_id}):",
            self.key
        );
        if self.appearances.is_empty() {
            let _ = writeln!(
                out,
                "  in no row of the audience ({} rows read){}",
                crate::human::thousands(self.rows_read),
                self.example_key
                    .as_ref()
                    .map(|k| format!("; keys look like `{k}` (the first row's)"))
                    .unwrap_or_default()
            );
        }
        let width = self
            .appearances
            .iter()
            .map(|a| format!("{}:{}", a.file, a.row).chars().count())
            .max()
            .unwrap_or(0);
        for a in &self.appearances {
            let at = format!("{}:{}", a.file, a.row);
            let said = match &a.verdict {
                Verdict::Filtered => format!(
                    "filtered out: `where` is false for this row{}",
                    self.where_expr
                        .as_ref()
                        .map(|w| format!(" (`{w}`)"))
                        .unwrap_or_default()
                ),
                Verdict::Suppressed => format!(
                    "suppressed: the key is in {}",
                    if self.suppressed_by.is_empty() {
                        "a suppression list".to_owned()
                    } else {
                        self.suppressed_by.join(", ")
                    }
                ),
                Verdict::Duplicate { first } => format!(
                    "duplicate of {} (the first occurrence wins)",
                    first.as_deref().unwrap_or("an earlier row")
                ),
                Verdict::Invalid { reason } => format!("invalid: {reason}"),
                Verdict::AlreadySent => {
                    "already sent (or settled) by this run: not sent again".to_owned()
                }
                Verdict::ToSend { request } => format!(
                    "to send:\n      POST {}\n      {}",
                    request["url"].as_str().unwrap_or(""),
                    serde_json::to_string(&request["body"]).unwrap_or_default()
                ),
            };
            let _ = writeln!(out, "  {at:<width$}  {said}");
        }
        if self.suppressed_by.is_empty() {
            let _ = writeln!(out, "  no suppression list holds it");
        } else if !self
            .appearances
            .iter()
            .any(|a| matches!(a.verdict, Verdict::Suppressed))
        {
            let _ = writeln!(
                out,
                "  suppression rows with this key: {}",
                self.suppressed_by.join(", ")
            );
        }
        out
    }
}
