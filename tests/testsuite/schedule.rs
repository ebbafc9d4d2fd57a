//! The schedule module: parsing, occurrences across DST, `due`, windows, estimates.
//! Deterministic: every "now" is given explicitly or by a ManualClock.

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use smax_campaign::schedule::{
    estimate_span, parse_duration, parse_schedule, parse_when, Clock, Due, ManualClock, Occurrence,
    Schedule, ScheduleError, ScheduleInput, Seen, Window,
};
use std::time::Duration;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

fn tz(name: &str) -> Tz {
    name.parse().expect("test zone")
}

fn cron_in(expr: &str, zone: &str) -> Schedule {
    parse_schedule(&ScheduleInput {
        cron: Some(expr),
        timezone: Some(zone),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{expr}: {e:?}"))
}

fn errors(input: ScheduleInput<'_>) -> Vec<ScheduleError> {
    match parse_schedule(&input) {
        Ok(s) => panic!("expected errors, got {s:?}"),
        Err(e) => e,
    }
}

fn cron_error(expr: &str) -> ScheduleError {
    let mut e = errors(ScheduleInput {
        cron: Some(expr),
        ..Default::default()
    });
    assert_eq!(e.len(), 1, "{e:?}");
    let e = e.remove(0);
    assert_eq!(e.field, "cron");
    e
}

/// Occurrence ids strictly after `from` and at or before `to`.
fn ids_between(s: &Schedule, from: &str, to: &str) -> Vec<String> {
    let (mut t, to) = (utc(from), utc(to));
    let mut out = Vec::new();
    while let Some(o) = s.next_after(t) {
        if o.instant > to {
            break;
        }
        out.push(o.id());
        t = o.instant;
    }
    out
}

fn instants_between(s: &Schedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    ids_between(s, from, to).iter().map(|id| utc(id)).collect()
}

// ---------------------------------------------------------------- cron syntax

#[test]
fn five_field_cron() {
    let s = cron_in("0 9 * * *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-11-27T00:00:00Z")).unwrap().instant,
        utc("2026-11-27T09:00:00Z")
    );
    assert_eq!(
        ids_between(&s, "2026-11-27T00:00:00Z", "2026-11-29T00:00:00Z"),
        vec!["2026-11-27T09:00:00+00:00", "2026-11-28T09:00:00+00:00"]
    );
    let s = cron_in("*/15 9-10 * * *", "UTC");
    assert_eq!(
        ids_between(&s, "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z").len(),
        8
    );
}

#[test]
fn six_field_cron_has_seconds_first() {
    let s = cron_in("30 0 9 * * *", "UTC");
    assert_eq!(
        s.next_after(utc("2026-11-27T00:00:00Z")).unwrap().instant,
        utc("2026-11-27T09:00:30Z")
    );
}

#[test]
fn day_of_week_uses_crontab_numbering() {
    // 2026-11-29 is a Sunday, 2026-11-30 a Monday.
    let from = "2026-11-28T12:00:00Z";
    let monday = cron_in("0 9 * * 1", "UTC");
    assert_eq!(
        monday.next_after(utc(from)).unwrap().id(),
        "2026-11-30T09:00:00+00:00"
    );
    for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN", "0 9 * * sun"] {
        let s = cron_in(sunday, "UTC");
        assert_eq!(
            s.next_after(utc(from)).unwrap().id(),
            "2026-11-29T09:00:00+00:00",
            "{sunday}"
        );
    }
    let weekdays = [
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
        "2026-12-03",
        "2026-12-04",
    ];
    for expr in [
        "0 9 * * 1-5",
        "0 9 * * MON-FRI",
        "0 9 * * 1,2,3,4,5",
        "0 9 * * 1-5/1",
    ] {
        let s = cron_in(expr, "UTC");
        let days: Vec<String> = ids_between(&s, from, "2026-12-06T23:00:00Z")
            .iter()
            .map(|id| id[..10].to_owned())
            .collect();
        assert_eq!(days, weekdays, "{expr}");
    }
    // Weekend written with 7: Saturday and Sunday.
    let s = cron_in("0 9 * * 6-7", "UTC");
    assert_eq!(
        ids_between(&s, "2026-11-27T00:00:00Z", "2026-11-30T00:00:00Z"),
        vec!["2026-11-28T09:00:00+00:00", "2026-11-29T09:00:00+00:00"]
    );
}

#[test]
fn day_of_month_and_day_of_week_both_set_means_either() {
    // crontab: the 1st of the month OR a Monday.
    let s = cron_in("0 9 1 * MON", "UTC");
    assert_eq!(
        ids_between(&s, "2026-11-28T00:00:00Z", "2026-12-08T00:00:00Z"),
        vec![
            "2026-11-30T09:00:00+00:00",
            "2026-12-01T09:00:00+00:00",
            "2026-12-07T09:00:00+00:00"
        ]
    );
}

