//! The [`StateStore`] contract, for every backend: each test here is a function generic over
//! a [`Backend`] that sees the store only as `Box<dyn StateStore>` (or opens it through
//! `state::{open, create, open_read_only}`), and `conformance_tests!(SomeBackend)` makes
//! each one a `#[test]` of that name in the module that invokes it. A function left out of
//! the macro's list is dead code, which the lints refuse.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use smax_campaign::state::{
    self, key_hash, Begin, JournalBatch, LockError, LockName, OutcomeClass, OutcomeRecord,
    RunStatus, StateError, StateLocation, StateStore,
};

use super::{at, attempt, by_key, everything, fingerprint, outcome, populated, start, Clock};

/// A place where one test keeps one store, of one backend.
pub trait Backend: Sized {
    /// A new place with no store in it yet, for one test; whatever it made is removed
    /// when it is dropped.
    fn fresh() -> Self;

    /// The place as `--state` names it: what `state::{open, create, open_read_only}`
    /// open, here and in another process.
    fn location(&self) -> StateLocation;

    /// A new read-write handle on the store, created when there is none yet, that
    /// stamps its records with `clock`'s time. Two calls give two handles, as two
    /// processes would have.
    fn open(&self, clock: &Clock) -> Box<dyn StateStore>;

    /// Whether this backend can be tested here (a server it needs may be absent, and
    /// then it says so loudly); the tests of an unavailable backend pass without running.
    fn available() -> bool {
        true
    }
}

/// Makes every contract test a `#[test]` for `$backend`, named as the function that holds
/// it (so `state::sqlite::attempts_then_outcomes` for SQLite).
macro_rules! conformance_tests {
    ($backend:ty) => {
        $crate::state::conformance::conformance_tests!(
            @each $backend;
            begin_new_then_resumed_lists_fingerprint_changes,
            attempts_then_outcomes,
            reattempt_increments_attempts,
            an_attempt_never_overwrites_a_sent_or_in_flight_record,
            a_batch_is_one_transaction_across_runs,
            empty_batches_record_nothing,
            settle_in_flight_turns_attempted_into_unknown,
            prior_maps_every_recorded_key,
            handled_holds_the_key_hashes_of_the_classes_asked,
            runs_and_run_count_per_class_newest_first,
            deliveries_filter_by_class_and_limit,
            record_missed_and_finish_run,
            restore_run_puts_back_status_and_end,
            record_plan_keeps_the_latest_counts,
            a_new_instance_sees_everything,
            a_reader_works_while_a_writer_is_open,
            a_read_only_store_refuses_every_write,
            checkpoint_keeps_every_record,
            open_never_creates_a_missing_store,
            a_lock_is_exclusive_and_names_its_holder,
            lock_holder_names_the_holder_until_release,
            locks_exclude_across_two_handles,
            a_lock_waits_for_its_holder,
        );

        /// Not a test of its own: the body of the child process in the cross-process test.
        #[test]
        fn lock_child_process() {
            // Runs only as the child of the cross-process test (which sets its variables).
            $crate::state::conformance::lock_child_process();
        }

        #[test]
        fn locks_work_across_processes_and_die_with_them() {
            if !<$backend as $crate::state::conformance::Backend>::available() {
                return;
            }
            $crate::state::conformance::locks_work_across_processes_and_die_with_them::<
                $backend,
            >(module_path!());
        }
    };
    (@each $backend:ty; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                if !<$backend as $crate::state::conformance::Backend>::available() {
                    return;
                }
                $crate::state::conformance::$test::<$backend>();
            }
        )*
    };
}
pub(crate) use conformance_tests;

/// A fresh store, and the clock that stamps its records.
fn fresh<B: Backend>() -> (B, Clock, Box<dyn StateStore>) {
    let backend = B::fresh();
    let clock = Clock::new();
    let store = backend.open(&clock);
    (backend, clock, store)
}

/// A fresh store filled by [`populated`].
fn filled<B: Backend>() -> (B, Clock, Box<dyn StateStore>) {
    let (backend, clock, mut store) = fresh::<B>();
    populated(store.as_mut(), &clock);
    (backend, clock, store)
}

fn read_only<B: Backend>(backend: &B) -> Box<dyn StateStore> {
    state::open_read_only(&backend.location())
        .unwrap()
        .expect("the store exists")
}

// ---- runs and deliveries ----

