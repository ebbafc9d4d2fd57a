//! `run`: reads the flags, prepares every campaign, hands them to the library's
//! [`Runner`], and shows what it reports.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde::Serialize;

use super::{eprint_diagnostics, print_err, print_out, render_error, ExitStatus};
use crate::cli::{GlobalArgs, ReportFormat, RunArgs};
use crate::delivery::StopReason;
use crate::diagnostic::Diagnostic;
use crate::human::{human_duration, thousands};
use crate::plan::saved::{bound_files, changes, count_moves, SavedPlan};
use crate::plan::Selection;
use crate::report::RunReport;
use crate::run::{
    Ended, PlanBinding, Prepared, PreparedRun, Progress, ResumePolicy, RunEvent, RunOptions, Runner,
};

/// A run's report as `--format json` and `--report` show it: with its exit code.
#[derive(Serialize)]
struct ShownReport<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    exit_code: u8,
}

fn report_status(report: &RunReport) -> ExitStatus {
    if report.ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    }
}

pub(super) fn run(global: &GlobalArgs, args: &RunArgs) -> ExitStatus {
    let files = match &args.due {
        Some(dir) => match super::campaign_files(dir) {
            Ok(files) => files,
            Err(e) => {
                return super::usage_error(&format!(
                    "cannot list `{}`: {}",
                    dir.display(),
                    crate::human::io_reason(&e)
                ))
            }
        },
        None => args.campaigns.clone(),
    };
    let saved = match &args.plan {
        None => None,
        Some(path) => match SavedPlan::read(path) {
            Ok(plan) => Some((path.clone(), plan)),
            Err(reason) => {
                return super::usage_error(&format!(
                    "--plan `{}` cannot be used: {reason}",
                    path.display()
                ))
            }
        },
    };
    let files = match &saved {
        None => files,
        Some((_, plan)) => {
            let named = crate::campaign::normalize(&plan.campaign_file);
            match files.as_slice() {
                [] => vec![plan.campaign_file.clone()],
                [one] if crate::campaign::normalize(one) == named => files,
                _ => {
                    return super::usage_error(&format!(
                        "--plan sends the campaign its plan was made for (`{}`); name no other campaign file",
                        plan.campaign_file.display()
                    ))
                }
            }
        }
    };
    let options = match options(args, files.len()) {
        Ok(o) => o,
        Err(status) => return status,
    };
    let max_duration = match duration_flag("--max-duration", args.max_duration.as_deref()) {
        Ok(d) => d,
        Err(status) => return status,
    };

    // Everything is read and checked before anything is sent.
    let inputs = super::inputs(global);
    let mut status = ExitStatus::Success;
    let mut runs = Vec::new();
    // Every file is loaded before anything is printed: loading registers the
    // tokens a file names with the scrubber, so a later file's inline bot token
    // cannot leak through an earlier file's diagnostics.
    let loaded: Vec<_> = files
        .iter()
        .map(|file| Prepared::load(file, &inputs))
        .collect();
    for prepared in loaded {
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                status = status.worst(render_error(&e));
                continue;
            }
        };
        if !global.quiet {
            eprint_diagnostics(&prepared.warnings);
        }
        if args.due.is_some() && prepared.campaign.schedule.is_none() {
            // `--due` runs scheduled campaigns only; the others run when asked.
            continue;
        }
        let binding = match &saved {
            None => None,
            Some((path, plan)) => match check_plan(&prepared, path, plan) {
                Ok(binding) => Some(binding),
                Err(diagnostics) => {
                    eprint_diagnostics(&diagnostics);
                    return ExitStatus::Invalid;
                }
            },
        };
        match PreparedRun::new(prepared, args.options.at.as_deref()) {
            Ok(run) => runs.push(match binding {
                Some(binding) => run.bound_to(binding),
                None => run,
            }),
            Err(e) => status = status.worst(render_error(&e)),
        }
    }
    if runs.is_empty() {
        return status;
    }
    // A person at a terminal confirms what is about to be sent. CI never asks,
    // even where it gives the job a pseudo-terminal (`docker run -t`): nobody answers.
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let asked =
        !args.yes && !in_ci && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut shown = std::collections::HashSet::new();
    if asked {
        runs = confirmed(runs, &options, global.quiet, &mut shown);
        if runs.is_empty() {
            return status;
        }
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprint_diagnostics(&[Diagnostic::error("runtime", format!("cannot start: {e}"))]);
            return ExitStatus::Failed;
        }
    };
    let (events, received) = std::sync::mpsc::channel();
    let runner = Runner::new(options, events);
    let screen = Screen {
        quiet: global.quiet,
        format: args.options.format,
        several: runs.len() > 1,
        plan_shown: shown,
    };
    let shown = std::thread::spawn(move || screen.show(received));
    let ended = runtime.block_on(async {
        let stopper = runner.stopper();
        let signals = tokio::spawn({
            let stopper = stopper.clone();
            async move {
                super::shutdown_signal().await;
                print_err(
                    "\nstopping: no new recipients are taken; waiting for requests in flight…\n",
                );
                stopper.stop(StopReason::Interrupted);
            }
        });
        // One deadline for the whole invocation: CI's job limit does not reset per campaign.
        let deadline = max_duration.map(|d| {
            let stopper = stopper.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                stopper.stop(StopReason::TimeLimit);
            })
        });
        let ended = runner.run(runs).await;
        signals.abort();
        if let Some(deadline) = deadline {
            deadline.abort();
        }
        drop(runner);
        ended
    });
    let _ = shown.join();

    let mut reports = Vec::new();
    for result in ended {
        match result {
            Ok(Ended::Sent(report)) => {
                status = status.worst(report_status(&report));
                reports.push(*report);
            }
            Ok(Ended::NothingToSend {
                run_id,
                already_sent,
                held_out: 0,
            }) => print_out(&format!(
                "nothing to send: run {run_id} has handled every recipient ({} already sent or settled in this run)\n",
                thousands(already_sent)
            )),
            Ok(Ended::NothingToSend {
                run_id, held_out, ..
            }) => print_out(&format!(
                "nothing to send among the recipients selected: {} recipient(s) of run {run_id} are held out by --only/--limit and stay pending\n",
                thousands(held_out)
            )),
            Ok(Ended::NothingDue) => {}
            Err(e) => status = status.worst(render_error(&e)),
        }
    }
    write_reports(args.report.as_deref(), &reports, status);
    status
}

