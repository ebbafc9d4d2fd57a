//! The send loop.
//!
//! Pacing: each request waits for its bot's [`BotBudget`] slot, so requests
//! are spaced evenly at the bot's rate whatever the concurrency, and no
//! sliding second (plus a margin) ever holds more than `rate` of them (see
//! [`budget`]). How many recipients are worked on at once adapts to the
//! round trip, up to `concurrency` (see [`inflight`]): enough for the rate,
//! with round trips up to a second and beyond.
//!
//! Durability: a recipient is journaled as attempted (durably, group-committed)
//! once its request holds the rate permit, right before it leaves; retries
//! reuse that record. Its outcome is journaled before its slot is released. A
//! crash therefore leaves `unknown` only recipients whose request may really
//! have left (those between their permit and their answer: about `rate ×
//! round trip`), and none that was sent without a record. A recipient taken
//! but stopped before its permit has no record and stays pending.
//!
//! Outcome classes (SPEC section 6): sent; rejected (not retried); retryable
//! (429 honouring Retry-After and slowing the bot, 5xx, connection refused:
//! retried with exponential backoff and full jitter up to `retries`, then
//! `failed`); unknown (timeout or broken connection after writing: not retried
//! unless `retry_unknown`); fatal (401/403: the run stops at once). A breaker
//! stops the run after 20 final failures in a row that look the same, and
//! `max_failures` stops it past its share or count. A stop never abandons a
//! recorded recipient silently: one attempted but not sent is recorded
//! `not-sent`, and the next run picks it up.

pub mod budget;
pub mod inflight;
pub mod journal;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use budget::Answer;
pub use budget::BotBudget;
use inflight::{InFlight, Slot};
pub use journal::{
    AttemptEntry, Journal, JournalError, JournalHandle, NullJournal, OutcomeEntry, Tagged,
};

use crate::api::{BotAuth, Reply, Transport};
use crate::campaign::MaxFailures;
use crate::render::RenderedRequest;
/// How a recipient's delivery ended: the state's classes, one vocabulary for both.
pub use crate::state::OutcomeClass;

/// Final failures in a row, failing the same way, that trip the breaker.
pub const BREAKER_THRESHOLD: u64 = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub class: OutcomeClass,
    /// HTTP requests made for this recipient.
    pub attempts: u32,
    pub status: Option<u16>,
    /// The platform's `result` text, or what went wrong.
    pub text: Option<String>,
}

/// Why a run stopped before its audience was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum StopReason {
    Interrupted,
    Fatal {
        status: u16,
        text: String,
    },
    Breaker {
        failure: String,
        count: u64,
    },
    MaxFailures {
        failures: u64,
        attempts: u64,
    },
    Journal {
        error: String,
    },
    WindowClosed,
    /// `--max-duration` elapsed: a planned handover to the next invocation.
    TimeLimit,
    /// A part of the run failed unexpectedly (a bug): what was in it is unrecorded.
    Crashed {
        what: String,
    },
}

/// The journal refused a record: the run stops, and the reason is kept as text (a
/// stop reason is compared and serialized).
impl From<JournalError> for StopReason {
    fn from(error: JournalError) -> StopReason {
        StopReason::Journal {
            error: error.to_string(),
        }
    }
}

impl StopReason {
    /// A stop after which the run is still healthy (resumes later without failure).
    pub fn is_pause(&self) -> bool {
        matches!(self, StopReason::WindowClosed | StopReason::TimeLimit)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Interrupted => write!(f, "interrupted; the next `run` resumes where this one stopped"),
            StopReason::Fatal { status, text } => write!(f, "the platform refused the bot's token (HTTP {status}: {text}); check the token's environment variable"),
            StopReason::Breaker { failure, count } => write!(f, "{count} deliveries in a row failed the same way ({failure}); stopped so the rest of the audience is not burned. Fix the cause and run again"),
            StopReason::MaxFailures { failures, attempts } => write!(f, "{failures} of {attempts} deliveries failed, more than max_failures allows; the rest stays pending"),
            StopReason::Journal { error } => write!(f, "the state store failed ({error}); stopped because delivery could no longer be recorded"),
            StopReason::WindowClosed => write!(f, "the send window closed; the next run inside the window resumes"),
            StopReason::Crashed { what } => write!(f, "{what} crashed; what it was sending may be unrecorded and reads as unknown. Please report this"),
            StopReason::TimeLimit => write!(f, "--max-duration reached; the requests in flight were finished and recorded, and the next `run` resumes"),
        }
    }
}

