//! Run state: what was sent to whom, durably, so that a re-run never messages anyone
//! twice; and the locks that keep two processes off the same run or bot.
//!
//! # The resume contract
//!
//! For every recipient it takes up, the delivery loop:
//!
//! 1. calls [`StateStore::record_attempts`] (batched): when it returns `Ok` the recipients
//!    are durably `attempted`, on disk (`synchronous=FULL`);
//! 2. only then sends the requests;
//! 3. calls [`StateStore::record_outcomes`] (batched) with what came back.
//!
//! So a crash between 1 and 3 leaves recipients `attempted`; when the run is reopened,
//! [`StateStore::settle_in_flight`] turns them into `unknown`, which is never resent without
//! `--resend-unknown`. A crash can lose outcomes (they read as unknown), never an attempt:
//! nobody is messaged twice because the store forgot.
//!
//! [`StateStore`] is the seam for other back ends (e.g. PostgreSQL); [`SqliteStore`] is the
//! embedded one. A [`StateLocation`] names one, and [`open`] opens it: callers never
//! name a backend. Locks are part of the store's contract ([`StateStore::lock`]): every
//! process that shares a store shares its locks.

mod error;
mod location;
pub mod lock;
mod model;
mod postgres;
mod sqlite;

pub use error::StateError;
pub use location::{create, open, open_read_only, Created, StateLocation};
pub use lock::{acquire, held_by, HeldLock, Holder, LockError, LockGuard, LockName};
pub use model::{
    key_hash, Attempt, Begin, Counts, DeliveryRow, Fingerprint, FingerprintChange, JournalBatch,
    KeyHashBuild, KeyHashHasher, KeySet, OutcomeClass, OutcomeRecord, ParseNameError,
    PriorDeliveries, RunStart, RunStatus, RunSummary, SortedKeys,
};
pub use postgres::{PostgresStore, PG_SCHEMA_VERSION};
pub use sqlite::{Durability, SqliteStore, APPLICATION_ID, SCHEMA_VERSION};

/// A durable store of runs and deliveries. Methods that write are transactional: when one
/// returns `Err`, nothing of that call was recorded.
pub trait StateStore: Send {
    /// Where the store is, as shown to people (never with a password).
    fn location(&self) -> String;

    /// Takes `name` for this process, waiting up to `wait` while another holds it
    /// (without `wait`, a held lock fails with [`LockError::Held`], naming the holder,
    /// after at most a moment's grace: a backend may retry briefly, e.g. SQLite's
    /// 200 ms, so that a `status` peeking at the lock does not fail a run starting). Held until the returned guard is dropped; released by the backend
    /// when the process dies, however it dies. Two takes of one name in one process
    /// exclude each other too.
    fn lock(
        &self,
        name: &LockName,
        wait: Option<std::time::Duration>,
    ) -> Result<HeldLock, LockError>;

    /// Names the set of locks this store shares: two stores (or two handles of one)
    /// whose locks exclude each other return the same value.
    fn lock_space(&self) -> String;

    /// Who holds `name` now, or `None` when nobody does. Takes nothing.
    fn lock_holder(&self, name: &LockName) -> Result<Option<Holder>, LockError>;

    /// Makes the store complete in its main place after a run (SQLite: folds the
    /// write-ahead log into the database file, so a cache that keeps only that file
    /// keeps everything). Every record is already durable before this is called.
    fn checkpoint(&self) -> Result<(), StateError>;

    /// Creates the run (status `running`), or reopens it. Reopening compares the stored
    /// fingerprint with `start.fingerprint` and returns the parts that differ; it never
    /// modifies the stored fingerprint. A reopened run is marked `running` again only when
    /// nothing differs; otherwise it is left as it was until [`Self::accept_fingerprint`].
    /// A run recorded as missed cannot be begun ([`StateError::MissedRun`]).
    fn begin_run(&mut self, start: &RunStart) -> Result<Begin, StateError>;