pub fn begin_new_then_resumed_lists_fingerprint_changes<B: Backend>() {
    let (_backend, clock, mut store) = fresh::<B>();

    assert_eq!(store.begin_run(&start("bf", "hi")).unwrap(), Begin::New);
    store.finish_run("bf", RunStatus::Interrupted).unwrap();

    // Same fingerprint: resumed, nothing changed, running again.
    clock.advance(60);
    match store.begin_run(&start("bf", "hi")).unwrap() {
        Begin::Resumed { previous, changed } => {
            assert!(changed.is_empty());
            assert_eq!(previous.status, RunStatus::Interrupted);
            assert_eq!(previous.started, at(0));
            assert_eq!(previous.fingerprint_digest, fingerprint("hi").digest);
        }
        Begin::New => panic!("expected a resumed run"),
    }
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.finished, None);
    store.finish_run("bf", RunStatus::Completed).unwrap();

    // Changed message: the change is listed, nothing is modified.
    let changed_start = start("bf", "hello");
    match store.begin_run(&changed_start).unwrap() {
        Begin::Resumed { previous, changed } => {
            assert_eq!(previous.status, RunStatus::Completed);
            assert_eq!(changed.len(), 1);
            assert_eq!(changed[0].part, "message");
            assert_eq!(changed[0].old, "hi");
            assert_eq!(changed[0].new, "hello");
        }
        Begin::New => panic!("expected a resumed run"),
    }
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!(run.fingerprint_digest, fingerprint("hi").digest);
    assert_eq!(
        run.status,
        RunStatus::Completed,
        "a refused resume changes nothing"
    );

    // Accepted: the new fingerprint is stored, the run is running, a re-begin is clean.
    store
        .accept_fingerprint("bf", &changed_start.fingerprint)
        .unwrap();
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!(run.fingerprint_digest, fingerprint("hello").digest);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.finished, None);
    assert_eq!(run.started, at(0), "the run keeps its start");
    match store.begin_run(&changed_start).unwrap() {
        Begin::Resumed { changed, .. } => assert!(changed.is_empty()),
        Begin::New => panic!("expected a resumed run"),
    }

    let err = store
        .accept_fingerprint("nope", &changed_start.fingerprint)
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownRun { .. }), "{err}");
}

pub fn attempts_then_outcomes<B: Backend>() {
    let (_backend, _clock, mut store) = filled::<B>();

    let rows = store.deliveries("bf", &[], None).unwrap();
    assert_eq!(rows.len(), 5);
    let u1 = by_key(&rows, "u1");
    assert_eq!(u1.class, OutcomeClass::Sent);
    assert_eq!(u1.attempts, 1);
    assert_eq!(u1.status, Some(200));
    assert_eq!(u1.platform_text.as_deref(), Some("ok"));
    assert_eq!(u1.source, "audiences/vip.csv");
    assert_eq!(u1.row, 2);
    assert_eq!(u1.first_attempt, at(0));
    assert_eq!(u1.last_update, at(1));
    assert_eq!(by_key(&rows, "u3").attempts, 4, "retries count as requests");
    let u4 = by_key(&rows, "u4");
    assert_eq!(
        (u4.class, u4.attempts, u4.status),
        (OutcomeClass::Attempted, 1, None)
    );
    let u5 = by_key(&rows, "u5");
    assert_eq!((u5.class, u5.attempts), (OutcomeClass::Skipped, 0));
    assert_eq!(
        (u5.source.as_str(), u5.row),
        ("", 0),
        "no attempt, no source"
    );

    let err = store
        .record_attempts("nope", &[attempt("x", 1)])
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownRun { .. }));
    // Nothing of a failed call is kept.
    assert!(store.deliveries("nope", &[], None).unwrap().is_empty());
    let err = store
        .record_outcomes("nope", &[outcome("x", OutcomeClass::Sent, Some(200), None)])
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownRun { .. }), "{err}");
    assert_eq!(store.runs(None).unwrap().len(), 1, "no run appears");
}

pub fn reattempt_increments_attempts<B: Backend>() {
    let (_backend, clock, mut store) = filled::<B>();

    clock.advance(10);
    let moved = state::Attempt {
        key: "u2".to_owned(),
        source: "audiences/new.csv".to_owned(),
        row: 9,
    };
    store.record_attempts("bf", &[moved]).unwrap();
    let u2 = by_key(&store.deliveries("bf", &[], None).unwrap(), "u2");
    assert_eq!((u2.class, u2.attempts), (OutcomeClass::Attempted, 2));
    assert_eq!((u2.source.as_str(), u2.row), ("audiences/new.csv", 9));
    assert_eq!(u2.status, None, "the previous outcome no longer applies");
    assert_eq!(u2.platform_text, None);
    assert_eq!(u2.first_attempt, at(0));
    assert_eq!(u2.last_update, at(11));

    store
        .record_outcomes(
            "bf",
            &[OutcomeRecord {
                attempts: 2,
                ..outcome("u2", OutcomeClass::Sent, Some(200), Some("ok"))
            }],
        )
        .unwrap();
    let u2 = by_key(&store.deliveries("bf", &[], None).unwrap(), "u2");
    assert_eq!(
        (u2.class, u2.attempts),
        (OutcomeClass::Sent, 3),
        "1 + 2 requests"
    );
}

