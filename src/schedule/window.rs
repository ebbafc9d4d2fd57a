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
/// is read as unlimited. Spans are capped at 100 years (an end 100 years after the
/// start means "at least that").
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
    // The cap is on the span, not only on the time the window is open (which a
    // narrow window spreads over many more years).
    let horizon = first
        .checked_add_signed(TimeDelta::nanoseconds(MAX_NANOS as i64))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut cursor = first;
    loop {
        if cursor >= horizon {
            return (first, horizon);
        }
        let Some(close) = window.closes_at(cursor, tz) else {
            return (first, DateTime::<Utc>::MAX_UTC);
        };
        let open_for = close - cursor;
        if remaining <= open_for {
            let end = cursor
                .checked_add_signed(remaining)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            return (first, end.min(horizon));
        }
        // Days at one offset repeat this window exactly: take them at once
        // rather than one by one (a narrow window and a low rate would
        // otherwise walk up to 100 years of days). Only from a window that
        // opens at its start time: not one joined midway, nor one a clock
        // change opened.
        let days = if local(tz, cursor).time() == window.start {
            repeated_windows(cursor, open_for, remaining, tz)
        } else {
            0
        };
        let (last_open, taken) = if days > 1 {
            let Some(last_open) = cursor.checked_add_signed(TimeDelta::days(days - 1)) else {
                return (first, DateTime::<Utc>::MAX_UTC);
            };
            (last_open, days)
        } else {
            (cursor, 1)
        };
        remaining -= open_for * taken as i32;
        let Some(close) = last_open.checked_add_signed(open_for) else {
            return (first, DateTime::<Utc>::MAX_UTC);
        };
        cursor = window.next_open(close, tz);
        if cursor == DateTime::<Utc>::MAX_UTC {
            return (first, cursor);
        }
    }
}

/// How many windows, from the one that opens at `open` and lasts `open_for`, are
/// the same window a day apart (no change of offset before the last one closes)
/// and can be sent in whole, leaving some of `remaining` for a later window.
/// At most a year's worth, so that the search for a transition stays short.
fn repeated_windows(open: DateTime<Utc>, open_for: TimeDelta, remaining: TimeDelta, tz: Tz) -> i64 {
    const MAX_DAYS: i64 = 366;
    let (Some(open_ns), Some(remaining_ns)) =
        (open_for.num_nanoseconds(), remaining.num_nanoseconds())
    else {
        return 0;
    };
    if open_ns <= 0 {
        return 0;
    }
    // Whole windows that leave something over.
    let affordable = ((remaining_ns - 1) / open_ns).min(MAX_DAYS);
    if affordable <= 1 {
        return affordable;
    }
    let day = TimeDelta::days(1);
    let Some(limit) = open
        .checked_add_signed(day * (affordable - 1) as i32)
        .and_then(|t| t.checked_add_signed(open_for))
    else {
        return 0;
    };
    match next_transition(tz, open, limit) {
        None => affordable,
        // Windows that close by the transition are whole and alike.
        Some(t) => {
            let fits = (t - open - open_for).num_seconds().div_euclid(86_400) + 1;
            fits.clamp(0, affordable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk `estimate_span` made before it took repeated days at once.
    fn one_window_at_a_time(
        start: DateTime<Utc>,
        mut remaining: TimeDelta,
        window: &Window,
        tz: Tz,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        let first = window.next_open(start, tz);
        let mut cursor = first;
        loop {
            let Some(close) = window.closes_at(cursor, tz) else {
                return (first, DateTime::<Utc>::MAX_UTC);
            };
            let open_for = close - cursor;
            if remaining <= open_for {
                return (first, cursor + remaining);
            }
            remaining -= open_for;
            cursor = window.next_open(close, tz);
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn whole_days_at_once_give_the_same_span_as_one_window_at_a_time() {
        let zones = [
            "UTC",
            "Europe/Berlin",
            "Australia/Lord_Howe",
            "America/St_Johns",
            "Pacific/Apia",
            "Europe/Dublin",
            "Africa/Casablanca",
        ];
        let windows = ["08:00-21:00", "22:00-06:00", "02:30-03:30", "07:49-08:00"];
        let starts = [
            "2026-03-28T12:00:00Z",
            "2026-10-24T23:59:59Z",
            "2011-12-29T09:00:00Z",
            "2026-07-01T07:55:00Z",
        ];
        // From part of a window to several years of them.
        let counts = [1u64, 40_000, 900_000, 5_000_000];
        for zone in zones {
            let tz: Tz = zone.parse().unwrap();
            for w in windows {
                let window = Window::parse(w).unwrap();
                for s in starts {
                    for count in counts {
                        let start = utc(s);
                        let span = estimate_span(start, count, 1.0, Some(&window), tz);
                        let walked = one_window_at_a_time(
                            start,
                            TimeDelta::seconds(count as i64),
                            &window,
                            tz,
                        );
                        assert_eq!(span, walked, "{zone} {w} from {s}, {count} s");
                    }
                }
            }
        }
    }

    #[test]
    fn a_century_of_narrow_windows_is_estimated_promptly() {
        // Found by tests/fuzz.rs: 11 minutes a day at a very low rate walked
        // 36,500 windows one by one (15 s in a debug build).
        let window = Window::parse("07:49- 08:00 ").unwrap();
        let tz: Tz = "Pacific/Kiritimati".parse().unwrap();
        let t = std::time::Instant::now();
        let (start, end) = estimate_span(
            utc("2025-10-20T15:58:12Z"),
            8_488_868_287_944_844_814,
            1e-300,
            Some(&window),
            tz,
        );
        assert!(start < end);
        assert_eq!(
            end - start,
            TimeDelta::nanoseconds(3_155_760_000_000_000_000)
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }
}
