//! The shared store: a PostgreSQL database (`--state postgres://…`), for CI runners
//! without a disk of their own and for many machines sending through one record.
//!
//! # One connection per process and database
//!
//! Every handle this process opens on one database shares one session: one
//! connection, driven by a thread of its own (so a handle may be used from async code
//! too). The session carries the process's locks (session advisory locks, which the
//! server releases when the connection ends, however it ends) and its journal. When
//! the connection fails, the session is broken for good: the server has let go of
//! its locks, so nothing more may be written or sent through it, and it never
//! reconnects. Only once every handle is gone does a new `open` connect again.
//!
//! # Fencing
//!
//! Taking a run's lock bumps the run's lease epoch (`smax.leases`), and the session
//! remembers the epoch it got. Every write of that run's records checks the lease,
//! `FOR SHARE`, in the statement (or transaction) that writes: a takeover's bump
//! waits for that share lock, so it comes wholly before or after a batch. A batch
//! that finds a newer epoch writes nothing and fails ([`StateError::LostRun`]); the
//! journal then refuses everything after it, so the run stops before sending any of
//! it. A stale writer (a process that lost its session but not its illusions, or
//! that reaches the server through a pooler) can therefore never record, and so
//! never send, anything of a run another process now holds.
//!
//! # Batches
//!
//! A journal batch is one transaction of at most two statements (attempts, then
//! outcomes), each an `INSERT … SELECT FROM unnest(…) ON CONFLICT …` over the whole
//! batch, committed with `synchronous_commit = on`. A batch is all or nothing: when
//! the rows it wrote are fewer than the records it carries (a lost lease, an unknown
//! run, or a recipient whose stored class forbids a new attempt), it is rolled back
//! and nothing of it is sent. A new attempt is a compare-and-set on the stored class:
//! it never overwrites a `sent` record, nor one in flight (`attempted`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{mpsc, Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, NoTls};

use super::error::{to_i64, StateError};
use super::lock::{host_name, HeldLock, Holder, LockError, LockName};
use super::model::{
    key_hash, Begin, Counts, DeliveryRow, Fingerprint, JournalBatch, KeyHashBuild, OutcomeClass,
    RunStart, RunStatus, RunSummary, SortedKeys, SETTLED_TEXT,
};
use super::StateStore;

/// Schema migrations; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
/// Append only: a released migration never changes. Times are Unix milliseconds (UTC),
/// stamped by the client, as in the SQLite store.
const MIGRATIONS: &[&str] = &[
    // 1: runs, fingerprint history, deliveries, leases, lock holders.
    "CREATE TABLE smax.runs (
        id           bigserial PRIMARY KEY,
        run_id       text   NOT NULL UNIQUE,
        campaign     text   NOT NULL,
        occurrence   text,
        status       text   NOT NULL,
        started_ms   bigint NOT NULL,
        finished_ms  bigint,
        fp_digest    text   NOT NULL,
        fp_parts     text   NOT NULL,
        audience     bigint,
        invalid      bigint
    );
    CREATE INDEX runs_by_campaign ON smax.runs (campaign, started_ms);
    CREATE TABLE smax.fingerprint_history (
        run          bigint NOT NULL REFERENCES smax.runs (id),
        replaced_ms  bigint NOT NULL,
        digest       text   NOT NULL,
        parts        text   NOT NULL
    );
    CREATE INDEX fingerprint_history_by_run ON smax.fingerprint_history (run);
    CREATE TABLE smax.deliveries (
        run            bigint  NOT NULL REFERENCES smax.runs (id),
        recipient      text    NOT NULL,
        source         text    NOT NULL,
        source_row     bigint  NOT NULL,
        class          text    NOT NULL,
        attempts       integer NOT NULL,
        status         integer,
        platform_text  text,
        first_ms       bigint  NOT NULL,
        last_ms        bigint  NOT NULL,
        PRIMARY KEY (run, recipient)
    );
    -- Who may write a run's records: the epoch moves on with every takeover.
    CREATE TABLE smax.leases (
        run_id    text   PRIMARY KEY,
        epoch     bigint NOT NULL,
        pid       bigint NOT NULL,
        host      text   NOT NULL,
        since_ms  bigint NOT NULL
    );
    -- Names the holder of an advisory lock for error messages; the lock itself is
    -- the server's (a row whose backend no longer holds the lock means nothing).
    CREATE TABLE smax.lock_holders (
        name         text    PRIMARY KEY,
        backend_pid  integer NOT NULL,
        pid          bigint  NOT NULL,
        host         text    NOT NULL,
        since_ms     bigint  NOT NULL,
        what         text    NOT NULL
    );",
];

/// The schema version this build writes.
pub const PG_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock migrations run under (transaction-scoped), so that two first
/// runs never both create the schema.
const MIGRATION_LOCK: i64 = 0x534D_4158_0000_0001;

const POLL: Duration = Duration::from_millis(50);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// The leases this batch is fenced by: a record of a run whose lease this session
/// holds is written only while the lease's epoch is still the one it got.
const SQL_FENCE: &str = "fence AS (
        SELECT l.run_id FROM smax.leases l
        JOIN unnest($1::text[], $2::bigint[]) AS f (run_id, epoch)
          ON f.run_id = l.run_id AND f.epoch = l.epoch
        FOR SHARE OF l
    )";

const SQL_FENCED: &str = "(r.run_id <> ALL ($1::text[]) OR r.run_id IN (SELECT run_id FROM fence))";

const SQL_DELIVERY_COLUMNS: &str = "(run, recipient, source, source_row, class, attempts, status, \
     platform_text, first_ms, last_ms)";

/// A batch's attempts: `$1`/`$2` the fence, `$3`–`$6` the columns, `$7` the time.
static SQL_ATTEMPTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {SQL_FENCE}
        INSERT INTO smax.deliveries AS d {SQL_DELIVERY_COLUMNS}
        SELECT r.id, a.key, a.source, a.source_row, 'attempted', 1, NULL, NULL, $7, $7
        FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[])
             AS a (run_id, key, source, source_row)
        JOIN smax.runs r ON r.run_id = a.run_id
        WHERE {SQL_FENCED}
        ON CONFLICT (run, recipient) DO UPDATE SET
            source = EXCLUDED.source,
            source_row = EXCLUDED.source_row,
            class = 'attempted',
            attempts = d.attempts + 1,
            status = NULL,
            platform_text = NULL,
            last_ms = EXCLUDED.last_ms
        WHERE d.class NOT IN ('sent', 'attempted')"
    )
});

