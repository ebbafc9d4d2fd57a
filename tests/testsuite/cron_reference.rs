//! Cron occurrences checked against a reference that knows nothing of the schedule
//! module: it walks instants minute by minute and asks, of each, "is this an
//! occurrence?" straight from crontab's rules and the zone's wall clock.
//!
//! The rules the reference encodes (README, "Schedules"):
//! - fields expand as crontab does; in day-of-week 7 is Sunday, and `*/n` and `a/n`
//!   run to Saturday, never on to 7;
//! - day-of-month and day-of-week: either matches when both restrict, both must match
//!   when either is written starting with `*`;
//! - a matching wall time that happens twice runs once, at the earlier instant;
//! - matching wall times skipped when clocks go forward run once, at the first instant
//!   after the gap.
//!
//! Expressions, zones and instants are random; instants cluster around the zones'
//! 2026-27 clock changes, where mistakes live. `SMAX_CRON_CASES=N` runs N cases.

use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use smax_campaign::schedule::{parse_schedule, Schedule, ScheduleInput};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Zones with every kind of clock: DST by an hour, by 30 minutes (Lord Howe), at
/// midnight (Santiago), negative (Dublin), suspended for Ramadan (Casablanca); offsets
/// of 45 minutes (Kathmandu, Chatham) and -3:30 (St John's); none at all.
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "America/St_Johns",
    "Asia/Ho_Chi_Minh",
];

/// How far the reference looks, each way: eight days of minutes.
const HORIZON_MINUTES: i64 = 8 * 24 * 60;

#[derive(Clone, Debug)]
enum Item {
    Star,
    StarStep(u32),
    Value(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
    ValueStep(u32, u32),
}

#[derive(Clone, Copy)]
struct Bounds {
    min: u32,
    /// The largest value accepted (7 in day-of-week).
    max: u32,
    /// The end of the field's cycle: where `*` and `a/n` stop (6 in day-of-week).
    last: u32,
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    last: 59,
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    last: 23,
};
const DAY_OF_MONTH: Bounds = Bounds {
    min: 1,
    max: 31,
    last: 31,
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    last: 12,
};
const DAY_OF_WEEK: Bounds = Bounds {
    min: 0,
    max: 7,
    last: 6,
};

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Debug)]
struct Field {
    items: Vec<Item>,
    /// Day-of-week values written as names.
    named: bool,
}

