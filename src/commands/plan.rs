use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::{eprint_diagnostics, print_err, print_out, ExitStatus};
use crate::api::wire::{BotEndpoint, WireRequest, REDACTED};
use crate::campaign::{self, Campaign};
use crate::cli::{GlobalArgs, PlanOptions, ReportFormat};
use crate::diagnostic::{Diagnostic, Location, Tally};
use crate::plan::{
    preview_run, suppression_set, InvalidRow, KeySet, Pipeline, PlanError, Planned, PriorLookup,
};
use crate::render::{RenderedRequest, Renderer, RunInfo};
use crate::report::{request_json, PlanReport};

/// A campaign ready to plan or send.
pub(crate) struct Prepared {
    pub campaign: Campaign,
    pub project: crate::campaign::Project,
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
    let api_url = project.api_url_in_effect(global.api_url.as_deref());
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
        project,
        api_url,
        warnings: tally.warnings,
    })
}

/// `--at TIME` (in the campaign's zone when it has no offset), or now.
pub(crate) fn resolve_at(
    at: Option<&str>,
    campaign: &Campaign,
) -> Result<chrono::DateTime<chrono::Utc>, ExitStatus> {
    let Some(text) = at else {
        return Ok(chrono::Utc::now());
    };
    let tz = campaign
        .schedule
        .as_ref()
        .map(|s| s.timezone())
        .unwrap_or(chrono_tz::UTC);
    crate::schedule::parse_when(text, tz).map_err(|e| {
        eprint_diagnostics(&[Diagnostic::error("usage", format!("--at `{text}`: {e}"))]);
        ExitStatus::Invalid
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

/// One line of the requests file: what [`request_json`] gives, serialized
/// straight from the request. Building that `Value` (a copy of the body, a map
/// per line) cost more than rendering the request; the test below keeps the
/// two byte for byte the same.
pub(crate) struct RequestLine<'a> {
    request: &'a RenderedRequest,
    /// The request's file as [`request_json`] shows it (made once per file).
    file: &'a str,
    api_url: &'a str,
    bot: &'a BotEndpoint,
}

impl serde::Serialize for RequestLine<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Headers(bool);
        impl serde::Serialize for Headers {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("Content-Type", "application/json")?;
                if self.0 {
                    map.serialize_entry("Authorization", &format_args!("Bearer {REDACTED}"))?;
                }
                map.end()
            }
        }
        let request = self.request;
        let v2 = match &request.wire {
            WireRequest::V2(v2) => Some(&v2.body),
            WireRequest::V1(_) => None,
        };
        let mut url = self.api_url.trim_end_matches('/').to_owned();
        url.push_str(&request.wire.path_and_query(self.bot, None));
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("file", self.file)?;
        map.serialize_entry("row", &request.origin.line)?;
        map.serialize_entry("key", &request.key)?;
        map.serialize_entry("method", "POST")?;
        map.serialize_entry("url", &url)?;
        map.serialize_entry("headers", &Headers(v2.is_some()))?;
        match v2 {
            Some(body) => map.serialize_entry("body", body)?,
            None => map.serialize_entry("body", &serde_json::Map::new())?,
        }
        map.end()
    }
}

/// The outcome of reading the whole audience once, without sending.
pub(crate) struct PlanPass {
    pub report: PlanReport,
    pub renderer: Arc<Renderer>,
    pub suppressed: Arc<KeySet>,
}