/// A batch's outcomes: `$1`/`$2` the fence, `$3`–`$8` the columns, `$9` the time.
// In ON CONFLICT's SET, `d` is the row as it was, so `d.class` is the class before
// this outcome: an outcome that closes an attempt replaces the one request that the
// attempt counted with the real number.
static SQL_OUTCOMES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {SQL_FENCE}
        INSERT INTO smax.deliveries AS d {SQL_DELIVERY_COLUMNS}
        SELECT r.id, o.key, '', 0, o.class, o.attempts, o.status, o.text, $9, $9
        FROM unnest($3::text[], $4::text[], $5::text[], $6::integer[], $7::integer[], $8::text[])
             AS o (run_id, key, class, attempts, status, text)
        JOIN smax.runs r ON r.run_id = o.run_id
        WHERE {SQL_FENCED}
        ON CONFLICT (run, recipient) DO UPDATE SET
            class = EXCLUDED.class,
            attempts = CASE WHEN d.class = 'attempted'
                            THEN d.attempts - 1 + greatest(EXCLUDED.attempts, 1)
                            ELSE d.attempts + EXCLUDED.attempts END,
            status = EXCLUDED.status,
            platform_text = EXCLUDED.platform_text,
            last_ms = EXCLUDED.last_ms"
    )
});

thread_local! {
    /// The journal's statements, prepared once on this thread's connection: every
    /// session has a thread of its own, so they never meet another connection, and
    /// they end with it.
    static PREPARED: std::cell::RefCell<HashMap<&'static str, postgres::Statement>> =
        std::cell::RefCell::new(HashMap::new());
}

/// `sql`, prepared on `client` the first time only (each batch would otherwise cost
/// a round trip to parse it again).
fn prepared(client: &mut Client, sql: &'static str) -> Result<postgres::Statement, Fail> {
    if let Some(statement) = PREPARED.with(|p| p.borrow().get(sql).cloned()) {
        return Ok(statement);
    }
    let statement = client.prepare(sql)?;
    PREPARED.with(|p| p.borrow_mut().insert(sql, statement.clone()));
    Ok(statement)
}

const SQL_RUN_COLUMNS: &str =
    "id, run_id, campaign, occurrence, status, started_ms, finished_ms, fp_digest, audience, invalid";

type Clock = Box<dyn Fn() -> DateTime<Utc> + Send>;

/// The PostgreSQL implementation of [`StateStore`].
pub struct PostgresStore {
    session: Arc<Session>,
    read_only: bool,
    now: Clock,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.session.shown)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the store in the database at `url` (a `postgres://` URL or a keyword
    /// string) and upgrades its schema. A database without the schema is
    /// [`StateError::Missing`]: it is never created on the way. One from a newer
    /// version is refused.
    pub fn open(url: &str) -> Result<PostgresStore, StateError> {
        let session = Session::get(url)?;
        match session.version()? {
            None => Err(StateError::Missing {
                path: PathBuf::from(&session.shown),
            }),
            Some(found) if found > PG_SCHEMA_VERSION => Err(future(found)),
            Some(found) if found < PG_SCHEMA_VERSION => {
                session.migrate()?;
                Ok(PostgresStore::wrap(session, false))
            }
            Some(_) => Ok(PostgresStore::wrap(session, false)),
        }
    }

    /// Creates the schema when the database has none, then opens it; says whether it
    /// was created. Needs the right to create a schema in the database.
    pub fn create(url: &str) -> Result<(PostgresStore, bool), StateError> {
        let session = Session::get(url)?;
        let created = session.migrate()?;
        Ok((PostgresStore::wrap(session, false), created))
    }

    /// Opens the store for reading only; `Ok(None)` when the database has no schema
    /// (and nothing is created). `plan` and `status` use this.
    pub fn open_read_only(url: &str) -> Result<Option<PostgresStore>, StateError> {
        let session = Session::get(url)?;
        match session.version()? {
            None => Ok(None),
            Some(found) if found > PG_SCHEMA_VERSION => Err(future(found)),
            Some(found) if found < PG_SCHEMA_VERSION => Err(StateError::NeedsUpgrade {
                path: PathBuf::from(&session.shown),
                found,
                supported: PG_SCHEMA_VERSION,
            }),
            Some(_) => Ok(Some(PostgresStore::wrap(session, true))),
        }
    }

    /// Replaces the clock that stamps records (for deterministic tests).
    #[must_use]
    pub fn with_clock(mut self, now: impl Fn() -> DateTime<Utc> + Send + 'static) -> Self {
        self.now = Box::new(now);
        self
    }

    fn wrap(session: Arc<Session>, read_only: bool) -> PostgresStore {
        PostgresStore {
            session,
            read_only,
            now: Box::new(Utc::now),
        }
    }

    fn now_ms(&self) -> i64 {
        (self.now)().timestamp_millis()
    }

    fn writable(&self) -> Result<(), StateError> {
        if self.read_only {
            return Err(StateError::ReadOnly {
                path: PathBuf::from(&self.session.shown),
            });
        }
        Ok(())
    }

    /// Runs `job` in a transaction that holds this session's lease of `run_id` (when it
    /// holds one) `FOR SHARE`, and fails with [`StateError::LostRun`] when the lease
    /// moved on: a write of a run's records never lands after a takeover.
    fn fenced_write<R: Send + 'static>(
        &self,
        run_id: &str,
        job: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<R, Fail> + Send + 'static,
    ) -> Result<R, StateError> {
        self.writable()?;
        let shown = self.session.shown.clone();
        let epoch = self.epoch(run_id);
        let run_id = run_id.to_owned();
        self.session.call(move |c| {
            let mut tx = c.transaction()?;
            check_lease(&mut tx, &run_id, epoch, &shown)?;
            let result = job(&mut tx)?;
            tx.commit()?;
            Ok(result)
        })
    }

    /// One fenced `UPDATE` of the run's row (`$1` is the run id); an unknown run is
    /// [`StateError::UnknownRun`].
    fn update_run<A, B>(
        &self,
        run_id: &str,
        sql: &'static str,
        values: (A, B),
    ) -> Result<(), StateError>
    where
        A: postgres::types::ToSql + Sync + Send + 'static,
        B: postgres::types::ToSql + Sync + Send + 'static,
    {
        let id_text = run_id.to_owned();
        self.fenced_write(run_id, move |tx| {
            if tx.execute(sql, &[&id_text, &values.0, &values.1])? == 0 {
                return Err(unknown_run(&id_text));
            }
            Ok(())
        })
    }

    /// The lease epoch this session got when it took `run_id`'s lock; `None` when it
    /// does not hold it (runs it has not locked are not fenced: only the runner's
    /// writes are, and it always holds the run's lock).
    fn epoch(&self, run_id: &str) -> Option<i64> {
        self.session
            .epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run_id)
            .copied()
    }
}