/// On a terminal: each campaign's plan (as the run will make it, read without
/// writing anything), then "send to N recipients of CAMPAIGN via BOT? [y/N]".
/// Only the campaigns answered `y` or `yes` go on; nothing of the others is sent
/// or recorded. A campaign with nothing to send now (nothing due, everyone
/// handled) or whose plan fails goes on unasked: its run says so itself.
fn confirmed(
    runs: Vec<PreparedRun>,
    options: &RunOptions,
    quiet: bool,
    shown: &mut std::collections::HashSet<String>,
) -> Vec<PreparedRun> {
    let mut kept = Vec::new();
    for run in runs {
        let campaign = &run.prepared.campaign;
        if campaign.schedule.is_some() {
            let store = crate::state::open_read_only(&run.prepared.state)
                .ok()
                .flatten();
            let due = crate::plan::due_at(campaign, run.at, store.as_deref());
            if !matches!(due, Some(crate::schedule::Due::Due(_))) {
                kept.push(run);
                continue;
            }
        }
        let planned = super::plan::read_only_plan(
            &run.prepared,
            run.at,
            0,
            None,
            options.policy,
            options.selection.clone(),
            false,
        );
        let Ok((pass, _)) = planned else {
            kept.push(run);
            continue;
        };
        let report = &pass.report;
        if report.counts.to_send == 0 {
            kept.push(run);
            continue;
        }
        // On stderr, with the question: stdout stays what --format asked for.
        if !quiet {
            print_err(&report.text());
            shown.insert(campaign.name.clone());
        }
        let bot = report.bot.name.as_deref().unwrap_or(&report.bot.id);
        print_err(&format!(
            "send to {} recipients of {} via {bot}? [y/N] ",
            thousands(report.counts.to_send),
            campaign.name
        ));
        let mut answer = String::new();
        let yes = std::io::stdin().read_line(&mut answer).is_ok()
            && matches!(answer.trim().to_lowercase().as_str(), "y" | "yes");
        if yes {
            kept.push(run);
        } else {
            print_out(&format!(
                "not sent: {} (nothing was sent or recorded)\n",
                campaign.name
            ));
        }
    }
    kept
}

