//! The glue between a run and the state store: where the store lives, locks,
//! fingerprints, resume decisions and the journal the delivery loop writes to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{eprint_diagnostics, ExitStatus};
use crate::campaign::{Campaign, Content, Project};
use crate::cli::GlobalArgs;
use crate::delivery::{self, AttemptEntry, Journal, OutcomeEntry};
use crate::diagnostic::Diagnostic;
use crate::plan::PriorLookup;
use crate::state::{
    self, Attempt, Fingerprint, LockError, LockGuard, OutcomeClass, OutcomeRecord, PriorDeliveries,
    SqliteStore, StateError, StateStore,
};

/// `--state` / `SMAX_STATE`, else smax.yaml `state`, else `.smax/state.db` at the project root.
pub(crate) fn state_path(global: &GlobalArgs, project: &Project) -> PathBuf {
    global.state.clone().unwrap_or_else(|| project.state_path())
}

/// The state file of commands that name no campaign or one: --state, else the
/// project's (found from the campaign file if one is named, else from the current folder).
pub(crate) fn state_file_for(
    global: &GlobalArgs,
    campaign_file: Option<&Path>,
) -> Result<PathBuf, ExitStatus> {
    if let Some(p) = &global.state {
        return Ok(p.clone());
    }
    let start = campaign_file
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let project = match &global.config {
        Some(p) => crate::campaign::load_project(p),
        None => match crate::campaign::find_project_file(start) {
            Some(p) => crate::campaign::load_project(&p),
            None => Ok(Project::none(PathBuf::from("."))),
        },
    };
    match project {
        Ok(p) => Ok(p.state_path()),
        Err(errors) => {
            eprint_diagnostics(&errors);
            Err(ExitStatus::Invalid)
        }
    }
}

