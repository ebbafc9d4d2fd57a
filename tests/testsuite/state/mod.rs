//! The state store and its locks, tested as a contract that every backend keeps.
//!
//! - [`conformance`]: the [`StateStore`] contract, as tests written against
//!   `Box<dyn StateStore>` only, each generic over a [`conformance::Backend`] (a place for
//!   one test's store, its [`state::StateLocation`], a store stamped by a given
//!   clock); and `conformance_tests!`, which makes every one of them a `#[test]` for one
//!   backend.
//! - [`sqlite`]: `SqliteBackend`, its instance of the suite (`state::sqlite::<test>`), and
//!   the tests of what only the SQLite file has (zero-length, foreign and damaged files,
//!   the application id, schema versions, the write-ahead log, the lock files, the
//!   throughput measurement).
//! - here: the records the tests write, shared by both.
//!
//! - [`postgres`]: `PostgresBackend` (a database of its own per test on the server that
//!   `SMAX_TEST_DATABASE_URL` names; skipped loudly without one, failed in CI), and what
//!   only the shared store has (schema versions, migrations under a lock, lease fencing,
//!   a lost connection, passwords).
//!
//! # Adding a backend
//!
//! A `Backend` impl (`fresh` makes an empty place for one test's store and removes it
//! when dropped, `location` names it as `--state` would, `open` returns a store that
//! stamps its records with the given clock, `available` says whether it can run here),
//! the line `super::conformance::conformance_tests!(ItsBackend);` in its file, and a
//! `mod` line below. Every contract test then runs again for it, cross-process locks
//! included.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use smax_campaign::state::{
    self, Attempt, Begin, DeliveryRow, Fingerprint, OutcomeClass, OutcomeRecord, RunStart,
    StateStore,
};

mod conformance;
pub mod postgres;
mod sqlite;

pub const T0: i64 = 1_795_000_000_000; // 2026-11-17T...Z, in milliseconds

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(T0)))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

/// [`T0`] plus `secs`, as the store returns times.
pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(T0 + secs * 1000).unwrap()
}

pub fn fingerprint(message: &str) -> Fingerprint {
    let parts: BTreeMap<String, String> = [
        ("bot", "64f0c2a1e4b0"),
        ("api", "v2"),
        ("message", message),
        ("tag", "POST_PURCHASE_UPDATE"),
        ("attributes", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Fingerprint::new(parts)
}

pub fn start(run_id: &str, message: &str) -> RunStart {
    let (campaign, occurrence) = match run_id.split_once('@') {
        Some((c, o)) => (c.to_owned(), Some(o.to_owned())),
        None => (run_id.to_owned(), None),
    };
    RunStart {
        run_id: run_id.to_owned(),
        campaign,
        occurrence,
        fingerprint: fingerprint(message),
    }
}

pub fn attempt(key: &str, row: u64) -> Attempt {
    Attempt {
        key: key.to_owned(),
        source: "audiences/vip.csv".to_owned(),
        row,
    }
}

pub fn outcome(
    key: &str,
    class: OutcomeClass,
    status: Option<u16>,
    text: Option<&str>,
) -> OutcomeRecord {
    OutcomeRecord {
        key: key.to_owned(),
        class,
        attempts: 1,
        status,
        platform_text: text.map(str::to_owned),
    }
}

pub fn by_key(rows: &[DeliveryRow], key: &str) -> DeliveryRow {
    rows.iter().find(|r| r.key == key).cloned().unwrap()
}

/// Fills run `bf` with: u1 sent, u2 rejected, u3 retryable, u4 still attempted, u5 skipped.
/// Attempts at [`T0`], outcomes a second later.
pub fn populated(store: &mut dyn StateStore, clock: &Clock) {
    assert_eq!(store.begin_run(&start("bf", "hi")).unwrap(), Begin::New);
    let batch: Vec<Attempt> = (1..=4).map(|i| attempt(&format!("u{i}"), i + 1)).collect();
    store.record_attempts("bf", &batch).unwrap();
    clock.advance(1);
    store
        .record_outcomes(
            "bf",
            &[
                outcome("u1", OutcomeClass::Sent, Some(200), Some("ok")),
                outcome(
                    "u2",
                    OutcomeClass::Rejected,
                    Some(400),
                    Some("user blocked the bot"),
                ),
                OutcomeRecord {
                    attempts: 4,
                    ..outcome(
                        "u3",
                        OutcomeClass::Retryable,
                        Some(503),
                        Some("upstream down"),
                    )
                },
                OutcomeRecord {
                    attempts: 0,
                    ..outcome(
                        "u5",
                        OutcomeClass::Skipped,
                        None,
                        Some("text over the limit"),
                    )
                },
            ],
        )
        .unwrap();
}

/// Everything a store holds, as its reads return it: every run, and every run's
/// deliveries.
pub fn everything(store: &dyn StateStore) -> Vec<(state::RunSummary, Vec<DeliveryRow>)> {
    store
        .runs(None)
        .unwrap()
        .into_iter()
        .map(|run| {
            let rows = store.deliveries(&run.run_id, &[], None).unwrap();
            (run, rows)
        })
        .collect()
}
