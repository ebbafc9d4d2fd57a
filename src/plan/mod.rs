//! The plan pipeline: audience rows → where → exclude → dedupe → render.
//!
//! `plan` and `run` share this code, so what a preview shows is what is sent.
//! Pipeline order and counts (SPEC section 3): every data row is `read`; a
//! broken row is `invalid`; then `where` false → `filtered`; then a key in a
//! suppression list → `suppressed`; then a key seen before → `duplicates`
//! (the first occurrence wins); then a render failure, no identifier, text over
//! the limit or a reused OTN token → `invalid`; the rest is `to_send`, minus
//! what state says this run already sent (`already_sent`).
//!
//! Memory: only 128-bit hashes of keys (dedupe, suppression, OTN tokens) are
//! kept, 16 bytes each plus the set's overhead; rows are streamed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::audience::{AudienceReader, Origin, RowEvent};
use crate::campaign::Campaign;
use crate::render::{Invalid, RenderedRequest, Renderer, RunInfo};

/// The counts of a plan, named as SPEC section 3 names them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub filtered: u64,
    pub suppressed: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub already_sent: u64,
    pub to_send: u64,
}

/// An invalid row, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidRow {
    pub file: PathBuf,
    pub row: u64,
    pub code: &'static str,
    pub reason: String,
}

/// A problem that makes the whole plan untrustworthy (not one row's problem).
#[derive(Debug, Clone)]
pub struct PlanError {
    pub file: PathBuf,
    pub row: Option<u64>,
    pub message: String,
}

/// What happened to one audience row.
#[derive(Debug)]
pub enum Planned {
    Send(RenderedRequest),
    Filtered,
    Suppressed,
    Duplicate,
    AlreadySent(RenderedRequest),
    Invalid(Origin, Invalid),
}

/// Decides, from state, whether a key was already handled by this run.
pub trait PriorLookup: Send + Sync {
    fn already_handled(&self, key: &str) -> bool;
}

pub fn key_hash(key: &str) -> u128 {
    xxh3_128(key.as_bytes())
}

