//! The values the state store takes and returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The hash of a recipient key, the one every part uses: the store in
/// [`PriorDeliveries`], the plan for dedupe and suppression. xxh3-128 of the
/// key's UTF-8 bytes, so that a million keys cost 16 bytes each instead of a
/// `String` each.
///
/// The key is hashed as the store writes it, secrets scrubbed: the store
/// keeps only scrubbed key text and rebuilds these hashes from it on resume,
/// so a key that happens to hold a token still matches its stored record, and
/// keys the store cannot tell apart are one recipient to the plan too.
pub fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(crate::redact::scrub(key).as_bytes())
}

/// What is known about one recipient of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeClass {
    /// The request is (or was) in flight. After a crash it reads as `Unknown`
    /// (see [`crate::state::StateStore::settle_in_flight`]).
    Attempted,
    /// HTTP 2xx and `success: true`.
    Sent,
    /// Refused by the platform for this recipient; not retried unless `--retry-failed`.
    Rejected,
    /// Gave up after the configured retries (429, 5xx, connection refused): counts as failed.
    Retryable,
    /// The request may have been delivered (timeout or broken connection after it was
    /// written). Resent only with `--resend-unknown`.
    Unknown,
    /// Not delivered, and the run stopped before it was done with it (its request
    /// never left, or was answered with a failure worth retrying): still pending,
    /// taken up again by the next run.
    Skipped,
}

impl OutcomeClass {
    /// Every class, in a stable order (the order of [`Counts`]' fields).
    pub const ALL: [OutcomeClass; 6] = [
        OutcomeClass::Attempted,
        OutcomeClass::Sent,
        OutcomeClass::Rejected,
        OutcomeClass::Retryable,
        OutcomeClass::Unknown,
        OutcomeClass::Skipped,
    ];

    /// The kebab-case name, as stored and as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Attempted => "attempted",
            OutcomeClass::Sent => "sent",
            OutcomeClass::Rejected => "rejected",
            OutcomeClass::Retryable => "retryable",
            OutcomeClass::Unknown => "unknown",
            OutcomeClass::Skipped => "skipped",
        }
    }

    /// The word people read for it (`status`, run summaries): a `retryable` recipient
    /// "failed" (it is taken up again by the next run), a `skipped` one is "pending",
    /// and an `attempted` one "unknown": its request may have left, whether the run
    /// is still waiting for the answer or its process died.
    pub fn label(self) -> &'static str {
        match self {
            OutcomeClass::Attempted => "unknown",
            OutcomeClass::Sent => "sent",
            OutcomeClass::Rejected => "rejected",
            OutcomeClass::Retryable => "failed",
            OutcomeClass::Unknown => "unknown",
            OutcomeClass::Skipped => "pending",
        }
    }

    /// True for the classes that count as a failed delivery (`rejected`, `retryable`).
    pub fn is_failure(self) -> bool {
        matches!(self, OutcomeClass::Rejected | OutcomeClass::Retryable)
    }
}

impl fmt::Display for OutcomeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the known classes or statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct ParseNameError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for OutcomeClass {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutcomeClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseNameError {
                kind: "outcome class",
                value: s.to_owned(),
                expected: "attempted, sent, rejected, retryable, unknown, skipped",
            })
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Started and not finished (or its process died: the run's lock tells which).
    Running,
    /// Every recipient was handled.
    Completed,
    /// Stopped by the tool (bad token, breaker, `max_failures`); the rest is pending.
    Aborted,
    /// Stopped by Ctrl-C or SIGTERM; the next `run` resumes it.
    Interrupted,
    /// A scheduled occurrence that was not sent in time; never sent late.
    Missed,
}

impl RunStatus {
    /// Every status, in a stable order.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Aborted,
        RunStatus::Interrupted,
        RunStatus::Missed,
    ];

    /// The kebab-case name, as stored and as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Missed => "missed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseNameError {
                kind: "run status",
                value: s.to_owned(),
                expected: "running, completed, aborted, interrupted, missed",
            })
    }
}

