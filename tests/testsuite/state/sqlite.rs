//! The SQLite backend: the conformance suite over it, and the tests of what only the SQLite
//! file has (how it is created, refused and upgraded, its write-ahead log, its lock files).

use std::path::{Path, PathBuf};
use std::time::Instant;

use smax_campaign::state::{
    self, Attempt, Durability, LockError, LockName, OutcomeClass, OutcomeRecord, SqliteStore,
    StateError, StateLocation, StateStore, APPLICATION_ID, SCHEMA_VERSION,
};

use super::conformance::{conformance_tests, Backend};
use super::{attempt, everything, outcome, populated, start, Clock};

/// A store at `.smax/state.db` in a temporary folder of its own.
pub struct SqliteBackend {
    dir: tempfile::TempDir,
}

impl SqliteBackend {
    fn path(&self) -> PathBuf {
        db(&self.dir)
    }
}

impl Backend for SqliteBackend {
    fn fresh() -> Self {
        SqliteBackend {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn location(&self) -> StateLocation {
        StateLocation::File(self.path())
    }

    fn open(&self, clock: &Clock) -> Box<dyn StateStore> {
        Box::new(open(&self.path(), clock))
    }
}

conformance_tests!(SqliteBackend);

fn open(path: &Path, clock: &Clock) -> SqliteStore {
    let c = clock.clone();
    SqliteStore::create(path)
        .unwrap()
        .0
        .with_clock(move || c.now())
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".smax").join("state.db")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn pragma(path: &Path, name: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

// ---- the file ----

#[test]
fn open_read_only_on_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    assert!(SqliteStore::open_read_only(&path).unwrap().is_none());
    assert!(!path.parent().unwrap().exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_store_is_never_created_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.db");
    let err = SqliteStore::open(&path).map(|_| ()).unwrap_err();
    assert!(matches!(err, StateError::Missing { .. }), "{err}");
    assert!(SqliteStore::open_read_only(&path).unwrap().is_none());
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );

    let (_, created) = SqliteStore::create(&path).unwrap();
    assert!(created);
    assert!(path.exists(), "parent folders and file are created");
    assert_eq!(files_in(&dir.path().join("sub")), ["state.db"]);
    let (_, created) = SqliteStore::create(&path).unwrap();
    assert!(!created, "an existing store is opened, not replaced");
    SqliteStore::open(&path).unwrap();
}

#[test]
fn a_new_file_is_marked_as_a_state_file_of_this_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(SqliteStore::create(&path).unwrap());
    assert_eq!(pragma(&path, "application_id"), i64::from(APPLICATION_ID));
    assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        &bytes[68..72],
        b"SMAX",
        "the id is in the file's own header"
    );
}

#[test]
fn an_older_schema_is_upgraded_by_open_and_refused_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let clock = Clock::new();
    let kept = {
        let mut store = open(&path, &clock);
        populated(&mut store, &clock);
        everything(&store)
    };
    // Back to version 1: before the plan's counts.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE runs DROP COLUMN audience; ALTER TABLE runs DROP COLUMN invalid;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    match SqliteStore::open_read_only(&path).map(|_| ()).unwrap_err() {
        err @ StateError::NeedsUpgrade {
            found, supported, ..
        } => {
            assert_eq!((found, supported), (1, SCHEMA_VERSION));
            assert!(err.to_string().contains("upgrades it"), "{err}");
        }
        other => panic!("expected NeedsUpgrade, got {other}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "reading changes nothing"
    );

    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(everything(&store), kept, "the upgrade keeps every record");
    store.record_plan("bf", 5, 1).unwrap();
    drop(store);
    assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
    let ro = SqliteStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(ro.run("bf").unwrap().unwrap().audience, Some(5));
}