/// `run --plan`: whether `prepared` is still what the plan was made from (the
/// campaign, its API, and every file by hash). Nothing has been recorded yet;
/// when anything differs, the diagnostics say what, and how the counts would move.
fn check_plan(
    prepared: &Prepared,
    path: &Path,
    plan: &SavedPlan,
) -> Result<PlanBinding, Vec<Diagnostic>> {
    let campaign = &prepared.campaign;
    let refuse = |what: String| {
        vec![Diagnostic::error(
            "plan-outdated",
            format!(
                "the plan `{}` no longer matches what it was made from; nothing was sent:{}{what}",
                path.display(),
                if what.starts_with('\n') { "" } else { " " }
            ),
        )
        .help(format!(
            "review the change and a new plan: smax-campaign plan {} --out {}",
            campaign.path.display(),
            path.display()
        ))]
    };
    if plan.campaign != campaign.name {
        return Err(refuse(format!(
            "it is for campaign `{}`, the file now names `{}`",
            plan.campaign, campaign.name
        )));
    }
    // The plan was written through the scrubber: compare the URL as it stored it
    // (a password in the URL is `***` there).
    if plan.api_url != crate::redact::scrub(&prepared.api_url) {
        return Err(refuse(format!(
            "it was made for the API at {}, this run would send to {}",
            plan.api_url, prepared.api_url
        )));
    }
    let now = bound_files(campaign, prepared.project_file()).map_err(|(file, e)| {
        refuse(format!(
            "`{}` cannot be read: {}",
            file.display(),
            crate::human::io_reason(&e)
        ))
    })?;
    let changes = changes(&plan.files, &now);
    if !changes.is_empty() {
        let mut what: Vec<String> = changes.iter().map(|c| format!("\n  - {c}")).collect();
        // What the change does: the plan as it would be made now.
        let replanned = super::plan::read_only_plan(
            prepared,
            chrono::Utc::now(),
            0,
            None,
            ResumePolicy::default(),
            Selection::default(),
            false,
        );
        match replanned {
            Ok((pass, _)) => {
                let moves = count_moves(&plan.counts, &pass.report.counts);
                what.push(if moves.is_empty() {
                    "\n  the counts would not move".into()
                } else {
                    format!("\n  counts would move: {}", moves.join("; "))
                });
            }
            Err(_) => what.push("\n  (the campaign cannot be planned as it is now)".into()),
        }
        return Err(refuse(what.concat()));
    }
    Ok(PlanBinding {
        file: path.to_path_buf(),
        run_id: plan.run_id.clone(),
        now: plan.now.clone(),
        requests_digest: plan.requests_digest.clone(),
    })
}

