//! Local send windows and how long sending takes inside them.

use chrono::{DateTime, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use std::fmt;

use super::zone::{local, next_transition, offset_seconds};

/// A daily send window in local wall time, `start` included, `end` excluded
/// (`08:00-21:00` contains 20:59:59 but not 21:00:00). When `end` is before `start`
/// the window wraps midnight (`22:00-06:00`).
///
/// Containment is judged on the wall clock of the campaign's zone, so on a day when
/// clocks change the window still opens and closes at the local times written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
}

/// How far ahead to look for a wall-clock event before giving up (never reached with
/// a valid window, which opens and closes every day).
const MAX_SEGMENTS: usize = 64;
/// Segments without an offset change are cut at this length.
const SEGMENT: TimeDelta = TimeDelta::days(2);

impl Window {
    /// A window from `start` (included) to `end` (excluded); equal times are an error.
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Window, String> {
        if start == end {
            return Err(format!(
                "the window `{}-{}` is empty (start and end are equal); leave `window` out to \
                 send at any time",
                hhmm(start),
                hhmm(end)
            ));
        }
        Ok(Window { start, end })
    }

    /// Parses `HH:MM-HH:MM` (`24:00` is accepted as an end).
    pub fn parse(text: &str) -> Result<Window, String> {
        let invalid = |why: &str| {
            format!("invalid window `{text}`: {why}; expected `HH:MM-HH:MM`, e.g. `08:00-21:00`")
        };
        let Some((a, b)) = text.trim().split_once('-') else {
            return Err(invalid("no `-` between start and end"));
        };
        let start = parse_hhmm(a.trim(), false).ok_or_else(|| invalid("bad start time"))?;
        let end = parse_hhmm(b.trim(), true).ok_or_else(|| invalid("bad end time"))?;
        Window::new(start, end)
    }

    /// The local time the window opens (included).
    pub fn start(&self) -> NaiveTime {
        self.start
    }

    /// The local time the window closes (excluded).
    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// Whether a local time of day is inside the window.
    pub fn contains_time(&self, time: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// Whether the instant `t` is inside the window, read on the wall clock of `tz`.
    pub fn contains(&self, t: DateTime<Utc>, tz: Tz) -> bool {
        self.contains_time(local(tz, t).time())
    }

    /// The first instant at or after `t` inside the window (`t` itself if inside).
    pub fn next_open(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        if self.contains(t, tz) {
            return t;
        }
        // The wall clock runs at a constant offset between transitions; the window
        // opens when it reaches `start`, or when a transition puts it inside.
        let mut s0 = t;
        for _ in 0..MAX_SEGMENTS {
            let (s1, offset) = segment(tz, s0);
            if let Some(u) = reach(local(tz, s0), self.start, offset) {
                if u < s1 {
                    return u.max(s0);
                }
            }
            if self.contains(s1, tz) {
                return s1;
            }
            s0 = s1;
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// The end of the window containing `t` (the first instant after `t` outside it);
    /// `None` if `t` is outside.
    pub fn closes_at(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if !self.contains(t, tz) {
            return None;
        }
        let mut s0 = t;
        for _ in 0..MAX_SEGMENTS {
            let (s1, offset) = segment(tz, s0);
            if let Some(u) = reach(local(tz, s0), self.end, offset) {
                if u < s1 {
                    return Some(u.max(s0));
                }
            }
            if !self.contains(s1, tz) {
                return Some(s1);
            }
            s0 = s1;
        }
        None
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hhmm(self.start), hhmm(self.end))
    }
}

fn hhmm(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

fn parse_hhmm(text: &str, allow_24: bool) -> Option<NaiveTime> {
    let (h, m) = text.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.chars().all(|c| c.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if allow_24 && h == 24 && m == 0 {
        return Some(NaiveTime::MIN);
    }
    NaiveTime::from_hms_opt(h, m, 0)
}

/// From `s0`: the end of its constant-offset segment, and the offset in seconds.
fn segment(tz: Tz, s0: DateTime<Utc>) -> (DateTime<Utc>, i64) {
    let limit = s0
        .checked_add_signed(SEGMENT)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let s1 = next_transition(tz, s0, limit).unwrap_or(limit);
    (s1, offset_seconds(tz, s0))
}

/// The instant at which a wall clock showing `from` (and running at `offset`) next
/// reads `time` (at or after `from`).
fn reach(from: NaiveDateTime, time: NaiveTime, offset: i64) -> Option<DateTime<Utc>> {
    let today = from.date().and_time(time);
    let target = if today >= from {
        today
    } else {
        from.date().succ_opt()?.and_time(time)
    };
    let utc = target.checked_sub_signed(TimeDelta::seconds(offset))?;
    Some(utc.and_utc())
}

/// Where sending would start and end for `count` requests at `rate` per second from
/// `start`, pausing outside the window (`None`: no window). Sending `count` requests
/// takes `count / rate` seconds of open window; a `rate` that is not a positive number
/// is read as unlimited. Spans are capped at 100 years.
pub fn estimate_span(
    start: DateTime<Utc>,
    count: u64,
    rate: f64,
    window: Option<&Window>,
    tz: Tz,
) -> (DateTime<Utc>, DateTime<Utc>) {
    const MAX_NANOS: f64 = 100.0 * 365.25 * 86_400.0 * 1e9;
    let nanos = if rate.is_finite() && rate > 0.0 {
        (count as f64 / rate * 1e9).min(MAX_NANOS)
    } else {
        0.0
    };
    let mut remaining = TimeDelta::nanoseconds(nanos.round() as i64);
    let Some(window) = window else {
        let end = start
            .checked_add_signed(remaining)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        return (start, end);
    };
    let first = window.next_open(start, tz);
    let mut cursor = first;
    loop {
        let Some(close) = window.closes_at(cursor, tz) else {
            return (first, DateTime::<Utc>::MAX_UTC);
        };
        let open_for = close - cursor;
        if remaining <= open_for {
            let end = cursor
                .checked_add_signed(remaining)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            return (first, end);
        }
        remaining -= open_for;
        cursor = window.next_open(close, tz);
        if cursor == DateTime::<Utc>::MAX_UTC {
            return (first, cursor);
        }
    }
}
