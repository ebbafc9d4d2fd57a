//! Durable bookkeeping of attempts and outcomes, with group commit.
//!
//! Every in-flight task hands its record to one writer thread and waits for
//! the acknowledgement. The writer takes everything queued, writes it in one
//! transaction, then acknowledges each record: with 64 requests in flight, one
//! commit carries up to 64 records, so durability does not cost one sync per
//! request, and no request leaves before its attempt is durable.

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

/// Where attempts and outcomes are made durable (the state store, or nothing).
pub trait Journal: Send + 'static {
    /// Durable before returning Ok.
    fn attempted(&mut self, batch: &[AttemptEntry]) -> Result<(), String>;
    /// Durable before returning Ok.
    fn settled(&mut self, batch: &[OutcomeEntry]) -> Result<(), String>;
}

/// Keeps nothing: for runs without a state store (library use, tests).
#[derive(Debug, Default)]
pub struct NullJournal;

impl Journal for NullJournal {
    fn attempted(&mut self, _: &[AttemptEntry]) -> Result<(), String> {
        Ok(())
    }
    fn settled(&mut self, _: &[OutcomeEntry]) -> Result<(), String> {
        Ok(())
    }
}

enum Op {
    Attempt(AttemptEntry, oneshot::Sender<Result<(), String>>),
    Outcome(OutcomeEntry, oneshot::Sender<Result<(), String>>),
}

/// A handle to the writer thread. Cloneable; the thread ends when every handle is gone.
#[derive(Clone)]
pub struct JournalHandle {
    writer: Writer,
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
    failed: Option<String>,
}

const MAX_BATCH: usize = 1024;

/// Writes one batch, unless an earlier write failed: once one did, nothing
/// more is acknowledged as durable.
fn commit<T>(
    failed: &mut Option<String>,
    batch: &[T],
    write: impl FnOnce(&[T]) -> Result<(), String>,
) -> Result<(), String> {
    if let Some(e) = failed {
        return Err(e.clone());
    }
    if batch.is_empty() {
        return Ok(());
    }
    let result = write(batch);
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
                let mut failed: Option<String> = None;
                while let Ok(first) = rx.recv() {
                    let mut ops = vec![first];
                    while ops.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    let mut attempts = Vec::new();
                    let mut attempt_acks = Vec::new();
                    let mut outcomes = Vec::new();
                    let mut outcome_acks = Vec::new();
                    for op in ops {
                        match op {
                            Op::Attempt(e, ack) => {
                                attempts.push(e);
                                attempt_acks.push(ack);
                            }
                            Op::Outcome(e, ack) => {
                                outcomes.push(e);
                                outcome_acks.push(ack);
                            }
                        }
                    }
                    // Attempts first, acknowledged at once: each holds a rate
                    // permit and leaves as soon as its record is durable.
                    let attempt_result = commit(&mut failed, &attempts, |b| journal.attempted(b));
                    for ack in attempt_acks {
                        let _ = ack.send(attempt_result.clone());
                    }
                    let outcome_result = commit(&mut failed, &outcomes, |b| journal.settled(b));
                    for ack in outcome_acks {
                        let _ = ack.send(outcome_result.clone());
                    }
                }
                journal
            })?;
        Ok((
            JournalHandle {
                writer: Writer::Thread(tx),
            },
            thread,
        ))
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
        }
    }

    async fn call(
        tx: &mpsc::Sender<Op>,
        op: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        tx.send(op(ack))
            .map_err(|_| "the state writer has stopped".to_string())?;
        done.await
            .map_err(|_| "the state writer has stopped".to_string())?
    }

    fn immediately<T>(
        latched: &Mutex<Latched>,
        record: &T,
        write: impl FnOnce(&mut dyn Journal, &[T]) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut latched = latched.lock().unwrap_or_else(|e| e.into_inner());
        let Latched { journal, failed } = &mut *latched;
        commit(failed, std::slice::from_ref(record), |b| {
            write(journal.as_mut(), b)
        })
    }

    pub async fn attempted(&self, entry: AttemptEntry) -> Result<(), String> {
        match &self.writer {
            Writer::Immediate(latched) => Self::immediately(latched, &entry, |j, b| j.attempted(b)),
            Writer::Thread(tx) => Self::call(tx, |ack| Op::Attempt(entry, ack)).await,
        }
    }

    pub async fn settled(&self, entry: OutcomeEntry) -> Result<(), String> {
        match &self.writer {
            Writer::Immediate(latched) => Self::immediately(latched, &entry, |j, b| j.settled(b)),
            Writer::Thread(tx) => Self::call(tx, |ack| Op::Outcome(entry, ack)).await,
        }
    }
}
