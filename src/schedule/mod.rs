//! Schedules: when a campaign's occurrences fall, which one is due, send windows.
//!
//! Pure time math over an injected [`Clock`]; no I/O.
//!
//! A schedule is either one instant (`at`) or a crontab expression (`cron`) read on
//! the wall clock of the campaign's time zone. Cron times are computed as local wall
//! times, then mapped to instants:
//! - a wall time skipped when clocks go forward runs at the first instant after the
//!   gap (a daily 02:30 job in Europe/Berlin runs at 03:00 local on 2026-03-29);
//! - a wall time that happens twice when clocks go back runs once, at the earlier
//!   instant (02:30 on 2026-10-25 in Berlin runs at 00:30 UTC, not again at 01:30).
//!
//! Only the latest occurrence at or before now is ever considered by [`Schedule::due`]:
//! older occurrences that were never run are not a backlog to work through.

mod clock;
mod cron_expr;
mod window;
mod zone;

pub use clock::{Clock, ManualClock, SystemClock};
pub use window::{estimate_span, Window};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::time::Duration;

use cron_expr::CronExpr;
use zone::{local, parse_zone, resolve_local};

/// How late an occurrence may still be sent when `catch_up` is not set: one hour.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(3600);

/// The `schedule:` block of a campaign file, as raw strings (types already checked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleInput<'a> {
    pub at: Option<&'a str>,
    pub cron: Option<&'a str>,
    pub timezone: Option<&'a str>,
    pub starts: Option<&'a str>,
    pub ends: Option<&'a str>,
    pub catch_up: Option<&'a str>,
    pub window: Option<&'a str>,
}

/// A problem with one key of the `schedule:` block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("schedule.{field}: {message}")]
pub struct ScheduleError {
    /// The key at fault: "at", "cron", "timezone", "starts", "ends", "catch_up",
    /// "window", or "schedule" for the block as a whole.
    pub field: &'static str,
    pub message: String,
    pub help: Option<String>,
}

impl ScheduleError {
    fn new(field: &'static str, message: impl Into<String>, help: Option<String>) -> Self {
        ScheduleError {
            field,
            message: message.into(),
            help,
        }
    }
}

/// Something about a valid schedule that its reader may not expect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleWarning {
    /// The key it is about ("cron").
    pub field: &'static str,
    /// A stable name for the warning, e.g. "cron-day-fields-and".
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
}

/// A parsed, valid schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    tz: Tz,
    starts: Option<Bound>,
    ends: Option<Bound>,
    catch_up: Duration,
    window: Option<Window>,
}

#[derive(Clone, Debug)]
enum Kind {
    At(DateTime<Utc>),
    Cron(CronExpr),
}

/// A bound as written and the instant it means (both bounds inclusive).
#[derive(Clone, Debug)]
struct Bound {
    source: String,
    instant: DateTime<Utc>,
}

/// One occurrence of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub instant: DateTime<Utc>,
    /// The same instant in the campaign's time zone.
    pub local: DateTime<Tz>,
}

impl Occurrence {
    fn new(instant: DateTime<Utc>, tz: Tz) -> Occurrence {
        Occurrence {
            instant,
            local: instant.with_timezone(&tz),
        }
    }

    /// RFC 3339 in the campaign's zone, e.g. `2026-11-27T09:00:00+07:00` (UTC is
    /// written `+00:00`); the `OCCURRENCE` of run ids `NAME@OCCURRENCE`.
    pub fn id(&self) -> String {
        self.local.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }
}

impl fmt::Display for Occurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// What the state store knows of an occurrence's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No run yet: `catch_up` decides whether it may still start.
    No,
    /// Started in time but not finished (interrupted, aborted, handed over with
    /// `--max-duration`): it resumes whatever its age, since it was first seen in time.
    Started,
    /// Completed, or recorded as missed.
    Done,
}

/// What a schedule asks for at a given moment (see [`Schedule::due`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// The latest occurrence at or before now, within `catch_up`, not done: send it.
    Due(Occurrence),
    /// The latest occurrence at or before now is older than `catch_up` and not done:
    /// the caller records it as missed; it is never sent late.
    Missed {
        occurrence: Occurrence,
        next: Option<Occurrence>,
    },
    /// The latest occurrence at or before now is already done (or recorded missed).
    Done {
        occurrence: Occurrence,
        next: Option<Occurrence>,
    },
    /// No occurrence at or before now (before `starts`, or the first one is ahead).
    NotYet { next: Option<Occurrence> },
    /// Past `ends`, no occurrence left, and the last one (if any) done or missed.
    Ended,
}