/// What a run sends, reduced to comparable text: resuming a run whose message
/// changed is refused unless the user accepts the changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// xxh3-128 (32 lowercase hex digits) of the canonical encoding of `parts`.
    pub digest: String,
    /// Part name (`bot`, `api`, `message`, `tag`, `attributes`) → canonical text.
    pub parts: BTreeMap<String, String>,
}

/// The platform text of a recipient settled as `unknown` when its run ended with the
/// request in flight.
pub(super) const SETTLED_TEXT: &str =
    "no outcome recorded: the process stopped while the request was in flight";

impl Fingerprint {
    /// The parts as the stores keep them: JSON, with any secret scrubbed.
    pub(super) fn stored_parts(&self) -> String {
        // A map of strings always serializes.
        let json = serde_json::to_string(&self.parts).unwrap_or_default();
        crate::redact::scrub(&json).into_owned()
    }

    /// Computes the digest of `parts`. Each name and text is length-prefixed, so no
    /// two different maps share an encoding.
    pub fn new(parts: BTreeMap<String, String>) -> Fingerprint {
        let mut canonical = Vec::new();
        for (name, text) in &parts {
            for s in [name, text] {
                canonical.extend_from_slice(s.len().to_string().as_bytes());
                canonical.push(b':');
                canonical.extend_from_slice(s.as_bytes());
            }
            canonical.push(b'\n');
        }
        let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&canonical));
        Fingerprint { digest, parts }
    }

    /// The parts whose text differs between `self` (stored) and `new`; a part present
    /// on one side only shows as an empty text on the other.
    pub fn changes_to(&self, new: &Fingerprint) -> Vec<FingerprintChange> {
        let mut names: Vec<&String> = self.parts.keys().chain(new.parts.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let old = self.parts.get(name).map_or("", String::as_str);
                let now = new.parts.get(name).map_or("", String::as_str);
                (old != now || self.parts.contains_key(name) != new.parts.contains_key(name)).then(
                    || FingerprintChange {
                        part: name.clone(),
                        old: old.to_owned(),
                        new: now.to_owned(),
                    },
                )
            })
            .collect()
    }
}

/// One part of a fingerprint that differs from the stored run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintChange {
    /// The part's name, e.g. `message`.
    pub part: String,
    /// Its text when the run was started (or last accepted); empty if it had no such part.
    pub old: String,
    /// Its text now; empty if the part is gone.
    pub new: String,
}

/// What identifies a run when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// `NAME` or `NAME@OCCURRENCE`.
    pub run_id: String,
    /// The campaign's name.
    pub campaign: String,
    /// The occurrence (RFC 3339 in the campaign's zone) of a scheduled run.
    pub occurrence: Option<String>,
    /// What the run sends.
    pub fingerprint: Fingerprint,
}

/// The answer of [`crate::state::StateStore::begin_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The run did not exist; it is now recorded as running.
    New,
    /// The run existed. When `changed` is empty it is marked running again; otherwise it
    /// is left as it was until the caller accepts the changes
    /// ([`crate::state::StateStore::accept_fingerprint`]) or refuses to go on.
    Resumed {
        /// The run as it was found (status, counts) before this call.
        previous: Box<RunSummary>,
        /// Parts of the fingerprint that differ from the stored one.
        changed: Vec<FingerprintChange>,
    },
}

/// A recipient about to be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The recipient's audience `key`.
    pub key: String,
    /// Where the recipient came from (the audience file).
    pub source: String,
    /// Its row (line) in that source.
    pub row: u64,
}

/// How a recipient's delivery ended (for now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    /// The recipient's audience `key`.
    pub key: String,
    /// The outcome.
    pub class: OutcomeClass,
    /// HTTP requests made for this recipient since its attempt was recorded (1 + retries;
    /// 0 for `Skipped`). The stored count then covers every request across resumes.
    pub attempts: u32,
    /// The last HTTP status, if a response came back.
    pub status: Option<u16>,
    /// The platform's `result` text, or the error's description. Never a token.
    pub platform_text: Option<String>,
}

/// Number of recipients of a run in each class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// In flight (or a crashed process's in-flight requests not yet settled).
    pub attempted: u64,
    /// Delivered.
    pub sent: u64,
    /// Refused by the platform.
    pub rejected: u64,
    /// Gave up after retries.
    pub retryable: u64,
    /// May or may not have been delivered.
    pub unknown: u64,
    /// Taken up by a run that stopped before sending it: still pending.
    pub skipped: u64,
}

