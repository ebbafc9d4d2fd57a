//! Durable bookkeeping of attempts and outcomes, with group commit.
//!
//! Every in-flight task hands its record to one writer thread and waits for
//! the acknowledgement. The writer takes everything queued, writes it in one
//! transaction, then acknowledges each record: with 64 requests in flight, one
//! commit carries up to 64 records, so durability does not cost one sync per
//! request, and no request leaves before its attempt is durable.

use std::sync::mpsc;

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
    tx: mpsc::Sender<Op>,
}

const MAX_BATCH: usize = 1024;

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
                    // Once a write failed, nothing more is acknowledged as durable.
                    let outcome_result = match &failed {
                        Some(e) => Err(e.clone()),
                        None if outcomes.is_empty() => Ok(()),
                        None => journal.settled(&outcomes),
                    };
                    if let Err(e) = &outcome_result {
                        failed.get_or_insert(e.clone());
                    }
                    let attempt_result = match &failed {
                        Some(e) => Err(e.clone()),
                        None if attempts.is_empty() => Ok(()),
                        None => journal.attempted(&attempts),
                    };
                    if let Err(e) = &attempt_result {
                        failed.get_or_insert(e.clone());
                    }
                    for ack in outcome_acks {
                        let _ = ack.send(outcome_result.clone());
                    }
                    for ack in attempt_acks {
                        let _ = ack.send(attempt_result.clone());
                    }
                }
                journal
            })?;
        Ok((JournalHandle { tx }, thread))
    }

    async fn call(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(op(ack))
            .map_err(|_| "the state writer has stopped".to_string())?;
        done.await
            .map_err(|_| "the state writer has stopped".to_string())?
    }

    pub async fn attempted(&self, entry: AttemptEntry) -> Result<(), String> {
        self.call(|ack| Op::Attempt(entry, ack)).await
    }

    pub async fn settled(&self, entry: OutcomeEntry) -> Result<(), String> {
        self.call(|ack| Op::Outcome(entry, ack)).await
    }
}
