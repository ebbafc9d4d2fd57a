//! One pass over the whole audience without sending: the counts, the sample, the
//! invalid rows and, for `--requests`, every request as a JSON line. `plan` shows it;
//! `run` makes it before anything is sent.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::{suppression_set, InvalidRow, Pipeline, PlanError, Planned, PriorLookup, Selection};
use crate::api::wire::BotEndpoint;
use crate::campaign::Campaign;
use crate::diagnostic::{Diagnostic, Location};
use crate::human::io_reason;
use crate::render::{Renderer, RunInfo};
use crate::report::{PlanReport, RequestLine};
use crate::state::KeySet;

/// How many invalid rows a plan keeps for its report (the rest are only counted).
const KEPT_INVALID_ROWS: usize = 1000;

/// The outcome of reading the whole audience once, without sending.
pub struct PlanPass {
    pub report: PlanReport,
    /// Keys `run --only` named that are not among the recipients to send.
    pub only_not_found: Vec<String>,
    /// With a digest: each request's hash, what a run bound to this plan may send.
    pub request_hashes: Option<Arc<KeySet>>,
}

/// What makes the whole plan untrustworthy, as diagnostics (not one row's problem).
pub fn plan_errors(errors: &[PlanError]) -> Vec<Diagnostic> {
    errors
        .iter()
        .map(|e| {
            let loc = match e.row {
                Some(row) => Location::data_row(&e.file, row),
                None => Location::file(&e.file),
            };
            Diagnostic::error("audience", e.message.clone()).at(loc)
        })
        .collect()
}

/// Reads and renders the whole audience of `campaign` for the run `run_info`, keeping
/// `sample_size` requests (as people review them, for `api_url`). `requests` names a
/// file to receive every request to send, as JSON lines (`--requests`). An error means
/// the plan cannot be trusted (a template that does not compile, a broken suppression
/// list, an audience file that cannot be read, a requests file that cannot be written).
pub fn plan_pass(
    campaign: &Campaign,
    api_url: &str,
    run_info: &RunInfo,
    sample_size: usize,
    prior: Option<Arc<dyn PriorLookup>>,
    requests: Option<&Path>,
) -> Result<PlanPass, Vec<Diagnostic>> {
    let inputs = PassInputs::new(campaign, run_info)?;
    plan_pass_with(campaign, api_url, inputs, sample_size, prior, requests)
}

/// What every pass over a run's audience shares: its compiled templates and the
/// suppression list, read whole.
#[derive(Clone)]
pub struct PassInputs {
    pub run_id: String,
    pub renderer: Arc<Renderer>,
    pub suppressed: Arc<KeySet>,
    /// The recipients to send this invocation takes (everyone by default).
    pub selection: Selection,
    /// Digest every request the run renders (for a saved plan): already sent
    /// recipients are rendered again for it.
    pub digest: bool,
}

impl PassInputs {
    /// Compiles the templates for the run and reads the suppression lists. An error
    /// means nothing can be planned (a template that does not compile, a list that
    /// cannot be read whole).
    pub fn new(campaign: &Campaign, run_info: &RunInfo) -> Result<PassInputs, Vec<Diagnostic>> {
        let renderer = match Renderer::new(campaign, run_info) {
            Ok(r) => Arc::new(r),
            Err(errors) => {
                return Err(errors
                    .iter()
                    .map(|e| {
                        Diagnostic::error("template-syntax", format!("{}: {}", e.name, e.message))
                    })
                    .collect())
            }
        };
        let suppressed = match suppression_set(campaign, &renderer) {
            Ok(s) => Arc::new(s),
            Err(errors) => {
                let mut diagnostics = plan_errors(&errors);
                if let Some(last) = diagnostics.pop() {
                    diagnostics.push(last.help(
                        "the suppression list must be read whole before anyone can be messaged; fix the rows above",
                    ));
                }
                return Err(diagnostics);
            }
        };
        Ok(PassInputs {
            run_id: run_info.id.clone(),
            renderer,
            suppressed,
            selection: Selection::default(),
            digest: false,
        })
    }

    /// Digests every request of the run ([`Pipeline::digesting`]).
    pub fn with_digest(mut self) -> PassInputs {
        self.digest = true;
        self
    }

