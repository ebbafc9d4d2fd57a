//! The send loop.
//!
//! Pacing: each request waits for its bot's [`BotBudget`] slot, so requests
//! are spaced evenly at the bot's rate whatever the concurrency; `concurrency`
//! only bounds how many are in flight (a semaphore permit is held from the
//! attempt record to the outcome record, so at most `concurrency` recipients
//! can ever be "attempted without outcome").
//!
//! Durability: a recipient is journaled as attempted (durably, group-committed)
//! before its request leaves, and its outcome is journaled before its permit
//! is released. A crash therefore leaves at most `concurrency` recipients whose
//! outcome is unknown, and none that was sent without a record.
//!
//! Outcome classes (SPEC section 6): sent; rejected (not retried); retryable
//! (429 honouring Retry-After and slowing the bot, 5xx, connection refused:
//! retried with exponential backoff and full jitter up to `retries`, then
//! `failed`); unknown (timeout or broken connection after writing: not retried
//! unless `retry_unknown`); fatal (401/403: the run stops at once). A breaker
//! stops the run after 20 final failures in a row that look the same, and
//! `max_failures` stops it past its share or count. A stop never abandons a
//! recipient silently: one taken but not sent is recorded `not-sent`, and the
//! next run picks it up.

pub mod budget;
pub mod journal;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};

pub use budget::{BotBudget, Budgets};
pub use journal::{AttemptEntry, Journal, JournalHandle, NullJournal, OutcomeEntry};

use crate::api::{BotAuth, Reply, Transport};
use crate::campaign::MaxFailures;
use crate::render::RenderedRequest;

/// Final failures in a row, failing the same way, that trip the breaker.
pub const BREAKER_THRESHOLD: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeClass {
    Sent,
    Rejected,
    /// Retryable failures that exhausted their retries (definitely not delivered).
    Failed,
    /// May or may not have been delivered.
    Unknown,
    /// Taken from the audience, but the run stopped before it was sent.
    NotSent,
}

impl OutcomeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Sent => "sent",
            OutcomeClass::Rejected => "rejected",
            OutcomeClass::Failed => "failed",
            OutcomeClass::Unknown => "unknown",
            OutcomeClass::NotSent => "not-sent",
        }
    }
}

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
            OutcomeClass::Failed => &self.failed,
            OutcomeClass::Unknown => &self.unknown,
            OutcomeClass::NotSent => &self.not_sent,
        }
    }

    /// Deliveries that ended in failure (rejected, failed, unknown).
    pub fn failures(&self) -> u64 {
        self.get(OutcomeClass::Rejected)
            + self.get(OutcomeClass::Failed)
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
    let concurrency = settings.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let judge = Arc::new(Mutex::new(Judge::default()));
    let settings = Arc::new(settings);
    let target = Arc::new(target);
    let mut tasks = tokio::task::JoinSet::new();

    loop {
        if stopper.is_stopped() {
            break;
        }
        // Biased: once the run stops, a free permit must not win the race.
        let permit = tokio::select! {
            biased;
            _ = stopper.stopped() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
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
        while tasks.try_join_next().is_some() {}
        let (target, settings, journal, stopper, stats, judge) = (
            target.clone(),
            settings.clone(),
            journal.clone(),
            stopper.clone(),
            stats.clone(),
            judge.clone(),
        );
        tasks.spawn(async move {
            deliver_one(
                request, &target, &settings, &journal, &stopper, &stats, &judge,
            )
            .await;
            drop(permit);
        });
    }
    // Stop reading the audience; the producer sees the closed channel.
    requests.close();
    let drain = settings.drain;
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        // Still in flight after the bound: their attempts are recorded, their
        // outcomes are not, so the state store reads them as unknown.
        tasks.abort_all();
    }

    let judge = judge.lock().map(|j| j.texts.clone()).unwrap_or_default();
    let mut top: Vec<(String, u64)> = judge.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    DeliveryResult {
        sent: stats.get(OutcomeClass::Sent),
        rejected: stats.get(OutcomeClass::Rejected),
        failed: stats.get(OutcomeClass::Failed),
        unknown: stats.get(OutcomeClass::Unknown),
        not_sent: stats.get(OutcomeClass::NotSent),
        requests: stats.requests.load(Ordering::Relaxed),
        rate_limited: stats.rate_limited.load(Ordering::Relaxed),
        stopped: stopper.reason(),
        seconds: started.elapsed().as_secs_f64(),
        top_failures: top,
    }
}