impl Field {
    fn text(&self) -> String {
        let value = |v: u32| {
            if self.named {
                DAY_NAMES[v as usize].to_owned()
            } else {
                v.to_string()
            }
        };
        self.items
            .iter()
            .map(|item| match *item {
                Item::Star => "*".to_owned(),
                Item::StarStep(s) => format!("*/{s}"),
                Item::Value(v) => value(v),
                Item::Range(a, b) => format!("{}-{}", value(a), value(b)),
                Item::RangeStep(a, b, s) => format!("{}-{}/{s}", value(a), value(b)),
                Item::ValueStep(v, s) => format!("{}/{s}", value(v)),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn starts_with_star(&self) -> bool {
        matches!(self.items.first(), Some(Item::Star | Item::StarStep(_)))
    }

    /// The values allowed, as crontab reads them.
    fn allowed(&self, b: Bounds) -> u64 {
        let mut bits = 0u64;
        let mut set = |values: &mut dyn Iterator<Item = u32>| {
            for v in values {
                bits |= 1 << v;
            }
        };
        for item in &self.items {
            match *item {
                Item::Star => set(&mut (b.min..=b.last)),
                Item::StarStep(s) => set(&mut (b.min..=b.last).step_by(s as usize)),
                Item::Value(v) => set(&mut (v..=v)),
                Item::Range(x, y) => set(&mut (x..=y)),
                Item::RangeStep(x, y, s) => set(&mut (x..=y).step_by(s as usize)),
                Item::ValueStep(v, s) => set(&mut (v..=b.last.max(v)).step_by(s as usize)),
            }
        }
        bits
    }
}

#[derive(Clone, Debug)]
struct Expr {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Expr {
    fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.minute.text(),
            self.hour.text(),
            self.dom.text(),
            self.month.text(),
            self.dow.text()
        )
    }
}

/// The expression as bit sets, and the day rule.
struct Matcher {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    both_days: bool,
}

impl Matcher {
    fn new(e: &Expr) -> Matcher {
        let mut dow = e.dow.allowed(DAY_OF_WEEK);
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Matcher {
            minute: e.minute.allowed(MINUTE),
            hour: e.hour.allowed(HOUR),
            dom: e.dom.allowed(DAY_OF_MONTH),
            month: e.month.allowed(MONTH),
            dow,
            both_days: e.dom.starts_with_star() || e.dow.starts_with_star(),
        }
    }

    fn matches(&self, wall: NaiveDateTime) -> bool {
        let has = |bits: u64, v: u32| bits & (1 << v) != 0;
        if !(has(self.minute, wall.minute())
            && has(self.hour, wall.hour())
            && has(self.month, wall.month()))
        {
            return false;
        }
        let dom = has(self.dom, wall.day());
        let dow = has(self.dow, wall.weekday().num_days_from_sunday());
        if self.both_days {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn wall(tz: Tz, u: DateTime<Utc>) -> NaiveDateTime {
    u.with_timezone(&tz).naive_local()
}

/// Is the whole minute `u` an occurrence? Asked only of the clock as it reads at each
/// instant (UTC to wall time), never of a local-to-instant mapping.
fn occurs(m: &Matcher, tz: Tz, u: DateTime<Utc>) -> bool {
    let now = wall(tz, u);
    if m.matches(now) && first_time_on_the_wall(tz, u, now) {
        return true;
    }
    // Clocks went forward between the previous minute and this one: the wall times
    // skipped over run now.
    let before = wall(tz, u - TimeDelta::minutes(1));
    let mut skipped = before + TimeDelta::minutes(1);
    while skipped < now {
        if m.matches(skipped) {
            return true;
        }
        skipped += TimeDelta::minutes(1);
    }
    false
}

/// Has the wall clock not shown `now` before `u`? It can have only if it was turned
/// back within the last few hours.
fn first_time_on_the_wall(tz: Tz, u: DateTime<Utc>, now: NaiveDateTime) -> bool {
    const LOOK_BACK: i64 = 3 * 60;
    if wall(tz, u - TimeDelta::minutes(LOOK_BACK)) + TimeDelta::minutes(LOOK_BACK) == now {
        return true;
    }
    (1..=LOOK_BACK).all(|k| wall(tz, u - TimeDelta::minutes(k)) != now)
}

/// What kind of instant an occurrence is, for the coverage counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// The first instant after clocks went forward.
    AfterGap,
    /// A wall time the clock shows twice (this is its first showing).
    Repeated,
    Plain,
}

fn kind(tz: Tz, u: DateTime<Utc>) -> Kind {
    let now = wall(tz, u);
    if wall(tz, u - TimeDelta::minutes(1)) + TimeDelta::minutes(1) < now {
        return Kind::AfterGap;
    }
    let shown_again = (1..=3 * 60).any(|k| wall(tz, u + TimeDelta::minutes(k)) == now);
    if shown_again {
        Kind::Repeated
    } else {
        Kind::Plain
    }
}

fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = t.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(seconds, 0).expect("in range")
}

/// The first occurrence strictly after `t` within the horizon.
fn reference_next(m: &Matcher, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let first = floor_minute(t) + TimeDelta::minutes(1);
    (0..HORIZON_MINUTES)
        .map(|i| first + TimeDelta::minutes(i))
        .find(|u| occurs(m, tz, *u))
}

/// The last occurrence at or before `t` within the horizon.
fn reference_latest(m: &Matcher, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let last = floor_minute(t);
    (0..HORIZON_MINUTES)
        .map(|i| last - TimeDelta::minutes(i))
        .find(|u| occurs(m, tz, *u))
}

fn offset_seconds(tz: Tz, u: DateTime<Utc>) -> i32 {
    u.with_timezone(&tz).offset().fix().local_minus_utc()
}

/// Every instant in 2026-27 at which the zone's offset changes, to the minute.
fn transitions(tz: Tz) -> &'static [DateTime<Utc>] {
    static ALL: OnceLock<HashMap<&'static str, Vec<DateTime<Utc>>>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        ZONES
            .iter()
            .map(|name| {
                let zone: Tz = name.parse().expect("zone");
                let changed = |u: DateTime<Utc>, step: TimeDelta| {
                    offset_seconds(zone, u) != offset_seconds(zone, u - step)
                };
                let changes = (0..2 * 365 * 24)
                    .map(|h| start + TimeDelta::hours(h))
                    .filter(|u| changed(*u, TimeDelta::hours(1)))
                    .filter_map(|hour| {
                        (0..60)
                            .map(|m| hour - TimeDelta::minutes(59 - m))
                            .find(|u| changed(*u, TimeDelta::minutes(1)))
                    })
                    .collect();
                (*name, changes)
            })
            .collect()
    });
    all.get(tz.name()).map_or(&[], Vec::as_slice)
}

