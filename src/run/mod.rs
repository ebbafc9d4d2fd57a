//! Running campaigns, as a library: the CLI's `run` is a thin layer over this.
//!
//! [`Prepared`] and [`PreparedRun`] resolve every input before any work (the campaign,
//! its project, the API, the token, the time, the state location). A [`Runner`] then
//! runs any number of them at once: different bots in parallel, each at its own rate;
//! campaigns for one bot share that bot's single budget (the lowest rate any of them
//! declares, fixed before sending starts). It reports what happens as [`RunEvent`]s on
//! a channel and returns each campaign's [`Ended`] or [`RunError`]: printing is the
//! caller's business.
//!
//! One campaign's run, in order: open the store; choose the run (the campaign's one
//! run, or the scheduled occurrence due); take the run's and the bot's locks (held to
//! the end); reopen it (fingerprint, in-flight recipients); plan the whole audience
//! (nothing is sent if the plan fails or has too many invalid recipients); send;
//! record how it ended and checkpoint the store.

mod error;
mod feeder;
mod journal;
mod prepare;
mod resume;
mod shared;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use feeder::Feeder;
use shared::{budgets, BotLocks, Writers};

pub use error::RunError;
pub use prepare::{resolve_at, Inputs, PlanBinding, Prepared, PreparedRun};
pub use resume::{fingerprint, ResumeFilter, ResumePolicy};

use crate::api::wire::BotEndpoint;
use crate::api::{BotAuth, HttpTransport};
use crate::campaign::{Campaign, MaxFailures};
use crate::delivery::{
    self, BotBudget, JournalHandle, NullJournal, Settings, Stats, StopReason, Stopper, Target,
};
use crate::diagnostic::Diagnostic;
use crate::human::thousands;
use crate::plan::{due_at, plan_pass_with, run_info, PassInputs, PlanPass, Selection};
use crate::render::RunInfo;
use crate::report::{PlanReport, RunReport};
use crate::schedule::Due;
use crate::state::{HeldLock, LockName, RunStatus, StateLocation, StateStore};

/// How a [`Runner`] runs, beyond what each campaign says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub policy: ResumePolicy,
    /// `--new-state`: create the store when it does not exist (else that is an error).
    pub new_state: bool,
    /// `--fail-on-invalid`: no invalid recipient is allowed (max_invalid 0).
    pub fail_on_invalid: bool,
    /// `--wait-lock`: how long to wait for a run or bot another process holds.
    pub wait_lock: Option<Duration>,
    /// `--requests FILE`: every request of the plan, as JSON lines (one campaign only).
    pub requests: Option<PathBuf>,
    /// The first retry delay (doubling per retry).
    pub retry_base: Duration,
    /// `--only`, `--limit`: the recipients to send this invocation takes; the rest
    /// are held out and stay pending (the run ends `interrupted`).
    pub selection: Selection,
}

/// What happens during a run, as it happens.
#[derive(Debug)]
pub enum RunEvent {
    /// What the schedule says, when it says there is nothing to send now (nothing
    /// due, an occurrence missed): the run's own news (stdout).
    Status { campaign: String, text: String },
    /// A remark beside the run (stderr): a store created, a checkpoint that waits.
    Note { campaign: String, text: String },
    /// A remark that must be seen even when asked to be quiet: recipients a crash
    /// left in flight are now `unknown`.
    Alert { campaign: String, text: String },
    /// The plan is made; nothing is sent yet.
    Planned(Box<PlanReport>),
    /// A campaign started sending.
    Sending(Progress),
    /// A campaign's sending, about five times a second.
    Progress(Progress),
    /// Something failed without ending the run's report (the audience reader, the
    /// state writer, recording the run's end): the report follows.
    Problem { campaign: String, error: RunError },
    /// A campaign's run ended; what it did.
    Finished(Box<RunReport>),
}

