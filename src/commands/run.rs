use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::plan::{plan_pass, prepare, resolve_at, Prepared};
use super::runstate::{
    fingerprint, state_error, state_path, take_locks, ResumeFilter, StateJournal,
};
use super::{eprint_diagnostics, print_err, print_out, ExitStatus};
use crate::api::wire::BotEndpoint;
use crate::api::{is_real_api, BotAuth, HttpTransport, Secret, PLATFORM_RATE_LIMIT};
use crate::campaign::{MaxFailures, TokenSource};
use crate::cli::{GlobalArgs, ReportFormat, RunArgs};
use crate::delivery::{
    self, Budgets, DeliveryResult, Journal, JournalHandle, NullJournal, Settings, Stats,
    StopReason, Stopper, Target,
};
use crate::diagnostic::Diagnostic;
use crate::plan::{run_id, Counts, Pipeline, Planned};
use crate::render::RunInfo;
use crate::report::{human_duration, thousands};
use crate::state::{
    Begin, FingerprintChange, RunStart, RunStatus, SqliteStore, StateError, StateStore,
};

/// One campaign's run, as the JSON report and the step summary show it.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub campaign: String,
    pub file: String,
    pub run_id: String,
    pub api_url: String,
    pub started: String,
    pub plan: Counts,
    #[serde(flatten)]
    pub delivery: DeliveryResult,
    /// Invalid recipients of the plan (not sent).
    pub invalid: u64,
    /// Recipients of this run not reached by this invocation; the next `run` takes them up.
    pub pending: u64,
    pub achieved_rate: f64,
    pub exit_code: u8,
}

pub(super) fn run(global: &GlobalArgs, args: &RunArgs) -> ExitStatus {
    let campaigns = match &args.due {
        Some(dir) => match super::campaign_files(dir) {
            Ok(files) => files,
            Err(e) => {
                return super::usage_error(&format!(
                    "cannot list `{}`: {}",
                    dir.display(),
                    crate::campaign::io_reason(&e)
                ))
            }
        },
        None => args.campaigns.clone(),
    };
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
    runtime.block_on(run_all(global, args, &campaigns))
}

async fn run_all(global: &GlobalArgs, args: &RunArgs, campaigns: &[PathBuf]) -> ExitStatus {
    let budgets = Budgets::default();
    let interrupt = Stopper::default();
    let signals = tokio::spawn(watch_signals(interrupt.clone()));
    let max_duration = match duration_flag("--max-duration", args.max_duration.as_deref()) {
        Ok(d) => d,
        Err(status) => return status,
    };
    // One deadline for the whole invocation: CI's job limit does not reset per campaign.
    let deadline = max_duration.map(|d| {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            interrupt.stop(StopReason::TimeLimit);
        })
    });
    let mut status = ExitStatus::Success;
    let mut reports = Vec::new();
    for (i, path) in campaigns.iter().enumerate() {
        if let Some(reason) = interrupt.reason() {
            if !global.quiet {
                print_err(&format!(
                    "{} campaign(s) not started: {reason}\n",
                    campaigns.len() - i
                ));
            }
            break;
        }
        let (s, report) = run_one(global, args, path, &budgets, &interrupt).await;
        status = status.worst(s);
        if let Some(r) = report {
            reports.push(r);
        }
    }
    signals.abort();
    if let Some(deadline) = deadline {
        deadline.abort();
    }
    if let Some(path) = &args.report {
        let doc = serde_json::json!({ "runs": reports, "exit_code": status.code() });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        if let Err(e) = crate::redact::write_file(path, &text) {
            eprint_diagnostics(&[Diagnostic::error(
                "unwritable-file",
                format!(
                    "cannot write the report `{}`: {}",
                    path.display(),
                    crate::campaign::io_reason(&e)
                ),
            )]);
        }
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let md: String = reports.iter().map(markdown_summary).collect();
        append(Path::new(&summary), &md);
    }
    status
}

fn append(path: &Path, text: &str) {
    let result = crate::redact::append_file(path, text);
    if let Err(e) = result {
        print_err(&format!(
            "warning: cannot append to GITHUB_STEP_SUMMARY: {}\n",
            crate::campaign::io_reason(&e)
        ));
    }
}

