//! The sending pass: the plan's pipeline once more, feeding the senders.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::campaign::Campaign;
use crate::diagnostic::Diagnostic;
use crate::human::thousands;
use crate::plan::{plan_errors, PassInputs, Pipeline, Planned, PriorLookup};
use crate::render::RenderedRequest;

/// The sending pass: the same pipeline as the plan's, on its own thread, handing
/// requests to the senders through a bounded channel. It is started beside the plan
/// pass and ends, when not asked for, as soon as it is dropped.
pub(super) struct Feeder {
    /// The requests to send; `None` once taken, or when the thread could not start.
    requests: Option<mpsc::Receiver<RenderedRequest>>,
    /// The number of rows the plan read, once it is made.
    planned_rows: Option<std::sync::mpsc::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<Result<(), Vec<Diagnostic>>>>,
}

impl Feeder {
    pub(super) fn start(
        campaign: Campaign,
        inputs: PassInputs,
        filter: Option<Arc<dyn PriorLookup>>,
        capacity: usize,
    ) -> Feeder {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (rows_tx, rows_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sending-pass".into())
            .spawn(move || feed(campaign, inputs, filter, tx, rows_rx))
            .ok();
        Feeder {
            requests: thread.is_some().then_some(rx),
            planned_rows: Some(rows_tx),
            thread,
        }
    }

    /// The requests to send, once (`None` when the sending pass could not start).
    pub(super) fn take_requests(&mut self) -> Option<mpsc::Receiver<RenderedRequest>> {
        self.requests.take()
    }

    /// The plan is made and read `rows` rows: the sending pass must read as many.
    pub(super) fn planned(&self, rows: u64) {
        if let Some(tx) = &self.planned_rows {
            let _ = tx.send(rows);
        }
    }

    /// Waits for the sending pass to end (the senders are done with it).
    pub(super) fn finish(&mut self) -> Result<(), Vec<Diagnostic>> {
        self.requests = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(diagnostics))) => Err(diagnostics),
            Some(Err(_)) => Err(vec![crashed()]),
        }
    }
}

/// The sending pass ended in a panic (a bug): what it had not handed over is unsent.
pub(super) fn crashed() -> Diagnostic {
    Diagnostic::error("audience-failed", "the audience reader crashed")
}

impl Drop for Feeder {
    fn drop(&mut self) {
        // Hanging up stops the thread at its next request; then it is waited for.
        self.planned_rows = None;
        let _ = self.finish();
    }
}

/// The sending pass's thread. The plan read the sources whole; a failure now, or a
/// different number of rows (a file cut short or replaced mid-run), means part of the
/// audience was never offered: that must not pass for a completed run.
fn feed(
    campaign: Campaign,
    inputs: PassInputs,
    filter: Option<Arc<dyn PriorLookup>>,
    tx: mpsc::Sender<RenderedRequest>,
    planned_rows: std::sync::mpsc::Receiver<u64>,
) -> Result<(), Vec<Diagnostic>> {
    let mut pipeline = Pipeline::for_sending(&campaign, inputs.renderer, inputs.suppressed, filter)
        .select(inputs.selection);
    for planned in pipeline.by_ref() {
        if tx.is_closed() {
            // Delivery is over (or never started), however many rows remain.
            return Ok(());
        }
        if let Planned::Send(request) = planned {
            if tx.blocking_send(request).is_err() {
                // Delivery stopped taking recipients (or never started): the rest
                // stays pending.
                return Ok(());
            }
        }
    }
    if !pipeline.source_failures.is_empty() {
        return Err(plan_errors(&pipeline.source_failures));
    }
    let Ok(planned_rows) = planned_rows.recv() else {
        // No plan was made: nothing was sent.
        return Ok(());
    };
    if pipeline.counts.read != planned_rows {
        return Err(vec![Diagnostic::error(
            "audience-changed",
            format!(
                "the audience changed while it was being sent: the plan read {} rows, sending read {}",
                thousands(planned_rows),
                thousands(pipeline.counts.read)
            ),
        )]);
    }
    Ok(())
}