fn future(found: u32) -> StateError {
    StateError::FutureVersion {
        found,
        supported: PG_SCHEMA_VERSION,
    }
}

// ---- the session ----

type Job = Box<dyn FnOnce(&mut Client) -> bool + Send>;

/// One connection, shared by every handle of this process on one database.
struct Session {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The location as people see it (no password).
    shown: String,
    /// What identifies the database's lock space: host, port and database.
    space: String,
    /// Why the connection is gone, once it is: every later call fails with it.
    broken: Arc<Mutex<Option<String>>>,
    /// Lock keys this process holds (advisory locks are re-entrant within a session;
    /// two takers in one process must exclude each other all the same).
    held: Mutex<HashSet<i64>>,
    /// Run id → the lease epoch this session got when it took the run's lock.
    epochs: Mutex<HashMap<String, i64>>,
}

/// URL → its session's slot. A slot is locked while its URL connects, so one URL
/// never gets two sessions in one process, and other URLs need not wait for it.
static SESSIONS: OnceLock<Mutex<HashMap<String, SessionSlot>>> = OnceLock::new();

type SessionSlot = Arc<Mutex<Weak<Session>>>;

/// What a job can fail with: the server's error, or a state error of its own.
enum Fail {
    Pg(postgres::Error),
    State(StateError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl Session {
    /// The live session for `url`, or a new connection. A broken session is returned
    /// as it is while any handle still holds it: its holders lost their locks, and a
    /// fresh connection must not let them carry on as if they had not.
    fn get(url: &str) -> Result<Arc<Session>, StateError> {
        let slot = {
            let sessions = SESSIONS.get_or_init(Default::default);
            let mut sessions = sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.retain(|_, slot| {
                // A slot being connected (locked) is kept; never waited for here.
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map(|weak| weak.strong_count() > 0)
                        .unwrap_or(true)
            });
            sessions.entry(url.to_owned()).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = slot.upgrade() {
            return Ok(session);
        }
        let session = Arc::new(Session::connect(url)?);
        *slot = Arc::downgrade(&session);
        Ok(session)
    }

    fn connect(url: &str) -> Result<Session, StateError> {
        register_password(url);
        let shown = shown(url);
        let backend = |detail: String| StateError::Backend {
            path: PathBuf::from(&shown),
            detail,
        };
        let (config, root_cert) = config(url).map_err(&backend)?;
        let space = lock_space(&config);
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => None,
            _ => {
                let extra = match &root_cert {
                    Some(path) => root_certs(path).map_err(&backend)?,
                    None => Vec::new(),
                };
                Some(tls_connector(extra))
            }
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let broken = Arc::new(Mutex::new(None));
        let thread = std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let connected = match tls {
                    None => config.connect(NoTls),
                    Some(tls) => config.connect(tls),
                };
                let mut client = match connected.map_err(|e| describe(&e)).and_then(|mut c| {
                    prepare_session(&mut c)?;
                    Ok(c)
                }) {
                    Ok(client) => client,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    if !job(&mut client) {
                        // The connection is gone: the jobs still queued fail on their own.
                        break;
                    }
                }
            })
            .map_err(|e| backend(format!("cannot start the connection's thread: {e}")))?;
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(detail)) => {
                let _ = thread.join();
                return Err(backend(format!(
                    "cannot connect: {detail}. Check the URL in --state (SMAX_STATE), that the \
                     server is reachable, and the password (in the URL or PGPASSWORD)"
                )));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(backend("the connection's thread ended at start".to_owned()));
            }
        }
        Ok(Session {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
            shown,
            space,
            broken,
            held: Mutex::new(HashSet::new()),
            epochs: Mutex::new(HashMap::new()),
        })
    }

    fn backend(&self, detail: impl Into<String>) -> StateError {
        StateError::Backend {
            path: PathBuf::from(&self.shown),
            detail: crate::redact::scrub(&detail.into()).into_owned(),
        }
    }

    fn lost(&self, why: &str) -> StateError {
        self.backend(format!(
            "the connection was lost ({why}); the server has released this process's locks, \
             so it records and sends nothing more. Run again to resume"
        ))
    }

    /// Why the connection is gone, once it is.
    fn broken_by(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `job` on the session's connection and waits for its answer.
    fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> Result<R, Fail> + Send + 'static,
    ) -> Result<R, StateError> {
        if let Some(why) = self.broken_by() {
            return Err(self.lost(&why));
        }
        let (answer, answered) = mpsc::sync_channel(1);
        let broken = self.broken.clone();
        let wrapped: Job = Box::new(move |client: &mut Client| {
            let result = job(client);
            let lost = match &result {
                Err(Fail::Pg(e)) if connection_lost(e) || client.is_closed() => Some(describe(e)),
                _ if client.is_closed() => Some("the server closed the connection".to_owned()),
                _ => None,
            };
            let alive = lost.is_none();
            if let Some(why) = lost {
                *broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            }
            let _ = answer.send(result);
            alive
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|jobs| jobs.send(wrapped).is_ok())
            .unwrap_or(false);
        let result = if sent { answered.recv().ok() } else { None };
        match result {
            Some(Ok(value)) => Ok(value),
            Some(Err(Fail::State(e))) => Err(e),
            Some(Err(Fail::Pg(e))) => {
                if let Some(why) = self.broken_by() {
                    return Err(self.lost(&why));
                }
                Err(self.backend(describe(&e)))
            }
            None => {
                let why = "its thread ended".to_owned();
                *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                Err(self.lost(&why))
            }
        }
    }

    /// The schema version of the database; `None` when it has no schema.
    fn version(&self) -> Result<Option<u32>, StateError> {
        let found = self.call(|c| {
            let exists: bool = c
                .query_one("SELECT to_regclass('smax.schema_version') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                return Ok(None);
            }
            let version: Option<i32> = c
                .query_one("SELECT max(version) FROM smax.schema_version", &[])?
                .get(0);
            Ok(version)
        })?;
        match found {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| self.backend(format!("invalid schema version {v}"))),
        }
    }

    /// Brings the schema to this build's version, under an advisory lock; says whether
    /// it created the schema.
    fn migrate(&self) -> Result<bool, StateError> {
        let host = host_name();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            let exists: bool = tx
                .query_one("SELECT to_regclass('smax.schema_version') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                tx.batch_execute(
                    "CREATE SCHEMA IF NOT EXISTS smax;
                     CREATE TABLE smax.schema_version (
                         version     integer PRIMARY KEY,
                         applied_ms  bigint  NOT NULL,
                         applied_by  text    NOT NULL
                     );",
                )?;
            }
            let version: Option<i32> = tx
                .query_one("SELECT max(version) FROM smax.schema_version", &[])?
                .get(0);
            let version = version.unwrap_or(0);
            let Ok(from) = usize::try_from(version) else {
                return Err(Fail::State(StateError::Invalid(format!(
                    "schema version {version}"
                ))));
            };
            if from > MIGRATIONS.len() {
                return Err(Fail::State(future(from as u32)));
            }
            let by = format!(
                "smax-campaign {} on {host} (pid {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            );
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
                tx.batch_execute(sql)?;
                let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
                tx.execute(
                    "INSERT INTO smax.schema_version (version, applied_ms, applied_by)
                     VALUES ($1, $2, $3)",
                    &[&v, &Utc::now().timestamp_millis(), &by],
                )?;
            }
            tx.commit()?;
            Ok(!exists)
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which closes the connection; waiting for
        // it means the server has been told before this returns.
        drop(self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// Reads the URL (or keyword string) into a client configuration: TCP keepalives
/// every 30 s, a connect timeout, the password from PGPASSWORD when the URL has none.
fn config(url: &str) -> Result<(Config, Option<String>), String> {
    let (mut config, root_cert) = parse(url).map_err(|e| {
        format!(
            "not a usable PostgreSQL connection URL ({}); expected \
             postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require|verify-full][&sslrootcert=FILE]",
            chain(&e)
        )
    })?;
    let root_cert = root_cert.or_else(|| std::env::var("PGSSLROOTCERT").ok());
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            crate::redact::register(&password);
            config.password(password);
        }
    }
    if config.get_user().is_none() {
        if let Ok(user) = std::env::var("PGUSER") {
            config.user(&user);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // Keepalives find a silent peer while idle; the user timeout finds one while a
    // write waits for its acknowledgement (a partition mid-batch), instead of the
    // kernel's quarter of an hour.
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("smax-campaign");
    }
    Ok((config, root_cert))
}