    /// Takes only the recipients `selection` takes (`run --only`, `--limit`).
    pub fn with_selection(mut self, selection: Selection) -> PassInputs {
        self.selection = selection;
        self
    }
}

/// [`plan_pass`] with its templates and suppression list already made.
pub fn plan_pass_with(
    campaign: &Campaign,
    api_url: &str,
    inputs: PassInputs,
    sample_size: usize,
    prior: Option<Arc<dyn PriorLookup>>,
    requests: Option<&Path>,
) -> Result<PlanPass, Vec<Diagnostic>> {
    let unwritable = |path: &Path, e: std::io::Error| {
        vec![Diagnostic::error(
            "unwritable-file",
            format!("cannot write `{}`: {}", path.display(), io_reason(&e)),
        )]
    };
    let Some(path) = requests else {
        return plan_pass_into(campaign, api_url, inputs, sample_size, prior, None);
    };
    let mut file = crate::redact::create_file(path).map_err(|e| unwritable(path, e))?;
    let pass = plan_pass_into(
        campaign,
        api_url,
        inputs,
        sample_size,
        prior,
        Some(&mut file),
    )?;
    file.flush().map_err(|e| unwritable(path, e))?;
    Ok(pass)
}

fn plan_pass_into(
    campaign: &Campaign,
    api_url: &str,
    inputs: PassInputs,
    sample_size: usize,
    prior: Option<Arc<dyn PriorLookup>>,
    mut requests: Option<&mut dyn Write>,
) -> Result<PlanPass, Vec<Diagnostic>> {
    let PassInputs {
        run_id,
        renderer,
        suppressed,
        selection,
        digest,
    } = inputs;
    let bot = BotEndpoint {
        id: campaign.bot.id.clone(),
        tag_style: campaign.bot.tag_style,
    };
    let mut sample = Vec::new();
    let mut invalid_rows = Vec::new();
    let mut pipeline = Pipeline::new(campaign, renderer, suppressed, prior).select(selection);
    if digest {
        pipeline = pipeline.digesting(campaign);
    }
    let mut write_error = None;
    let mut file_shown: Option<(Arc<Path>, String)> = None;
    for planned in pipeline.by_ref() {
        match planned {
            Planned::Send(request) => {
                if sample.len() < sample_size {
                    sample.push(crate::report::request_json(&request, api_url, &bot));
                }
                if let (Some(out), None) = (requests.as_mut(), &write_error) {
                    let file = &request.origin.file;
                    let shown = match &file_shown {
                        Some((f, shown)) if Arc::ptr_eq(f, file) => shown,
                        _ => {
                            let shown = file.display().to_string();
                            &file_shown.insert((file.clone(), shown)).1
                        }
                    };
                    let line = RequestLine::new(&request, shown, api_url, &bot);
                    let written = serde_json::to_writer(&mut *out, &line)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    if let Err(e) = written {
                        write_error = Some(e);
                    }
                }
            }
            Planned::Invalid(origin, reason) if invalid_rows.len() < KEPT_INVALID_ROWS => {
                invalid_rows.push(InvalidRow {
                    file: origin.file.to_path_buf(),
                    row: origin.line,
                    code: reason.code(),
                    reason: reason.to_string(),
                })
            }
            _ => {}
        }
    }
    if let Some(e) = write_error {
        return Err(vec![Diagnostic::error(
            "unwritable-file",
            format!("writing the requests file failed: {}", io_reason(&e)),
        )]);
    }
    if !pipeline.source_failures.is_empty() {
        return Err(plan_errors(&pipeline.source_failures));
    }
    let counts = pipeline.counts;
    let report = PlanReport {
        campaign: campaign.name.clone(),
        description: campaign.description.clone(),
        file: campaign.path.display().to_string(),
        run_id,
        bot: crate::report::plan_bot_info(campaign),
        api_url: api_url.to_owned(),
        counts,
        invalid_reasons: pipeline.invalid_by_code.clone(),
        invalid_rows,
        rate: campaign.delivery.rate,
        estimated_seconds: counts.to_send as f64 / campaign.delivery.rate,
        sending_window: None,
        schedule: None,
        warnings: 0,
        sample,
        requests_digest: pipeline.requests_digest(),
    };
    Ok(PlanPass {
        report,
        only_not_found: pipeline.only_not_found(),
        request_hashes: pipeline.take_request_hashes().map(Arc::new),
    })
}