async fn watch_signals(stopper: Stopper) {
    super::shutdown_signal().await;
    print_err("\nstopping: no new recipients are taken; waiting for requests in flight…\n");
    stopper.stop(delivery::StopReason::Interrupted);
}

fn read_token(source: &TokenSource, bot_label: &str) -> Result<Secret, Diagnostic> {
    let token = match source {
        TokenSource::Env(var) => std::env::var(var).map_err(|_| {
            Diagnostic::error(
                "missing-token",
                format!("the environment variable `{var}` (bot `{bot_label}`'s token) is not set"),
            )
            .help(format!(
                "export {var}=… (in CI: a repository secret mapped to {var})"
            ))
        })?,
        TokenSource::File(path) => crate::redact::read_secret_file(path).map_err(|e| {
            Diagnostic::error(
                "missing-token",
                format!(
                    "cannot read the token file `{}`: {}",
                    path.display(),
                    crate::campaign::io_reason(&e)
                ),
            )
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(Diagnostic::error(
            "missing-token",
            format!("bot `{bot_label}`'s token is empty"),
        ));
    }
    crate::redact::register(&token);
    Ok(Secret::new(token))
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

async fn run_one(
    global: &GlobalArgs,
    args: &RunArgs,
    path: &Path,
    budgets: &Budgets,
    interrupt: &Stopper,
) -> (ExitStatus, Option<RunReport>) {
    let prepared = match prepare(global, path) {
        Ok(p) => p,
        Err(status) => return (status, None),
    };
    let campaign = &prepared.campaign;
    if args.due.is_some() && campaign.schedule.is_none() {
        // `--due` runs scheduled campaigns only; the others run when asked.
        return (ExitStatus::Success, None);
    }
    let rate = campaign.delivery.rate;
    if rate > PLATFORM_RATE_LIMIT && is_real_api(&prepared.api_url) {
        eprint_diagnostics(&[Diagnostic::error(
            "rate-above-platform-limit",
            format!("{}: rate {rate}/s is above the platform's limit of {PLATFORM_RATE_LIMIT} requests per second per bot", path.display()),
        )
        .help(format!("lower `delivery.rate` to {PLATFORM_RATE_LIMIT} or less; higher rates are allowed only against another --api-url (e.g. the sandbox)"))]);
        return (ExitStatus::Invalid, None);
    }
    let token = match read_token(&campaign.bot.token, campaign.bot.label()) {
        Ok(t) => t,
        Err(d) => {
            eprint_diagnostics(&[d]);
            return (ExitStatus::Invalid, None);
        }
    };
    let at = match resolve_at(args.options.at.as_deref(), campaign) {
        Ok(t) => t,
        Err(status) => return (status, None),
    };
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // The state store, the run this invocation acts on, and its locks.
    let state_file = state_path(global, &prepared.project);
    let stateless = state_file.as_os_str() == "none";
    let mut store = if stateless {
        None
    } else if args.new_state {
        match SqliteStore::create(&state_file) {
            Ok((s, created)) => {
                if created && !global.quiet {
                    print_err(&format!(
                        "created a new state store at {} (--new-state)\n",
                        state_file.display()
                    ));
                }
                Some(s)
            }
            Err(e) => return (state_error(&state_file, &e), None),
        }
    } else {
        match SqliteStore::open(&state_file) {
            Ok(s) => Some(s),
            Err(e) => return (state_error(&state_file, &e), None),
        }
    };
    let run_info = match current_run(campaign, at, store.as_mut(), global.quiet) {
        Ok(Some(info)) => info,
        Ok(None) => return (ExitStatus::Success, None),
        Err(e) => return (state_error(&state_file, &e), None),
    };
    let wait = match duration_flag("--wait-lock", args.wait_lock.as_deref()) {
        Ok(d) => d,
        Err(status) => return (status, None),
    };
    let _locks = match &store {
        None => None,
        Some(_) => match take_locks(&state_file, &run_info.id, &campaign.bot.id, wait) {
            Ok(l) => Some(l),
            Err(status) => return (status, None),
        },
    };
    let filter = match store.as_mut() {
        None => None,
        Some(store) => match resume(store, &run_info, campaign, args) {
            Ok(f) => Some(f),
            Err(ResumeRefused::Changed) => return (ExitStatus::Invalid, None),
            Err(ResumeRefused::State(e)) => return (state_error(&state_file, &e), None),
        },
    };

    // First pass: the whole plan, before anything is sent.
    let mut requests_file = match super::create_requests_file(args.options.requests.as_deref()) {
        Ok(f) => f,
        Err(status) => return (status, None),
    };
    let pass = tokio::task::block_in_place(|| {
        plan_pass(
            &prepared,
            &run_info,
            0,
            filter.clone(),
            requests_file.as_mut().map(|w| w as &mut dyn std::io::Write),
        )
    });
    let pass = match pass {
        Ok(p) => p,
        Err(status) => return (status, None),
    };
    if let Some(mut w) = requests_file {
        use std::io::Write;
        let _ = w.flush();
    }
    let text_output = args.options.format == ReportFormat::Text;
    if !global.quiet && text_output {
        print_out(&pass.report.text());
    }
    let counts = &pass.report.counts;
    if let Some(store) = store.as_mut() {
        if let Err(e) = store.record_plan(&run_info.id, counts.rendered(), counts.invalid) {
            return (state_error(&state_file, &e), None);
        }
    }
    let max_invalid = if args.options.fail_on_invalid {
        MaxFailures::Count(0)
    } else {
        campaign.delivery.max_invalid
    };
    if max_invalid.exceeded_by(counts.invalid, counts.rendered()) {
        eprint_diagnostics(&[invalid_refusal(&pass.report, max_invalid)]);
        // Not done: a scheduled occurrence stays due until its sending has finished.
        if let Some(store) = store.as_mut() {
            report_close(
                &state_file,
                close_run(store, &run_info.id, RunStatus::Aborted),
            );
        }
        return (ExitStatus::Failed, None);
    }
    if counts.to_send == 0 {
        if let Some(store) = store.as_mut() {
            report_close(
                &state_file,
                close_run(store, &run_info.id, RunStatus::Completed),
            );
        }
        print_out(&format!(
            "nothing to send: run {} has handled every recipient ({} already sent or settled in this run)\n",
            run_info.id,
            thousands(counts.already_sent)
        ));
        return (ExitStatus::Success, None);
    }

    let journal: Box<dyn Journal> = match store {
        Some(store) => Box::new(StateJournal {
            store,
            run_id: run_info.id.clone(),
        }),
        None => Box::new(NullJournal),
    };
    let (journal, journal_thread) = match JournalHandle::start(journal) {
        Ok(j) => j,
        Err(e) => {
            eprint_diagnostics(&[Diagnostic::error(
                "runtime",
                format!("cannot start the state writer: {e}"),
            )]);
            return (ExitStatus::Failed, None);
        }
    };
    let stats = Arc::new(Stats::default());
    let stopper = Stopper::default();
    let forward = {
        let (interrupt, stopper) = (interrupt.clone(), stopper.clone());
        tokio::spawn(async move {
            interrupt.stopped().await;
            if let Some(reason) = interrupt.reason() {
                stopper.stop(reason);
            }
        })
    };

    let concurrency = campaign.delivery.concurrency as usize;
    let transport =
        match HttpTransport::new(&prepared.api_url, campaign.delivery.timeout, concurrency) {
            Ok(t) => t,
            Err(e) => {
                eprint_diagnostics(&[Diagnostic::error("http-client", e)]);
                return (ExitStatus::Failed, None);
            }
        };
    let target = Target {
        transport: Arc::new(transport),
        bot: Arc::new(BotAuth {
            endpoint: BotEndpoint {
                id: campaign.bot.id.clone(),
                tag_style: campaign.bot.tag_style,
            },
            api: campaign.bot.api,
            token,
        }),
        budget: budgets.for_bot(&campaign.bot.id, rate),
        gate: send_window_gate(campaign, at),
    };
    let settings = Settings {
        concurrency,
        retries: campaign.delivery.retries,
        retry_unknown: campaign.delivery.retry_unknown,
        max_failures: campaign.delivery.max_failures,
        backoff: retry_base(),
        drain: campaign.delivery.timeout + Duration::from_secs(5),
    };

    // Second pass: the same pipeline feeds the senders.
    let (tx, rx) = mpsc::channel(concurrency * 4);
    let producer = {
        let campaign = campaign.clone();
        let renderer = pass.renderer.clone();
        let suppressed = pass.suppressed;
        let planned_rows = pass.report.counts.read;
        std::thread::spawn(move || -> Result<(), Vec<Diagnostic>> {
            let mut pipeline = Pipeline::new(&campaign, renderer, suppressed, filter);
            for planned in pipeline.by_ref() {
                if let Planned::Send(request) = planned {
                    if tx.blocking_send(request).is_err() {
                        // Delivery stopped taking recipients; the rest stays pending.
                        return Ok(());
                    }
                }
            }
            // The first pass read the sources whole; a failure now, or a different
            // number of rows (a file cut short or replaced mid-run), means part of the
            // audience was never offered: that must not pass for a completed run.
            if !pipeline.source_failures.is_empty() {
                return Err(super::plan::plan_errors(&pipeline.source_failures));
            }
            if pipeline.counts.read != planned_rows {
                return Err(vec![Diagnostic::error(
                    "audience-changed",
                    format!(
                        "the audience changed while it was being sent: the plan read {} rows, sending read {}",
                        thousands(planned_rows),
                        thousands(pipeline.counts.read)
                    ),
                )]);
            }
            Ok(())
        })
    };

    let total = pass.report.counts.to_send;
    let progress = tokio::spawn(show_progress(stats.clone(), total, global.quiet));
    let result = delivery::deliver(
        rx,
        target,
        settings,
        journal,
        stopper.clone(),
        stats.clone(),
    )
    .await;
    progress.abort();
    let _ = progress.await;
    forward.abort();
    // The producer's problems are diagnostics already; a panic gets one.
    let audience_failure = match producer.join() {
        Ok(result) => result.err(),
        Err(_) => Some(vec![Diagnostic::error(
            "audience-failed",
            "the audience reader crashed",
        )]),
    };
    let audience_failed = audience_failure.is_some();
    for d in audience_failure.into_iter().flatten() {
        eprint_diagnostics(&[d.help(
            "the run stopped; recipients not reached are still pending: fix the source and run again to resume",
        )]);
    }
    let journal_lost = journal_thread.join().is_err();
    if journal_lost {
        eprint_diagnostics(&[Diagnostic::error(
            "state",
            "the state writer crashed; outcomes of the last requests may be unrecorded and read as unknown",
        )]);
    }

    let failed = result.rejected + result.failed + result.unknown > 0;
    let aborted =
        audience_failed || journal_lost || result.stopped.as_ref().is_some_and(|r| !r.is_pause());
    let run_status = match &result.stopped {
        _ if audience_failed || journal_lost => RunStatus::Aborted,
        None => RunStatus::Completed,
        Some(StopReason::Interrupted | StopReason::WindowClosed | StopReason::TimeLimit) => {
            RunStatus::Interrupted
        }
        Some(_) => RunStatus::Aborted,
    };
    let closed = if stateless {
        Ok(())
    } else {
        SqliteStore::open(&state_file).and_then(|mut s| close_run(&mut s, &run_info.id, run_status))
    };
    let close_failed = closed.is_err();
    report_close(&state_file, closed);
    let status = if failed || aborted || close_failed {
        ExitStatus::Failed
    } else {
        ExitStatus::Success
    };
    let pending = pass.report.counts.to_send.saturating_sub(result.settled());
    if text_output {
        print_out(&summary_text(
            &prepared,
            &result,
            &pass.report.counts,
            pending,
        ));
    }
    let report = RunReport {
        invalid: pass.report.counts.invalid,
        pending,
        campaign: campaign.name.clone(),
        file: campaign.path.display().to_string(),
        run_id: run_info.id,
        api_url: prepared.api_url.clone(),
        started,
        plan: pass.report.counts,
        achieved_rate: result.achieved_rate(),
        delivery: result,
        exit_code: status.code(),
    };
    match args.options.format {
        ReportFormat::Json => {
            print_out(&(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"))
        }
        ReportFormat::Markdown => print_out(&markdown_summary(&report)),
        ReportFormat::Text => {}
    }
    (status, Some(report))
}

/// Records how the run ended and checkpoints the WAL, so that the database file
/// alone is complete (CI caches may carry only `state.db`).
fn close_run(store: &mut SqliteStore, run_id: &str, status: RunStatus) -> Result<(), StateError> {
    store.finish_run(run_id, status)?;
    if let Err(e) = store.checkpoint() {
        // Every record is committed; only the copy into the main file waits for
        // the next run (or the last connection to close).
        print_err(&format!(
            "warning: could not fold the write-ahead log into {} ({e}); keep the whole folder, `-wal` included\n",
            store.path().display()
        ));
    }
    Ok(())
}

fn report_close(state_file: &Path, closed: Result<(), StateError>) {
    if let Err(e) = closed {
        eprint_diagnostics(&[Diagnostic::error(
            "state",
            format!("could not record the end of the run: {e}"),
        )
        .help(format!(
            "every delivery was recorded as it happened; the run's own status in {} may read as running or interrupted",
            state_file.display()
        ))]);
    }
}

/// Shown when `max_invalid` is exceeded: nothing was sent, and why each row is invalid.
fn invalid_refusal(report: &crate::report::PlanReport, allowed: MaxFailures) -> Diagnostic {
    let allowed = match allowed {
        MaxFailures::Count(n) => format!("{n}"),
        MaxFailures::Share(s) => format!("{}%", s * 100.0),
    };
    Diagnostic::error(
        "too-many-invalid",
        format!(
            "{} recipient(s) are invalid, more than delivery.max_invalid ({allowed}) allows; nothing was sent\n{}",
            thousands(report.counts.invalid),
            report.invalid_lines().trim_end()
        ),
    )
    .help(
        "fix the rows or templates, or raise `delivery.max_invalid` (e.g. `3` or `2%`) to send to the valid ones",
    )
}

/// `--wait-lock`, `--max-duration`: a duration, or a usage error (exit 2).
fn duration_flag(flag: &str, value: Option<&str>) -> Result<Option<Duration>, ExitStatus> {
    value
        .map(crate::schedule::parse_duration)
        .transpose()
        .map_err(|e| super::usage_error(&format!("{flag}: {e}")))
}

async fn show_progress(stats: Arc<Stats>, total: u64, quiet: bool) {
    use std::io::IsTerminal;
    if quiet {
        return;
    }
    let started = std::time::Instant::now();
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        struct Clear(indicatif::ProgressBar);
        impl Drop for Clear {
            fn drop(&mut self) {
                self.0.finish_and_clear();
            }
        }
        let bar = Clear(bar);
        loop {
            let done = stats.finished() + stats.not_sent.load(Ordering::Relaxed);
            bar.0.set_position(done);
            let elapsed = started.elapsed().as_secs_f64().max(0.001);
            bar.0.set_message(format!(
                "sent {} failed {} {:.1}/s",
                thousands(stats.sent.load(Ordering::Relaxed)),
                thousands(stats.failures()),
                stats.requests.load(Ordering::Relaxed) as f64 / elapsed
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tick.tick().await;
            let elapsed = started.elapsed().as_secs_f64().max(0.001);
            let done = stats.finished();
            let rate = stats.requests.load(Ordering::Relaxed) as f64 / elapsed;
            let eta = if rate > 0.0 {
                human_duration(total.saturating_sub(done) as f64 / rate)
            } else {
                "unknown".into()
            };
            print_err(&format!(
                "[{}] {}/{} done: sent {}, failed {}, {:.1}/s, ETA {}\n",
                human_duration(elapsed),
                thousands(done),
                thousands(total),
                thousands(stats.sent.load(Ordering::Relaxed)),
                thousands(stats.failures()),
                rate,
                eta
            ));
        }
    }
}

fn summary_text(prepared: &Prepared, r: &DeliveryResult, plan: &Counts, pending: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let name = &prepared.campaign.name;
    let audience = plan.rendered();
    let share = |n: u64, of: u64| {
        crate::report::percent(n, of)
            .map(|p| format!("  {p:>5.1}%"))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "\nRun {name}: {} in {}",
        if r.stopped.is_some() {
            "stopped"
        } else {
            "finished"
        },
        human_duration(r.seconds)
    );
    for (label, n) in [
        ("sent", r.sent),
        ("rejected", r.rejected),
        ("failed", r.failed),
        ("unknown", r.unknown),
        ("invalid", plan.invalid),
        ("pending", pending),
    ] {
        let _ = writeln!(
            out,
            "  {label:<10}{:>10}{}",
            thousands(n),
            share(n, audience)
        );
    }
    if plan.already_sent > 0 {
        let _ = writeln!(
            out,
            "  ({} of the audience of {} were settled by earlier attempts of this run)",
            thousands(plan.already_sent),
            thousands(audience)
        );
    }
    let _ = writeln!(
        out,
        "  requests {} (429s: {}), achieved {:.1}/s",
        thousands(r.requests),
        thousands(r.rate_limited),
        r.achieved_rate()
    );
    if !r.top_failures.is_empty() {
        let _ = writeln!(out, "  most frequent failures:");
        for (text, n) in &r.top_failures {
            let _ = writeln!(out, "    {}× {text}", thousands(*n));
        }
    }
    if let Some(reason) = &r.stopped {
        let _ = writeln!(out, "  stopped: {reason}");
    }
    if r.unknown > 0 {
        let _ = writeln!(out, "  {} recipient(s) may or may not have received the message; they are not resent unless you pass --resend-unknown", thousands(r.unknown));
    }
    out
}

fn markdown_summary(r: &RunReport) -> String {
    use std::fmt::Write;
    let d = &r.delivery;
    let mut out = String::new();
    let _ = writeln!(out, "### Run `{}`\n", r.run_id);
    let _ = writeln!(out, "| outcome | count |\n|---|---:|");
    for (label, n) in [
        ("sent", d.sent),
        ("rejected", d.rejected),
        ("failed", d.failed),
        ("unknown", d.unknown),
        ("invalid", r.invalid),
        ("pending", r.pending),
    ] {
        let _ = writeln!(out, "| {label} | {} |", thousands(n));
    }
    let _ = writeln!(
        out,
        "\n{} requests in {} ({:.1}/s), 429s: {}",
        thousands(d.requests),
        human_duration(d.seconds),
        r.achieved_rate,
        d.rate_limited
    );
    if let Some(reason) = &d.stopped {
        let _ = writeln!(out, "\n**Stopped:** {reason}");
    }
    if !d.top_failures.is_empty() {
        let _ = writeln!(out, "\n| failure | count |\n|---|---:|");
        for (text, n) in &d.top_failures {
            let _ = writeln!(
                out,
                "| {} | {} |",
                crate::report::md_cell(text),
                thousands(*n)
            );
        }
    }
    out.push('\n');
    out
}

enum ResumeRefused {
    Changed,
    State(StateError),
}

/// Opens (or reopens) the run in the store: refuses a changed message unless
/// --accept-changes, settles requests left in flight by a crash, and returns
/// the resume filter built from what the run already recorded.
fn resume(
    store: &mut SqliteStore,
    run_info: &RunInfo,
    campaign: &crate::campaign::Campaign,
    args: &RunArgs,
) -> Result<Arc<dyn crate::plan::PriorLookup>, ResumeRefused> {
    let start = RunStart {
        run_id: run_info.id.clone(),
        campaign: campaign.name.clone(),
        occurrence: run_info.occurrence.clone(),
        fingerprint: fingerprint(campaign),
    };
    match store.begin_run(&start).map_err(ResumeRefused::State)? {
        Begin::New => {}
        Begin::Resumed { changed, .. } if changed.is_empty() => {}
        Begin::Resumed { changed, .. } => {
            if !args.accept_changes {
                explain_changes(&run_info.id, &changed);
                return Err(ResumeRefused::Changed);
            }
            store
                .accept_fingerprint(&run_info.id, &start.fingerprint)
                .map_err(ResumeRefused::State)?;
        }
    }
    let settled = store
        .settle_in_flight(&run_info.id)
        .map_err(ResumeRefused::State)?;
    if settled > 0 {
        print_err(&format!(
            "{settled} recipient(s) were in flight when an earlier attempt of this run stopped; they are now `unknown` and are not resent unless you pass --resend-unknown\n"
        ));
    }
    let prior = store.prior(&run_info.id).map_err(ResumeRefused::State)?;
    Ok(Arc::new(ResumeFilter {
        prior,
        retry_failed: args.retry_failed,
        resend_unknown: args.resend_unknown,
    }))
}

fn explain_changes(run_id: &str, changed: &[FingerprintChange]) {
    use std::fmt::Write;
    let mut message = format!(
        "run `{run_id}` was started with a different message; resuming it would send a mix\n"
    );
    for c in changed {
        let show = |s: &str| {
            if s.is_empty() {
                "(none)".to_string()
            } else {
                s.replace('\n', " ")
            }
        };
        let _ = writeln!(message, "  {}: was {}", c.part, show(&c.old));
        let _ = writeln!(
            message,
            "  {}  now {}",
            " ".repeat(c.part.len()),
            show(&c.new)
        );
    }
    eprint_diagnostics(&[Diagnostic::error("changed-since-start", message.trim_end().to_string()).help(
        "to resume anyway with the new version, pass --accept-changes; to start afresh, rename the campaign (a new name is a new run)",
    )]);
}

/// The run `run CAMPAIGN` acts on: the campaign's one run, or for a scheduled
/// campaign the latest occurrence due at `at` within `catch_up`. `None` when
/// nothing is due (said on stdout); a missed occurrence is recorded as missed.
fn current_run(
    campaign: &crate::campaign::Campaign,
    at: chrono::DateTime<chrono::Utc>,
    mut store: Option<&mut SqliteStore>,
    quiet: bool,
) -> Result<Option<RunInfo>, StateError> {
    use crate::schedule::Due;
    let Some(schedule) = &campaign.schedule else {
        return Ok(Some(RunInfo {
            id: campaign.name.clone(),
            occurrence: None,
            now: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }));
    };
    let tz = schedule.timezone();
    let due = {
        let store = store.as_deref();
        schedule.due_given(at, |occurrence: &str| {
            super::runstate::occurrence_seen(store, &run_id(campaign, Some(occurrence)))
        })
    };
    let say = |s: String| {
        if !quiet {
            print_out(&s);
        }
    };
    match due {
        Due::Due(o) => Ok(Some(RunInfo {
            id: run_id(campaign, Some(&o.id())),
            occurrence: Some(o.id()),
            now: at
                .with_timezone(&tz)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })),
        Due::Missed { occurrence, next } => {
            let id = occurrence.id();
            if let Some(store) = store.as_mut() {
                store.record_missed(&RunStart {
                    run_id: run_id(campaign, Some(&id)),
                    campaign: campaign.name.clone(),
                    occurrence: Some(id.clone()),
                    fingerprint: fingerprint(campaign),
                })?;
            }
            say(format!(
                "{}: occurrence {id} was missed (older than catch_up when first seen); recorded, not sent late{}\n",
                campaign.name,
                next.map(|n| format!("; next {}", n.id())).unwrap_or_default()
            ));
            Ok(None)
        }
        Due::Done { occurrence, next } => {
            say(format!(
                "{}: nothing due; occurrence {} is done{}\n",
                campaign.name,
                occurrence.id(),
                next.map(|n| format!(", next {}", n.id()))
                    .unwrap_or_default()
            ));
            Ok(None)
        }
        Due::NotYet { next } => {
            say(format!(
                "{}: nothing due{}\n",
                campaign.name,
                next.map(|n| format!("; next occurrence {}", n.id()))
                    .unwrap_or_default()
            ));
            Ok(None)
        }
        Due::Ended => {
            say(format!(
                "{}: nothing due; the schedule has ended\n",
                campaign.name
            ));
            Ok(None)
        }
    }
}

/// For a campaign with a send window: whether sending may go on now. The
/// clock starts at `at` (so `--at` rehearsals see the window as they would)
/// and runs with real time.
fn send_window_gate(
    campaign: &crate::campaign::Campaign,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<Arc<dyn Fn() -> bool + Send + Sync>> {
    let schedule = campaign.schedule.as_ref()?;
    let window = *schedule.window()?;
    let tz = schedule.timezone();
    let started = std::time::Instant::now();
    Some(Arc::new(move || {
        let elapsed = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        window.contains(at + elapsed, tz)
    }))
}