/// A new attempt is a compare-and-set on the stored class: a batch that would re-attempt
/// a recipient recorded as sent, or one in flight, records nothing at all.
pub fn an_attempt_never_overwrites_a_sent_or_in_flight_record<B: Backend>() {
    let (_backend, clock, mut store) = filled::<B>();
    let before = everything(store.as_ref());
    clock.advance(5);
    for taken in ["u1", "u4"] {
        let err = store
            .record_attempts("bf", &[attempt("u9", 10), attempt(taken, 2)])
            .unwrap_err();
        assert!(matches!(err, StateError::Conflict(_)), "{taken}: {err}");
        assert!(err.to_string().contains("nothing of this batch"), "{err}");
        assert_eq!(
            everything(store.as_ref()),
            before,
            "{taken}: nothing recorded"
        );
    }
    // What a resume may send again is attempted again.
    store
        .record_attempts(
            "bf",
            &[attempt("u2", 3), attempt("u3", 4), attempt("u5", 6)],
        )
        .unwrap();
    let rows = store
        .deliveries("bf", &[OutcomeClass::Attempted], None)
        .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
}

/// One batch names several runs: all of it is recorded, or (when it names a run that does
/// not exist) none of it.
pub fn a_batch_is_one_transaction_across_runs<B: Backend>() {
    let (_backend, clock, mut store) = fresh::<B>();
    store.begin_run(&start("a", "hi")).unwrap();
    store.begin_run(&start("b", "hi")).unwrap();
    let owned = |run: &str| -> std::sync::Arc<str> { run.into() };
    let sent = |key: &str| outcome(key, OutcomeClass::Sent, Some(200), None);

    store
        .record_batch(&JournalBatch {
            attempts: vec![
                (owned("a"), attempt("x1", 2)),
                (owned("b"), attempt("y1", 2)),
            ],
            outcomes: vec![
                (owned("b"), sent("y1")),
                (
                    owned("a"),
                    OutcomeRecord {
                        attempts: 0,
                        ..outcome("x0", OutcomeClass::Skipped, None, Some("no phone"))
                    },
                ),
            ],
        })
        .unwrap();
    let mut a: Vec<_> = store
        .deliveries("a", &[], None)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.class))
        .collect();
    a.sort();
    assert_eq!(
        a,
        [
            ("x0".to_owned(), OutcomeClass::Skipped),
            ("x1".to_owned(), OutcomeClass::Attempted)
        ]
    );
    let y1 = by_key(&store.deliveries("b", &[], None).unwrap(), "y1");
    assert_eq!(
        (y1.class, y1.attempts, y1.status),
        (OutcomeClass::Sent, 1, Some(200)),
        "an outcome closes the attempt of the same batch"
    );

    let before = everything(store.as_ref());
    clock.advance(5);
    let failing = [
        JournalBatch {
            attempts: vec![
                (owned("a"), attempt("x2", 3)),
                (owned("nope"), attempt("z", 2)),
                (owned("b"), attempt("y2", 3)),
            ],
            outcomes: vec![(owned("a"), sent("x1"))],
        },
        JournalBatch {
            attempts: vec![(owned("a"), attempt("x2", 3))],
            outcomes: vec![
                (
                    owned("b"),
                    outcome("y1", OutcomeClass::Rejected, Some(400), None),
                ),
                (owned("nope"), sent("z")),
            ],
        },
    ];
    for batch in &failing {
        let err = store.record_batch(batch).unwrap_err();
        assert!(matches!(err, StateError::UnknownRun { .. }), "{err}");
        assert_eq!(
            everything(store.as_ref()),
            before,
            "a failed batch records nothing"
        );
    }
}

pub fn empty_batches_record_nothing<B: Backend>() {
    let (_backend, _clock, mut store) = fresh::<B>();
    assert_eq!(store.begin_run(&start("bf", "hi")).unwrap(), Begin::New);
    store.record_attempts("bf", &[]).unwrap();
    store.record_outcomes("bf", &[]).unwrap();
    store.record_batch(&JournalBatch::default()).unwrap();
    assert_eq!(store.runs(None).unwrap().len(), 1);
    assert!(store.deliveries("bf", &[], None).unwrap().is_empty());
}