fn backoff(settings: &Settings, retry: u32) -> Duration {
    let base = settings.backoff.as_secs_f64() * 2f64.powi(retry.saturating_sub(1).min(16) as i32);
    let capped = base.min(30.0);
    Duration::from_secs_f64(rand::rng().random_range(capped / 2.0..=capped.max(0.001)))
}

async fn deliver_one(
    request: RenderedRequest,
    target: &Target,
    settings: &Settings,
    journal: &JournalHandle,
    stopper: &Stopper,
    stats: &Stats,
    judge: &Mutex<Judge>,
) {
    let entry = AttemptEntry {
        key: request.key.clone(),
        file: request.origin.file.display().to_string(),
        row: request.origin.line,
    };
    if let Err(error) = journal.attempted(entry).await {
        stopper.stop(StopReason::Journal { error });
        return;
    }
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let outcome = attempt_until_settled(&request, target, settings, stopper, stats).await;
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
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
    let record = OutcomeEntry {
        key: request.key.clone(),
        outcome: outcome.clone(),
    };
    if let Err(error) = journal.settled(record).await {
        stopper.stop(StopReason::Journal { error });
    }
    stats.counter(class).fetch_add(1, Ordering::Relaxed);
    judge_outcome(&outcome, settings, stopper, stats, judge);
}

async fn attempt_until_settled(
    request: &RenderedRequest,
    target: &Target,
    settings: &Settings,
    stopper: &Stopper,
    stats: &Stats,
) -> Outcome {
    let mut attempts = 0u32;
    let not_sent = |attempts, status, text: String| Outcome {
        class: OutcomeClass::NotSent,
        attempts,
        status,
        text: Some(text),
    };
    loop {
        tokio::select! {
            biased;
            _ = stopper.stopped() => return not_sent(attempts, None, "run stopped before sending".into()),
            _ = target.budget.acquire() => {}
        }
        if stopper.is_stopped() {
            return not_sent(attempts, None, "run stopped before sending".into());
        }
        if let Some(gate) = &target.gate {
            if !gate() {
                stopper.stop(StopReason::WindowClosed);
                return not_sent(attempts, None, "the send window closed".into());
            }
        }
        attempts += 1;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let reply = target.transport.send(&target.bot, &request.wire).await;
        let retry_allowed = attempts <= settings.retries;
        match reply {
            Reply::Sent { status, result } => {
                target.budget.on_success();
                return Outcome {
                    class: OutcomeClass::Sent,
                    attempts,
                    status: Some(status),
                    text: result,
                };
            }
            Reply::Rejected { status, text } => {
                return Outcome {
                    class: OutcomeClass::Rejected,
                    attempts,
                    status: Some(status),
                    text: Some(text),
                };
            }
            Reply::Fatal { status, text } => {
                stopper.stop(StopReason::Fatal {
                    status,
                    text: text.clone(),
                });
                return not_sent(attempts, Some(status), text);
            }
            Reply::Unknown { text } if !(settings.retry_unknown && retry_allowed) => {
                return Outcome {
                    class: OutcomeClass::Unknown,
                    attempts,
                    status: None,
                    text: Some(text),
                };
            }
            Reply::Unknown { .. } => {
                if wait_or_stop(backoff(settings, attempts), stopper).await {
                    return Outcome {
                        class: OutcomeClass::Unknown,
                        attempts,
                        status: None,
                        text: Some("run stopped before the retry".into()),
                    };
                }
            }
            Reply::Retryable {
                status,
                text,
                retry_after,
            } => {
                let mut delay = backoff(settings, attempts);
                if status == Some(429) {
                    stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    target.budget.on_rate_limited(retry_after);
                    delay = delay.max(retry_after.unwrap_or_default());
                }
                if !retry_allowed {
                    return Outcome {
                        class: OutcomeClass::Failed,
                        attempts,
                        status,
                        text: Some(text),
                    };
                }
                if wait_or_stop(delay, stopper).await {
                    return not_sent(attempts, status, text);
                }
            }
        }
    }
}

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
        OutcomeClass::NotSent => return,
        _ => {}
    }
    let signature = format!(
        "{} {}",
        outcome
            .status
            .map(|s| format!("HTTP {s}"))
            .unwrap_or_else(|| outcome.class.as_str().to_owned()),
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
    let exceeded = match settings.max_failures {
        MaxFailures::Count(n) => failures > n,
        MaxFailures::Share(share) => attempts >= 100 && failures as f64 > share * attempts as f64,
    };
    if exceeded {
        stopper.stop(StopReason::MaxFailures { failures, attempts });
    }
}
