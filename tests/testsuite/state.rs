//! The state store and the process locks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use smax_campaign::state::{
    self, key_hash, Attempt, Begin, DeliveryRow, Durability, Fingerprint, LockError, OutcomeClass,
    OutcomeRecord, RunStart, RunStatus, SqliteStore, StateError, StateStore, SCHEMA_VERSION,
};

const T0: i64 = 1_795_000_000_000; // 2026-11-17T...Z, in milliseconds

/// A clock the test moves by hand.
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(T0)))
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

fn open(path: &Path, clock: &Clock) -> SqliteStore {
    let c = clock.clone();
    SqliteStore::create(path)
        .unwrap()
        .0
        .with_clock(move || c.now())
}

fn fingerprint(message: &str) -> Fingerprint {
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

fn start(run_id: &str, message: &str) -> RunStart {
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

fn attempt(key: &str, row: u64) -> Attempt {
    Attempt {
        key: key.to_owned(),
        source: "audiences/vip.csv".to_owned(),
        row,
    }
}

fn outcome(
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

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".smax").join("state.db")
}

fn by_key(rows: &[DeliveryRow], key: &str) -> DeliveryRow {
    rows.iter().find(|r| r.key == key).cloned().unwrap()
}

/// Fills run `bf` with: u1 sent, u2 rejected, u3 retryable, u4 still attempted, u5 skipped.
fn populated(store: &mut SqliteStore, clock: &Clock) {
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

#[test]
fn begin_new_then_resumed_lists_fingerprint_changes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    assert!(db(&dir).exists(), "parent folders and file are created");

    assert_eq!(store.begin_run(&start("bf", "hi")).unwrap(), Begin::New);
    store.finish_run("bf", RunStatus::Interrupted).unwrap();

    // Same fingerprint: resumed, nothing changed, running again.
    clock.advance(60);
    match store.begin_run(&start("bf", "hi")).unwrap() {
        Begin::Resumed { previous, changed } => {
            assert!(changed.is_empty());
            assert_eq!(previous.status, RunStatus::Interrupted);
            assert_eq!(
                previous.started,
                DateTime::from_timestamp_millis(T0).unwrap()
            );
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
    match store.begin_run(&changed_start).unwrap() {
        Begin::Resumed { changed, .. } => assert!(changed.is_empty()),
        Begin::New => panic!("expected a resumed run"),
    }

    let err = store
        .accept_fingerprint("nope", &changed_start.fingerprint)
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownRun { .. }), "{err}");
}

#[test]
fn attempts_then_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);

    let rows = store.deliveries("bf", &[], None).unwrap();
    assert_eq!(rows.len(), 5);
    let u1 = by_key(&rows, "u1");
    assert_eq!(u1.class, OutcomeClass::Sent);
    assert_eq!(u1.attempts, 1);
    assert_eq!(u1.status, Some(200));
    assert_eq!(u1.platform_text.as_deref(), Some("ok"));
    assert_eq!(u1.source, "audiences/vip.csv");
    assert_eq!(u1.row, 2);
    assert_eq!(
        u1.first_attempt,
        DateTime::from_timestamp_millis(T0).unwrap()
    );
    assert_eq!(
        u1.last_update,
        DateTime::from_timestamp_millis(T0 + 1000).unwrap()
    );
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
}

#[test]
fn reattempt_increments_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);

    clock.advance(10);
    let moved = Attempt {
        key: "u2".to_owned(),
        source: "audiences/new.csv".to_owned(),
        row: 9,
    };
    store.record_attempts("bf", &[moved]).unwrap();
    let u2 = by_key(&store.deliveries("bf", &[], None).unwrap(), "u2");
    assert_eq!((u2.class, u2.attempts), (OutcomeClass::Attempted, 2));
    assert_eq!((u2.source.as_str(), u2.row), ("audiences/new.csv", 9));
    assert_eq!(u2.status, None, "the previous outcome no longer applies");
    assert_eq!(
        u2.first_attempt,
        DateTime::from_timestamp_millis(T0).unwrap()
    );

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

#[test]
fn settle_in_flight_turns_attempted_into_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);
    store
        .record_attempts("bf", &[attempt("u6", 7), attempt("u7", 8)])
        .unwrap();

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
    assert!(store
        .deliveries("bf", &[OutcomeClass::Attempted], None)
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.settle_in_flight("nope"),
        Err(StateError::UnknownRun { .. })
    ));
}

#[test]
fn prior_maps_every_recorded_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);

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

