//! One rate budget per bot, shared by every campaign the process sends for it.
//!
//! A request goes through two steps here. [`BotBudget::acquire`] waits for the
//! bot's next slot and returns a [`Permit`]; the caller records the attempt and
//! then calls [`Permit::launch`], which waits (rarely) for the sliding-window
//! guard and marks the moment the request leaves. Everything runs on tokio's
//! clock, so tests drive it with a paused clock.
//!
//! - **Pacer.** Slots lie on an absolute timeline, one every
//!   `(1 s + MARGIN) / (rate × factor)`. A slot taken late does not move the
//!   timeline: the next slot keeps its place and so follows sooner, which is
//!   how late wake-ups on a busy machine cost no rate. The catch-up is bounded
//!   ([`CATCH_UP`]) so that an idle spell is not followed by a burst.
//! - **Guard.** The hard limit: a request leaves only while fewer than `rate`
//!   requests left in the last second plus a margin, counted on the moments
//!   they really left (after the attempt record, which can take a while). The
//!   margin covers the jitter between leaving here and being counted by the
//!   server: at least [`MARGIN`], and for a request whose answer came notably
//!   later than the fastest recent one (a new connection, a thread descheduled
//!   on a loaded machine: it may have reached the server late) that excess,
//!   up to [`MAX_MARGIN`].
//! - **429s.** A 429 lowers the rate by [`DECREASE`], at most once per second
//!   (the 429s that follow within the second answer requests paced before the
//!   decrease); successes bring it back additively within about two seconds.
//!   `Retry-After` is always honoured for the recipient that got it (by the
//!   delivery loop); it pauses the whole bot when the 429 looks like the bot is
//!   over its limit: the first one after a quiet spell, or a run of them. A 429
//!   amid successes (random 429s) only delays its own recipient: pausing the
//!   bot for each of them would spare the server nothing and collapse the rate.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The server's counting window.
const WINDOW: Duration = Duration::from_secs(1);
/// Least margin of the guard beyond the window: the jitter between a request
/// leaving here and the server counting it that no answer time reveals.
const MARGIN: Duration = Duration::from_millis(10);
/// Most margin the guard keeps for one request. Bounds what a hung request
/// (no answer for seconds) can hold back.
const MAX_MARGIN: Duration = Duration::from_millis(250);
/// How far behind its timeline the pacer may fall and still catch up.
const CATCH_UP: Duration = Duration::from_millis(250);
/// Rate multiplier applied by a 429 (at most once per [`WINDOW`]).
const DECREASE: f64 = 0.8;
/// How fast the rate multiplier recovers while requests succeed, per second.
const RECOVERY_PER_SECOND: f64 = 0.5;
const MIN_FACTOR: f64 = 0.02;
/// A 429 after this long without one is taken at its word (the bot pauses for
/// its `Retry-After`).
const QUIET: Duration = Duration::from_secs(10);
/// So many 429s in a row mean the bot is over its limit, not unlucky.
const PRESSURE_STREAK: u32 = 4;
const MAX_PAUSE: Duration = Duration::from_secs(300);
/// Above this rate the guard is not kept (benchmarks with the limiter
/// effectively off); the timeline still paces.
const GUARDED_UP_TO: f64 = 1000.0;
/// Longest spacing between slots, whatever the rate: keeps instant arithmetic
/// far from overflow.
const MAX_PERIOD: Duration = Duration::from_secs(3600);

/// What an answer says about the bot's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The platform took the request (sent, or refused for that recipient).
    Accepted,
    /// A 429.
    RateLimited { retry_after: Option<Duration> },
    /// No word on the rate: 5xx, timeouts, broken connections.
    Other,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// When the permit was granted; once launched, when the request left.
    at: Instant,
    launched: bool,
    answered: Option<Instant>,
    /// Whether the server answered (not a timeout or a connection error):
    /// only those tell how fast a round trip can be.
    from_server: bool,
}

#[derive(Debug)]
struct State {
    /// The timeline: when the next slot is due.
    next: Instant,
    factor: f64,
    pause_until: Option<Instant>,
    last_decrease: Option<Instant>,
    last_429: Option<Instant>,
    /// 429 answers in a row.
    streak: u32,
    rate_limited: u64,
    permits: u64,
    /// The latest round trip, for when no answer in the guard's window tells
    /// the fastest (round trips beyond the window).
    last_rtt: Duration,
    /// Requests the guard counts: permits granted, and requests launched in
    /// the last window plus [`MAX_MARGIN`], in the order of their permits.
    entries: VecDeque<Entry>,
    next_id: u64,
}