impl Counts {
    /// The count of one class.
    pub fn get(&self, class: OutcomeClass) -> u64 {
        match class {
            OutcomeClass::Attempted => self.attempted,
            OutcomeClass::Sent => self.sent,
            OutcomeClass::Rejected => self.rejected,
            OutcomeClass::Retryable => self.retryable,
            OutcomeClass::Unknown => self.unknown,
            OutcomeClass::Skipped => self.skipped,
        }
    }

    /// Adds `n` to one class.
    pub fn add(&mut self, class: OutcomeClass, n: u64) {
        let slot = match class {
            OutcomeClass::Attempted => &mut self.attempted,
            OutcomeClass::Sent => &mut self.sent,
            OutcomeClass::Rejected => &mut self.rejected,
            OutcomeClass::Retryable => &mut self.retryable,
            OutcomeClass::Unknown => &mut self.unknown,
            OutcomeClass::Skipped => &mut self.skipped,
        };
        *slot = slot.saturating_add(n);
    }

    /// Every recipient with a record.
    pub fn total(&self) -> u64 {
        OutcomeClass::ALL.iter().map(|c| self.get(*c)).sum()
    }

    /// Failed deliveries (`rejected` + `retryable`).
    pub fn failed(&self) -> u64 {
        self.rejected + self.retryable
    }
}

/// A run as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `NAME` or `NAME@OCCURRENCE`.
    pub run_id: String,
    /// The campaign's name.
    pub campaign: String,
    /// The occurrence of a scheduled run.
    pub occurrence: Option<String>,
    /// Where the run stands.
    pub status: RunStatus,
    /// When the run was first begun (or recorded as missed).
    pub started: DateTime<Utc>,
    /// When it last finished; `None` while running.
    pub finished: Option<DateTime<Utc>>,
    /// Recipients per class.
    pub counts: Counts,
    /// The stored fingerprint's digest.
    pub fingerprint_digest: String,
    /// Recipients the latest plan of this run counted (to send, already sent and
    /// invalid); `None` for runs recorded before this was kept, or never planned.
    pub audience: Option<u64>,
    /// Invalid recipients in the latest plan.
    pub invalid: Option<u64>,
}

/// One recipient's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// The recipient's audience `key`.
    pub key: String,
    /// The source it was last attempted from.
    pub source: String,
    /// Its row in that source.
    pub row: u64,
    /// Its current class.
    pub class: OutcomeClass,
    /// HTTP requests made for this recipient across every resume of the run (a request
    /// that was in flight when a process died counts as one).
    pub attempts: u32,
    /// The last HTTP status, if any.
    pub status: Option<u16>,
    /// The platform's `result` text or the error's description.
    pub platform_text: Option<String>,
    /// When it was first attempted (or recorded).
    pub first_attempt: DateTime<Utc>,
    /// When its record last changed.
    pub last_update: DateTime<Utc>,
}

/// The hasher for [`key_hash`] values: they are already uniformly distributed, so the
/// map uses their low bits as they are.
#[derive(Default, Clone, Copy)]
pub struct KeyHashHasher(u64);

/// Builds [`KeyHashHasher`]s: the hasher of every set and map keyed by [`key_hash`]
/// values (hashing them again, SipHash by default, only costs time).
pub type KeyHashBuild = BuildHasherDefault<KeyHashHasher>;

impl Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u128 input, which this map never hashes; stay correct anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation intended: xxh3's low 64 bits are as good as any.
        #[allow(clippy::cast_possible_truncation)]
        {
            self.0 = n as u64;
        }
    }
}

/// Shards of a [`KeySet`], picked by the hash's top byte (bits the tables
/// themselves do not use).
const SHARDS: usize = 256;

