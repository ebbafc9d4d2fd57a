//! What can go wrong with the state store, worded for the person who runs the tool.

use std::path::PathBuf;

/// An error of the state store. Every message names what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file's schema is newer than this build knows.
    #[error(
        "the state file was written by a newer smax-campaign (state schema version {found}; \
         this build knows up to {supported}); upgrade smax-campaign. The file was left untouched"
    )]
    FutureVersion {
        /// The file's `user_version`.
        found: u32,
        /// The newest schema this build knows.
        supported: u32,
    },

    /// There is no store at the location. Never created on the way: see `--new-state`.
    #[error(
        "there is no state store at {path}. If state was expected there (a CI cache, a path, \
         SMAX_STATE), sending now would message everyone again: restore it, or fix --state. \
         To start a new store on purpose, pass --new-state or run `smax-campaign state init`"
    )]
    Missing {
        /// The location looked at.
        path: PathBuf,
    },

    /// The file exists but has no bytes: a truncated copy or a failed restore.
    #[error(
        "{path} is empty (zero bytes): the record of earlier sends is not in it, so nothing \
         can tell who was already messaged. It was left untouched. Restore the real state \
         file, or delete this one and pass --new-state if starting over is intended"
    )]
    Empty {
        /// The state file.
        path: PathBuf,
    },

    /// The file is not a SQLite database, is damaged, or belongs to another program.
    #[error(
        "{path} is not a usable smax-campaign state file: {detail}. It was left untouched. \
         If it is the state of earlier runs, keep it (it records who was already messaged) and \
         restore it from a backup, or point --state (SMAX_STATE) at another file; a new state \
         file forgets every earlier send"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },

    /// The file uses an older schema and was opened read-only, so it cannot be upgraded.
    #[error(
        "{path} uses state schema version {found} (this build uses {supported}) and was \
         opened read-only; a `smax-campaign run` upgrades it"
    )]
    NeedsUpgrade {
        /// The state file.
        path: PathBuf,
        /// The file's `user_version`.
        found: u32,
        /// The schema this build writes.
        supported: u32,
    },

    /// Another process kept the database locked for longer than the busy timeout.
    #[error(
        "{path} stayed locked by another process for too long; \
         wait for the other smax-campaign to finish and try again"
    )]
    Busy {
        /// The state file.
        path: PathBuf,
    },

    /// A write through a store opened with `open_read_only`.
    #[error("{path} was opened read-only; this command does not write state")]
    ReadOnly {
        /// The state file.
        path: PathBuf,
    },

    /// The run id has no record.
    #[error("no run `{run_id}` in the state file")]
    UnknownRun {
        /// The run id asked for.
        run_id: String,
    },

    /// The run was recorded as a missed occurrence, which is never sent late.
    #[error(
        "run `{run_id}` was recorded as missed (its occurrence was not sent in time); \
         a missed occurrence is never sent late"
    )]
    MissedRun {
        /// The run id.
        run_id: String,
    },

    /// Another process took the run over (its lease moved on) while this one still
    /// meant to write: nothing of the refused write was recorded.
    #[error(
        "run `{run_id}` in {location} was taken over by another process (its lease moved on); \
         this process recorded nothing more and stopped sending. The other process carries the \
         run on; `smax-campaign status` shows where it stands"
    )]
    LostRun {
        /// The run id.
        run_id: String,
        /// The store, as shown to people.
        location: String,
    },

    /// A write that would break what the store already records (e.g. a new attempt
    /// for a recipient recorded as sent). Nothing of it was recorded.
    #[error("the state store refused {0}; nothing of this batch was recorded or sent")]
    Conflict(String),

    /// A value the store cannot record (a bug in the caller, not in user input).
    #[error("cannot record {0}")]
    Invalid(String),

    /// Creating the state file's folder, or reading its metadata, failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Any other error of the store's backend, in its own words.
    #[error("state store {path}: {detail}")]
    Backend {
        /// The store, as shown to people.
        path: PathBuf,
        /// What the backend said.
        detail: String,
    },
}

impl StateError {
    /// A new attempt is a compare-and-set on the stored class: never over a recipient
    /// recorded as sent, nor over one in flight.
    pub(super) fn attempt_conflict() -> StateError {
        StateError::Conflict(
            "a new attempt for a recipient whose record says it was already sent or is in \
             flight"
                .to_owned(),
        )
    }
}

/// A count or row number as the stores' signed 64-bit columns hold it.
pub(super) fn to_i64(what: &str, n: u64) -> Result<i64, StateError> {
    i64::try_from(n).map_err(|_| StateError::Invalid(format!("{what} {n}: too large")))
}
