//! The sending pass: the plan's pipeline once more, feeding the senders.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::campaign::Campaign;
use crate::diagnostic::Diagnostic;
use crate::human::thousands;
use crate::plan::{plan_errors, request_hash, PassInputs, Pipeline, Planned, PriorLookup};
use crate::render::RenderedRequest;
use crate::state::KeySet;

/// The sending pass: the same pipeline as the plan's, on its own thread, handing
/// requests to the senders through a bounded channel. It is started beside the plan
/// pass and ends, when not asked for, as soon as it is dropped.
pub(super) struct Feeder {
    /// The requests to send; `None` once taken, or when the thread could not start.
    requests: Option<mpsc::Receiver<RenderedRequest>>,
    /// The plan's verdict, once it is made.
    planned_rows: Option<std::sync::mpsc::Sender<Verdict>>,
    thread: Option<std::thread::JoinHandle<Result<(), Vec<Diagnostic>>>>,
}

/// What the plan tells the sending pass.
pub(super) struct Verdict {
    /// Rows the plan read: the sending pass must read as many.
    pub rows: u64,
    /// For a run bound to a reviewed plan (`run --plan`): the hash of every request
    /// the plan rendered. The sending pass then waits for this verdict before it
    /// hands over anything, and hands over only requests in it.
    pub allowed: Option<Arc<KeySet>>,
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

    /// The plan is made: what the sending pass must match.
    pub(super) fn planned(&self, verdict: Verdict) {
        if let Some(tx) = &self.planned_rows {
            let _ = tx.send(verdict);
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
    planned_rows: std::sync::mpsc::Receiver<Verdict>,
) -> Result<(), Vec<Diagnostic>> {
    // Bound to a reviewed plan: nothing is handed over before the plan's hashes are.
    let mut verdict = None;
    if inputs.digest {
        let Ok(v) = planned_rows.recv() else {
            return Ok(());
        };
        verdict = Some(v);
    }
    let bot = crate::api::wire::BotEndpoint {
        id: campaign.bot.id.clone(),
        tag_style: campaign.bot.tag_style,
    };
    let mut pipeline = Pipeline::for_sending(&campaign, inputs.renderer, inputs.suppressed, filter)
        .select(inputs.selection);
    for planned in pipeline.by_ref() {
        if tx.is_closed() {
            // Delivery is over (or never started), however many rows remain.
            return Ok(());
        }
        if let Planned::Send(request) = planned {
            let allowed = verdict.as_ref().and_then(|v| v.allowed.as_ref());
            if allowed.is_some_and(|set| !set.contains(request_hash(&request, &bot))) {
                return Err(vec![Diagnostic::error(
                    "audience-changed",
                    format!(
                        "the request for `{}` ({}) is not one of the reviewed plan's: an audience file changed after the plan was checked; it and the rest were not sent",
                        request.key, request.origin
                    ),
                )]);
            }
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
    let planned_rows = match verdict {
        Some(v) => v.rows,
        None => match planned_rows.recv() {
            Ok(v) => v.rows,
            // No plan was made: nothing was sent.
            Err(_) => return Ok(()),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    const CAMPAIGN: &str = "version: 1\nname: f\nbot: { id: \"b1\", token_env: T, api: v2 }\naudience:\n  from:\n    - jsonl: a.jsonl\n  key: \"{{ id }}\"\nrecipient:\n  customer_id: \"{{ id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"hi {{ id }}\"\n";

    /// Runs the sending pass of a bound run whose plan allowed `allowed` (made
    /// from `planned` rows), over the audience `rows`: what it handed over and how
    /// it ended.
    fn bound_pass(planned: &str, rows: &str) -> (Vec<String>, Result<(), Vec<Diagnostic>>) {
        let (dir, campaign) = crate::plan::testing::campaign(CAMPAIGN, &[("a.jsonl", planned)]);
        let run = crate::plan::run_info(&campaign, None, chrono::Utc::now());
        let inputs = PassInputs::new(&campaign, &run)
            .expect("inputs")
            .with_digest();
        let planned_pass = crate::plan::plan_pass_with(
            &campaign,
            "http://127.0.0.1:9",
            inputs.clone(),
            0,
            None,
            None,
        )
        .expect("plan");
        // The file changes after the plan was checked.
        std::fs::write(dir.path().join("a.jsonl"), rows).expect("write");
        let (tx, mut rx) = mpsc::channel(16);
        let (verdict_tx, verdict_rx) = std::sync::mpsc::channel();
        verdict_tx
            .send(Verdict {
                rows: planned_pass.report.counts.read,
                allowed: planned_pass.request_hashes.clone(),
            })
            .expect("send");
        let ended = feed(campaign, inputs, None, tx, verdict_rx);
        let mut sent = Vec::new();
        while let Ok(request) = rx.try_recv() {
            sent.push(request.key);
        }
        (sent, ended)
    }

    #[test]
    fn a_bound_run_hands_over_only_requests_of_its_plan() {
        let reviewed = "{\"id\":\"1\"}\n{\"id\":\"2\"}\n";
        let (sent, ended) = bound_pass(reviewed, reviewed);
        assert_eq!(sent, ["1", "2"]);
        assert!(ended.is_ok());

        // Same number of rows, one of them not reviewed: nothing from it on.
        let (sent, ended) = bound_pass(reviewed, "{\"id\":\"1\"}\n{\"id\":\"9\"}\n");
        assert_eq!(sent, ["1"]);
        let errors = ended.expect_err("refused");
        assert!(
            errors[0].message.contains("not one of the reviewed plan's"),
            "{errors:?}"
        );
    }
}