/// Parses and checks the `schedule:` block, reporting every problem found.
///
/// - exactly one of `at` (RFC 3339, or a local `2026-11-27T09:00` / `2026-11-27 09:00`
///   read in `timezone`) and `cron` (5 fields, 6 with seconds first, or a macro such
///   as `@daily`; crontab day-of-week numbering, 0 and 7 = Sunday);
/// - `timezone`: an IANA name, default UTC;
/// - `starts` / `ends`: a date (from local midnight / to the end of that local day,
///   inclusive) or a time; `ends` before `starts` is an error, and so is an `at`
///   outside them or a `cron` without occurrence between them;
/// - `catch_up`: a duration (`2h`, `30m`), default [`DEFAULT_CATCH_UP`] (1 hour);
/// - `window`: `HH:MM-HH:MM` local, may wrap midnight.
pub fn parse_schedule(input: &ScheduleInput<'_>) -> Result<Schedule, Vec<ScheduleError>> {
    let mut errors = Vec::new();

    let tz = match input.timezone {
        None => Tz::UTC,
        Some(name) => match parse_zone(name) {
            Ok(tz) => tz,
            Err(e) => {
                errors.push(ScheduleError::new("timezone", e.message, Some(e.help)));
                // Keep checking the rest as if UTC.
                Tz::UTC
            }
        },
    };

    let kind = match (input.at, input.cron) {
        (Some(_), Some(_)) => {
            errors.push(ScheduleError::new(
                "cron",
                "`at` and `cron` cannot both be set",
                Some("use `at` for a single occurrence or `cron` for a recurring one".into()),
            ));
            None
        }
        (None, None) => {
            errors.push(ScheduleError::new(
                "schedule",
                "a schedule needs `at` or `cron`",
                Some(
                    "e.g. `at: 2026-11-27T09:00:00+07:00` or `cron: \"0 9 * * MON-FRI\"`; \
                     leave `schedule` out to run the campaign only when asked"
                        .into(),
                ),
            ));
            None
        }
        (Some(at), None) => match parse_when(at, tz) {
            Ok(t) => Some(Kind::At(t)),
            Err(message) => {
                errors.push(ScheduleError::new("at", message, None));
                None
            }
        },
        (None, Some(expr)) => match CronExpr::parse(expr) {
            Ok(c) => Some(Kind::Cron(c)),
            Err(e) => {
                errors.push(ScheduleError::new("cron", e.message, e.help));
                None
            }
        },
    };

    let mut bound = |field: &'static str, text: Option<&str>, end: bool| {
        let text = text?;
        match parse_bound(text, tz, end) {
            Ok(instant) => Some(Bound {
                source: text.trim().to_owned(),
                instant,
            }),
            Err(message) => {
                errors.push(ScheduleError::new(field, message, None));
                None
            }
        }
    };
    let starts = bound("starts", input.starts, false);
    let ends = bound("ends", input.ends, true);
    if let (Some(s), Some(e)) = (&starts, &ends) {
        if e.instant < s.instant {
            errors.push(ScheduleError::new(
                "ends",
                format!("`ends` ({}) is before `starts` ({})", e.source, s.source),
                None,
            ));
        }
    }

    let catch_up = match input.catch_up {
        None => DEFAULT_CATCH_UP,
        Some(text) => match parse_duration(text) {
            Ok(d) => d,
            Err(message) => {
                errors.push(ScheduleError::new("catch_up", message, None));
                DEFAULT_CATCH_UP
            }
        },
    };

    let window = match input.window {
        None => None,
        Some(text) => match Window::parse(text) {
            Ok(w) => Some(w),
            Err(message) => {
                errors.push(ScheduleError::new("window", message, None));
                None
            }
        },
    };

    let Some(kind) = kind else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let schedule = Schedule {
        kind,
        tz,
        starts,
        ends,
        catch_up,
        window,
    };
    if let Some(error) = schedule.check_bounds() {
        return Err(vec![error]);
    }
    Ok(schedule)
}

impl Schedule {
    /// The campaign's time zone (UTC unless set).
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// How late an occurrence may still be sent (default: 1 hour).
    pub fn catch_up(&self) -> Duration {
        self.catch_up
    }

    /// What the schedule does that its reader may not expect: a `cron` whose day
    /// fields must both match because one of them starts with `*`.
    pub fn warnings(&self) -> Vec<ScheduleWarning> {
        match &self.kind {
            Kind::Cron(c) => c
                .day_rule_note()
                .map(|note| ScheduleWarning {
                    field: "cron",
                    code: "cron-day-fields-and",
                    message: format!("`{}`: {}", c.source(), note.message),
                    help: note.help.clone(),
                })
                .into_iter()
                .collect(),
            Kind::At(_) => Vec::new(),
        }
    }

    /// The local send window, if any.
    pub fn window(&self) -> Option<&Window> {
        self.window.as_ref()
    }

    /// The first instant occurrences may fall on (inclusive), if bounded.
    pub fn starts(&self) -> Option<DateTime<Utc>> {
        self.starts.as_ref().map(|b| b.instant)
    }