/// A sending campaign's progress.
#[derive(Debug, Clone)]
pub struct Progress {
    pub campaign: String,
    pub bot: String,
    /// Recipients to send in this invocation.
    pub total: u64,
    /// Settled (sent, rejected, failed, unknown) or given up on by a stop.
    pub done: u64,
    pub sent: u64,
    pub failed: u64,
    pub requests: u64,
    pub elapsed: Duration,
}

/// How a campaign's run ended, when it was not refused.
#[derive(Debug)]
pub enum Ended {
    /// Nothing is due now (said in a [`RunEvent::Note`]).
    NothingDue,
    /// Nothing to send now: every recipient of the run was already handled, or
    /// the rest is held out by `--only`/`--limit`.
    NothingToSend {
        run_id: String,
        already_sent: u64,
        held_out: u64,
    },
    /// The run sent; its report says how it went ([`RunReport::ok`]).
    Sent(Box<RunReport>),
}

/// Runs campaigns and tells what happens on its event channel.
pub struct Runner {
    options: RunOptions,
    events: std::sync::mpsc::Sender<RunEvent>,
    interrupt: Stopper,
}

impl Runner {
    pub fn new(options: RunOptions, events: std::sync::mpsc::Sender<RunEvent>) -> Runner {
        Runner {
            options,
            events,
            interrupt: Stopper::default(),
        }
    }

    /// Stops every run of this runner (Ctrl-C, a deadline): no new recipient is taken,
    /// requests in flight finish and are recorded.
    pub fn stopper(&self) -> Stopper {
        self.interrupt.clone()
    }

    /// Runs every campaign, at once, and returns how each ended, in the given order.
    pub async fn run(&self, runs: Vec<PreparedRun>) -> Vec<Result<Ended, RunError>> {
        // Refusals first: a run that will not start sets no bot's budget.
        let runs = refuse_duplicate_names(runs);
        let budgets = sending_budgets(&runs);
        let bot_locks = Arc::new(BotLocks::default());
        let writers = Arc::new(Writers::default());
        let opened = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::with_capacity(runs.len());
        for run in runs {
            let run = match run {
                Ok(run) => run,
                Err(refused) => {
                    tasks.push(Err(refused));
                    continue;
                }
            };
            let campaign = run.campaign();
            let budget = budgets
                .get(&campaign.bot.id)
                .cloned()
                .unwrap_or_else(|| Arc::new(BotBudget::new(campaign.delivery.rate)));
            let one = OneRun {
                run,
                options: self.options.clone(),
                events: self.events.clone(),
                interrupt: self.interrupt.clone(),
                budget,
                bot_locks: bot_locks.clone(),
                writers: writers.clone(),
                opened: opened.clone(),
            };
            tasks.push(Ok(tokio::spawn(one.run())));
        }
        let mut ended = Vec::with_capacity(tasks.len());
        for task in tasks {
            ended.push(match task {
                Ok(task) => task.await.unwrap_or_else(|e| {
                    Err(RunError::failed(Diagnostic::error(
                        "crashed",
                        format!("a campaign's run crashed (a bug; please report it): {e}"),
                    )))
                }),
                Err(refused) => Err(refused),
            });
        }
        let crashed = tokio::task::spawn_blocking(move || writers.finish())
            .await
            .ok()
            .flatten();
        if let Some(crashed) = crashed {
            let _ = self.events.send(RunEvent::Problem {
                campaign: crashed,
                error: RunError::failed(Diagnostic::error(
                    "state",
                    "the state writer crashed; outcomes of the last requests may be unrecorded and read as unknown",
                )),
            });
        }
        let opened = std::mem::take(&mut *opened.lock().unwrap_or_else(|e| e.into_inner()));
        for location in opened {
            self.checkpoint(&location);
        }
        ended
    }

    /// Folds the store's write-ahead log into its main file once every run is done,
    /// so that the file alone is complete (CI caches may carry only `state.db`).
    fn checkpoint(&self, location: &StateLocation) {
        let folded = crate::state::open(location).and_then(|store| match store {
            Some(store) => store.checkpoint(),
            None => Ok(()),
        });
        if let Err(e) = folded {
            // Every record is committed; only the copy into the main file waits for
            // the next run (or the last connection to close).
            let _ = self.events.send(RunEvent::Alert {
                campaign: String::new(),
                text: format!(
                    "warning: could not fold the write-ahead log into {location} ({e}); keep the whole folder, `-wal` included"
                ),
            });
        }
    }
}

