//! The PostgreSQL backend: the conformance suite over it, and the tests of what only the
//! shared store has (its schema version, migrations under a lock, lease fencing, a lost
//! connection).
//!
//! They need a server: `SMAX_TEST_DATABASE_URL` names one whose user may create
//! databases (`.ci/with-postgres cargo test` starts a throwaway one on 127.0.0.1). Each
//! test gets a database of its own, dropped afterwards. Unset, the tests are skipped
//! with a loud message, unless `CI` is set: then they fail.

use std::sync::Arc;

use smax_campaign::state::{
    self, Attempt, Begin, JournalBatch, LockName, OutcomeClass, PostgresStore, StateError,
    StateLocation, StateStore, PG_SCHEMA_VERSION,
};

use super::conformance::{conformance_tests, Backend};
use super::{attempt, everything, outcome, populated, start, Clock};

/// The server the tests may use, or `None` (skipped, loudly) when there is none here.
pub fn admin_url() -> Option<String> {
    match std::env::var("SMAX_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "SMAX_TEST_DATABASE_URL is not set, but CI is: the PostgreSQL tests must run in CI \
             (.ci/run starts a server through .ci/with-postgres)"
        ),
        _ => {
            // Once, and past the test harness's capture, so that it is seen.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\nSKIPPED: the PostgreSQL tests need SMAX_TEST_DATABASE_URL; run \
                     `.ci/with-postgres cargo test` to include them\n"
                );
            });
            None
        }
    }
}

