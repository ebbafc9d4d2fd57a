//! Crontab expressions: checked field by field with crontab semantics, then handed to
//! the `cron` crate in a form it cannot misread.
//!
//! What the crate would get wrong if given the expression as written:
//! - it wants seconds first (6 or 7 fields); a crontab has 5 fields without seconds;
//! - it numbers days of the week 1-7 with 1 = Sunday, crontab 0-7 with 0 and 7 = Sunday;
//! - when both day-of-month and day-of-week are restricted it requires both to match,
//!   crontab runs when either matches.
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
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    accepts: "0-59",
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    accepts: "0-59",
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    accepts: "0-23",
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    accepts: "1-31",
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
        let expr = CronExpr { source, schedules };
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
    let mut bits = 0u64;
    let starred = text.starts_with('*') || text.starts_with('?');
    for item in text.split(',') {
        if item.is_empty() {
            return Err(fail("empty list item".to_owned()));
        }
        if is_quartz(item) {
            return Err(fail(format!(
                "`{item}`: the Quartz extensions L, W and # are not supported"
            )));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step = match step.parse::<u32>() {
                    Ok(n) if n >= 1 && n <= spec.max => n,
                    Ok(_) => {
                        return Err(fail(format!(
                            "step `/{step}` must be between 1 and {}",
                            spec.max
                        )))
                    }
                    Err(_) => return Err(fail(format!("step `/{step}` is not a number"))),
                };
                (base, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if base == "*" || base == "?" {
            if base == "?" && spec.name != "day-of-month" && spec.name != "day-of-week" {
                return Err(fail("`?` is only allowed in the day fields".to_owned()));
            }
            // Crontab: `*` in day-of-week is 0-6 (7 would repeat Sunday).
            let high = if spec.name == "day-of-week" {
                6
            } else {
                spec.max
            };
            (spec.min, high)
        } else if let Some((a, b)) = split_range(base) {
            let low = value(a, spec).map_err(&fail)?;
            let high = value(b, spec).map_err(&fail)?;
            if low > high {
                return Err(fail(format!(
                    "range `{base}` runs backwards; write it as a list of two ranges instead"
                )));
            }
            (low, high)
        } else {
            let v = value(base, spec).map_err(&fail)?;
            // `a/n` means from a to the end of the range, every n.
            let high = if step.is_some() { spec.max } else { v };
            (v, high)
        };
        let step = step.unwrap_or(1) as usize;
        for v in (low..=high).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok(Field { bits, starred })
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