/// One campaign's run within a [`Runner`].
struct OneRun {
    run: PreparedRun,
    options: RunOptions,
    events: std::sync::mpsc::Sender<RunEvent>,
    interrupt: Stopper,
    budget: Arc<BotBudget>,
    bot_locks: Arc<BotLocks>,
    writers: Arc<Writers>,
    /// The stores some run opened: checkpointed when every run is done.
    opened: Arc<std::sync::Mutex<Vec<StateLocation>>>,
}

/// A run that planned and may send: what the sending part needs.
struct Ready {
    store: Option<Box<dyn StateStore>>,
    run_info: RunInfo,
    pass: PlanPass,
    feeder: Feeder,
    /// Held for the life of the run.
    _locks: Option<(HeldLock, Arc<HeldLock>)>,
}

impl OneRun {
    fn name(&self) -> &str {
        &self.run.campaign().name
    }

    fn note(&self, text: String) {
        let _ = self.events.send(RunEvent::Note {
            campaign: self.name().to_owned(),
            text,
        });
    }

    fn status(&self, text: String) {
        let _ = self.events.send(RunEvent::Status {
            campaign: self.name().to_owned(),
            text,
        });
    }

    async fn run(self) -> Result<Ended, RunError> {
        if let Some(reason) = self.interrupt.reason() {
            self.note(format!("not started: {reason}"));
            return Ok(Ended::NothingDue);
        }
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // Stores, locks and the plan pass block: off the async workers.
        let (this, ready) = tokio::task::spawn_blocking(move || {
            let ready = self.prepare();
            (self, ready)
        })
        .await
        .map_err(|e| {
            RunError::failed(Diagnostic::error(
                "crashed",
                format!("planning crashed (a bug; please report it): {e}"),
            ))
        })?;
        match ready? {
            Stage::Ready(ready) => this.send(*ready, started).await,
            Stage::Done(ended) => Ok(ended),
        }
    }