#[test]
fn macros() {
    let from = "2026-11-27T12:00:00Z"; // a Friday
    let next = |expr: &str| cron_in(expr, "UTC").next_after(utc(from)).unwrap().id();
    assert_eq!(next("@hourly"), "2026-11-27T13:00:00+00:00");
    assert_eq!(next("@daily"), "2026-11-28T00:00:00+00:00");
    assert_eq!(next("@weekly"), "2026-11-29T00:00:00+00:00");
    assert_eq!(next("@monthly"), "2026-12-01T00:00:00+00:00");
    assert_eq!(next("@yearly"), "2027-01-01T00:00:00+00:00");
    assert!(cron_error("@reboot").message.contains("@reboot"));
}

#[test]
fn invalid_cron_names_the_field() {
    let cases = [
        ("61 * * * *", "minute"),
        ("0 25 * * *", "hour"),
        ("0 9 32 * *", "day-of-month"),
        ("0 9 * 13 *", "month"),
        ("0 9 * * 8", "day-of-week"),
        ("0 9 * * MON-FRX", "day-of-week"),
        ("0 9 * JANUAR *", "month"),
        ("0 9 L * *", "day-of-month"),
        ("0 9 * * 5#3", "day-of-week"),
        ("*/0 9 * * *", "minute"),
        ("60 0 9 * * *", "second"),
        ("0 x 9 * * *", "minute"),
    ];
    for (expr, field) in cases {
        let e = cron_error(expr);
        assert!(
            e.message.contains(&format!("({field})")),
            "{expr}: {}",
            e.message
        );
        assert!(e.help.is_some(), "{expr}");
    }
    let e = cron_error("0 25 * * *");
    assert_eq!(
        e.message,
        "2nd field (hour) `25`: `25` is out of range; expected 0-23"
    );
}

#[test]
fn seven_fields_and_wrong_counts_are_rejected() {
    let e = cron_error("0 0 9 * * * 2026");
    assert!(
        e.message.contains("7 fields") && e.message.contains("year"),
        "{}",
        e.message
    );
    let e = cron_error("0 9 * *");
    assert!(e.message.contains("4 fields"), "{}", e.message);
    let e = cron_error("");
    assert!(e.message.contains("empty"), "{}", e.message);
    let e = cron_error("0 0 31 4 *");
    assert!(e.message.contains("never matches"), "{}", e.message);
}

// ---------------------------------------------------------------- daylight saving time

#[test]
fn berlin_spring_forward_runs_once_after_the_gap() {
    let s = cron_in("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        instants_between(&s, "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
        vec![
            utc("2026-03-28T01:30:00Z"),
            utc("2026-03-29T01:00:00Z"),
            utc("2026-03-30T00:30:00Z")
        ]
    );
    let o = s.next_after(utc("2026-03-28T12:00:00Z")).unwrap();
    assert_eq!(o.id(), "2026-03-29T03:00:00+02:00");
    assert_eq!(s.latest_at_or_before(utc("2026-03-29T12:00:00Z")), Some(o));
}

#[test]
fn berlin_fall_back_runs_once_at_the_earlier_instant() {
    let s = cron_in("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        ids_between(&s, "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
        vec![
            "2026-10-24T02:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:30:00+01:00"
        ]
    );
    let o = s.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(o.instant, utc("2026-10-25T00:30:00Z"));
    // During the repeated hour (02:30 CET = 01:30 UTC) nothing new is due.
    assert_eq!(
        s.latest_at_or_before(utc("2026-10-25T01:45:00Z")),
        Some(o.clone())
    );
    assert_eq!(
        s.next_after(utc("2026-10-25T01:29:00Z")).unwrap().instant,
        utc("2026-10-26T01:30:00Z")
    );
}