#[test]
fn checkpoint_folds_the_log_into_the_file() {
    let backend = SqliteBackend::fresh();
    let clock = Clock::new();
    let mut store = backend.open(&clock);
    populated(store.as_mut(), &clock);
    let wal = backend.path().with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the records are in the log"
    );

    store.checkpoint().unwrap();
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    // The file alone, as a CI cache may keep it, holds everything (the store still open).
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(backend.path(), copy.path().join("state.db")).unwrap();
    let alone = SqliteStore::open_read_only(&copy.path().join("state.db"))
        .unwrap()
        .unwrap();
    assert_eq!(everything(&alone), everything(store.as_ref()));
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

// ---- locks ----

/// During an upgrade an older binary may still lock in `locks/` beside the
/// database: while that folder exists the store takes its locks there too.
#[test]
fn a_lock_held_where_older_versions_kept_locks_still_excludes() {
    let backend = SqliteBackend::fresh();
    let store = backend.open(&Clock::new());
    let legacy = backend.path().parent().unwrap().join("locks");
    std::fs::create_dir_all(&legacy).unwrap();
    let name = LockName::Run("weekly".to_owned());
    let old_binary = state::acquire(&legacy, &name.key(), "run weekly (0.1)", None).unwrap();
    match store.lock(&name, None) {
        Err(LockError::Held(holder)) => assert_eq!(holder.what, "run weekly (0.1)"),
        other => panic!("expected Held, got {other:?}"),
    }
    assert!(store.lock_holder(&name).unwrap().is_some());
    drop(old_binary);
    let held = store.lock(&name, None).unwrap();
    // And the other way round: the older binary waits for this one.
    assert!(matches!(
        state::acquire(&legacy, &name.key(), "run weekly (0.1)", None),
        Err(LockError::Held(_))
    ));
    drop(held);
}

/// Two names of one database (a symlink) share its locks.
#[cfg(unix)]
#[test]
fn a_symlinked_store_shares_the_locks_of_its_file() {
    let backend = SqliteBackend::fresh();
    let store = backend.open(&Clock::new());
    let link = backend.path().with_file_name("other-name.db");
    std::os::unix::fs::symlink(backend.path(), &link).unwrap();
    let through_link = open(&link, &Clock::new());
    let name = LockName::Run("weekly".to_owned());
    let held = store.lock(&name, None).unwrap();
    assert!(matches!(
        through_link.lock(&name, None),
        Err(LockError::Held(_))
    ));
    assert_eq!(store.lock_space(), through_link.lock_space());
    drop(held);
}

/// The store's locks are the OS file locks of [`state::acquire`], in `NAME.locks/`
/// beside the database file `NAME`, so every process that opens the file shares them.
#[test]
fn locks_are_files_beside_the_database() {
    let backend = SqliteBackend::fresh();
    let store = backend.open(&Clock::new());
    let folder = std::path::PathBuf::from(format!("{}.locks", backend.path().display()));
    let name = LockName::Run("weekly@2026-11-27T09:00:00+07:00".to_owned());

    let held = store.lock(&name, None).unwrap();
    match state::acquire(&folder, &name.key(), "run weekly", None) {
        Err(LockError::Held(holder)) => assert_eq!(holder.pid, std::process::id()),
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(
        state::held_by(&folder, &name.key()).unwrap(),
        store.lock_holder(&name).unwrap()
    );
    drop(held);

    let raw = state::acquire(&folder, &name.key(), "run weekly", None).unwrap();
    assert!(raw.path().starts_with(&folder));
    match store.lock(&name, None) {
        Err(LockError::Held(holder)) => assert_eq!(holder.what, "run weekly"),
        other => panic!("expected Held, got {other:?}"),
    }
    drop(raw);
    let lock_files = files_in(&folder);
    assert_eq!(
        lock_files.len(),
        1,
        "released lock files stay: {lock_files:?}"
    );
    assert!(lock_files[0].ends_with(".lock"), "{lock_files:?}");
}

// ---- measurement ----

/// Throughput of the group commit: `cargo test --release --test testsuite -- --ignored
/// --nocapture state::sqlite::throughput`. Set SMAX_BENCH_DIR to measure on a given disk.
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