/// The runner's options from the flags.
fn options(args: &RunArgs, campaigns: usize) -> Result<RunOptions, ExitStatus> {
    if args.options.requests.is_some() && (campaigns > 1 || args.due.is_some()) {
        return Err(super::usage_error(
            "--requests writes the requests of one campaign; run each campaign with its own --requests FILE",
        ));
    }
    let selecting = args.limit.is_some() || !args.only.is_empty();
    if selecting && (campaigns > 1 || args.due.is_some()) {
        return Err(super::usage_error(
            "--limit and --only choose recipients of one campaign; name exactly one campaign file",
        ));
    }
    let only: std::collections::HashSet<String> = args
        .only
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if !args.only.is_empty() && only.is_empty() {
        return Err(super::usage_error("--only: name at least one audience key"));
    }
    Ok(RunOptions {
        policy: ResumePolicy {
            accept_changes: args.accept_changes,
            retry_failed: args.retry_failed,
            resend_unknown: args.resend_unknown,
        },
        new_state: args.new_state,
        fail_on_invalid: args.options.fail_on_invalid,
        wait_lock: duration_flag("--wait-lock", args.wait_lock.as_deref())?,
        requests: args.options.requests.clone(),
        retry_base: retry_base(),
        selection: Selection {
            only: (!only.is_empty()).then(|| std::sync::Arc::new(only)),
            limit: args.limit,
        },
    })
}

/// `--report FILE` and GitHub's step summary.
fn write_reports(path: Option<&Path>, reports: &[RunReport], status: ExitStatus) {
    if let Some(path) = path {
        let runs: Vec<ShownReport> = reports
            .iter()
            .map(|report| ShownReport {
                report,
                exit_code: report_status(report).code(),
            })
            .collect();
        let doc = serde_json::json!({ "runs": runs, "exit_code": status.code() });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        if let Err(e) = crate::redact::write_file(path, &text) {
            eprint_diagnostics(&[Diagnostic::error(
                "unwritable-file",
                format!(
                    "cannot write the report `{}`: {}",
                    path.display(),
                    crate::human::io_reason(&e)
                ),
            )]);
        }
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let md: String = reports.iter().map(RunReport::markdown).collect();
        if let Err(e) = crate::redact::append_file(Path::new(&summary), &md) {
            print_err(&format!(
                "warning: cannot append to GITHUB_STEP_SUMMARY: {}\n",
                crate::human::io_reason(&e)
            ));
        }
    }
}

