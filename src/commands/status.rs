use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{print_out, render_error, ExitStatus};
use crate::campaign;
use crate::cli::{GlobalArgs, RecipientFilter, ReportFormat, StatusArgs};
use crate::human::{human_duration, md_cell, percent, thousands};
use crate::run::RunError;
use crate::state::{DeliveryRow, LockName, OutcomeClass, RunStatus, RunSummary, StateStore};

pub(super) fn run(global: &GlobalArgs, args: &StatusArgs) -> ExitStatus {
    // A target naming a file is a campaign file: its runs are the campaign's.
    let file = args
        .target
        .as_deref()
        .map(Path::new)
        .filter(|p| p.is_file());
    let location = match super::inputs(global).state_location_for(file) {
        Ok(l) => l,
        Err(errors) => return render_error(&RunError::Invalid(errors)),
    };
    let state = location.to_string();
    let state_error = |state: &str, e| render_error(&RunError::state(state, e));
    let store = match crate::state::open_read_only(&location) {
        Ok(Some(s)) => s,
        Ok(None) => {
            print_out(&format!(
                "no runs yet: there is no state store at {state} (read as empty; nothing was created)\n",
            ));
            return ExitStatus::Success;
        }
        Err(e) => return state_error(&state, e),
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
        Err(e) => return state_error(&state, e),
    };
    if let Some(filter) = args.recipients {
        let Some(run) = runs.first() else {
            print_out("no such run\n");
            return ExitStatus::Invalid;
        };
        let classes: Vec<OutcomeClass> = match filter {
            RecipientFilter::Failed => vec![OutcomeClass::Retryable],
            RecipientFilter::Rejected => vec![OutcomeClass::Rejected],
            RecipientFilter::Unknown => vec![OutcomeClass::Unknown, OutcomeClass::Attempted],
            RecipientFilter::Sent => vec![OutcomeClass::Sent],
            RecipientFilter::All => vec![],
        };
        let rows = match store.deliveries(&run.run_id, &classes, Some(args.limit)) {
            Ok(r) => r,
            Err(e) => return state_error(&state, e),
        };
        print_out(&match args.format {
            ReportFormat::Json => {
                let rows: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|d| {
                        let mut v = serde_json::to_value(d).unwrap_or_default();
                        if let Some(map) = v.as_object_mut() {
                            map.insert("class".into(), OutcomeClass::label(d.class).into());
                        }
                        v
                    })
                    .collect();
                json(&serde_json::json!({ "run": run, "recipients": rows }))
            }
            ReportFormat::Markdown => recipients_markdown(run, &rows),
            ReportFormat::Text => recipients_text(run, &rows),
        });
        return ExitStatus::Success;
    }
    let views = views(&runs, store.as_ref());
    print_out(&match args.format {
        ReportFormat::Json => {
            let runs: Vec<serde_json::Value> = views.iter().map(RunView::json).collect();
            json(&serde_json::json!({ "state": state, "runs": runs }))
        }
        ReportFormat::Markdown => runs_markdown(&views),
        ReportFormat::Text => runs_text(&views, &state),
    });
    ExitStatus::Success
}

fn json(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// One run as `status` shows it, in the vocabulary every output shares: sent,
/// rejected, failed (will be retried), unknown, invalid, pending; shares of the
/// audience the run's latest plan counted.
struct RunView<'a> {
    run: &'a RunSummary,
    /// The stored status, except that a `running` run whose lock nobody holds is
    /// `interrupted`: its process died.
    status: RunStatus,
    outcomes: Outcomes,
}

#[derive(Debug, Serialize)]
struct Outcomes {
    sent: u64,
    rejected: u64,
    failed: u64,
    unknown: u64,
    invalid: Option<u64>,
    pending: Option<u64>,
}

impl Outcomes {
    fn of(run: &RunSummary, status: RunStatus) -> Outcomes {
        let c = &run.counts;
        // In flight while the run runs; once it is not running, what was in flight
        // may or may not have been delivered.
        let unknown = if status == RunStatus::Running {
            c.unknown
        } else {
            c.unknown + c.attempted
        };
        // `skipped`: taken up by a run that stopped before sending; still pending.
        let recorded = c.sent + c.rejected + c.retryable + unknown;
        let pending = run
            .audience
            .map(|a| a.saturating_sub(recorded + run.invalid.unwrap_or(0)));
        // Without a plan on record, what is known to be pending is what was skipped.
        let pending = pending.or((c.skipped > 0).then_some(c.skipped));
        Outcomes {
            sent: c.sent,
            rejected: c.rejected,
            failed: c.retryable,
            unknown,
            invalid: run.invalid,
            pending,
        }
    }

