//! Which run a campaign acts on at a time: the one place that asks "is it due".
//! `run`, `due` and `plan` all come here, so they never disagree.

use crate::campaign::Campaign;
use crate::plan::run_id;
use crate::render::RunInfo;
use crate::schedule::{Due, Occurrence, Seen};
use crate::state::{RunStatus, StateStore};

/// What the schedule says at `at`, told what the store knows of each occurrence;
/// `None` for an unscheduled campaign (it runs when asked).
pub fn due_at(
    campaign: &Campaign,
    at: chrono::DateTime<chrono::Utc>,
    store: Option<&dyn StateStore>,
) -> Option<Due> {
    let schedule = campaign.schedule.as_ref()?;
    Some(schedule.due_given(at, |occurrence| {
        seen(store, &run_id(campaign, Some(occurrence)))
    }))
}

/// What the store knows of a scheduled occurrence's run.
fn seen(store: Option<&dyn StateStore>, run_id: &str) -> Seen {
    match store.and_then(|s| s.run(run_id).ok().flatten()) {
        None => Seen::No,
        Some(r) => match r.status {
            RunStatus::Completed | RunStatus::Missed => Seen::Done,
            // Handed over (--max-duration, a window, Ctrl-C) or killed: resumed.
            RunStatus::Running | RunStatus::Interrupted => Seen::Started,
            // Stopped by the tool (bad token, breaker, max_failures, too many
            // invalid): retried only within catch_up, so a broken campaign does
            // not burn through its audience tick after tick.
            RunStatus::Aborted => Seen::No,
        },
    }
}

/// The run of `campaign` for `occurrence` (the campaign's one run when `None`),
/// starting at `starts`.
pub fn run_info(
    campaign: &Campaign,
    occurrence: Option<&Occurrence>,
    starts: chrono::DateTime<chrono::Utc>,
) -> RunInfo {
    let tz = campaign
        .schedule
        .as_ref()
        .map(|s| s.timezone())
        .unwrap_or(chrono_tz::UTC);
    let occurrence = occurrence.map(Occurrence::id);
    RunInfo {
        id: run_id(campaign, occurrence.as_deref()),
        occurrence,
        now: starts
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}
