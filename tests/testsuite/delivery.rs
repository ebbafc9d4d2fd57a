//! The delivery loop as a library, driven by a fake transport and a manual
//! or paused clock: deterministic, no network, no sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeZone;
use smax_campaign::api::wire::{BotEndpoint, V2Send, WireRequest};
use smax_campaign::api::{ApiVersion, BotAuth, Reply, Secret, TagStyle, Transport};
use smax_campaign::audience::Origin;
use smax_campaign::campaign::MaxFailures;
use smax_campaign::delivery::{
    deliver, AttemptEntry, BotBudget, Journal, JournalError, JournalHandle, NullJournal,
    OutcomeClass, OutcomeEntry, Settings, Stats, StopReason, Stopper, Tagged, Target,
};
use smax_campaign::render::RenderedRequest;
use smax_campaign::schedule::{Clock, ManualClock, Window};

/// Answers with a scripted reply per call and advances the clock.
struct Fake {
    clock: Arc<ManualClock>,
    step: Duration,
    script: Mutex<Vec<Reply>>,
    calls: AtomicU64,
}

impl Transport for Fake {
    fn send<'a>(
        &'a self,
        _: &'a BotAuth,
        _: &'a WireRequest,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.clock.advance(self.step);
            let mut script = self.script.lock().expect("script");
            if script.is_empty() {
                sent()
            } else {
                script.remove(0)
            }
        })
    }
}

fn requests(n: usize) -> tokio::sync::mpsc::Receiver<RenderedRequest> {
    let (tx, rx) = tokio::sync::mpsc::channel(n.max(1));
    for i in 0..n {
        let body = serde_json::Map::from_iter([(
            "customer_id".to_string(),
            serde_json::Value::String(format!("C{i}")),
        )]);
        tx.try_send(RenderedRequest {
            key: format!("C{i}"),
            origin: Origin {
                file: Arc::from(std::path::Path::new("a.csv")),
                line: i as u64 + 2,
            },
            wire: WireRequest::V2(V2Send { body }),
        })
        .expect("queue");
    }
    rx
}

fn settings(concurrency: usize) -> Settings {
    Settings {
        concurrency,
        retries: 3,
        retry_unknown: false,
        max_failures: MaxFailures::Count(1000),
        backoff: Duration::from_millis(1),
        drain: Duration::from_secs(5),
    }
}

fn bot() -> Arc<BotAuth> {
    Arc::new(BotAuth {
        endpoint: BotEndpoint {
            id: "b".into(),
            tag_style: TagStyle::Quoted,
        },
        api: ApiVersion::V2,
        token: Secret::new("t".into()),
    })
}

#[tokio::test]
async fn a_run_at_2059_with_a_window_ending_2100_sends_only_until_2100() {
    let tz = chrono_tz::Asia::Ho_Chi_Minh;
    let start = tz
        .with_ymd_and_hms(2026, 11, 25, 20, 59, 0)
        .single()
        .expect("time")
        .with_timezone(&chrono::Utc);
    let clock = Arc::new(ManualClock::new(start));
    let window = Window::parse("08:00-21:00").expect("window");
    let gate_clock = clock.clone();
    let fake = Arc::new(Fake {
        clock: clock.clone(),
        step: Duration::from_secs(10),
        script: Mutex::new(vec![]),
        calls: AtomicU64::new(0),
    });
    let target = Target {
        transport: fake.clone(),
        bot: bot(),
        budget: Arc::new(BotBudget::new(100_000.0)),
        gate: Some(Arc::new(move || window.contains(gate_clock.now(), tz))),
    };
    let (journal, _thread) = JournalHandle::start(Box::new(NullJournal)).expect("journal thread");
    let result = deliver(
        requests(50),
        target,
        settings(1),
        journal,
        Stopper::default(),
        Arc::new(Stats::default()),
    )
    .await;
    // 20:59:00, :10, :20, :30, :40, :50 — then the clock reads 21:00:00.
    assert_eq!(result.sent, 6);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 6);
    assert_eq!(result.stopped, Some(StopReason::WindowClosed));
    assert!(result.stopped.as_ref().is_some_and(|r| r.is_pause()));
}