#[derive(Debug)]
pub struct BotBudget {
    rate: f64,
    state: Mutex<State>,
    /// One waiter at a time sleeps on the timeline; the others queue here in
    /// arrival order (tokio's mutex is fair).
    turn: tokio::sync::Mutex<()>,
    /// Wakes waiters when the guard may have room: an answer shrank a margin,
    /// or a permit was given up.
    changed: Notify,
}

/// A slot of the bot's rate, held from [`BotBudget::acquire`] to
/// [`Permit::launch`]. Dropped unlaunched, it gives its place in the guard back.
#[derive(Debug)]
pub struct Permit<'a> {
    budget: &'a BotBudget,
    id: u64,
    launched: bool,
}

/// A request that has left; report its answer with [`Launched::answered`].
#[derive(Debug)]
pub struct Launched<'a> {
    budget: &'a BotBudget,
    id: u64,
    left: Instant,
}

fn seconds(d: f64) -> Duration {
    Duration::try_from_secs_f64(d)
        .unwrap_or(MAX_PERIOD)
        .min(MAX_PERIOD)
}

impl BotBudget {
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        BotBudget {
            rate,
            state: Mutex::new(State {
                next: Instant::now(),
                factor: 1.0,
                pause_until: None,
                last_decrease: None,
                last_429: None,
                streak: 0,
                rate_limited: 0,
                permits: 0,
                last_rtt: Duration::ZERO,
                entries: VecDeque::new(),
                next_id: 1,
            }),
            turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate currently in force (lower than `rate` after 429s).
    pub fn current_rate(&self) -> f64 {
        self.rate * self.lock().factor
    }

    /// The multiplier 429s have put on the rate (1.0: none).
    #[cfg(test)]
    fn factor(&self) -> f64 {
        self.lock().factor
    }

    pub fn rate_limited(&self) -> u64 {
        self.lock().rate_limited
    }

    /// Slots handed out so far.
    pub fn permits(&self) -> u64 {
        self.lock().permits
    }

    /// Until when the bot is paused by a `Retry-After`, if it is.
    #[cfg(test)]
    fn paused_until(&self) -> Option<Instant> {
        let s = self.lock();
        s.pause_until.filter(|p| *p > Instant::now())
    }

    fn guarded(&self) -> bool {
        self.rate <= GUARDED_UP_TO
    }

    /// Requests allowed in any window (the platform counts whole requests).
    fn window_size(&self) -> usize {
        self.rate.floor().max(1.0) as usize
    }

    fn period(&self, factor: f64) -> Duration {
        let span = if self.guarded() {
            (WINDOW + MARGIN).as_secs_f64()
        } else {
            WINDOW.as_secs_f64()
        };
        seconds(span / (self.rate * factor))
    }

    /// Waits for this bot's next slot.
    pub async fn acquire(&self) -> Permit<'_> {
        let _turn = self.turn.lock().await;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let until = {
                let mut s = self.lock();
                match self.take_slot(&mut s, Instant::now()) {
                    Ok(id) => {
                        return Permit {
                            budget: self,
                            id,
                            launched: false,
                        }
                    }
                    Err(until) => until,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = changed => {}
            }
        }
    }

    /// The slot due now, or when to look again.
    fn take_slot(&self, s: &mut State, now: Instant) -> Result<u64, Instant> {
        if let Some(until) = s.pause_until.filter(|p| *p > now) {
            return Err(until);
        }
        if let Some(earliest) = now.checked_sub(CATCH_UP) {
            s.next = s.next.max(earliest);
        }
        if s.next > now {
            return Err(s.next);
        }
        if self.guarded() {
            prune(s, now);
            if let Some(until) = self.window_full(s, now, true) {
                return Err(until);
            }
        }
        // From the slot's place on the timeline, not from now: a late slot is
        // followed sooner.
        s.next += self.period(s.factor);
        s.permits += 1;
        let id = s.next_id;
        s.next_id += 1;
        if self.guarded() {
            s.entries.push_back(Entry {
                id,
                at: now,
                launched: false,
                answered: None,
                from_server: false,
            });
        }
        Ok(id)
    }