    /// The last instant occurrences may fall on (inclusive), if bounded.
    pub fn ends(&self) -> Option<DateTime<Utc>> {
        self.ends.as_ref().map(|b| b.instant)
    }

    /// The latest occurrence at or before `t`, within `starts`/`ends`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<Occurrence> {
        let t = match &self.ends {
            Some(e) => t.min(e.instant),
            None => t,
        };
        let instant = match &self.kind {
            Kind::At(at) => (*at <= t).then_some(*at),
            Kind::Cron(c) => cron_at_or_before(c, self.tz, t),
        }?;
        if self.starts.as_ref().is_some_and(|s| instant < s.instant) {
            return None;
        }
        Some(Occurrence::new(instant, self.tz))
    }

    /// The first occurrence strictly after `t`, within `starts`/`ends`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<Occurrence> {
        let from = match &self.starts {
            Some(s) if s.instant > t => before(s.instant),
            _ => t,
        };
        let instant = match &self.kind {
            Kind::At(at) => (*at > from).then_some(*at),
            Kind::Cron(c) => cron_after(c, self.tz, from),
        }?;
        if self.ends.as_ref().is_some_and(|e| instant > e.instant) {
            return None;
        }
        Some(Occurrence::new(instant, self.tz))
    }

    /// A short description, e.g. "cron `0 9 * * MON-FRI` in Asia/Ho_Chi_Minh".
    pub fn describe(&self) -> String {
        let mut text = match &self.kind {
            Kind::At(at) => {
                format!(
                    "once at {} in {}",
                    Occurrence::new(*at, self.tz).id(),
                    self.tz.name()
                )
            }
            Kind::Cron(c) => format!("cron `{}` in {}", c.source(), self.tz.name()),
        };
        if let Some(s) = &self.starts {
            text.push_str(&format!(", from {}", s.source));
        }
        if let Some(e) = &self.ends {
            text.push_str(&format!(", until {}", e.source));
        }
        text
    }

    /// Decides what is due at `now`. `is_done(occurrence_id)` says whether the state
    /// store already has that occurrence's run completed or recorded as missed.
    ///
    /// Only the latest occurrence at or before `now` is considered, never a backlog
    /// of older ones: if it is not done and at most `catch_up` old it is
    /// [`Due::Due`]; older, it is [`Due::Missed`] (never sent late).
    pub fn due(&self, now: DateTime<Utc>, is_done: impl Fn(&str) -> bool) -> Due {
        self.due_given(now, |id| if is_done(id) { Seen::Done } else { Seen::No })
    }

    /// [`Schedule::due`], told also which occurrences were started: a started one is
    /// due until it is done, however old (`catch_up` applies to when an occurrence is
    /// first seen, and a run handed over to the next CI job was seen in time).
    pub fn due_given(&self, now: DateTime<Utc>, seen: impl Fn(&str) -> Seen) -> Due {
        let next = self.next_after(now);
        let past_end = self.ends.as_ref().is_some_and(|e| now > e.instant);
        let Some(occurrence) = self.latest_at_or_before(now) else {
            if next.is_none() && past_end {
                return Due::Ended;
            }
            return Due::NotYet { next };
        };
        match seen(&occurrence.id()) {
            Seen::Done => {
                if next.is_none() && past_end {
                    return Due::Ended;
                }
                return Due::Done { occurrence, next };
            }
            Seen::Started => return Due::Due(occurrence),
            Seen::No => {}
        }
        let age = now - occurrence.instant;
        let within = match TimeDelta::from_std(self.catch_up) {
            Ok(catch_up) => age <= catch_up,
            Err(_) => true,
        };
        if within {
            Due::Due(occurrence)
        } else {
            Due::Missed { occurrence, next }
        }
    }

    /// An `at` outside the bounds, or a `cron` with no occurrence inside them.
    fn check_bounds(&self) -> Option<ScheduleError> {
        if self.starts.is_none() && self.ends.is_none() {
            return None;
        }
        match &self.kind {
            Kind::At(at) => {
                if let Some(s) = self.starts.as_ref().filter(|s| *at < s.instant) {
                    return Some(ScheduleError::new(
                        "at",
                        format!("`at` is before `starts` ({}): it would never run", s.source),
                        None,
                    ));
                }
                if let Some(e) = self.ends.as_ref().filter(|e| *at > e.instant) {
                    return Some(ScheduleError::new(
                        "at",
                        format!("`at` is after `ends` ({}): it would never run", e.source),
                        None,
                    ));
                }
                None
            }
            Kind::Cron(c) => {
                let from = self
                    .starts
                    .as_ref()
                    .map_or(DateTime::UNIX_EPOCH, |s| before(s.instant));
                if self.next_after(from).is_some() {
                    return None;
                }
                Some(ScheduleError::new(
                    "cron",
                    format!(
                        "`{}` has no occurrence between `starts` and `ends`",
                        c.source()
                    ),
                    None,
                ))
            }
        }
    }
}