/// Signals a stop to every part of a run; the first reason wins.
#[derive(Clone)]
pub struct Stopper {
    tx: Arc<watch::Sender<Option<StopReason>>>,
    rx: watch::Receiver<Option<StopReason>>,
}

impl Default for Stopper {
    fn default() -> Self {
        let (tx, rx) = watch::channel(None);
        Stopper {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Stopper {
    pub fn stop(&self, reason: StopReason) {
        self.tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.rx.borrow().clone()
    }

    pub fn is_stopped(&self) -> bool {
        self.rx.borrow().is_some()
    }

    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The most recipients in flight at once (a cap: below it the number
    /// adapts to the round trip).
    pub concurrency: usize,
    pub retries: u32,
    pub retry_unknown: bool,
    pub max_failures: MaxFailures,
    /// First backoff delay; doubles per retry, capped at 30 s, full jitter.
    pub backoff: Duration,
    /// How long to wait for in-flight requests after a stop.
    pub drain: Duration,
}

/// Live counters, readable while the run goes (progress) and after (summary).
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub unknown: AtomicU64,
    pub not_sent: AtomicU64,
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Stats {
    pub fn get(&self, class: OutcomeClass) -> u64 {
        self.counter(class).load(Ordering::Relaxed)
    }

    fn counter(&self, class: OutcomeClass) -> &AtomicU64 {
        match class {
            OutcomeClass::Sent => &self.sent,
            OutcomeClass::Rejected => &self.rejected,
            OutcomeClass::Retryable => &self.failed,
            OutcomeClass::Unknown => &self.unknown,
            // A delivery never ends `attempted`: that class is the store's record of
            // a request in flight. Counted with the not-sent if it ever did.
            OutcomeClass::Skipped | OutcomeClass::Attempted => &self.not_sent,
        }
    }

    /// Deliveries that ended in failure (rejected, failed, unknown).
    pub fn failures(&self) -> u64 {
        self.get(OutcomeClass::Rejected)
            + self.get(OutcomeClass::Retryable)
            + self.get(OutcomeClass::Unknown)
    }

    pub fn finished(&self) -> u64 {
        self.get(OutcomeClass::Sent) + self.failures()
    }
}

#[derive(Debug, Default)]
struct Judge {
    streak_signature: Option<String>,
    streak: u64,
    texts: HashMap<String, u64>,
}

/// What a delivery ended with.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryResult {
    pub sent: u64,
    pub rejected: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Taken but not sent; reports call these (with the rest not reached) `pending`.
    #[serde(skip)]
    pub not_sent: u64,
    pub requests: u64,
    pub rate_limited: u64,
    pub stopped: Option<StopReason>,
    pub seconds: f64,
    /// The platform's most frequent failure texts, most frequent first.
    pub top_failures: Vec<(String, u64)>,
}

impl DeliveryResult {
    /// Recipients this delivery settled: sent, rejected, failed or unknown.
    pub fn settled(&self) -> u64 {
        self.sent + self.rejected + self.failed + self.unknown
    }

    pub fn achieved_rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Whether sending may go on now (a schedule's send window); checked right
/// before each request leaves.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// What delivery needs for one bot.
pub struct Target {
    pub transport: Arc<dyn Transport>,
    pub bot: Arc<BotAuth>,
    pub budget: Arc<BotBudget>,
    pub gate: Option<Gate>,
}

/// Delivers every request from `requests` until the channel closes or the run stops.
pub async fn deliver(
    mut requests: mpsc::Receiver<RenderedRequest>,
    target: Target,
    settings: Settings,
    journal: JournalHandle,
    stopper: Stopper,
    stats: Arc<Stats>,
) -> DeliveryResult {
    let started = Instant::now();
    let inflight = Arc::new(InFlight::new(settings.concurrency));
    let judge = Arc::new(Mutex::new(Judge::default()));
    let settings = Arc::new(settings);
    let target = Arc::new(target);
    let mut tasks = tokio::task::JoinSet::new();

    loop {
        if stopper.is_stopped() {
            break;
        }
        // Biased: once the run stops, a free slot must not win the race.
        let slot = tokio::select! {
            biased;
            _ = stopper.stopped() => break,
            s = inflight.admit(|| target.budget.current_rate()) => s,
        };
        if let Some(gate) = &target.gate {
            if !gate() {
                stopper.stop(StopReason::WindowClosed);
                break;
            }
        }
        let request = tokio::select! {
            biased;
            _ = stopper.stopped() => break,
            r = requests.recv() => match r { Some(r) => r, None => break },
        };
        while let Some(joined) = tasks.try_join_next() {
            stop_if_crashed(joined, &stopper);
        }
        let (target, settings, journal, stopper, stats, judge, inflight) = (
            target.clone(),
            settings.clone(),
            journal.clone(),
            stopper.clone(),
            stats.clone(),
            judge.clone(),
            inflight.clone(),
        );
        tasks.spawn(async move {
            let sender = Sender {
                target: &target,
                settings: &settings,
                journal: &journal,
                stopper: &stopper,
                stats: &stats,
                inflight: &inflight,
            };
            sender.deliver_one(request, slot, &judge).await;
        });
    }
    // Stop reading the audience; the producer sees the closed channel.
    requests.close();
    // Every task ends on its own (retries, backoffs, pauses and timeouts are
    // all bounded), so when the audience simply ran out they are awaited in
    // full: cutting them off would leave recipients neither sent nor pending in
    // a run that looks completed. Only after a stop is the wait bounded.
    let join_all = {
        let stopper = stopper.clone();
        async move {
            while let Some(joined) = tasks.join_next().await {
                stop_if_crashed(joined, &stopper);
            }
            tasks
        }
    };
    tokio::pin!(join_all);
    let drain = settings.drain;
    let finished = if stopper.is_stopped() {
        tokio::time::timeout(drain, &mut join_all).await.ok()
    } else {
        tokio::select! {
            tasks = &mut join_all => Some(tasks),
            _ = stopper.stopped() => tokio::time::timeout(drain, &mut join_all).await.ok(),
        }
    };
    if finished.is_none() {
        // Still in flight after the bound: their attempts are recorded, their
        // outcomes are not, so the state store reads them as unknown. The
        // JoinSet is dropped with the future, which aborts what is left.
        stopper.stop(StopReason::Interrupted);
    }

    let judge = judge.lock().map(|j| j.texts.clone()).unwrap_or_default();
    let mut top: Vec<(String, u64)> = judge.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    DeliveryResult {
        sent: stats.get(OutcomeClass::Sent),
        rejected: stats.get(OutcomeClass::Rejected),
        failed: stats.get(OutcomeClass::Retryable),
        unknown: stats.get(OutcomeClass::Unknown),
        not_sent: stats.get(OutcomeClass::Skipped),
        requests: stats.requests.load(Ordering::Relaxed),
        rate_limited: stats.rate_limited.load(Ordering::Relaxed),
        stopped: stopper.reason(),
        seconds: started.elapsed().as_secs_f64(),
        top_failures: top,
    }
}

/// A sender task that panicked lost its recipient's outcome: the run stops.
fn stop_if_crashed(joined: Result<(), tokio::task::JoinError>, stopper: &Stopper) {
    if joined.is_err_and(|e| e.is_panic()) {
        stopper.stop(StopReason::Crashed {
            what: "a sender task".into(),
        });
    }
}

fn backoff(settings: &Settings, retry: u32) -> Duration {
    let base = settings.backoff.as_secs_f64() * 2f64.powi(retry.saturating_sub(1).min(16) as i32);
    let capped = base.min(30.0);
    Duration::from_secs_f64(rand::rng().random_range(capped / 2.0..=capped.max(0.001)))
}

/// How a recipient's delivery ended.
struct Settled {
    outcome: Outcome,
    /// Whether its attempt was recorded (then its outcome must be too).
    recorded: bool,
    /// Requests since the attempt record: what the outcome record adds to the
    /// stored count (an earlier definite failure was recorded on its own).
    since_record: u32,
}

/// Where one recipient's delivery stands.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Requests made for this recipient.
    attempts: u32,
    /// Whether an attempt record is open (its outcome must be recorded).
    recorded: bool,
    /// Requests since that record.
    since_record: u32,
}

impl Progress {
    fn end(
        self,
        class: OutcomeClass,
        status: Option<u16>,
        text: Option<String>,
    ) -> Option<Settled> {
        Some(Settled {
            outcome: Outcome {
                class,
                attempts: self.attempts,
                status,
                text,
            },
            recorded: self.recorded,
            since_record: self.since_record,
        })
    }
}

/// What one recipient's delivery works with.
struct Sender<'a> {
    target: &'a Target,
    settings: &'a Settings,
    journal: &'a JournalHandle,
    stopper: &'a Stopper,
    stats: &'a Stats,
    inflight: &'a InFlight,
}

impl Sender<'_> {
    async fn deliver_one(&self, request: RenderedRequest, mut slot: Slot, judge: &Mutex<Judge>) {
        let stats = self.stats;
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let settled = self.attempt_until_settled(&request, &mut slot).await;
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        // None: the attempt could not be recorded, so nothing was sent and
        // nothing more can be recorded; the run is stopping.
        let Some(Settled {
            outcome,
            recorded,
            since_record,
        }) = settled
        else {
            return;
        };
        let class = outcome.class;
        tracing::debug!(
            key = %request.key,
            row = %request.origin,
            outcome = class.as_str(),
            attempts = outcome.attempts,
            status = ?outcome.status,
            text = outcome.text.as_deref().unwrap_or(""),
            "delivered"
        );
        // A recipient never recorded as attempted stays pending: there is
        // nothing to settle, and the next run takes it up as new.
        if recorded {
            let record = OutcomeEntry {
                key: request.key.clone(),
                outcome: Outcome {
                    attempts: since_record,
                    ..outcome.clone()
                },
            };
            if let Err(error) = self.journal.settled(record).await {
                self.stopper.stop(error.into());
            }
        }
        stats.counter(class).fetch_add(1, Ordering::Relaxed);
        judge_outcome(&outcome, self.settings, self.stopper, stats, judge);
        // Only now, with the outcome durable, is the slot given back.
        drop(slot);
    }

    async fn attempt_until_settled(
        &self,
        request: &RenderedRequest,
        slot: &mut Slot,
    ) -> Option<Settled> {
        let (target, settings, stopper, stats) =
            (self.target, self.settings, self.stopper, self.stats);
        let mut p = Progress::default();
        loop {
            let permit = tokio::select! {
                biased;
                _ = stopper.stopped() => return p.end(OutcomeClass::Skipped, None, Some(STOPPED.into())),
                p = target.budget.acquire() => p,
            };
            let held_since = Instant::now();
            if stopper.is_stopped() {
                return p.end(OutcomeClass::Skipped, None, Some(STOPPED.into()));
            }
            if let Some(gate) = &target.gate {
                if !gate() {
                    stopper.stop(StopReason::WindowClosed);
                    return p.end(
                        OutcomeClass::Skipped,
                        None,
                        Some("the send window closed".into()),
                    );
                }
            }
            if !p.recorded {
                // Recorded only now that the request holds its rate permit, so
                // that after a crash `unknown` means "may really have been
                // sent", not "was waiting for its turn". Retries reuse it.
                let entry = AttemptEntry {
                    key: request.key.clone(),
                    file: request.origin.file.display().to_string(),
                    row: request.origin.line,
                };
                if let Err(error) = self.journal.attempted(entry).await {
                    stopper.stop(error.into());
                    return None;
                }
                p.recorded = true;
                p.since_record = 0;
            }
            let launched = tokio::select! {
                biased;
                _ = stopper.stopped() => return p.end(OutcomeClass::Skipped, None, Some(STOPPED.into())),
                l = permit.launch() => l,
            };
            p.attempts += 1;
            p.since_record += 1;
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let reply = self.exchange(request, slot).await;
            let answer = match &reply {
                Reply::Sent { .. } | Reply::Rejected { .. } => Answer::Accepted,
                Reply::Retryable {
                    status: Some(429),
                    retry_after,
                    ..
                } => Answer::RateLimited {
                    retry_after: *retry_after,
                },
                _ => Answer::Other,
            };
            let answered = matches!(
                reply,
                Reply::Sent { .. }
                    | Reply::Rejected { .. }
                    | Reply::Fatal { .. }
                    | Reply::Retryable {
                        status: Some(_),
                        ..
                    }
            );
            if answered {
                self.inflight.observe(held_since.elapsed());
            }
            launched.answered(answer);
            let retry_allowed = p.attempts <= settings.retries;
            match reply {
                Reply::Sent { status, result } => {
                    return p.end(OutcomeClass::Sent, Some(status), result);
                }
                Reply::Rejected { status, text } => {
                    return p.end(OutcomeClass::Rejected, Some(status), Some(text));
                }
                Reply::Fatal { status, text } => {
                    stopper.stop(StopReason::Fatal {
                        status,
                        text: text.clone(),
                    });
                    return p.end(OutcomeClass::Skipped, Some(status), Some(text));
                }
                Reply::Unknown { text } if !(settings.retry_unknown && retry_allowed) => {
                    return p.end(OutcomeClass::Unknown, None, Some(text));
                }
                Reply::Unknown { .. } => {
                    if self.wait(backoff(settings, p.attempts), slot).await {
                        return p.end(
                            OutcomeClass::Unknown,
                            None,
                            Some("run stopped before the retry".into()),
                        );
                    }
                }
                Reply::Retryable {
                    status,
                    text,
                    retry_after,
                } => {
                    let mut delay = backoff(settings, p.attempts);
                    if status == Some(429) {
                        stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        // Honoured for this recipient always; the budget
                        // decides whether the whole bot pauses too.
                        delay = delay.max(retry_after.unwrap_or_default());
                    }
                    if !retry_allowed {
                        return p.end(OutcomeClass::Retryable, status, Some(text));
                    }
                    // A definite answer: not delivered. Recorded before the
                    // backoff, so that a crash while waiting leaves it "failed,
                    // will be retried", not "unknown"; the next try records its
                    // attempt again once it holds its permit.
                    let interim = OutcomeEntry {
                        key: request.key.clone(),
                        outcome: Outcome {
                            class: OutcomeClass::Retryable,
                            attempts: p.since_record,
                            status,
                            text: Some(text.clone()),
                        },
                    };
                    if let Err(error) = self.journal.settled(interim).await {
                        stopper.stop(error.into());
                        return None;
                    }
                    p.recorded = false;
                    if self.wait(delay, slot).await {
                        return p.end(OutcomeClass::Skipped, status, Some(text));
                    }
                }
            }
        }
    }

    /// One HTTP exchange. A request out far longer than the round trip stops
    /// counting against the in-flight limit until it ends, so that hung
    /// requests do not starve the bot's rate.
    async fn exchange(&self, request: &RenderedRequest, slot: &mut Slot) -> Reply {
        let send = self.target.transport.send(&self.target.bot, &request.wire);
        tokio::pin!(send);
        let overdue = tokio::time::sleep(self.inflight.overdue());
        tokio::select! {
            reply = &mut send => reply,
            () = overdue => {
                slot.set_active(false);
                let reply = send.await;
                slot.set_active(true);
                reply
            }
        }
    }

    /// Waits out a backoff, not counted against the in-flight limit; true when
    /// the run stopped first.
    async fn wait(&self, delay: Duration, slot: &mut Slot) -> bool {
        slot.set_active(false);
        let stopped = wait_or_stop(delay, self.stopper).await;
        slot.set_active(true);
        stopped
    }
}

const STOPPED: &str = "run stopped before sending";

/// Sleeps, unless the run stops first (then true).
async fn wait_or_stop(delay: Duration, stopper: &Stopper) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stopper.stopped() => true,
    }
}