    /// When the guard's window holds `rate` requests at `now`: the moment one
    /// of them stops counting. Permits not yet launched count only when
    /// `with_permits` (they leave later than their permit, never earlier).
    fn window_full(&self, s: &State, now: Instant, with_permits: bool) -> Option<Instant> {
        let limit = self.window_size();
        // Cheap test first: on most calls the window is not even nearly full.
        if s.entries.len() < limit {
            return None;
        }
        let fastest = s
            .entries
            .iter()
            .filter(|e| e.from_server)
            .filter_map(|e| e.answered.map(|a| a.saturating_duration_since(e.at)))
            .min()
            .unwrap_or(s.last_rtt);
        let mut expiries: Vec<Instant> = s
            .entries
            .iter()
            .filter(|e| with_permits || e.launched)
            .map(|e| e.at + WINDOW + margin(e, now, fastest))
            .filter(|expiry| *expiry > now)
            .collect();
        if expiries.len() < limit {
            return None;
        }
        expiries.sort_unstable();
        expiries.get(expiries.len() - limit).copied()
    }

    fn launch_at(&self, id: u64) -> Result<Instant, Instant> {
        let mut s = self.lock();
        let now = Instant::now();
        if self.guarded() {
            prune(&mut s, now);
            if let Some(until) = self.window_full(&s, now, false) {
                return Err(until);
            }
            if let Some(e) = find(&mut s.entries, id) {
                e.at = now;
                e.launched = true;
            }
        }
        Ok(now)
    }

    fn give_back(&self, id: u64) {
        let mut s = self.lock();
        if let Ok(i) = s.entries.binary_search_by_key(&id, |e| e.id) {
            s.entries.remove(i);
        }
        drop(s);
        self.changed.notify_waiters();
    }

    fn answered(&self, id: u64, left: Instant, answer: Answer) {
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(e) = find(&mut s.entries, id) {
            e.answered = Some(now);
            e.from_server = answer != Answer::Other;
        }
        if answer != Answer::Other {
            s.last_rtt = now.saturating_duration_since(left);
        }
        match answer {
            Answer::Accepted => {
                s.streak = 0;
                if s.factor < 1.0 {
                    // Additive, scaled by the spacing of successes at this
                    // rate: the factor gains RECOVERY_PER_SECOND per second of
                    // sending, however slow the bot was made.
                    let step = RECOVERY_PER_SECOND * self.period(s.factor).as_secs_f64();
                    s.factor = (s.factor + step).min(1.0);
                }
            }
            Answer::RateLimited { retry_after } => {
                s.rate_limited += 1;
                s.streak = s.streak.saturating_add(1);
                let quiet = s
                    .last_429
                    .is_none_or(|t| now.saturating_duration_since(t) >= QUIET);
                s.last_429 = Some(now);
                if s.last_decrease
                    .is_none_or(|t| now.saturating_duration_since(t) >= WINDOW)
                {
                    s.factor = (s.factor * DECREASE).max(MIN_FACTOR);
                    s.last_decrease = Some(now);
                }
                if let Some(wait) = retry_after {
                    if quiet || s.streak >= PRESSURE_STREAK {
                        let until = now + wait.min(MAX_PAUSE);
                        s.pause_until = Some(s.pause_until.map_or(until, |p| p.max(until)));
                        // No catch-up for the paused time.
                        s.next = s.next.max(until);
                    }
                }
            }
            Answer::Other => {}
        }
        drop(s);
        self.changed.notify_waiters();
    }
}

/// The guard's margin for one request: [`MARGIN`], or how much later than the
/// fastest recent answer its answer came (for a request still unanswered: how
/// long it has been out beyond that), up to [`MAX_MARGIN`].
fn margin(e: &Entry, now: Instant, fastest: Duration) -> Duration {
    let excess = match (e.launched, e.answered) {
        (true, Some(answered)) => answered.saturating_duration_since(e.at),
        (true, None) => now.saturating_duration_since(e.at),
        (false, _) => Duration::ZERO,
    }
    .saturating_sub(fastest);
    excess.clamp(MARGIN, MAX_MARGIN)
}

/// Drops launched requests that no window can count any more.
fn prune(s: &mut State, now: Instant) {
    s.entries
        .retain(|e| !e.launched || e.at + WINDOW + MAX_MARGIN > now);
}

fn find(entries: &mut VecDeque<Entry>, id: u64) -> Option<&mut Entry> {
    let i = entries.binary_search_by_key(&id, |e| e.id).ok()?;
    entries.get_mut(i)
}