/// Reads and renders the whole audience. `requests` receives every request to send, as JSON lines
/// (for `--requests`). Errors that make the plan untrustworthy are printed and
/// returned as an exit status.
pub(crate) fn plan_pass(
    prepared: &Prepared,
    run_info: &RunInfo,
    sample_size: usize,
    prior: Option<Arc<dyn PriorLookup>>,
    mut requests: Option<&mut dyn Write>,
) -> Result<PlanPass, ExitStatus> {
    let campaign = &prepared.campaign;
    let renderer = match Renderer::new(campaign, run_info) {
        Ok(r) => Arc::new(r),
        Err(errors) => {
            let ds: Vec<Diagnostic> = errors
                .iter()
                .map(|e| Diagnostic::error("template-syntax", format!("{}: {}", e.name, e.message)))
                .collect();
            eprint_diagnostics(&ds);
            return Err(ExitStatus::Invalid);
        }
    };
    let suppressed = match suppression_set(campaign, &renderer) {
        Ok(s) => Arc::new(s),
        Err(errors) => {
            eprint_diagnostics(&plan_errors(&errors));
            print_err("the suppression list must be read whole before anyone can be messaged; fix the rows above\n");
            return Err(ExitStatus::Invalid);
        }
    };
    let bot = BotEndpoint {
        id: campaign.bot.id.clone(),
        tag_style: campaign.bot.tag_style,
    };
    let mut sample = Vec::new();
    let mut invalid_rows = Vec::new();
    let mut pipeline = Pipeline::new(campaign, renderer.clone(), suppressed.clone(), prior);
    let mut write_error = None;
    let mut file_shown: Option<(Arc<Path>, String)> = None;
    for planned in pipeline.by_ref() {
        match planned {
            Planned::Send(request) => {
                if sample.len() < sample_size {
                    sample.push(request_json(&request, &prepared.api_url, &bot));
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
                    let line = RequestLine {
                        request: &request,
                        file: shown,
                        api_url: &prepared.api_url,
                        bot: &bot,
                    };
                    let written = serde_json::to_writer(&mut *out, &line)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    if let Err(e) = written {
                        write_error = Some(e);
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
    if let Some(e) = write_error {
        eprint_diagnostics(&[Diagnostic::error(
            "unwritable-file",
            format!(
                "writing the requests file failed: {}",
                campaign::io_reason(&e)
            ),
        )]);
        return Err(ExitStatus::Invalid);
    }
    if !pipeline.source_failures.is_empty() {
        eprint_diagnostics(&plan_errors(&pipeline.source_failures));
        return Err(ExitStatus::Invalid);
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
        schedule: None,
        warnings: prepared.warnings,
        sample,
    };
    Ok(PlanPass {
        report,
        renderer,
        suppressed,
    })
}

pub(super) fn run(global: &GlobalArgs, path: &Path, options: &PlanOptions) -> ExitStatus {
    let prepared = match prepare(global, path) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let at = match resolve_at(options.at.as_deref(), &prepared.campaign) {
        Ok(t) => t,
        Err(status) => return status,
    };
    let preview = preview_run(&prepared.campaign, at);
    let run_info = preview.run.clone();
    let mut requests_file = match super::create_requests_file(options.requests.as_deref()) {
        Ok(f) => f,
        Err(status) => return status,
    };
    // What this run already handled, read without writing anything.
    let state_file = super::runstate::state_path(global, &prepared.project);
    super::runstate::note_missing_store(&state_file, global.quiet);
    let prior = match super::runstate::read_only_prior(&state_file, &run_info.id) {
        Ok(p) => p,
        Err(e) => return super::runstate::state_error(&state_file, &e),
    };
    let pass = plan_pass(
        &prepared,
        &run_info,
        options.sample,
        prior,
        requests_file.as_mut().map(|w| w as &mut dyn Write),
    );
    let pass = match pass {
        Ok(p) => p,
        Err(status) => return status,
    };
    if let Some(mut w) = requests_file {
        if let Err(e) = w.flush() {
            eprint_diagnostics(&[Diagnostic::error(
                "unwritable-file",
                format!(
                    "writing the requests file failed: {}",
                    campaign::io_reason(&e)
                ),
            )]);
            return ExitStatus::Invalid;
        }
    }
    let mut report = pass.report;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{V1Block, V1Send, V2Send};
    use crate::audience::Origin;

    #[test]
    fn request_lines_are_request_json_byte_for_byte() {
        let bot = BotEndpoint {
            id: "b 1/é".into(),
            tag_style: Default::default(),
        };
        let origin = Origin {
            file: Arc::from(Path::new("dir \"q\"\\/Hà Nội.csv")),
            line: 7,
        };
        let body = serde_json::json!({
            "customer_id": "C\"1\"\n",
            "messages": [{ "text": "Chào 🎉 <b>" }],
            "priority": ["phone"],
        });
        let serde_json::Value::Object(body) = body else {
            panic!("an object")
        };
        let requests = [
            WireRequest::V2(V2Send { body }),
            WireRequest::V1(V1Send {
                user_id: "u 1".into(),
                block: Some(V1Block::Name("Khuyến mãi".into())),
                tag: None,
                attributes: vec![("a&b".into(), "c=d".into())],
            }),
        ];
        for wire in requests {
            let request = RenderedRequest {
                key: "k\"ey".into(),
                origin: origin.clone(),
                wire,
            };
            for api_url in ["http://127.0.0.1:8787/", "https://api.smax.bot"] {
                let expected = serde_json::to_string(&request_json(&request, api_url, &bot));
                let line = RequestLine {
                    request: &request,
                    file: &origin.file.display().to_string(),
                    api_url,
                    bot: &bot,
                };
                assert_eq!(
                    serde_json::to_string(&line).expect("serializes"),
                    expected.expect("serializes")
                );
            }
        }
    }
}