pub fn settle_in_flight_turns_attempted_into_unknown<B: Backend>() {
    let (_backend, clock, mut store) = filled::<B>();
    store
        .record_attempts("bf", &[attempt("u6", 7), attempt("u7", 8)])
        .unwrap();
    clock.advance(5);

    assert_eq!(store.settle_in_flight("bf").unwrap(), 3); // u4, u6, u7
    assert_eq!(store.settle_in_flight("bf").unwrap(), 0);
    let unknown = store
        .deliveries("bf", &[OutcomeClass::Unknown], None)
        .unwrap();
    let keys: Vec<&str> = unknown.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["u4", "u6", "u7"]);
    assert!(unknown[0]
        .platform_text
        .as_deref()
        .unwrap()
        .contains("in flight"));
    assert_eq!((unknown[0].status, unknown[0].last_update), (None, at(6)));
    assert!(store
        .deliveries("bf", &[OutcomeClass::Attempted], None)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.prior("bf").unwrap().get("u1"),
        Some(OutcomeClass::Sent),
        "settled outcomes stay"
    );
    assert!(matches!(
        store.settle_in_flight("nope"),
        Err(StateError::UnknownRun { .. })
    ));
}

pub fn prior_maps_every_recorded_key<B: Backend>() {
    let (_backend, _clock, store) = filled::<B>();

    let prior = store.prior("bf").unwrap();
    assert_eq!(prior.len(), 5);
    assert_eq!(prior.get("u1"), Some(OutcomeClass::Sent));
    assert_eq!(prior.get("u2"), Some(OutcomeClass::Rejected));
    assert_eq!(prior.get("u3"), Some(OutcomeClass::Retryable));
    assert_eq!(prior.get("u4"), Some(OutcomeClass::Attempted));
    assert_eq!(prior.get("u5"), Some(OutcomeClass::Skipped));
    assert_eq!(prior.get_hash(key_hash("u1")), Some(OutcomeClass::Sent));
    assert_eq!(prior.get("u9"), None);
    assert_eq!(prior.counts().total(), 5);
    assert!(store.prior("nope").unwrap().is_empty());
}

pub fn handled_holds_the_key_hashes_of_the_classes_asked<B: Backend>() {
    let (_backend, _clock, mut store) = filled::<B>();
    store.begin_run(&start("other", "hi")).unwrap();
    store
        .record_outcomes(
            "other",
            &[outcome("u9", OutcomeClass::Sent, Some(200), None)],
        )
        .unwrap();
    let keys = ["u1", "u2", "u3", "u4", "u5", "u9"];
    // The keys of `bf` that `handled` returns for `classes`, checked against every key.
    let handled = |store: &dyn StateStore, classes: &[OutcomeClass]| -> Vec<&'static str> {
        let set = store.handled("bf", classes).unwrap();
        let found: Vec<&str> = keys
            .into_iter()
            .filter(|k| set.contains(key_hash(k)))
            .collect();
        assert_eq!(set.len(), found.len(), "only key hashes of recorded keys");
        found
    };

    use OutcomeClass::*;
    assert_eq!(handled(store.as_ref(), &[Sent]), ["u1"]);
    assert_eq!(handled(store.as_ref(), &[Sent, Skipped]), ["u1", "u5"]);
    assert_eq!(
        handled(store.as_ref(), &[Skipped, Sent, Sent]),
        ["u1", "u5"]
    );
    assert_eq!(
        handled(store.as_ref(), &[Rejected, Retryable, Attempted]),
        ["u2", "u3", "u4"]
    );
    assert_eq!(
        handled(
            store.as_ref(),
            &[Attempted, Sent, Rejected, Retryable, Unknown, Skipped]
        ),
        ["u1", "u2", "u3", "u4", "u5"],
        "another run's keys are not this run's"
    );
    assert!(handled(store.as_ref(), &[Unknown]).is_empty());
    assert!(
        handled(store.as_ref(), &[]).is_empty(),
        "no classes, no keys"
    );
    assert!(store.handled("nope", &[Sent]).unwrap().is_empty());

    store.settle_in_flight("bf").unwrap();
    assert_eq!(handled(store.as_ref(), &[Unknown]), ["u4"]);
    assert!(handled(store.as_ref(), &[Attempted]).is_empty());
}