/// Reads a URL or keyword string as the client takes it: `sslrootcert` taken out (the
/// client does not know it; it is ours to load), and libpq's verify-full and verify-ca
/// read as require (rustls always verifies the certificate and the host name).
fn parse(url: &str) -> Result<(Config, Option<String>), postgres::Error> {
    let (url, root_cert) = take_option(url, "sslrootcert");
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    Ok((Config::from_str(&url)?, root_cert))
}

/// `text` without its option `name` (a URL query parameter or a keyword), and the
/// option's value.
fn take_option(text: &str, name: &str) -> (String, Option<String>) {
    let prefix = format!("{name}=");
    if text.contains("://") {
        let Some((base, query)) = text.split_once('?') else {
            return (text.to_owned(), None);
        };
        let mut value = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|part| match part.strip_prefix(&prefix) {
                Some(v) => {
                    value = Some(
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                    false
                }
                None => true,
            })
            .collect();
        let text = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (text, value);
    }
    let mut value = None;
    let kept: Vec<&str> = text
        .split(' ')
        .filter(|word| match word.strip_prefix(&prefix) {
            Some(v) => {
                value = Some(v.trim_matches('\'').to_owned());
                false
            }
            None => true,
        })
        .collect();
    (kept.join(" "), value)
}

/// Registers the password a URL or keyword string carries (as the client reads it:
/// quoted, percent-encoded or not) with the scrubber.
pub(super) fn register_password(url: &str) {
    crate::redact::register_url_password(url);
    if let Ok((config, _)) = parse(url) {
        if let Some(password) = config.get_password() {
            crate::redact::register(&String::from_utf8_lossy(password));
        }
    }
}

/// How a URL or keyword string is shown: rebuilt from what it names, `***` for a
/// password; the scheme only when it cannot be read.
pub(super) fn shown(url: &str) -> String {
    let Ok((config, _)) = parse(url) else {
        return "postgres://…".to_owned();
    };
    let mut text = String::from("postgres://");
    let user = config.get_user().unwrap_or("");
    text.push_str(user);
    if config.get_password().is_some() {
        text.push_str(":***");
    }
    if !user.is_empty() || config.get_password().is_some() {
        text.push('@');
    }
    text.push_str(&hosts(&config));
    if let Some(db) = config.get_dbname() {
        text.push('/');
        text.push_str(db);
    }
    text
}

fn hosts(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if ports.is_empty() {
        hosts.join(",")
    } else {
        format!("{}:{}", hosts.join(","), ports.join(","))
    }
}

/// An error and its causes, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = cause.source();
    }
    text
}

/// Largest `sslrootcert` file read.
const MAX_ROOT_CERT_BYTES: u64 = 1 << 20;

/// The certificates of a PEM file (`sslrootcert`, PGSSLROOTCERT): a private CA's, or a
/// cloud provider's bundle. Named in errors by path only, never by content.
fn root_certs(path: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ROOT_CERT_BYTES).read_to_end(&mut bytes))
        .map_err(|e| {
            format!(
                "cannot read sslrootcert {path}: {}",
                crate::human::io_reason(&e)
            )
        })?;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(format!("sslrootcert {path} holds no PEM certificate"));
    }
    Ok(certs)
}

fn tls_connector(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(extra);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match tls {
        Ok(tls) => tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        // The ring provider supports the default versions; this is unreachable, and a
        // config with no roots fails the handshake rather than trusting anyone.
        Err(_) => tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

/// Sets up a new session: commits wait for the disk, and a pooler that hands each
/// transaction to another server session (which would make session locks
/// meaningless) is refused.
fn prepare_session(client: &mut Client) -> Result<(), String> {
    // Commits wait for the server's disk; our statements are bounded by design, so a
    // role's statement timeout must not cut a long read (a resume of a million
    // recipients) short; and a role's idle timeout must not end a session that holds
    // locks through a send window's pause (PostgreSQL 14 and later know it).
    client
        .batch_execute("SET synchronous_commit = on; SET statement_timeout = 0")
        .map_err(|e| describe(&e))?;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .map_err(|e| describe(&e))?
        .get(0);
    if version >= 140_000 {
        client
            .batch_execute("SET idle_session_timeout = 0")
            .map_err(|e| describe(&e))?;
    }
    let mut backends = Vec::new();
    for _ in 0..3 {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|e| describe(&e))?
            .get(0);
        backends.push(pid);
    }
    if backends.windows(2).any(|w| w[0] != w[1]) {
        return Err(
            "the server session changed between two statements: this is a connection \
             pooler in transaction mode (e.g. PgBouncer pool_mode=transaction), through which \
             session locks do not hold. Connect to PostgreSQL directly, or through a pool in \
             session mode"
                .to_owned(),
        );
    }
    Ok(())
}

/// True when the error ends the session: the connection closed, or the server ended
/// it (shut down, restarted, terminated the backend).
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            matches!(db.severity(), "FATAL" | "PANIC") || db.code().code().starts_with("57P")
        })
        || e.code().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// A server error in its own words (message, detail, hint), or the client's.
