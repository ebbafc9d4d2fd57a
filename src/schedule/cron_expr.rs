//! Crontab expressions: checked field by field with crontab semantics, then handed to
//! the `cron` crate in a form it cannot misread.
//!
//! What the crate would get wrong if given the expression as written:
//! - it wants seconds first (6 or 7 fields); a crontab has 5 fields without seconds;
//! - it numbers days of the week 1-7 with 1 = Sunday, crontab 0-7 with 0 and 7 = Sunday;
//! - when both day-of-month and day-of-week are restricted it requires both to match,
//!   crontab runs when either matches (unless one of them is written starting with
//!   `*`, even `*/2`: then crontab too requires both).
//!
//! So every field is parsed here into the set of values it allows, and the crate gets
//! explicit lists (days of the week by name). Day-of-month OR day-of-week becomes the
//! union of two crate schedules.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use std::str::FromStr;

/// A validated crontab expression.
#[derive(Clone, Debug)]
pub(crate) struct CronExpr {
    source: String,
    /// Occurrences are the union of these (one, or two for day-of-month OR day-of-week).
    schedules: Vec<cron::Schedule>,
    /// Set when a day field starting with `*` makes both day fields required where a
    /// reader of "either matches" would expect a union.
    day_rule: Option<CronError>,
}

/// What is wrong with an expression, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CronError {
    pub message: String,
    pub help: Option<String>,
}

impl CronError {
    fn new(message: impl Into<String>, help: Option<&str>) -> Self {
        CronError {
            message: message.into(),
            help: help.map(str::to_owned),
        }
    }
}

const FORMS_HELP: &str = "use 5 fields `minute hour day-of-month month day-of-week` \
     (e.g. `0 9 * * MON-FRI`), 6 with seconds first, or @hourly, @daily, @weekly, \
     @monthly, @yearly";

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Accepted names and their values (matched case-insensitively).
    names: &'static [(&'static str, u32)],
    /// What the field accepts, for messages.
    accepts: &'static str,
    /// What a range would wrap around, for messages ("week", "day").
    cycle: &'static str,
}

impl FieldSpec {
    fn is_day_of_week(&self) -> bool {
        self.name == DAY_OF_WEEK.name
    }

    /// The last distinct value: 6 for day-of-week, where 7 repeats Sunday.
    fn max_in_cycle(&self) -> u32 {
        if self.is_day_of_week() {
            6
        } else {
            self.max
        }
    }

    /// The short name of a value (`SUN` for 0 and 7, `JAN` for 1), if the field has
    /// names: the first of its names, which are the three-letter ones.
    fn name_of(&self, v: u32) -> Option<String> {
        let v = if self.is_day_of_week() { v % 7 } else { v };
        self.names
            .iter()
            .find(|(_, n)| *n == v)
            .map(|(name, _)| name.to_ascii_uppercase())
    }
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    accepts: "0-59",
    cycle: "minute",
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    accepts: "0-59",
    cycle: "hour",
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    accepts: "0-23",
    cycle: "day",
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    accepts: "1-31",
    cycle: "month",
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
        ("january", 1),
        ("february", 2),
        ("march", 3),
        ("april", 4),
        ("june", 6),
        ("july", 7),
        ("august", 8),
        ("september", 9),
        ("october", 10),
        ("november", 11),
        ("december", 12),
    ],
    accepts: "1-12 or JAN-DEC",
    cycle: "year",
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
        ("sunday", 0),
        ("monday", 1),
        ("tuesday", 2),
        ("wednesday", 3),
        ("thursday", 4),
        ("friday", 5),
        ("saturday", 6),
    ],
    accepts: "0-7 (0 and 7 = Sunday) or SUN-SAT",
    cycle: "week",
};

/// Day names as the `cron` crate reads them, indexed by crontab number (0 = Sunday).
const CRATE_DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One parsed field: the allowed values as a bit set, and whether it was written
/// starting with `*` (or `?`), which is what crontab looks at to decide between
/// day-of-month AND day-of-week (one starred) and OR (neither starred).
struct Field {
    bits: u64,
    starred: bool,
}

