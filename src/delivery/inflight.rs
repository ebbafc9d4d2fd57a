//! How many recipients one delivery works on at once.
//!
//! The rate is the budget's business; this only has to keep a request ready
//! for every slot. By Little's law that takes `rate × round trip` requests
//! out at once, so the limit follows the smoothed round trip:
//! `ceil(rate × srtt × HEADROOM) + 1`, never above `delivery.concurrency`
//! (the cap). The round trip is measured from the rate permit to the answer,
//! so the attempt record's commit is part of it.
//!
//! A recipient waiting out a retry backoff, or whose request has been out far
//! longer than the round trip (a hung request), does not count against the
//! limit: it holds nothing the rate needs. It still counts against the cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Spare capacity over Little's law, for the round trip's jitter.
const HEADROOM: f64 = 1.5;
/// Weight of a new round trip in the smoothed one (as TCP's SRTT).
const SMOOTHING: f64 = 1.0 / 8.0;
/// Before the first answer: how long a request may be out before it no
/// longer counts against the limit.
const OVERDUE_UNKNOWN: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct State {
    /// Recipients taken and not yet settled.
    total: usize,
    /// Of those, the ones counted against the limit.
    active: usize,
    srtt: Option<Duration>,
}

/// The adaptive in-flight limit of one delivery.
#[derive(Debug)]
pub struct InFlight {
    cap: usize,
    state: Mutex<State>,
    changed: Notify,
}

/// One recipient's place, from being taken to its outcome being recorded.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<InFlight>,
    active: bool,
}

impl InFlight {
    pub fn new(cap: usize) -> Self {
        InFlight {
            cap: cap.max(1),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more recipient may be taken at `rate()`.
    pub async fn admit(self: &Arc<Self>, rate: impl Fn() -> f64) -> Slot {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                // Asked before locking: the rate comes from the budget's own lock.
                let rate = rate();
                let mut s = self.lock();
                if s.total < self.cap && s.active < limit(self.cap, rate, s.srtt) {
                    s.total += 1;
                    s.active += 1;
                    return Slot {
                        owner: Arc::clone(self),
                        active: true,
                    };
                }
            }
            changed.await;
        }
    }

    /// Takes a measured round trip into the smoothed one.
    pub fn observe(&self, rtt: Duration) {
        {
            let mut s = self.lock();
            s.srtt = Some(match s.srtt {
                None => rtt,
                Some(srtt) => srtt.mul_f64(1.0 - SMOOTHING) + rtt.mul_f64(SMOOTHING),
            });
        }
        self.changed.notify_waiters();
    }

    /// How long a request may be out before it stops counting against the limit.
    pub fn overdue(&self) -> Duration {
        match self.lock().srtt {
            Some(srtt) => (srtt * 2).max(srtt + Duration::from_millis(100)),
            None => OVERDUE_UNKNOWN,
        }
    }
}

fn limit(cap: usize, rate: f64, srtt: Option<Duration>) -> usize {
    let wanted = match srtt {
        Some(rtt) => (rate * rtt.as_secs_f64() * HEADROOM).ceil() + 1.0,
        // Nothing measured yet: a second's worth, which covers round trips
        // up to a second until the first answer tells.
        None => rate.ceil() + 1.0,
    };
    if wanted.is_finite() && wanted < cap as f64 {
        (wanted as usize).max(1)
    } else {
        cap
    }
}

impl Slot {
    /// Counts this recipient against the limit, or not (while it waits out a
    /// backoff, or its request is overdue).
    pub fn set_active(&mut self, active: bool) {
        if active == self.active {
            return;
        }
        self.active = active;
        {
            let mut s = self.owner.lock();
            if active {
                s.active += 1;
            } else {
                s.active = s.active.saturating_sub(1);
            }
        }
        if !active {
            self.owner.changed.notify_waiters();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut s = self.owner.lock();
            s.total = s.total.saturating_sub(1);
            if self.active {
                s.active = s.active.saturating_sub(1);
            }
        }
        self.owner.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_round_trip_and_stops_at_the_cap() {
        // 25/s at 50 ms: about 1.25 out at once.
        assert_eq!(limit(64, 25.0, Some(Duration::from_millis(50))), 3);
        // 25/s at 1 s: 25 out at once, plus headroom.
        assert_eq!(limit(64, 25.0, Some(Duration::from_secs(1))), 39);
        assert_eq!(limit(8, 25.0, Some(Duration::from_secs(1))), 8);
        assert_eq!(limit(64, 25.0, None), 26);
        assert_eq!(limit(64, 1e6, None), 64);
        assert_eq!(limit(64, 0.01, Some(Duration::from_millis(1))), 2);
        assert_eq!(limit(1, 25.0, Some(Duration::from_secs(1))), 1);
        assert_eq!(limit(64, f64::INFINITY, Some(Duration::from_secs(1))), 64);
    }

    #[tokio::test]
    async fn idle_slots_make_room_and_the_cap_still_holds() {
        let inflight = Arc::new(InFlight::new(3));
        inflight.observe(Duration::from_millis(1));
        // Rate 1 at 1 ms: a limit of 2.
        let mut a = inflight.admit(|| 1.0).await;
        let mut b = inflight.admit(|| 1.0).await;
        let third = inflight.admit(|| 1.0);
        tokio::pin!(third);
        assert!(futures_poll(&mut third).is_none(), "the limit holds");
        a.set_active(false);
        let mut c = futures_poll(&mut third).expect("an idle slot makes room");
        b.set_active(false);
        c.set_active(false);
        let fourth = inflight.admit(|| 1.0);
        tokio::pin!(fourth);
        assert!(futures_poll(&mut fourth).is_none(), "the cap holds");
        drop(a);
        assert!(futures_poll(&mut fourth).is_some());
    }

    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
