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
//!
//! Threads: a second thread reads the rows and takes them through dedupe (in
//! order, a few batches ahead); the iterator's own thread renders the requests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SendError, Sender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::audience::{AudienceReader, Origin, RowEvent};
use crate::campaign::Campaign;
use crate::render::{Context, Invalid, RenderedRequest, Renderer, RunInfo};
use crate::state::{key_hash, KeyHashBuild, KeySet};

pub mod explain;
mod occurrence;
mod pass;
pub mod saved;

pub use occurrence::{due_at, run_info};
pub use pass::{plan_errors, plan_pass, plan_pass_with, PassInputs, PlanPass};

/// The counts of a plan, named as SPEC section 3 names them.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PlanCounts {
    pub read: u64,
    pub filtered: u64,
    pub suppressed: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub already_sent: u64,
    /// Recipients to send that this invocation leaves for a later one (`run --only`,
    /// `run --limit`); not in `to_send`.
    pub held_out: u64,
    pub to_send: u64,
}

impl PlanCounts {
    /// The recipients that reached rendering: to send, held out, already sent and
    /// invalid. Shares of "the audience" (max_invalid, run summaries, `status`) are of this.
    pub fn rendered(&self) -> u64 {
        self.invalid + self.to_send + self.held_out + self.already_sent
    }

    /// Each count with the name people read, in pipeline order.
    pub fn named(&self) -> [(&'static str, u64); 8] {
        [
            ("read", self.read),
            ("filtered", self.filtered),
            ("suppressed", self.suppressed),
            ("duplicates", self.duplicates),
            ("invalid", self.invalid),
            ("already sent", self.already_sent),
            ("held out", self.held_out),
            ("to send", self.to_send),
        ]
    }
}

/// Which of the recipients to send one invocation takes (`run --only`, `run
/// --limit`); the others are held out and stay pending. Applied last, to the
/// recipients to send in audience order, so the plan and the sending pass, which
/// see those in the same order, take the same ones.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these keys.
    pub only: Option<Arc<std::collections::HashSet<String>>>,
    /// At most this many.
    pub limit: Option<u64>,
}

impl Selection {
    pub fn is_everyone(&self) -> bool {
        self.only.is_none() && self.limit.is_none()
    }
}

/// A selection as one pass applies it.
#[derive(Debug, Default)]
struct Selecting {
    selection: Selection,
    taken: u64,
    /// Keys of `only` met among the recipients to send.
    found: std::collections::HashSet<String>,
}

impl Selecting {
    fn takes(&mut self, key: &str) -> bool {
        if let Some(only) = &self.selection.only {
            if !only.contains(key) {
                return false;
            }
            self.found.insert(key.to_owned());
        }
        if self
            .selection
            .limit
            .is_some_and(|limit| self.taken >= limit)
        {
            return false;
        }
        self.taken += 1;
        true
    }
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
    /// Handled by an earlier attempt of this run (not rendered again, unless the
    /// campaign's one-time notification tokens must all be seen).
    AlreadySent,
    /// To send, but not by this invocation (its [`Selection`]).
    HeldOut,
    Invalid(Origin, Invalid),
}

/// Decides, from state, whether a recipient was already handled by this run.
pub trait PriorLookup: Send + Sync {
    /// `hash` is the recipient key's [`key_hash`].
    fn already_handled(&self, hash: u128) -> bool;
}