/// A database of its own on the test server; dropped (with its connections) when dropped.
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    pub fn new(admin: &str) -> TestDatabase {
        let name = format!("smax_test_{:016x}", rand_u64());
        let mut client = postgres::Client::connect(admin, postgres::NoTls).expect("admin");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
        TestDatabase {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Another spelling of the same database: the library keeps one session per URL,
    /// so this one connects anew, as another process would.
    pub fn other_url(&self, tag: &str) -> String {
        format!("{}?application_name={tag}", self.url)
    }

    /// A client of its own, outside the library, for what the tests do behind its back.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A database of its own for each test.
pub struct PostgresBackend {
    db: TestDatabase,
}

impl Backend for PostgresBackend {
    fn fresh() -> Self {
        let admin = admin_url().expect("available() was checked");
        PostgresBackend {
            db: TestDatabase::new(&admin),
        }
    }

    fn location(&self) -> StateLocation {
        StateLocation::Postgres(self.db.url().to_owned())
    }

    fn open(&self, clock: &Clock) -> Box<dyn StateStore> {
        let c = clock.clone();
        let (store, _) = PostgresStore::create(self.db.url()).expect("create");
        Box::new(store.with_clock(move || c.now()))
    }

    fn available() -> bool {
        admin_url().is_some()
    }
}

conformance_tests!(PostgresBackend);

fn fresh() -> Option<(TestDatabase, Clock, PostgresStore)> {
    let db = TestDatabase::new(&admin_url()?);
    let clock = Clock::new();
    let c = clock.clone();
    let (store, created) = PostgresStore::create(db.url()).expect("create");
    assert!(created);
    Some((db, clock, store.with_clock(move || c.now())))
}

#[test]
fn the_schema_records_its_version_and_a_newer_one_is_refused() {
    let Some((db, clock, mut store)) = fresh() else {
        return;
    };
    populated(&mut store, &clock);
    let before = everything(&store);
    let mut client = db.client();
    let version: i32 = client
        .query_one("SELECT max(version) FROM smax.schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version as u32, PG_SCHEMA_VERSION);

    client
        .execute(
            "INSERT INTO smax.schema_version VALUES ($1, 0, 'a newer smax-campaign')",
            &[&(PG_SCHEMA_VERSION as i32 + 1)],
        )
        .unwrap();
    drop(store);
    // Another spelling: a session of its own, that reads the version anew.
    let url = db.other_url("newer");
    for result in [
        PostgresStore::open(&url).map(|_| ()),
        PostgresStore::create(&url).map(|_| ()),
        PostgresStore::open_read_only(&url).map(|_| ()),
    ] {
        match result {
            Err(StateError::FutureVersion { found, supported }) => {
                assert_eq!(
                    (found, supported),
                    (PG_SCHEMA_VERSION + 1, PG_SCHEMA_VERSION)
                );
            }
            other => panic!("expected FutureVersion, got {other:?}"),
        }
    }
    client
        .execute(
            "DELETE FROM smax.schema_version WHERE version > $1",
            &[&(PG_SCHEMA_VERSION as i32)],
        )
        .unwrap();
    let store = PostgresStore::open(&db.other_url("again")).unwrap();
    assert_eq!(everything(&store), before, "refusing changed nothing");
}

#[test]
fn two_first_runs_create_the_schema_once() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let urls: Vec<String> = (0..4).map(|i| db.other_url(&format!("first{i}"))).collect();
    let created: Vec<bool> = std::thread::scope(|s| {
        let threads: Vec<_> = urls
            .iter()
            .map(|url| s.spawn(move || PostgresStore::create(url).map(|(_, created)| created)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
    let versions: i64 = db
        .client()
        .query_one("SELECT count(*) FROM smax.schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(PG_SCHEMA_VERSION));
}

/// A process whose lease moved on (another process took the run over) writes nothing:
/// not a journal batch, not the run's end.
#[test]
fn a_stale_epoch_writer_writes_nothing() {
    let Some((db, _clock, mut store)) = fresh() else {
        return;
    };
    let _lock = store.lock(&LockName::Run("bf".into()), None).unwrap();
    assert_eq!(store.begin_run(&start("bf", "hi")).unwrap(), Begin::New);
    store.record_attempts("bf", &[attempt("u1", 2)]).unwrap();
    let before = everything(&store);

    // What a takeover does once this process's lock is gone (its connection dropped
    // by the server, or a pooler that handed its session to someone else).
    let mut other = db.client();
    other
        .execute(
            "UPDATE smax.leases SET epoch = epoch + 1 WHERE run_id = 'bf'",
            &[],
        )
        .unwrap();

    let run: Arc<str> = "bf".into();
    let batch = JournalBatch {
        attempts: vec![(run.clone(), attempt("u2", 3))],
        outcomes: vec![(run, outcome("u1", OutcomeClass::Sent, Some(200), None))],
    };
    let err = store.record_batch(&batch).unwrap_err();
    assert!(matches!(err, StateError::LostRun { .. }), "{err}");
    assert!(err.to_string().contains("taken over"), "{err}");
    for (what, result) in [
        (
            "finish_run",
            store.finish_run("bf", state::RunStatus::Completed),
        ),
        ("settle_in_flight", store.settle_in_flight("bf").map(|_| ())),
        ("record_plan", store.record_plan("bf", 3, 0)),
    ] {
        assert!(
            matches!(result, Err(StateError::LostRun { .. })),
            "{what}: {result:?}"
        );
    }
    assert_eq!(everything(&store), before, "nothing was written");
}

/// When the server ends the session (a restart, a failover, a killed backend), every
/// later write fails, the locks are the server's to give again, and the handle never
/// reconnects behind the caller's back.
#[test]
fn a_lost_connection_stops_every_write_and_releases_the_locks() {
    let Some((db, _clock, mut store)) = fresh() else {
        return;
    };
    let name = LockName::Run("bf".into());
    let lock = store.lock(&name, None).unwrap();
    store.begin_run(&start("bf", "hi")).unwrap();
    store.record_attempts("bf", &[attempt("u1", 2)]).unwrap();
    let before = everything(&PostgresStore::open(&db.other_url("reader")).unwrap());

    let mut admin = db.client();
    let killed: bool = admin
        .query_one(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'smax-campaign'
               AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed);

    let err = store
        .record_attempts("bf", &[attempt("u2", 3)])
        .unwrap_err();
    assert!(err.to_string().contains("connection was lost"), "{err}");
    let err = store
        .finish_run("bf", state::RunStatus::Completed)
        .unwrap_err();
    assert!(err.to_string().contains("connection was lost"), "{err}");

    // The lock is free for another process (once the server has finished ending the
    // session); ours is let go quietly.
    let other = PostgresStore::open(&db.other_url("next")).unwrap();
    let taken = other.lock(&name, Some(std::time::Duration::from_secs(30)));
    assert!(taken.is_ok(), "{:?}", taken.err());
    drop(lock);
    assert_eq!(everything(&other), before, "nothing more was written");
}

#[test]
fn a_password_is_never_shown_nor_stored() {
    let Some((db, clock, mut store)) = fresh() else {
        return;
    };
    drop(store.lock(&LockName::Bot("b".into()), None).unwrap());
    populated(&mut store, &clock);
    // The test server trusts loopback, so any password gets in: it is carried, unused.
    let secret = "pg-secret-never-shown-93ad";
    let url = db.url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{secret}@"),
        1,
    );
    let location = StateLocation::Postgres(url.clone());
    let store = state::open(&location).unwrap().unwrap();
    let shown = [
        store.location(),
        location.to_string(),
        format!("{location:?}"),
        store.lock_space(),
    ];
    for text in shown {
        assert!(!text.contains(secret), "{text}");
    }
    let missing = StateLocation::Postgres(url.replace("smax_test_", "nosuchdb_"));
    let err = state::open(&missing).map(|_| ()).unwrap_err().to_string();
    assert!(!err.contains(secret), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let attempts = [Attempt {
        key: format!("key-{secret}"),
        source: secret.to_owned(),
        row: 1,
    }];
    let mut store = store;
    store.record_attempts("bf", &attempts).unwrap();
    let dump: String = db
        .client()
        .query(
            "SELECT concat_ws(' ', d.*::text, r.*::text) FROM smax.deliveries d
             JOIN smax.runs r ON r.id = d.run",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert!(!dump.contains(secret), "{dump}");
    assert!(dump.contains("key-***"), "{dump}");
}

/// `sslmode=require` means TLS or nothing: against a server without TLS (the loopback
/// test server) the connection is refused, never made in the clear.
#[test]
fn sslmode_require_never_falls_back_to_plain_text() {
    let Some((db, _clock, _store)) = fresh() else {
        return;
    };
    for mode in ["require", "verify-full"] {
        let url = format!("{}?sslmode={mode}", db.url());
        let err = PostgresStore::open(&url)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot connect"), "{mode}: {err}");
        assert!(
            err.to_lowercase().contains("tls") || err.to_lowercase().contains("ssl"),
            "{mode}: {err}"
        );
    }
    let url = format!("{}?sslmode=disable", db.url());
    assert!(PostgresStore::open(&url).is_ok());
}

/// A lock the server granted but whose holder could not be recorded is let go at once:
/// never left held by this session (which would re-enter it, never freeing it).
#[test]
fn a_lock_that_fails_half_way_is_not_left_held() {
    let Some((db, _clock, store)) = fresh() else {
        return;
    };
    let name = LockName::Run("bf".into());
    db.client()
        .batch_execute(
            "ALTER TABLE smax.lock_holders ADD CONSTRAINT refuse CHECK (false) NOT VALID",
        )
        .unwrap();
    let err = store.lock(&name, None).unwrap_err();
    assert!(err.to_string().contains("refuse"), "{err}");
    assert_eq!(store.lock_holder(&name).unwrap(), None, "nothing held");
    let held: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
    db.client()
        .batch_execute("ALTER TABLE smax.lock_holders DROP CONSTRAINT refuse")
        .unwrap();
    let other = PostgresStore::open(&db.other_url("other")).unwrap();
    drop(other.lock(&name, None).unwrap());
    drop(store.lock(&name, None).unwrap());
}

/// `sslrootcert` (a private CA's certificates) is ours to read: a file that is missing
/// or holds no certificate is a clear error naming the file, never its content.
#[test]
fn sslrootcert_is_read_and_refused_clearly() {
    let Some((db, _clock, _store)) = fresh() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("secret.txt");
    std::fs::write(&not_pem, "TOP-SECRET-CONTENT-1f2e").unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, says) in [
        (&not_pem, "holds no PEM certificate"),
        (&missing, "cannot read"),
    ] {
        let url = format!(
            "{}?sslmode=require&sslrootcert={}",
            db.url(),
            path.display()
        );
        let err = PostgresStore::open(&url)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains("TOP-SECRET"), "{err}");
    }
    // Taken out of what the client reads: with TLS off it changes nothing.
    let url = format!(
        "{}?sslrootcert={}&sslmode=disable",
        db.url(),
        not_pem.display()
    );
    assert!(PostgresStore::open(&url).is_ok());
}

/// The session sets its own timeouts: a statement timeout the database (or role) sets
/// for everyone must not cut the store's longer statements (a big batch, a resume's
/// read) short, which would stop runs for no reason.
#[test]
fn a_database_wide_statement_timeout_does_not_cut_the_store_short() {
    let Some((db, _clock, store)) = fresh() else {
        return;
    };
    drop(store);
    db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET statement_timeout = '1ms'",
            db.url().rsplit('/').next().unwrap()
        ))
        .unwrap();
    // A new session, which the setting applies to.
    let mut store = PostgresStore::open(&db.other_url("timed")).unwrap();
    store.begin_run(&start("bf", "hi")).unwrap();
    let many: Vec<Attempt> = (0..20_000)
        .map(|i| attempt(&format!("u{i}"), i + 2))
        .collect();
    store.record_attempts("bf", &many).unwrap();
    let handled = store.handled("bf", &[OutcomeClass::Attempted]).unwrap();
    assert!(handled.contains(smax_campaign::state::key_hash("u19999")));
}
