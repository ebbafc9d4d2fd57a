//! Durable bookkeeping of attempts and outcomes, with group commit.
//!
//! Every in-flight task hands its record to one writer thread and waits for
//! the acknowledgement. The writer takes everything queued, writes it in one
//! transaction, then acknowledges each record: with 64 requests in flight, one
//! commit carries up to 64 records, so durability does not cost one sync per
//! request, and no request leaves before its attempt is durable.
//!
//! One writer can serve many runs at once (every campaign sending into one state
//! store): each [`JournalHandle::for_run`] tags its records with its run, and one
//! commit carries the records of all of them.

use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

use super::Outcome;

#[derive(Debug, Clone)]
pub struct AttemptEntry {
    pub key: String,
    pub file: String,
    pub row: u64,
}

#[derive(Debug, Clone)]
pub struct OutcomeEntry {
    pub key: String,
    pub outcome: Outcome,
}

/// Why a record could not be made durable. Cloneable: one failure answers every
/// record of its commit, and every record after it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The store refused the commit.
    #[error("{0}")]
    Store(Arc<crate::state::StateError>),
    /// The writer thread is gone (it crashed, or the run is over).
    #[error("the state writer has stopped")]
    Stopped,
}

impl From<crate::state::StateError> for JournalError {
    fn from(error: crate::state::StateError) -> JournalError {
        JournalError::Store(Arc::new(error))
    }
}

/// A record and the run it belongs to.
#[derive(Debug, Clone)]
pub struct Tagged<T> {
    /// The run's id, as [`JournalHandle::for_run`] named it.
    pub run: Arc<str>,
    pub record: T,
}

/// Where attempts and outcomes are made durable (the state store, or nothing).
pub trait Journal: Send + 'static {
    /// Records attempts and outcomes, of any runs; durable before returning Ok,
    /// and nothing of it recorded when it returns Err.
    fn write(
        &mut self,
        attempts: &[Tagged<AttemptEntry>],
        outcomes: &[Tagged<OutcomeEntry>],
    ) -> Result<(), JournalError>;
}

/// Keeps nothing: for runs without a state store (library use, tests).
#[derive(Debug, Default)]
pub struct NullJournal;

impl Journal for NullJournal {
    fn write(
        &mut self,
        _: &[Tagged<AttemptEntry>],
        _: &[Tagged<OutcomeEntry>],
    ) -> Result<(), JournalError> {
        Ok(())
    }
}

enum Op {
    Attempt(
        Tagged<AttemptEntry>,
        oneshot::Sender<Result<(), JournalError>>,
    ),
    Outcome(
        Tagged<OutcomeEntry>,
        oneshot::Sender<Result<(), JournalError>>,
    ),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<Result<(), JournalError>>),
}

/// A handle to the writer thread, for one run. Cloneable; the thread ends when every
/// handle is gone.
#[derive(Clone)]
pub struct JournalHandle {
    writer: Writer,
    run: Arc<str>,
}

#[derive(Clone)]
enum Writer {
    Thread(mpsc::Sender<Op>),
    /// Written on the calling task: no thread between the send loop and the
    /// journal, so a test on a paused clock sees no time pass while writing.
    Immediate(Arc<Mutex<Latched>>),
}

/// A journal that refuses everything after its first failure, like the writer thread.
struct Latched {
    journal: Box<dyn Journal>,
    failed: Option<JournalError>,
}

const MAX_BATCH: usize = 1024;

/// Writes one batch, unless an earlier write failed: once one did, nothing
/// more is acknowledged as durable.
fn commit(
    failed: &mut Option<JournalError>,
    journal: &mut dyn Journal,
    attempts: &[Tagged<AttemptEntry>],
    outcomes: &[Tagged<OutcomeEntry>],
) -> Result<(), JournalError> {
    if let Some(e) = failed {
        return Err(e.clone());
    }
    if attempts.is_empty() && outcomes.is_empty() {
        return Ok(());
    }
    let result = journal.write(attempts, outcomes);
    if let Err(e) = &result {
        *failed = Some(e.clone());
    }
    result
}

