//! `plan`: what a run would send, without sending.

use std::path::Path;
use std::sync::Arc;

use super::{eprint_diagnostics, note_missing_store, print_out, render_error, ExitStatus};
use std::io::Write;

use crate::cli::{GlobalArgs, ListClass, PlanArgs, PlanOptions, ReportFormat};
use crate::diagnostic::Diagnostic;
use crate::plan::explain::{explain_key, list_rows, RowClass};
use crate::plan::saved::{bound_files, SavedPlan};
use crate::plan::{
    plan_pass_with, preview_run_given, PassInputs, PlanPass, Preview, PriorLookup, Selection,
};
use crate::run::{Prepared, ResumeFilter, ResumePolicy, RunError};
use crate::state::StateStore;

pub(super) fn run(
    global: &GlobalArgs,
    path: &Path,
    options: &PlanOptions,
    out: Option<&Path>,
) -> ExitStatus {
    let prepared = match Prepared::load(path, &super::inputs(global)) {
        Ok(p) => p,
        Err(e) => return render_error(&e),
    };
    if !global.quiet {
        eprint_diagnostics(&prepared.warnings);
    }
    let at = match prepared.at(options.at.as_deref()) {
        Ok(t) => t,
        Err(e) => return render_error(&e),
    };
    // What this run already handled, read without writing anything.
    note_missing_store(&prepared.state, global.quiet);
    let (pass, preview) = match read_only_plan(
        &prepared,
        at,
        options.sample,
        options.requests.as_deref(),
        ResumePolicy::default(),
        Selection::default(),
        out.is_some(),
    ) {
        Ok(p) => p,
        Err(e) => return render_error(&e),
    };
    if let Some(out) = out {
        if let Err(status) = save(&prepared, &pass, &preview, out, global.quiet) {
            return status;
        }
    }
    let mut report = pass.report;
    report.warnings = prepared.warnings.len();
    report.schedule = preview.schedule_note.clone();
    if let Some(schedule) = &prepared.campaign.schedule {
        if let Some(window) = schedule.window() {
            let tz = schedule.timezone();
            let (from, to) = crate::schedule::estimate_span(
                preview.starts,
                report.counts.to_send,
                prepared.campaign.delivery.rate,
                Some(window),
                tz,
            );
            let fmt = |t: chrono::DateTime<chrono::Utc>| {
                t.with_timezone(&tz)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            report.sending_window = Some(crate::report::SendingSpan {
                window: window.to_string(),
                starts: fmt(from),
                ends: fmt(to),
            });
        }
    }
    print_out(&match options.format {
        ReportFormat::Text => report.text(),
        ReportFormat::Json => report.json(),
        ReportFormat::Markdown => report.markdown(),
    });
    if options.fail_on_invalid && report.counts.invalid > 0 {
        ExitStatus::Failed
    } else {
        ExitStatus::Success
    }
}

/// The plan of `prepared`'s run at `at` as `run` would make it, with what the state
/// store says the run already handled, reading the store without writing anything
/// (a missing store reads as empty). `policy` and `selection` are the run's own.
pub(super) fn read_only_plan(
    prepared: &Prepared,
    at: chrono::DateTime<chrono::Utc>,
    sample: usize,
    requests: Option<&Path>,
    policy: ResumePolicy,
    selection: Selection,
    digest: bool,
) -> Result<(PlanPass, Preview), RunError> {
    let (preview, prior) = read_only_run(prepared, at, policy)?;
    let mut inputs = PassInputs::new(&prepared.campaign, &preview.run)
        .map_err(RunError::Invalid)?
        .with_selection(selection);
    if digest {
        inputs = inputs.with_digest();
    }
    let pass = plan_pass_with(
        &prepared.campaign,
        &prepared.api_url,
        inputs,
        sample,
        prior,
        requests,
    )
    .map_err(RunError::Invalid)?;
    Ok((pass, preview))
}

/// The run `prepared` would act on at `at`, and what it already handled, read
/// from the state store without writing anything (a missing store is empty).
fn read_only_run(
    prepared: &Prepared,
    at: chrono::DateTime<chrono::Utc>,
    policy: ResumePolicy,
) -> Result<(Preview, Option<Arc<dyn PriorLookup>>), RunError> {
    let store = crate::state::open_read_only(&prepared.state)
        .map_err(|e| RunError::state(prepared.state.to_string(), e))?;
    let preview = preview_run_given(&prepared.campaign, at, store.as_deref());
    let prior = match store.as_deref() {
        Some(s) => prior_of(s, &preview.run.id, policy)?,
        None => None,
    };
    Ok((preview, prior))
}

/// `plan --key KEY` and `plan --list CLASS`.
pub(super) fn explain(global: &GlobalArgs, args: &PlanArgs) -> ExitStatus {
    let prepared = match Prepared::load(&args.campaign, &super::inputs(global)) {
        Ok(p) => p,
        Err(e) => return render_error(&e),
    };
    let at = match prepared.at(args.options.at.as_deref()) {
        Ok(t) => t,
        Err(e) => return render_error(&e),
    };
    note_missing_store(&prepared.state, global.quiet);
    let ready =
        read_only_run(&prepared, at, ResumePolicy::default()).and_then(|(preview, prior)| {
            let inputs =
                PassInputs::new(&prepared.campaign, &preview.run).map_err(RunError::Invalid)?;
            Ok((preview, prior, inputs))
        });
    let (preview, prior, inputs) = match ready {
        Ok(r) => r,
        Err(e) => return render_error(&e),
    };
    let campaign = &prepared.campaign;
    let json = args.options.format == ReportFormat::Json;
    if let Some(key) = &args.key {
        let story = match explain_key(campaign, &prepared.api_url, inputs, prior, key) {
            Ok(s) => s,
            Err(errors) => return render_error(&RunError::Invalid(errors)),
        };
        print_out(&if json {
            serde_json::to_string_pretty(&story).unwrap_or_default() + "\n"
        } else {
            story.text(&campaign.name, &preview.run.id)
        });
        return ExitStatus::Success;
    }
    let Some(class) = args.list else {
        return ExitStatus::Success;
    };
    let class = match class {
        ListClass::Filtered => RowClass::Filtered,
        ListClass::Suppressed => RowClass::Suppressed,
        ListClass::Duplicates => RowClass::Duplicates,
        ListClass::Invalid => RowClass::Invalid,
    };
    // Streamed: a class can hold most of an audience of millions.
    let mut out = crate::redact::Scrubbed::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let mut first = true;
    if json {
        let _ = out.write_all(b"[");
    }
    let listed = list_rows(campaign, inputs, prior, class, |row| {
        let line = if json {
            format!(
                "{}\n  {}",
                if first { "" } else { "," },
                serde_json::to_string(&row).unwrap_or_default()
            )
        } else {
            let mut line = format!(
                "{}:{}  {}",
                row.file,
                row.row,
                row.key.as_deref().unwrap_or("(no key)")
            );
            if let Some(reason) = &row.reason {
                line.push_str("  ");
                line.push_str(reason);
            }
            line.push('\n');
            line
        };
        first = false;
        let _ = out.write_all(line.as_bytes());
    });
    if json {
        let _ = out.write_all(if first { b"]\n" as &[u8] } else { b"\n]\n" });
    }
    let _ = out.flush();
    match listed {
        Ok(n) => {
            if !global.quiet && !json {
                super::print_err(&format!("{} row(s)\n", crate::human::thousands(n)));
            }
            ExitStatus::Success
        }
        Err(errors) => render_error(&RunError::Invalid(errors)),
    }
}

/// `plan --out FILE`: the plan, bound to its files by hash, for `run --plan FILE`.
fn save(
    prepared: &Prepared,
    pass: &PlanPass,
    preview: &Preview,
    out: &Path,
    quiet: bool,
) -> Result<(), ExitStatus> {
    let fail = |code: &'static str, message: String| {
        render_error(&RunError::Invalid(vec![Diagnostic::error(code, message)]))
    };
    let files = bound_files(&prepared.campaign, prepared.project_file()).map_err(|(path, e)| {
        fail(
            "unreadable-file",
            format!(
                "cannot read `{}` to bind the plan to it: {}",
                path.display(),
                crate::human::io_reason(&e)
            ),
        )
    })?;
    let written = crate::campaign::normalize(out);
    if let Some(bound) = files
        .iter()
        .find(|f| crate::campaign::normalize(&f.path) == written)
    {
        return Err(fail(
            "usage",
            format!(
                "--out `{}` is the plan's own {}: name a new file for the plan",
                out.display(),
                bound.role
            ),
        ));
    }
    let report = &pass.report;
    let digest = report.requests_digest.clone().unwrap_or_default();
    let plan = SavedPlan::new(
        &prepared.campaign,
        &preview.run.id,
        &preview.run.now,
        &prepared.api_url,
        files,
        report.counts,
        digest.clone(),
    );
    plan.write(out).map_err(|e| {
        fail(
            "unwritable-file",
            format!(
                "cannot write the plan `{}`: {}",
                out.display(),
                crate::human::io_reason(&e)
            ),
        )
    })?;
    if !quiet {
        super::print_err(&format!(
            "saved the plan to {} ({digest}); send exactly it with: smax-campaign run --plan {}\n",
            out.display(),
            out.display()
        ));
    }
    Ok(())
}

/// What the run already handled, as a run would skip it (`None` when nothing).
fn prior_of(
    store: &dyn StateStore,
    run_id: &str,
    policy: ResumePolicy,
) -> Result<Option<Arc<dyn PriorLookup>>, RunError> {
    let filter = ResumeFilter::load(store, run_id, policy)
        .map_err(|e| RunError::state(store.location(), e))?;
    if filter.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(filter)))
}
