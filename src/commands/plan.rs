//! `plan`: what a run would send, without sending.

use std::path::Path;
use std::sync::Arc;

use super::{eprint_diagnostics, note_missing_store, print_out, render_error, ExitStatus};
use crate::cli::{GlobalArgs, PlanOptions, ReportFormat};
use crate::plan::{plan_pass, preview_run_given, PriorLookup};
use crate::run::{Prepared, ResumeFilter, ResumePolicy, RunError};
use crate::state::StateStore;

pub(super) fn run(global: &GlobalArgs, path: &Path, options: &PlanOptions) -> ExitStatus {
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
    let store = match crate::state::open_read_only(&prepared.state) {
        Ok(s) => s,
        Err(e) => return render_error(&RunError::state(prepared.state.to_string(), e)),
    };
    let preview = preview_run_given(&prepared.campaign, at, store.as_deref());
    let run_info = preview.run.clone();
    let prior = match store
        .as_deref()
        .map(|s| prior_of(s, &run_info.id))
        .transpose()
    {
        Ok(p) => p.flatten(),
        Err(e) => return render_error(&e),
    };
    let pass = plan_pass(
        &prepared.campaign,
        &prepared.api_url,
        &run_info,
        options.sample,
        prior,
        options.requests.as_deref(),
    );
    let pass = match pass {
        Ok(p) => p,
        Err(errors) => return render_error(&RunError::Invalid(errors)),
    };
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

/// What the run already handled, as a run would skip it (`None` when nothing).
fn prior_of(
    store: &dyn StateStore,
    run_id: &str,
) -> Result<Option<Arc<dyn PriorLookup>>, RunError> {
    let filter = ResumeFilter::load(store, run_id, ResumePolicy::default())
        .map_err(|e| RunError::state(store.location(), e))?;
    if filter.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(filter)))
}