    /// The caller accepted the changes (`--accept-changes`): stores the new fingerprint,
    /// keeps the old one in the run's history, and marks the run `running`.
    fn accept_fingerprint(
        &mut self,
        run_id: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(), StateError>;

    /// Every recipient this run has a record for, with its class (empty for an unknown
    /// run), by [`key_hash`]. Holds every record in memory: for inspection; a resume
    /// asks [`Self::handled`].
    fn prior(&self, run_id: &str) -> Result<PriorDeliveries, StateError> {
        let mut prior = PriorDeliveries::new();
        for row in self.deliveries(run_id, &[], None)? {
            prior.insert(key_hash(&row.key), row.class);
        }
        Ok(prior)
    }

    /// The [`key_hash`]es of this run's recipients whose class is one of `classes` (what
    /// a resume skips). Streams the records: never holds them, only 16 bytes a
    /// recipient. Empty for an unknown run.
    fn handled(&self, run_id: &str, classes: &[OutcomeClass]) -> Result<SortedKeys, StateError>;

    /// Records a batch of attempts and outcomes, of any runs, in one transaction: when
    /// it holds attempts, synced to disk before returning (send only after this returns
    /// `Ok`). A recipient attempted before has its attempt count incremented and its
    /// source and row updated. An outcome for a recipient without an attempt (e.g.
    /// `skipped`) is inserted with an empty source and row 0.
    fn record_batch(&mut self, batch: &JournalBatch) -> Result<(), StateError>;

    /// [`Self::record_batch`] of one run's attempts.
    fn record_attempts(&mut self, run_id: &str, attempts: &[Attempt]) -> Result<(), StateError> {
        let run: std::sync::Arc<str> = run_id.into();
        self.record_batch(&JournalBatch {
            attempts: attempts.iter().map(|a| (run.clone(), a.clone())).collect(),
            outcomes: Vec::new(),
        })
    }

    /// [`Self::record_batch`] of one run's outcomes.
    fn record_outcomes(
        &mut self,
        run_id: &str,
        outcomes: &[OutcomeRecord],
    ) -> Result<(), StateError> {
        let run: std::sync::Arc<str> = run_id.into();
        self.record_batch(&JournalBatch {
            attempts: Vec::new(),
            outcomes: outcomes.iter().map(|o| (run.clone(), o.clone())).collect(),
        })
    }

    /// After a crash: every delivery of this run still `attempted` becomes `unknown`.
    /// Returns how many. Call it when a run is reopened, while holding the run's lock.
    fn settle_in_flight(&mut self, run_id: &str) -> Result<u64, StateError>;

    /// Sets the run's status (and its finish time, unless `status` is `Running`).
    fn finish_run(&mut self, run_id: &str, status: RunStatus) -> Result<(), StateError>;

    /// Puts the run's status and finish time back to `previous`'s (as
    /// [`StateStore::begin_run`] found it): an invocation that opened the run and
    /// found nothing to do leaves it as it was, so a no-op re-run does not make a
    /// finished run look longer.
    fn restore_run(&mut self, previous: &RunSummary) -> Result<(), StateError>;

    /// What the run's latest plan counted: recipients that reached rendering
    /// (`audience`: to send, already sent and invalid) and the invalid among them.
    fn record_plan(&mut self, run_id: &str, audience: u64, invalid: u64) -> Result<(), StateError>;

    /// Records a scheduled occurrence that was missed, so that `due` reports it and it is
    /// never sent late. A run that already exists is left as it is.
    fn record_missed(&mut self, start: &RunStart) -> Result<(), StateError>;

    /// One run, with its counts per class.
    fn run(&self, run_id: &str) -> Result<Option<RunSummary>, StateError>;

    /// Every run (of one campaign, if given), newest first, with counts per class.
    fn runs(&self, campaign: Option<&str>) -> Result<Vec<RunSummary>, StateError>;

    /// A run's deliveries in the classes given (all when `classes` is empty), in the order
    /// they were first attempted, at most `limit` of them.
    fn deliveries(
        &self,
        run_id: &str,
        classes: &[OutcomeClass],
        limit: Option<usize>,
    ) -> Result<Vec<DeliveryRow>, StateError>;
}