fn judge_outcome(
    outcome: &Outcome,
    settings: &Settings,
    stopper: &Stopper,
    stats: &Stats,
    judge: &Mutex<Judge>,
) {
    let Ok(mut j) = judge.lock() else { return };
    match outcome.class {
        OutcomeClass::Sent => {
            j.streak = 0;
            j.streak_signature = None;
            return;
        }
        OutcomeClass::Skipped => return,
        _ => {}
    }
    let signature = format!(
        "{} {}",
        outcome
            .status
            .map(|s| format!("HTTP {s}"))
            .unwrap_or_else(|| outcome.class.label().to_owned()),
        outcome.text.as_deref().unwrap_or("")
    );
    *j.texts.entry(signature.clone()).or_default() += 1;
    if j.streak_signature.as_deref() == Some(signature.as_str()) {
        j.streak += 1;
    } else {
        j.streak_signature = Some(signature.clone());
        j.streak = 1;
    }
    if j.streak >= BREAKER_THRESHOLD {
        stopper.stop(StopReason::Breaker {
            failure: signature,
            count: j.streak,
        });
    }
    drop(j);
    let failures = stats.failures();
    let attempts = stats.finished();
    // A share is judged only after 100 attempts: a few early failures say little.
    let exceeded = match settings.max_failures {
        MaxFailures::Share(_) if attempts < 100 => false,
        tolerance => tolerance.exceeded_by(failures, attempts),
    };
    if exceeded {
        stopper.stop(StopReason::MaxFailures { failures, attempts });
    }
}
