use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::runstate::state_error;
use super::{print_out, ExitStatus};
use crate::campaign::{self, Project};
use crate::cli::{GlobalArgs, RecipientFilter, ReportFormat, StatusArgs};
use crate::report::{human_duration, thousands};
use crate::state::{DeliveryRow, OutcomeClass, RunSummary, SqliteStore, StateStore};

/// The state file `status` reads: --state, else the project's (found from the
/// campaign file if one is named, else from the current folder).
fn state_file(global: &GlobalArgs, campaign_file: Option<&Path>) -> Result<PathBuf, ExitStatus> {
    if let Some(p) = &global.state {
        return Ok(p.clone());
    }
    let start = campaign_file
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let project = match &global.config {
        Some(p) => campaign::load_project(p),
        None => match campaign::find_project_file(start) {
            Some(p) => campaign::load_project(&p),
            None => Ok(Project::none(PathBuf::from("."))),
        },
    };
    match project {
        Ok(p) => Ok(p.state_path()),
        Err(errors) => {
            super::eprint_diagnostics(&errors);
            Err(ExitStatus::Invalid)
        }
    }
}

pub(super) fn run(global: &GlobalArgs, args: &StatusArgs) -> ExitStatus {
    // A target naming a file is a campaign file: its runs are the campaign's.
    let file = args
        .target
        .as_deref()
        .map(Path::new)
        .filter(|p| p.is_file());
    let state = match state_file(global, file) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let store = match SqliteStore::open_read_only(&state) {
        Ok(Some(s)) => s,
        Ok(None) => {
            print_out(&format!(
                "no runs yet (no state file at {})\n",
                state.display()
            ));
            return ExitStatus::Success;
        }
        Err(e) => return state_error(&state, &e),
    };
    let campaign_name = match file {
        Some(f) => match campaign::parse_campaign(f) {
            Ok(parsed) => Some(parsed.content.name),
            Err(errors) => {
                super::eprint_diagnostics(&errors);
                return ExitStatus::Invalid;
            }
        },
        None => None,
    };
    let runs = match (&campaign_name, &args.target) {
        (Some(name), _) => store.runs(Some(name)),
        (None, Some(target)) => match store.run(target) {
            Ok(Some(run)) => Ok(vec![run]),
            Ok(None) => store.runs(Some(target)),
            Err(e) => Err(e),
        },
        (None, None) => store.runs(None),
    };
    let runs = match runs {
        Ok(r) => r,
        Err(e) => return state_error(&state, &e),
    };
    if let Some(filter) = args.recipients {
        let Some(run) = runs.first() else {
            print_out("no such run\n");
            return ExitStatus::Invalid;
        };
        let classes: Vec<OutcomeClass> = match filter {
            RecipientFilter::Failed => vec![OutcomeClass::Rejected, OutcomeClass::Retryable],
            RecipientFilter::Unknown => vec![OutcomeClass::Unknown, OutcomeClass::Attempted],
            RecipientFilter::Sent => vec![OutcomeClass::Sent],
            RecipientFilter::All => vec![],
        };
        let rows = match store.deliveries(&run.run_id, &classes, Some(args.limit)) {
            Ok(r) => r,
            Err(e) => return state_error(&state, &e),
        };
        print_out(&match args.format {
            ReportFormat::Json => json(&serde_json::json!({ "run": run, "recipients": rows })),
            ReportFormat::Markdown => recipients_markdown(run, &rows),
            ReportFormat::Text => recipients_text(run, &rows),
        });
        return ExitStatus::Success;
    }
    print_out(&match args.format {
        ReportFormat::Json => {
            json(&serde_json::json!({ "state": state.display().to_string(), "runs": runs }))
        }
        ReportFormat::Markdown => runs_markdown(&runs),
        ReportFormat::Text => runs_text(&runs, &state),
    });
    ExitStatus::Success
}

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn duration(run: &RunSummary) -> String {
    match run.finished {
        Some(f) => human_duration((f - run.started).num_milliseconds().max(0) as f64 / 1000.0),
        None => "running".into(),
    }
}

fn progress(run: &RunSummary) -> String {
    let c = &run.counts;
    let total = c.total();
    if total == 0 {
        return "-".into();
    }
    let settled = total - c.attempted - c.retryable;
    format!("{:.0}%", settled as f64 * 100.0 / total as f64)
}

const COLUMNS: [&str; 10] = [
    "run",
    "status",
    "started",
    "duration",
    "sent",
    "rejected",
    "failed",
    "unknown",
    "in flight",
    "settled",
];

fn row(run: &RunSummary) -> [String; 10] {
    let c = &run.counts;
    [
        run.run_id.clone(),
        run.status.to_string(),
        run.started.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        duration(run),
        thousands(c.sent),
        thousands(c.rejected),
        thousands(c.retryable),
        thousands(c.unknown),
        thousands(c.attempted),
        progress(run),
    ]
}

fn runs_text(runs: &[RunSummary], state: &Path) -> String {
    if runs.is_empty() {
        return format!("no runs in {}\n", state.display());
    }
    let rows: Vec<[String; 10]> = runs.iter().map(row).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([COLUMNS[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i >= 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(COLUMNS.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn runs_markdown(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        COLUMNS.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    for r in runs {
        let cells = row(r);
        let _ = writeln!(out, "| `{}` | {} |", cells[0], cells[1..].join(" | "));
    }
    out
}

fn recipients_text(run: &RunSummary, rows: &[DeliveryRow]) -> String {
    let mut out = format!("{} recipient(s) of run {}:\n", rows.len(), run.run_id);
    for d in rows {
        let _ = writeln!(
            out,
            "  {}  {}:{}  {}  {} attempt(s){}{}",
            d.key,
            d.source,
            d.row,
            d.class,
            d.attempts,
            d.status.map(|s| format!("  HTTP {s}")).unwrap_or_default(),
            d.platform_text
                .as_deref()
                .map(|t| format!("  {t}"))
                .unwrap_or_default()
        );
    }
    out
}

fn recipients_markdown(run: &RunSummary, rows: &[DeliveryRow]) -> String {
    let mut out = format!("Recipients of `{}`\n\n| key | row | outcome | attempts | last answer |\n|---|---|---|---:|---|\n", run.run_id);
    for d in rows {
        let _ = writeln!(
            out,
            "| `{}` | `{}:{}` | {} | {} | {} |",
            d.key,
            d.source,
            d.row,
            d.class,
            d.attempts,
            d.platform_text.as_deref().unwrap_or("").replace('|', "\\|")
        );
    }
    out
}
