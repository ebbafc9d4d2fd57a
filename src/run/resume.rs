//! Reopening a run: what it sends must not have changed, requests a crash left in
//! flight become `unknown`, and what the run already settled is not sent again.

use std::sync::Arc;

use super::RunError;
use crate::campaign::{Campaign, Content};
use crate::plan::PriorLookup;
use crate::render::RunInfo;
use crate::state::{
    Begin, Fingerprint, OutcomeClass, RunStart, SortedKeys, StateError, StateStore,
};

/// How a resumed run treats what it already recorded (SPEC section 7).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumePolicy {
    /// `--accept-changes`: resume although the message changed since the run started.
    pub accept_changes: bool,
    /// `--retry-failed`: send again to recipients the platform rejected.
    pub retry_failed: bool,
    /// `--resend-unknown`: send again to recipients that may have received it.
    pub resend_unknown: bool,
}

/// What a run sends, in canonical text per part; resuming after a change is refused.
pub fn fingerprint(campaign: &Campaign) -> Fingerprint {
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

/// The run's start record.
pub(crate) fn run_start(campaign: &Campaign, run_info: &RunInfo) -> RunStart {
    RunStart {
        run_id: run_info.id.clone(),
        campaign: campaign.name.clone(),
        occurrence: run_info.occurrence.clone(),
        fingerprint: fingerprint(campaign),
    }
}

impl ResumePolicy {
    /// The classes of recipients a resume does not send to again.
    pub fn skipped_classes(self) -> Vec<OutcomeClass> {
        OutcomeClass::ALL
            .into_iter()
            .filter(|class| match class {
                OutcomeClass::Sent => true,
                OutcomeClass::Rejected => !self.retry_failed,
                OutcomeClass::Unknown | OutcomeClass::Attempted => !self.resend_unknown,
                // Definitely not delivered: taken up again.
                OutcomeClass::Retryable | OutcomeClass::Skipped => false,
            })
            .collect()
    }
}

/// Resume decisions from what this run already recorded: the recipients it does
/// not send to again, as sorted key hashes (16 bytes each, whatever the store holds).
pub struct ResumeFilter {
    handled: SortedKeys,
}

impl ResumeFilter {
    /// The filter of run `run_id` under `policy`, read from `store`.
    pub fn load(
        store: &dyn StateStore,
        run_id: &str,
        policy: ResumePolicy,
    ) -> Result<ResumeFilter, StateError> {
        Ok(ResumeFilter {
            handled: store.handled(run_id, &policy.skipped_classes())?,
        })
    }

    /// Recipients skipped.
    pub fn len(&self) -> usize {
        self.handled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handled.is_empty()
    }
}

impl PriorLookup for ResumeFilter {
    fn already_handled(&self, hash: u128) -> bool {
        self.handled.contains(hash)
    }
}

/// What reopening found.
pub(crate) struct Resumed {
    pub filter: Arc<dyn PriorLookup>,
    /// Recipients left in flight by an earlier attempt, now `unknown`.
    pub settled_in_flight: u64,
    /// The run as this invocation found it, when it existed.
    pub previous: Option<Box<crate::state::RunSummary>>,
}

/// Opens (or reopens) the run in the store: refuses a changed message unless
/// `accept_changes`, settles requests left in flight by a crash, and returns the
/// filter built from what the run already recorded. Call it holding the run's lock.
pub(crate) fn resume(
    store: &mut dyn StateStore,
    campaign: &Campaign,
    run_info: &RunInfo,
    policy: ResumePolicy,
) -> Result<Resumed, RunError> {
    let location = store.location();
    let at = |e| RunError::state(location.clone(), e);
    let start = run_start(campaign, run_info);
    let previous = match store.begin_run(&start).map_err(&at)? {
        Begin::New => None,
        Begin::Resumed { changed, previous } if changed.is_empty() => Some(previous),
        Begin::Resumed { changed, previous } => {
            if !policy.accept_changes {
                return Err(RunError::Changed {
                    run_id: run_info.id.clone(),
                    changes: changed,
                });
            }
            store
                .accept_fingerprint(&run_info.id, &start.fingerprint)
                .map_err(&at)?;
            Some(previous)
        }
    };
    let settled_in_flight = store.settle_in_flight(&run_info.id).map_err(&at)?;
    let filter = ResumeFilter::load(store, &run_info.id, policy).map_err(&at)?;
    Ok(Resumed {
        filter: Arc::new(filter),
        settled_in_flight,
        previous,
    })
}