    /// Everything before sending: the store, the run, its locks, the plan.
    fn prepare(&self) -> Result<Stage, RunError> {
        let campaign = self.run.campaign();
        let location = &self.run.prepared.state;
        let shown = location.to_string();
        let mut store = if self.options.new_state {
            match crate::state::create(location).map_err(|e| RunError::state(&shown, e))? {
                Some((store, created)) => {
                    if created {
                        self.note(format!(
                            "created a new state store at {shown} (--new-state)"
                        ));
                    }
                    Some(store)
                }
                None => None,
            }
        } else {
            crate::state::open(location).map_err(|e| RunError::state(&shown, e))?
        };
        if store.is_some() {
            let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            if !opened.contains(location) {
                opened.push(location.clone());
            }
        }
        let Some(run_info) = self.choose_run(store.as_deref_mut())? else {
            return Ok(Stage::Done(Ended::NothingDue));
        };
        let run_info = match &self.run.binding {
            None => run_info,
            Some(plan) if plan.run_id != run_info.id => {
                return Err(RunError::Invalid(vec![Diagnostic::error(
                    "plan-mismatch",
                    format!(
                        "the plan `{}` is for run {}, but the run due now is {}; nothing was sent",
                        plan.file.display(),
                        plan.run_id,
                        run_info.id
                    ),
                )
                .help(
                    "make and review a plan for this run: smax-campaign plan CAMPAIGN --out FILE",
                )]))
            }
            // Templates see the plan's `now`, so they render what was reviewed.
            Some(plan) => RunInfo {
                now: plan.now.clone(),
                ..run_info
            },
        };
        // The bot's lock first: a process holding a run's lock then always holds its
        // bot's too, so two processes never wait on each other in a circle.
        let locks = match &store {
            None => None,
            Some(store) => {
                let bot_lock = self.bot_locks.take(
                    &campaign.bot.id,
                    store.as_ref(),
                    self.options.wait_lock,
                )?;
                let name = LockName::Run(run_info.id.clone());
                let run_lock = store
                    .lock(&name, self.options.wait_lock)
                    .map_err(|e| RunError::lock(&name, e))?;
                Some((run_lock, bot_lock))
            }
        };
        let mut previous = None;
        let filter = match store.as_deref_mut() {
            None => None,
            Some(store) => {
                let resumed = resume::resume(store, campaign, &run_info, self.options.policy)?;
                previous = resumed.previous;
                if resumed.settled_in_flight > 0 {
                    let _ = self.events.send(RunEvent::Alert {
                        campaign: self.name().to_owned(),
                        text: format!(
                        "{} recipient(s) were in flight when an earlier attempt of this run stopped; they are now `unknown` and are not resent unless you pass --resend-unknown",
                            resumed.settled_in_flight
                        ),
                    });
                }
                Some(resumed.filter)
            }
        };
        let mut inputs = PassInputs::new(campaign, &run_info)
            .map_err(RunError::Invalid)?
            .with_selection(self.options.selection.clone());
        if self.run.binding.is_some() {
            inputs = inputs.with_digest();
        }
        // The sending pass starts now, beside the plan: it waits at its channel for
        // the plan's verdict, and a resume's handled recipients are behind it by
        // the time the plan is made. Nothing is sent before the plan allows it.
        let feeder = Feeder::start(
            campaign.clone(),
            inputs.clone(),
            filter.clone(),
            campaign.delivery.concurrency as usize * 4,
        );
        let pass = self.plan(inputs, filter)?;
        let counts = pass.report.counts;
        if let Some(plan) = &self.run.binding {
            let rendered = pass.report.requests_digest.as_deref().unwrap_or_default();
            if rendered != plan.requests_digest {
                if let Some(store) = store.as_deref_mut() {
                    // Refusing this plan says nothing about the run: as it was, if it was.
                    let undone = match &previous {
                        Some(before) => store
                            .restore_run(before)
                            .map_err(|e| RunError::state(&shown, e)),
                        None => self.close(store, &run_info.id, RunStatus::Aborted),
                    };
                    if let Err(e) = undone {
                        self.problem(e);
                    }
                }
                return Err(RunError::Invalid(vec![Diagnostic::error(
                    "plan-mismatch",
                    format!(
                        "the requests this run renders differ from the reviewed plan `{}` although its files are the same (digest {rendered}, the plan's {}); nothing was sent",
                        plan.file.display(),
                        plan.requests_digest
                    ),
                )
                .help("a plan made by another version of smax-campaign can render differently: make and review a new plan with this one")]));
            }
        }
        if !pass.only_not_found.is_empty() {
            self.note(format!(
                "--only: {} not among the recipients to send (not in the audience, filtered, suppressed, a duplicate, invalid or already sent): {}",
                if pass.only_not_found.len() == 1 { "this key is" } else { "these keys are" },
                pass.only_not_found.join(", ")
            ));
        }
        let _ = self
            .events
            .send(RunEvent::Planned(Box::new(pass.report.clone())));
        if let Some(store) = store.as_deref_mut() {
            store
                .record_plan(&run_info.id, counts.rendered(), counts.invalid)
                .map_err(|e| RunError::state(&shown, e))?;
        }
        let max_invalid = if self.options.fail_on_invalid {
            MaxFailures::Count(0)
        } else {
            campaign.delivery.max_invalid
        };
        if max_invalid.exceeded_by(counts.invalid, counts.rendered()) {
            // Not done: a scheduled occurrence stays due until its sending has finished.
            if let Some(store) = store.as_deref_mut() {
                if let Err(e) = self.close(store, &run_info.id, RunStatus::Aborted) {
                    self.problem(e);
                }
            }
            return Err(RunError::TooManyInvalid(invalid_refusal(
                &pass.report,
                max_invalid,
            )));
        }
        if counts.to_send == 0 {
            if let Some(store) = store.as_deref_mut() {
                // Recipients held out are still to send: the run is not done.
                let status = if counts.held_out > 0 {
                    RunStatus::Interrupted
                } else {
                    RunStatus::Completed
                };
                match previous {
                    // Done before and nothing to do now: the run stays as it was,
                    // its end time included.
                    Some(before)
                        if status == RunStatus::Completed
                            && before.status == RunStatus::Completed
                            && before.finished.is_some() =>
                    {
                        store
                            .restore_run(&before)
                            .map_err(|e| RunError::state(&shown, e))?
                    }
                    _ => self.close(store, &run_info.id, status)?,
                }
            }
            return Ok(Stage::Done(Ended::NothingToSend {
                run_id: run_info.id,
                already_sent: counts.already_sent,
                held_out: counts.held_out,
            }));
        }
        feeder.planned(feeder::Verdict {
            rows: counts.read,
            allowed: pass.request_hashes.clone(),
        });
        Ok(Stage::Ready(Box::new(Ready {
            store,
            run_info,
            pass,
            feeder,
            _locks: locks,
        })))
    }