fn describe(e: &postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_owned();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; {hint}"));
            }
            if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE {
                text.push_str(
                    "; the database user needs to create a schema (for `state init`) and to \
                     read and write the `smax` schema",
                );
            }
            text
        }
        None => chain(e),
    };
    crate::redact::scrub(&text).into_owned()
}

fn lock_space(config: &Config) -> String {
    format!(
        "postgres://{}/{}",
        hosts(config),
        config.get_dbname().unwrap_or("")
    )
}

/// The advisory lock key of a lock name: a stable 64-bit hash, the same in every
/// process and every version.
fn lock_key(name: &LockName) -> i64 {
    let text = format!("smax-campaign:{}", name.key());
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as i64
}

// ---- reading ----

fn corrupt(shown: &str, detail: impl Into<String>) -> Fail {
    Fail::State(StateError::Corrupt {
        path: PathBuf::from(shown),
        detail: detail.into(),
    })
}

fn time(shown: &str, ms: i64) -> Result<DateTime<Utc>, Fail> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| corrupt(shown, format!("timestamp {ms} out of range")))
}

fn class(shown: &str, text: &str) -> Result<OutcomeClass, Fail> {
    text.parse()
        .map_err(|_| corrupt(shown, format!("unknown delivery class `{text}`")))
}

fn run_pk(c: &mut impl GenericClient, run_id: &str) -> Result<Option<i64>, Fail> {
    Ok(
        c.query_opt("SELECT id FROM smax.runs WHERE run_id = $1", &[&run_id])?
            .map(|row| row.get(0)),
    )
}

fn unknown_run(run_id: &str) -> Fail {
    Fail::State(StateError::UnknownRun {
        run_id: run_id.to_owned(),
    })
}

/// Reads `SQL_RUN_COLUMNS` rows into summaries, with their counts.
fn summaries(
    c: &mut impl GenericClient,
    shown: &str,
    rows: Vec<postgres::Row>,
) -> Result<Vec<RunSummary>, Fail> {
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut counts: HashMap<i64, Counts> = HashMap::new();
    for row in c.query(
        "SELECT run, class, count(*) FROM smax.deliveries WHERE run = ANY($1)
         GROUP BY run, class",
        &[&ids],
    )? {
        let n: i64 = row.get(2);
        counts
            .entry(row.get(0))
            .or_default()
            .add(class(shown, row.get(1))?, n.unsigned_abs());
    }
    rows.into_iter()
        .map(|r| {
            let status: String = r.get(4);
            let finished: Option<i64> = r.get(6);
            let audience: Option<i64> = r.get(8);
            let invalid: Option<i64> = r.get(9);
            Ok(RunSummary {
                status: status
                    .parse()
                    .map_err(|_| corrupt(shown, format!("unknown run status `{status}`")))?,
                started: time(shown, r.get(5))?,
                finished: finished.map(|ms| time(shown, ms)).transpose()?,
                counts: counts.get(&r.get::<_, i64>(0)).copied().unwrap_or_default(),
                run_id: r.get(1),
                campaign: r.get(2),
                occurrence: r.get(3),
                fingerprint_digest: r.get(7),
                audience: audience.map(i64::unsigned_abs),
                invalid: invalid.map(i64::unsigned_abs),
            })
        })
        .collect()
}

fn parts(shown: &str, json: &str) -> Result<BTreeMap<String, String>, Fail> {
    serde_json::from_str(json)
        .map_err(|err| corrupt(shown, format!("unreadable stored fingerprint: {err}")))
}

/// Every text the store writes passes through here, as in the SQLite store.
fn clean(text: &str) -> String {
    crate::redact::scrub(text).into_owned()
}

/// Records a new run (`running`, or `missed` and finished at once); `false` when a run
/// of that id already exists (it is left as it is).
fn insert_run(
    c: &mut impl GenericClient,
    start: &RunStart,
    fp: &str,
    now: i64,
    status: RunStatus,
) -> Result<bool, Fail> {
    let finished = (status != RunStatus::Running).then_some(now);
    Ok(c.query_opt(
        "INSERT INTO smax.runs (run_id, campaign, occurrence, status, started_ms,
                                finished_ms, fp_digest, fp_parts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (run_id) DO NOTHING RETURNING id",
        &[
            &start.run_id,
            &start.campaign,
            &start.occurrence,
            &status.as_str(),
            &now,
            &finished,
            &start.fingerprint.digest,
            &fp,
        ],
    )?
    .is_some())
}

/// Fails unless this session's lease of `run_id` (if it holds one) is still current;
/// holds the lease row `FOR SHARE` until the transaction ends.
fn check_lease(
    tx: &mut postgres::Transaction<'_>,
    run_id: &str,
    epoch: Option<i64>,
    shown: &str,
) -> Result<(), Fail> {
    let Some(epoch) = epoch else {
        return Ok(());
    };
    let current: Option<i64> = tx
        .query_opt(
            "SELECT epoch FROM smax.leases WHERE run_id = $1 FOR SHARE",
            &[&run_id],
        )?
        .map(|r| r.get(0));
    if current == Some(epoch) {
        return Ok(());
    }
    Err(Fail::State(StateError::LostRun {
        run_id: run_id.to_owned(),
        location: shown.to_owned(),
    }))
}

/// The journal's columns for `unnest`: one statement's attempts, or its outcomes.
#[derive(Default)]
struct AttemptColumns {
    /// Owned: the columns go to the session's thread.
    run: Vec<String>,
    key: Vec<String>,
    source: Vec<String>,
    row: Vec<i64>,
}

#[derive(Default)]
struct OutcomeColumns {
    run: Vec<String>,
    key: Vec<String>,
    class: Vec<&'static str>,
    attempts: Vec<i32>,
    status: Vec<Option<i32>>,
    text: Vec<Option<String>>,
}