fn field(b: Bounds, star_weight: u32) -> impl Strategy<Value = Field> {
    let value = b.min..=b.max;
    let step = 1..=b.max;
    let item = prop_oneof![
        star_weight => Just(Item::Star),
        2 => step.clone().prop_map(Item::StarStep),
        4 => value.clone().prop_map(Item::Value),
        2 => (value.clone(), value.clone()).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        1 => (value.clone(), value.clone(), step.clone())
            .prop_map(|(a, b, s)| Item::RangeStep(a.min(b), a.max(b), s)),
        2 => (value, step).prop_map(|(v, s)| Item::ValueStep(v, s)),
    ];
    (prop::collection::vec(item, 1..=3), any::<bool>())
        .prop_map(|(items, named)| Field { items, named })
}

/// Hours around the small hours, where clocks change, more often than the rest.
fn hour_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(vec![0u32, 1, 2, 3, 23]), 1..=2)
            .prop_map(|hours| Field {
                items: hours.into_iter().map(Item::Value).collect(),
                named: false,
            }),
        2 => field(HOUR, 3),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    (
        field(MINUTE, 2),
        hour_field(),
        field(DAY_OF_MONTH, 12),
        field(MONTH, 30),
        field(DAY_OF_WEEK, 8),
    )
        .prop_map(|(minute, hour, dom, month, mut dow)| {
            // Names only where the tool takes them; month names are tested elsewhere.
            // 7 has no name of its own: `SUN` is 0, which would shorten `5-7` to `FRI-SUN`.
            let numeric = |f: Field| Field { named: false, ..f };
            dow.named &= !dow.items.iter().any(|i| match *i {
                Item::Value(v) | Item::ValueStep(v, _) => v == 7,
                Item::Range(_, b) | Item::RangeStep(_, b, _) => b == 7,
                Item::Star | Item::StarStep(_) => false,
            });
            Expr {
                minute: numeric(minute),
                hour: numeric(hour),
                dom: numeric(dom),
                month: numeric(month),
                dow,
            }
        })
}

/// An instant near one of the zone's clock changes, or anywhere in 2026-27, sometimes
/// between whole minutes.
fn instant_in(tz: Tz) -> impl Strategy<Value = DateTime<Utc>> {
    let changes = transitions(tz).to_vec();
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let anywhere = (0i64..2 * 365 * 24 * 60).prop_map(move |m| start + TimeDelta::minutes(m));
    let span = 2 * 365 * 24 * 60;
    let near_change =
        (any::<prop::sample::Index>(), -36 * 60i64..=36 * 60).prop_map(move |(i, m)| {
            if changes.is_empty() {
                // A zone without clock changes: anywhere in the two years.
                start + TimeDelta::minutes(i.index(span) as i64)
            } else {
                changes[i.index(changes.len())] + TimeDelta::minutes(m)
            }
        });
    (
        prop_oneof![1 => anywhere, 3 => near_change],
        0i64..3,
        0i64..60,
    )
        .prop_map(|(t, kind, second)| match kind {
            0 => t + TimeDelta::seconds(second),
            _ => t,
        })
}

fn case() -> impl Strategy<Value = (Expr, Tz, DateTime<Utc>)> {
    (expr(), prop::sample::select(ZONES)).prop_flat_map(|(e, zone)| {
        let tz: Tz = zone.parse().expect("zone");
        (Just(e), Just(tz), instant_in(tz))
    })
}

fn schedule(text: &str, tz: Tz) -> Result<Option<Schedule>, TestCaseError> {
    match parse_schedule(&ScheduleInput {
        cron: Some(text),
        timezone: Some(tz.name()),
        ..Default::default()
    }) {
        Ok(s) => Ok(Some(s)),
        // A day-of-month the months allowed never have (`31` in `4,6`): the only
        // refusal a generated expression may get.
        Err(e) if e.iter().all(|e| e.message.contains("never matches")) => Ok(None),
        Err(e) => Err(TestCaseError::fail(format!("`{text}` refused: {e:?}"))),
    }
}