    fn cells(&self) -> [(&'static str, Option<u64>); 6] {
        [
            ("sent", Some(self.sent)),
            ("rejected", Some(self.rejected)),
            ("failed", Some(self.failed)),
            ("unknown", Some(self.unknown)),
            ("invalid", self.invalid),
            ("pending", self.pending),
        ]
    }
}

impl RunView<'_> {
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.run).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            // The store's own classes (`attempted`, `retryable`, `skipped`) are a
            // second vocabulary; `outcomes` says the same in the one people read.
            map.remove("counts");
            map.insert("status".into(), serde_json::json!(self.status));
            map.insert("outcomes".into(), serde_json::json!(self.outcomes));
            // Percentages of the audience, to one decimal; absent when it is unknown.
            if let Some(audience) = self.run.audience.filter(|a| *a > 0) {
                let shares: BTreeMap<&str, f64> = self
                    .outcomes
                    .cells()
                    .into_iter()
                    .filter_map(|(name, n)| {
                        percent(n?, audience).map(|p| (name, (p * 10.0).round() / 10.0))
                    })
                    .collect();
                map.insert("percent".into(), serde_json::json!(shares));
            }
        }
        v
    }
}

fn views<'a>(runs: &'a [RunSummary], store: &dyn StateStore) -> Vec<RunView<'a>> {
    runs.iter()
        .map(|run| {
            let status = effective_status(run, store);
            RunView {
                run,
                status,
                outcomes: Outcomes::of(run, status),
            }
        })
        .collect()
}

fn effective_status(run: &RunSummary, store: &dyn StateStore) -> RunStatus {
    if run.status != RunStatus::Running {
        return run.status;
    }
    match store.lock_holder(&LockName::Run(run.run_id.clone())) {
        Ok(None) => RunStatus::Interrupted,
        // Held, or cannot tell: say what the store says.
        _ => RunStatus::Running,
    }
}

fn duration(view: &RunView) -> String {
    match (view.run.finished, view.status) {
        (Some(f), _) => {
            human_duration((f - view.run.started).num_milliseconds().max(0) as f64 / 1000.0)
        }
        (None, RunStatus::Running) => "running".into(),
        (None, _) => "-".into(),
    }
}

fn cell(n: Option<u64>, audience: Option<u64>) -> String {
    let Some(n) = n else {
        return "-".into();
    };
    match audience.and_then(|a| percent(n, a)) {
        Some(p) => format!("{} ({p:.0}%)", thousands(n)),
        None => thousands(n),
    }
}

const COLUMNS: [&str; 11] = [
    "run", "status", "started", "duration", "audience", "sent", "rejected", "failed", "unknown",
    "invalid", "pending",
];

fn row(view: &RunView) -> [String; 11] {
    let run = view.run;
    let audience = run.audience;
    let [sent, rejected, failed, unknown, invalid, pending] =
        view.outcomes.cells().map(|(_, n)| cell(n, audience));
    [
        run.run_id.clone(),
        view.status.to_string(),
        run.started.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        duration(view),
        audience.map(thousands).unwrap_or_else(|| "-".into()),
        sent,
        rejected,
        failed,
        unknown,
        invalid,
        pending,
    ]
}

fn runs_text(views: &[RunView], state: &str) -> String {
    if views.is_empty() {
        return format!("no runs in {state}\n");
    }
    let rows: Vec<[String; 11]> = views.iter().map(row).collect();
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
    out.push_str("failed: will be retried by the next run; unknown: may have been delivered, resent only with --resend-unknown\n");
    out
}

fn runs_markdown(views: &[RunView]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        COLUMNS.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    for r in views {
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
            OutcomeClass::label(d.class),
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
            OutcomeClass::label(d.class),
            d.attempts,
            md_cell(d.platform_text.as_deref().unwrap_or(""))
        );
    }
    out
}
