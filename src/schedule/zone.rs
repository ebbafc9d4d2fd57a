//! Time zones: parsing with suggestions, local wall time to instant, transitions.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz, TZ_VARIANTS};

/// A time zone name that did not parse, with a suggestion where one is obvious.
pub(crate) struct ZoneError {
    pub message: String,
    pub help: String,
}

/// Common names that are not IANA zones, and the zone they most likely mean.
const ALIASES: &[(&str, &str)] = &[
    ("hanoi", "Asia/Ho_Chi_Minh"),
    ("ha_noi", "Asia/Ho_Chi_Minh"),
    ("hà_nội", "Asia/Ho_Chi_Minh"),
    ("ho_chi_minh_city", "Asia/Ho_Chi_Minh"),
    ("hcmc", "Asia/Ho_Chi_Minh"),
    ("hcm", "Asia/Ho_Chi_Minh"),
    ("saigon", "Asia/Ho_Chi_Minh"),
    ("danang", "Asia/Ho_Chi_Minh"),
    ("da_nang", "Asia/Ho_Chi_Minh"),
    ("vietnam", "Asia/Ho_Chi_Minh"),
    ("viet_nam", "Asia/Ho_Chi_Minh"),
    ("ict", "Asia/Ho_Chi_Minh"),
    ("beijing", "Asia/Shanghai"),
    ("china", "Asia/Shanghai"),
    ("delhi", "Asia/Kolkata"),
    ("new_delhi", "Asia/Kolkata"),
    ("mumbai", "Asia/Kolkata"),
    ("bangalore", "Asia/Kolkata"),
    ("india", "Asia/Kolkata"),
    ("ist", "Asia/Kolkata"),
    ("japan", "Asia/Tokyo"),
    ("jst", "Asia/Tokyo"),
    ("korea", "Asia/Seoul"),
    ("kst", "Asia/Seoul"),
    ("thailand", "Asia/Bangkok"),
    ("indonesia", "Asia/Jakarta"),
    ("philippines", "Asia/Manila"),
    ("washington", "America/New_York"),
    ("boston", "America/New_York"),
    ("miami", "America/New_York"),
    ("atlanta", "America/New_York"),
    ("eastern", "America/New_York"),
    ("edt", "America/New_York"),
    ("san_francisco", "America/Los_Angeles"),
    ("seattle", "America/Los_Angeles"),
    ("california", "America/Los_Angeles"),
    ("pacific", "America/Los_Angeles"),
    ("pst", "America/Los_Angeles"),
    ("pdt", "America/Los_Angeles"),
    ("dallas", "America/Chicago"),
    ("houston", "America/Chicago"),
    ("central", "America/Chicago"),
    ("cdt", "America/Chicago"),
    ("mountain", "America/Denver"),
    ("mdt", "America/Denver"),
    ("uk", "Europe/London"),
    ("britain", "Europe/London"),
    ("bst", "Europe/London"),
    ("germany", "Europe/Berlin"),
    ("munich", "Europe/Berlin"),
    ("frankfurt", "Europe/Berlin"),
    ("cest", "Europe/Berlin"),
    ("france", "Europe/Paris"),
    ("aest", "Australia/Sydney"),
];

const ZONE_HELP: &str =
    "time zones are IANA names such as Asia/Ho_Chi_Minh, Europe/Berlin or America/New_York";

/// Parses an IANA time zone name.
pub(crate) fn parse_zone(name: &str) -> Result<Tz, ZoneError> {
    let trimmed = name.trim();
    if let Ok(tz) = trimmed.parse::<Tz>() {
        return Ok(tz);
    }
    let message = format!("unknown time zone `{name}`");
    let help = match suggest(trimmed) {
        Some(Suggestion::Zone(zone)) => format!("did you mean `{zone}`? {ZONE_HELP}"),
        Some(Suggestion::Offset(hours)) => format!(
            "a fixed offset of {hours:+} hours is `Etc/GMT{:+}` (the POSIX sign is inverted), \
             but a city zone such as Asia/Ho_Chi_Minh also follows daylight saving time",
            -hours
        ),
        None => ZONE_HELP.to_owned(),
    };
    Err(ZoneError { message, help })
}

