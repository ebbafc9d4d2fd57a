use std::path::Path;

use serde::Serialize;

use super::{
    campaign_files, eprint_diagnostics, note_missing_store, print_out, render_error, ExitStatus,
};
use crate::campaign::{self, Campaign};
use crate::cli::{DueArgs, DueFormat, GlobalArgs};
use crate::diagnostic::{Diagnostic, Location};
use crate::plan::{due_at, run_id};
use crate::run::RunError;
use crate::schedule::Due;
use crate::state::{RunStatus, StateStore};

/// What the schedule of one campaign says at a time.
#[derive(Debug, Serialize)]
pub(crate) struct DueLine {
    pub campaign: String,
    pub file: String,
    /// due | missed | done | not-yet | ended | unscheduled
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Evaluates a campaign's schedule at `at` against the state store (read-only).
pub(crate) fn due_line(
    c: &Campaign,
    at: chrono::DateTime<chrono::Utc>,
    store: Option<&dyn StateStore>,
) -> DueLine {
    let mut line = DueLine {
        campaign: c.name.clone(),
        file: c.path.display().to_string(),
        status: "unscheduled",
        run_id: None,
        next: None,
    };
    let Some(due) = due_at(c, at, store) else {
        return line;
    };
    let (status, occurrence, next) = match due {
        Due::Due(o) => ("due", Some(o), None),
        Due::Missed { occurrence, next } => ("missed", Some(occurrence), next),
        Due::Done { occurrence, next } => {
            let recorded_missed = store
                .and_then(|s| s.run(&run_id(c, Some(&occurrence.id()))).ok().flatten())
                .is_some_and(|r| r.status == RunStatus::Missed);
            (
                if recorded_missed { "missed" } else { "done" },
                Some(occurrence),
                next,
            )
        }
        Due::NotYet { next } => ("not-yet", None, next),
        Due::Ended => ("ended", None, None),
    };
    line.status = status;
    line.run_id = occurrence.map(|o| run_id(c, Some(&o.id())));
    line.next = next.map(|n| n.id());
    line
}

pub(super) fn run(global: &GlobalArgs, args: &DueArgs) -> ExitStatus {
    let files = match campaign_files(&args.dir) {
        Ok(f) => f,
        Err(e) => {
            eprint_diagnostics(&[Diagnostic::error(
                "unreadable-file",
                format!(
                    "cannot list `{}`: {}",
                    args.dir.display(),
                    crate::human::io_reason(&e)
                ),
            )
            .at(Location::file(&args.dir))]);
            return ExitStatus::Invalid;
        }
    };
    let mut lines = Vec::new();
    let mut status = ExitStatus::Success;
    let mut at_shown = None;
    let mut noted = std::collections::HashSet::new();
    let inputs = super::inputs(global);
    // Every file is loaded before anything is printed: loading registers the
    // tokens a file names with the scrubber, so a later file's inline bot token
    // cannot leak through an earlier file's diagnostics.
    let loaded: Vec<_> = files
        .iter()
        .map(|file| {
            campaign::project_for(file, global.config.as_deref()).map(|project| {
                let (loaded, diagnostics) = campaign::load_campaign(file, &project);
                (project, loaded, diagnostics)
            })
        })
        .collect();
    for entry in loaded {
        let (project, loaded, diagnostics) = match entry {
            Ok(p) => p,
            Err(errors) => {
                eprint_diagnostics(&errors);
                status = ExitStatus::Invalid;
                continue;
            }
        };
        let Some(c) = loaded else {
            eprint_diagnostics(&diagnostics);
            status = ExitStatus::Invalid;
            continue;
        };
        let at = match crate::run::resolve_at(args.at.as_deref(), &c) {
            Ok(t) => t,
            Err(e) => return render_error(&e),
        };
        at_shown.get_or_insert(at);
        let state = inputs.state_location(&project);
        if noted.insert(state.clone()) {
            note_missing_store(&state, global.quiet);
        }
        let store = match crate::state::open_read_only(&state) {
            Ok(s) => s,
            Err(e) => return render_error(&RunError::state(state.to_string(), e)),
        };
        lines.push(due_line(&c, at, store.as_deref()));
    }
    let at = at_shown.unwrap_or_else(chrono::Utc::now);
    print_out(&match args.format {
        DueFormat::Json => {
            serde_json::to_string_pretty(
                &serde_json::json!({ "at": at.to_rfc3339(), "campaigns": lines }),
            )
            .unwrap_or_default()
                + "\n"
        }
        DueFormat::Text => text(&lines, at, Path::new(&args.dir)),
    });
    status
}

fn text(lines: &[DueLine], at: chrono::DateTime<chrono::Utc>, dir: &Path) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "at {} in {}:\n",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        dir.display()
    );
    let due = lines.iter().filter(|l| l.status == "due").count();
    for l in lines {
        let what = match l.status {
            "due" => format!("due      {}", l.run_id.as_deref().unwrap_or("")),
            "missed" => format!(
                "missed   {} (older than catch_up; recorded and never sent late by `run --due`)",
                l.run_id.as_deref().unwrap_or("")
            ),
            "done" => format!("done     {}", l.run_id.as_deref().unwrap_or("")),
            "not-yet" => "not yet".to_string(),
            "ended" => "ended    (no occurrence left)".to_string(),
            _ => "unscheduled (runs when asked: `run CAMPAIGN`)".to_string(),
        };
        let next = l
            .next
            .as_deref()
            .map(|n| format!("; next {n}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {:<28} {what}{next}", l.campaign);
    }
    let _ = writeln!(out, "{due} run(s) due");
    out
}
