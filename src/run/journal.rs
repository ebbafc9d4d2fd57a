//! The delivery loop's journal, over any state store: one writer per store serves
//! every run that sends into it.

use crate::delivery::{AttemptEntry, Journal, JournalError, OutcomeEntry, Tagged};
use crate::state::{Attempt, JournalBatch, OutcomeRecord, StateStore};

/// Writes what the delivery loops report into their runs' records.
pub(crate) struct StateJournal {
    pub store: Box<dyn StateStore>,
}

impl Journal for StateJournal {
    fn write(
        &mut self,
        attempts: &[Tagged<AttemptEntry>],
        outcomes: &[Tagged<OutcomeEntry>],
    ) -> Result<(), JournalError> {
        let batch = JournalBatch {
            attempts: attempts
                .iter()
                .map(|a| {
                    (
                        a.run.clone(),
                        Attempt {
                            key: a.record.key.clone(),
                            source: a.record.file.clone(),
                            row: a.record.row,
                        },
                    )
                })
                .collect(),
            outcomes: outcomes
                .iter()
                .map(|o| {
                    let outcome = &o.record.outcome;
                    (
                        o.run.clone(),
                        OutcomeRecord {
                            key: o.record.key.clone(),
                            class: outcome.class,
                            attempts: outcome.attempts,
                            status: outcome.status,
                            platform_text: outcome.text.clone(),
                        },
                    )
                })
                .collect(),
        };
        Ok(self.store.record_batch(&batch)?)
    }
}