/// Builds the suppression set from the campaign's `exclude` sources. Any row
/// that cannot be keyed is an error for the whole plan: a suppression list
/// that is read only in part could message someone who opted out.
pub fn suppression_set(campaign: &Campaign, renderer: &Renderer) -> Result<KeySet, Vec<PlanError>> {
    let mut set = KeySet::new();
    let mut errors = Vec::new();
    for event in AudienceReader::new(&campaign.audience.exclude) {
        match event {
            RowEvent::Row(row) => {
                let ctx = renderer.context(&row);
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

/// What staging makes of one audience event: everything up to dedupe, which
/// needs the rows in order but not their requests.
enum Staged {
    Broken(Origin, String),
    SourceFailed(Arc<Path>, String),
    /// The told rows carry their place and key only when the pipeline explains.
    Filtered(Option<Told>),
    /// `where` or the key failed.
    Unkeyed(Origin, Invalid),
    Suppressed(Option<Told>),
    Duplicate(Option<Told>),
    /// Already handled by this run, judged before dedupe (the sending pass only).
    Handled,
    /// A key's first occurrence: its request is rendered next.
    Keyed(Origin, Keyed),
}

/// Where a row is and its key (when it could be rendered): what `plan --key`
/// and `plan --list` say about rows the plan passes over.
#[derive(Debug, Clone)]
pub struct Told {
    pub origin: Origin,
    pub key: Option<String>,
}

/// A row's context and key, as staging built them.
struct Keyed {
    ctx: Context,
    key: String,
    hash: u128,
}

/// Staging's state: what it takes to classify rows up to dedupe.
struct Stage {
    renderer: Arc<Renderer>,
    suppressed: Arc<KeySet>,
    seen: KeySet,
    /// The sending pass: recipients already handled are passed over before dedupe,
    /// so that its `seen` holds only the keys still to send (a resume of millions
    /// then keeps two sets of the handled ones at no point).
    handled_first: Option<Arc<dyn PriorLookup>>,
    /// Set while the staging thread runs ahead of the pipeline's: it then
    /// also renders the requests' engine templates (see `Stager::new`).
    ahead: Arc<AtomicBool>,
    /// Rows passed over keep their place and key ([`Pipeline::explaining`]).
    explain: bool,
}

impl Stage {
    fn stage(&mut self, event: RowEvent) -> Staged {
        let row = match event {
            RowEvent::Row(row) => row,
            RowEvent::Broken { origin, reason } => return Staged::Broken(origin, reason),
            RowEvent::SourceFailed { file, reason } => return Staged::SourceFailed(file, reason),
        };
        let mut ctx = self.renderer.context(&row);
        match self.renderer.passes_where(&ctx) {
            Ok(true) => {}
            Ok(false) => {
                return Staged::Filtered(self.explain.then(|| Told {
                    key: self.renderer.key(&ctx).ok(),
                    origin: row.origin,
                }))
            }
            Err(e) => return Staged::Unkeyed(row.origin, e),
        }
        let key = match self.renderer.key(&ctx) {
            Ok(key) => key,
            Err(e) => return Staged::Unkeyed(row.origin, e),
        };
        let hash = key_hash(&key);
        let told = |origin: Origin, key: String| Told {
            origin,
            key: Some(key),
        };
        if self.suppressed.contains(hash) {
            return Staged::Suppressed(self.explain.then(|| told(row.origin, key)));
        }
        if let Some(prior) = &self.handled_first {
            if prior.already_handled(hash) {
                return Staged::Handled;
            }
        }
        if !self.seen.insert(hash) {
            return Staged::Duplicate(self.explain.then(|| told(row.origin, key)));
        }
        if self.ahead.load(Ordering::Relaxed) {
            self.renderer.prerender(&mut ctx);
        }
        Staged::Keyed(row.origin, Keyed { ctx, key, hash })
    }
}

/// Rows staged per message between the threads: enough to make the hand-over
/// cost nothing per row, few enough to keep memory flat.
const BATCH: usize = 256;
/// Batches in flight: lets either thread run ahead a little.
const BATCHES_IN_FLIGHT: usize = 4;

/// Where staged rows come from.
enum Stager {
    /// A thread reads and stages rows while this one renders requests: the
    /// two halves cost about the same, so two cores nearly halve the time.
    Thread {
        batches: Option<Receiver<Vec<Staged>>>,
        ahead: Arc<AtomicBool>,
        /// The batch being handed out, last row first.
        current: Vec<Staged>,
        /// Rows done with, on their way back to the thread that made them.
        dead: Vec<Keyed>,
        graveyard: Sender<Vec<Keyed>>,
        worker: Option<JoinHandle<()>>,
    },
    /// The same work on this thread, should no thread be available.
    Inline(AudienceReader, Stage),
}

impl Stager {
    fn new(reader: AudienceReader, stage: Stage) -> Stager {
        let (tx, rx) = sync_channel::<Vec<Staged>>(BATCHES_IN_FLIGHT);
        // Which thread does more depends on the campaign and on the caller
        // (writing `--requests` adds to this side): the staging thread takes
        // on the requests' template rendering whenever it finds the channel
        // full, and drops it whenever this side finds the channel empty.
        let ahead = stage.ahead.clone();
        // With glibc's malloc, a thread freeing what another allocated takes
        // the other's arena lock, and the two threads then contend on every
        // row: sending rows back to be freed where they were built keeps each
        // thread on its own arena (without it, a third more CPU).
        let (graveyard, buried) = channel::<Vec<Keyed>>();
        // Staging is handed over once the thread runs, so that it stays here
        // should the thread not start.
        let (hand_over, handed) = sync_channel::<(AudienceReader, Stage)>(1);
        let spawned = std::thread::Builder::new()
            .name("audience".into())
            .spawn(move || {
                let Ok((reader, mut stage)) = handed.recv() else {
                    return;
                };
                let mut batch = Vec::with_capacity(BATCH);
                for event in reader {
                    batch.push(stage.stage(event));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        let sent = match tx.try_send(full) {
                            Ok(()) => Ok(()),
                            Err(TrySendError::Full(full)) => {
                                stage.ahead.store(true, Ordering::Relaxed);
                                tx.send(full).map_err(drop)
                            }
                            Err(TrySendError::Disconnected(_)) => Err(()),
                        };
                        if sent.is_err() {
                            // The pipeline was dropped: nobody wants the rest.
                            return;
                        }
                        buried.try_iter().for_each(drop);
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
            });
        let worker = match spawned {
            Ok(worker) => worker,
            Err(_) => return Stager::Inline(reader, stage),
        };
        match hand_over.send((reader, stage)) {
            Ok(()) => Stager::Thread {
                batches: Some(rx),
                ahead,
                current: Vec::new(),
                dead: Vec::with_capacity(BATCH),
                graveyard,
                worker: Some(worker),
            },
            Err(SendError((reader, stage))) => Stager::Inline(reader, stage),
        }
    }

    fn next(&mut self) -> Option<Staged> {
        match self {
            Stager::Inline(reader, stage) => reader.next().map(|event| stage.stage(event)),
            Stager::Thread {
                batches,
                ahead,
                current,
                worker,
                ..
            } => loop {
                if let Some(staged) = current.pop() {
                    return Some(staged);
                }
                let rx = batches.as_ref()?;
                let batch = rx.try_recv().or_else(|_| {
                    ahead.store(false, Ordering::Relaxed);
                    rx.recv()
                });
                match batch {
                    Ok(mut batch) => {
                        batch.reverse();
                        *current = batch;
                    }
                    Err(_) => {
                        // The thread is done. Had it panicked, the rows it did
                        // not stage would silently go missing from the plan:
                        // panic here instead, as one thread would have.
                        *batches = None;
                        if let Some(Err(panic)) = worker.take().map(JoinHandle::join) {
                            std::panic::resume_unwind(panic);
                        }
                        return None;
                    }
                }
            },
        }
    }

    /// Lets go of a row once its request is rendered.
    fn bury(&mut self, row: Keyed) {
        if let Stager::Thread {
            dead, graveyard, ..
        } = self
        {
            dead.push(row);
            if dead.len() == BATCH {
                let full = std::mem::replace(dead, Vec::with_capacity(BATCH));
                // Once the thread has finished, this one drops them itself.
                let _ = graveyard.send(full);
            }
        }
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        if let Stager::Thread {
            batches, worker, ..
        } = self
        {
            // Hanging up first makes the thread's next send fail, so it stops.
            *batches = None;
            if let Some(worker) = worker.take() {
                let _ = worker.join();
            }
        }
    }
}

/// The pipeline as an iterator of [`Planned`] rows. Counts accumulate as it goes.
pub struct Pipeline {
    renderer: Arc<Renderer>,
    stager: Stager,
    otn_seen: HashMap<u128, Origin, KeyHashBuild>,
    /// Recipients already handled, when staging did not pass them over already.
    prior: Option<Arc<dyn PriorLookup>>,
    pub counts: PlanCounts,
    pub invalid_by_code: BTreeMap<&'static str, u64>,
    /// A source that could not be read at all: the plan is incomplete.
    pub source_failures: Vec<PlanError>,
    selecting: Option<Selecting>,
    digest: Option<RequestDigest>,
    /// Explaining: the place and key of the row just classified.
    told: Option<Told>,
    explain: bool,
}

/// What a pipeline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Plan,
    Send,
    Explain,
}

/// SHA-256 over every request the campaign renders for this run, whoever it goes
/// to and whether or not it was sent already: what a saved plan binds (see
/// [`Pipeline::digesting`]).
struct RequestDigest {
    hasher: sha2::Sha256,
    bot: crate::api::wire::BotEndpoint,
    /// Each request's own [`request_hash`]: what a run bound to the plan may send.
    each: KeySet,
}

/// The parts of a request a saved plan binds: its key, its path and query, and
/// its body, each length-prefixed (no two requests hash alike by moving a boundary).
fn request_parts(
    request: &RenderedRequest,
    bot: &crate::api::wire::BotEndpoint,
    mut take: impl FnMut(&[u8]),
) {
    for part in [
        request.key.as_bytes(),
        request.wire.path_and_query(bot, None).as_bytes(),
        &request.wire.body(),
    ] {
        take(&(part.len() as u64).to_le_bytes());
        take(part);
    }
}

/// One request's SHA-256 over [`request_parts`], cut to 128 bits: a crafted row
/// cannot be made to match a reviewed request.
pub fn request_hash(request: &RenderedRequest, bot: &crate::api::wire::BotEndpoint) -> u128 {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::default();
    request_parts(request, bot, |bytes| hasher.update(bytes));
    first_128_bits(hasher)
}

fn first_128_bits(hasher: sha2::Sha256) -> u128 {
    use sha2::Digest;
    let full = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&full[..16]);
    u128::from_le_bytes(first)
}

impl Pipeline {
    pub fn new(
        campaign: &Campaign,
        renderer: Arc<Renderer>,
        suppressed: Arc<KeySet>,
        prior: Option<Arc<dyn PriorLookup>>,
    ) -> Self {
        Self::build(campaign, renderer, suppressed, prior, None, Purpose::Plan)
    }

    /// The plan's pipeline, telling where each row is and its key as it goes
    /// ([`Pipeline::told`]): for `plan --key` and `plan --list`. Rows passed over
    /// by `where` have their key rendered too.
    pub fn explaining(
        campaign: &Campaign,
        renderer: Arc<Renderer>,
        suppressed: Arc<KeySet>,
        prior: Option<Arc<dyn PriorLookup>>,
    ) -> Self {
        Self::build(
            campaign,
            renderer,
            suppressed,
            prior,
            None,
            Purpose::Explain,
        )
    }

    /// Explaining: the place and key of the row the last item was about (for a
    /// request to send, its own origin and key say it).
    pub fn told(&self) -> Option<&Told> {
        self.told.as_ref()
    }

    /// The pipeline that feeds the senders: the same decisions for every row to send
    /// as [`Pipeline::new`]'s, but recipients already handled are passed over before
    /// dedupe and never rendered, so a resume reaches its first new recipient
    /// quickly and without a second set of every handled key. Its counts other than
    /// `read` and `to_send` are not the plan's.
    pub fn for_sending(
        campaign: &Campaign,
        renderer: Arc<Renderer>,
        suppressed: Arc<KeySet>,
        prior: Option<Arc<dyn PriorLookup>>,
    ) -> Self {
        Self::build(campaign, renderer, suppressed, prior, None, Purpose::Send)
    }

    /// `inline`: stage on this thread, rendering ahead or not (for tests: the
    /// other ways the rows can go must give the same plan).
    fn build(
        campaign: &Campaign,
        renderer: Arc<Renderer>,
        suppressed: Arc<KeySet>,
        prior: Option<Arc<dyn PriorLookup>>,
        inline: Option<bool>,
        purpose: Purpose,
    ) -> Self {
        let sending = purpose == Purpose::Send;
        let explain = purpose == Purpose::Explain;
        // One-time notification tokens are checked for reuse across every row
        // rendered: a campaign with them renders handled rows too.
        let (handled_first, prior) = if sending && !renderer.has_otn() {
            (prior, None)
        } else {
            (None, prior)
        };
        let stage = Stage {
            renderer: renderer.clone(),
            suppressed,
            seen: KeySet::new(),
            handled_first,
            ahead: Arc::new(AtomicBool::new(inline.unwrap_or(false))),
            explain,
        };
        let reader = AudienceReader::new(&campaign.audience.sources);
        let stager = match inline {
            None => Stager::new(reader, stage),
            Some(_) => Stager::Inline(reader, stage),
        };
        Pipeline {
            renderer,
            stager,
            otn_seen: HashMap::default(),
            prior,
            counts: PlanCounts::default(),
            invalid_by_code: BTreeMap::new(),
            source_failures: Vec::new(),
            selecting: None,
            digest: None,
            told: None,
            explain,
        }
    }

    /// Also digests every request the campaign renders for the run, in audience
    /// order: to send, held out and already sent alike (already sent ones are
    /// rendered again for it), so the digest depends on the files, the run and the
    /// templates, not on what state says was sent or what `--only` chose. Each
    /// request counts as its key, its path and query, and its body.
    pub fn digesting(mut self, campaign: &Campaign) -> Self {
        self.digest = Some(RequestDigest {
            hasher: sha2::Sha256::default(),
            bot: crate::api::wire::BotEndpoint {
                id: campaign.bot.id.clone(),
                tag_style: campaign.bot.tag_style,
            },
            each: KeySet::new(),
        });
        self
    }

    /// `sha256:HEX` of the requests, once the pipeline has ended (with
    /// [`Pipeline::digesting`]).
    pub fn requests_digest(&self) -> Option<String> {
        use sha2::Digest;
        let digest = self.digest.as_ref()?;
        let bytes = digest.hasher.clone().finalize();
        Some(format!("sha256:{}", crate::human::hex(&bytes)))
    }

    /// The [`request_hash`] of every request digested, once the pipeline has ended.
    pub fn take_request_hashes(&mut self) -> Option<KeySet> {
        self.digest
            .as_mut()
            .map(|d| std::mem::replace(&mut d.each, KeySet::new()))
    }

    /// Takes only the recipients `selection` takes; the rest are [`Planned::HeldOut`].
    pub fn select(mut self, selection: Selection) -> Self {
        if !selection.is_everyone() {
            self.selecting = Some(Selecting {
                selection,
                ..Selecting::default()
            });
        }
        self
    }

    /// The keys `--only` named that were not among the recipients to send (absent,
    /// filtered, suppressed, a duplicate, invalid or already sent), sorted; complete
    /// once the pipeline has ended.
    pub fn only_not_found(&self) -> Vec<String> {
        let Some(selecting) = &self.selecting else {
            return Vec::new();
        };
        let Some(only) = &selecting.selection.only else {
            return Vec::new();
        };
        let mut missing: Vec<String> = only
            .iter()
            .filter(|k| !selecting.found.contains(*k))
            .cloned()
            .collect();
        missing.sort();
        missing
    }

    fn tell(&mut self, origin: &Origin, key: Option<&str>) {
        if self.explain {
            self.told = Some(Told {
                origin: origin.clone(),
                key: key.map(str::to_owned),
            });
        }
    }

    fn invalid(&mut self, origin: Origin, reason: Invalid) -> Planned {
        self.counts.invalid += 1;
        *self.invalid_by_code.entry(reason.code()).or_default() += 1;
        Planned::Invalid(origin, reason)
    }

    fn classify(&mut self, staged: Staged) -> Option<Planned> {
        let (origin, row) = match staged {
            Staged::SourceFailed(file, reason) => {
                self.source_failures.push(PlanError {
                    file: file.to_path_buf(),
                    row: None,
                    message: format!("cannot read the audience file: {reason}"),
                });
                return None;
            }
            Staged::Broken(origin, reason) => {
                self.counts.read += 1;
                self.tell(&origin, None);
                return Some(self.invalid(origin, Invalid::Broken(reason)));
            }
            Staged::Filtered(told) => {
                self.counts.read += 1;
                self.counts.filtered += 1;
                self.told = told;
                return Some(Planned::Filtered);
            }
            Staged::Unkeyed(origin, e) => {
                self.counts.read += 1;
                self.tell(&origin, None);
                return Some(self.invalid(origin, e));
            }
            Staged::Suppressed(told) => {
                self.counts.read += 1;
                self.counts.suppressed += 1;
                self.told = told;
                return Some(Planned::Suppressed);
            }
            Staged::Duplicate(told) => {
                self.counts.read += 1;
                self.counts.duplicates += 1;
                self.told = told;
                return Some(Planned::Duplicate);
            }
            Staged::Handled => {
                self.counts.read += 1;
                self.counts.already_sent += 1;
                return Some(Planned::AlreadySent);
            }
            Staged::Keyed(origin, row) => {
                self.counts.read += 1;
                self.tell(&origin, Some(&row.key));
                (origin, row)
            }
        };
        let handled = self
            .prior
            .as_ref()
            .is_some_and(|prior| prior.already_handled(row.hash));
        if handled && !self.renderer.has_otn() && self.digest.is_none() {
            self.stager.bury(row);
            self.counts.already_sent += 1;
            return Some(Planned::AlreadySent);
        }
        // A copy made here, so that the staged key can go back to be freed
        // where it was allocated (see `Stager::new`).
        let key = row.key.as_str().to_owned();
        let request = self.renderer.request(&row.ctx, key, origin.clone());
        self.stager.bury(row);
        let request = match request {
            Ok(r) => r,
            Err(e) => return Some(self.invalid(origin, e)),
        };
        if let Some(token) = Renderer::otn_token(&request.wire) {
            // A token is no recipient key and is never stored: hashed as it is.
            let token_hash = xxh3_128(token.as_bytes());
            if let Some(first) = self.otn_seen.get(&token_hash) {
                let first = first.to_string();
                return Some(self.invalid(origin, Invalid::OtnReused { first }));
            }
            self.otn_seen.insert(token_hash, origin);
        }
        if let Some(digest) = &mut self.digest {
            use sha2::Digest;
            // The request's parts are made once, for the plan's digest and its own hash.
            let (all, mut one) = (&mut digest.hasher, sha2::Sha256::default());
            request_parts(&request, &digest.bot, |bytes| {
                all.update(bytes);
                one.update(bytes);
            });
            digest.each.insert(first_128_bits(one));
        }
        if handled {
            self.counts.already_sent += 1;
            return Some(Planned::AlreadySent);
        }
        if let Some(selecting) = &mut self.selecting {
            if !selecting.takes(&request.key) {
                self.counts.held_out += 1;
                return Some(Planned::HeldOut);
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
            let staged = self.stager.next()?;
            if let Some(planned) = self.classify(staged) {
                return Some(planned);
            }
        }
    }
}

/// The invalid rows among the first `rows` of the audience (no suppression
/// lists, no state): what `validate` can learn from the data before anything
/// is sent, such as a template that already runs out of its work budget.
pub fn probe(campaign: &Campaign, rows: usize) -> Vec<(Origin, Invalid)> {
    let run = preview_run(campaign, chrono::Utc::now()).run;
    let Ok(renderer) = Renderer::new(campaign, &run) else {
        return Vec::new();
    };
    Pipeline::new(campaign, Arc::new(renderer), Arc::new(KeySet::new()), None)
        .take(rows)
        .filter_map(|planned| match planned {
            Planned::Invalid(origin, reason) => Some((origin, reason)),
            _ => None,
        })
        .collect()
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
/// scheduled one, the occurrence due at `at`, else the next one. Without state: every
/// occurrence reads as not yet sent (see [`preview_run_given`]).
pub fn preview_run(campaign: &Campaign, at: chrono::DateTime<chrono::Utc>) -> Preview {
    preview_run_given(campaign, at, None)
}

/// [`preview_run`], told by the store which occurrences were sent already.
pub fn preview_run_given(
    campaign: &Campaign,
    at: chrono::DateTime<chrono::Utc>,
    store: Option<&dyn crate::state::StateStore>,
) -> Preview {
    use crate::schedule::Due;
    let (occurrence, starts, note) = match (&campaign.schedule, due_at(campaign, at, store)) {
        (Some(schedule), Some(due)) => match due {
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
        _ => (None, at, None),
    };
    Preview {
        run: run_info(campaign, occurrence.as_ref(), starts),
        starts,
        schedule_note: note,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::campaign::Campaign;

    /// A campaign loaded from `yaml`, beside `files`, in a temporary directory
    /// that lives as long as the returned guard.
    pub(crate) fn campaign(yaml: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Campaign) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).expect("write");
        let project = crate::campaign::project_for(&path, None).expect("project");
        let (campaign, diagnostics) = crate::campaign::load_campaign(&path, &project);
        let campaign = campaign.unwrap_or_else(|| panic!("{diagnostics:#?}"));
        (dir, campaign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMPAIGN: &str = "version: 1
name: t
bot: { id: \"b1\", token_env: T, api: v2 }
audience:
  from:
    - jsonl: a.jsonl
  where: \"n >= 2\"
  exclude:
    - jsonl: s.jsonl
  key: \"{{ id }}\"
recipient:
  customer_id: \"{{ id }}\"
  customer_phone: \"{{ phone }}\"
message:
  tag: ACCOUNT_UPDATE
  text: \"Chào {{ name }}{% if vip %} (VIP){% endif %}\"
";

    /// Rows of every kind, over several batches.
    fn audience() -> String {
        let mut out = String::new();
        for i in 0..3000u32 {
            let line = if i % 31 == 0 {
                "not json".to_owned()
            } else if i % 7 == 0 {
                format!("{{\"id\":\"C{i}\",\"name\":\"An\",\"phone\":\"09{i}\"}}")
            } else {
                let n = if i % 11 == 0 { 1 } else { i };
                let id = match i {
                    _ if i % 19 == 0 => String::new(),
                    _ if i % 13 == 0 => format!("C{}", i / 2),
                    _ => format!("C{i}"),
                };
                let name = if i % 23 == 0 {
                    String::new()
                } else {
                    format!(",\"name\":\"Bình {i}\"")
                };
                let phone = if i % 3 == 0 {
                    String::new()
                } else {
                    format!("09{i}")
                };
                format!(
                    "{{\"id\":\"{id}\",\"n\":{n},\"phone\":\"{phone}\",\"vip\":{}{name}}}",
                    i % 5 == 0
                )
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn plan(campaign: &Campaign, inline: Option<bool>) -> (Vec<String>, PlanCounts, String) {
        let run = RunInfo {
            id: "t".into(),
            occurrence: None,
            now: "2026-11-24T00:00:00Z".into(),
        };
        let renderer = Arc::new(Renderer::new(campaign, &run).expect("compiles"));
        let suppressed = Arc::new(suppression_set(campaign, &renderer).expect("suppression"));
        let mut pipeline =
            Pipeline::build(campaign, renderer, suppressed, None, inline, Purpose::Plan);
        let rows = pipeline.by_ref().map(|p| format!("{p:?}")).collect();
        (
            rows,
            pipeline.counts,
            format!("{:?}", pipeline.invalid_by_code),
        )
    }

    /// The test campaign over [`audience`], no one suppressed, and its renderer.
    fn campaign_without_suppression() -> (tempfile::TempDir, Campaign, Arc<Renderer>) {
        let (dir, campaign) =
            testing::campaign(CAMPAIGN, &[("a.jsonl", &audience()), ("s.jsonl", "")]);
        let run = RunInfo {
            id: "t".into(),
            occurrence: None,
            now: "2026-11-24T00:00:00Z".into(),
        };
        let renderer = Arc::new(Renderer::new(&campaign, &run).expect("compiles"));
        (dir, campaign, renderer)
    }

    /// Every third key of the audience, as handled by an earlier attempt.
    struct EveryThird;

    impl PriorLookup for EveryThird {
        fn already_handled(&self, hash: u128) -> bool {
            hash.is_multiple_of(3)
        }
    }

    #[test]
    fn the_sending_pass_sends_exactly_what_the_plan_counts_to_send() {
        let (_dir, campaign, renderer) = campaign_without_suppression();
        let sends = |mut pipeline: Pipeline| {
            let sent: Vec<String> = pipeline
                .by_ref()
                .filter_map(|p| match p {
                    Planned::Send(r) => Some(format!("{}@{}: {:?}", r.key, r.origin, r.wire)),
                    _ => None,
                })
                .collect();
            (sent, pipeline.counts)
        };
        let prior = || Some(Arc::new(EveryThird) as Arc<dyn PriorLookup>);
        let suppressed = Arc::new(KeySet::new());
        let (planned, plan_counts) = sends(Pipeline::new(
            &campaign,
            renderer.clone(),
            suppressed.clone(),
            prior(),
        ));
        let (sending, send_counts) = sends(Pipeline::for_sending(
            &campaign,
            renderer,
            suppressed,
            prior(),
        ));
        // Duplicates of handled keys exist in this audience; both passes skip them.
        assert!(plan_counts.already_sent > 0 && plan_counts.duplicates > 0);
        assert_eq!(sending, planned);
        assert_eq!(send_counts.read, plan_counts.read);
        assert_eq!(send_counts.to_send, plan_counts.to_send);
    }

    #[test]
    fn every_way_of_staging_gives_the_same_plan() {
        let suppression: String = (0..3000)
            .step_by(17)
            .map(|i| format!("{{\"id\":\"C{i}\"}}\n"))
            .collect();
        let (_dir, campaign) = testing::campaign(
            CAMPAIGN,
            &[("a.jsonl", &audience()), ("s.jsonl", &suppression)],
        );
        let threaded = plan(&campaign, None);
        let inline = plan(&campaign, Some(false));
        let ahead = plan(&campaign, Some(true));
        let c = threaded.1;
        assert!(c.filtered > 0 && c.suppressed > 0 && c.duplicates > 0 && c.to_send > 0);
        for code in ["broken-row", "template-error", "empty-key"] {
            assert!(threaded.2.contains(code), "{}", threaded.2);
        }
        assert_eq!(threaded, inline);
        assert_eq!(threaded, ahead);
    }

    #[test]
    fn dropping_a_pipeline_part_way_stops_its_thread() {
        let (_dir, campaign, renderer) = campaign_without_suppression();
        let mut pipeline = Pipeline::new(&campaign, renderer, Arc::new(KeySet::new()), None);
        assert!(pipeline.next().is_some());
        // Returns only once the staging thread has stopped.
        drop(pipeline);
    }
}
