//! The delivery loop's journal, over any state store.

use crate::delivery::{AttemptEntry, Journal, OutcomeEntry};
use crate::state::{Attempt, OutcomeRecord, StateStore};

/// Writes what the delivery loop reports into the run's records.
pub(crate) struct StateJournal {
    pub store: Box<dyn StateStore>,
    pub run_id: String,
}

impl Journal for StateJournal {
    fn attempted(&mut self, batch: &[AttemptEntry]) -> Result<(), String> {
        let attempts: Vec<Attempt> = batch
            .iter()
            .map(|a| Attempt {
                key: a.key.clone(),
                source: a.file.clone(),
                row: a.row,
            })
            .collect();
        self.store
            .record_attempts(&self.run_id, &attempts)
            .map_err(|e| e.to_string())
    }

    fn settled(&mut self, batch: &[OutcomeEntry]) -> Result<(), String> {
        let outcomes: Vec<OutcomeRecord> = batch
            .iter()
            .map(|o| OutcomeRecord {
                key: o.key.clone(),
                class: o.outcome.class,
                attempts: o.outcome.attempts,
                status: o.outcome.status,
                platform_text: o.outcome.text.clone(),
            })
            .collect();
        self.store
            .record_outcomes(&self.run_id, &outcomes)
            .map_err(|e| e.to_string())
    }
}