/// A set of [`key_hash`]es: the compact form in which the plan keeps keys it has
/// seen (dedupe, suppression) and a resume keeps the recipients already handled.
///
/// Split in shards so that growing never holds the old and the new table of
/// the whole set at once (a single table peaks at 1.5 times its size while it
/// doubles): a million keys peak near 18 MB instead of 27 MB.
#[derive(Debug, Clone)]
pub struct KeySet {
    shards: Vec<HashSet<u128, KeyHashBuild>>,
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet {
            shards: vec![HashSet::default(); SHARDS],
        }
    }
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(hash: u128) -> usize {
        (hash >> 120) as usize
    }

    /// Adds a hash; false if it was there already.
    pub fn insert(&mut self, hash: u128) -> bool {
        self.shards[Self::shard(hash)].insert(hash)
    }

    pub fn contains(&self, hash: u128) -> bool {
        self.shards[Self::shard(hash)].contains(&hash)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashSet::is_empty)
    }
}

/// A fixed set of [`key_hash`]es, sorted: 16 bytes a key and little more (a hash
/// set's tables grow by doubling and carry a control byte a slot, which costs more
/// than twice that at unlucky sizes). What a resume keeps of the recipients an
/// earlier attempt handled: read once, then only looked up.
///
/// A lookup goes straight to the run of hashes that share its top bits (about eight
/// of them, through a table of where each run starts) and searches only that: two
/// cache misses where a binary search over millions takes twenty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortedKeys {
    hashes: Box<[u128]>,
    /// How many top bits pick a run (0: one run, the whole set).
    bits: u32,
    /// Where each run starts in `hashes`, and one past the last.
    starts: Box<[u32]>,
}

impl SortedKeys {
    /// The set of `hashes` (in any order, repeats allowed).
    pub fn new(mut hashes: Vec<u128>) -> SortedKeys {
        hashes.sort_unstable();
        hashes.dedup();
        let n = hashes.len();
        // About eight hashes a run; 2^24 runs at most (64 MiB of starts).
        let bits = match n / 8 {
            0 | 1 => 0,
            runs => runs.ilog2().min(24),
        };
        let mut starts = Vec::with_capacity((1usize << bits) + 1);
        let mut next = 0usize;
        for run in 0..(1u128 << bits) {
            starts.push(u32::try_from(next).unwrap_or(u32::MAX));
            while next < n && Self::run_of(hashes[next], bits) == run {
                next += 1;
            }
        }
        starts.push(u32::try_from(n).unwrap_or(u32::MAX));
        SortedKeys {
            hashes: hashes.into_boxed_slice(),
            bits,
            starts: starts.into_boxed_slice(),
        }
    }

    fn run_of(hash: u128, bits: u32) -> u128 {
        if bits == 0 {
            0
        } else {
            hash >> (128 - bits)
        }
    }

    pub fn contains(&self, hash: u128) -> bool {
        let run = Self::run_of(hash, self.bits) as usize;
        let (Some(&from), Some(&to)) = (self.starts.get(run), self.starts.get(run + 1)) else {
            return false;
        };
        self.hashes
            .get(from as usize..to as usize)
            .is_some_and(|run| run.binary_search(&hash).is_ok())
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Every recipient a run has a record for, by [`key_hash`], with its class
/// ([`crate::state::StateStore::prior`]).
#[derive(Debug, Clone, Default)]
pub struct PriorDeliveries {
    map: HashMap<u128, OutcomeClass, KeyHashBuild>,
}

impl PriorDeliveries {
    /// An empty set.
    pub fn new() -> PriorDeliveries {
        PriorDeliveries::default()
    }

    /// Records (or overwrites) one entry.
    pub fn insert(&mut self, hash: u128, class: OutcomeClass) {
        self.map.insert(hash, class);
    }

    /// The class of a recipient key, if the run has a record for it.
    pub fn get(&self, key: &str) -> Option<OutcomeClass> {
        self.get_hash(key_hash(key))
    }

    /// The class of a recipient by its [`key_hash`].
    pub fn get_hash(&self, hash: u128) -> Option<OutcomeClass> {
        self.map.get(&hash).copied()
    }

    /// Number of recipients with a record.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the run has no record of any recipient.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Recipients per class.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for class in self.map.values() {
            counts.add(*class, 1);
        }
        counts
    }