fn cases() -> u32 {
    std::env::var("SMAX_CRON_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(160)
}

/// Compares the tool's next occurrence after `t` and latest at or before `t` with the
/// reference's; returns the kinds of the instants the reference found.
fn compare(e: &Expr, tz: Tz, t: DateTime<Utc>) -> Result<Vec<Kind>, TestCaseError> {
    let text = e.text();
    let Some(s) = schedule(&text, tz)? else {
        return Ok(Vec::new());
    };
    let m = Matcher::new(e);
    // The last minutes the reference looks at, each way.
    let last_after = floor_minute(t) + TimeDelta::minutes(HORIZON_MINUTES);
    let last_before = floor_minute(t) - TimeDelta::minutes(HORIZON_MINUTES - 1);
    let mut kinds = Vec::new();

    let next = s.next_after(t).map(|o| o.instant);
    match reference_next(&m, tz, t) {
        Some(expected) => {
            prop_assert_eq!(
                next,
                Some(expected),
                "next after {} of `{}` in {}",
                t,
                text,
                tz.name()
            );
            kinds.push(kind(tz, expected));
        }
        None => prop_assert!(
            next.is_none_or(|n| n > last_after),
            "next after {t} of `{text}` in {}: the tool says {next:?}, the reference \
             finds none within {HORIZON_MINUTES} minutes",
            tz.name()
        ),
    }

    let latest = s.latest_at_or_before(t).map(|o| o.instant);
    match reference_latest(&m, tz, t) {
        Some(expected) => {
            prop_assert_eq!(
                latest,
                Some(expected),
                "latest at or before {} of `{}` in {}",
                t,
                text,
                tz.name()
            );
            kinds.push(kind(tz, expected));
        }
        None => prop_assert!(
            latest.is_none_or(|l| l < last_before),
            "latest at or before {t} of `{text}` in {}: the tool says {latest:?}, the \
             reference finds none within {HORIZON_MINUTES} minutes",
            tz.name()
        ),
    }
    Ok(kinds)
}

#[test]
fn next_and_latest_occurrences_agree_with_a_minute_by_minute_reference() {
    let config = Config {
        cases: cases(),
        // Deterministic: the same cases on every run and every machine.
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &[13; 32],
        ),
    );
    let seen = std::cell::RefCell::new(HashMap::<Kind, usize>::new());
    let result = runner.run(&case(), |(e, tz, t)| {
        for k in compare(&e, tz, t)? {
            *seen.borrow_mut().entry(k).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("occurrences compared, by kind: {:?}", seen.borrow());
}

/// Every clock change of 2026-27 in every zone, with daily times at and around it:
/// the random cases above reach a gap or a repeated hour only now and then.
#[test]
fn daily_times_at_every_clock_change_agree_with_the_reference() {
    let mut seen = HashMap::<Kind, usize>::new();
    for zone in ZONES {
        let tz: Tz = zone.parse().expect("zone");
        for &change in transitions(tz) {
            let mut hours: Vec<u32> = (-4..=4)
                .map(|k| wall(tz, change + TimeDelta::minutes(30 * k)).hour())
                .collect();
            hours.sort_unstable();
            hours.dedup();
            for hour in hours {
                for minute in [0, 15, 29, 30, 45, 59] {
                    let at = |v: u32| Field {
                        items: vec![Item::Value(v)],
                        named: false,
                    };
                    let every = || Field {
                        items: vec![Item::Star],
                        named: false,
                    };
                    let e = Expr {
                        minute: at(minute),
                        hour: at(hour),
                        dom: every(),
                        month: every(),
                        dow: every(),
                    };
                    for t in [change - TimeDelta::hours(3), change + TimeDelta::hours(3)] {
                        let kinds = compare(&e, tz, t).unwrap_or_else(|e| panic!("{e}"));
                        for k in kinds {
                            *seen.entry(k).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("occurrences compared, by kind: {seen:?}");
    assert!(
        seen.get(&Kind::AfterGap).copied().unwrap_or(0) >= 20,
        "{seen:?}"
    );
    assert!(
        seen.get(&Kind::Repeated).copied().unwrap_or(0) >= 20,
        "{seen:?}"
    );
}