#[tokio::test]
async fn retryable_failures_are_retried_and_unknown_are_not() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let script = vec![
        Reply::Retryable {
            status: Some(503),
            text: "busy".into(),
            retry_after: None,
        },
        Reply::Retryable {
            status: None,
            text: "cannot connect".into(),
            retry_after: None,
        },
        Reply::Unknown {
            text: "timed out".into(),
        },
    ];
    let fake = Arc::new(Fake {
        clock,
        step: Duration::ZERO,
        script: Mutex::new(script),
        calls: AtomicU64::new(0),
    });
    let target = Target {
        transport: fake.clone(),
        bot: bot(),
        budget: Arc::new(BotBudget::new(100_000.0)),
        gate: None,
    };
    let (journal, _thread) = JournalHandle::start(Box::new(NullJournal)).expect("journal thread");
    let result = deliver(
        requests(2),
        target,
        settings(1),
        journal,
        Stopper::default(),
        Arc::new(Stats::default()),
    )
    .await;
    // First recipient: 503, refused connection, then "unknown" (not retried).
    // Second recipient: sent at once.
    assert_eq!(result.unknown, 1);
    assert_eq!(result.sent, 1);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
    assert_eq!(result.stopped, None);
}

#[tokio::test]
async fn a_fatal_answer_stops_the_run_and_leaves_the_rest_not_sent() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let script = vec![Reply::Fatal {
        status: 401,
        text: "invalid token".into(),
    }];
    let fake = Arc::new(Fake {
        clock,
        step: Duration::ZERO,
        script: Mutex::new(script),
        calls: AtomicU64::new(0),
    });
    let target = Target {
        transport: fake.clone(),
        bot: bot(),
        budget: Arc::new(BotBudget::new(100_000.0)),
        gate: None,
    };
    let (journal, _thread) = JournalHandle::start(Box::new(NullJournal)).expect("journal thread");
    let stats = Arc::new(Stats::default());
    let result = deliver(
        requests(10),
        target,
        settings(1),
        journal,
        Stopper::default(),
        stats.clone(),
    )
    .await;
    assert!(matches!(
        result.stopped,
        Some(StopReason::Fatal { status: 401, .. })
    ));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert_eq!(result.sent, 0);
    assert_eq!(stats.get(OutcomeClass::Skipped), 1);
}

/// Answers each call after a delay, both chosen by the call's number; notes
/// when each call was made and how many were out at once.
struct Timed {
    answer: Box<dyn Fn(u64) -> (Duration, Reply) + Send + Sync>,
    calls: Mutex<Vec<tokio::time::Instant>>,
    out: AtomicU64,
    most_out: AtomicU64,
}

impl Timed {
    fn new(answer: impl Fn(u64) -> (Duration, Reply) + Send + Sync + 'static) -> Arc<Timed> {
        Arc::new(Timed {
            answer: Box::new(answer),
            calls: Mutex::new(Vec::new()),
            out: AtomicU64::new(0),
            most_out: AtomicU64::new(0),
        })
    }

    /// Calls per second from the first call to the last.
    fn call_rate(&self) -> f64 {
        let calls = self.calls.lock().expect("calls");
        let span = *calls.last().expect("calls") - calls[0];
        (calls.len() - 1) as f64 / span.as_secs_f64()
    }
}

impl Transport for Timed {
    fn send<'a>(
        &'a self,
        _: &'a BotAuth,
        _: &'a WireRequest,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>> {
        Box::pin(async move {
            let n = {
                let mut calls = self.calls.lock().expect("calls");
                calls.push(tokio::time::Instant::now());
                calls.len() as u64 - 1
            };
            let out = self.out.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_out.fetch_max(out, Ordering::SeqCst);
            let (delay, reply) = (self.answer)(n);
            tokio::time::sleep(delay).await;
            self.out.fetch_sub(1, Ordering::SeqCst);
            reply
        })
    }
}

fn sent() -> Reply {
    Reply::Sent {
        status: 200,
        result: Some("ok".into()),
    }
}

/// Delivers `n` requests through `transport` at `rate` with at most `cap` in
/// flight; the journal writes on the task, so a paused clock stays exact.
async fn deliver_timed(transport: Arc<Timed>, rate: f64, cap: usize, n: usize) -> u64 {
    let target = Target {
        transport,
        bot: bot(),
        budget: Arc::new(BotBudget::new(rate)),
        gate: None,
    };
    let mut settings = settings(cap);
    settings.retries = 10;
    settings.drain = Duration::from_secs(60);
    let journal = JournalHandle::immediate(Box::new(NullJournal));
    deliver_all(n, target, settings, journal).await.sent
}

