//! The delivery loop as a library, driven by a fake transport and a manual
//! clock: deterministic, no network, no sleeps.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeZone;
use smax_campaign::api::wire::{BotEndpoint, V2Send, WireRequest};
use smax_campaign::api::{BotAuth, Reply, Secret, Transport};
use smax_campaign::audience::Origin;
use smax_campaign::campaign::{ApiVersion, MaxFailures, TagStyle};
use smax_campaign::delivery::{
    deliver, BotBudget, JournalHandle, NullJournal, OutcomeClass, Settings, Stats, StopReason,
    Stopper, Target,
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
                Reply::Sent {
                    status: 200,
                    result: Some("ok".into()),
                }
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
    assert_eq!(stats.get(OutcomeClass::NotSent), 1);
}