impl<'a> Permit<'a> {
    /// Waits until the guard lets the request leave (at once, unless the
    /// requests before it left late), and marks it as gone.
    pub async fn launch(mut self) -> Launched<'a> {
        let budget = self.budget;
        loop {
            let changed = budget.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match budget.launch_at(self.id) {
                Ok(left) => {
                    self.launched = true;
                    return Launched {
                        budget,
                        id: self.id,
                        left,
                    };
                }
                Err(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.launched && self.budget.guarded() {
            self.budget.give_back(self.id);
        }
    }
}

impl Launched<'_> {
    /// Reports what the request's answer says about the rate.
    pub fn answered(self, answer: Answer) {
        self.budget.answered(self.id, self.left, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Takes one slot and sends at once, answered at once.
    async fn send(budget: &BotBudget, answer: Answer) -> Instant {
        let launched = budget.acquire().await.launch().await;
        let left = launched.left;
        launched.answered(answer);
        left
    }

    /// The most launches in any window of `window`.
    fn most_in_any(times: &[Instant], window: Duration) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        let mut best = 0;
        let mut start = 0;
        for end in 0..sorted.len() {
            while sorted[end] - sorted[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_holds_more_than_rate_requests_whatever_the_delays() {
        let budget = Arc::new(BotBudget::new(25.0));
        let launches = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..40u64 {
            let (budget, launches) = (budget.clone(), launches.clone());
            tasks.spawn(async move {
                let mut rng = StdRng::seed_from_u64(task);
                for _ in 0..15 {
                    let permit = budget.acquire().await;
                    // The attempt record's commit: sometimes slow, rarely
                    // longer than the window (a disk stall).
                    let commit = match rng.random_range(0..100) {
                        0..2 => 1500,
                        2..12 => 60,
                        _ => 3,
                    };
                    tokio::time::sleep(ms(rng.random_range(0..commit))).await;
                    let launched = permit.launch().await;
                    launches.lock().expect("launches").push(launched.left);
                    // Round trips with outliers (a cold connection, a busy server).
                    let rtt = if rng.random_bool(0.05) { 400 } else { 50 };
                    tokio::time::sleep(ms(rng.random_range(rtt..rtt + 20))).await;
                    launched.answered(Answer::Accepted);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let times = launches.lock().expect("launches").clone();
        assert_eq!(times.len(), 600);
        assert_eq!(most_in_any(&times, WINDOW + MARGIN), 25);
        // And most of the rate is kept, despite the 5% of requests whose late
        // answers widen their margins and the stalled commits.
        let first = times.iter().min().copied().expect("first");
        let last = times.iter().max().copied().expect("last");
        let rate = (times.len() - 1) as f64 / (last - first).as_secs_f64();
        assert!(rate > 23.5, "{rate}/s");
    }

    #[tokio::test(start_paused = true)]
    async fn late_takers_are_caught_up_without_crossing_the_guard() {
        let budget = BotBudget::new(25.0);
        let period = budget.period(1.0);
        let mut rng = StdRng::seed_from_u64(7);
        let mut times = Vec::new();
        for _ in 0..200 {
            times.push(send(&budget, Answer::Accepted).await);
            // The taker of the next slot comes late, now and then by more
            // than a period (a busy machine).
            let late = if rng.random_bool(0.2) { 70 } else { 10 };
            tokio::time::sleep(ms(rng.random_range(0..late))).await;
        }
        let span = times[199] - times[0];
        // On the timeline: 199 periods, plus at most the last lateness.
        assert!(span <= period * 199 + ms(70), "{span:?}");
        assert!(most_in_any(&times, WINDOW + MARGIN) <= 25);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_spell_is_not_followed_by_a_burst() {
        let budget = BotBudget::new(25.0);
        send(&budget, Answer::Accepted).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..10 {
            times.push(send(&budget, Answer::Accepted).await);
        }
        // Catch-up is bounded: 10 slots take at least 9 periods minus CATCH_UP.
        assert!(times[9] - start >= budget.period(1.0) * 9 - CATCH_UP);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_answer_widens_the_margin_of_its_request() {
        let budget = BotBudget::new(2.0);
        // A: its answer takes 100 ms (it may have reached the server late).
        let a = budget.acquire().await.launch().await;
        let a_left = a.left;
        tokio::time::sleep(ms(100)).await;
        a.answered(Answer::Accepted);
        // B: answered in 5 ms, the fastest.
        let b = budget.acquire().await.launch().await;
        tokio::time::sleep(ms(5)).await;
        b.answered(Answer::Accepted);
        // C counts A's second from A's departure plus 95 ms, not plus MARGIN.
        let c = send(&budget, Answer::Accepted).await;
        assert_eq!(c - a_left, WINDOW + ms(95));
    }

    #[tokio::test(start_paused = true)]
    async fn a_given_up_permit_frees_its_place() {
        let budget = BotBudget::new(1.0);
        drop(budget.acquire().await);
        // Not launched: the guard does not count it; the timeline still does.
        let start = Instant::now();
        send(&budget, Answer::Accepted).await;
        assert_eq!(Instant::now() - start, budget.period(1.0));
        assert_eq!(budget.permits(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_slows_the_bot_once_per_window_and_successes_restore_it() {
        let budget = BotBudget::new(25.0);
        send(&budget, Answer::Accepted).await;
        let limited = Answer::RateLimited { retry_after: None };
        send(&budget, limited).await;
        assert_eq!(budget.factor(), DECREASE);
        // Random 429s within the same second answer requests paced before the
        // decrease: no second halving.
        send(&budget, limited).await;
        send(&budget, Answer::Accepted).await;
        send(&budget, limited).await;
        assert!(budget.factor() >= DECREASE, "{}", budget.factor());
        assert!(budget.factor() < 1.0);
        let mut successes = 0;
        while budget.factor() < 1.0 {
            send(&budget, Answer::Accepted).await;
            successes += 1;
        }
        // From 0.8 back to 1.0: about 0.4 s of sending at 0.5 per second.
        assert!(successes <= 12, "{successes}");
        // A 429 a window later slows it again.
        tokio::time::sleep(WINDOW).await;
        send(&budget, limited).await;
        assert_eq!(budget.factor(), DECREASE);
        assert_eq!(budget.rate_limited(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_factor_recovers_from_its_floor_within_seconds() {
        let budget = BotBudget::new(25.0);
        let start = Instant::now();
        for _ in 0..30 {
            send(&budget, Answer::RateLimited { retry_after: None }).await;
            tokio::time::sleep(WINDOW).await;
        }
        assert_eq!(budget.factor(), MIN_FACTOR);
        let recovering = Instant::now();
        while budget.factor() < 1.0 {
            send(&budget, Answer::Accepted).await;
        }
        assert!(Instant::now() - recovering < Duration::from_secs(3));
        assert!(recovering - start > Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_without_retry_after_does_not_pause_the_bot() {
        let budget = BotBudget::new(25.0);
        send(&budget, Answer::RateLimited { retry_after: None }).await;
        let start = Instant::now();
        send(&budget, Answer::Accepted).await;
        assert!(Instant::now() - start <= budget.period(DECREASE));
        assert_eq!(budget.paused_until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_bot_after_a_quiet_spell_or_under_pressure() {
        let budget = BotBudget::new(25.0);
        let retry_after = Some(Duration::from_secs(2));
        // The first 429 in a while is taken at its word.
        send(&budget, Answer::RateLimited { retry_after }).await;
        let paused = Instant::now();
        send(&budget, Answer::Accepted).await;
        assert!(Instant::now() - paused >= Duration::from_secs(2));
        // Amid successes, another one delays only its own recipient.
        send(&budget, Answer::Accepted).await;
        send(&budget, Answer::RateLimited { retry_after }).await;
        assert_eq!(budget.paused_until(), None);
        // A run of them means the bot is over its limit.
        for _ in 1..PRESSURE_STREAK {
            send(&budget, Answer::RateLimited { retry_after }).await;
        }
        let pressed = Instant::now();
        assert!(budget.paused_until().is_some());
        send(&budget, Answer::Accepted).await;
        assert!(Instant::now() - pressed >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn random_429s_keep_most_of_the_rate() {
        let budget = BotBudget::new(25.0);
        let mut rng = StdRng::seed_from_u64(3);
        let start = Instant::now();
        for _ in 0..1000 {
            let answer = if rng.random_bool(0.1) {
                Answer::RateLimited {
                    retry_after: Some(Duration::from_secs(1)),
                }
            } else {
                Answer::Accepted
            };
            send(&budget, answer).await;
        }
        let rate = 1000.0 / (Instant::now() - start).as_secs_f64();
        assert!(rate > 22.0, "{rate}/s");
    }
}