/// The first retry delay (doubling per retry). `SMAX_RETRY_BASE_MS` tunes it,
/// e.g. to rehearse retry storms quickly against the sandbox.
fn retry_base() -> Duration {
    std::env::var("SMAX_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_millis(250))
}

/// `--wait-lock`, `--max-duration`: a duration, or a usage error (exit 2).
fn duration_flag(flag: &str, value: Option<&str>) -> Result<Option<Duration>, ExitStatus> {
    value
        .map(crate::schedule::parse_duration)
        .transpose()
        .map_err(|e| super::usage_error(&format!("{flag}: {e}")))
}

/// Shows the runner's events as they come: plans, notes, progress, summaries.
struct Screen {
    quiet: bool,
    format: ReportFormat,
    /// More than one campaign: progress lines name theirs.
    several: bool,
    /// Campaigns whose plan was shown when confirmation was asked: not again.
    plan_shown: std::collections::HashSet<String>,
}

impl Screen {
    fn show(self, events: Receiver<RunEvent>) {
        let text = self.format == ReportFormat::Text;
        let mut bars = Bars::new(self.quiet);
        for event in events {
            match event {
                RunEvent::Status { text: said, .. } if !self.quiet => {
                    bars.suspend(|| print_out(&format!("{said}\n")))
                }
                RunEvent::Note {
                    campaign,
                    text: said,
                } if !self.quiet => {
                    bars.suspend(|| print_err(&format!("{}{said}\n", self.prefix(&campaign))))
                }
                RunEvent::Alert {
                    campaign,
                    text: said,
                } => bars.suspend(|| print_err(&format!("{}{said}\n", self.prefix(&campaign)))),
                RunEvent::Planned(report)
                    if !self.quiet && text && !self.plan_shown.contains(&report.campaign) =>
                {
                    bars.suspend(|| print_out(&report.text()))
                }
                RunEvent::Sending(progress) => bars.start(&progress, self.several),
                RunEvent::Progress(progress) => bars.update(&progress, self.several),
                RunEvent::Problem { error, .. } => {
                    bars.suspend(|| {
                        render_error(&error);
                    });
                }
                RunEvent::Finished(report) => {
                    bars.finish(&report.campaign);
                    let shown = match self.format {
                        ReportFormat::Text => report.text(),
                        ReportFormat::Json => {
                            let doc = ShownReport {
                                report: &report,
                                exit_code: report_status(&report).code(),
                            };
                            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
                        }
                        ReportFormat::Markdown => report.markdown(),
                    };
                    bars.suspend(|| print_out(&shown));
                }
                _ => {}
            }
        }
    }

    fn prefix(&self, campaign: &str) -> String {
        if self.several && !campaign.is_empty() {
            format!("[{campaign}] ")
        } else {
            String::new()
        }
    }
}

/// Progress: one bar per sending campaign on a terminal; elsewhere a line every
/// five seconds per campaign (named when there are several).
struct Bars {
    quiet: bool,
    terminal: Option<indicatif::MultiProgress>,
    bars: std::collections::HashMap<String, indicatif::ProgressBar>,
    printed: std::collections::HashMap<String, Duration>,
}

const EVERY: Duration = Duration::from_secs(5);

impl Bars {
    fn new(quiet: bool) -> Bars {
        let terminal = (!quiet && std::io::stderr().is_terminal()).then(|| {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::term_like(
                Box::new(crate::redact::ScrubbedTerm::stderr()),
            ))
        });
        Bars {
            quiet,
            terminal,
            bars: Default::default(),
            printed: Default::default(),
        }
    }

    /// Prints around the bars, so that lines and bars do not tear each other.
    fn suspend(&self, print: impl FnOnce()) {
        match &self.terminal {
            Some(multi) => multi.suspend(print),
            None => print(),
        }
    }

    fn start(&mut self, progress: &Progress, several: bool) {
        let Some(multi) = &self.terminal else {
            self.printed
                .insert(progress.campaign.clone(), Duration::ZERO);
            return;
        };
        let bar = multi.add(indicatif::ProgressBar::new(progress.total));
        let name = if several {
            format!("{} ", progress.campaign)
        } else {
            String::new()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {name}[{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}} ETA {{eta}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.bars.insert(progress.campaign.clone(), bar);
        self.update(progress, several);
    }

    fn update(&mut self, p: &Progress, several: bool) {
        if self.quiet {
            return;
        }
        let rate = p.requests as f64 / p.elapsed.as_secs_f64().max(0.001);
        if let Some(bar) = self.bars.get(&p.campaign) {
            bar.set_position(p.done);
            bar.set_message(format!(
                "sent {} failed {} {rate:.1}/s",
                thousands(p.sent),
                thousands(p.failed),
            ));
            return;
        }
        let Some(last) = self.printed.get_mut(&p.campaign) else {
            return;
        };
        if p.elapsed < *last + EVERY {
            return;
        }
        *last = p.elapsed;
        let eta = if rate > 0.0 {
            human_duration(p.total.saturating_sub(p.done) as f64 / rate)
        } else {
            "unknown".into()
        };
        let name = if several {
            format!("[{}] ", p.campaign)
        } else {
            String::new()
        };
        print_err(&format!(
            "{name}[{}] {}/{} done: sent {}, failed {}, {rate:.1}/s, ETA {eta}\n",
            human_duration(p.elapsed.as_secs_f64()),
            thousands(p.done),
            thousands(p.total),
            thousands(p.sent),
            thousands(p.failed),
        ));
    }

    fn finish(&mut self, campaign: &str) {
        if let Some(bar) = self.bars.remove(campaign) {
            bar.finish_and_clear();
            if let Some(multi) = &self.terminal {
                multi.remove(&bar);
            }
        }
        self.printed.remove(campaign);
    }
}