    /// The plan pass, writing `--requests` if asked.
    fn plan(
        &self,
        inputs: PassInputs,
        filter: Option<Arc<dyn crate::plan::PriorLookup>>,
    ) -> Result<PlanPass, RunError> {
        let prepared = &self.run.prepared;
        let mut pass = plan_pass_with(
            &prepared.campaign,
            &prepared.api_url,
            inputs,
            0,
            filter,
            self.options.requests.as_deref(),
        )
        .map_err(RunError::Invalid)?;
        pass.report.warnings = prepared.warnings.len();
        Ok(pass)
    }

    /// The run this invocation acts on: the campaign's one run, or for a scheduled
    /// campaign the occurrence due at `at`. `None` when nothing is due (said in a
    /// note); a missed occurrence is recorded as missed.
    fn choose_run(
        &self,
        store: Option<&mut (dyn StateStore + 'static)>,
    ) -> Result<Option<RunInfo>, RunError> {
        let campaign = self.run.campaign();
        let at = self.run.at;
        let Some(due) = due_at(campaign, at, store.as_deref().map(|s| s as &dyn StateStore)) else {
            return Ok(Some(run_info(campaign, None, at)));
        };
        let name = &campaign.name;
        let next = |n: Option<crate::schedule::Occurrence>, lead: &str| {
            n.map(|n| format!("{lead}{}", n.id())).unwrap_or_default()
        };
        match due {
            Due::Due(o) => return Ok(Some(run_info(campaign, Some(&o), at))),
            Due::Missed {
                occurrence,
                next: n,
            } => {
                let missed = run_info(campaign, Some(&occurrence), at);
                if let Some(store) = store {
                    store
                        .record_missed(&resume::run_start(campaign, &missed))
                        .map_err(|e| RunError::state(store.location(), e))?;
                }
                self.status(format!(
                    "{name}: occurrence {} was missed (older than catch_up when first seen); recorded, not sent late{}",
                    occurrence.id(),
                    next(n, "; next ")
                ));
            }
            Due::Done {
                occurrence,
                next: n,
            } => self.status(format!(
                "{name}: nothing due; occurrence {} is done{}",
                occurrence.id(),
                next(n, ", next ")
            )),
            Due::NotYet { next: n } => self.status(format!(
                "{name}: nothing due{}",
                next(n, "; next occurrence ")
            )),
            Due::Ended => self.status(format!("{name}: nothing due; the schedule has ended")),
        }
        Ok(None)
    }

    /// Records how the run ended (the store is checkpointed when every run is done).
    fn close(
        &self,
        store: &mut dyn StateStore,
        run_id: &str,
        status: RunStatus,
    ) -> Result<(), RunError> {
        store.finish_run(run_id, status).map_err(|e| {
            RunError::failed(
                Diagnostic::error("state", format!("could not record the end of the run: {e}"))
                    .help(format!(
                        "what was recorded before this stands (a request whose outcome could not be recorded reads as unknown, never resent without --resend-unknown); the run's own status in {} may read as running or interrupted: run again to resume",
                        store.location()
                    )),
            )
        })
    }

    /// Sends the planned run and closes it.
    async fn send(self, ready: Ready, started: String) -> Result<Ended, RunError> {
        let Ready {
            mut store,
            run_info,
            pass,
            mut feeder,
            _locks,
        } = ready;
        let prepared = &self.run.prepared;
        let campaign = &prepared.campaign;
        let journal = match &store {
            Some(_) => self.writers.for_run(&prepared.state, &run_info.id)?,
            None => JournalHandle::immediate(Box::new(NullJournal)),
        };
        let concurrency = campaign.delivery.concurrency as usize;
        let transport =
            HttpTransport::new(&prepared.api_url, campaign.delivery.timeout, concurrency)
                .map_err(|e| RunError::failed(Diagnostic::error("http-client", e.to_string())))?;
        let stats = Arc::new(Stats::default());
        let stopper = Stopper::default();
        let forward = {
            let (interrupt, stopper) = (self.interrupt.clone(), stopper.clone());
            tokio::spawn(async move {
                interrupt.stopped().await;
                if let Some(reason) = interrupt.reason() {
                    stopper.stop(reason);
                }
            })
        };
        let target = Target {
            transport: Arc::new(transport),
            bot: Arc::new(BotAuth {
                endpoint: BotEndpoint {
                    id: campaign.bot.id.clone(),
                    tag_style: campaign.bot.tag_style,
                },
                api: campaign.bot.api,
                token: self.run.token.clone(),
            }),
            budget: self.budget.clone(),
            gate: send_window_gate(campaign, self.run.at),
        };
        let settings = Settings {
            concurrency,
            retries: campaign.delivery.retries,
            retry_unknown: campaign.delivery.retry_unknown,
            max_failures: campaign.delivery.max_failures,
            backoff: self.options.retry_base,
            drain: campaign.delivery.timeout + Duration::from_secs(5),
        };

        let Some(rx) = feeder.take_requests() else {
            if let Some(store) = store.as_deref_mut() {
                let _ = self.close(store, &run_info.id, RunStatus::Aborted);
            }
            return Err(RunError::failed(Diagnostic::error(
                "runtime",
                "cannot start the thread that reads the audience; nothing was sent",
            )));
        };
        // A stop that came while this run planned applies before the first request.
        if let Some(reason) = self.interrupt.reason() {
            stopper.stop(reason);
        }
        let barrier = journal.clone();
        let total = pass.report.counts.to_send;
        let progress = tokio::spawn(report_progress(
            self.events.clone(),
            self.progress_of(stats.clone(), total),
        ));
        let result = delivery::deliver(
            rx,
            target,
            settings,
            journal,
            stopper.clone(),
            stats.clone(),
        )
        .await;
        // Every record of this run is committed before it closes and its locks go.
        let _ = barrier.flush().await;
        progress.abort();
        let _ = progress.await;
        forward.abort();

        let audience_failure = tokio::task::spawn_blocking(move || feeder.finish())
            .await
            .unwrap_or_else(|_| Err(vec![feeder::crashed()]))
            .err();
        let audience_failed = audience_failure.is_some();
        if let Some(diagnostics) = audience_failure {
            let diagnostics = diagnostics
                .into_iter()
                .map(|d| d.help("the run stopped; recipients not reached are still pending: fix the source and run again to resume"))
                .collect();
            self.problem(RunError::Failed(diagnostics));
        }
        let failed = result.rejected + result.failed + result.unknown > 0;
        let aborted = audience_failed || result.stopped.as_ref().is_some_and(|r| !r.is_pause());
        let run_status = match &result.stopped {
            _ if audience_failed => RunStatus::Aborted,
            // `--only`/`--limit` left recipients to send for a later invocation.
            None if pass.report.counts.held_out > 0 => RunStatus::Interrupted,
            None => RunStatus::Completed,
            Some(StopReason::Interrupted | StopReason::WindowClosed | StopReason::TimeLimit) => {
                RunStatus::Interrupted
            }
            Some(_) => RunStatus::Aborted,
        };
        let closed = match store.as_deref_mut() {
            Some(store) => {
                let id = &run_info.id;
                self.close(store, id, run_status)
            }
            None => Ok(()),
        };
        let close_failed = closed.is_err();
        if let Err(e) = closed {
            self.problem(e);
        }
        let pending = pass.report.counts.to_send.saturating_sub(result.settled());
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
            percent: None,
            ok: !(failed || aborted || close_failed),
        }
        .with_shares();
        let _ = self
            .events
            .send(RunEvent::Finished(Box::new(report.clone())));
        Ok(Ended::Sent(Box::new(report)))
    }