/// Which statement of a batch a record goes to: the first that does not hold its
/// recipient yet (one statement may not change a row twice); almost always the first.
/// A hash collision only costs an extra statement.
fn statement_for(seen: &mut Vec<HashSet<u128, KeyHashBuild>>, run: &str, key: &str) -> usize {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(run.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    let id = hasher.digest128();
    match seen.iter().position(|ids| !ids.contains(&id)) {
        Some(i) => {
            seen[i].insert(id);
            i
        }
        None => {
            let mut ids = HashSet::default();
            ids.insert(id);
            seen.push(ids);
            seen.len() - 1
        }
    }
}

/// A batch as the columns of its statements (keys, sources and texts as the store
/// writes them: scrubbed).
fn columns(batch: &JournalBatch) -> Result<(Vec<AttemptColumns>, Vec<OutcomeColumns>), StateError> {
    let mut attempts: Vec<AttemptColumns> = Vec::new();
    let mut seen = Vec::new();
    for (run, a) in &batch.attempts {
        let key = clean(&a.key);
        let i = statement_for(&mut seen, run, &key);
        if i == attempts.len() {
            attempts.push(AttemptColumns::default());
        }
        let c = &mut attempts[i];
        c.run.push(run.to_string());
        c.key.push(key);
        c.source.push(clean(&a.source));
        c.row.push(to_i64("row", a.row)?);
    }
    let mut outcomes: Vec<OutcomeColumns> = Vec::new();
    let mut seen = Vec::new();
    for (run, o) in &batch.outcomes {
        let key = clean(&o.key);
        let i = statement_for(&mut seen, run, &key);
        if i == outcomes.len() {
            outcomes.push(OutcomeColumns::default());
        }
        let c = &mut outcomes[i];
        c.run.push(run.to_string());
        c.key.push(key);
        c.class.push(o.class.as_str());
        c.attempts
            .push(i32::try_from(o.attempts).unwrap_or(i32::MAX));
        c.status.push(o.status.map(i32::from));
        c.text.push(o.platform_text.as_deref().map(clean));
    }
    Ok((attempts, outcomes))
}

/// Names this process as the holder of lock `name`, and bumps the lease of `run` (the
/// epoch it returns fences every later write of the run's records).
fn note_holder(
    c: &mut Client,
    lock_name: &str,
    host: &str,
    what: &str,
    lease_run: Option<&str>,
) -> Result<Option<i64>, Fail> {
    let now = Utc::now().timestamp_millis();
    let pid = i64::from(std::process::id());
    let mut tx = c.transaction()?;
    tx.execute(
        "INSERT INTO smax.lock_holders (name, backend_pid, pid, host, since_ms, what)
         VALUES ($1, pg_backend_pid(), $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET backend_pid = EXCLUDED.backend_pid,
             pid = EXCLUDED.pid, host = EXCLUDED.host, since_ms = EXCLUDED.since_ms,
             what = EXCLUDED.what",
        &[&lock_name, &pid, &host, &now, &what],
    )?;
    let epoch = match lease_run {
        Some(run) => Some(
            tx.query_one(
                "INSERT INTO smax.leases (run_id, epoch, pid, host, since_ms)
                 VALUES ($1, 1, $2, $3, $4)
                 ON CONFLICT (run_id) DO UPDATE SET epoch = smax.leases.epoch + 1,
                     pid = EXCLUDED.pid, host = EXCLUDED.host,
                     since_ms = EXCLUDED.since_ms
                 RETURNING epoch",
                &[&run, &pid, &host, &now],
            )?
            .get::<_, i64>(0),
        ),
        None => None,
    };
    tx.commit()?;
    Ok(epoch)
}

/// The guard of an advisory lock: unlocks it on drop (the server does too, when the
/// connection ends).
struct PgLockGuard {
    session: Arc<Session>,
    key: i64,
    name: String,
    run: Option<String>,
}

impl Drop for PgLockGuard {
    fn drop(&mut self) {
        let (key, name) = (self.key, self.name.clone());
        // Errors cannot be reported from drop; a lost connection released it anyway.
        let _ = self.session.call(move |c| {
            // Unlocked first, whatever happens to the holder's row (a lock left held
            // would be re-entered by this session, never freed for others).
            let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&key]);
            let _ = c.execute(
                "DELETE FROM smax.lock_holders WHERE name = $1 AND backend_pid = pg_backend_pid()",
                &[&name],
            );
            unlocked?;
            Ok(())
        });
        if let Some(run) = &self.run {
            self.session
                .epochs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(run);
        }
        self.session
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

fn lock_error(e: StateError) -> LockError {
    LockError::Store(Box::new(e))
}

impl PostgresStore {
    /// Who holds the advisory lock `key` (named `name`), per the server.
    fn holder_of(&self, key: i64, name: &str) -> Result<Option<Holder>, StateError> {
        let name = name.to_owned();
        self.session.call(move |c| {
            let hi = (key >> 32) & 0xFFFF_FFFF;
            let lo = key & 0xFFFF_FFFF;
            let row = c.query_opt(
                "SELECT h.pid, h.host, h.since_ms, h.what
                 FROM pg_locks l
                 LEFT JOIN smax.lock_holders h ON h.name = $3 AND h.backend_pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1
                 LIMIT 1",
                &[&hi, &lo, &name],
            )?;
            Ok(row.map(|r| {
                let pid: Option<i64> = r.get(0);
                let since: Option<i64> = r.get(2);
                Holder {
                    pid: pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
                    host: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    since: since
                        .and_then(DateTime::from_timestamp_millis)
                        .unwrap_or(DateTime::UNIX_EPOCH),
                    what: r.get::<_, Option<String>>(3).unwrap_or_default(),
                }
            }))
        })
    }

    /// One try at the lock: `Ok(None)` when somebody holds it.
    fn try_lock(&self, name: &LockName) -> Result<Option<HeldLock>, StateError> {
        let key = lock_key(name);
        {
            let mut held = self.session.held.lock().unwrap_or_else(|e| e.into_inner());
            if !held.insert(key) {
                return Ok(None);
            }
        }
        let run = match name {
            LockName::Run(id) => Some(id.clone()),
            LockName::Bot(_) => None,
        };
        let (lock_name, what, lease_run) = (name.key(), name.to_string(), run.clone());
        let host = host_name();
        let got = self.session.call(move |c| {
            let took: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
                .get(0);
            if !took {
                return Ok(None);
            }
            let noted = note_holder(c, &lock_name, &host, &what, lease_run.as_deref());
            if noted.is_err() {
                // Not held after all: the server's lock is let go with the failure.
                let _ = c.execute("SELECT pg_advisory_unlock($1)", &[&key]);
            }
            noted.map(Some)
        });

        let release = || {
            self.session
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        };
        match got {
            Ok(Some(epoch)) => {
                if let (Some(run), Some(epoch)) = (&run, epoch) {
                    self.session
                        .epochs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(run.clone(), epoch);
                }
                Ok(Some(HeldLock::new(PgLockGuard {
                    session: self.session.clone(),
                    key,
                    name: name.key(),
                    run,
                })))
            }
            Ok(None) => {
                release();
                Ok(None)
            }
            Err(e) => {
                release();
                Err(e)
            }
        }
    }
}

impl StateStore for PostgresStore {
    fn location(&self) -> String {
        self.session.shown.clone()
    }

    fn lock(&self, name: &LockName, wait: Option<Duration>) -> Result<HeldLock, LockError> {
        let start = Instant::now();
        // An absurd wait waits as long as the clock can count.
        let deadline = start
            .checked_add(wait.unwrap_or_default())
            .unwrap_or_else(|| start + Duration::from_secs(u64::from(u32::MAX)));
        loop {
            if let Some(held) = self.try_lock(name).map_err(lock_error)? {
                return Ok(held);
            }
            let now = Instant::now();
            if now >= deadline {
                let holder = self
                    .holder_of(lock_key(name), &name.key())
                    .map_err(lock_error)?;
                // `None`: let go between the try and the look; nobody to name.
                return Err(LockError::Held(holder.unwrap_or_else(Holder::unknown)));
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    fn lock_space(&self) -> String {
        self.session.space.clone()
    }

    fn lock_holder(&self, name: &LockName) -> Result<Option<Holder>, LockError> {
        self.holder_of(lock_key(name), &name.key())
            .map_err(lock_error)
    }

    fn checkpoint(&self) -> Result<(), StateError> {
        // Every commit is already durable on the server (synchronous_commit = on).
        Ok(())
    }

    fn begin_run(&mut self, start: &RunStart) -> Result<Begin, StateError> {
        let now = self.now_ms();
        let shown = self.session.shown.clone();
        let start = start.clone();
        let fp = start.fingerprint.stored_parts();
        self.fenced_write(&start.run_id.clone(), move |tx| {
            if insert_run(tx, &start, &fp, now, RunStatus::Running)? {
                return Ok(Begin::New);
            }
            let row = tx.query_one(
                "SELECT id, status, fp_parts FROM smax.runs WHERE run_id = $1 FOR UPDATE",
                &[&start.run_id],
            )?;
            let (id, status, stored): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            if status == RunStatus::Missed.as_str() {
                return Err(Fail::State(StateError::MissedRun {
                    run_id: start.run_id.clone(),
                }));
            }
            let stored = Fingerprint {
                digest: String::new(),
                parts: parts(&shown, &stored)?,
            };
            // Compared as stored (scrubbed), as in the SQLite store.
            let current = Fingerprint {
                digest: start.fingerprint.digest.clone(),
                parts: parts(&shown, &fp)?,
            };
            let changed = stored.changes_to(&current);
            let rows = tx.query(
                &format!("SELECT {SQL_RUN_COLUMNS} FROM smax.runs WHERE id = $1"),
                &[&id],
            )?;
            let previous = summaries(tx, &shown, rows)?
                .pop()
                .ok_or_else(|| corrupt(&shown, "a run vanished while being read"))?;
            if changed.is_empty() {
                tx.execute(
                    "UPDATE smax.runs SET status = 'running', finished_ms = NULL WHERE id = $1",
                    &[&id],
                )?;
            }
            Ok(Begin::Resumed {
                previous: Box::new(previous),
                changed,
            })
        })
    }

    fn accept_fingerprint(
        &mut self,
        run_id: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(), StateError> {
        let now = self.now_ms();
        let (id_text, digest, fp) = (
            run_id.to_owned(),
            fingerprint.digest.clone(),
            fingerprint.stored_parts(),
        );
        self.fenced_write(run_id, move |tx| {
            let row = tx.query_opt(
                "SELECT id, status FROM smax.runs WHERE run_id = $1 FOR UPDATE",
                &[&id_text],
            )?;
            let Some(row) = row else {
                return Err(unknown_run(&id_text));
            };
            let (id, status): (i64, String) = (row.get(0), row.get(1));
            if status == RunStatus::Missed.as_str() {
                return Err(Fail::State(StateError::MissedRun { run_id: id_text }));
            }
            tx.execute(
                "INSERT INTO smax.fingerprint_history (run, replaced_ms, digest, parts)
                 SELECT id, $2, fp_digest, fp_parts FROM smax.runs WHERE id = $1",
                &[&id, &now],
            )?;
            tx.execute(
                "UPDATE smax.runs SET fp_digest = $2, fp_parts = $3, status = 'running',
                        finished_ms = NULL
                 WHERE id = $1",
                &[&id, &digest, &fp],
            )?;
            Ok(())
        })
    }

    fn handled(&self, run_id: &str, classes: &[OutcomeClass]) -> Result<SortedKeys, StateError> {
        if classes.is_empty() {
            return Ok(SortedKeys::default());
        }
        let run_id = run_id.to_owned();
        let classes: Vec<String> = classes.iter().map(|c| c.as_str().to_owned()).collect();
        let hashes = self.session.call(move |c| {
            let Some(run) = run_pk(c, &run_id)? else {
                return Ok(Vec::new());
            };
            // Counted first, so that the hashes take exactly their room.
            let count: i64 = c
                .query_one(
                    "SELECT count(*) FROM smax.deliveries WHERE run = $1 AND class = ANY($2)",
                    &[&run, &classes],
                )?
                .get(0);
            let mut hashes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&run, &classes];
            let mut rows = c.query_raw(
                "SELECT recipient FROM smax.deliveries WHERE run = $1 AND class = ANY($2)",
                params,
            )?;
            while let Some(row) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
                hashes.push(key_hash(row.get::<_, &str>(0)));
            }
            Ok(hashes)
        })?;
        Ok(SortedKeys::new(hashes))
    }

    fn record_batch(&mut self, batch: &JournalBatch) -> Result<(), StateError> {
        if batch.attempts.is_empty() && batch.outcomes.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let now = self.now_ms();
        let shown = self.session.shown.clone();
        let mut named: Vec<&str> = batch
            .attempts
            .iter()
            .map(|(r, _)| &**r)
            .chain(batch.outcomes.iter().map(|(r, _)| &**r))
            .collect();
        named.sort_unstable();
        named.dedup();
        let (fenced, epochs): (Vec<String>, Vec<i64>) = named
            .iter()
            .filter_map(|run| Some(((*run).to_owned(), self.epoch(run)?)))
            .unzip();
        let named: Vec<String> = named.into_iter().map(str::to_owned).collect();
        let expected = (batch.attempts.len() + batch.outcomes.len()) as u64;
        let (attempts, outcomes) = columns(batch)?;
        self.session.call(move |c| {
            let insert_attempts = prepared(c, &SQL_ATTEMPTS)?;
            let insert_outcomes = prepared(c, &SQL_OUTCOMES)?;
            let mut tx = c.transaction()?;
            let mut written = 0u64;
            for a in &attempts {
                written += tx.execute(
                    &insert_attempts,
                    &[&fenced, &epochs, &a.run, &a.key, &a.source, &a.row, &now],
                )?;
            }
            for o in &outcomes {
                written += tx.execute(
                    &insert_outcomes,
                    &[
                        &fenced,
                        &epochs,
                        &o.run,
                        &o.key,
                        &o.class,
                        &o.attempts,
                        &o.status,
                        &o.text,
                        &now,
                    ],
                )?;
            }
            if written == expected {
                tx.commit()?;
                return Ok(());
            }
            // Not everything was written: say why, and write none of it.
            let why = batch_refusal(&mut tx, &named, &fenced, &epochs, &shown)?;
            tx.rollback()?;
            Err(Fail::State(why))
        })
    }

    fn settle_in_flight(&mut self, run_id: &str) -> Result<u64, StateError> {
        let now = self.now_ms();
        let id_text = run_id.to_owned();
        self.fenced_write(run_id, move |tx| {
            let Some(run) = run_pk(tx, &id_text)? else {
                return Err(unknown_run(&id_text));
            };
            Ok(tx.execute(
                "UPDATE smax.deliveries SET class = 'unknown', status = NULL,
                        platform_text = $2, last_ms = $3
                 WHERE run = $1 AND class = 'attempted'",
                &[&run, &SETTLED_TEXT, &now],
            )?)
        })
    }

    fn finish_run(&mut self, run_id: &str, status: RunStatus) -> Result<(), StateError> {
        let finished = (status != RunStatus::Running).then_some(self.now_ms());
        self.update_run(
            run_id,
            "UPDATE smax.runs SET status = $2, finished_ms = $3 WHERE run_id = $1",
            (status.as_str().to_owned(), finished),
        )
    }

    fn restore_run(&mut self, previous: &RunSummary) -> Result<(), StateError> {
        self.update_run(
            &previous.run_id,
            "UPDATE smax.runs SET status = $2, finished_ms = $3 WHERE run_id = $1",
            (
                previous.status.as_str().to_owned(),
                previous.finished.map(|t| t.timestamp_millis()),
            ),
        )
    }

    fn record_plan(&mut self, run_id: &str, audience: u64, invalid: u64) -> Result<(), StateError> {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.update_run(
            run_id,
            "UPDATE smax.runs SET audience = $2, invalid = $3 WHERE run_id = $1",
            (as_i64(audience), Some(as_i64(invalid))),
        )
    }

    fn record_missed(&mut self, start: &RunStart) -> Result<(), StateError> {
        self.writable()?;
        let now = self.now_ms();
        let start = start.clone();
        let fp = start.fingerprint.stored_parts();
        // A run that already exists (started, or already recorded as missed) is kept.
        self.session
            .call(move |c| insert_run(c, &start, &fp, now, RunStatus::Missed).map(drop))
    }

    fn run(&self, run_id: &str) -> Result<Option<RunSummary>, StateError> {
        let shown = self.session.shown.clone();
        let run_id = run_id.to_owned();
        self.session.call(move |c| {
            let rows = c.query(
                &format!("SELECT {SQL_RUN_COLUMNS} FROM smax.runs WHERE run_id = $1"),
                &[&run_id],
            )?;
            Ok(summaries(c, &shown, rows)?.pop())
        })
    }

    fn runs(&self, campaign: Option<&str>) -> Result<Vec<RunSummary>, StateError> {
        let shown = self.session.shown.clone();
        let campaign = campaign.map(str::to_owned);
        self.session.call(move |c| {
            let rows = c.query(
                &format!(
                    "SELECT {SQL_RUN_COLUMNS} FROM smax.runs
                     WHERE $1::text IS NULL OR campaign = $1
                     ORDER BY started_ms DESC, id DESC"
                ),
                &[&campaign],
            )?;
            summaries(c, &shown, rows)
        })
    }

    fn deliveries(
        &self,
        run_id: &str,
        classes: &[OutcomeClass],
        limit: Option<usize>,
    ) -> Result<Vec<DeliveryRow>, StateError> {
        let shown = self.session.shown.clone();
        let run_id = run_id.to_owned();
        let classes: Vec<String> = classes.iter().map(|c| c.as_str().to_owned()).collect();
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.session.call(move |c| {
            let Some(run) = run_pk(c, &run_id)? else {
                return Ok(Vec::new());
            };
            // Byte order, as SQLite sorts text, whatever the database's collation.
            let rows = c.query(
                "SELECT recipient, source, source_row, class, attempts, status, platform_text,
                        first_ms, last_ms
                 FROM smax.deliveries
                 WHERE run = $1 AND (cardinality($2::text[]) = 0 OR class = ANY($2))
                 ORDER BY first_ms, source COLLATE \"C\", source_row, recipient COLLATE \"C\"
                 LIMIT $3",
                &[&run, &classes, &limit],
            )?;
            rows.into_iter()
                .map(|r| {
                    let row: i64 = r.get(2);
                    let attempts: i32 = r.get(4);
                    let status: Option<i32> = r.get(5);
                    Ok(DeliveryRow {
                        key: r.get(0),
                        source: r.get(1),
                        row: u64::try_from(row)
                            .map_err(|_| corrupt(&shown, format!("negative row {row}")))?,
                        class: class(&shown, r.get(3))?,
                        attempts: u32::try_from(attempts)
                            .map_err(|_| corrupt(&shown, format!("attempt count {attempts}")))?,
                        status: status
                            .map(|s| {
                                u16::try_from(s)
                                    .map_err(|_| corrupt(&shown, format!("HTTP status {s}")))
                            })
                            .transpose()?,
                        platform_text: r.get(6),
                        first_attempt: time(&shown, r.get(7))?,
                        last_update: time(&shown, r.get(8))?,
                    })
                })
                .collect()
        })
    }
}

/// Why a batch wrote fewer rows than it carries: a run it names does not exist, a
/// lease moved on, or a recipient's stored class forbids a new attempt.
fn batch_refusal(
    tx: &mut postgres::Transaction<'_>,
    named: &[String],
    fenced: &[String],
    epochs: &[i64],
    shown: &str,
) -> Result<StateError, Fail> {
    let existing: HashSet<String> = tx
        .query(
            "SELECT run_id FROM smax.runs WHERE run_id = ANY($1)",
            &[&named],
        )?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(missing) = named.iter().find(|r| !existing.contains(*r)) {
        return Ok(StateError::UnknownRun {
            run_id: missing.clone(),
        });
    }
    for (run_id, epoch) in fenced.iter().zip(epochs) {
        let current: Option<i64> = tx
            .query_opt("SELECT epoch FROM smax.leases WHERE run_id = $1", &[run_id])?
            .map(|r| r.get(0));
        if current != Some(*epoch) {
            return Ok(StateError::LostRun {
                run_id: run_id.clone(),
                location: shown.to_owned(),
            });
        }
    }
    Ok(StateError::attempt_conflict())
}