async fn deliver_all(
    n: usize,
    target: Target,
    settings: Settings,
    journal: JournalHandle,
) -> smax_campaign::delivery::DeliveryResult {
    let stats = Arc::new(Stats::default());
    deliver(
        requests(n),
        target,
        settings,
        journal,
        Stopper::default(),
        stats,
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_one_second_round_trip_still_reaches_the_rate() {
    let transport = Timed::new(|_| (Duration::from_secs(1), sent()));
    let sent = deliver_timed(transport.clone(), 25.0, 64, 300).await;
    assert_eq!(sent, 300);
    let rate = transport.call_rate();
    assert!(rate >= 24.5, "{rate}/s");
    // About 25 out at once, as Little's law wants; never more than the cap.
    let most = transport.most_out.load(Ordering::SeqCst);
    assert!((25..=64).contains(&most), "{most}");
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_cap_holds_even_when_the_round_trip_wants_more() {
    let transport = Timed::new(|_| (Duration::from_secs(1), sent()));
    let sent = deliver_timed(transport.clone(), 25.0, 8, 80).await;
    assert_eq!(sent, 80);
    assert_eq!(transport.most_out.load(Ordering::SeqCst), 8);
    // Eight at a time, a second each.
    assert!(transport.call_rate() < 9.0, "{}", transport.call_rate());
}

#[tokio::test(start_paused = true)]
async fn hung_requests_do_not_hold_back_the_rate() {
    // Every tenth request hangs for 10 s, then times out; the rest answer in 50 ms.
    let transport = Timed::new(|n| {
        if n % 10 == 9 {
            let unknown = Reply::Unknown {
                text: "timed out".into(),
            };
            (Duration::from_secs(10), unknown)
        } else {
            (Duration::from_millis(50), sent())
        }
    });
    deliver_timed(transport.clone(), 25.0, 64, 400).await;
    let rate = transport.call_rate();
    assert!(rate >= 24.0, "{rate}/s");
}

#[tokio::test(start_paused = true)]
async fn random_429s_do_not_collapse_the_rate() {
    use rand::{Rng, SeedableRng};
    let draws: Vec<bool> = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        (0..2000).map(|_| rng.random_bool(0.1)).collect()
    };
    let transport = Timed::new(move |n| {
        let reply = if draws.get(n as usize).copied().unwrap_or(false) {
            Reply::Retryable {
                status: Some(429),
                text: "rate limit exceeded".into(),
                retry_after: Some(Duration::from_secs(1)),
            }
        } else {
            sent()
        };
        (Duration::from_millis(50), reply)
    });
    let sent = deliver_timed(transport.clone(), 25.0, 64, 600).await;
    assert_eq!(sent, 600, "everyone got through, 429s retried");
    let rate = transport.call_rate();
    assert!(rate >= 22.0, "{rate}/s");
}

/// Records attempts with the number of rate permits handed out at that moment.
struct PermitWitness {
    budget: Arc<BotBudget>,
    log: Arc<Mutex<Vec<(String, u64)>>>,
    /// Outcomes as recorded: key, class, requests the record adds.
    events: Arc<Mutex<Vec<(String, OutcomeClass, u32)>>>,
}

impl Journal for PermitWitness {
    fn write(
        &mut self,
        attempts: &[Tagged<AttemptEntry>],
        outcomes: &[Tagged<OutcomeEntry>],
    ) -> Result<(), JournalError> {
        let permits = self.budget.permits();
        let mut log = self.log.lock().expect("log");
        log.extend(attempts.iter().map(|a| (a.record.key.clone(), permits)));
        let mut events = self.events.lock().expect("events");
        events.extend(outcomes.iter().map(|o| {
            (
                o.record.key.clone(),
                o.record.outcome.class,
                o.record.outcome.attempts,
            )
        }));
        Ok(())
    }
}

/// Fails each recipient's first request with a 500; checks that every request
/// leaves after its recipient's attempt record.
struct AfterRecord {
    log: Arc<Mutex<Vec<(String, u64)>>>,
    tried: Mutex<std::collections::HashSet<String>>,
    unrecorded: AtomicU64,
}

impl Transport for AfterRecord {
    fn send<'a>(
        &'a self,
        _: &'a BotAuth,
        request: &'a WireRequest,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>> {
        Box::pin(async move {
            let WireRequest::V2(body) = request else {
                return sent();
            };
            let key = body.body["customer_id"].as_str().unwrap_or("").to_owned();
            if !self.log.lock().expect("log").iter().any(|(k, _)| *k == key) {
                self.unrecorded.fetch_add(1, Ordering::SeqCst);
            }
            if self.tried.lock().expect("tried").insert(key) {
                Reply::Retryable {
                    status: Some(500),
                    text: "busy".into(),
                    retry_after: None,
                }
            } else {
                sent()
            }
        })
    }
}

#[tokio::test]
async fn an_attempt_is_recorded_once_its_request_holds_the_rate_permit() {
    let budget = Arc::new(BotBudget::new(200.0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let transport = Arc::new(AfterRecord {
        log: log.clone(),
        tried: Mutex::new(Default::default()),
        unrecorded: AtomicU64::new(0),
    });
    let target = Target {
        transport: transport.clone(),
        bot: bot(),
        budget: budget.clone(),
        gate: None,
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let journal = PermitWitness {
        budget: budget.clone(),
        log: log.clone(),
        events: events.clone(),
    };
    let (journal, thread) = JournalHandle::start(Box::new(journal)).expect("journal thread");
    // Ten recipients taken at once, all waiting for the rate's slots.
    let result = deliver_all(30, target, settings(10), journal).await;
    let _ = thread.join();
    assert_eq!(result.sent, 30);
    assert_eq!(transport.unrecorded.load(Ordering::SeqCst), 0);
    let log = log.lock().expect("log");
    // One attempt record per request: the definite 500 was recorded as a
    // failure before the backoff, so the retry records its attempt anew.
    assert_eq!(log.len(), 60);
    assert_eq!(result.requests, 60);
    // Per recipient: failed (one request), then sent (one more request).
    let events = events.lock().expect("events");
    for i in 0..30 {
        let key = format!("C{i}");
        let mine: Vec<(OutcomeClass, u32)> = events
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, c, n)| (*c, *n))
            .collect();
        assert_eq!(
            mine,
            [(OutcomeClass::Retryable, 1), (OutcomeClass::Sent, 1)],
            "{key}"
        );
    }
    // The n-th record was written once at least n permits were out: nobody
    // is recorded while still waiting for its turn.
    for (n, (key, permits)) in log.iter().enumerate() {
        assert!(
            *permits > n as u64,
            "{key} recorded as #{n} with {permits} permits out"
        );
    }
}

/// When the audience simply runs out, recipients still waiting to retry are
/// awaited, however long their backoff, instead of being cut off by the drain
/// bound (which applies only after a stop): otherwise a run would look
/// completed with recipients neither sent nor pending.
#[tokio::test(start_paused = true)]
async fn recipients_waiting_to_retry_are_awaited_when_the_audience_ends() {
    // The first 60 requests fail (a platform outage), the rest go through.
    let transport = Timed::new(|n| {
        let reply = if n < 60 {
            Reply::Retryable {
                status: Some(500),
                text: "down".into(),
                retry_after: None,
            }
        } else {
            sent()
        };
        (Duration::from_millis(1500), reply)
    });
    let target = Target {
        transport: transport.clone(),
        bot: bot(),
        budget: Arc::new(BotBudget::new(100.0)),
        gate: None,
    };
    let mut settings = settings(8);
    settings.retries = 10;
    settings.backoff = Duration::from_secs(2);
    settings.drain = Duration::from_secs(1);
    let journal = JournalHandle::immediate(Box::new(NullJournal));
    let result = deliver_all(30, target, settings, journal).await;
    assert_eq!(result.stopped, None);
    assert_eq!(result.sent, 30, "every recipient settled: {result:?}");
    assert_eq!(result.requests, 90);
}

/// Panics on its third call, as a bug in a transport would.
struct Panicky(AtomicU64);

impl Transport for Panicky {
    fn send<'a>(
        &'a self,
        _: &'a BotAuth,
        _: &'a WireRequest,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>> {
        Box::pin(async move {
            if self.0.fetch_add(1, Ordering::SeqCst) == 2 {
                panic!("a bug in the transport");
            }
            sent()
        })
    }
}

/// A sender task that panics stops the run: its recipient's outcome is lost,
/// and a run that lost one must not read as completed.
#[tokio::test]
async fn a_panicking_sender_stops_the_run() {
    let target = Target {
        transport: Arc::new(Panicky(AtomicU64::new(0))),
        bot: bot(),
        budget: Arc::new(BotBudget::new(1000.0)),
        gate: None,
    };
    let journal = JournalHandle::immediate(Box::new(NullJournal));
    let result = deliver_all(5, target, settings(1), journal).await;
    assert!(
        matches!(result.stopped, Some(StopReason::Crashed { .. })),
        "{:?}",
        result.stopped
    );
}
