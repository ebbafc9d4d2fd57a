//! What the runs of one [`super::Runner`] share: one budget per bot, one lock per bot
//! and store, one journal writer per store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{journal, RunError};
use crate::delivery::{BotBudget, Journal, JournalHandle};
use crate::diagnostic::Diagnostic;
use crate::state::{HeldLock, LockName, StateLocation, StateStore};

/// One journal writer per state store, shared by every run that sends into it: one
/// connection, and one commit for the records of all of them.
#[derive(Default)]
pub(super) struct Writers {
    by_store: Mutex<WriterMap>,
}

type WriterMap = HashMap<StateLocation, (JournalHandle, std::thread::JoinHandle<Box<dyn Journal>>)>;

impl Writers {
    /// The writer of `location`, started on first use with a connection of its own.
    pub(super) fn for_run(
        &self,
        location: &StateLocation,
        run_id: &str,
    ) -> Result<JournalHandle, RunError> {
        let mut map = self.by_store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((handle, _)) = map.get(location) {
            return Ok(handle.for_run(run_id));
        }
        let store = crate::state::open(location)
            .map_err(|e| RunError::state(location.to_string(), e))?
            .ok_or_else(|| {
                RunError::failed(Diagnostic::error(
                    "state",
                    "no state store to record deliveries in",
                ))
            })?;
        let (handle, thread) = JournalHandle::start(Box::new(journal::StateJournal { store }))
            .map_err(|e| {
                RunError::failed(Diagnostic::error(
                    "runtime",
                    format!("cannot start the state writer: {e}"),
                ))
            })?;
        let for_run = handle.for_run(run_id);
        map.insert(location.clone(), (handle, thread));
        Ok(for_run)
    }

    /// Lets every writer finish (their runs are done); names a store whose writer crashed.
    pub(super) fn finish(&self) -> Option<String> {
        let map = std::mem::take(&mut *self.by_store.lock().unwrap_or_else(|e| e.into_inner()));
        let mut crashed = None;
        for (location, (handle, thread)) in map {
            drop(handle);
            if thread.join().is_err() {
                crashed = Some(location.to_string());
            }
        }
        crashed
    }
}

/// One budget per bot: the lowest rate any campaign declares for it, decided before
/// anything is sent (a budget is never lowered under a running campaign).
pub(super) fn budgets<'a>(
    rates: impl Iterator<Item = (&'a str, f64)>,
) -> HashMap<String, Arc<BotBudget>> {
    let mut lowest: HashMap<&str, f64> = HashMap::new();
    for (bot, rate) in rates {
        let lowest = lowest.entry(bot).or_insert(rate);
        *lowest = lowest.min(rate);
    }
    lowest
        .into_iter()
        .map(|(bot, rate)| (bot.to_owned(), Arc::new(BotBudget::new(rate))))
        .collect()
}

/// The bot locks of one runner: taken once per bot and lock space, by whichever of the
/// bot's campaigns gets there first, and held while any of them runs (each holds a
/// share), so campaigns for one bot in one process never lock each other out, and
/// the bot is free for other processes once the last of them is done.
#[derive(Default)]
pub(super) struct BotLocks {
    slots: Mutex<HashMap<(String, String), Arc<BotLockSlot>>>,
}

/// One bot's lock in one lock space, while some campaign of the bot holds a share.
type BotLockSlot = Mutex<Weak<HeldLock>>;

impl BotLocks {
    pub(super) fn take(
        &self,
        bot_id: &str,
        store: &dyn StateStore,
        wait: Option<Duration>,
    ) -> Result<Arc<HeldLock>, RunError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .entry((store.lock_space(), bot_id.to_owned()))
                .or_default()
                .clone()
        };
        // Only this bot's campaigns wait here; other bots go on.
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = slot.upgrade() {
            return Ok(held);
        }
        let name = LockName::Bot(bot_id.to_owned());
        let held = Arc::new(
            store
                .lock(&name, wait)
                .map_err(|e| RunError::lock(&name, e))?,
        );
        *slot = Arc::downgrade(&held);
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bots_lock_is_shared_while_held_and_released_after_its_last_campaign() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let (store, _) = crate::state::SqliteStore::create(&path).expect("store");
        // The same store, spelt another way: it shares the locks.
        let (other, _) =
            crate::state::SqliteStore::create(&dir.path().join("sub/../state.db")).expect("store");
        let locks = BotLocks::default();
        let first = locks.take("bot-1", &store, None).expect("taken");
        // A second campaign of the bot, through another handle: the same share.
        let second = locks.take("bot-1", &other, None).expect("shared");
        assert!(Arc::ptr_eq(&first, &second));
        let name = LockName::Bot("bot-1".into());
        assert!(store.lock_holder(&name).expect("holder").is_some());
        drop(first);
        assert!(store.lock_holder(&name).expect("holder").is_some());
        drop(second);
        assert_eq!(store.lock_holder(&name).expect("holder"), None);
        // Taken anew once free.
        let again = locks.take("bot-1", &store, None).expect("taken again");
        assert!(store.lock_holder(&name).expect("holder").is_some());
        drop(again);
    }

    #[test]
    fn a_bot_gets_one_budget_at_the_lowest_rate_its_campaigns_declare() {
        let budgets = budgets(
            [
                ("shop", 25.0),
                ("news", 10.0),
                ("shop", 5.0),
                ("shop", 20.0),
            ]
            .into_iter(),
        );
        assert_eq!(budgets.len(), 2);
        assert_eq!(budgets["shop"].rate(), 5.0);
        assert_eq!(budgets["news"].rate(), 10.0);
    }
}
