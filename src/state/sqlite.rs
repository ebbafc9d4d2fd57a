//! The embedded state store: one SQLite file (`.smax/state.db` by default).
//!
//! Durability: the file is in WAL mode. Commits that must reach the disk before the
//! tool moves on (attempts, which precede every request; run creation, fingerprints,
//! settling and finishing) run with `synchronous=FULL`: the WAL is fsync'd before the
//! call returns. Outcomes are committed with `synchronous=NORMAL`: they survive the
//! death of the process at once (the WAL write is in the OS's hands), and reach the disk
//! with the next FULL commit (a later batch of attempts or `finish_run`), since one
//! fsync of the WAL covers every frame before it. A power cut can therefore lose the
//! last outcomes, never an attempt: those recipients read as `attempted`, then
//! `unknown`, and are not resent without `--resend-unknown`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::error::{to_i64, StateError};
use super::lock::{self, HeldLock, Holder, LockError, LockName};
use super::model::{
    key_hash, Begin, Counts, DeliveryRow, Fingerprint, JournalBatch, OutcomeClass, RunStart,
    RunStatus, RunSummary, SortedKeys, SETTLED_TEXT,
};
use super::StateStore;

/// `PRAGMA application_id` of a smax-campaign state file ("SMAX").
pub const APPLICATION_ID: i32 = 0x534D_4158;

/// Schema migrations; `MIGRATIONS[i]` takes `user_version` from `i` to `i + 1`.
/// Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: runs, fingerprint history, deliveries. Times are Unix milliseconds (UTC).
    "CREATE TABLE runs (
        id           INTEGER PRIMARY KEY,
        run_id       TEXT    NOT NULL UNIQUE,
        campaign     TEXT    NOT NULL,
        occurrence   TEXT,
        status       TEXT    NOT NULL,
        started_ms   INTEGER NOT NULL,
        finished_ms  INTEGER,
        fp_digest    TEXT    NOT NULL,
        fp_parts     TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX runs_by_campaign ON runs (campaign, started_ms);
    CREATE TABLE fingerprint_history (
        run          INTEGER NOT NULL REFERENCES runs (id),
        replaced_ms  INTEGER NOT NULL,
        digest       TEXT    NOT NULL,
        parts        TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX fingerprint_history_by_run ON fingerprint_history (run);
    CREATE TABLE deliveries (
        run            INTEGER NOT NULL REFERENCES runs (id),
        recipient      TEXT    NOT NULL,
        source         TEXT    NOT NULL,
        source_row     INTEGER NOT NULL,
        class          TEXT    NOT NULL,
        attempts       INTEGER NOT NULL,
        status         INTEGER,
        platform_text  TEXT,
        first_ms       INTEGER NOT NULL,
        last_ms        INTEGER NOT NULL,
        PRIMARY KEY (run, recipient)
    ) STRICT, WITHOUT ROWID;",
    // 2: what the latest plan of a run counted, so that `status` can say what is
    // still pending and show shares of the audience. NULL for runs planned before.
    "ALTER TABLE runs ADD COLUMN audience INTEGER;
    ALTER TABLE runs ADD COLUMN invalid INTEGER;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

const SQL_UPSERT_ATTEMPT: &str = "INSERT INTO deliveries
        (run, recipient, source, source_row, class, attempts, status, platform_text, first_ms, last_ms)
    VALUES (?1, ?2, ?3, ?4, 'attempted', 1, NULL, NULL, ?5, ?5)
    ON CONFLICT (run, recipient) DO UPDATE SET
        source = excluded.source,
        source_row = excluded.source_row,
        class = 'attempted',
        attempts = attempts + 1,
        status = NULL,
        platform_text = NULL,
        last_ms = excluded.last_ms
    WHERE class NOT IN ('sent', 'attempted')";

// In an UPDATE every expression reads the row as it was, so `class` below is the class
// before this outcome: an outcome that closes an attempt replaces the one request that
// record_attempts counted with the real number.
const SQL_UPDATE_OUTCOME: &str = "UPDATE deliveries SET
        class = ?3,
        attempts = CASE WHEN class = 'attempted' THEN attempts - 1 + max(?4, 1)
                        ELSE attempts + ?4 END,
        status = ?5,
        platform_text = ?6,
        last_ms = ?7
    WHERE run = ?1 AND recipient = ?2";

const SQL_INSERT_OUTCOME: &str = "INSERT INTO deliveries
        (run, recipient, source, source_row, class, attempts, status, platform_text, first_ms, last_ms)
    VALUES (?1, ?2, '', 0, ?3, ?4, ?5, ?6, ?7, ?7)";

const SQL_RUN_COLUMNS: &str =
    "id, run_id, campaign, occurrence, status, started_ms, finished_ms, fp_digest, audience, invalid";

/// How hard commits of attempts and run changes push to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL` for attempts and run changes: survives a power cut (default).
    #[default]
    Full,
    /// `synchronous=NORMAL` everywhere: survives the process dying, not the machine.
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    Full,
    Normal,
}