#[test]
fn runs_and_run_count_per_class_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);
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
    assert_eq!(
        all[1].occurrence.as_deref(),
        Some("2026-11-20T09:00:00+07:00")
    );
    assert_eq!(all[0].counts.total(), 0);

    let weekly = store.runs(Some("weekly")).unwrap();
    assert_eq!(weekly.len(), 2);
    assert!(store.runs(Some("other")).unwrap().is_empty());
    assert_eq!(store.run("bf").unwrap().unwrap(), all[2]);
    assert_eq!(store.run("nope").unwrap(), None);
}

#[test]
fn deliveries_filter_by_class_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);

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
    assert!(store
        .deliveries("bf", &[OutcomeClass::Unknown], None)
        .unwrap()
        .is_empty());
    assert!(store.deliveries("nope", &[], None).unwrap().is_empty());
}

#[test]
fn record_missed_and_finish_run() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    let missed = start("weekly@2026-11-13T09:00:00+07:00", "w");
    store.record_missed(&missed).unwrap();
    store.record_missed(&missed).unwrap(); // idempotent
    let run = store.run(&missed.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Missed);
    assert_eq!(run.finished, Some(clock.now()));
    assert_eq!(run.counts.total(), 0);
    let err = store.begin_run(&missed).unwrap_err();
    assert!(matches!(err, StateError::MissedRun { .. }), "{err}");
    assert!(err.to_string().contains("never sent late"));

    // An occurrence that did run is not turned into a missed one.
    store.begin_run(&start("bf", "hi")).unwrap();
    store.record_missed(&start("bf", "hi")).unwrap();
    assert_eq!(store.run("bf").unwrap().unwrap().status, RunStatus::Running);

    clock.advance(30);
    store.finish_run("bf", RunStatus::Aborted).unwrap();
    let run = store.run("bf").unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Aborted);
    assert_eq!(run.finished, Some(clock.now()));
    assert!(matches!(
        store.finish_run("nope", RunStatus::Completed),
        Err(StateError::UnknownRun { .. })
    ));
}

#[test]
fn a_new_instance_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let before = {
        let mut store = open(&db(&dir), &clock);
        populated(&mut store, &clock);
        store.finish_run("bf", RunStatus::Interrupted).unwrap();
        (
            store.runs(None).unwrap(),
            store.deliveries("bf", &[], None).unwrap(),
        )
    };
    let mut store = open(&db(&dir), &clock);
    assert_eq!(store.runs(None).unwrap(), before.0);
    assert_eq!(store.deliveries("bf", &[], None).unwrap(), before.1);
    assert_eq!(store.settle_in_flight("bf").unwrap(), 1);

    // Read-only instances see it too, and cannot write.
    let mut ro = SqliteStore::open_read_only(&db(&dir)).unwrap().unwrap();
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

#[test]
fn a_reader_works_while_a_writer_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut store = open(&db(&dir), &clock);
    populated(&mut store, &clock);
    let ro = SqliteStore::open_read_only(&db(&dir)).unwrap().unwrap();
    store.record_attempts("bf", &[attempt("u8", 9)]).unwrap();
    assert_eq!(ro.prior("bf").unwrap().len(), 6);
}

#[test]
fn open_read_only_on_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    assert!(SqliteStore::open_read_only(&path).unwrap().is_none());
    assert!(!path.parent().unwrap().exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_zero_length_file_is_refused_and_left_untouched() {
    // A truncated copy or a failed cache restore: the record of earlier sends is
    // gone, which must never read as "a new, empty store".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    let errors = [
        SqliteStore::open(&path).map(|_| ()).unwrap_err(),
        SqliteStore::open_read_only(&path).map(|_| ()).unwrap_err(),
        SqliteStore::create(&path).map(|_| ()).unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, StateError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("zero bytes"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    assert_eq!(files_in(dir.path()), ["state.db"]);
}

#[test]
fn a_missing_store_is_never_created_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.db");
    let err = SqliteStore::open(&path).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("--new-state"), "{err}");
    assert!(SqliteStore::open_read_only(&path).unwrap().is_none());
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );

    let (_, created) = SqliteStore::create(&path).unwrap();
    assert!(created);
    assert_eq!(files_in(&dir.path().join("sub")), ["state.db"]);
    let (_, created) = SqliteStore::create(&path).unwrap();
    assert!(!created, "an existing store is opened, not replaced");
    SqliteStore::open(&path).unwrap();
}