impl CronExpr {
    /// Parses a crontab expression (5 fields, 6 with seconds first, or a macro).
    pub(crate) fn parse(expression: &str) -> Result<CronExpr, CronError> {
        let source = expression.trim().to_owned();
        if source.is_empty() {
            return Err(CronError::new(
                "the cron expression is empty",
                Some(FORMS_HELP),
            ));
        }
        let expanded = match source.strip_prefix('@') {
            Some(name) => macro_expansion(name)?,
            None => source.clone(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match parts.len() {
            5 => (None, &parts[..]),
            6 => (Some(parts[0]), &parts[1..]),
            7 => {
                return Err(CronError::new(
                    format!(
                        "`{source}` has 7 fields; a year field is not supported \
                         (the 7th field `{}` looks like one)",
                        parts[6]
                    ),
                    Some(FORMS_HELP),
                ))
            }
            n => {
                return Err(CronError::new(
                    format!(
                        "`{source}` has {n} field{}; expected 5 (or 6 with seconds first)",
                        {
                            if n == 1 {
                                ""
                            } else {
                                "s"
                            }
                        }
                    ),
                    Some(FORMS_HELP),
                ))
            }
        };
        let offset = usize::from(second.is_some());
        let second = match second {
            Some(text) => parse_field(text, &SECOND, 1)?,
            None => Field {
                bits: 1,
                starred: false,
            },
        };
        let minute = parse_field(rest[0], &MINUTE, 1 + offset)?;
        let hour = parse_field(rest[1], &HOUR, 2 + offset)?;
        let dom = parse_field(rest[2], &DAY_OF_MONTH, 3 + offset)?;
        let month = parse_field(rest[3], &MONTH, 4 + offset)?;
        let mut dow = parse_field(rest[4], &DAY_OF_WEEK, 5 + offset)?;
        // Crontab: 7 is Sunday too.
        if dow.bits & (1 << 7) != 0 {
            dow.bits = (dow.bits & !(1 << 7)) | 1;
        }
        let day_rule = day_rule_note(&parts, offset, &dom, &dow);

        let head = format!(
            "{} {} {}",
            numbers(second.bits, &SECOND),
            numbers(minute.bits, &MINUTE),
            numbers(hour.bits, &HOUR)
        );
        let month_text = numbers(month.bits, &MONTH);
        let dom_text = numbers(dom.bits, &DAY_OF_MONTH);
        let dow_text = day_names(dow.bits);
        let crate_expressions = if !dom.starred && !dow.starred {
            // Crontab: either day field matching is enough.
            vec![
                format!("{head} {dom_text} {month_text} *"),
                format!("{head} * {month_text} {dow_text}"),
            ]
        } else {
            vec![format!("{head} {dom_text} {month_text} {dow_text}")]
        };
        let mut schedules = Vec::with_capacity(crate_expressions.len());
        for text in &crate_expressions {
            match cron::Schedule::from_str(text) {
                Ok(schedule) => schedules.push(schedule),
                Err(e) => {
                    return Err(CronError::new(
                        format!("`{source}` could not be read: {e}"),
                        Some(FORMS_HELP),
                    ))
                }
            }
        }
        let expr = CronExpr {
            source,
            schedules,
            day_rule,
        };
        let epoch = chrono::DateTime::UNIX_EPOCH.naive_utc();
        if expr.next_after(epoch).is_none() {
            return Err(CronError::new(
                format!("`{}` never matches a real date", expr.source),
                Some("check the day-of-month against the month (e.g. there is no 30 February)"),
            ));
        }
        Ok(expr)
    }

    /// The expression as written (trimmed).
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// A warning for an expression whose day fields are ANDed where the usual reading
    /// of crontab ("either day field matches") would expect a union: one of them
    /// starts with `*` but restricts (`*/2`) or is written with a step (`*/1`).
    pub(crate) fn day_rule_note(&self) -> Option<&CronError> {
        self.day_rule.as_ref()
    }

    /// First naive local time strictly after `after` (read on whole seconds).
    pub(crate) fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        // The crate only knows years 1970-2100 (and would overflow at the extremes).
        if after.year() > 2100 {
            return None;
        }
        let after = truncate(after.max(CRATE_FLOOR)).and_utc();
        self.schedules
            .iter()
            .filter_map(|s| s.after(&after).next())
            .min()
            .map(|d| d.naive_utc())
    }

    /// Last naive local time at or before `at`.
    pub(crate) fn at_or_before(&self, at: NaiveDateTime) -> Option<NaiveDateTime> {
        if at.year() < 1970 {
            return None;
        }
        let at = at.min(CRATE_CEILING);
        // The crate's backward search is strictly before its argument.
        let bound = truncate(at)
            .checked_add_signed(chrono::TimeDelta::seconds(1))?
            .and_utc();
        self.schedules
            .iter()
            .filter_map(|s| s.after(&bound).next_back())
            .max()
            .map(|d| d.naive_utc())
    }
}

/// Clamps keeping the crate's arithmetic (±1 s) away from chrono's limits.
const CRATE_FLOOR: NaiveDateTime = match NaiveDate::from_ymd_opt(1969, 12, 31) {
    Some(d) => d.and_time(NaiveTime::MIN),
    None => NaiveDateTime::MIN,
};
const CRATE_CEILING: NaiveDateTime = match NaiveDate::from_ymd_opt(2101, 1, 1) {
    Some(d) => d.and_time(NaiveTime::MIN),
    None => NaiveDateTime::MAX,
};

fn truncate(t: NaiveDateTime) -> NaiveDateTime {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

fn macro_expansion(name: &str) -> Result<String, CronError> {
    let expansion = match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        "reboot" => {
            return Err(CronError::new(
                "`@reboot` has no meaning for a campaign schedule",
                Some(FORMS_HELP),
            ))
        }
        _ => {
            return Err(CronError::new(
                format!("unknown cron macro `@{name}`"),
                Some(FORMS_HELP),
            ))
        }
    };
    Ok(expansion.to_owned())
}

fn ordinal(n: usize) -> &'static str {
    match n {
        1 => "1st",
        2 => "2nd",
        3 => "3rd",
        4 => "4th",
        5 => "5th",
        _ => "6th",
    }
}