pub fn runs_and_run_count_per_class_newest_first<B: Backend>() {
    let (_backend, clock, mut store) = filled::<B>();
    clock.advance(60);
    store
        .begin_run(&start("weekly@2026-11-20T09:00:00+07:00", "w"))
        .unwrap();
    store
        .record_attempts("weekly@2026-11-20T09:00:00+07:00", &[attempt("a", 2)])
        .unwrap();
    clock.advance(60);
    store
        .begin_run(&start("weekly@2026-11-27T09:00:00+07:00", "w"))
        .unwrap();

    let all = store.runs(None).unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "weekly@2026-11-27T09:00:00+07:00",
            "weekly@2026-11-20T09:00:00+07:00",
            "bf"
        ]
    );
    let bf = &all[2];
    assert_eq!(bf.campaign, "bf");
    assert_eq!(bf.occurrence, None);
    assert_eq!((bf.started, bf.status), (at(0), RunStatus::Running));
    assert_eq!((bf.audience, bf.invalid), (None, None), "never planned");
    let c = bf.counts;
    assert_eq!(
        (
            c.attempted,
            c.sent,
            c.rejected,
            c.retryable,
            c.unknown,
            c.skipped
        ),
        (1, 1, 1, 1, 0, 1)
    );
    assert_eq!((c.total(), c.failed()), (5, 2));
    assert_eq!(all[1].counts.attempted, 1);
    assert_eq!(all[1].campaign, "weekly");
    assert_eq!(
        all[1].occurrence.as_deref(),
        Some("2026-11-20T09:00:00+07:00")
    );
    assert_eq!(all[0].counts.total(), 0);

    let weekly = store.runs(Some("weekly")).unwrap();
    assert_eq!(weekly.len(), 2);
    assert_eq!(weekly[..], all[..2]);
    assert!(store.runs(Some("other")).unwrap().is_empty());
    assert_eq!(store.run("bf").unwrap().unwrap(), all[2]);
    assert_eq!(store.run("nope").unwrap(), None);
}

pub fn deliveries_filter_by_class_and_limit<B: Backend>() {
    let (_backend, _clock, store) = filled::<B>();

    let failed = store
        .deliveries(
            "bf",
            &[OutcomeClass::Rejected, OutcomeClass::Retryable],
            None,
        )
        .unwrap();
    let keys: Vec<&str> = failed.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["u2", "u3"]);
    assert_eq!(
        failed[0].platform_text.as_deref(),
        Some("user blocked the bot")
    );
    assert_eq!(failed[0].status, Some(400));
    assert_eq!(
        (failed[0].source.as_str(), failed[0].row),
        ("audiences/vip.csv", 3)
    );
    assert_eq!(failed[1].platform_text.as_deref(), Some("upstream down"));

    let limited = store.deliveries("bf", &[], Some(2)).unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].key, "u1", "first attempted first");
    assert_eq!(limited[..], store.deliveries("bf", &[], None).unwrap()[..2]);
    let first_failed = store
        .deliveries(
            "bf",
            &[OutcomeClass::Retryable, OutcomeClass::Rejected],
            Some(1),
        )
        .unwrap();
    assert_eq!(
        first_failed[..],
        failed[..1],
        "the limit applies after the filter"
    );
    assert!(store.deliveries("bf", &[], Some(0)).unwrap().is_empty());
    assert_eq!(store.deliveries("bf", &[], Some(99)).unwrap().len(), 5);
    assert!(store
        .deliveries("bf", &[OutcomeClass::Unknown], None)
        .unwrap()
        .is_empty());
    assert!(store.deliveries("nope", &[], None).unwrap().is_empty());
}

pub fn record_missed_and_finish_run<B: Backend>() {
    let (_backend, clock, mut store) = fresh::<B>();
    let missed = start("weekly@2026-11-13T09:00:00+07:00", "w");
    store.record_missed(&missed).unwrap();
    clock.advance(5);
    store.record_missed(&missed).unwrap(); // idempotent
    let run = store.run(&missed.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Missed);
    assert_eq!((run.started, run.finished), (at(0), Some(at(0))));
    assert_eq!(run.counts.total(), 0);
    assert_eq!(
        (run.campaign.as_str(), run.occurrence.as_deref()),
        ("weekly", Some("2026-11-13T09:00:00+07:00"))
    );
    let err = store.begin_run(&missed).unwrap_err();
    assert!(matches!(err, StateError::MissedRun { .. }), "{err}");
    assert!(err.to_string().contains("never sent late"));
    let err = store
        .accept_fingerprint(&missed.run_id, &fingerprint("changed"))
        .unwrap_err();
    assert!(matches!(err, StateError::MissedRun { .. }), "{err}");
    assert_eq!(store.run(&missed.run_id).unwrap().unwrap(), run);

    // An occurrence that did run is not turned into a missed one.
    store.begin_run(&start("bf", "hi")).unwrap();
    store.record_missed(&start("bf", "hi")).unwrap();
    assert_eq!(store.run("bf").unwrap().unwrap().status, RunStatus::Running);

    clock.advance(30);
    store.finish_run("bf", RunStatus::Aborted).unwrap();
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Aborted);
    assert_eq!(run.finished, Some(clock.now()));
    store.finish_run("bf", RunStatus::Running).unwrap();
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!((run.status, run.finished), (RunStatus::Running, None));
    assert!(matches!(
        store.finish_run("nope", RunStatus::Completed),
        Err(StateError::UnknownRun { .. })
    ));
}

