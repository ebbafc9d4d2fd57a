use std::io::{BufWriter, Write};
use std::path::Path;

use super::{eprint_diagnostics, print_err, print_out, ExitStatus};
use crate::api::wire::BotEndpoint;
use crate::campaign::{self, Campaign, DEFAULT_API_URL};
use crate::cli::{GlobalArgs, PlanOptions, ReportFormat};
use crate::diagnostic::{Diagnostic, Location, Tally};
use crate::plan::{preview_run, suppression_set, InvalidRow, Pipeline, PlanError, Planned};
use crate::render::Renderer;
use crate::report::{request_json, PlanReport};

/// A campaign ready to plan or send.
pub(crate) struct Prepared {
    pub campaign: Campaign,
    pub api_url: String,
    pub warnings: usize,
}

/// Loads the project and campaign, printing diagnostics; warnings go to stderr
/// (unless quiet) and do not stop anything.
pub(crate) fn prepare(global: &GlobalArgs, path: &Path) -> Result<Prepared, ExitStatus> {
    let project = match campaign::project_for(path, global.config.as_deref()) {
        Ok(p) => p,
        Err(errors) => {
            eprint_diagnostics(&errors);
            return Err(ExitStatus::Invalid);
        }
    };
    let (loaded, diagnostics) = campaign::load_campaign(path, &project);
    let tally = Tally::of(&diagnostics);
    if tally.errors > 0 || !global.quiet {
        eprint_diagnostics(&diagnostics);
    }
    let Some(campaign) = loaded else {
        print_err(&format!(
            "{}: {} error(s); run `smax-campaign validate {}` after fixing them\n",
            path.display(),
            tally.errors,
            path.display()
        ));
        return Err(ExitStatus::Invalid);
    };
    let api_url = global
        .api_url
        .clone()
        .or_else(|| project.api_url().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    if reqwest::Url::parse(&api_url).is_err() {
        eprint_diagnostics(&[Diagnostic::error(
            "invalid-api-url",
            format!("`{api_url}` is not a URL"),
        )
        .help("e.g. --api-url http://127.0.0.1:8787")]);
        return Err(ExitStatus::Invalid);
    }
    Ok(Prepared {
        campaign,
        api_url,
        warnings: tally.warnings,
    })
}

pub(crate) fn plan_errors(errors: &[PlanError]) -> Vec<Diagnostic> {
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

pub(super) fn run(global: &GlobalArgs, path: &Path, options: &PlanOptions) -> ExitStatus {
    let prepared = match prepare(global, path) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let campaign = &prepared.campaign;
    let run_info = preview_run(campaign, None);
    let renderer = match Renderer::new(campaign, &run_info) {
        Ok(r) => r,
        Err(errors) => {
            let ds: Vec<Diagnostic> = errors
                .iter()
                .map(|e| Diagnostic::error("template-syntax", format!("{}: {}", e.name, e.message)))
                .collect();
            eprint_diagnostics(&ds);
            return ExitStatus::Invalid;
        }
    };
    let suppressed = match suppression_set(campaign, &renderer) {
        Ok(s) => s,
        Err(errors) => {
            eprint_diagnostics(&plan_errors(&errors));
            print_err("the suppression list must be read whole before anyone can be messaged; fix the rows above\n");
            return ExitStatus::Invalid;
        }
    };
    let bot = BotEndpoint {
        id: campaign.bot.id.clone(),
        tag_style: campaign.bot.tag_style,
    };
    let mut requests_file = match &options.requests {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(BufWriter::new(f)),
            Err(e) => {
                eprint_diagnostics(&[Diagnostic::error(
                    "unwritable-file",
                    format!(
                        "cannot write `{}`: {}",
                        p.display(),
                        campaign::io_reason(&e)
                    ),
                )]);
                return ExitStatus::Invalid;
            }
        },
        None => None,
    };
    let mut sample = Vec::new();
    let mut invalid_rows = Vec::new();
    let mut pipeline = Pipeline::new(campaign, &renderer, suppressed, None);
    let mut write_error = None;
    for planned in pipeline.by_ref() {
        match planned {
            Planned::Send(request) => {
                if sample.len() < options.sample {
                    sample.push(request_json(&request, &prepared.api_url, &bot));
                }
                if let Some(w) = requests_file.as_mut() {
                    let line = request_json(&request, &prepared.api_url, &bot);
                    if let Err(e) = serde_json::to_writer(&mut *w, &line)
                        .map_err(std::io::Error::from)
                        .and_then(|_| w.write_all(b"\n"))
                    {
                        write_error.get_or_insert(e);
                    }
                }
            }
            Planned::Invalid(origin, reason) if invalid_rows.len() < 1000 => {
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
    if let Some(w) = requests_file.as_mut() {
        if let Err(e) = w.flush() {
            write_error.get_or_insert(e);
        }
    }
    if let (Some(e), Some(p)) = (write_error, &options.requests) {
        eprint_diagnostics(&[Diagnostic::error(
            "unwritable-file",
            format!(
                "writing `{}` failed: {}",
                p.display(),
                campaign::io_reason(&e)
            ),
        )]);
        return ExitStatus::Invalid;
    }
    if !pipeline.source_failures.is_empty() {
        eprint_diagnostics(&plan_errors(&pipeline.source_failures));
        return ExitStatus::Invalid;
    }
    let counts = pipeline.counts;
    let report = PlanReport {
        campaign: campaign.name.clone(),
        description: campaign.description.clone(),
        file: campaign.path.display().to_string(),
        run_id: run_info.id.clone(),
        bot: crate::report::plan_bot_info(campaign),
        api_url: prepared.api_url.clone(),
        counts,
        invalid_reasons: pipeline.invalid_by_code.clone(),
        invalid_rows,
        rate: campaign.delivery.rate,
        estimated_seconds: counts.to_send as f64 / campaign.delivery.rate,
        sending_window: None,
        warnings: prepared.warnings,
        sample,
    };
    print_out(&match options.format {
        ReportFormat::Text => report.text(),
        ReportFormat::Json => report.json(),
        ReportFormat::Markdown => report.markdown(),
    });
    if options.fail_on_invalid && counts.invalid > 0 {
        ExitStatus::Failed
    } else {
        ExitStatus::Success
    }
}