/// Locks live beside the state file, so every process sharing a state file shares its locks.
fn lock_dir(state: &Path) -> PathBuf {
    state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// For commands that only read state: a missing store reads as empty, and says so
/// (on stderr, so that JSON and markdown output stay clean). Nothing is created.
pub(crate) fn note_missing_store(path: &Path, quiet: bool) {
    let missing = path.as_os_str() != "none"
        && matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if missing && !quiet {
        super::print_err(&format!(
            "note: no state store at {}; read as empty, nothing was created (`run` needs --new-state or `state init` to create one)\n",
            path.display()
        ));
    }
}

/// What the store knows of a scheduled occurrence's run (the one rule `run` and
/// `due` share).
pub(crate) fn occurrence_seen(store: Option<&SqliteStore>, run_id: &str) -> crate::schedule::Seen {
    use crate::schedule::Seen;
    match store.and_then(|s| s.run(run_id).ok().flatten()) {
        None => Seen::No,
        Some(r) => match r.status {
            state::RunStatus::Completed | state::RunStatus::Missed => Seen::Done,
            // Handed over (--max-duration, a window, Ctrl-C) or killed: resumed.
            state::RunStatus::Running | state::RunStatus::Interrupted => Seen::Started,
            // Stopped by the tool (bad token, breaker, max_failures, too many
            // invalid): retried only within catch_up, so a broken campaign does
            // not burn through its audience tick after tick.
            state::RunStatus::Aborted => Seen::No,
        },
    }
}

/// Who holds the run's lock (`None`: nobody; a `running` run then died).
pub(crate) fn run_lock_holder(
    state: &Path,
    run_id: &str,
) -> Result<Option<state::Holder>, LockError> {
    state::held_by(&lock_dir(state), &format!("run-{run_id}"))
}

pub(crate) fn state_error(path: &Path, e: &StateError) -> ExitStatus {
    eprint_diagnostics(&[Diagnostic::error("state", e.to_string()).help(format!(
        "the state file is {}; it is never overwritten or started over silently",
        path.display()
    ))]);
    ExitStatus::Invalid
}

/// Takes the run's and the bot's locks, or says who holds them (exit 3).
pub(crate) fn take_locks(
    state: &Path,
    run_id: &str,
    bot_id: &str,
    wait: Option<Duration>,
) -> Result<(LockGuard, LockGuard), ExitStatus> {
    let dir = lock_dir(state);
    let take = |name: String, what: String| {
        state::acquire(&dir, &name, &what, wait).map_err(|e| match e {
            LockError::Held(holder) => {
                eprint_diagnostics(&[Diagnostic::error(
                    "locked",
                    format!("{what} is held by another process: {holder}"),
                )
                .help("wait for it to finish, or pass --wait-lock 10m to wait here")]);
                ExitStatus::Locked
            }
            other => {
                eprint_diagnostics(&[Diagnostic::error(
                    "locked",
                    format!("cannot take the lock for {what}: {other}"),
                )]);
                ExitStatus::Invalid
            }
        })
    };
    let run = take(format!("run-{run_id}"), format!("run `{run_id}`"))?;
    let bot = take(format!("bot-{bot_id}"), format!("bot `{bot_id}`"))?;
    Ok((run, bot))
}

/// What a run sends, in canonical text per part; resuming after a change is refused.
pub(crate) fn fingerprint(campaign: &Campaign) -> Fingerprint {
    let m = &campaign.message;
    let content = match &m.content {
        Content::AttributesOnly => "attributes only".to_string(),
        Content::BlockName(t) => format!("block_name {t}"),
        Content::BlockId(t) => format!("block_id {t}"),
        Content::Messages { messages, .. } => serde_json::to_string(messages).unwrap_or_default(),
    };
    let mut message = content;
    for (label, t) in [
        ("one_time_notif_token", &m.one_time_notif_token),
        (
            "notification_messages_token",
            &m.notification_messages_token,
        ),
    ] {
        if let Some(t) = t {
            message.push_str(&format!("\n{label} {t}"));
        }
    }
    let parts = [
        (
            "bot",
            format!("{} ({})", campaign.bot.id, campaign.bot.label()),
        ),
        ("api", campaign.bot.api.as_str().to_string()),
        ("message", message),
        (
            "tag",
            m.tag
                .map(|t| t.as_str().to_string())
                .unwrap_or_else(|| "none".into()),
        ),
        (
            "attributes",
            serde_json::to_string(&m.attributes).unwrap_or_default(),
        ),
    ];
    Fingerprint::new(parts.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Resume decisions from what this run already recorded (SPEC section 7).
pub(crate) struct ResumeFilter {
    pub prior: PriorDeliveries,
    pub retry_failed: bool,
    pub resend_unknown: bool,
}

impl PriorLookup for ResumeFilter {
    fn already_handled(&self, key: &str) -> bool {
        match self.prior.get(key) {
            None => false,
            Some(OutcomeClass::Sent) => true,
            Some(OutcomeClass::Rejected) => !self.retry_failed,
            Some(OutcomeClass::Unknown | OutcomeClass::Attempted) => !self.resend_unknown,
            // Definitely not delivered: taken up again.
            Some(OutcomeClass::Retryable | OutcomeClass::Skipped) => false,
        }
    }
}

/// Reads a run's prior deliveries without writing anything (for `plan`).
pub(crate) fn read_only_prior(
    path: &Path,
    run_id: &str,
) -> Result<Option<Arc<dyn PriorLookup>>, StateError> {
    let Some(store) = SqliteStore::open_read_only(path)? else {
        return Ok(None);
    };
    let prior = store.prior(run_id)?;
    if prior.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(ResumeFilter {
        prior,
        retry_failed: false,
        resend_unknown: false,
    })))
}

/// The delivery loop's journal, backed by the state store.
pub(crate) struct StateJournal {
    pub store: SqliteStore,
    pub run_id: String,
}

pub(crate) fn state_class(outcome: &delivery::Outcome) -> OutcomeClass {
    match outcome.class {
        delivery::OutcomeClass::Sent => OutcomeClass::Sent,
        delivery::OutcomeClass::Rejected => OutcomeClass::Rejected,
        delivery::OutcomeClass::Unknown => OutcomeClass::Unknown,
        // Never requested: still pending, taken up by the next run.
        delivery::OutcomeClass::NotSent if outcome.attempts == 0 => OutcomeClass::Skipped,
        // Not delivered: the next run takes them up again.
        delivery::OutcomeClass::Failed | delivery::OutcomeClass::NotSent => OutcomeClass::Retryable,
    }
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
                class: state_class(&o.outcome),
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