#[test]
fn new_york_spring_forward_and_fall_back() {
    let s = cron_in("30 2 * * *", "America/New_York");
    assert_eq!(
        instants_between(&s, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z"),
        vec![utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")]
    );
    assert_eq!(
        s.next_after(utc("2026-03-07T12:00:00Z")).unwrap().id(),
        "2026-03-08T03:00:00-04:00"
    );
    // 02:30 is not repeated in New York (01:00-02:00 is).
    assert_eq!(
        instants_between(&s, "2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z"),
        vec![utc("2026-11-01T07:30:00Z")]
    );
}

#[test]
fn new_york_one_thirty_on_fall_back_day_runs_once() {
    let s = cron_in("30 1 * * *", "America/New_York");
    assert_eq!(
        ids_between(&s, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
        vec!["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
    // At 01:45 EST (the second 01:45) the latest is still the 01:30 EDT run.
    let t = utc("2026-11-01T06:45:00Z");
    assert_eq!(
        s.latest_at_or_before(t).unwrap().instant,
        utc("2026-11-01T05:30:00Z")
    );
    assert_eq!(
        s.next_after(t).unwrap().instant,
        utc("2026-11-02T06:30:00Z")
    );
}

#[test]
fn hourly_job_on_new_york_fall_back_day() {
    let s = cron_in("0 * * * *", "America/New_York");
    assert_eq!(
        ids_between(&s, "2026-11-01T03:30:00Z", "2026-11-01T08:30:00Z"),
        vec![
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T03:00:00-05:00",
        ]
    );
}

#[test]
fn zone_without_dst() {
    let s = cron_in("0 9 * * MON-FRI", "Asia/Ho_Chi_Minh");
    assert_eq!(
        instants_between(&s, "2026-11-26T00:00:00Z", "2026-11-30T12:00:00Z"),
        vec![
            utc("2026-11-26T02:00:00Z"),
            utc("2026-11-27T02:00:00Z"),
            utc("2026-11-30T02:00:00Z")
        ]
    );
    assert_eq!(s.describe(), "cron `0 9 * * MON-FRI` in Asia/Ho_Chi_Minh");
}

// ---------------------------------------------------------------- at, timezone, bounds

#[test]
fn at_forms_and_occurrence_id() {
    let at = |at: &str, zone: Option<&str>| {
        parse_schedule(&ScheduleInput {
            at: Some(at),
            timezone: zone,
            ..Default::default()
        })
        .unwrap()
        .next_after(utc("2026-01-01T00:00:00Z"))
        .unwrap()
    };
    let o = at("2026-11-27T09:00:00+07:00", Some("Asia/Ho_Chi_Minh"));
    assert_eq!(o.id(), "2026-11-27T09:00:00+07:00");
    assert_eq!(o.instant, utc("2026-11-27T02:00:00Z"));
    assert_eq!(o.to_string(), o.id());
    assert_eq!(at("2026-11-27T09:00", Some("Asia/Ho_Chi_Minh")), o);
    assert_eq!(at("2026-11-27 09:00", Some("Asia/Ho_Chi_Minh")), o);
    // Without a timezone the campaign's zone is UTC.
    assert_eq!(
        at("2026-11-27T09:00:00+07:00", None).id(),
        "2026-11-27T02:00:00+00:00"
    );
    assert_eq!(
        at("2026-11-27 09:00", None).id(),
        "2026-11-27T09:00:00+00:00"
    );

    let s = parse_schedule(&ScheduleInput {
        at: Some("2026-11-27T09:00:00+07:00"),
        timezone: Some("Asia/Ho_Chi_Minh"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        s.describe(),
        "once at 2026-11-27T09:00:00+07:00 in Asia/Ho_Chi_Minh"
    );
    assert_eq!(s.latest_at_or_before(utc("2026-11-27T01:59:59Z")), None);
    assert_eq!(
        s.latest_at_or_before(utc("2026-11-27T02:00:00Z"))
            .unwrap()
            .id(),
        "2026-11-27T09:00:00+07:00"
    );
    assert_eq!(s.next_after(utc("2026-11-27T02:00:00Z")), None);

    let e = errors(ScheduleInput {
        at: Some("27/11/2026 9am"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "at");
    assert!(e[0].message.contains("RFC 3339"), "{}", e[0].message);
}

#[test]
fn exactly_one_of_at_and_cron() {
    let e = errors(ScheduleInput {
        at: Some("2026-11-27T09:00:00Z"),
        cron: Some("0 9 * * *"),
        ..Default::default()
    });
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].field, "cron");
    let e = errors(ScheduleInput {
        timezone: Some("UTC"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "schedule");
}

#[test]
fn timezone_errors_suggest_a_zone() {
    let e = errors(ScheduleInput {
        cron: Some("0 9 * * *"),
        timezone: Some("Hanoi"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "timezone");
    assert!(e[0].message.contains("Hanoi"));
    assert!(
        e[0].help
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `Asia/Ho_Chi_Minh`"),
        "{:?}",
        e[0].help
    );
    // Link names are valid zones.
    let s = cron_in("0 9 * * *", "Asia/Saigon");
    assert_eq!(s.timezone().name(), "Asia/Saigon");
    assert_eq!(
        s.next_after(utc("2026-11-27T00:00:00Z")).unwrap().id(),
        "2026-11-27T09:00:00+07:00"
    );
    let e = errors(ScheduleInput {
        cron: Some("0 9 * * *"),
        timezone: Some("Europe/Berlni"),
        ..Default::default()
    });
    assert!(
        e[0].help
            .as_deref()
            .unwrap_or("")
            .contains("`Europe/Berlin`"),
        "{:?}",
        e[0].help
    );
}

fn bounded(expr: &str, starts: &str, ends: &str) -> Schedule {
    parse_schedule(&ScheduleInput {
        cron: Some(expr),
        timezone: Some("Asia/Ho_Chi_Minh"),
        starts: Some(starts),
        ends: Some(ends),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn starts_and_ends_bound_the_occurrences() {
    // Dates are local: from midnight on starts to the end of the day on ends.
    let s = bounded("30 23 * * *", "2026-11-01", "2026-11-03");
    assert_eq!(
        ids_between(&s, "2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        vec![
            "2026-11-01T23:30:00+07:00",
            "2026-11-02T23:30:00+07:00",
            "2026-11-03T23:30:00+07:00"
        ]
    );
    assert_eq!(s.latest_at_or_before(utc("2026-10-31T20:00:00Z")), None);
    assert_eq!(
        s.latest_at_or_before(utc("2027-06-01T00:00:00Z"))
            .unwrap()
            .id(),
        "2026-11-03T23:30:00+07:00"
    );
    assert_eq!(s.next_after(utc("2026-11-03T16:30:00Z")), None);
    assert_eq!(s.starts(), Some(utc("2026-10-31T17:00:00Z")));
    assert_eq!(
        s.describe(),
        "cron `30 23 * * *` in Asia/Ho_Chi_Minh, from 2026-11-01, until 2026-11-03"
    );

    // Times are exact (inclusive).
    let s = bounded("0 * * * *", "2026-11-01T10:00:00+07:00", "2026-11-01 12:00");
    assert_eq!(
        ids_between(&s, "2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        vec![
            "2026-11-01T10:00:00+07:00",
            "2026-11-01T11:00:00+07:00",
            "2026-11-01T12:00:00+07:00"
        ]
    );
}

#[test]
fn bound_errors() {
    let e = errors(ScheduleInput {
        cron: Some("0 9 * * *"),
        starts: Some("2026-12-01"),
        ends: Some("2026-11-01"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "ends");
    assert!(e[0].message.contains("before `starts`"), "{}", e[0].message);

    let e = errors(ScheduleInput {
        cron: Some("0 9 * * *"),
        starts: Some("next week"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "starts");

    // An `at` outside the bounds would never run.
    let e = errors(ScheduleInput {
        at: Some("2026-10-15T09:00:00+07:00"),
        starts: Some("2026-11-01"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "at");
    let e = errors(ScheduleInput {
        at: Some("2027-01-15T09:00:00+07:00"),
        ends: Some("2026-12-31"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "at");
    // A cron with no occurrence between the bounds.
    let e = errors(ScheduleInput {
        cron: Some("0 9 * * MON"),
        starts: Some("2026-11-27"),
        ends: Some("2026-11-29"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "cron");
}

// ---------------------------------------------------------------- due

fn daily_nine(catch_up: Option<&str>) -> Schedule {
    parse_schedule(&ScheduleInput {
        cron: Some("0 9 * * *"),
        timezone: Some("Asia/Ho_Chi_Minh"),
        catch_up,
        ..Default::default()
    })
    .unwrap()
}

fn occ(s: &Schedule, id: &str) -> Occurrence {
    let o = s.latest_at_or_before(utc(id)).unwrap();
    assert_eq!(o.id(), id);
    o
}

#[test]
fn due_within_catch_up() {
    let s = daily_nine(Some("2h"));
    // 10:00 local: one hour late.
    let due = s.due(utc("2026-11-27T10:00:00+07:00"), |_| false);
    assert_eq!(due, Due::Due(occ(&s, "2026-11-27T09:00:00+07:00")));
    // Exactly catch_up late is still due.
    let due = s.due(utc("2026-11-27T11:00:00+07:00"), |_| false);
    assert!(matches!(due, Due::Due(_)), "{due:?}");
    // At the occurrence itself.
    let due = s.due(utc("2026-11-27T09:00:00+07:00"), |_| false);
    assert!(matches!(due, Due::Due(_)), "{due:?}");
}

#[test]
fn missed_past_catch_up() {
    let s = daily_nine(Some("2h"));
    let due = s.due(utc("2026-11-27T12:00:00+07:00"), |_| false);
    assert_eq!(
        due,
        Due::Missed {
            occurrence: occ(&s, "2026-11-27T09:00:00+07:00"),
            next: s.next_after(utc("2026-11-27T12:00:00+07:00")),
        }
    );
    if let Due::Missed {
        next: Some(next), ..
    } = due
    {
        assert_eq!(next.id(), "2026-11-28T09:00:00+07:00");
    }
}

#[test]
fn default_catch_up_is_one_hour() {
    let s = daily_nine(None);
    assert_eq!(s.catch_up(), Duration::from_secs(3600));
    assert!(matches!(
        s.due(utc("2026-11-27T09:59:00+07:00"), |_| false),
        Due::Due(_)
    ));
    assert!(matches!(
        s.due(utc("2026-11-27T10:01:00+07:00"), |_| false),
        Due::Missed { .. }
    ));
}

#[test]
fn only_the_latest_occurrence_is_considered() {
    let s = daily_nine(Some("2h"));
    // Nothing ran for a week: only today's 09:00 matters, and it is due.
    let due = s.due(utc("2026-11-27T09:30:00+07:00"), |_| false);
    assert_eq!(due, Due::Due(occ(&s, "2026-11-27T09:00:00+07:00")));
    // Past catch-up: only the latest is reported missed, not the backlog.
    let due = s.due(utc("2026-11-27T20:00:00+07:00"), |_| false);
    match due {
        Due::Missed { occurrence, .. } => assert_eq!(occurrence.id(), "2026-11-27T09:00:00+07:00"),
        other => panic!("{other:?}"),
    }
    // Once that one is recorded missed, older ones still don't come back.
    let due = s.due(utc("2026-11-27T20:00:00+07:00"), |id| {
        id == "2026-11-27T09:00:00+07:00"
    });
    assert!(matches!(due, Due::Done { .. }), "{due:?}");
}

#[test]
fn a_started_occurrence_resumes_past_catch_up_until_a_newer_one_comes() {
    // catch_up is about when an occurrence is first seen: a run started in time and
    // handed over (--max-duration, a crash) is resumed hours later.
    let s = daily_nine(Some("2h"));
    let id = "2026-11-27T09:00:00+07:00";
    let started = |o: &str| if o == id { Seen::Started } else { Seen::No };
    let late = utc("2026-11-27T20:00:00+07:00");
    assert_eq!(s.due_given(late, started), Due::Due(occ(&s, id)));
    assert!(matches!(
        s.due_given(late, |_| Seen::No),
        Due::Missed { .. }
    ));
    assert!(matches!(
        s.due_given(late, |_| Seen::Done),
        Due::Done { .. }
    ));
    // The next day's occurrence replaces it: only the latest is ever considered.
    let next_day = utc("2026-11-28T09:30:00+07:00");
    assert_eq!(
        s.due_given(next_day, started),
        Due::Due(occ(&s, "2026-11-28T09:00:00+07:00"))
    );
}

#[test]
fn done_and_not_yet() {
    let s = daily_nine(Some("2h"));
    let now = utc("2026-11-27T09:30:00+07:00");
    let due = s.due(now, |id| id == "2026-11-27T09:00:00+07:00");
    assert_eq!(
        due,
        Due::Done {
            occurrence: occ(&s, "2026-11-27T09:00:00+07:00"),
            next: Some(s.next_after(now).unwrap()),
        }
    );

    let s = bounded("0 9 * * *", "2026-11-01", "2026-11-03");
    let due = s.due(utc("2026-10-20T00:00:00Z"), |_| false);
    match due {
        Due::NotYet { next: Some(next) } => assert_eq!(next.id(), "2026-11-01T09:00:00+07:00"),
        other => panic!("{other:?}"),
    }
    // Before the first occurrence but after starts.
    let due = s.due(utc("2026-11-01T08:00:00+07:00"), |_| false);
    assert!(matches!(due, Due::NotYet { next: Some(_) }), "{due:?}");
}

#[test]
fn ended_after_the_last_occurrence() {
    let s = bounded("0 9 * * *", "2026-11-01", "2026-11-03");
    let after = utc("2026-11-10T00:00:00Z");
    assert_eq!(s.due(after, |_| true), Due::Ended);
    // The last one not recorded yet: it is reported missed first, with no next.
    match s.due(after, |_| false) {
        Due::Missed {
            occurrence,
            next: None,
        } => assert_eq!(occurrence.id(), "2026-11-03T09:00:00+07:00"),
        other => panic!("{other:?}"),
    }
    // Just after the last occurrence, within catch_up, but past ends: still due.
    let s = bounded("30 23 * * *", "2026-11-01", "2026-11-03");
    let due = s.due(utc("2026-11-04T00:15:00+07:00"), |_| false);
    assert!(matches!(due, Due::Due(_)), "{due:?}");
}

#[test]
fn due_for_a_single_at() {
    let s = parse_schedule(&ScheduleInput {
        at: Some("2026-11-27T09:00:00+07:00"),
        timezone: Some("Asia/Ho_Chi_Minh"),
        catch_up: Some("30m"),
        ..Default::default()
    })
    .unwrap();
    let id = "2026-11-27T09:00:00+07:00";
    assert!(matches!(
        s.due(utc("2026-11-27T08:00:00+07:00"), |_| false),
        Due::NotYet { next: Some(_) }
    ));
    assert!(matches!(
        s.due(utc("2026-11-27T09:10:00+07:00"), |_| false),
        Due::Due(_)
    ));
    assert!(matches!(
        s.due(utc("2026-11-27T09:40:00+07:00"), |_| false),
        Due::Missed { next: None, .. }
    ));
    assert!(matches!(
        s.due(utc("2026-11-27T09:40:00+07:00"), |i| i == id),
        Due::Done { next: None, .. }
    ));
}

#[test]
fn manual_clock_drives_due() {
    let s = daily_nine(Some("2h"));
    let clock = ManualClock::new(utc("2026-11-27T08:00:00+07:00"));
    assert!(matches!(
        s.due(clock.now(), |_| false),
        Due::NotYet { .. } | Due::Missed { .. }
    ));
    clock.advance(Duration::from_secs(3600 + 60));
    assert_eq!(clock.now(), utc("2026-11-27T09:01:00+07:00"));
    assert!(matches!(s.due(clock.now(), |_| false), Due::Due(_)));
    clock.set(utc("2026-11-27T13:00:00+07:00"));
    assert!(matches!(s.due(clock.now(), |_| false), Due::Missed { .. }));
    let shared: std::sync::Arc<dyn Clock> = std::sync::Arc::new(clock);
    assert_eq!(shared.now(), utc("2026-11-27T13:00:00+07:00"));
}

// ---------------------------------------------------------------- windows

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

#[test]
fn window_is_half_open() {
    let hcm = tz("Asia/Ho_Chi_Minh");
    let w = Window::parse("08:00-21:00").unwrap();
    assert_eq!((w.start(), w.end()), (hm(8, 0), hm(21, 0)));
    assert_eq!(w.to_string(), "08:00-21:00");
    assert!(w.contains(utc("2026-11-27T20:59:59+07:00"), hcm));
    assert!(!w.contains(utc("2026-11-27T21:00:00+07:00"), hcm));
    assert!(w.contains(utc("2026-11-27T08:00:00+07:00"), hcm));
    assert!(!w.contains(utc("2026-11-27T07:59:59+07:00"), hcm));

    let t = utc("2026-11-27T20:59:00+07:00");
    assert_eq!(w.closes_at(t, hcm), Some(utc("2026-11-27T21:00:00+07:00")));
    assert_eq!(w.next_open(t, hcm), t);
    assert_eq!(w.closes_at(utc("2026-11-27T21:00:00+07:00"), hcm), None);
    assert_eq!(
        w.next_open(utc("2026-11-27T21:00:00+07:00"), hcm),
        utc("2026-11-28T08:00:00+07:00")
    );
    assert_eq!(
        w.next_open(utc("2026-11-27T06:00:00+07:00"), hcm),
        utc("2026-11-27T08:00:00+07:00")
    );
}

#[test]
fn window_wrapping_midnight() {
    let hcm = tz("Asia/Ho_Chi_Minh");
    let w = Window::parse("22:00-06:00").unwrap();
    assert!(w.contains(utc("2026-11-27T23:00:00+07:00"), hcm));
    assert!(w.contains(utc("2026-11-28T00:00:00+07:00"), hcm));
    assert!(w.contains(utc("2026-11-28T05:59:59+07:00"), hcm));
    assert!(!w.contains(utc("2026-11-28T06:00:00+07:00"), hcm));
    assert!(!w.contains(utc("2026-11-27T12:00:00+07:00"), hcm));
    assert_eq!(
        w.next_open(utc("2026-11-27T12:00:00+07:00"), hcm),
        utc("2026-11-27T22:00:00+07:00")
    );
    assert_eq!(
        w.closes_at(utc("2026-11-27T23:00:00+07:00"), hcm),
        Some(utc("2026-11-28T06:00:00+07:00"))
    );
    assert_eq!(
        w.closes_at(utc("2026-11-28T01:00:00+07:00"), hcm),
        Some(utc("2026-11-28T06:00:00+07:00"))
    );
    // 24:00 is accepted as an end.
    let w = Window::parse("18:00-24:00").unwrap();
    assert!(w.contains(utc("2026-11-27T23:59:59+07:00"), hcm));
    assert!(!w.contains(utc("2026-11-28T00:00:00+07:00"), hcm));
}

#[test]
fn window_on_dst_days() {
    let berlin = tz("Europe/Berlin");
    let w = Window::parse("08:00-21:00").unwrap();
    // Spring forward: opens at 08:00 CEST, closes at 21:00 CEST.
    let night = utc("2026-03-29T00:30:00Z");
    assert_eq!(w.next_open(night, berlin), utc("2026-03-29T08:00:00+02:00"));
    assert_eq!(
        w.closes_at(utc("2026-03-29T08:00:00+02:00"), berlin),
        Some(utc("2026-03-29T21:00:00+02:00"))
    );
    // From the evening before, across the change.
    assert_eq!(
        w.next_open(utc("2026-03-28T22:00:00+01:00"), berlin),
        utc("2026-03-29T08:00:00+02:00")
    );
    // Fall back.
    assert_eq!(
        w.next_open(utc("2026-10-24T22:00:00+02:00"), berlin),
        utc("2026-10-25T08:00:00+01:00")
    );
    assert_eq!(
        w.closes_at(utc("2026-10-25T20:59:59+01:00"), berlin),
        Some(utc("2026-10-25T21:00:00+01:00"))
    );
    // A window opening inside the skipped hour opens when the gap ends.
    let w = Window::parse("02:30-05:00").unwrap();
    assert_eq!(w.next_open(night, berlin), utc("2026-03-29T01:00:00Z"));
    assert_eq!(
        w.closes_at(utc("2026-03-29T01:00:00Z"), berlin),
        Some(utc("2026-03-29T05:00:00+02:00"))
    );
    // A window inside the repeated hour (wall clock): open again on the second pass.
    let ny = tz("America/New_York");
    let w = Window::parse("01:15-01:45").unwrap();
    let first_pass_close = w.closes_at(utc("2026-11-01T01:20:00-04:00"), ny);
    assert_eq!(first_pass_close, Some(utc("2026-11-01T01:45:00-04:00")));
    assert_eq!(
        w.next_open(utc("2026-11-01T01:50:00-04:00"), ny),
        utc("2026-11-01T01:15:00-05:00")
    );
}

#[test]
fn window_parse_errors() {
    let e = Window::parse("08:00-08:00").unwrap_err();
    assert!(e.contains("empty"), "{e}");
    for bad in [
        "8-21",
        "08:00",
        "25:00-08:00",
        "08:60-09:00",
        "24:00-08:00",
        "8:00am-9:00pm",
    ] {
        assert!(Window::parse(bad).is_err(), "{bad}");
    }
    assert!(Window::parse("8:00-21:00").is_ok());
    let e = errors(ScheduleInput {
        cron: Some("0 9 * * *"),
        window: Some("21:00-21:00"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "window");
    let s = parse_schedule(&ScheduleInput {
        cron: Some("0 9 * * *"),
        window: Some("08:00-21:00"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.window(), Some(&Window::new(hm(8, 0), hm(21, 0)).unwrap()));
}

// ---------------------------------------------------------------- estimate_span

#[test]
fn estimate_span_pauses_outside_the_window() {
    let hcm = tz("Asia/Ho_Chi_Minh");
    let w = Window::parse("08:00-21:00").unwrap();
    // 1,000 at 1/s from 20:50: 600 by 21:00, the other 400 from 08:00 the next day.
    let (start, end) = estimate_span(utc("2026-11-27T20:50:00+07:00"), 1000, 1.0, Some(&w), hcm);
    assert_eq!(start, utc("2026-11-27T20:50:00+07:00"));
    assert_eq!(end, utc("2026-11-28T08:06:40+07:00"));
    // Starting outside the window: starts when it opens.
    let (start, end) = estimate_span(utc("2026-11-27T22:00:00+07:00"), 100, 10.0, Some(&w), hcm);
    assert_eq!(start, utc("2026-11-28T08:00:00+07:00"));
    assert_eq!(end, utc("2026-11-28T08:00:10+07:00"));
    // Several days of sending.
    let (_, end) = estimate_span(
        utc("2026-11-27T08:00:00+07:00"),
        3 * 13 * 3600,
        1.0,
        Some(&w),
        hcm,
    );
    assert_eq!(end, utc("2026-11-29T21:00:00+07:00"));
}

#[test]
fn estimate_span_without_window() {
    let t = utc("2026-11-27T20:50:00Z");
    assert_eq!(
        estimate_span(t, 1000, 25.0, None, Tz::UTC),
        (t, utc("2026-11-27T20:50:40Z"))
    );
    assert_eq!(estimate_span(t, 0, 25.0, None, Tz::UTC), (t, t));
    // A rate that is not positive is read as unlimited.
    assert_eq!(estimate_span(t, 1000, 0.0, None, Tz::UTC), (t, t));
    assert_eq!(estimate_span(t, u64::MAX, 1e-300, None, Tz::UTC).0, t);
}

// ---------------------------------------------------------------- text helpers

#[test]
fn parse_duration_forms_and_errors() {
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
    for bad in ["", "2", "two hours", "2 lightyears", "-5m"] {
        let e = parse_duration(bad).unwrap_err();
        assert!(
            e.contains("\"10s\"") && e.contains("\"2h\"") && e.contains("\"1h 30m\""),
            "{bad}: {e}"
        );
    }
    let e = errors(ScheduleInput {
        cron: Some("0 9 * * *"),
        catch_up: Some("2 hours please"),
        ..Default::default()
    });
    assert_eq!(e[0].field, "catch_up");
}

#[test]
fn parse_when_forms_and_errors() {
    let hcm = tz("Asia/Ho_Chi_Minh");
    let expected = utc("2026-11-27T02:00:00Z");
    for text in [
        "2026-11-27T09:00:00+07:00",
        "2026-11-27T02:00:00Z",
        "2026-11-27T09:00",
        "2026-11-27T09:00:00",
        "2026-11-27 09:00",
        "2026-11-27 09:00:00",
    ] {
        assert_eq!(parse_when(text, hcm), Ok(expected), "{text}");
    }
    // Local times read in the given zone, DST rules as for occurrences.
    let berlin = tz("Europe/Berlin");
    assert_eq!(
        parse_when("2026-03-29 02:30", berlin),
        Ok(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        parse_when("2026-10-25 02:30", berlin),
        Ok(utc("2026-10-25T00:30:00Z"))
    );
    for bad in [
        "",
        "tomorrow",
        "2026-11-27",
        "2026-13-01T09:00",
        "27/11/2026 09:00",
        "2026-11-27T25:00",
    ] {
        let e = parse_when(bad, hcm).unwrap_err();
        assert!(
            e.contains("RFC 3339") && e.contains("2026-11-27 09:00"),
            "{bad}: {e}"
        );
    }
}

// ---------------------------------------------------------------- robustness

#[test]
fn extreme_inputs_do_not_panic() {
    let extremes = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        DateTime::UNIX_EPOCH,
    ];
    let zones = [
        "UTC",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Europe/Berlin",
    ];
    for zone in zones {
        let z = tz(zone);
        for expr in ["* * * * * *", "0 9 * * MON-FRI", "@yearly"] {
            let s = cron_in(expr, zone);
            for t in extremes {
                let _ = s.latest_at_or_before(t);
                let _ = s.next_after(t);
                let _ = s.due(t, |_| false);
            }
        }
        for w in ["08:00-21:00", "22:00-06:00"] {
            let w = Window::parse(w).unwrap();
            for t in extremes {
                let _ = w.contains(t, z);
                let _ = w.next_open(t, z);
                let _ = w.closes_at(t, z);
                let _ = estimate_span(t, 1_000_000, 10.0, Some(&w), z);
                let _ = estimate_span(t, u64::MAX, f64::NAN, None, z);
            }
        }
    }
    // The longest span estimated (capped at 100 years) still ends.
    let w = Window::parse("08:00-21:00").unwrap();
    let (_, end) = estimate_span(DateTime::UNIX_EPOCH, u64::MAX, 1e-9, Some(&w), Tz::UTC);
    assert!(
        end > utc("2069-01-01T00:00:00Z") && end < utc("2300-01-01T00:00:00Z"),
        "{end}"
    );
    let clock = ManualClock::new(DateTime::<Utc>::MAX_UTC);
    clock.advance(Duration::MAX);
    assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    // Odd text never panics.
    let texts = [
        "",
        " ",
        "-",
        "*",
        "/",
        "-5",
        "5-",
        "*/",
        "/5",
        "1-2-3",
        "1//2",
        "9999999999999",
        "０ 9 * * *",
        "@",
        "@@daily",
        "0 9 * * MON-",
        "262143-12-31",
        "-262143-01-01",
        "+262143-12-31T23:59:59Z",
        "262143-12-31 23:59",
        "99:99-99:99",
        "é",
        "24:00-24:00",
        "UTC+99",
        "GMT-",
        "+",
        "Etc/GMT+14",
    ];
    for text in texts {
        let _ = parse_duration(text);
        let _ = parse_when(text, tz("Pacific/Kiritimati"));
        let _ = Window::parse(text);
        let _ = parse_schedule(&ScheduleInput {
            cron: Some(text),
            ..Default::default()
        });
        let _ = parse_schedule(&ScheduleInput {
            at: Some(text),
            timezone: Some(text),
            ..Default::default()
        });
        let _ = parse_schedule(&ScheduleInput {
            cron: Some("0 9 * * *"),
            timezone: Some("Pacific/Kiritimati"),
            starts: Some(text),
            ends: Some(text),
            catch_up: Some(text),
            window: Some(text),
            ..Default::default()
        });
        let _ = parse_schedule(&ScheduleInput {
            cron: Some(&format!("0 9 * * {text}")),
            ..Default::default()
        });
    }
}

// ---------------------------------------------------- day-of-week steps (issue 13)

#[test]
fn a_day_of_week_step_never_reaches_seven() {
    // `1/2` is Monday, Wednesday, Friday: Sunday (7) is not an eighth day.
    let s = cron_in("0 0 * * 1/2", "Asia/Kathmandu");
    let sunday = utc("2027-01-31T00:00:00+05:45");
    // Not due on Sunday: Friday's occurrence is the latest, and long past catching up.
    match s.due(sunday, |_| false) {
        Due::Missed { occurrence, next } => {
            assert_eq!(occurrence.id(), "2027-01-29T00:00:00+05:45");
            assert_eq!(
                next.map(|o| o.id()).as_deref(),
                Some("2027-02-01T00:00:00+05:45")
            );
        }
        other => panic!("Sunday is not an occurrence: {other:?}"),
    }
    assert_eq!(
        ids_between(&s, "2027-01-24T00:00:00+05:45", "2027-02-01T00:00:00+05:45"),
        vec![
            "2027-01-25T00:00:00+05:45",
            "2027-01-27T00:00:00+05:45",
            "2027-01-29T00:00:00+05:45",
            "2027-02-01T00:00:00+05:45",
        ]
    );
}

#[test]
fn a_starred_day_of_month_with_a_weekday_is_reported_as_both_must_match() {
    let s = cron_in("0 0 */2 * MON", "Asia/Kathmandu");
    let warnings = s.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].field, "cron");
    assert!(
        warnings[0]
            .message
            .starts_with("`0 0 */2 * MON`: day-of-month `*/2` starts with `*`"),
        "{warnings:?}"
    );
    assert!(cron_in("0 0 1-31/2 * MON", "UTC").warnings().is_empty());
    assert!(cron_in("0 9 * * MON-FRI", "UTC").warnings().is_empty());
}