impl JournalHandle {
    pub fn start(
        mut journal: Box<dyn Journal>,
    ) -> std::io::Result<(JournalHandle, std::thread::JoinHandle<Box<dyn Journal>>)> {
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let mut failed: Option<JournalError> = None;
                while let Ok(first) = rx.recv() {
                    let mut ops = vec![first];
                    while ops.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    let mut attempts = Vec::new();
                    let mut outcomes = Vec::new();
                    let mut acks = Vec::with_capacity(ops.len());
                    for op in ops {
                        match op {
                            Op::Attempt(e, ack) => {
                                attempts.push(e);
                                acks.push(ack);
                            }
                            Op::Outcome(e, ack) => {
                                outcomes.push(e);
                                acks.push(ack);
                            }
                            Op::Flush(ack) => acks.push(ack),
                        }
                    }
                    // One commit for everything queued, of every run: one sync
                    // however many campaigns share the store.
                    let result = commit(&mut failed, journal.as_mut(), &attempts, &outcomes);
                    for ack in acks {
                        let _ = ack.send(result.clone());
                    }
                }
                journal
            })?;
        Ok((
            JournalHandle {
                writer: Writer::Thread(tx),
                run: Arc::from(""),
            },
            thread,
        ))
    }

    /// A handle to the same writer whose records belong to the run `run_id`.
    pub fn for_run(&self, run_id: &str) -> JournalHandle {
        JournalHandle {
            writer: self.writer.clone(),
            run: Arc::from(run_id),
        }
    }

    /// Writes on the calling task, one record per write (no group commit).
    /// Only for journals that never block: [`NullJournal`], test fakes.
    #[doc(hidden)]
    pub fn immediate(journal: Box<dyn Journal>) -> JournalHandle {
        JournalHandle {
            writer: Writer::Immediate(Arc::new(Mutex::new(Latched {
                journal,
                failed: None,
            }))),
            run: Arc::from(""),
        }
    }

    async fn call(
        tx: &mpsc::Sender<Op>,
        op: impl FnOnce(oneshot::Sender<Result<(), JournalError>>) -> Op,
    ) -> Result<(), JournalError> {
        let (ack, done) = oneshot::channel();
        tx.send(op(ack)).map_err(|_| JournalError::Stopped)?;
        done.await.map_err(|_| JournalError::Stopped)?
    }

    fn tag<T>(&self, record: T) -> Tagged<T> {
        Tagged {
            run: self.run.clone(),
            record,
        }
    }

    fn immediately(
        latched: &Mutex<Latched>,
        attempts: &[Tagged<AttemptEntry>],
        outcomes: &[Tagged<OutcomeEntry>],
    ) -> Result<(), JournalError> {
        let mut latched = latched.lock().unwrap_or_else(|e| e.into_inner());
        let Latched { journal, failed } = &mut *latched;
        commit(failed, journal.as_mut(), attempts, outcomes)
    }

    pub async fn attempted(&self, entry: AttemptEntry) -> Result<(), JournalError> {
        let entry = self.tag(entry);
        match &self.writer {
            Writer::Immediate(latched) => Self::immediately(latched, &[entry], &[]),
            Writer::Thread(tx) => Self::call(tx, |ack| Op::Attempt(entry, ack)).await,
        }
    }

    /// Waits until every record handed over before this call is committed (or has
    /// failed): a run closes, and lets go of its locks, only after this, so that no
    /// record of it is written once another process may own the run.
    pub async fn flush(&self) -> Result<(), JournalError> {
        match &self.writer {
            Writer::Immediate(_) => Ok(()),
            Writer::Thread(tx) => Self::call(tx, Op::Flush).await,
        }
    }

    pub async fn settled(&self, entry: OutcomeEntry) -> Result<(), JournalError> {
        let entry = self.tag(entry);
        match &self.writer {
            Writer::Immediate(latched) => Self::immediately(latched, &[], &[entry]),
            Writer::Thread(tx) => Self::call(tx, |ack| Op::Outcome(entry, ack)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal whose first write waits for the test's word, and which keeps the
    /// keys it committed.
    struct Gated {
        started: std::sync::mpsc::Sender<()>,
        release: Option<std::sync::mpsc::Receiver<()>>,
        committed: Arc<Mutex<Vec<String>>>,
    }

    impl Journal for Gated {
        fn write(
            &mut self,
            attempts: &[Tagged<AttemptEntry>],
            _: &[Tagged<OutcomeEntry>],
        ) -> Result<(), JournalError> {
            if let Some(release) = self.release.take() {
                let _ = self.started.send(());
                let _ = release.recv();
            }
            let mut committed = self.committed.lock().expect("lock");
            committed.extend(attempts.iter().map(|a| a.record.key.clone()));
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flush_returns_only_once_what_came_before_it_is_committed() {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let committed = Arc::new(Mutex::new(Vec::new()));
        let (handle, thread) = JournalHandle::start(Box::new(Gated {
            started: started_tx,
            release: Some(release_rx),
            committed: committed.clone(),
        }))
        .expect("writer");
        let run = handle.for_run("r");
        let attempt = tokio::spawn({
            let run = run.clone();
            async move {
                run.attempted(AttemptEntry {
                    key: "k1".into(),
                    file: "a.csv".into(),
                    row: 2,
                })
                .await
            }
        });
        // The writer holds k1's commit until released.
        tokio::task::spawn_blocking(move || started.recv())
            .await
            .expect("joined")
            .expect("the write started");
        let flush = tokio::spawn(async move { run.flush().await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !flush.is_finished(),
            "a flush waits for the commit before it"
        );
        release.send(()).expect("released");
        flush.await.expect("joined").expect("flushed");
        assert_eq!(*committed.lock().expect("lock"), ["k1"]);
        attempt.await.expect("joined").expect("attempted");
        drop(handle);
        let _ = thread.join();
    }
}