/// A re-run that finds nothing to do puts the run back as it found it.
pub fn restore_run_puts_back_status_and_end<B: Backend>() {
    let (_backend, clock, mut store) = fresh::<B>();
    store.begin_run(&start("bf", "hi")).unwrap();
    clock.advance(30);
    store.finish_run("bf", RunStatus::Completed).unwrap();
    let done = store.run("bf").unwrap().unwrap();
    clock.advance(3600);
    let Begin::Resumed { previous, .. } = store.begin_run(&start("bf", "hi")).unwrap() else {
        panic!("the run exists");
    };
    assert_eq!(*previous, done, "begin_run reports the run as it was");
    assert_eq!(store.run("bf").unwrap().unwrap().finished, None);
    store.restore_run(&previous).unwrap();
    assert_eq!(store.run("bf").unwrap().unwrap(), done);
    let mut unknown = done.clone();
    unknown.run_id = "nope".into();
    assert!(matches!(
        store.restore_run(&unknown),
        Err(StateError::UnknownRun { .. })
    ));
}

pub fn record_plan_keeps_the_latest_counts<B: Backend>() {
    let (_backend, _clock, mut store) = filled::<B>();
    let before = store.run("bf").unwrap().unwrap();
    assert_eq!((before.audience, before.invalid), (None, None));

    store.record_plan("bf", 10, 2).unwrap();
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!((run.audience, run.invalid), (Some(10), Some(2)));
    store.record_plan("bf", 12, 0).unwrap();
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!((run.audience, run.invalid), (Some(12), Some(0)));
    assert_eq!(
        state::RunSummary {
            audience: None,
            invalid: None,
            ..run
        },
        before,
        "only the plan's counts change"
    );
    assert!(matches!(
        store.record_plan("nope", 1, 0),
        Err(StateError::UnknownRun { .. })
    ));
}

pub fn a_new_instance_sees_everything<B: Backend>() {
    let backend = B::fresh();
    let clock = Clock::new();
    let before = {
        let mut store = backend.open(&clock);
        populated(store.as_mut(), &clock);
        store.finish_run("bf", RunStatus::Interrupted).unwrap();
        (
            store.runs(None).unwrap(),
            store.deliveries("bf", &[], None).unwrap(),
        )
    };
    let mut store = backend.open(&clock);
    assert_eq!(store.runs(None).unwrap(), before.0);
    assert_eq!(store.deliveries("bf", &[], None).unwrap(), before.1);
    assert_eq!(store.settle_in_flight("bf").unwrap(), 1);

    // Read-only instances see it too, and cannot write.
    let mut ro = read_only(&backend);
    assert_eq!(
        ro.prior("bf").unwrap().get("u4"),
        Some(OutcomeClass::Unknown)
    );
    assert_eq!(ro.runs(None).unwrap().len(), 1);
    assert!(matches!(
        ro.finish_run("bf", RunStatus::Completed),
        Err(StateError::ReadOnly { .. })
    ));
}

pub fn a_reader_works_while_a_writer_is_open<B: Backend>() {
    let (backend, _clock, mut store) = filled::<B>();
    let ro = read_only(&backend);
    store.record_attempts("bf", &[attempt("u8", 9)]).unwrap();
    assert_eq!(ro.prior("bf").unwrap().len(), 6);
    assert!(ro
        .handled("bf", &[OutcomeClass::Attempted])
        .unwrap()
        .contains(key_hash("u8")));
    assert_eq!(everything(ro.as_ref()), everything(store.as_ref()));
}

pub fn a_read_only_store_refuses_every_write<B: Backend>() {
    let (backend, _clock, store) = filled::<B>();
    let before = everything(store.as_ref());
    let mut ro = read_only(&backend);

    let refusals: Vec<(&str, Result<(), StateError>)> = vec![
        ("begin_run", ro.begin_run(&start("new", "hi")).map(|_| ())),
        ("begin_run", ro.begin_run(&start("bf", "hi")).map(|_| ())),
        (
            "accept_fingerprint",
            ro.accept_fingerprint("bf", &fingerprint("hello")),
        ),
        (
            "record_attempts",
            ro.record_attempts("bf", &[attempt("u6", 7)]),
        ),
        (
            "record_outcomes",
            ro.record_outcomes("bf", &[outcome("u4", OutcomeClass::Sent, Some(200), None)]),
        ),
        ("settle_in_flight", ro.settle_in_flight("bf").map(|_| ())),
        ("finish_run", ro.finish_run("bf", RunStatus::Completed)),
        ("record_plan", ro.record_plan("bf", 10, 0)),
        ("record_missed", ro.record_missed(&start("missed", "hi"))),
    ];
    for (what, result) in refusals {
        assert!(
            matches!(result, Err(StateError::ReadOnly { .. })),
            "{what}: {result:?}"
        );
    }
    assert_eq!(everything(ro.as_ref()), before, "nothing was written");
    assert_eq!(everything(store.as_ref()), before);
}