/// Upper bound on wall-clock steps in one search (a per-second cron across a repeated
/// hour needs 3,600).
const MAX_STEPS: usize = 100_000;

/// The latest cron occurrence whose instant is at or before `t`.
///
/// Occurrences are naive local times mapped with [`resolve_local`], which never
/// decreases; every local time at or before the wall time of `t` maps to `t` or
/// earlier, and after clocks went back some later wall times do too.
fn cron_at_or_before(c: &CronExpr, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let wall = local(tz, t);
    let mut best = c.at_or_before(wall).map(|n| resolve_local(tz, n));
    let mut cursor = wall;
    for _ in 0..MAX_STEPS {
        let Some(n) = c.next_after(cursor) else { break };
        let u = resolve_local(tz, n);
        if u > t {
            break;
        }
        best = Some(u);
        cursor = n;
    }
    best
}

/// The first cron occurrence whose instant is strictly after `t`.
fn cron_after(c: &CronExpr, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut cursor = local(tz, t);
    for _ in 0..MAX_STEPS {
        let n = c.next_after(cursor)?;
        let u = resolve_local(tz, n);
        if u > t {
            return Some(u);
        }
        cursor = n;
    }
    None
}

/// The instant just before `t` (one nanosecond), or `t` at the lower limit.
fn before(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_sub_signed(TimeDelta::nanoseconds(1)).unwrap_or(t)
}

/// `starts` (a date: local midnight) or `ends` (a date: the end of that local day).
fn parse_bound(text: &str, tz: Tz, end: bool) -> Result<DateTime<Utc>, String> {
    let trimmed = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        if !(1..=9999).contains(&date.year()) {
            return Err(format!("date `{text}` is out of range (years 1-9999)"));
        }
        if !end {
            return Ok(resolve_local(tz, date.and_time(chrono::NaiveTime::MIN)));
        }
        let next_day = date
            .succ_opt()
            .ok_or_else(|| format!("invalid date `{text}`: out of range"))?;
        let next_midnight = resolve_local(tz, next_day.and_time(chrono::NaiveTime::MIN));
        return Ok(before(next_midnight));
    }
    parse_when(trimmed, tz).map_err(|e| {
        if e.contains("out of range") {
            return e;
        }
        format!(
            "invalid date or time `{text}`: expected a date such as 2026-11-01, or a time \
             such as 2026-11-01T09:00:00+07:00 or 2026-11-01 09:00 (read in {})",
            tz.name()
        )
    })
}

/// Parses a duration: a number with a unit, e.g. "10s", "30m", "2h", "1h 30m", "1d".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let trimmed = s.trim();
    let forms = "use a number with a unit, e.g. \"10s\", \"30m\", \"2h\" or \"1h 30m\"";
    if trimmed.is_empty() {
        return Err(format!("empty duration: {forms}"));
    }
    humantime::parse_duration(trimmed).map_err(|e| format!("invalid duration `{s}` ({e}): {forms}"))
}

/// Parses a point in time: RFC 3339 (`2026-11-27T09:00:00+07:00`, `…Z`), or a local
/// `YYYY-MM-DDTHH:MM[:SS]` / `YYYY-MM-DD HH:MM[:SS]` read in `tz` (a local time
/// skipped by a clock change means the first instant after the gap; one that happens
/// twice, the earlier).
pub fn parse_when(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let trimmed = s.trim();
    let in_range = |t: DateTime<Utc>| {
        if (1..=9999).contains(&t.year()) {
            Ok(t)
        } else {
            Err(format!("time `{s}` is out of range (years 1-9999)"))
        }
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        return in_range(t.with_timezone(&Utc));
    }
    const LOCAL_FORMS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ];
    for form in LOCAL_FORMS {
        if let Ok(n) = NaiveDateTime::parse_from_str(trimmed, form) {
            return in_range(resolve_local(tz, n));
        }
    }
    Err(format!(
        "invalid time `{s}`: expected RFC 3339 such as 2026-11-27T09:00:00+07:00, or a local \
         time such as 2026-11-27T09:00 or 2026-11-27 09:00 (read in {})",
        tz.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catch_up_is_one_hour() {
        let s = parse_schedule(&ScheduleInput {
            cron: Some("0 9 * * *"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.catch_up(), Duration::from_secs(3600));
        assert_eq!(s.timezone(), Tz::UTC);
    }

    #[test]
    fn all_errors_are_reported() {
        let errors = parse_schedule(&ScheduleInput {
            cron: Some("0 9 * *"),
            timezone: Some("Hanoi"),
            catch_up: Some("soon"),
            window: Some("9-5"),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["timezone", "cron", "catch_up", "window"]);
    }
}