    /// Every (hash, class) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u128, OutcomeClass)> + '_ {
        self.map.iter().map(|(h, c)| (*h, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_keys_hold_each_hash_once() {
        let hashes: Vec<u128> = (0..5_000)
            .map(|i| key_hash(&format!("k{}", i % 4_000)))
            .collect();
        let keys = SortedKeys::new(hashes.clone());
        assert_eq!(keys.len(), 4_000);
        assert!(hashes.iter().all(|h| keys.contains(*h)));
        assert!(!keys.contains(key_hash("other")));
        assert!(SortedKeys::default().is_empty() && !keys.is_empty());
    }

    #[test]
    fn key_sets_hold_each_hash_once() {
        let mut set = KeySet::new();
        let hashes: Vec<u128> = (0..10_000).map(|i| key_hash(&format!("k{i}"))).collect();
        assert!(hashes.iter().all(|h| set.insert(*h)));
        assert!(hashes.iter().all(|h| !set.insert(*h) && set.contains(*h)));
        assert_eq!(set.len(), 10_000);
        assert!(!set.contains(key_hash("other")));
        assert!(KeySet::new().is_empty() && !set.is_empty());
    }

    fn parts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn class_and_status_names_round_trip() {
        for c in OutcomeClass::ALL {
            assert_eq!(c.as_str().parse::<OutcomeClass>().unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        let err = "delivered".parse::<OutcomeClass>().unwrap_err();
        assert!(err
            .to_string()
            .contains("unknown outcome class `delivered`"));
    }

    #[test]
    fn fingerprint_digest_is_stable_and_unambiguous() {
        let a = Fingerprint::new(parts(&[("bot", "1"), ("message", "hi")]));
        let b = Fingerprint::new(parts(&[("message", "hi"), ("bot", "1")]));
        assert_eq!(a, b);
        assert_eq!(a.digest.len(), 32);
        // Moving text between name and value must change the digest.
        let c = Fingerprint::new(parts(&[("ab", "c")]));
        let d = Fingerprint::new(parts(&[("a", "bc")]));
        assert_ne!(c.digest, d.digest);
        // An empty part is not the same as a missing one.
        let e = Fingerprint::new(parts(&[("tag", "")]));
        let f = Fingerprint::new(parts(&[]));
        assert_ne!(e.digest, f.digest);
        assert_eq!(f.changes_to(&e).len(), 1);
    }

    #[test]
    fn changes_list_only_differing_parts() {
        let old = Fingerprint::new(parts(&[("bot", "1"), ("message", "hi"), ("tag", "X")]));
        let new = Fingerprint::new(parts(&[("bot", "1"), ("message", "hello"), ("api", "v2")]));
        let changes = old.changes_to(&new);
        let names: Vec<&str> = changes.iter().map(|c| c.part.as_str()).collect();
        assert_eq!(names, ["api", "message", "tag"]);
        assert_eq!(changes[1].old, "hi");
        assert_eq!(changes[1].new, "hello");
        assert_eq!(changes[2].new, "");
        assert!(old.changes_to(&old).is_empty());
    }

    #[test]
    fn prior_deliveries_lookup() {
        let mut p = PriorDeliveries::new();
        p.insert(key_hash("a"), OutcomeClass::Sent);
        p.insert(key_hash("b"), OutcomeClass::Unknown);
        assert_eq!(p.get("a"), Some(OutcomeClass::Sent));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.counts().unknown, 1);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn a_key_holding_a_secret_hashes_as_the_store_writes_it() {
        crate::redact::register("key-hash-test-secret-51c2");
        let raw = "user-key-hash-test-secret-51c2";
        let stored = crate::redact::scrub(raw);
        assert_eq!(stored, "user-***");
        // The store rebuilds hashes from the scrubbed text it keeps; the
        // plan hashes the raw key: the two must meet.
        let mut p = PriorDeliveries::new();
        p.insert(key_hash(&stored), OutcomeClass::Sent);
        assert_eq!(p.get_hash(key_hash(raw)), Some(OutcomeClass::Sent));
        assert_eq!(p.get(raw), Some(OutcomeClass::Sent));
    }
}

/// What one journal commit records, of any runs, in one transaction: attempts (each
/// with its run's id) and outcomes.
#[derive(Debug, Clone, Default)]
pub struct JournalBatch {
    pub attempts: Vec<(Arc<str>, Attempt)>,
    pub outcomes: Vec<(Arc<str>, OutcomeRecord)>,
}