    fn problem(&self, error: RunError) {
        let _ = self.events.send(RunEvent::Problem {
            campaign: self.name().to_owned(),
            error,
        });
    }

    fn progress_of(&self, stats: Arc<Stats>, total: u64) -> impl Fn() -> Progress + Send {
        let campaign = self.name().to_owned();
        let bot = self.run.campaign().bot.label().to_owned();
        let started = std::time::Instant::now();
        move || Progress {
            campaign: campaign.clone(),
            bot: bot.clone(),
            total,
            done: stats.finished() + stats.not_sent.load(Ordering::Relaxed),
            sent: stats.sent.load(Ordering::Relaxed),
            failed: stats.failures(),
            requests: stats.requests.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        }
    }
}

/// Whether the campaign may send in this invocation, as far as can be told before
/// it starts: a scheduled campaign with nothing due must not lower its bot's budget
/// for the campaigns that are due. What cannot be read counts as "may".
/// Each campaign name once: a name is a run (or a series of them), so two files of
/// one name in one invocation would race for the same recipients; the later is refused.
fn refuse_duplicate_names(runs: Vec<PreparedRun>) -> Vec<Result<PreparedRun, RunError>> {
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    runs.into_iter()
        .map(|run| {
            let campaign = run.campaign();
            if let Some((_, first)) = names.iter().find(|(name, _)| *name == campaign.name) {
                return Err(RunError::Invalid(vec![Diagnostic::error(
                    "duplicate-campaign",
                    format!(
                        "{}: the campaign name `{}` is also used by {} in this invocation; a name is a run, so they would send to the same recipients",
                        campaign.path.display(),
                        campaign.name,
                        first.display()
                    ),
                )
                .help("give each campaign its own `name`, or run them one after another")]));
            }
            names.push((campaign.name.clone(), campaign.path.clone()));
            Ok(run)
        })
        .collect()
}

