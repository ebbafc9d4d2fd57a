//! One rate budget per bot, shared by every campaign the process sends for it.
//!
//! Requests are spaced evenly (GCRA with a burst of one, via governor), a little
//! under the nominal rate so that network jitter cannot squeeze `rate + 1`
//! requests into one second at the server. A 429 halves the rate and pauses
//! for `Retry-After`; successes bring the rate back gradually.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Share of the nominal rate governor paces at. Governor's wake-ups run a
/// little late and the lateness accumulates (about 0.5 % at 25/s), so the
/// pacing sits just under the nominal rate and the sliding-window guard below
/// is what enforces the hard limit.
const HEADROOM: f64 = 0.995;
const MIN_FACTOR: f64 = 0.02;
/// Above this rate the sliding-window guard is not kept (benchmarks with the
/// limiter effectively off).
const GUARDED_UP_TO: f64 = 1000.0;
/// Margin of the sliding-window guard beyond one second.
const GUARD_MARGIN: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct State {
    limiter: Arc<DefaultDirectRateLimiter>,
    factor: f64,
    pause_until: Option<Instant>,
    successes: u64,
    rate_limited: u64,
    /// When the last `rate` requests were released, oldest first.
    released: VecDeque<Instant>,
}

#[derive(Debug)]
pub struct BotBudget {
    rate: f64,
    state: Mutex<State>,
}

fn quota(rate: f64) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN)
}

/// A limiter for a changed rate.
fn limiter(rate: f64) -> Arc<DefaultDirectRateLimiter> {
    let limiter = RateLimiter::direct(quota(rate));
    // A fresh limiter would grant its first cell at once; taking it now keeps
    // the spacing across a rate change.
    let _ = limiter.check();
    Arc::new(limiter)
}

impl BotBudget {
    pub fn new(rate: f64) -> Self {
        BotBudget {
            rate,
            state: Mutex::new(State {
                limiter: Arc::new(RateLimiter::direct(quota(rate * HEADROOM))),
                factor: 1.0,
                pause_until: None,
                successes: 0,
                rate_limited: 0,
                released: VecDeque::new(),
            }),
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

    pub fn rate_limited(&self) -> u64 {
        self.lock().rate_limited
    }

    /// Waits for this bot's next slot.
    ///
    /// Governor spaces slots evenly; a task may still be delayed between its
    /// slot and its send (a busy machine), and the next one not, which would
    /// bunch requests. So a slot is released only when fewer than `rate`
    /// requests were released in the last second (plus a margin).
    pub async fn acquire(&self) {
        let window_size = self.rate.floor().max(1.0) as usize;
        loop {
            let (limiter, pause) = {
                let s = self.lock();
                (s.limiter.clone(), s.pause_until)
            };
            if let Some(until) = pause {
                if until > Instant::now() {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            }
            limiter.until_ready().await;
            loop {
                let wait_until = {
                    let mut s = self.lock();
                    if s.pause_until.is_some_and(|u| u > Instant::now()) {
                        break;
                    }
                    if self.rate > GUARDED_UP_TO {
                        return;
                    }
                    let now = Instant::now();
                    let full = s.released.len() >= window_size;
                    match s.released.front().copied() {
                        Some(oldest)
                            if full && now < oldest + Duration::from_secs(1) + GUARD_MARGIN =>
                        {
                            oldest + Duration::from_secs(1) + GUARD_MARGIN
                        }
                        _ => {
                            if full {
                                s.released.pop_front();
                            }
                            s.released.push_back(now);
                            return;
                        }
                    }
                };
                tokio::time::sleep_until(wait_until).await;
            }
        }
    }

    /// A 429: slow down and pause.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.lock();
        s.rate_limited += 1;
        s.factor = (s.factor * 0.5).max(MIN_FACTOR);
        s.limiter = limiter(self.rate * s.factor * HEADROOM);
        let until = Instant::now()
            + retry_after
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(300));
        s.pause_until = Some(s.pause_until.map_or(until, |p| p.max(until)));
        s.successes = 0;
    }

    /// A success: after about two seconds' worth of them, speed up by a quarter.
    pub fn on_success(&self) {
        let mut s = self.lock();
        if s.factor >= 1.0 {
            return;
        }
        s.successes += 1;
        let needed = ((self.rate * s.factor * 2.0).ceil() as u64).max(5);
        if s.successes >= needed {
            s.factor = (s.factor * 1.25).min(1.0);
            s.limiter = limiter(self.rate * s.factor * HEADROOM);
            s.successes = 0;
        }
    }
}

/// The budgets of one process, by bot id.
#[derive(Debug, Default)]
pub struct Budgets {
    by_bot: Mutex<HashMap<String, Arc<BotBudget>>>,
}

impl Budgets {
    /// The bot's budget; campaigns asking different rates for one bot share the lowest.
    pub fn for_bot(&self, bot_id: &str, rate: f64) -> Arc<BotBudget> {
        let mut map = self.by_bot.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry(bot_id.to_owned())
            .or_insert_with(|| Arc::new(BotBudget::new(rate)));
        if rate < entry.rate {
            *entry = Arc::new(BotBudget::new(rate));
        }
        entry.clone()
    }
}