enum Suggestion {
    Zone(&'static str),
    Offset(i32),
}

fn suggest(input: &str) -> Option<Suggestion> {
    let norm = input.to_lowercase().replace([' ', '-'], "_");
    if norm.is_empty() {
        return None;
    }
    // Case or separators only.
    if let Some(tz) = TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().to_lowercase().replace('-', "_") == norm)
    {
        return Some(Suggestion::Zone(tz.name()));
    }
    // An alias, alone or after a region ("Asia/Hanoi" is not a zone either).
    let last = norm.rsplit('/').next().unwrap_or(&norm);
    if let Some((_, zone)) = ALIASES
        .iter()
        .find(|(alias, _)| *alias == norm || *alias == last)
    {
        return Some(Suggestion::Zone(zone));
    }
    if let Some(hours) = utc_offset_hours(&norm) {
        return Some(Suggestion::Offset(hours));
    }
    // A city without its region: "Bangkok" -> Asia/Bangkok.
    if let Some(tz) = TZ_VARIANTS
        .iter()
        .find(|tz| city(tz.name()).to_lowercase() == norm)
    {
        return Some(Suggestion::Zone(tz.name()));
    }
    // A typo.
    let mut best: Option<(f64, &'static str)> = None;
    for tz in TZ_VARIANTS.iter() {
        let full = tz.name().to_lowercase();
        let score = strsim::jaro_winkler(&norm, &full)
            .max(strsim::jaro_winkler(&norm, &city(&full).to_lowercase()));
        let better = match best {
            Some((b, _)) => score > b,
            None => true,
        };
        if better {
            best = Some((score, tz.name()));
        }
    }
    match best {
        Some((score, zone)) if score >= 0.9 => Some(Suggestion::Zone(zone)),
        _ => None,
    }
}

fn city(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `utc+7`, `gmt+07:00`, `+07:00`, `+7` -> 7.
fn utc_offset_hours(norm: &str) -> Option<i32> {
    let rest = norm
        .strip_prefix("utc")
        .or_else(|| norm.strip_prefix("gmt"))
        .unwrap_or(norm);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' | b'_' => (-1, &rest[1..]),
        _ => return None,
    };
    let hours = digits.split(':').next()?;
    if hours.is_empty() || hours.len() > 2 || !hours.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    (hours <= 14).then_some(sign * hours)
}

/// The instant at which the wall clock of `tz` first reads `local` (or later):
/// - a time that exists once is that instant;
/// - an ambiguous time (clocks turned back) is its earlier instant;
/// - a time skipped by clocks turned forward is the first instant after the gap.
///
/// This mapping never decreases as `local` increases.
pub(crate) fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => match GapInfo::new(&local, &tz).and_then(|gap| gap.end) {
            Some(end) => end.with_timezone(&Utc),
            // At the limits of the zone's data: read with the offset in effect then.
            None => {
                let offset = offset_seconds(tz, local.and_utc());
                let at = local.and_utc();
                at.checked_sub_signed(TimeDelta::seconds(offset))
                    .unwrap_or(at)
            }
        },
    }
}

/// The wall time of `tz` at `t`.
pub(crate) fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    // Saturates at chrono's limits instead of panicking there.
    let offset = TimeDelta::seconds(offset_seconds(tz, t));
    let utc = t.naive_utc();
    utc.checked_add_signed(offset)
        .unwrap_or(if offset > TimeDelta::zero() {
            NaiveDateTime::MAX
        } else {
            NaiveDateTime::MIN
        })
}

/// The offset of `tz` from UTC at `t`, in seconds.
pub(crate) fn offset_seconds(tz: Tz, t: DateTime<Utc>) -> i64 {
    i64::from(
        tz.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// The first instant after `t` (and not after `limit`) at which the offset of `tz`
/// changes, if any. Transitions are assumed at least six hours apart.
pub(crate) fn next_transition(
    tz: Tz,
    t: DateTime<Utc>,
    limit: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    const STEP: TimeDelta = TimeDelta::hours(6);
    let start_offset = offset_seconds(tz, t);
    let mut low = t;
    while low < limit {
        let high = low.checked_add_signed(STEP).unwrap_or(limit).min(limit);
        if offset_seconds(tz, high) != start_offset {
            // The offset at `low` is the start offset, at `high` it is not.
            let (mut lo, mut hi) = (low, high);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset_seconds(tz, mid) == start_offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            // Transitions fall on whole seconds.
            let floor = DateTime::from_timestamp(hi.timestamp(), 0).unwrap_or(hi);
            return Some(if floor > lo && offset_seconds(tz, floor) != start_offset {
                floor
            } else {
                hi
            });
        }
        low = high;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn naive(y: i32, m: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn suggestions() {
        let err = parse_zone("Asia/Hanoi").unwrap_err();
        assert!(err.help.contains("Asia/Ho_Chi_Minh"), "{}", err.help);
        let err = parse_zone("Hanoi").unwrap_err();
        assert!(err.help.contains("Asia/Ho_Chi_Minh"), "{}", err.help);
        assert!(parse_zone("Asia/Saigon").is_ok());
        let err = parse_zone("asia/ho_chi_minh").unwrap_err();
        assert!(err.help.contains("`Asia/Ho_Chi_Minh`"), "{}", err.help);
        let err = parse_zone("Bangkok").unwrap_err();
        assert!(err.help.contains("`Asia/Bangkok`"), "{}", err.help);
        let err = parse_zone("Europe/Berln").unwrap_err();
        assert!(err.help.contains("`Europe/Berlin`"), "{}", err.help);
        let err = parse_zone("UTC+7").unwrap_err();
        assert!(err.help.contains("Etc/GMT-7"), "{}", err.help);
        let err = parse_zone("qqqqqqqq").unwrap_err();
        assert!(!err.help.contains("did you mean"), "{}", err.help);
    }

    #[test]
    fn resolution() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            resolve_local(berlin, naive(2026, 3, 29, 2, 30)),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            resolve_local(berlin, naive(2026, 10, 25, 2, 30)),
            utc("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            resolve_local(berlin, naive(2026, 7, 1, 9, 0)),
            utc("2026-07-01T07:00:00Z")
        );
    }

    #[test]
    fn transitions() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = next_transition(
            berlin,
            utc("2026-03-28T00:00:00Z"),
            utc("2026-04-01T00:00:00Z"),
        );
        assert_eq!(t, Some(utc("2026-03-29T01:00:00Z")));
        let none = next_transition(
            berlin,
            utc("2026-04-01T00:00:00Z"),
            utc("2026-04-05T00:00:00Z"),
        );
        assert_eq!(none, None);
    }
}