/// After a checkpoint every record is still there, for this handle and a new one.
pub fn checkpoint_keeps_every_record<B: Backend>() {
    let (backend, clock, store) = filled::<B>();
    let before = everything(store.as_ref());
    store.checkpoint().unwrap();
    assert_eq!(everything(store.as_ref()), before);
    drop(store);
    let store = backend.open(&clock);
    assert_eq!(everything(store.as_ref()), before);
    store.checkpoint().unwrap();
    assert_eq!(everything(read_only(&backend).as_ref()), before);
}

/// A store that is not there is never made by `open`: only `create` makes one.
pub fn open_never_creates_a_missing_store<B: Backend>() {
    let backend = B::fresh();
    let location = backend.location();
    let err = state::open(&location).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("--new-state"), "{err}");
    assert!(state::open_read_only(&location).unwrap().is_none());
    assert!(
        state::open_read_only(&location).unwrap().is_none(),
        "looking made nothing"
    );

    let (_, created) = state::create(&location).unwrap().unwrap();
    assert!(created);
    let (mut store, created) = state::create(&location).unwrap().unwrap();
    assert!(!created, "an existing store is opened, not replaced");
    store.begin_run(&start("bf", "hi")).unwrap();
    let (store, created) = state::create(&location).unwrap().unwrap();
    assert!(!created);
    assert_eq!(store.runs(None).unwrap().len(), 1, "nor emptied");
    state::open(&location).unwrap().unwrap();
    let ro = state::open_read_only(&location).unwrap().unwrap();
    assert_eq!(ro.runs(None).unwrap().len(), 1);
}

// ---- locks ----

const WEEKLY: &str = "weekly@2026-11-27T09:00:00+07:00";

pub fn a_lock_is_exclusive_and_names_its_holder<B: Backend>() {
    let (_backend, _clock, store) = fresh::<B>();
    let name = LockName::Run(WEEKLY.to_owned());
    // Holders say when they took a lock to the second.
    let before = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let first = store.lock(&name, None).unwrap();

    match store.lock(&name, None) {
        Err(LockError::Held(holder)) => {
            assert_eq!(holder.pid, std::process::id());
            assert!(holder.what.contains(WEEKLY), "{holder:?}");
            assert!(!holder.host.is_empty());
            assert!(holder.since >= before, "{holder:?} since {before}");
            assert!(holder.since <= Utc::now(), "{holder:?}");
            let message = LockError::Held(holder).to_string();
            assert!(
                message.contains(&std::process::id().to_string()),
                "{message}"
            );
        }
        other => panic!("expected Held, got {other:?}"),
    }
    // Other names are independent.
    let _bot = store
        .lock(&LockName::Bot("64f0c2a1e4b0".to_owned()), None)
        .unwrap();
    let _same_id_bot = store.lock(&LockName::Bot(WEEKLY.to_owned()), None).unwrap();
    let _similar = store
        .lock(
            &LockName::Run("weekly_2026-11-27T09_00_00_07_00".to_owned()),
            None,
        )
        .unwrap();

    drop(first);
    let third = store.lock(&name, None).unwrap();
    drop(third);
}

pub fn lock_holder_names_the_holder_until_release<B: Backend>() {
    let (backend, _clock, store) = fresh::<B>();
    let name = LockName::Bot("64f0c2a1e4b0".to_owned());
    assert_eq!(store.lock_holder(&name).unwrap(), None);

    let guard = store.lock(&name, None).unwrap();
    let holder = store.lock_holder(&name).unwrap().expect("a holder");
    assert_eq!(holder.pid, std::process::id());
    assert!(holder.is_known());
    // Readers (`status`) see it too.
    let ro = read_only(&backend);
    assert_eq!(ro.lock_holder(&name).unwrap(), Some(holder));
    assert_eq!(
        store
            .lock_holder(&LockName::Run("64f0c2a1e4b0".to_owned()))
            .unwrap(),
        None
    );
    drop(guard);
    assert_eq!(ro.lock_holder(&name).unwrap(), None);
    // Looking took nothing.
    drop(store.lock(&name, None).unwrap());
    assert_eq!(store.lock_holder(&name).unwrap(), None);
}