type Clock = Box<dyn Fn() -> DateTime<Utc> + Send>;

/// The SQLite implementation of [`StateStore`].
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// Read-only over a file that has no schema yet (an empty file): reads find nothing.
    empty: bool,
    durability: Durability,
    sync: Option<Sync>,
    now: Clock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

struct Header {
    application_id: i32,
    user_version: i32,
    objects: i64,
}

impl SqliteStore {
    /// Opens the existing state file at `path` and upgrades its schema. A missing file
    /// is [`StateError::Missing`]: a store is never created on the way (a mistyped path
    /// or a lost CI cache would otherwise start over and message everyone again). A
    /// zero-length file, a file that is not a smax-campaign state file, a damaged one or
    /// one from a newer version is an error too, and is left untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, StateError> {
        reject_folder(path)?;
        require_content(path)?;
        // Look before touching: a read-write connection replays a leftover WAL or
        // rollback journal into the file, which must not happen to another
        // program's database.
        match raw_application_id(path)? {
            Some(APPLICATION_ID) => {}
            None => {
                return Err(corrupt(path, "it is not a SQLite database".to_owned()));
            }
            Some(_) => {
                // Not ours in the file itself; an old store may still have its header
                // only in the WAL, which a read-only connection can see.
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql_err(path))?;
                let probe = SqliteStore::wrap(conn, path, true);
                let header = probe.header()?;
                probe.check_header(&header)?;
                probe.require_ours(&header)?;
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql_err(path))?;
        let mut store = SqliteStore::wrap(conn, path, false);
        let header = store.header()?;
        store.check_header(&header)?;
        store.require_ours(&header)?;
        store.configure_writer()?;
        store.migrate()?;
        Ok(store)
    }

    /// Creates the state file (and its folders) when it does not exist, then opens it.
    /// Returns whether it was created. The file appears complete or not at all: it is
    /// built under a temporary name and linked into place, never over an existing file.
    pub fn create(path: &Path) -> Result<(SqliteStore, bool), StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Ok((SqliteStore::open(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state.db".into());
        // Unique even across containers that share the folder and a process id.
        let temp = parent.join(format!(
            ".{name}.new-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let built = (|| {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(&temp, flags).map_err(sql_err(&temp))?;
            let mut store = SqliteStore::wrap(conn, &temp, false);
            store.set_sync(Sync::Full)?;
            store.migrate()
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        // A hard link fails when the name exists, so a store another process created
        // meanwhile is never replaced; then that one is opened instead.
        let linked = match std::fs::hard_link(&temp, path) {
            // A file system without hard links: a rename, checked first (a narrow race
            // with another creator, on such file systems only).
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                if std::fs::symlink_metadata(path).is_ok() {
                    Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
                } else {
                    std::fs::rename(&temp, path).map_err(|_| e)
                }
            }
            other => other,
        };
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok((SqliteStore::open(path)?, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((SqliteStore::open(path)?, false))
            }
            Err(source) => Err(StateError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Opens the state file for reading only; `Ok(None)` when it does not exist (and
    /// nothing is created). `plan` and `status` use this.
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteStore>, StateError> {
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        reject_folder(path)?;
        require_content(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql_err(path))?;
        let mut store = SqliteStore::wrap(conn, path, true);
        let header = store.header()?;
        store.check_header(&header)?;
        store.require_ours(&header)?;
        let found = u32::try_from(header.user_version).unwrap_or(0);
        if found == 0 {
            store.empty = true;
        } else if found < SCHEMA_VERSION {
            return Err(StateError::NeedsUpgrade {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Some(store))
    }

    /// Chooses how hard commits push to the disk (see [`Durability`]).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Replaces the clock that stamps records (for deterministic tests).
    #[must_use]
    pub fn with_clock(mut self, now: impl Fn() -> DateTime<Utc> + Send + 'static) -> Self {
        self.now = Box::new(now);
        self
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Locks live beside the database file, so every process sharing the file
    /// shares its locks: `state.db.locks/` for `state.db`, named after the file
    /// so that `--state /tmp/x.db` makes no `locks/` folder of its own in /tmp
    /// and two stores in one folder keep their locks apart.
    ///
    /// Named after the file the path resolves to, so two names of one database
    /// (a symlink) share its locks.
    fn lock_dir(&self) -> PathBuf {
        let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut name = real.file_name().unwrap_or_default().to_os_string();
        name.push(".locks");
        real.with_file_name(name)
    }

    /// Where smax-campaign 0.1 kept every store's locks: `locks/` beside the
    /// database. While that folder exists a lock is taken there too (first), so
    /// an older binary still running against this store during an upgrade and
    /// this one exclude each other; a store that never had it gets none.
    fn legacy_lock_dir(&self) -> Option<PathBuf> {
        let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let dir = real.parent()?.join("locks");
        dir.is_dir().then_some(dir)
    }

    fn wrap(conn: Connection, path: &Path, read_only: bool) -> SqliteStore {
        SqliteStore {
            conn,
            path: path.to_owned(),
            read_only,
            empty: false,
            durability: Durability::Full,
            sync: None,
            now: Box::new(Utc::now),
        }
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError {
        sql_err(&self.path)
    }

    fn header(&self) -> Result<Header, StateError> {
        let e = self.err();
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(&e)?;
        // The first read of the file: a file that is not SQLite fails here.
        let application_id = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(&e)?;
        let user_version = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&e)?;
        let objects = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(&e)?;
        Ok(Header {
            application_id,
            user_version,
            objects,
        })
    }

    fn check_header(&self, h: &Header) -> Result<(), StateError> {
        if h.application_id != APPLICATION_ID
            && (h.application_id != 0 || h.user_version != 0 || h.objects != 0)
        {
            return Err(corrupt(
                &self.path,
                format!(
                    "it is a SQLite database of another program (application_id {:#x}, \
                     user_version {}, {} schema objects)",
                    h.application_id, h.user_version, h.objects
                ),
            ));
        }
        let Ok(found) = u32::try_from(h.user_version) else {
            return Err(corrupt(
                &self.path,
                format!("invalid schema version {}", h.user_version),
            ));
        };
        if found > SCHEMA_VERSION {
            return Err(StateError::FutureVersion {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// An existing store carries this tool's application id (every store this tool ever
    /// created does); an empty SQLite database of some other origin is not adopted.
    fn require_ours(&self, h: &Header) -> Result<(), StateError> {
        if h.application_id == APPLICATION_ID {
            return Ok(());
        }
        Err(corrupt(
            &self.path,
            "it is an empty SQLite database that smax-campaign did not create".to_owned(),
        ))
    }

    fn configure_writer(&mut self) -> Result<(), StateError> {
        let e = sql_err(&self.path);
        // WAL lets `status` read while a run writes. On a file system without shared
        // memory SQLite keeps its rollback journal, which is just as durable.
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&e)?;
        self.conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(&e)?;
        self.conn.set_prepared_statement_cache_capacity(32);
        self.set_sync(Sync::Full)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let path = self.path.clone();
        let e = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        // Read again under the write lock: another process may have migrated meanwhile.
        let version: i32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&e)?;
        let Ok(version) = u32::try_from(version) else {
            return Err(corrupt(&path, format!("invalid schema version {version}")));
        };
        if version > SCHEMA_VERSION {
            return Err(StateError::FutureVersion {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        for sql in &MIGRATIONS[version as usize..] {
            tx.execute_batch(sql).map_err(&e)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(&e)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    fn set_sync(&mut self, wanted: Sync) -> Result<(), StateError> {
        let wanted = match self.durability {
            Durability::Full => wanted,
            Durability::Normal => Sync::Normal,
        };
        if self.sync != Some(wanted) {
            let value = match wanted {
                Sync::Full => "FULL",
                Sync::Normal => "NORMAL",
            };
            self.conn
                .pragma_update(None, "synchronous", value)
                .map_err(sql_err(&self.path))?;
            self.sync = Some(wanted);
        }
        Ok(())
    }

    fn writable(&mut self, sync: Sync) -> Result<(), StateError> {
        if self.read_only {
            return Err(StateError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.set_sync(sync)
    }

    fn now_ms(&self) -> i64 {
        (self.now)().timestamp_millis()
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            conn: &self.conn,
            path: &self.path,
        }
    }
}

/// Reads through a connection or an open transaction.
struct Reader<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl Reader<'_> {
    fn corrupt(&self, detail: impl Into<String>) -> StateError {
        corrupt(self.path, detail)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError {
        sql_err(self.path)
    }

    fn time(&self, ms: i64) -> Result<DateTime<Utc>, StateError> {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| self.corrupt(format!("timestamp {ms} out of range")))
    }

    fn run_pk(&self, run_id: &str) -> Result<i64, StateError> {
        self.conn
            .prepare_cached("SELECT id FROM runs WHERE run_id = ?1")
            .and_then(|mut s| s.query_row([run_id], |r| r.get(0)).optional())
            .map_err(self.err())?
            .ok_or_else(|| StateError::UnknownRun {
                run_id: run_id.to_owned(),
            })
    }

    fn counts(&self, run: i64) -> Result<Counts, StateError> {
        let e = self.err();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT class, count(*) FROM deliveries WHERE run = ?1 GROUP BY class")
            .map_err(&e)?;
        let mut rows = stmt.query([run]).map_err(&e)?;
        let mut counts = Counts::default();
        while let Some(row) = rows.next().map_err(&e)? {
            let class: String = row.get(0).map_err(&e)?;
            let n: i64 = row.get(1).map_err(&e)?;
            counts.add(self.class(&class)?, n.unsigned_abs());
        }
        Ok(counts)
    }

    fn class(&self, text: &str) -> Result<OutcomeClass, StateError> {
        text.parse()
            .map_err(|_| self.corrupt(format!("unknown delivery class `{text}`")))
    }

    /// Reads `SQL_RUN_COLUMNS` rows into summaries.
    fn summaries(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RunSummary>, StateError> {
        let e = self.err();
        let mut stmt = self.conn.prepare_cached(sql).map_err(&e)?;
        let raw = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            })
            .map_err(&e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&e)?;
        raw.into_iter()
            .map(
                |(
                    id,
                    run_id,
                    campaign,
                    occurrence,
                    status,
                    started,
                    finished,
                    digest,
                    audience,
                    invalid,
                )| {
                    Ok(RunSummary {
                        status: status
                            .parse()
                            .map_err(|_| self.corrupt(format!("unknown run status `{status}`")))?,
                        started: self.time(started)?,
                        finished: finished.map(|ms| self.time(ms)).transpose()?,
                        counts: self.counts(id)?,
                        run_id,
                        campaign,
                        occurrence,
                        fingerprint_digest: digest,
                        audience: audience.map(i64::unsigned_abs),
                        invalid: invalid.map(i64::unsigned_abs),
                    })
                },
            )
            .collect()
    }

    fn summary_by_pk(&self, run: i64) -> Result<RunSummary, StateError> {
        let sql = format!("SELECT {SQL_RUN_COLUMNS} FROM runs WHERE id = ?1");
        self.summaries(&sql, [run])?
            .pop()
            .ok_or_else(|| self.corrupt("a run vanished while being read"))
    }

    fn parts(&self, json: &str) -> Result<BTreeMap<String, String>, StateError> {
        serde_json::from_str(json)
            .map_err(|err| self.corrupt(format!("unreadable stored fingerprint: {err}")))
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StateError {
    StateError::Corrupt {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

/// Every text the store writes passes through here: a secret that reached
/// a key, a platform text or a fingerprint part is stored as `***`.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    crate::redact::scrub(text)
}

/// The application id in the database file's own header (bytes 68..72, big-endian),
/// read without SQLite; `None` when the file is not a SQLite database.
fn raw_application_id(path: &Path) -> Result<Option<i32>, StateError> {
    use std::io::Read;
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]).map_err(io)? {
            0 => break,
            n => read += n,
        }
    }
    if read < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Ok(None);
    }
    Ok(Some(i32::from_be_bytes([
        header[68], header[69], header[70], header[71],
    ])))
}

/// A store that does not exist, or exists with no bytes, records nothing: both mean
/// the record of earlier sends is gone (a lost cache, a truncated copy), never "new".
fn require_content(path: &Path) -> Result<(), StateError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Err(StateError::Empty {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StateError::Missing {
            path: path.to_owned(),
        }),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn reject_folder(path: &Path) -> Result<(), StateError> {
    if path.is_dir() {
        return Err(StateError::Io {
            path: path.to_owned(),
            source: std::io::Error::other("this is a folder; the state store needs a file path"),
        });
    }
    Ok(())
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError {
    let path = path.to_owned();
    move |err| {
        let code = err.sqlite_error_code();
        match code {
            Some(ErrorCode::NotADatabase) => StateError::Corrupt {
                path: path.clone(),
                detail: "it is not a SQLite database".to_owned(),
            },
            Some(ErrorCode::DatabaseCorrupt) => StateError::Corrupt {
                path: path.clone(),
                detail: format!("the database is damaged ({err})"),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StateError::Busy { path: path.clone() }
            }
            _ => StateError::Backend {
                path: path.clone(),
                detail: err.to_string(),
            },
        }
    }
}

/// `AND class IN (?, …)` for `n` classes, or nothing for none (every class).
fn in_classes(n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    format!("AND class IN ({})", vec!["?"; n].join(", "))
}

impl StateStore for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn lock(&self, name: &LockName, wait: Option<Duration>) -> Result<HeldLock, LockError> {
        let what = name.to_string();
        let legacy = match self.legacy_lock_dir() {
            Some(dir) => Some(lock::acquire(&dir, &name.key(), &what, wait)?),
            None => None,
        };
        let guard = lock::acquire(&self.lock_dir(), &name.key(), &what, wait)?;
        Ok(HeldLock::new((legacy, guard)))
    }

    fn lock_space(&self) -> String {
        // Built from the database file's canonical path (the file exists while
        // the store is open), not the locks folder's, which is made on first use:
        // the space reads the same before and after the first lock.
        self.lock_dir().display().to_string()
    }

    fn lock_holder(&self, name: &LockName) -> Result<Option<Holder>, LockError> {
        match lock::held_by(&self.lock_dir(), &name.key())? {
            Some(holder) => Ok(Some(holder)),
            None => match self.legacy_lock_dir() {
                Some(dir) => lock::held_by(&dir, &name.key()),
                None => Ok(None),
            },
        }
    }

    fn checkpoint(&self) -> Result<(), StateError> {
        if self.read_only {
            return Ok(());
        }
        let (busy, _, _): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(self.err())?;
        if busy != 0 {
            return Err(StateError::Busy {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn begin_run(&mut self, start: &RunStart) -> Result<Begin, StateError> {
        self.writable(Sync::Full)?;
        let now = self.now_ms();
        let path = self.path.clone();
        let e = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let existing: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT id, status, fp_parts FROM runs WHERE run_id = ?1",
                [&start.run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&e)?;
        let Some((id, status, parts)) = existing else {
            tx.execute(
                "INSERT INTO runs (run_id, campaign, occurrence, status, started_ms, finished_ms,
                                   fp_digest, fp_parts)
                 VALUES (?1, ?2, ?3, 'running', ?4, NULL, ?5, ?6)",
                params![
                    start.run_id,
                    start.campaign,
                    start.occurrence,
                    now,
                    start.fingerprint.digest,
                    start.fingerprint.stored_parts(),
                ],
            )
            .map_err(&e)?;
            tx.commit().map_err(&e)?;
            return Ok(Begin::New);
        };
        if status == RunStatus::Missed.as_str() {
            return Err(StateError::MissedRun {
                run_id: start.run_id.clone(),
            });
        }
        let reader = Reader {
            conn: &tx,
            path: &path,
        };
        let stored = Fingerprint {
            digest: String::new(),
            parts: reader.parts(&parts)?,
        };
        // Compared as stored (scrubbed), so a part that holds a secret does
        // not read as changed on every resume.
        let current = Fingerprint {
            digest: start.fingerprint.digest.clone(),
            parts: reader.parts(&start.fingerprint.stored_parts())?,
        };
        let changed = stored.changes_to(&current);
        let previous = reader.summary_by_pk(id)?;
        if changed.is_empty() {
            tx.execute(
                "UPDATE runs SET status = 'running', finished_ms = NULL WHERE id = ?1",
                [id],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        Ok(Begin::Resumed {
            previous: Box::new(previous),
            changed,
        })
    }

    fn accept_fingerprint(
        &mut self,
        run_id: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(), StateError> {
        self.writable(Sync::Full)?;
        let now = self.now_ms();
        let path = self.path.clone();
        let e = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let row: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, status FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&e)?;
        let Some((id, status)) = row else {
            return Err(StateError::UnknownRun {
                run_id: run_id.to_owned(),
            });
        };
        if status == RunStatus::Missed.as_str() {
            return Err(StateError::MissedRun {
                run_id: run_id.to_owned(),
            });
        }
        tx.execute(
            "INSERT INTO fingerprint_history (run, replaced_ms, digest, parts)
             SELECT id, ?2, fp_digest, fp_parts FROM runs WHERE id = ?1",
            params![id, now],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE runs SET fp_digest = ?2, fp_parts = ?3, status = 'running', finished_ms = NULL
             WHERE id = ?1",
            params![id, fingerprint.digest, fingerprint.stored_parts()],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    fn handled(&self, run_id: &str, classes: &[OutcomeClass]) -> Result<SortedKeys, StateError> {
        if self.empty || classes.is_empty() {
            return Ok(SortedKeys::default());
        }
        let run = match self.reader().run_pk(run_id) {
            Ok(run) => run,
            Err(StateError::UnknownRun { .. }) => return Ok(SortedKeys::default()),
            Err(err) => return Err(err),
        };
        let r = self.reader();
        let e = r.err();
        let filter = format!(
            "FROM deliveries WHERE run = ?1 {}",
            in_classes(classes.len())
        );
        let values = || {
            std::iter::once(rusqlite::types::Value::Integer(run)).chain(
                classes
                    .iter()
                    .map(|c| rusqlite::types::Value::Text(c.as_str().to_owned())),
            )
        };
        // Counted first, so that the hashes take exactly their room: a vector that
        // grows by doubling would hold up to twice that at its peak.
        let count: i64 = self
            .conn
            .prepare_cached(&format!("SELECT count(*) {filter}"))
            .and_then(|mut stmt| stmt.query_row(params_from_iter(values()), |row| row.get(0)))
            .map_err(&e)?;
        let mut hashes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT recipient {filter}"))
            .map_err(&e)?;
        let mut rows = stmt.query(params_from_iter(values())).map_err(&e)?;
        while let Some(row) = rows.next().map_err(&e)? {
            let key = row
                .get_ref(0)
                .map_err(&e)?
                .as_str()
                .map_err(|err| r.corrupt(format!("a recipient key is not text: {err}")))?;
            hashes.push(key_hash(key));
        }
        Ok(SortedKeys::new(hashes))
    }

    fn record_batch(&mut self, batch: &JournalBatch) -> Result<(), StateError> {
        if batch.attempts.is_empty() && batch.outcomes.is_empty() {
            return Ok(());
        }
        // Attempts must be on disk before their requests leave; outcomes alone
        // may wait for the next sync (a lost outcome reads as unknown).
        self.writable(if batch.attempts.is_empty() {
            Sync::Normal
        } else {
            Sync::Full
        })?;
        let now = self.now_ms();
        let path = self.path.clone();
        let e = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        // Run ids to row ids, looked up once per batch.
        let mut runs: HashMap<String, i64> = HashMap::new();
        {
            let reader = Reader {
                conn: &tx,
                path: &path,
            };
            let mut pk = |run_id: &str| -> Result<i64, StateError> {
                if let Some(pk) = runs.get(run_id) {
                    return Ok(*pk);
                }
                let pk = reader.run_pk(run_id)?;
                runs.insert(run_id.to_owned(), pk);
                Ok(pk)
            };
            let mut upsert = tx.prepare_cached(SQL_UPSERT_ATTEMPT).map_err(&e)?;
            for (run_id, a) in &batch.attempts {
                let run = pk(run_id)?;
                let row = to_i64("row", a.row)?;
                let changed = upsert
                    .execute(params![run, clean(&a.key), clean(&a.source), row, now])
                    .map_err(&e)?;
                if changed == 0 {
                    // Dropping the transaction rolls the whole batch back.
                    return Err(StateError::attempt_conflict());
                }
            }
            let mut update = tx.prepare_cached(SQL_UPDATE_OUTCOME).map_err(&e)?;
            for (run_id, o) in &batch.outcomes {
                let run = pk(run_id)?;
                let key = clean(&o.key);
                let text = o.platform_text.as_deref().map(clean);
                let values = params![run, key, o.class.as_str(), o.attempts, o.status, text, now];
                if update.execute(values).map_err(&e)? == 0 {
                    // An outcome without a recorded attempt (e.g. skipped at render time).
                    tx.prepare_cached(SQL_INSERT_OUTCOME)
                        .and_then(|mut insert| insert.execute(values))
                        .map_err(&e)?;
                }
            }
        }
        tx.commit().map_err(&e)
    }

    fn settle_in_flight(&mut self, run_id: &str) -> Result<u64, StateError> {
        self.writable(Sync::Full)?;
        let now = self.now_ms();
        let path = self.path.clone();
        let e = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let run = Reader {
            conn: &tx,
            path: &path,
        }
        .run_pk(run_id)?;
        let n = tx
            .execute(
                "UPDATE deliveries SET class = 'unknown', status = NULL, platform_text = ?2,
                        last_ms = ?3
                 WHERE run = ?1 AND class = 'attempted'",
                params![run, SETTLED_TEXT, now],
            )
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n as u64)
    }

    fn finish_run(&mut self, run_id: &str, status: RunStatus) -> Result<(), StateError> {
        self.writable(Sync::Full)?;
        let now = self.now_ms();
        let finished = (status != RunStatus::Running).then_some(now);
        let n = self
            .conn
            .execute(
                "UPDATE runs SET status = ?2, finished_ms = ?3 WHERE run_id = ?1",
                params![run_id, status.as_str(), finished],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(StateError::UnknownRun {
                run_id: run_id.to_owned(),
            });
        }
        Ok(())
    }

    fn restore_run(&mut self, previous: &RunSummary) -> Result<(), StateError> {
        self.writable(Sync::Full)?;
        let finished = previous.finished.map(|t| t.timestamp_millis());
        let n = self
            .conn
            .execute(
                "UPDATE runs SET status = ?2, finished_ms = ?3 WHERE run_id = ?1",
                params![previous.run_id, previous.status.as_str(), finished],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(StateError::UnknownRun {
                run_id: previous.run_id.clone(),
            });
        }
        Ok(())
    }

    fn record_plan(&mut self, run_id: &str, audience: u64, invalid: u64) -> Result<(), StateError> {
        self.writable(Sync::Full)?;
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let n = self
            .conn
            .execute(
                "UPDATE runs SET audience = ?2, invalid = ?3 WHERE run_id = ?1",
                params![run_id, as_i64(audience), as_i64(invalid)],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(StateError::UnknownRun {
                run_id: run_id.to_owned(),
            });
        }
        Ok(())
    }

    fn record_missed(&mut self, start: &RunStart) -> Result<(), StateError> {
        self.writable(Sync::Full)?;
        let now = self.now_ms();
        // A run that already exists (started, or already recorded as missed) is kept as is.
        self.conn
            .execute(
                "INSERT INTO runs (run_id, campaign, occurrence, status, started_ms, finished_ms,
                                   fp_digest, fp_parts)
                 VALUES (?1, ?2, ?3, 'missed', ?4, ?4, ?5, ?6)
                 ON CONFLICT (run_id) DO NOTHING",
                params![
                    start.run_id,
                    start.campaign,
                    start.occurrence,
                    now,
                    start.fingerprint.digest,
                    start.fingerprint.stored_parts(),
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn run(&self, run_id: &str) -> Result<Option<RunSummary>, StateError> {
        if self.empty {
            return Ok(None);
        }
        let sql = format!("SELECT {SQL_RUN_COLUMNS} FROM runs WHERE run_id = ?1");
        Ok(self.reader().summaries(&sql, [run_id])?.pop())
    }

    fn runs(&self, campaign: Option<&str>) -> Result<Vec<RunSummary>, StateError> {
        if self.empty {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {SQL_RUN_COLUMNS} FROM runs WHERE ?1 IS NULL OR campaign = ?1
             ORDER BY started_ms DESC, id DESC"
        );
        self.reader().summaries(&sql, [campaign])
    }

    fn deliveries(
        &self,
        run_id: &str,
        classes: &[OutcomeClass],
        limit: Option<usize>,
    ) -> Result<Vec<DeliveryRow>, StateError> {
        if self.empty {
            return Ok(Vec::new());
        }
        let run = match self.reader().run_pk(run_id) {
            Ok(run) => run,
            Err(StateError::UnknownRun { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut classes: Vec<&str> = classes.iter().map(|c| c.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        let filter = in_classes(classes.len());
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT recipient, source, source_row, class, attempts, status, platform_text,
                    first_ms, last_ms
             FROM deliveries WHERE run = ? {filter}
             ORDER BY first_ms, source, source_row, recipient LIMIT ?"
        );
        let r = self.reader();
        let e = r.err();
        let mut stmt = self.conn.prepare_cached(&sql).map_err(&e)?;
        let values: Vec<rusqlite::types::Value> = std::iter::once(run.into())
            .chain(classes.iter().map(|c| (*c).to_owned().into()))
            .chain(std::iter::once(limit.into()))
            .collect();
        type Raw = (
            String,
            String,
            i64,
            String,
            i64,
            Option<i64>,
            Option<String>,
            i64,
            i64,
        );
        let raw: Vec<Raw> = stmt
            .query_map(params_from_iter(values), |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        raw.into_iter()
            .map(
                |(key, source, row, class, attempts, status, text, first, last)| {
                    Ok(DeliveryRow {
                        row: u64::try_from(row)
                            .map_err(|_| r.corrupt(format!("negative row {row}")))?,
                        class: r.class(&class)?,
                        attempts: u32::try_from(attempts)
                            .map_err(|_| r.corrupt(format!("attempt count {attempts}")))?,
                        status: status
                            .map(|s| {
                                u16::try_from(s).map_err(|_| r.corrupt(format!("HTTP status {s}")))
                            })
                            .transpose()?,
                        platform_text: text,
                        first_attempt: r.time(first)?,
                        last_update: r.time(last)?,
                        key,
                        source,
                    })
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_matches_migrations() {
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
        let conn = Connection::open_in_memory().unwrap();
        for sql in MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
    }

    #[test]
    fn busy_and_corrupt_errors_are_classified() {
        let path = Path::new("x.db");
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(sql_err(path)(busy), StateError::Busy { .. }));
        let notadb = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            None,
        );
        assert!(matches!(sql_err(path)(notadb), StateError::Corrupt { .. }));
    }
}
