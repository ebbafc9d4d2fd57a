//! One process at a time per run and per bot.
//!
//! Each lock is an OS file lock (`flock` on Unix, `LockFileEx` on Windows) on
//! `DIR/NAME.lock`, where DIR belongs to one store (`state.db.locks/` beside `state.db`). The operating system releases it when the process ends, however
//! it ends, so a crash never leaves a stale lock. The file's content ("pid host since
//! what") only names the holder for the error message; it is not the lock. Lock files are
//! never deleted: deleting one while another process waits on it would let two processes
//! hold "the same" lock on two different files.
//!
//! Locks belong to an open file, not to a process: a second `acquire` of the same name in
//! the same process fails too.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use fs4::fs_std::FileExt;

/// How long `acquire` sleeps between tries while waiting.
const POLL: Duration = Duration::from_millis(50);
/// How long `acquire` keeps trying even without `wait`: [`held_by`] takes a lock
/// for an instant to look, and a run starting in that instant must not fail.
const GRACE: Duration = Duration::from_millis(200);
/// Longest file-name stem kept from a lock name before a hash replaces the rest.
const MAX_STEM: usize = 100;

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Clear the holder's line first, so nobody is named after we let go. Errors
        // cannot be reported from drop, and closing the file releases the lock anyway.
        let _ = self.file.set_len(0);
        let _ = FileExt::unlock(&self.file);
    }
}

/// Who holds a lock, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's process id; 0 when the lock file did not say (see [`Holder::is_known`]).
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When it took the lock (the Unix epoch when unknown).
    pub since: DateTime<Utc>,
    /// What it is doing, e.g. `run black-friday`.
    pub what: String,
}

impl Holder {
    /// False when the lock file could not be read or parsed (e.g. the holder had not
    /// written it yet, or the platform does not let a locked file be read).
    pub fn is_known(&self) -> bool {
        self.pid != 0
    }

    /// A holder nobody named (e.g. the lock was let go between a try and a look).
    pub(super) fn unknown() -> Holder {
        Holder {
            pid: 0,
            host: String::new(),
            since: DateTime::UNIX_EPOCH,
            what: String::new(),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.pid,
            self.host,
            self.since.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.what
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut fields = text.trim_end_matches(['\r', '\n']).splitn(4, ' ');
        let pid = fields.next()?.parse().ok().filter(|p| *p != 0)?;
        let host = fields.next()?.to_owned();
        let since = DateTime::parse_from_rfc3339(fields.next()?)
            .ok()?
            .with_timezone(&Utc);
        let what = fields.next().unwrap_or_default().to_owned();
        Some(Holder {
            pid,
            host,
            since,
            what,
        })
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_known() {
            return f.write_str("another process (it has not said which)");
        }
        write!(f, "process {} on {}", self.pid, self.host)?;
        if !self.what.is_empty() {
            write!(f, " ({})", self.what)?;
        }
        write!(
            f,
            " since {}",
            self.since.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

/// What a lock keeps to one holder: a run (one process sends it at a time) or a bot
/// (one process paces it at a time, whichever campaigns it serves).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockName {
    /// The run with this id.
    Run(String),
    /// The bot with this id.
    Bot(String),
}

impl LockName {
    /// The lock's name in the store, e.g. `run-black-friday`.
    pub fn key(&self) -> String {
        match self {
            LockName::Run(id) => format!("run-{id}"),
            LockName::Bot(id) => format!("bot-{id}"),
        }
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockName::Run(id) => write!(f, "run `{id}`"),
            LockName::Bot(id) => write!(f, "bot `{id}`"),
        }
    }
}

/// A lock taken through a store ([`crate::state::StateStore::lock`]), whatever the backend:
/// held until dropped, and released by the backend when the process dies.
pub struct HeldLock {
    _guard: Box<dyn Send + Sync>,
}

impl HeldLock {
    /// Wraps a backend's guard, which releases the lock when dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> HeldLock {
        HeldLock {
            _guard: Box::new(guard),
        }
    }
}

impl fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeldLock")
    }
}