pub fn locks_exclude_across_two_handles<B: Backend>() {
    let (backend, clock, one) = fresh::<B>();
    let two = backend.open(&clock);
    let name = LockName::Run("bf".to_owned());

    let guard = one.lock(&name, None).unwrap();
    match two.lock(&name, None) {
        Err(LockError::Held(holder)) => assert_eq!(holder.pid, std::process::id()),
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(
        two.lock_holder(&name).unwrap().map(|h| h.pid),
        Some(std::process::id())
    );
    drop(guard);
    let guard = two.lock(&name, None).unwrap();
    assert!(matches!(one.lock(&name, None), Err(LockError::Held(_))));
    drop(guard);
    drop(one.lock(&name, None).unwrap());
}

/// `wait`: a lock still held when it runs out is `Held`; one released meanwhile is taken.
pub fn a_lock_waits_for_its_holder<B: Backend>() {
    let (backend, clock, store) = fresh::<B>();
    let name = LockName::Bot("1".to_owned());
    let held = store.lock(&name, None).unwrap();

    let wait = Duration::from_millis(200);
    let t = Instant::now();
    let err = store.lock(&name, Some(wait)).unwrap_err();
    assert!(matches!(err, LockError::Held(_)));
    // A lower bound that holds however slow the machine is.
    assert!(t.elapsed() >= wait, "gave up before `wait` ran out");

    // A waiter on another handle, and a flag set before the holder lets go: the waiter
    // can only get the lock after it, whichever of the two threads runs first.
    let released = Arc::new(AtomicBool::new(false));
    let (ready, waiting) = mpsc::channel();
    let waiter = {
        let other = backend.open(&clock);
        let released = released.clone();
        let name = name.clone();
        std::thread::spawn(move || {
            ready.send(()).unwrap();
            let got = other.lock(&name, Some(Duration::from_secs(60)));
            (got.map(drop), released.load(Ordering::SeqCst))
        })
    };
    waiting.recv().unwrap();
    released.store(true, Ordering::SeqCst);
    drop(held);
    let (got, after_release) = waiter.join().unwrap();
    assert!(got.is_ok(), "{:?}", got.err());
    assert!(after_release, "the waiter got the lock while it was held");
}

const CHILD_ENV: &str = "SMAX_STATE_LOCK_CHILD";
const CHILD_STATE_ENV: &str = "SMAX_STATE_LOCK_CHILD_STATE";
const CHILD_LOCK: &str = "x";

/// The body of the child process in [`locks_work_across_processes_and_die_with_them`]:
/// opens the store it is given and takes the run lock `x`. Does nothing in a normal run.
pub fn lock_child_process() {
    let (Ok(mode), Some(place)) = (std::env::var(CHILD_ENV), std::env::var_os(CHILD_STATE_ENV))
    else {
        return;
    };
    let location = StateLocation::parse(&place, Path::new("/"));
    let store = state::open(&location).unwrap().expect("a store");
    match store.lock(&LockName::Run(CHILD_LOCK.to_owned()), None) {
        Ok(guard) if mode == "crash" => {
            // Exit without dropping the guard: the backend must release the lock.
            std::mem::forget(guard);
            println!("CHILD acquired");
            std::process::exit(0);
        }
        Ok(_) => println!("CHILD acquired"),
        Err(LockError::Held(h)) => println!("CHILD held-by {}", h.pid),
        Err(e) => println!("CHILD error {e}"),
    }
}

/// Runs this test binary's `lock_child_process` of the backend's `module` (its
/// `module_path!()`) as a child process, on `location`; returns what it printed.
fn child(module: &str, mode: &str, location: &StateLocation) -> String {
    // The test's name in the one integration test binary: its module path without the
    // crate's name.
    let module = module.split_once("::").map_or(module, |(_, path)| path);
    let place: OsString = match location {
        StateLocation::File(path) => path.clone().into_os_string(),
        StateLocation::Postgres(url) => url.into(),
        StateLocation::Disabled => panic!("a backend keeps its store somewhere"),
    };
    let filter = format!("{module}::lock_child_process");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            filter.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env(CHILD_STATE_ENV, place)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("no CHILD line in {stdout}"))
}

pub fn locks_work_across_processes_and_die_with_them<B: Backend>(module: &str) {
    let (backend, _clock, store) = fresh::<B>();
    let location = backend.location();
    let name = LockName::Run(CHILD_LOCK.to_owned());
    let guard = store.lock(&name, None).unwrap();
    assert_eq!(
        child(module, "try", &location),
        format!("held-by {}", std::process::id())
    );
    drop(guard);
    assert_eq!(child(module, "crash", &location), "acquired");
    // The child exited holding the lock: nothing stale is left, once the backend has
    // seen it go (SQLite: at once; a server: when it reads the closed connection).
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.lock_holder(&name).unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the dead child's lock was never released"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let again = store.lock(&name, None);
    assert!(again.is_ok(), "{:?}", again.err());
}