/// Builds the suppression set from the campaign's `exclude` sources. Any row
/// that cannot be keyed is an error for the whole plan: a suppression list
/// that is read only in part could message someone who opted out.
pub fn suppression_set(
    campaign: &Campaign,
    renderer: &Renderer,
) -> Result<HashSet<u128>, Vec<PlanError>> {
    let mut set = HashSet::new();
    let mut errors = Vec::new();
    for event in AudienceReader::new(&campaign.audience.exclude) {
        match event {
            RowEvent::Row(row) => {
                let ctx = renderer.context(&row.fields);
                match renderer.key(&ctx) {
                    Ok(key) => {
                        set.insert(key_hash(&key));
                    }
                    Err(e) => errors.push(PlanError {
                        file: row.origin.file.to_path_buf(),
                        row: Some(row.origin.line),
                        message: format!("suppression row cannot be keyed: {e}"),
                    }),
                }
            }
            RowEvent::Broken { origin, reason } => errors.push(PlanError {
                file: origin.file.to_path_buf(),
                row: Some(origin.line),
                message: format!("broken suppression row: {reason}"),
            }),
            RowEvent::SourceFailed { file, reason } => errors.push(PlanError {
                file: file.to_path_buf(),
                row: None,
                message: format!("cannot read the suppression list: {reason}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// The pipeline as an iterator of [`Planned`] rows. Counts accumulate as it goes.
pub struct Pipeline {
    renderer: Arc<Renderer>,
    reader: AudienceReader,
    suppressed: HashSet<u128>,
    seen: HashSet<u128>,
    otn_seen: std::collections::HashMap<u128, Origin>,
    prior: Option<Arc<dyn PriorLookup>>,
    pub counts: Counts,
    pub invalid_by_code: BTreeMap<&'static str, u64>,
    /// A source that could not be read at all: the plan is incomplete.
    pub source_failures: Vec<PlanError>,
}

impl Pipeline {
    pub fn new(
        campaign: &Campaign,
        renderer: Arc<Renderer>,
        suppressed: HashSet<u128>,
        prior: Option<Arc<dyn PriorLookup>>,
    ) -> Self {
        Pipeline {
            renderer,
            reader: AudienceReader::new(&campaign.audience.sources),
            suppressed,
            seen: HashSet::new(),
            otn_seen: std::collections::HashMap::new(),
            prior,
            counts: Counts::default(),
            invalid_by_code: BTreeMap::new(),
            source_failures: Vec::new(),
        }
    }

    fn invalid(&mut self, origin: Origin, reason: Invalid) -> Planned {
        self.counts.invalid += 1;
        *self.invalid_by_code.entry(reason.code()).or_default() += 1;
        Planned::Invalid(origin, reason)
    }

    fn classify(&mut self, event: RowEvent) -> Option<Planned> {
        let row = match event {
            RowEvent::Row(row) => row,
            RowEvent::Broken { origin, reason } => {
                self.counts.read += 1;
                return Some(self.invalid(origin, Invalid::Broken(reason)));
            }
            RowEvent::SourceFailed { file, reason } => {
                self.source_failures.push(PlanError {
                    file: file.to_path_buf(),
                    row: None,
                    message: format!("cannot read the audience file: {reason}"),
                });
                return None;
            }
        };
        self.counts.read += 1;
        let ctx = self.renderer.context(&row.fields);
        match self.renderer.passes_where(&ctx) {
            Ok(true) => {}
            Ok(false) => {
                self.counts.filtered += 1;
                return Some(Planned::Filtered);
            }
            Err(e) => return Some(self.invalid(row.origin, e)),
        }
        let key = match self.renderer.key(&ctx) {
            Ok(k) => k,
            Err(e) => return Some(self.invalid(row.origin, e)),
        };
        let hash = key_hash(&key);
        if self.suppressed.contains(&hash) {
            self.counts.suppressed += 1;
            return Some(Planned::Suppressed);
        }
        if !self.seen.insert(hash) {
            self.counts.duplicates += 1;
            return Some(Planned::Duplicate);
        }
        let request = match self.renderer.request(&ctx, key, row.origin.clone()) {
            Ok(r) => r,
            Err(e) => return Some(self.invalid(row.origin, e)),
        };
        if let Some(token) = Renderer::otn_token(&request.wire) {
            let token_hash = key_hash(token);
            if let Some(first) = self.otn_seen.get(&token_hash) {
                let first = first.to_string();
                return Some(self.invalid(row.origin, Invalid::OtnReused { first }));
            }
            self.otn_seen.insert(token_hash, row.origin.clone());
        }
        if let Some(prior) = &self.prior {
            if prior.already_handled(&request.key) {
                self.counts.already_sent += 1;
                return Some(Planned::AlreadySent(request));
            }
        }
        self.counts.to_send += 1;
        Some(Planned::Send(request))
    }
}

impl Iterator for Pipeline {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        loop {
            let event = self.reader.next()?;
            if let Some(planned) = self.classify(event) {
                return Some(planned);
            }
        }
    }
}

/// Which run a plan previews, and from when sending would start.
#[derive(Debug, Clone)]
pub struct Preview {
    pub run: RunInfo,
    pub starts: chrono::DateTime<chrono::Utc>,
    /// For scheduled campaigns: what the schedule says at the plan's time.
    pub schedule_note: Option<String>,
}

/// The run id of a campaign's occurrence: `NAME` or `NAME@OCCURRENCE`.
pub fn run_id(campaign: &Campaign, occurrence: Option<&str>) -> String {
    match occurrence {
        Some(o) => format!("{}@{o}", campaign.name),
        None => campaign.name.clone(),
    }
}

/// The run a plan previews at `at`: an unscheduled campaign's one run; for a
/// scheduled one, the occurrence due at `at`, else the next one.
pub fn preview_run(campaign: &Campaign, at: chrono::DateTime<chrono::Utc>) -> Preview {
    use crate::schedule::Due;
    let tz = campaign
        .schedule
        .as_ref()
        .map(|s| s.timezone())
        .unwrap_or(chrono_tz::UTC);
    let (occurrence, starts, note) = match &campaign.schedule {
        None => (None, at, None),
        Some(schedule) => match schedule.due(at, |_| false) {
            Due::Due(o) => (
                Some(o.clone()),
                at,
                Some(format!(
                    "{}; occurrence {} is due",
                    schedule.describe(),
                    o.id()
                )),
            ),
            Due::Missed { next: Some(n), .. }
            | Due::Done { next: Some(n), .. }
            | Due::NotYet { next: Some(n) } => (
                Some(n.clone()),
                n.instant,
                Some(format!(
                    "{}; nothing due now, previewing the next occurrence {}",
                    schedule.describe(),
                    n.id()
                )),
            ),
            _ => (
                None,
                at,
                Some(format!("{}; no occurrence left", schedule.describe())),
            ),
        },
    };
    let occurrence_id = occurrence.as_ref().map(|o| o.id());
    let now = starts
        .with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Preview {
        run: RunInfo {
            id: run_id(campaign, occurrence_id.as_deref()),
            occurrence: occurrence_id,
            now,
        },
        starts,
        schedule_note: note,
    }
}