/// One budget per bot, at the lowest rate among the accepted campaigns that may send
/// now (a scheduled campaign with nothing due does not slow its bot down).
fn sending_budgets(
    runs: &[Result<PreparedRun, RunError>],
) -> std::collections::HashMap<String, Arc<BotBudget>> {
    budgets(
        runs.iter()
            .flatten()
            .filter(|r| may_send_now(r))
            .map(|r| (r.campaign().bot.id.as_str(), r.campaign().delivery.rate)),
    )
}

fn may_send_now(run: &PreparedRun) -> bool {
    let campaign = run.campaign();
    if campaign.schedule.is_none() {
        return true;
    }
    match crate::state::open_read_only(&run.prepared.state) {
        Ok(store) => matches!(
            due_at(campaign, run.at, store.as_deref()),
            Some(Due::Due(_))
        ),
        Err(_) => true,
    }
}

/// Where a run stands once planned.
enum Stage {
    Ready(Box<Ready>),
    Done(Ended),
}

async fn report_progress(
    events: std::sync::mpsc::Sender<RunEvent>,
    progress: impl Fn() -> Progress + Send,
) {
    if events.send(RunEvent::Sending(progress())).is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.tick().await;
    loop {
        tick.tick().await;
        if events.send(RunEvent::Progress(progress())).is_err() {
            return;
        }
    }
}