fn parse_field(text: &str, spec: &FieldSpec, position: usize) -> Result<Field, CronError> {
    let fail = |problem: String| {
        CronError::new(
            format!(
                "{} field ({}) `{text}`: {problem}",
                ordinal(position),
                spec.name
            ),
            Some(&format!(
                "the {} field accepts {}, `*`, ranges `a-b`, lists `a,b` and steps `*/n`",
                spec.name, spec.accepts
            )),
        )
    };
    let items: Vec<(&str, Result<Span, String>)> = text
        .split(',')
        .map(|item| (item, parse_item(item, spec)))
        .collect();
    let mut bits = 0u64;
    for (_, parsed) in &items {
        let span = parsed.as_ref().map_err(|problem| fail(problem.clone()))?;
        if span.low > span.high {
            // Every backwards item written out, the rest as they were.
            let field = items
                .iter()
                .map(|(item, parsed)| match parsed {
                    Ok(s) if s.low > s.high => s.written_out(spec),
                    _ => (*item).to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",");
            let why = if spec.is_day_of_week() && span.low == 7 {
                "7 is the Sunday that ends the week".to_owned()
            } else {
                format!("ranges do not wrap around the end of the {}", spec.cycle)
            };
            return Err(fail(format!(
                "range `{}` runs backwards: {why}; write `{field}` instead",
                span.base
            )));
        }
        for v in (span.low..=span.high).step_by(span.step as usize) {
            bits |= 1 << v;
        }
    }
    let starred = text.starts_with('*') || text.starts_with('?');
    Ok(Field { bits, starred })
}

/// One list item of a field: the values from `low` to `high` every `step` (`low` above
/// `high` for a range written backwards, which is refused).
struct Span<'a> {
    /// The item without its step, for messages.
    base: &'a str,
    low: u32,
    high: u32,
    step: u32,
    /// Written with names (`FRI-SUN`), so suggestions use names too.
    named: bool,
}