/// Why a lock was not acquired.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another handle in this one) holds it.
    #[error("held by {0}")]
    Held(Holder),
    /// The store that keeps the lock failed (e.g. its connection was lost).
    #[error("{0}")]
    Store(Box<crate::state::StateError>),
    /// The lock file could not be created or locked.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The lock file (or its folder).
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Takes the lock `name` (e.g. `run-black-friday`, `bot-64f0c2a1e4b0`) in the folder `dir`.
/// With `wait: None` a held lock fails at once with [`LockError::Held`]; with
/// `Some(d)` it is retried until `d` has elapsed.
pub fn acquire(
    dir: &Path,
    name: &str,
    what: &str,
    wait: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let folder = dir.to_path_buf();
    std::fs::create_dir_all(&folder).map_err(|source| LockError::Io {
        path: folder.clone(),
        source,
    })?;
    let path = folder.join(format!("{}.lock", file_stem(name)));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let start = Instant::now();
    // An absurd wait (`--wait-lock 500000000y`) waits as long as the clock can count.
    let deadline = start
        .checked_add(wait.unwrap_or_default().max(GRACE))
        .unwrap_or_else(|| start + Duration::from_secs(u64::from(u32::MAX)));
    loop {
        if FileExt::try_lock_exclusive(&file).map_err(io)? {
            let me = Holder {
                pid: std::process::id(),
                host: host_name(),
                since: Utc::now(),
                what: one_line(what),
            };
            file.set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(me.line().as_bytes()))
                .map_err(io)?;
            return Ok(LockGuard { file, path });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LockError::Held(read_holder(&path)));
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// Who holds the lock `name` in the folder `dir`, or `None` when nobody does (a process
/// that died released it). Creates nothing; takes the lock shared for an instant.
pub fn held_by(dir: &Path, name: &str) -> Result<Option<Holder>, LockError> {
    let path = dir.join(format!("{}.lock", file_stem(name)));
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LockError::Io { path, source }),
    };
    let free = FileExt::try_lock_shared(&file).map_err(|source| LockError::Io {
        path: path.clone(),
        source,
    })?;
    if free {
        let _ = FileExt::unlock(&file);
        return Ok(None);
    }
    Ok(Some(read_holder(&path)))
}

/// The lock file's name for a lock name: safe on every file system, and distinct for
/// distinct names (anything replaced or cut is made up for by a hash of the whole name).
pub fn file_stem(name: &str) -> String {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let changed = stem != name || stem.len() > MAX_STEM || stem.is_empty() || stem.starts_with('.');
    if changed {
        stem.truncate(MAX_STEM);
        stem.push_str(&format!(
            "-{:016x}",
            xxhash_rust::xxh3::xxh3_64(name.as_bytes())
        ));
    }
    stem
}

fn read_holder(path: &Path) -> Holder {
    // The holder writes its line right after locking; give it a moment if we looked
    // in between.
    for attempt in 0..3 {
        let mut text = String::new();
        let read = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
        if read.is_ok() {
            if let Some(holder) = Holder::parse(&text) {
                return holder;
            }
        }
        if attempt < 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Holder::unknown()
}

/// This machine's name as holders show it (one word).
pub(super) fn host_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host: String = host
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if host.is_empty() {
        "unknown-host".to_owned()
    } else {
        host
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_distinct() {
        assert_eq!(file_stem("bot-64f0c2a1e4b0"), "bot-64f0c2a1e4b0");
        let a = file_stem("run-bf@2026-11-28T09:00:00+07:00");
        assert!(a.starts_with("run-bf_2026-11-28T09_00_00_07_00-"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        assert_ne!(file_stem("run-a:b"), file_stem("run-a_b"));
        assert_ne!(file_stem("run-a:b"), file_stem("run-a+b"));
        assert!(file_stem(&"x".repeat(500)).len() < 130);
        assert_ne!(file_stem(".."), "..");
        assert!(!file_stem("").is_empty());
    }

    #[test]
    fn holder_line_round_trips() {
        let h = Holder {
            pid: 42,
            host: "ci-runner".to_owned(),
            since: DateTime::parse_from_rfc3339("2026-11-28T09:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            what: "run black-friday (2 campaigns)".to_owned(),
        };
        assert_eq!(Holder::parse(&h.line()), Some(h.clone()));
        assert_eq!(
            h.to_string(),
            "process 42 on ci-runner (run black-friday (2 campaigns)) since 2026-11-28T09:00:00Z"
        );
        assert_eq!(Holder::parse(""), None);
        assert_eq!(Holder::parse("0 h 2026-11-28T09:00:00Z x"), None);
        assert_eq!(Holder::parse("garbage"), None);
        assert!(!Holder::unknown().is_known());
    }
}