/// Shown when `max_invalid` is exceeded: nothing was sent, and why each row is invalid.
fn invalid_refusal(report: &PlanReport, allowed: MaxFailures) -> Diagnostic {
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

/// For a campaign with a send window: whether sending may go on now. The clock
/// starts at `at` (so `--at` rehearsals see the window as they would) and runs with
/// real time.
fn send_window_gate(
    campaign: &Campaign,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<delivery::Gate> {
    let schedule = campaign.schedule.as_ref()?;
    let window = *schedule.window()?;
    let tz = schedule.timezone();
    let started = std::time::Instant::now();
    Some(Arc::new(move || {
        let elapsed = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        window.contains(at + elapsed, tz)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Secret;
    use crate::campaign::Project;

    fn scheduled(cron: &str) -> (tempfile::TempDir, PreparedRun) {
        let yaml = format!(
            "version: 1\nname: s\nbot: {{ id: \"b1\", token_env: T, api: v2 }}\naudience:\n  from:\n    - jsonl: a.jsonl\n  key: \"{{{{ id }}}}\"\nrecipient:\n  customer_id: \"{{{{ id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: hi\nschedule:\n  cron: \"{cron}\"\n  catch_up: 1h\n"
        );
        let (dir, campaign) =
            crate::plan::testing::campaign(&yaml, &[("a.jsonl", "{\"id\":\"1\"}\n")]);
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T09:30:00Z")
            .expect("a time")
            .with_timezone(&chrono::Utc);
        let run = PreparedRun {
            prepared: Prepared {
                project: Project::none(dir.path().to_path_buf()),
                api_url: "http://127.0.0.1:9".into(),
                state: StateLocation::File(dir.path().join("none-yet.db")),
                warnings: Vec::new(),
                campaign,
            },
            token: Secret::new("t".into()),
            at,
            binding: None,
        };
        (dir, run)
    }

    fn with_rate(mut run: PreparedRun, name: &str, rate: f64) -> PreparedRun {
        run.prepared.campaign.name = name.to_owned();
        run.prepared.campaign.delivery.rate = rate;
        run
    }

    fn budget_rate(runs: Vec<PreparedRun>) -> Option<f64> {
        sending_budgets(&refuse_duplicate_names(runs))
            .get("b1")
            .map(|b| b.rate())
    }

    #[test]
    fn only_campaigns_that_may_send_now_set_their_bots_budget() {
        // 09:00 daily is due at 09:30 (catch_up 1h); 09:00 on Sundays is not (a Wednesday).
        let (_a, due) = scheduled("0 9 * * *");
        let (_b, not_due) = scheduled("0 9 * * 0");
        assert!(may_send_now(&due));
        assert!(!may_send_now(&not_due));
        let runs = vec![
            with_rate(due, "due", 20.0),
            with_rate(not_due, "later", 5.0),
        ];
        assert_eq!(budget_rate(runs), Some(20.0));
    }

    #[test]
    fn a_campaign_refused_as_a_duplicate_sets_no_budget() {
        let (_a, first) = scheduled("0 9 * * *");
        let (_b, second) = scheduled("0 9 * * *");
        let runs = refuse_duplicate_names(vec![
            with_rate(first, "same", 20.0),
            with_rate(second, "same", 5.0),
        ]);
        assert!(runs[0].is_ok());
        assert!(
            matches!(&runs[1], Err(RunError::Invalid(d)) if d[0].code == "duplicate-campaign"),
            "the second of one name is refused"
        );
        assert_eq!(
            sending_budgets(&runs).get("b1").map(|b| b.rate()),
            Some(20.0),
            "the refused campaign's lower rate does not slow the bot"
        );
        let (_c, other) = scheduled("0 9 * * *");
        let (_d, slower) = scheduled("0 9 * * *");
        let runs = vec![with_rate(other, "one", 20.0), with_rate(slower, "two", 5.0)];
        assert_eq!(budget_rate(runs), Some(5.0), "two accepted: the lower rate");
    }
}