fn parse_item<'a>(item: &'a str, spec: &FieldSpec) -> Result<Span<'a>, String> {
    if item.is_empty() {
        return Err("empty list item".to_owned());
    }
    if is_quartz(item) {
        return Err(format!(
            "`{item}`: the Quartz extensions L, W and # are not supported"
        ));
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => match step.parse::<u32>() {
            Ok(n) if n >= 1 && n <= spec.max => (base, Some(n)),
            Ok(_) => return Err(format!("step `/{step}` must be between 1 and {}", spec.max)),
            Err(_) => return Err(format!("step `/{step}` is not a number")),
        },
        None => (item, None),
    };
    let (low, high) = if base == "*" || base == "?" {
        if base == "?" && spec.name != DAY_OF_MONTH.name && !spec.is_day_of_week() {
            return Err("`?` is only allowed in the day fields".to_owned());
        }
        (spec.min, spec.max_in_cycle())
    } else if let Some((a, b)) = split_range(base) {
        (value(a, spec)?, value(b, spec)?)
    } else {
        let v = value(base, spec)?;
        // `a/n` means from a to the end of the field, every n. The week ends on
        // Saturday: 7 is another name for Sunday, not an eighth day.
        let high = match step {
            Some(_) => spec.max_in_cycle().max(v),
            None => v,
        };
        (v, high)
    };
    Ok(Span {
        base,
        low,
        high,
        step: step.unwrap_or(1),
        named: base.chars().any(|c| c.is_ascii_alphabetic()),
    })
}