#[test]
fn an_empty_sqlite_database_of_another_origin_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        // Non-empty file, no schema objects, application_id 0.
        conn.pragma_update(None, "page_size", 4096).unwrap();
        conn.execute_batch("VACUUM").unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.is_empty(), "VACUUM writes the header page");
    let err = SqliteStore::open(&path).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_garbage_file_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let garbage: Vec<u8> = b"id,name\n1,An\n".repeat(500);
    std::fs::write(&path, &garbage).unwrap();

    for result in [
        SqliteStore::open(&path).map(|_| ()),
        SqliteStore::open_read_only(&path).map(|_| ()),
    ] {
        match result.unwrap_err() {
            StateError::Corrupt { path: p, detail } => {
                assert_eq!(p, path);
                assert!(detail.contains("not a SQLite database"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other}"),
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
    assert_eq!(files_in(dir.path()), ["state.db"]);

    let message = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(message.contains("left untouched"), "{message}");
    assert!(message.contains("--state"), "{message}");
}

#[test]
fn a_damaged_file_gives_corrupt_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let clock = Clock::new();
        let mut store = open(&path, &clock);
        populated(&mut store, &clock);
        let many: Vec<Attempt> = (0..2000).map(|i| attempt(&format!("k{i:05}"), i)).collect();
        store.record_attempts("bf", &many).unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16 * 4096);
    // Keep the header page, scribble over every other page.
    for b in &mut bytes[4096..] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();

    let outcome = SqliteStore::open(&path).and_then(|store| {
        store.runs(None)?;
        store.deliveries("bf", &[], None)?;
        store.prior("bf").map(|_| ())
    });
    match outcome {
        Err(StateError::Corrupt { detail, .. }) => assert!(detail.contains("damaged"), "{detail}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("another program"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_future_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(SqliteStore::create(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    for result in [
        SqliteStore::open(&path).map(|_| ()),
        SqliteStore::open_read_only(&path).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        match &err {
            StateError::FutureVersion { found, supported } => {
                assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected FutureVersion, got {other}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("written by a newer smax-campaign"),
            "{message}"
        );
        assert!(message.contains("upgrade"), "{message}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_folder_is_not_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StateError::Io { .. }), "{err}");
    assert!(SqliteStore::open_read_only(dir.path()).is_err());
}

#[test]
fn the_store_is_a_trait_object() {
    let dir = tempfile::tempdir().unwrap();
    let mut store: Box<dyn StateStore> = Box::new(SqliteStore::create(&db(&dir)).unwrap().0);
    assert_eq!(store.begin_run(&start("bf", "hi")).unwrap(), Begin::New);
    store.record_attempts("bf", &[]).unwrap();
    store.record_outcomes("bf", &[]).unwrap();
    assert_eq!(store.runs(None).unwrap().len(), 1);
}

// ---- locks ----

#[test]
fn a_lock_is_exclusive_within_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let name = "run-weekly@2026-11-27T09:00:00+07:00";
    let first = state::acquire(dir.path(), name, "run weekly", None).unwrap();
    assert!(first.path().starts_with(dir.path().join("locks")));

    match state::acquire(dir.path(), name, "run weekly", None) {
        Err(LockError::Held(holder)) => {
            assert_eq!(holder.pid, std::process::id());
            assert_eq!(holder.what, "run weekly");
            assert!(!holder.host.is_empty());
            assert!((Utc::now() - holder.since).num_seconds().abs() < 60);
            let message = LockError::Held(holder).to_string();
            assert!(
                message.contains(&std::process::id().to_string()),
                "{message}"
            );
        }
        other => panic!("expected Held, got {other:?}"),
    }
    // Other names are independent.
    let _bot = state::acquire(dir.path(), "bot-64f0c2a1e4b0", "run weekly", None).unwrap();
    let _similar =
        state::acquire(dir.path(), "run-weekly_2026-11-27T09_00_00_07_00", "", None).unwrap();

    drop(first);
    let third = state::acquire(dir.path(), name, "run weekly again", None).unwrap();
    drop(third);
}

#[test]
fn acquire_waits_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let held = state::acquire(dir.path(), "bot-1", "first", None).unwrap();

    let t = Instant::now();
    let err = state::acquire(
        dir.path(),
        "bot-1",
        "second",
        Some(Duration::from_millis(200)),
    )
    .unwrap_err();
    assert!(matches!(err, LockError::Held(_)));
    assert!(t.elapsed() >= Duration::from_millis(200));

    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let got = state::acquire(dir.path(), "bot-1", "second", Some(Duration::from_secs(10)));
    assert!(got.is_ok(), "{:?}", got.err());
    releaser.join().unwrap();
}

const CHILD_ENV: &str = "SMAX_STATE_LOCK_CHILD";

/// Not a test of its own: the body of the child process in the cross-process test.
#[test]
fn lock_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (mode, dir) = spec.split_once(':').unwrap();
    match state::acquire(Path::new(dir), "run-x", "child", None) {
        Ok(guard) if mode == "crash" => {
            // Exit without dropping the guard: the OS must release the lock.
            std::mem::forget(guard);
            println!("CHILD acquired");
            std::process::exit(0);
        }
        Ok(_) => println!("CHILD acquired"),
        Err(LockError::Held(h)) => println!("CHILD held-by {}", h.pid),
        Err(e) => println!("CHILD error {e}"),
    }
}

fn child(mode: &str, dir: &Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            // The test's name in the one integration test binary.
            "state::lock_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("no CHILD line in {stdout}"))
}

#[test]
fn locks_work_across_processes_and_die_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let guard = state::acquire(dir.path(), "run-x", "parent", None).unwrap();
    assert_eq!(
        child("try", dir.path()),
        format!("held-by {}", std::process::id())
    );
    drop(guard);
    assert_eq!(child("crash", dir.path()), "acquired");
    // The child exited holding the lock: nothing stale is left.
    let again = state::acquire(dir.path(), "run-x", "parent", None);
    assert!(again.is_ok(), "{:?}", again.err());
}

// ---- measurement ----

/// Throughput of the group commit: `cargo test --release --test testsuite -- --ignored
/// --nocapture state::throughput`. Set SMAX_BENCH_DIR to measure on a given disk.
#[test]
#[ignore = "measurement, not a test"]
fn throughput() {
    let base = std::env::var_os("SMAX_BENCH_DIR").map(PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let total: u64 = std::env::var("SMAX_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    for durability in [Durability::Full, Durability::Normal] {
        for batch in [64_u64, 256] {
            let path = dir.path().join(format!("{durability:?}-{batch}.db"));
            let (mut store, _) = SqliteStore::create(&path).unwrap();
            store.set_durability(durability);
            store.begin_run(&start("bench", "hi")).unwrap();
            let t = Instant::now();
            let mut next = 0;
            while next < total {
                let end = (next + batch).min(total);
                let attempts: Vec<Attempt> = (next..end)
                    .map(|i| attempt(&format!("user-{i:08}"), i + 2))
                    .collect();
                store.record_attempts("bench", &attempts).unwrap();
                let outcomes: Vec<OutcomeRecord> = (next..end)
                    .map(|i| {
                        outcome(
                            &format!("user-{i:08}"),
                            OutcomeClass::Sent,
                            Some(200),
                            Some("ok"),
                        )
                    })
                    .collect();
                store.record_outcomes("bench", &outcomes).unwrap();
                next = end;
            }
            let secs = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let prior = store.prior("bench").unwrap();
            let prior_ms = t.elapsed().as_millis();
            let t = Instant::now();
            let counts = store.run("bench").unwrap().unwrap().counts;
            let count_ms = t.elapsed().as_millis();
            assert_eq!(prior.len() as u64, total);
            assert_eq!(counts.sent, total);
            println!(
                "{durability:?} batch {batch}: {total} recipients in {secs:.2}s = {:.0} \
                 recipients/s ({:.0} attempt+outcome rows/s); prior() {prior_ms} ms, \
                 counts {count_ms} ms",
                total as f64 / secs,
                2.0 * total as f64 / secs,
            );
        }
    }
}

#[test]
fn another_programs_database_with_a_leftover_log_is_not_touched() {
    // A read-write connection would replay the WAL into the file; looking first
    // must not change a byte of someone else's database.
    let live = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(live.path().join("other.db")).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "PRAGMA wal_autocheckpoint = 0; CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');",
    )
    .unwrap();
    // Copy the file and its log while the writer still has them open (as a
    // crashed program leaves them).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::copy(live.path().join("other.db"), &path).unwrap();
    std::fs::copy(
        live.path().join("other.db-wal"),
        dir.path().join("state.db-wal"),
    )
    .unwrap();
    drop(conn);
    let before = (
        std::fs::read(&path).unwrap(),
        std::fs::read(dir.path().join("state.db-wal")).unwrap(),
    );
    assert!(!before.1.is_empty(), "the log holds the writes");
    let err = SqliteStore::open(&path).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    let after = (
        std::fs::read(&path).unwrap(),
        std::fs::read(dir.path().join("state.db-wal")).unwrap(),
    );
    assert!(before == after, "the file or its log changed");
}