impl Span<'_> {
    /// A backwards range written out as what it means, keeping names when the range was
    /// written with names: `FRI-SUN` as `FRI,SAT,SUN`, hours `22-2` as `22,23,0,1,2`, and
    /// when that is longer than a week, as two ranges (days `25-3` as `25-31,1-3`).
    fn written_out(&self, spec: &FieldSpec) -> String {
        let (low, high, step, named) = (self.low, self.high, self.step, self.named);
        let as_written = |v: u32| match spec.name_of(v) {
            Some(name) if named => name,
            _ => v.to_string(),
        };
        // `7-2` is Sunday to Tuesday: backwards only as written.
        let low = if spec.is_day_of_week() && low == 7 {
            0
        } else {
            low
        };
        if low <= high {
            let range = if low == high {
                as_written(low)
            } else {
                format!("{}-{}", as_written(low), as_written(high))
            };
            return match step {
                1 => range,
                n => format!("{range}/{n}"),
            };
        }
        let sequence: Vec<u32> = (low..=spec.max_in_cycle())
            .chain(spec.min..=high)
            .step_by(step as usize)
            .collect();
        if step == 1 && sequence.len() > 7 {
            let part = |a: u32, b: u32| {
                if a == b {
                    as_written(a)
                } else {
                    format!("{}-{}", as_written(a), as_written(b))
                }
            };
            return format!(
                "{},{}",
                part(low, spec.max_in_cycle()),
                part(spec.min, high)
            );
        }
        sequence
            .iter()
            .map(|v| as_written(*v))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Crontab's day rule, where it surprises: when both day fields restrict, either one
/// matching is enough, but a field starting with `*` (even `*/2`) counts as
/// unrestricted, so then both must match. That is what Vixie cron and cronie do and
/// what this tool does; a reader who knows only the first half expects a union.
fn day_rule_note(parts: &[&str], offset: usize, dom: &Field, dow: &Field) -> Option<CronError> {
    let (dom_at, dow_at) = (2 + offset, 4 + offset);
    let (dom_text, dow_text) = (parts[dom_at], parts[dow_at]);
    let plain = |text: &str| text == "*" || text == "?";
    if plain(dom_text) || plain(dow_text) || !(dom.starred || dow.starred) {
        return None;
    }
    let dom_days: Vec<u32> = (1..=31).filter(|v| dom.bits & (1 << v) != 0).collect();
    let week_days: Vec<u32> = (0..7).filter(|v| dow.bits & (1 << v) != 0).collect();
    let dom_full = dom_days.len() == 31;
    let dow_full = week_days.len() == 7;
    if dom_full && dow_full {
        return None;
    }
    let fields = match (dom.starred, dow.starred) {
        (true, true) => format!(
            "day-of-month `{dom_text}` and day-of-week `{dow_text}` both start with `*`, so \
             both must match"
        ),
        (true, false) => format!(
            "day-of-month `{dom_text}` starts with `*`, so it and day-of-week `{dow_text}` \
             must both match"
        ),
        _ => format!(
            "day-of-week `{dow_text}` starts with `*`, so it and day-of-month `{dom_text}` \
             must both match"
        ),
    };
    let days_of_month = |joiner: &str| match dom_days.as_slice() {
        [one] => format!("day {one} of the month"),
        _ if joiner == "or" => format!("day {} of the month", enumerate(&dom_days, joiner)),
        _ => format!("days {} of the month", enumerate(&dom_days, joiner)),
    };
    let weekday_names = |plural: &str| -> Vec<String> {
        week_days
            .iter()
            .map(|v| format!("{}{plural}", WEEKDAY_NAMES[*v as usize]))
            .collect()
    };
    let weekdays = enumerate_words(&weekday_names("s"), "and");
    let does = if dom_full {
        format!("it runs only on {weekdays}, not every day")
    } else if dow_full {
        format!("it runs only on {}, not every day", days_of_month("and"))
    } else {
        format!(
            "it runs only on {weekdays} that fall on {}, not on those days and on every {} \
             as well",
            days_of_month("or"),
            enumerate_words(&weekday_names(""), "and")
        )
    };
    // The same values without the leading `*`: `*/2` is `1-31/2`.
    let either = |text: &str, spec: &FieldSpec| {
        let full_range = format!("{}-{}", spec.min, spec.max_in_cycle());
        text.split(',')
            .map(|item| match item.strip_prefix(['*', '?']) {
                Some(rest) => format!("{full_range}{rest}"),
                None => item.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut rewritten: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
    if dom.starred {
        rewritten[dom_at] = either(dom_text, &DAY_OF_MONTH);
    }
    if dow.starred {
        rewritten[dow_at] = either(dow_text, &DAY_OF_WEEK);
    }
    Some(CronError {
        message: format!("{fields}: {does}"),
        help: Some(format!(
            "crontab ANDs the day fields when either starts with `*` (as Vixie cron and \
             cronie do); to run when either matches, write `{}`; if both must match, keep it",
            rewritten.join(" ")
        )),
    })
}

const WEEKDAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// `1, 3, 5, …, 31` for a long even-stepped list, otherwise `1, 15 and 20`.
fn enumerate(values: &[u32], last_joiner: &str) -> String {
    if values.len() >= 5 {
        let step = values[1] - values[0];
        if values.windows(2).all(|w| w[1] - w[0] == step) {
            return format!(
                "{}, {}, {}, …, {}",
                values[0],
                values[1],
                values[2],
                values[values.len() - 1]
            );
        }
    }
    let words: Vec<String> = values.iter().map(u32::to_string).collect();
    enumerate_words(&words, last_joiner)
}

/// `a`, `a and b`, `a, b and c`.
fn enumerate_words(words: &[String], last_joiner: &str) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {last_joiner} {last}", init.join(", ")),
    }
}

/// `L`, `LW`, `15W`, `5L`, `5#3`: Quartz day extensions that crontab does not have.
fn is_quartz(item: &str) -> bool {
    let upper = item.to_ascii_uppercase();
    if upper.contains('#') || upper == "L" || upper == "LW" {
        return true;
    }
    match upper.strip_suffix(['L', 'W']) {
        Some(head) => !head.is_empty() && head.chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// Splits `a-b` (both sides non-empty).
fn split_range(text: &str) -> Option<(&str, &str)> {
    let (a, b) = text.split_once('-')?;
    Some((a, b))
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if text.is_empty() {
        return Err("a range needs a value on both sides of `-`".to_owned());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{text}` is out of range; expected {}",
                spec.accepts
            )),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some((_, v)) = spec.names.iter().find(|(name, _)| *name == lower) {
        return Ok(*v);
    }
    if spec.names.is_empty() {
        Err(format!(
            "`{text}` is not a number; expected {}",
            spec.accepts
        ))
    } else {
        Err(format!(
            "`{text}` is not a valid {}; expected {}",
            spec.name, spec.accepts
        ))
    }
}

/// `*` for a full field, otherwise the explicit list of numbers.
fn numbers(bits: u64, spec: &FieldSpec) -> String {
    let full = (spec.min..=spec.max).all(|v| bits & (1 << v) != 0);
    if full {
        return "*".to_owned();
    }
    (spec.min..=spec.max)
        .filter(|v| bits & (1 << v) != 0)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `*` for every day, otherwise day names (unambiguous for the crate).
fn day_names(bits: u64) -> String {
    if (0..7).all(|v| bits & (1 << v) != 0) {
        return "*".to_owned();
    }
    (0..7)
        .filter(|v| bits & (1 << v) != 0)
        .map(|v| CRATE_DAY_NAMES[v])
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    fn naive(y: i32, m: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .unwrap()
    }

    fn weekdays(expr: &str) -> Vec<Weekday> {
        let e = CronExpr::parse(expr).unwrap();
        let mut t = naive(2026, 6, 7, 0, 0); // a Sunday
        let mut out = Vec::new();
        for _ in 0..7 {
            match e.next_after(t) {
                Some(n) if n < naive(2026, 6, 14, 0, 0) => {
                    out.push(n.weekday());
                    t = n;
                }
                _ => break,
            }
        }
        out
    }

    #[test]
    fn day_of_week_numbering() {
        assert_eq!(weekdays("0 9 * * 1"), vec![Weekday::Mon]);
        assert_eq!(weekdays("0 9 * * 0"), vec![Weekday::Sun]);
        assert_eq!(weekdays("0 9 * * 7"), vec![Weekday::Sun]);
        assert_eq!(
            weekdays("0 9 * * 1-5"),
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
        assert_eq!(
            weekdays("0 9 * * 5-7"),
            vec![Weekday::Sun, Weekday::Fri, Weekday::Sat]
        );
        assert_eq!(
            weekdays("0 9 * * */2"),
            vec![Weekday::Sun, Weekday::Tue, Weekday::Thu, Weekday::Sat]
        );
        assert_eq!(
            weekdays("0 9 * * sat,Sun"),
            vec![Weekday::Sun, Weekday::Sat]
        );
    }

    #[test]
    fn day_of_week_steps_stay_within_the_week() {
        use Weekday::*;
        // 7 is another name for Sunday, not an eighth day.
        assert_eq!(weekdays("0 9 * * 1/2"), vec![Mon, Wed, Fri]);
        assert_eq!(weekdays("0 9 * * MON/2"), vec![Mon, Wed, Fri]);
        assert_eq!(weekdays("0 9 * * 0/3"), vec![Sun, Wed, Sat]);
        assert_eq!(weekdays("0 9 * * 2/7"), vec![Tue]);
        assert_eq!(weekdays("0 9 * * 6/2"), vec![Sat]);
        assert_eq!(weekdays("0 9 * * 7/2"), vec![Sun]);
        assert_eq!(weekdays("0 9 * * */2"), vec![Sun, Tue, Thu, Sat]);
        assert_eq!(weekdays("0 9 * * */3"), vec![Sun, Wed, Sat]);
        assert_eq!(weekdays("0 9 * * */7"), vec![Sun]);
        // A range written out to 7 is taken as written: Sunday ends it.
        assert_eq!(weekdays("0 9 * * 1-7/2"), vec![Sun, Mon, Wed, Fri]);
        assert_eq!(weekdays("0 9 * * 5-7/2"), vec![Sun, Fri]);
    }

    #[test]
    fn steps_elsewhere_run_to_the_end_of_the_field() {
        let e = CronExpr::parse("0 20/2 * * *").unwrap();
        let day = naive(2026, 6, 1, 0, 0);
        let mut hours = Vec::new();
        let mut t = day;
        while let Some(n) = e.next_after(t).filter(|n| n.date() == day.date()) {
            hours.push(chrono::Timelike::hour(&n));
            t = n;
        }
        assert_eq!(hours, vec![20, 22]);
    }

    #[test]
    fn wrap_around_ranges_suggest_the_list() {
        let message = |expr: &str| CronExpr::parse(expr).unwrap_err().message;
        let m = message("0 9 * * FRI-SUN");
        assert!(m.contains("write `FRI,SAT,SUN` instead"), "{m}");
        assert!(m.contains("do not wrap around the end of the week"), "{m}");
        let m = message("0 9 * * fri-mon");
        assert!(m.contains("`FRI,SAT,SUN,MON`"), "{m}");
        let m = message("0 9 * * MON,FRI-SUN");
        assert!(m.contains("`MON,FRI,SAT,SUN`"), "{m}");
        let m = message("0 9 * * 5-0");
        assert!(m.contains("`5,6,0`"), "{m}");
        let m = message("0 9 * * 7-2");
        assert!(m.contains("7 is the Sunday that ends the week"), "{m}");
        assert!(m.contains("write `0-2` instead"), "{m}");
        let m = message("0 9 * * SUN-SAT,7-6");
        assert!(m.contains("write `SUN-SAT,0-6` instead"), "{m}");
        // Every backwards item is rewritten, not only the first.
        let m = message("0 9 * * FRI-SUN,SAT-MON");
        assert!(m.contains("write `FRI,SAT,SUN,SAT,SUN,MON` instead"), "{m}");
        let m = message("0 9 * MAR-FEB *");
        assert!(m.contains("write `MAR-DEC,JAN-FEB` instead"), "{m}");
        let m = message("0 9 * * SAT-TUE/2");
        assert!(m.contains("`SAT,MON`"), "{m}");
        let m = message("0 22-2 * * *");
        assert!(m.contains("`22,23,0,1,2`"), "{m}");
        assert!(m.contains("end of the day"), "{m}");
        let m = message("0 9 * NOV-FEB *");
        assert!(m.contains("`NOV,DEC,JAN,FEB`"), "{m}");
        let m = message("0 9 25-3 * *");
        assert!(m.contains("`25-31,1-3`"), "{m}");
        let m = message("50-5 * * * *");
        assert!(m.contains("`50-59,0-5`"), "{m}");
    }

    fn day_rule(expr: &str) -> Option<CronError> {
        CronExpr::parse(expr).unwrap().day_rule_note().cloned()
    }

    #[test]
    fn a_starred_day_field_with_a_restricted_other_is_warned_about() {
        let note = day_rule("0 0 */2 * MON").unwrap();
        assert_eq!(
            note.message,
            "day-of-month `*/2` starts with `*`, so it and day-of-week `MON` must both \
             match: it runs only on Mondays that fall on day 1, 3, 5, …, 31 of the month, \
             not on those days and on every Monday as well"
        );
        assert!(
            note.help
                .as_deref()
                .unwrap()
                .contains("write `0 0 1-31/2 * MON`"),
            "{note:?}"
        );
        let note = day_rule("0 0 */1 * MON,FRI").unwrap();
        assert_eq!(
            note.message,
            "day-of-month `*/1` starts with `*`, so it and day-of-week `MON,FRI` must both \
             match: it runs only on Mondays and Fridays, not every day"
        );
        let note = day_rule("0 0 1,15 * */1").unwrap();
        assert_eq!(
            note.message,
            "day-of-week `*/1` starts with `*`, so it and day-of-month `1,15` must both \
             match: it runs only on days 1 and 15 of the month, not every day"
        );
        let note = day_rule("0 0 13 * */2").unwrap();
        assert_eq!(
            note.message,
            "day-of-week `*/2` starts with `*`, so it and day-of-month `13` must both match: \
             it runs only on Sundays, Tuesdays, Thursdays and Saturdays that fall on day 13 \
             of the month, not on those days and on every Sunday, Tuesday, Thursday and \
             Saturday as well"
        );
        assert!(
            note.help
                .as_deref()
                .unwrap()
                .contains("write `0 0 13 * 0-6/2`"),
            "{note:?}"
        );
        let note = day_rule("0 0 */10 * */2").unwrap();
        assert!(
            note.message.starts_with(
                "day-of-month `*/10` and day-of-week `*/2` both start with `*`, so both must \
                 match: it runs only on Sundays, Tuesdays, Thursdays and Saturdays that fall \
                 on day 1, 11, 21 or 31 of the month"
            ),
            "{note:?}"
        );
        assert!(
            note.help
                .as_deref()
                .unwrap()
                .contains("write `0 0 1-31/10 * 0-6/2`"),
            "{note:?}"
        );
        // Seconds first: the fields are found where they are.
        let note = day_rule("30 0 0 */2 * MON").unwrap();
        assert!(
            note.help
                .as_deref()
                .unwrap()
                .contains("write `30 0 0 1-31/2 * MON`"),
            "{note:?}"
        );
        // No surprise: a plain `*`, neither field starred, or both fields every day.
        assert_eq!(day_rule("0 0 * * MON"), None);
        assert_eq!(day_rule("0 0 13 * *"), None);
        assert_eq!(day_rule("0 0 13 * FRI"), None);
        assert_eq!(day_rule("0 0 1-31/2 * MON"), None);
        assert_eq!(day_rule("0 0 */1 * */1"), None);
        assert_eq!(day_rule("@weekly"), None);
    }

    #[test]
    fn and_rule_when_a_day_field_starts_with_a_star() {
        // `*/2` AND Monday: Mondays on odd days of the month only.
        let e = CronExpr::parse("0 0 */2 * MON").unwrap();
        let mut t = naive(2026, 6, 1, 0, 0);
        let mut days = Vec::new();
        for _ in 0..4 {
            let n = e.next_after(t).unwrap();
            assert_eq!(n.weekday(), Weekday::Mon);
            days.push((n.month(), n.day()));
            t = n;
        }
        // June 2026 Mondays: 1, 8, 15, 22, 29; odd ones after the 1st: 15, 29; then
        // July 13 and 27.
        assert_eq!(days, vec![(6, 15), (6, 29), (7, 13), (7, 27)]);
        // `*/1` AND Monday is every Monday, not every day.
        let e = CronExpr::parse("0 0 */1 * MON").unwrap();
        let n = e.next_after(naive(2026, 6, 2, 0, 0)).unwrap();
        assert_eq!((n.month(), n.day()), (6, 8));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Crontab: the 13th OR any Friday.
        let e = CronExpr::parse("0 0 13 * FRI").unwrap();
        let mut t = naive(2026, 2, 1, 0, 0);
        let mut days = Vec::new();
        for _ in 0..5 {
            let n = e.next_after(t).unwrap();
            days.push(n.day());
            t = n;
        }
        // February 2026: Fridays 6, 13 (also the 13th), 20, 27; then 6 March.
        assert_eq!(days, vec![6, 13, 20, 27, 6]);
        // A starred day-of-month (even with a step) means AND.
        let e = CronExpr::parse("0 0 */2 * FRI").unwrap();
        let n = e.next_after(naive(2026, 2, 1, 0, 0)).unwrap();
        assert_eq!((n.month(), n.day()), (2, 13));
    }

    #[test]
    fn backward_search_is_inclusive() {
        let e = CronExpr::parse("30 2 * * *").unwrap();
        let at = naive(2026, 3, 29, 2, 30);
        assert_eq!(e.at_or_before(at), Some(at));
        assert_eq!(
            e.at_or_before(naive(2026, 3, 29, 2, 29)),
            Some(naive(2026, 3, 28, 2, 30))
        );
    }

    #[test]
    fn never_matching() {
        let err = CronExpr::parse("0 0 30 2 *").unwrap_err();
        assert!(err.message.contains("never matches"), "{err:?}");
    }

    #[test]
    fn messages_name_the_field() {
        let err = CronExpr::parse("0 25 * * *").unwrap_err();
        assert!(
            err.message.starts_with("2nd field (hour) `25`"),
            "{}",
            err.message
        );
        let err = CronExpr::parse("0 9 * * MON-FRX").unwrap_err();
        assert!(err.message.contains("day-of-week"), "{}", err.message);
        let err = CronExpr::parse("0 9 L * *").unwrap_err();
        assert!(err.message.contains("Quartz"), "{}", err.message);
        let err = CronExpr::parse("*/0 * * * *").unwrap_err();
        assert!(err.message.contains("step"), "{}", err.message);
        let err = CronExpr::parse("0 9 * * 5-1").unwrap_err();
        assert!(err.message.contains("backwards"), "{}", err.message);
        let err = CronExpr::parse("0 9 * * 1,,2").unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
        let err = CronExpr::parse("0 ? * * *").unwrap_err();
        assert!(err.message.contains("hour"), "{}", err.message);
    }
}
