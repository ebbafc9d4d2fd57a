//! Property and fuzz tests: hostile input gets a diagnostic, never a panic, an
//! abort or a hang (SPEC sections 9 and 10).
//!
//! Every property drives a public entry point of the library with arbitrary and
//! with structure-aware inputs: the YAML loader, the campaign and project
//! checkers (seeds from `campaigns/` and `tests/fixtures/invalid/`, mutated), the
//! CSV and JSONL readers, templates and `where`, cron and the rest of
//! `schedule:`, and durations; one property generates whole campaigns with their
//! audience files and plans them.
//!
//! Case counts: each property runs the small count written next to it (a few
//! thousand in all, for CI); `SMAX_FUZZ_CASES=N` runs N cases of every property
//! instead (`bench/fuzz` uses it for the long run). `SMAX_FUZZ_TALLY=FILE`
//! appends one line per property: name, cases, cases accepted (the input got
//! past the parser or checker), seconds, slowest case in ms, and that case.
//! `SMAX_FUZZ_DEBUG=1` prints why each refused campaign was refused (to tune
//! the generators: most generated campaigns should get through to the plan).
//!
//! Hangs: a watchdog thread ends the process (the whole integration test
//! binary, whatever else is running in it), naming the property and printing
//! the input, when one case runs longer than `SMAX_FUZZ_CASE_SECS` (default 30).
//!
//! These properties share the process with every other integration test. The
//! project files they load name token variables and token files, and the library
//! registers what those hold with its process-wide secret scrubber (`redact`),
//! which would then scrub other tests' output. The suite never sets those
//! variables, and with the fixed seed no input names a readable token file or a
//! URL password: nothing is registered.
//! Panics are caught and shrunk by proptest. Inputs are kept small, so that any
//! slow case is a finding, not noise.
//!
//! Properties marked `#[ignore]` hold inputs the code does not survive yet: each
//! says what it found (the reproducer is the minimal input it prints), and is
//! enabled once the fix lands. Some of them abort the process or use gigabytes
//! until then: run them one at a time, under a memory limit, e.g.
//! `(ulimit -v 8000000; cargo test --test testsuite fuzz::NAME -- --ignored)`.

use std::fmt::Debug;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestRunner};
use serde_json::Value as Json;

use smax_campaign::audience::{
    read_csv_header, AudienceReader, ColumnType, RowEvent, Source, SourceKind,
};
use smax_campaign::campaign::{self, yaml, Project};
use smax_campaign::diagnostic::{self, Diagnostic, DiagnosticFormat, Location, SourceText};
use smax_campaign::plan::{self, Pipeline, Planned};
use smax_campaign::render::Renderer;
use smax_campaign::schedule::{self, ScheduleInput, Window};
use smax_campaign::state::KeySet;
use smax_campaign::templates::{TemplateSet, KEY, WHERE};

// ---- the harness ------------------------------------------------------------

/// The case count of one property: `ci`, or `SMAX_FUZZ_CASES` when set.
fn cases(ci: u32) -> u32 {
    std::env::var("SMAX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(ci)
}

fn case_limit() -> Duration {
    let secs = std::env::var("SMAX_FUZZ_CASE_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// The case each test thread is running, for the watchdog.
struct Running {
    target: &'static str,
    started: Instant,
    input: String,
}

static RUNNING: Mutex<Vec<Option<Running>>> = Mutex::new(Vec::new());

thread_local! {
    static SLOT: usize = {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.push(None);
        running.len() - 1
    };
}

/// Starts the watchdog once: a case running past the limit is a hang. The
/// process ends (a hung case cannot be unwound), printing what hung.
fn watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let limit = case_limit();
        std::thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                for case in running.iter().flatten() {
                    if case.started.elapsed() > limit {
                        // Straight to the stream: the test harness captures
                        // `eprintln!`, and the process is about to end.
                        let _ = writeln!(
                            std::io::stderr(),
                            "\nfuzz: HANG in `{}`: one case ran over {:?}.\ninput: {}\n",
                            case.target,
                            limit,
                            case.input
                        );
                        std::process::exit(3);
                    }
                }
            })
            .expect("the watchdog thread starts");
    });
}

/// Registers the running case; clears it when dropped (also on panic).
struct Watch {
    slot: usize,
}

impl Watch {
    fn start(target: &'static str, input: String) -> Watch {
        let slot = SLOT.with(|s| *s);
        RUNNING.lock().unwrap_or_else(|e| e.into_inner())[slot] = Some(Running {
            target,
            started: Instant::now(),
            input,
        });
        Watch { slot }
    }

    fn finish(self) -> String {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running[self.slot]
            .take()
            .map(|r| r.input)
            .unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running[self.slot] = None;
    }
}

thread_local! {
    /// Cases of the running property whose input got past the entry point
    /// (parsed, loaded, compiled): the tally shows how deep the inputs reach.
    static ACCEPTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts the running case as accepted (see `ACCEPTED`).
fn accepted() {
    ACCEPTED.with(|a| a.set(a.get() + 1));
}

/// A fixed seed unless `SMAX_FUZZ_SEED` says otherwise (a number, or
/// `random`): the suite in CI is deterministic, and the long run in
/// `bench/fuzz` explores new inputs each time.
fn rng_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("SMAX_FUZZ_SEED").ok().as_deref() {
        None | Some("") => RngSeed::Fixed(0x5eed_2026),
        Some("random") => RngSeed::Random,
        Some(n) => RngSeed::Fixed(n.parse().unwrap_or(0x5eed_2026)),
    }
}

/// Runs one property: `ci` cases (or `SMAX_FUZZ_CASES`), each watched for
/// hangs and timed; a failure (a panic included) is shrunk to a minimal input
/// and reported with it.
fn fuzz<S>(target: &'static str, ci: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    watchdog();
    let config = Config {
        cases: cases(ci),
        // Reproducers go in the failure message, not in files beside the tests.
        failure_persistence: None,
        max_shrink_time: 120_000,
        rng_seed: rng_seed(),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    ACCEPTED.with(|a| a.set(0));
    let count = AtomicU64::new(0);
    let slowest = Mutex::new((Duration::ZERO, String::new()));
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        count.fetch_add(1, Ordering::Relaxed);
        let watch = Watch::start(target, format!("{input:?}"));
        let t = Instant::now();
        let outcome = test(input);
        let took = t.elapsed();
        let shown = watch.finish();
        let mut slowest = slowest.lock().unwrap_or_else(|e| e.into_inner());
        if took > slowest.0 {
            *slowest = (took, shown);
        }
        outcome
    });
    let elapsed = started.elapsed();
    let (slow, slow_input) = slowest.into_inner().unwrap_or_else(|e| e.into_inner());
    let line = format!(
        "{target}\t{}\t{}\t{:.1}\t{:.1}\t{}\n",
        count.load(Ordering::Relaxed),
        ACCEPTED.with(|a| a.get()),
        elapsed.as_secs_f64(),
        slow.as_secs_f64() * 1000.0,
        shorten(&slow_input, 160).replace(['\t', '\n'], " ")
    );
    if let Ok(path) = std::env::var("SMAX_FUZZ_TALLY") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
    if let Err(e) = result {
        panic!("property `{target}` failed: {e}");
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// A temporary folder for one property's files, rewritten by every case.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("smax-fuzz-")
        .tempdir()
        .expect("a temporary folder")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a scratch file");
}

// ---- what every failure must look like ---------------------------------------

/// Every diagnostic says something, and every renderer takes it.
fn check_diagnostics(diagnostics: &[Diagnostic]) -> TestCaseResult {
    for d in diagnostics {
        prop_assert!(!d.code.is_empty(), "a diagnostic without a code: {d:?}");
        prop_assert!(
            !d.message.trim().is_empty(),
            "a diagnostic without a message: {d:?}"
        );
    }
    for format in [
        DiagnosticFormat::Text,
        DiagnosticFormat::Json,
        DiagnosticFormat::Github,
    ] {
        let out = diagnostic::render(diagnostics, format);
        prop_assert!(diagnostics.is_empty() || !out.is_empty());
    }
    Ok(())
}

/// A file that does not load says why: at least one error.
fn check_refusal(diagnostics: &[Diagnostic]) -> TestCaseResult {
    prop_assert!(
        diagnostics.iter().any(Diagnostic::is_error),
        "refused without an error: {diagnostics:?}"
    );
    check_diagnostics(diagnostics)
}

// ---- token dictionaries --------------------------------------------------------

fn pick(tokens: &'static [&'static str]) -> impl Strategy<Value = &'static str> + Clone {
    prop::sample::select(tokens)
}

/// Tokens with a meaning to YAML, and words from the campaign schema.
const YAML_TOKENS: &[&str] = &[
    ": ",
    ":",
    "- ",
    "-",
    " ",
    "  ",
    "    ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "|",
    "|-",
    ">",
    ">+",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!custom ",
    "!",
    "? ",
    "---",
    "...",
    "#",
    " # note",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2000:\n",
    "null",
    "~",
    "true",
    "no",
    "1e400",
    "-0",
    "0x1F",
    "0o17",
    ".inf",
    ".nan",
    "-.inf",
    "99999999999999999999",
    "1.50",
    "0912",
    "\u{feff}",
    "\u{85}",
    "\u{2028}",
    "\\",
    "\\u00e9",
    "\\x",
    "\"\\U0001F600\"",
    "'it''s'",
    "{{ x }}",
    "{% if x %}",
    "{% endif %}",
    "%",
    "@",
    "`",
    "é",
    "Hà Nội",
    "🙂",
    "\u{0}",
    "\u{7f}",
    "version",
    "name",
    "bot",
    "audience",
    "from",
    "csv",
    "jsonl",
    "users",
    "where",
    "exclude",
    "key",
    "recipient",
    "message",
    "schedule",
    "cron",
    "timezone",
    "delivery",
    "rate",
    "timeout",
    "max_failures",
    "types",
    "delimiter",
    "path",
    "token_env",
    "token_file",
    "token",
    "api",
    "v1",
    "v2",
    "attributes",
    "messages",
    "text",
    "tag",
    "window",
    "catch_up",
    "starts",
    "ends",
    "at",
    "vars",
    "priority",
    "block_name",
    "block_id",
    "customer_id",
    "user_id",
    "one_time_notif_token",
    "data_dirs",
    "bots",
    "defaults",
    "state",
    "api_url",
    "integer",
    "number",
    "boolean",
    "HUMAN_AGENT",
    "bot_token=x",
    "../",
    "../../../../etc/passwd",
    "/etc/hostname",
    "audiences/members.csv",
    "0 9 * * MON-FRI",
    "Asia/Ho_Chi_Minh",
    "2h",
    "08:00-21:00",
    "5%",
    "1e-300",
];

/// Jinja-ish tokens for template soup.
const TEMPLATE_TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{{-",
    "-}}",
    "{%-",
    "-%}",
    "{#",
    "#}",
    " ",
    "x",
    "name",
    "n",
    "items",
    "m",
    "m.k",
    "vars",
    "vars.sale_end",
    "campaign.name",
    "run.id",
    "now",
    "missing",
    "loop.index",
    "none",
    "true",
    "1",
    "0",
    "-1",
    "2.5",
    "'s'",
    "\"q\"",
    "[1, 2]",
    "{'a': 1}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "|",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "~",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "defined",
    "|upper",
    "|int",
    "|default('x')",
    "|length",
    "|join(',')",
    "|tojson",
    "|first",
    "|items",
    "for",
    "endfor",
    "endif",
    "set",
    "=",
    "{% if x %}",
    "{% else %}",
    "{% endif %}",
    "{% for i in items %}",
    "{% for i in range(3) %}",
    "{% endfor %}",
    "{% set a = 1 %}",
    "{% raw %}",
    "{% endraw %}",
    "{% macro f(a) %}",
    "{% endmacro %}",
    "{{ f(1) }}",
    "{% call f(1) %}",
    "{% endcall %}",
    "{% filter upper %}",
    "{% endfilter %}",
    "{% break %}",
    "{% continue %}",
    "{% with %}",
    "{% endwith %}",
    "{% include 'x' %}",
    "{% extends 'x' %}",
    "{% block b %}",
    "{% endblock %}",
    "{% import 'x' as y %}",
    "{% autoescape true %}",
    "{% endautoescape %}",
    "{% do x %}",
    "{% include '/message/text' %}",
    "{% include '/audience/key' %}",
    "{% import '/message/text' as t %}",
    "{% extends '/audience/key' %}",
    "{{ self }}",
    "{{ namespace() }}",
    "\n",
    "é",
    "🙂",
    "\u{0}",
    "{{ x }}",
    "{{ name|upper }}",
    "Chào ",
    "%}{% if ",
    "}}{{",
];

// ---- YAML --------------------------------------------------------------------

fn yaml_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => pick(YAML_TOKENS).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
        ],
        0..120,
    )
    .prop_map(|parts| parts.concat())
}

/// Line-shaped YAML: indentation, optional `- `, a key, a value, a comment.
fn yaml_lines() -> impl Strategy<Value = String> {
    let line = (
        0usize..10,
        any::<bool>(),
        prop::option::of(pick(YAML_TOKENS)),
        prop::collection::vec(pick(YAML_TOKENS), 0..4),
        prop::option::of(pick(&[" # c", " #", "#x", " &a", " *a"])),
    )
        .prop_map(|(indent, dash, key, value, comment)| {
            let mut s = " ".repeat(indent);
            if dash {
                s.push_str("- ");
            }
            if let Some(k) = key {
                s.push_str(k.trim());
                s.push_str(": ");
            }
            s.push_str(&value.concat());
            if let Some(c) = comment {
                s.push_str(c);
            }
            s
        });
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

fn check_yaml(text: &str) -> TestCaseResult {
    match yaml::parse(text) {
        Ok(doc) => {
            accepted();
            let _ = doc.spans.value("/audience/from/0/csv/path");
            let _ = doc.spans.key("/message/text");
            let _ = serde_json::to_string(&doc.value);
        }
        Err(e) => {
            prop_assert!(!e.message.trim().is_empty(), "an empty YAML error");
            let source = SourceText::new("c.yaml", text);
            let d = Diagnostic::error("yaml-syntax", e.message)
                .at(Location::in_source(&source, e.position, 1));
            check_diagnostics(&[d])?;
        }
    }
    Ok(())
}

#[test]
fn yaml_arbitrary_text() {
    fuzz(
        "yaml_arbitrary_text",
        300,
        prop_oneof![any::<String>(), "\\PC{0,200}", yaml_soup(),],
        |text| check_yaml(&text),
    );
}

#[test]
fn yaml_structured_lines() {
    fuzz("yaml_structured_lines", 300, yaml_lines(), |text| {
        check_yaml(&text)
    });
}

/// Exponential alias expansion ("billion laughs"): `levels` anchors, each a
/// list (or a mapping) of `fan_out` aliases of the one before.
fn alias_bomb(levels: usize, fan_out: usize, mapping: bool, seed: &str) -> String {
    let mut text = format!("a0: &a0 [{}]\n", Json::from(seed));
    for i in 1..=levels {
        let items: Vec<String> = (0..fan_out)
            .map(|k| {
                if mapping {
                    format!("k{k}: *a{}", i - 1)
                } else {
                    format!("*a{}", i - 1)
                }
            })
            .collect();
        let (open, close) = if mapping { ("{", "}") } else { ("[", "]") };
        text.push_str(&format!("a{i}: &a{i} {open}{}{close}\n", items.join(", ")));
    }
    text
}

#[test]
fn yaml_alias_bombs() {
    fuzz(
        "yaml_alias_bombs",
        32,
        (1usize..24, 1usize..24, any::<bool>(), json_string()),
        |(levels, fan_out, mapping, seed)| {
            let text = alias_bomb(levels, fan_out, mapping, &seed);
            // The loader refuses what it would not expand, promptly.
            let t = Instant::now();
            let outcome = yaml::parse(&text);
            prop_assert!(
                t.elapsed() < Duration::from_secs(2),
                "took {:?}",
                t.elapsed()
            );
            if (fan_out as f64).powi(levels as i32) > 1e6 {
                prop_assert!(outcome.is_err(), "expanded {fan_out}^{levels} aliases");
            }
            check_yaml(&text)
        },
    );
}

/// Deeply nested collections, flow (`[[[`) or block (`- - -`).
fn deep_yaml(depth: usize, flow: bool) -> String {
    if flow {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        let mut s = String::new();
        for i in 0..depth {
            s.push_str(&" ".repeat(i));
            s.push_str("-\n");
        }
        s
    }
}

#[test]
fn yaml_nesting_within_reason() {
    // Depths a person might write, and some: everything must come back.
    fuzz(
        "yaml_nesting_within_reason",
        40,
        prop_oneof![
            (1usize..200).prop_map(compact_sequences),
            (1usize..200, any::<bool>()).prop_map(|(d, flow)| deep_yaml(d, flow)),
        ],
        |text| check_yaml(&text),
    );
}

/// Compact nested block sequences, `- - - … x`: two bytes a level.
fn compact_sequences(depth: usize) -> String {
    format!(
        "version: 1\nname: x\nvars:\n  a:\n    {}x\n",
        "- ".repeat(depth)
    )
}

#[test]
fn yaml_deep_nesting() {
    fuzz(
        "yaml_deep_nesting",
        16,
        prop_oneof![
            (1_000usize..300_000).prop_map(compact_sequences),
            (1_000usize..300_000).prop_map(|d| deep_yaml(d, true)),
            // Indented, the file grows with the square of the depth.
            (1_000usize..3_000).prop_map(|d| deep_yaml(d, false)),
        ],
        |text| check_yaml(&text),
    );
}

// ---- campaign and project files ------------------------------------------------

/// Seeds: every campaign of the repository and of the fixtures, and one that
/// sets nearly every key.
const CAMPAIGN_SEEDS: &[(&str, &str)] = &[
    (
        "campaigns",
        include_str!("../../campaigns/appointment-reminder.yaml"),
    ),
    (
        "campaigns",
        include_str!("../../campaigns/loyalty-points.yaml"),
    ),
    (
        "campaigns",
        include_str!("../../campaigns/order-shipped.yaml"),
    ),
    ("campaigns", KITCHEN_SINK),
    ("invalid", include_str!("../fixtures/invalid/bad-name.yaml")),
    ("invalid", include_str!("../fixtures/invalid/bad-tag.yaml")),
    (
        "invalid",
        include_str!("../fixtures/invalid/conflicting-content.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/human-agent-v1.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/invalid-cron.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/invalid-timezone.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/literal-token.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/missing-file.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/no-identifier.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/policy-warnings.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/reserved-attribute.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/template-syntax.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/unknown-bot.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/unknown-column.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/unknown-key.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/unknown-var.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/v1-with-text.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/wrong-type.yaml"),
    ),
    (
        "invalid",
        include_str!("../fixtures/invalid/yaml-syntax.yaml"),
    ),
];

const KITCHEN_SINK: &str = r#"version: 1
name: kitchen-sink
description: nearly every key
bot: { id: "b1", token_env: SMAX_FUZZ_TOKEN, api: v2 }
vars:
  sale_end: "30/11"
  n: 3
audience:
  from:
    - csv:
        path: audiences/members.csv
        types: { points: integer }
        delimiter: ","
    - jsonl: audiences/appointments.jsonl
    - users:
        - { customer_id: "U1", first_name: "An", points: 4, phone: null }
  where: "points|default(0) >= 3 or city|default('') == 'Hà Nội'"
  exclude:
    - csv: audiences/unsubscribed.csv
  key: "{{ customer_id }}"
recipient:
  customer_id: "{{ customer_id|default('') }}"
  customer_phone: "{{ phone|default('') }}"
  priority: [phone, fbid]
message:
  tag: ACCOUNT_UPDATE
  messages:
    - text: "Chào {{ first_name|default('bạn') }}{% if points is defined %} {{ points }}{% endif %}"
    - attachment: { type: template, payload: { buttons: [ { title: "{{ vars.sale_end }}", n: 1 } ] } }
  one_time_notif_token: "{{ customer_id|default('x') }}-otn"
  attributes:
    seen: "{{ run.id }} {{ now }}"
schedule:
  cron: "*/15 8-20 * * 1-5"
  timezone: Europe/Berlin
  starts: 2026-03-01
  ends: 2026-11-30T23:00:00+01:00
  catch_up: 90m
  window: "22:00-06:00"
delivery:
  rate: 20
  concurrency: 4
  timeout: 5s
  retries: 3
  max_failures: "2.5%"
  retry_unknown: false
"#;

const PROJECT_SEEDS: &[&str] = &[
    include_str!("../../smax.yaml"),
    r#"api_url: http://127.0.0.1:9/
state: none
data_dirs: [../shared-data, /tmp]
bots:
  shop: { id: "64f0c2a1e4b0", token_env: SMAX_SHOP_TOKEN, api: v2 }
  classic: { id: "bot-v1", token_file: secrets/classic.token, api: v1 }
defaults:
  delivery: { concurrency: 8, rate: 10, timeout: 3s, max_failures: 50 }
"#,
];

/// The project every mutated campaign is loaded in: smax.yaml with the bots of
/// the repository and of the fixtures, and their audience files.
const PROJECT_FILE: &str = r#"bots:
  shop: { id: "64f0c2a1e4b0", token_env: SMAX_SHOP_TOKEN, api: v2 }
  shop-classic: { id: "5f1a9c3b7d20", token_env: SMAX_SHOP_CLASSIC_TOKEN, api: v1 }
  classic: { id: "bot-v1", token_env: TEST_CLASSIC_TOKEN, api: v1 }
"#;

fn project_folder() -> (tempfile::TempDir, Project) {
    let dir = scratch();
    let root = dir.path();
    std::fs::create_dir_all(root.join("campaigns/audiences")).expect("mkdir");
    std::fs::create_dir_all(root.join("audiences")).expect("mkdir");
    std::fs::create_dir_all(root.join("invalid")).expect("mkdir");
    let files: &[(&str, &str)] = &[
        (
            "campaigns/audiences/appointments.jsonl",
            include_str!("../../campaigns/audiences/appointments.jsonl"),
        ),
        (
            "campaigns/audiences/members.csv",
            include_str!("../../campaigns/audiences/members.csv"),
        ),
        (
            "campaigns/audiences/shipped-orders.csv",
            include_str!("../../campaigns/audiences/shipped-orders.csv"),
        ),
        (
            "campaigns/audiences/unsubscribed.csv",
            include_str!("../../campaigns/audiences/unsubscribed.csv"),
        ),
        (
            "audiences/members.csv",
            include_str!("../fixtures/audiences/members.csv"),
        ),
        ("smax.yaml", PROJECT_FILE),
    ];
    for (name, text) in files {
        write(&root.join(name), text.as_bytes());
    }
    let project = campaign::load_project(&root.join("smax.yaml")).expect("the project loads");
    (dir, project)
}

/// One edit of a file.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit of one byte (may break UTF-8).
    FlipBit(Index, u8),
    /// Insert a dictionary token at a byte position.
    Insert(Index, &'static str),
    /// Insert random bytes.
    InsertBytes(Index, Vec<u8>),
    /// Delete up to `n` bytes.
    Delete(Index, usize),
    /// Replace what follows `: ` on a line with a token.
    ReplaceValue(Index, &'static str),
    DuplicateLine(Index),
    DeleteLine(Index),
    SwapLines(Index, Index),
    /// Indent a line by `n` spaces (or a tab), or dedent it.
    Indent(Index, i8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        4 => (any::<Index>(), pick(YAML_TOKENS)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        4 => (any::<Index>(), pick(YAML_TOKENS)).prop_map(|(i, t)| Mutation::ReplaceValue(i, t)),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => (any::<Index>(), -4i8..5).prop_map(|(i, n)| Mutation::Indent(i, n)),
    ]
}

fn mutate(seed: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for m in mutations {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match m {
            Mutation::FlipBit(i, bit) => {
                if !bytes.is_empty() {
                    let p = i.index(bytes.len());
                    bytes[p] ^= 1 << bit;
                }
            }
            Mutation::Insert(i, t) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, t.bytes());
            }
            Mutation::InsertBytes(i, b) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::Delete(i, n) => {
                if !bytes.is_empty() {
                    let p = i.index(bytes.len());
                    let end = (p + n).min(bytes.len());
                    bytes.drain(p..end);
                }
            }
            Mutation::ReplaceValue(i, t) => {
                let mut lines = split_lines(&bytes);
                if !lines.is_empty() {
                    let n = i.index(lines.len());
                    if let Some(p) = find(&lines[n], b": ") {
                        lines[n].truncate(p + 2);
                        lines[n].extend_from_slice(t.as_bytes());
                    }
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::DuplicateLine(i) => {
                let mut lines = split_lines(&bytes);
                if !lines.is_empty() {
                    let n = i.index(lines.len());
                    let line = lines[n].clone();
                    lines.insert(n, line);
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::DeleteLine(i) => {
                let mut lines = split_lines(&bytes);
                if !lines.is_empty() {
                    lines.remove(i.index(lines.len()));
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::SwapLines(a, b) => {
                let mut lines = split_lines(&bytes);
                if !lines.is_empty() {
                    let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                    lines.swap(a, b);
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::Indent(i, n) => {
                let mut lines = split_lines(&bytes);
                if !lines.is_empty() {
                    let k = i.index(lines.len());
                    let line = &mut lines[k];
                    match *n {
                        0 => line.insert(0, b'\t'),
                        n if n > 0 => {
                            line.splice(0..0, std::iter::repeat_n(b' ', n as usize));
                        }
                        n => {
                            let spaces = line.iter().take_while(|b| **b == b' ').count();
                            line.drain(..spaces.min(n.unsigned_abs() as usize));
                        }
                    }
                }
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Loads a campaign file; a refusal must carry an error, a campaign none; a
/// loaded campaign compiles and plans without a panic.
fn check_campaign_file(path: &Path, project: &Project, plan_it: bool) -> TestCaseResult {
    let (loaded, diagnostics) = campaign::load_campaign(path, project);
    // To tune the generators: why generated campaigns are refused.
    if std::env::var_os("SMAX_FUZZ_DEBUG").is_some() && loaded.is_none() {
        for d in diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("refused: {} {}", d.code, shorten(&d.message, 100));
        }
    }
    match &loaded {
        None => check_refusal(&diagnostics)?,
        Some(_) => {
            accepted();
            prop_assert!(
                !diagnostics.iter().any(Diagnostic::is_error),
                "a campaign loaded despite errors: {diagnostics:?}"
            );
            check_diagnostics(&diagnostics)?;
        }
    }
    if let Some(c) = loaded {
        if plan_it {
            check_plan(&c)?;
        }
    }
    Ok(())
}

/// Plans a loaded campaign to the end: the counts add up, every invalid row
/// and every unreadable source says why, every request serialises.
fn check_plan(c: &campaign::Campaign) -> TestCaseResult {
    let preview = plan::preview_run(c, at(1_796_194_800));
    let renderer = match Renderer::new(c, &preview.run) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "a validated campaign does not compile: {e:?}"
            )))
        }
    };
    let suppressed = match plan::suppression_set(c, &renderer) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                prop_assert!(!e.message.trim().is_empty(), "{e:?}");
            }
            KeySet::new()
        }
    };
    let mut pipeline = Pipeline::new(c, renderer, Arc::new(suppressed), None);
    let bot = smax_campaign::api::wire::BotEndpoint {
        id: c.bot.id.clone(),
        tag_style: c.bot.tag_style,
    };
    for planned in pipeline.by_ref() {
        match planned {
            Planned::Send(request) => {
                let _ = request.wire.path_and_query(&bot, None);
                let _ = request.wire.body();
                prop_assert!(!request.key.trim().is_empty());
            }
            Planned::Invalid(origin, reason) => {
                prop_assert!(
                    !reason.to_string().trim().is_empty(),
                    "an invalid row without a reason at {origin}"
                );
            }
            Planned::Filtered
            | Planned::Suppressed
            | Planned::Duplicate
            | Planned::AlreadySent
            | Planned::HeldOut => {}
        }
    }
    for failure in &pipeline.source_failures {
        prop_assert!(!failure.message.trim().is_empty(), "{failure:?}");
    }
    let n = pipeline.counts;
    prop_assert_eq!(
        n.read,
        n.filtered + n.suppressed + n.duplicates + n.invalid + n.to_send + n.already_sent,
        "counts do not add up: {:?}",
        n
    );
    Ok(())
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

#[test]
fn campaign_files_mutated() {
    let (dir, project) = project_folder();
    // The seeds that load (the first four) more often, and few edits more
    // often than many: most cases then get past the checker into the plan.
    let seeds = prop_oneof![
        2 => prop::sample::select(&CAMPAIGN_SEEDS[..4]),
        1 => prop::sample::select(CAMPAIGN_SEEDS),
    ];
    let mutations = prop_oneof![
        2 => prop::collection::vec(mutation(), 0..3),
        1 => prop::collection::vec(mutation(), 3..10),
    ];
    fuzz(
        "campaign_files_mutated",
        250,
        (seeds, mutations),
        |((folder, seed), mutations)| {
            let path = dir.path().join(folder).join("c.yaml");
            write(&path, &mutate(seed, &mutations));
            check_campaign_file(&path, &project, true)
        },
    );
}

#[test]
fn campaign_files_arbitrary_bytes() {
    let (dir, project) = project_folder();
    fuzz(
        "campaign_files_arbitrary_bytes",
        150,
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            yaml_soup().prop_map(String::into_bytes),
            yaml_lines().prop_map(String::into_bytes),
        ],
        |bytes| {
            let path = dir.path().join("campaigns/c.yaml");
            write(&path, &bytes);
            check_campaign_file(&path, &project, false)
        },
    );
}

#[test]
fn project_files_mutated() {
    let dir = scratch();
    fuzz(
        "project_files_mutated",
        150,
        (
            prop::sample::select(PROJECT_SEEDS),
            prop_oneof![
                2 => prop::collection::vec(mutation(), 0..3),
                1 => prop::collection::vec(mutation(), 3..10),
            ],
        ),
        |(seed, mutations)| {
            let path = dir.path().join("smax.yaml");
            write(&path, &mutate(seed, &mutations));
            match campaign::load_project(&path) {
                Ok(project) => {
                    accepted();
                    let _ = project.state_setting();
                    let _ = project.api_url();
                    Ok(())
                }
                Err(diagnostics) => check_refusal(&diagnostics),
            }
        },
    );
}

// ---- generated campaigns, planned -----------------------------------------------

/// What follows a key's colon or an item's dash: a nested block on the next
/// lines, or a scalar (or empty collection) on the same line.
fn nested_yaml(v: &Json, indent: usize, out: &mut String) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            to_yaml(v, indent + 2, out);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            to_yaml(v, indent + 2, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
}

/// A small block-style YAML writer: keys and strings quoted as JSON (which YAML
/// reads), so that generated values land where they are meant to.
fn to_yaml(value: &Json, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Json::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&pad);
                out.push_str(&scalar_key(k));
                out.push(':');
                nested_yaml(v, indent, out);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            for v in items {
                out.push_str(&pad);
                out.push('-');
                nested_yaml(v, indent, out);
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&other.to_string());
            out.push('\n');
        }
    }
}

fn scalar_key(k: &str) -> String {
    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        k.to_owned()
    } else {
        Json::String(k.to_owned()).to_string()
    }
}

/// Audience column names: a few that templates use, and odd ones.
const COLUMNS: &[&str] = &[
    "id",
    "name",
    "first_name",
    "n",
    "phone",
    "vip",
    "city",
    "points",
    "items",
    "m",
    "x",
    "",
    " id ",
    "é",
    "a b",
    "none",
    "true",
    "loop",
    "vars",
    "id",
];

/// Names templates and `where` refer to.
const NAMES: &[&str] = &[
    "id",
    "name",
    "first_name",
    "n",
    "phone",
    "vip",
    "city",
    "points",
    "items",
    "m",
    "x",
    "missing",
    "vars",
    "vars.sale_end",
    "vars.n",
    "campaign.name",
    "run.id",
    "run.occurrence",
    "now",
    "m.k",
    "items[0]",
    "loop.index",
    "none",
    "true",
    "false",
    "self",
];

const LITERALS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "3",
    "2.5",
    "1e3",
    "''",
    "'a'",
    "'Hà Nội'",
    "\"q\"",
    "[]",
    "[1, 2]",
    "{}",
    "{'a': 1}",
    "none",
    "true",
    "(1, 2)",
];

const BINOPS: &[&str] = &[
    "+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", "<=", ">", ">=", "and", "or", "in",
    "not in", "is", "is not",
];

/// Filters, with small literal arguments only: arguments that size an output
/// (`indent(n)`, `center(n)`...) belong to `template_work_bounds`.
const FILTERS: &[&str] = &[
    "upper",
    "lower",
    "int",
    "float",
    "string",
    "length",
    "first",
    "last",
    "trim",
    "title",
    "capitalize",
    "abs",
    "round",
    "list",
    "sort",
    "reverse",
    "unique",
    "tojson",
    "safe",
    "escape",
    "items",
    "bool",
    "join(',')",
    "default('x')",
    "default(0)",
    "replace('a', 'b')",
    "truncate(3)",
    "indent(2)",
    "center(4)",
    "batch(2)",
    "slice(2)",
    "dictsort",
    "min",
    "max",
    "sum",
    "urlencode",
    "attr('k')",
    "map('upper')",
    "select",
    "reject",
    "split",
    "lines",
    "format(1)",
    "pprint",
    "wordcount",
    "striptags",
    "d",
    "e",
    "unknown_filter",
];

const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "number",
    "string",
    "odd",
    "even",
    "divisibleby(2)",
    "sequence",
    "mapping",
    "true",
    "false",
    "nope",
];

const FUNCTIONS: &[&str] = &["range(3)", "range(1, 4)", "dict(a=1)", "namespace()"];

/// What generated templates may use: all of the dictionaries, or only what a
/// campaign that passes validation uses (columns of its audience, the
/// globals, known filters and tests, no function calls).
#[derive(Clone, Copy)]
struct Grammar {
    names: &'static [&'static str],
    functions: bool,
    filters: &'static [&'static str],
    tests: &'static [&'static str],
    /// What `{% for %}` loops over.
    sequences: &'static [&'static str],
    /// Whether token soup may be mixed in. Without, the grammar also writes
    /// parentheses where Jinja's precedence would otherwise break the syntax.
    soup: bool,
}

const ANY: Grammar = Grammar {
    names: NAMES,
    functions: true,
    filters: FILTERS,
    tests: TESTS,
    sequences: &[
        "items",
        "range(3)",
        "m",
        "m|items",
        "'abc'",
        "[1, none]",
        "n",
        "x",
    ],
    soup: true,
};

/// The audience columns of generated campaigns that pass validation.
const HEADER: &[&str] = &[
    "id",
    "name",
    "first_name",
    "n",
    "phone",
    "vip",
    "city",
    "points",
    "x",
    "m",
    "items",
];

const VALID: Grammar = Grammar {
    names: &[
        "id",
        "name",
        "first_name",
        "n",
        "phone",
        "vip",
        "city",
        "points",
        "x",
        "m",
        "m.k",
        "items",
        "items[0]",
        "vars.sale_end",
        "vars.n",
        "campaign.name",
        "run.id",
        "run.occurrence",
        "now",
        "none",
        "true",
        "false",
    ],
    functions: false,
    filters: &[
        "upper",
        "lower",
        "int",
        "float",
        "string",
        "length",
        "first",
        "last",
        "trim",
        "title",
        "abs",
        "round",
        "list",
        "sort",
        "reverse",
        "unique",
        "escape",
        "items",
        "bool",
        "join(',')",
        "default('x')",
        "default(0)",
        "replace('a', 'b')",
        "truncate(3)",
        "batch(2)",
        "slice(2)",
        "dictsort",
        "min",
        "max",
        "sum",
        "urlencode",
        "map('upper')",
        "select",
        "reject",
        "split",
        "lines",
        "wordcount",
        "striptags",
        "d",
        "e",
    ],
    tests: &[
        "defined",
        "undefined",
        "none",
        "number",
        "string",
        "odd",
        "even",
        "divisibleby(2)",
        "sequence",
        "mapping",
        "true",
        "false",
    ],
    sequences: &["items", "m", "m|items", "'abc'", "[1, none]", "x"],
    soup: false,
};

/// A `where`-style expression, built from a small grammar.
fn expression_in(g: Grammar) -> BoxedStrategy<String> {
    let atom = if g.functions {
        prop_oneof![
            3 => pick(g.names).prop_map(str::to_owned),
            2 => pick(LITERALS).prop_map(str::to_owned),
            1 => pick(FUNCTIONS).prop_map(str::to_owned),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => pick(g.names).prop_map(str::to_owned),
            2 => pick(LITERALS).prop_map(str::to_owned),
        ]
        .boxed()
    };
    let (open, close) = if g.soup { ("", "") } else { ("(", ")") };
    let binops: &'static [&'static str] = if g.soup {
        BINOPS
    } else {
        // `is` wants a test's name after it, not an expression.
        &BINOPS[..BINOPS.len() - 2]
    };
    atom.prop_recursive(3, 16, 3, move |inner| {
        prop_oneof![
            (inner.clone(), pick(binops), inner.clone())
                .prop_map(move |(a, op, b)| format!("{open}{a} {op} {b}{close}")),
            (inner.clone(), pick(g.filters)).prop_map(|(a, f)| format!("{a}|{f}")),
            (inner.clone(), pick(g.tests))
                .prop_map(move |(a, t)| format!("{open}{a} is {t}{close}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner
                .clone()
                .prop_map(move |a| format!("{open}not {a}{close}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(move |(a, b, c)| format!("{open}{a} if {b} else {c}{close}")),
            (inner.clone(), inner.clone()).prop_map(move |(a, i)| format!("{open}{a}{close}[{i}]")),
            prop::collection::vec(inner, 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        ]
    })
    .boxed()
}

/// An expression, or (with soup) token soup around one.
fn where_in(g: Grammar) -> BoxedStrategy<String> {
    if !g.soup {
        return expression_in(g);
    }
    prop_oneof![
        6 => expression_in(g),
        1 => prop::collection::vec(pick(TEMPLATE_TOKENS), 0..8).prop_map(|t| t.join(" ")),
        1 => (expression_in(g), pick(TEMPLATE_TOKENS)).prop_map(|(e, t)| format!("{e} {t}")),
    ]
    .boxed()
}

fn where_expr() -> BoxedStrategy<String> {
    where_in(ANY)
}

/// A template from a small grammar: text, output, if, for, set, comments.
fn template_in(g: Grammar) -> BoxedStrategy<String> {
    let text = if g.soup {
        pick(&["Chào ", "x", " ", "\n", "é 🙂", "50%", "{", "}", "#", ""])
    } else {
        pick(&["Chào ", "x", " ", "\n", "é 🙂", "50%", "#", ""])
    };
    let leaf = if g.soup {
        prop_oneof![
            3 => text.prop_map(str::to_owned),
            4 => expression_in(g).prop_map(|e| format!("{{{{ {e} }}}}")),
            1 => expression_in(g).prop_map(|e| format!("{{{{- {e} -}}}}")),
            1 => pick(TEMPLATE_TOKENS).prop_map(str::to_owned),
            1 => Just("{# a comment #}".to_owned()),
            1 => Just("{% raw %}{{ not rendered }}{% endraw %}".to_owned()),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => text.prop_map(str::to_owned),
            4 => expression_in(g).prop_map(|e| format!("{{{{ {e} }}}}")),
            1 => expression_in(g).prop_map(|e| format!("{{{{- {e} -}}}}")),
            1 => Just("{# a comment #}".to_owned()),
        ]
        .boxed()
    };
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
            (
                expression_in(g),
                inner.clone(),
                prop::option::of(inner.clone())
            )
                .prop_map(|(cond, body, other)| match other {
                    Some(o) => format!("{{% if {cond} %}}{body}{{% else %}}{o}{{% endif %}}"),
                    None => format!("{{% if {cond} %}}{body}{{% endif %}}"),
                }),
            (pick(g.sequences), inner.clone()).prop_map(|(seq, body)| format!(
                "{{% for i in {seq} %}}{body}{{{{ loop.index }}}}{{% endfor %}}"
            )),
            (expression_in(g), inner.clone())
                .prop_map(|(e, body)| format!("{{% set a = {e} %}}{body}{{{{ a }}}}")),
            (pick(g.filters), inner)
                .prop_map(|(f, body)| format!("{{% filter {f} %}}{body}{{% endfilter %}}")),
        ]
    })
    .boxed()
}

fn template() -> BoxedStrategy<String> {
    template_in(ANY)
}

/// A template, or soup.
fn any_template() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => template(),
        1 => prop::collection::vec(pick(TEMPLATE_TOKENS), 0..16).prop_map(|t| t.concat()),
        1 => "\\PC{0,40}",
    ]
}

/// A JSON string: dictionary words or arbitrary characters.
fn json_string() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => pick(&[
            "", "An", "Hà Nội", "0912345678", "1.50", "true", "none", "None", "null", "{{ x }}",
            "{% for %}", "a,b", "\"", "\\", "\u{0}", "\u{feff}", "🙂", "\u{202e}", " ", "\n",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => any::<String>().prop_map(|s| shorten(&s, 12)),
    ]
}

/// Small integers: data that templates multiply or loop over stays small
/// until rendering has a work budget (see `template_work_bounds`).
fn json_value_small() -> impl Strategy<Value = Json> + Clone {
    json_value_with(prop_oneof![(-5i64..100).prop_map(Json::from)].boxed())
}

/// Any JSON numbers: for the readers, whose templates are fixed.
fn json_value() -> impl Strategy<Value = Json> + Clone {
    json_value_with(
        prop_oneof![
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(Json::Number)
                .unwrap_or(Json::Null)),
        ]
        .boxed(),
    )
}

fn json_value_with(numbers: BoxedStrategy<Json>) -> impl Strategy<Value = Json> + Clone {
    let leaf = prop_oneof![
        1 => Just(Json::Null),
        1 => any::<bool>().prop_map(Json::from),
        2 => numbers,
        3 => json_string().prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::vec((pick(COLUMNS).prop_map(str::to_owned), inner), 0..5)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// A row object: some known columns, some odd ones.
fn json_row(value: impl Strategy<Value = Json> + Clone) -> impl Strategy<Value = Json> {
    prop::collection::vec((pick(COLUMNS).prop_map(str::to_owned), value), 0..7)
        .prop_map(|kv| Json::Object(kv.into_iter().collect()))
}

// ---- CSV ------------------------------------------------------------------------

/// CSV cells: plain, quoted, broken quotes, BOMs, typed-looking values, bytes
/// that are not UTF-8.
const CSV_CELLS: &[&[u8]] = &[
    b"",
    b"x",
    b"An",
    b"0912345678",
    b"1.50",
    b"true",
    b"yes",
    b"No",
    b"1",
    b"0",
    b"12",
    b"-3",
    b" 7 ",
    b"1e400",
    b"nan",
    b"inf",
    b"-0",
    b"99999999999999999999",
    b"\"quoted, cell\"",
    b"\"unterminated",
    b"a\"b",
    b"\"\"",
    b"\"a\"\"b\"",
    b"\"line\nbreak\"",
    b"\r",
    b"\xEF\xBB\xBF",
    b"\xEF\xBB\xBFid",
    b"\xff\xfe",
    b"\xc3",
    b"\0",
    b"H\xc3\xa0 N\xe1\xbb\x99i",
    b"{{ x }}",
    b";",
    b",",
    b"\t",
    b"|",
    b"#",
    b"id",
    b"name",
    b"points",
];

#[derive(Debug, Clone)]
struct CsvCase {
    bom: bool,
    delimiter: u8,
    newline: &'static str,
    header: Vec<Vec<u8>>,
    rows: Vec<Vec<Vec<u8>>>,
    trailing_newline: bool,
    types: Vec<(String, ColumnType)>,
}

impl CsvCase {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let mut lines = vec![self.header.join(&self.delimiter)];
        lines.extend(self.rows.iter().map(|r| r.join(&self.delimiter)));
        out.extend(lines.join(self.newline.as_bytes()));
        if self.trailing_newline {
            out.extend_from_slice(self.newline.as_bytes());
        }
        out
    }
}

fn csv_cell() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        6 => prop::sample::select(CSV_CELLS).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..6),
        2 => pick(COLUMNS).prop_map(|s| s.as_bytes().to_vec()),
    ]
}

fn column_type() -> impl Strategy<Value = ColumnType> {
    prop_oneof![
        Just(ColumnType::String),
        Just(ColumnType::Integer),
        Just(ColumnType::Number),
        Just(ColumnType::Boolean),
    ]
}

fn csv_case() -> impl Strategy<Value = CsvCase> {
    (
        any::<bool>(),
        prop::sample::select(&[b',', b',', b',', b';', b'\t', b'|', b'"', b'\n', b' ', 0u8][..]),
        pick(&["\n", "\r\n", "\r"]),
        prop::collection::vec(csv_cell(), 0..5),
        prop::collection::vec(prop::collection::vec(csv_cell(), 0..6), 0..8),
        any::<bool>(),
        prop::collection::vec((pick(COLUMNS).prop_map(str::to_owned), column_type()), 0..4),
    )
        .prop_map(
            |(bom, delimiter, newline, header, rows, trailing_newline, types)| CsvCase {
                bom,
                delimiter,
                newline,
                header,
                rows,
                trailing_newline,
                types,
            },
        )
}

/// Renders a row's fields the ways campaigns do, through fixed templates.
fn row_templates() -> TemplateSet {
    let (set, errors) = TemplateSet::compile([
        (
            "/all",
            "{% for k in row %}{{ k }}={{ row[k] }};{% endfor %}",
        ),
        ("/id", "{{ row.id }}"),
        ("/print", "{{ row }}"),
        ("/typed", "{{ row.points|int + 1 }} {{ row.vip is true }}"),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

/// Reads every event of `sources`: rows render or fail with a message,
/// broken rows and unreadable sources say why. With `first_line`, row numbers
/// start there and only grow.
fn check_reader(
    sources: &[Source],
    templates: &TemplateSet,
    first_line: Option<u64>,
) -> TestCaseResult {
    let strict = first_line.is_some();
    let mut events = 0;
    let mut rows = 0;
    for source in sources {
        let mut last_line = first_line.unwrap_or(1) - 1;
        for event in AudienceReader::new(std::slice::from_ref(source)) {
            events += 1;
            match event {
                RowEvent::Row(row) => {
                    prop_assert!(
                        !strict || row.origin.line > last_line,
                        "row {} after row {last_line}",
                        row.origin.line
                    );
                    last_line = row.origin.line;
                    rows += 1;
                    let ctx = minijinja::context! { row => row.fields.clone() };
                    for name in ["/all", "/id", "/print", "/typed"] {
                        if let Err(e) = templates.render(name, &ctx) {
                            prop_assert!(!e.message.trim().is_empty());
                        }
                    }
                    let handle = templates.handle("/id");
                    let _ = templates.render_handle(&handle, &ctx);
                }
                RowEvent::Broken { origin, reason } => {
                    prop_assert!(
                        !strict || origin.line > last_line,
                        "row {} after row {last_line}",
                        origin.line
                    );
                    last_line = origin.line;
                    prop_assert!(!reason.trim().is_empty(), "a broken row without a reason");
                }
                RowEvent::SourceFailed { reason, .. } => {
                    prop_assert!(
                        !reason.trim().is_empty(),
                        "a failed source without a reason"
                    );
                }
            }
        }
    }
    // Read one after another, the sources give the same events.
    prop_assert_eq!(AudienceReader::new(sources).count(), events);
    if rows > 0 {
        accepted();
    }
    Ok(())
}

fn csv_source(path: &Path, case: &CsvCase) -> Source {
    Source {
        kind: SourceKind::Csv {
            types: case.types.clone(),
            delimiter: case.delimiter,
        },
        path: path.to_path_buf(),
    }
}

#[test]
fn csv_reader() {
    let dir = scratch();
    let templates = row_templates();
    fuzz("csv_reader", 300, csv_case(), |case| {
        let bytes = case.bytes();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        write(&a, &bytes);
        write(&b, &bytes);
        if let Err(reason) = read_csv_header(&a, case.delimiter) {
            prop_assert!(!reason.trim().is_empty());
        }
        // The header is line 1: data rows start at line 2. (Not checked with
        // CRs in the file: see `csv_row_numbers_are_physical_lines`.)
        let first_line = (!bytes.contains(&b'\r')).then_some(2);
        check_reader(
            &[csv_source(&a, &case), csv_source(&b, &case)],
            &templates,
            first_line,
        )
    });
}

#[test]
fn csv_row_numbers_are_physical_lines() {
    let dir = scratch();
    let templates = row_templates();
    fuzz(
        "csv_row_numbers_are_physical_lines",
        300,
        csv_case(),
        |case| {
            let path = dir.path().join("a.csv");
            write(&path, &case.bytes());
            check_reader(&[csv_source(&path, &case)], &templates, Some(2))
        },
    );
}

// ---- JSONL ----------------------------------------------------------------------

#[derive(Debug, Clone)]
enum JsonlLine {
    Row(Json),
    NotObject(Json),
    Garbage(Vec<u8>),
    Blank(&'static str),
    /// `depth` nested arrays or objects (serde_json stops at 128).
    Deep(usize, bool),
}

const JSONL_GARBAGE: &[&[u8]] = &[
    b"{",
    b"}",
    b"{\"a\":}",
    b"{\"a\":1,}",
    b"{\"a\" 1}",
    b"\"",
    b"\\",
    b"{\"a\":\"\\ud800\"}",
    b"{\"a\":\"\\u0000\"}",
    b"{\"a\":1e999}",
    b"{\"a\":-}",
    b"{\"a\":NaN}",
    b"{\"a\":01}",
    b"not json",
    b"{\"a\":1}{\"b\":2}",
    b"{\"a\":1} x",
    b"\xEF\xBB\xBF{\"a\":1}",
    b"{\"a\":\"\xff\"}",
    b"\xff\xfe{",
    b"{\"a\":\"\x01\"}",
    b"{\"\":null}",
    b"{\"a\":1,\"a\":2}",
    b"[1,2]",
    b"null",
    b"\"s\"",
    b"{'a':1}",
    b"{\"a\":1}\r",
    b"\x0b",
    b"\x00",
];

fn jsonl_line() -> impl Strategy<Value = JsonlLine> {
    prop_oneof![
        6 => json_row(json_value()).prop_map(JsonlLine::Row),
        1 => json_value().prop_map(JsonlLine::NotObject),
        2 => prop_oneof![
            prop::sample::select(JSONL_GARBAGE).prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..12),
        ]
        .prop_map(JsonlLine::Garbage),
        1 => pick(&["", " ", "\t", "\r", " \x0c "]).prop_map(JsonlLine::Blank),
        1 => (100usize..300, any::<bool>()).prop_map(|(d, o)| JsonlLine::Deep(d, o)),
    ]
}

fn jsonl_bytes(lines: &[JsonlLine], crlf: bool, bom: bool, final_newline: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        match line {
            JsonlLine::Row(v) | JsonlLine::NotObject(v) => out.extend(v.to_string().into_bytes()),
            JsonlLine::Garbage(b) => out.extend_from_slice(b),
            JsonlLine::Blank(s) => out.extend_from_slice(s.as_bytes()),
            JsonlLine::Deep(depth, object) => {
                let (open, close) = if *object {
                    ("{\"a\":", "}")
                } else {
                    ("[", "]")
                };
                out.extend(open.repeat(*depth).into_bytes());
                out.extend_from_slice(b"1");
                out.extend(close.repeat(*depth).into_bytes());
            }
        }
    }
    if final_newline {
        out.push(b'\n');
    }
    out
}

#[test]
fn jsonl_reader() {
    let dir = scratch();
    let templates = row_templates();
    fuzz(
        "jsonl_reader",
        300,
        (
            prop::collection::vec(jsonl_line(), 0..10),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        |(lines, crlf, bom, final_newline)| {
            let bytes = jsonl_bytes(&lines, crlf, bom, final_newline);
            let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
            write(&a, &bytes);
            write(&b, &bytes);
            let sources = [a, b].map(|path| Source {
                kind: SourceKind::Jsonl,
                path,
            });
            check_reader(&sources, &templates, Some(1))
        },
    );
}

// ---- templates and `where` ---------------------------------------------------------

/// Names a campaign's templates are compiled under (the `.html` one turns on
/// auto-escaping, which the render shortcut must respect).
const TEMPLATE_NAMES: &[&str] = &[
    "/message/text",
    KEY,
    "/recipient/customer_id",
    "/message/attributes/x",
    "/message/x.html",
];

fn context(row: &Json) -> minijinja::Value {
    let mut ctx = match row {
        Json::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    ctx.insert(
        "vars".into(),
        serde_json::json!({ "sale_end": "30/11", "n": 3 }),
    );
    ctx.insert("campaign".into(), serde_json::json!({ "name": "fuzz" }));
    ctx.insert(
        "run".into(),
        serde_json::json!({ "id": "fuzz", "occurrence": null }),
    );
    ctx.insert("now".into(), Json::from("2026-12-02T09:00:00+07:00"));
    minijinja::Value::from_serialize(&ctx)
}

#[test]
fn templates() {
    fuzz(
        "templates",
        400,
        (
            prop::collection::vec(any_template(), 1..4),
            prop::collection::vec(json_row(json_value_small()), 1..3),
        ),
        |(sources, rows)| {
            let named: Vec<(&str, &str)> = TEMPLATE_NAMES
                .iter()
                .copied()
                .zip(sources.iter().map(String::as_str))
                .collect();
            let (set, errors) = TemplateSet::compile(named.iter().copied());
            for e in &errors {
                prop_assert!(!e.message.trim().is_empty(), "{e:?}");
                if let Some(r) = &e.range {
                    prop_assert!(r.start <= r.end, "{e:?}");
                }
            }
            let mut rendered = false;
            for (name, _) in &named {
                if !set.contains(name) {
                    continue;
                }
                let _ = set.undeclared(name);
                let _ = set.undeclared_nested(name);
                let _ = set.varies_per_row(name);
                let handle = set.handle(name);
                for row in &rows {
                    let ctx = context(row);
                    let engine = set.render(name, &ctx);
                    let shortcut = set.render_handle(&handle, &ctx);
                    // The shortcut for `{{ a.b }}` must print what the engine prints.
                    prop_assert_eq!(
                        engine.as_ref().ok(),
                        shortcut.as_ref().ok(),
                        "{}: the render shortcut differs from the engine",
                        name
                    );
                    match engine {
                        Ok(_) => rendered = true,
                        Err(e) => prop_assert!(!e.message.trim().is_empty(), "{e:?}"),
                    }
                }
            }
            if rendered {
                accepted();
            }
            Ok(())
        },
    );
}

#[test]
fn where_expressions() {
    fuzz(
        "where_expressions",
        300,
        (
            where_expr(),
            prop::collection::vec(json_row(json_value_small()), 1..4),
        ),
        |(expr, rows)| {
            let (set, errors) = TemplateSet::compile([(WHERE, expr.as_str())]);
            for e in &errors {
                prop_assert!(!e.message.trim().is_empty(), "{e:?}");
                if let Some(r) = &e.range {
                    // Ranges point into the expression as written.
                    prop_assert!(r.end <= expr.len(), "{e:?} in {expr:?}");
                }
            }
            if set.contains(WHERE) {
                let mut rendered = false;
                for row in &rows {
                    match set.render(WHERE, &context(row)) {
                        Ok(_) => rendered = true,
                        Err(e) => prop_assert!(!e.message.trim().is_empty(), "{e:?}"),
                    }
                }
                if rendered {
                    accepted();
                }
            }
            Ok(())
        },
    );
}

/// Templates whose work or output has no natural bound, which the work
/// budget (fuel) and the output cap stop: loops over large ranges, nested;
/// repeated strings; unbounded recursion.
const BOUNDED_HEAVY_TEMPLATES: &[&str] = &[
    "{% for a in range(N) %}{% for b in range(N) %}{% for c in range(N) %}x{% endfor %}{% endfor %}{% endfor %}",
    "{% for a in range(N) %}{% for b in range(N) %}{{ a }}{{ b }}{% endfor %}{% endfor %}",
    "{{ 'x' * N }}{{ 'y' * N }}",
    "{% for a in range(N) %}{{ 'x' * N }}{% endfor %}",
    "{% for c in 'ab' * N %}{% for d in 'ab' * N %}{% endfor %}{% endfor %}",
    "{{ range(N)|join(',') }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
];

/// Checks that rendering `template` with `N` replaced ends quickly, and with
/// at most the output cap.
fn check_heavy(template: &str, n: u64) -> TestCaseResult {
    let source = template.replace('N', &n.to_string());
    let (set, errors) = TemplateSet::compile([("/message/text", source.as_str())]);
    prop_assert!(errors.is_empty(), "{errors:?}");
    let t = Instant::now();
    let out = set.render("/message/text", &context(&Json::Null));
    prop_assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    match out {
        Ok(text) => {
            accepted();
            prop_assert!(text.len() <= 256 << 10, "{} bytes of output", text.len());
        }
        Err(e) => prop_assert!(!e.message.trim().is_empty()),
    }
    Ok(())
}

#[test]
fn template_budget_holds() {
    fuzz(
        "template_budget_holds",
        64,
        (
            prop::sample::select(BOUNDED_HEAVY_TEMPLATES),
            prop_oneof![
                0u64..1_000,
                1_000u64..1_000_000,
                1_000_000u64..20_000_000,
                20_000_000u64..=u64::MAX,
            ],
        ),
        |(template, n)| check_heavy(template, n),
    );
}

/// What the budget does not stop: work and memory inside one filter or
/// operator (the engine counts fuel per instruction, and a repeated string
/// may be 100 MB).
const UNBOUNDED_HEAVY_TEMPLATES: &[&str] = &[
    // `debug()` prints the state, which holds what earlier calls printed: the
    // work about doubles with each call (found by `templates`, as a hang).
    // Left out of the other properties' dictionaries until it is fixed.
    "{% set ns = namespace(a='') %}{% for i in range(N) %}{% set ns.a = debug() %}{% endfor %}{{ ns.a|length }}",
    "{% set a = debug() %}{% include '/message/text' %}",
    // Doubling a string: 2^40 bytes long before the fuel runs out.
    "{% set ns = namespace(s='x') %}{% for i in range(N) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{{ ''|indent(N) }}",
    "{{ '%Ns'|format('a') }}",
    "{{ ([1] * N)|join(',') }}",
    "{{ ([1] * N)|sum }}",
    "{{ ([1] * N)|list|length }}",
    "{{ ([1] * N)|last }}",
    "{{ ([1] * N)|sort|first }}",
    "{{ ([1] * N)|unique|list }}",
    "{{ ['a']|batch(N)|list }}",
    "{% for i in range(N) %}{{ ('x' * 100000000)|length }}{% endfor %}",
];

#[test]
#[ignore = "reported: fuel counts engine steps, not work inside a function, filter or operator: \
            these abort (allocation failure, capacity overflow) or run for minutes; \
            `debug()` called again and again does exponential work"]
fn template_work_bounds() {
    fuzz(
        "template_work_bounds",
        64,
        (
            prop::sample::select(UNBOUNDED_HEAVY_TEMPLATES),
            prop::sample::select(&[100_000u64, 1 << 40, 1 << 62][..]),
        ),
        |(template, n)| check_heavy(template, n),
    );
}

/// A scalar anchored once and aliased many times: few nodes, many bytes.
fn alias_bytes_bomb(scalar: usize, aliases: usize) -> String {
    format!(
        "version: 1\nname: x\nvars:\n  a: &a \"{}\"\n  b: [{}]\n",
        "x".repeat(scalar),
        vec!["*a"; aliases].join(", ")
    )
}

#[test]
fn yaml_alias_bytes() {
    fuzz(
        "yaml_alias_bytes",
        8,
        (10_000usize..100_000, 1_000usize..10_000),
        |(scalar, aliases)| {
            let text = alias_bytes_bomb(scalar, aliases);
            let t = Instant::now();
            let _ = check_yaml(&text);
            prop_assert!(
                t.elapsed() < Duration::from_secs(2),
                "took {:?}",
                t.elapsed()
            );
            Ok(())
        },
    );
}

// ---- schedules, times, durations ------------------------------------------------------

/// Time zones: the first 17 are IANA names (with and without daylight saving
/// time, odd offsets, a skipped day), the rest are not.
const ZONES: &[&str] = &[
    "UTC",
    "Asia/Ho_Chi_Minh",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Pacific/Kiritimati",
    "Pacific/Apia",
    "America/Sao_Paulo",
    "Antarctica/Troll",
    "Africa/Casablanca",
    "Europe/Dublin",
    "Etc/GMT-14",
    "Etc/GMT+12",
    "America/Godthab",
    "",
    " UTC ",
    "Hanoi",
    "utc+7",
    "GMT-07:00",
    "+07:00",
    "asia/ho_chi_minh",
    "Europe/Berln",
    "Bangkok",
    "Z",
    "/",
];

const CRON_NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "5",
    "6",
    "7",
    "8",
    "12",
    "13",
    "23",
    "24",
    "29",
    "30",
    "31",
    "32",
    "59",
    "60",
    "99",
    "00",
    "007",
    "4294967296",
    "-1",
    "",
    "L",
    "W",
    "5L",
    "15W",
    "LW",
    "3#2",
    "MON",
    "sun",
    "Jan",
    "DEC",
    "FRIDAY",
    "febr",
    "xyz",
    "é",
];

const CRON_STEPS: &[&str] = &["1", "2", "7", "15", "59", "60", "0", "100", "", "x", "-1"];

fn cron_item() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        2 => Just("*".to_owned()),
        1 => Just("?".to_owned()),
        3 => pick(CRON_NUMBERS).prop_map(str::to_owned),
        2 => (pick(CRON_NUMBERS), pick(CRON_NUMBERS)).prop_map(|(a, b)| format!("{a}-{b}")),
    ];
    (base, prop::option::of(pick(CRON_STEPS))).prop_map(|(b, s)| match s {
        Some(s) => format!("{b}/{s}"),
        None => b,
    })
}

fn cron_field() -> impl Strategy<Value = String> {
    prop::collection::vec(cron_item(), 1..4).prop_map(|items| items.join(","))
}

/// A cron expression as people write them: each field from what it accepts,
/// an optional seconds field, and now and then a mistake.
fn plausible_cron() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(0.2, pick(&["0", "*/10", "30", "*", "0-59/15"])),
        pick(&["0", "*/15", "0,30", "5-10", "59", "*", "*/7", "45"]),
        pick(&["9", "8-20", "*/2", "0", "23", "*", "9,12,18", "24"]),
        pick(&["*", "1", "15", "29", "30", "31", "1-7", "?", "*/10", "L"]),
        pick(&["*", "1", "2", "FEB", "jan-jun", "*/3", "12", "2,4,6", "13"]),
        pick(&[
            "*", "MON-FRI", "0", "7", "1-5", "SUN", "*/2", "?", "sat,sun", "5#3", "6-7",
        ]),
    )
        .prop_map(|(sec, min, hour, dom, month, dow)| {
            let head = sec.map(|s| format!("{s} ")).unwrap_or_default();
            format!("{head}{min} {hour} {dom} {month} {dow}")
        })
}

fn cron_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => plausible_cron(),
        4 => (prop::collection::vec(cron_field(), 3..8), pick(&[" ", "  ", "\t", " \n "]))
            .prop_map(|(fields, sep)| fields.join(sep)),
        3 => (
            prop::collection::vec(pick(CRON_NUMBERS), 5..6),
            Just(()),
        )
            .prop_map(|(f, ())| f.join(" ")),
        1 => pick(&["@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually",
                    "@midnight", "@reboot", "@", "@DAILY", "@every 5m", "", "   "])
            .prop_map(str::to_owned),
        1 => "\\PC{0,24}",
    ]
}

/// Dates and times as people write them, and at the edges.
fn when_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => pick(&[
            "2026-11-01", "2026-12-31", "2026-02-29", "2028-02-29", "2026-02-30", "0000-01-01",
            "0001-01-01", "9999-12-31", "+10000-01-01", "-0001-01-01", "1969-12-31", "2100-12-31",
            "2101-01-01", "2026-11-27T09:00:00+07:00", "2026-11-27T09:00:00Z",
            "2026-03-29 02:30", "2026-10-25T02:30", "2026-10-25 02:30:00.5",
            "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-11-27T25:00",
            "2026-13-01", "2026-11-27T09:00:00+24:00", "", "today", "2026-11-27T09:00:60Z",
        ])
        .prop_map(str::to_owned),
        4 => (1960i64..2110, 1u32..13, 1u32..32, 0u32..24, 0u32..60, any::<bool>())
            .prop_map(|(y, mo, d, h, mi, local)| if local {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}")
            }),
        2 => (-300_000i64..300_000, 0u32..14, 0u32..33, 0u32..25, 0u32..61, any::<bool>())
            .prop_map(|(y, mo, d, h, mi, local)| if local {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}")
            }),
        1 => "\\PC{0,24}",
    ]
}

/// Durations as people write them, and at the edges of `u64` seconds.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => pick(&[
            "10s", "30m", "2h", "1h 30m", "1d", "0s", "0", "", " ", "2", "h", "1h30m", "1.5h",
            "-1s", "1y", "1 year", "1M", "1mo", "1w", "1000000000000y", "584542046090y",
            "18446744073709551615s", "18446744073709551616s", "18446744073709551615ms",
            "99999999999999999999999999ns", "1ns", "1us", "1µs", "1 2 3", "soon", "2h!", "5 %",
            "9223372036854775807s", "292277026596y",
        ])
        .prop_map(str::to_owned),
        3 => (prop::collection::vec((any::<u64>(), pick(&["ns", "ms", "s", "m", "h", "d", "w",
                "M", "y", "min", "sec", "hours", "x", ""])), 1..4), pick(&["", " ", "  "]))
            .prop_map(|(parts, sep)| parts
                .iter()
                .map(|(n, u)| format!("{n}{u}"))
                .collect::<Vec<_>>()
                .join(sep)),
        1 => "\\PC{0,16}",
    ]
}

fn window_text() -> impl Strategy<Value = String> {
    let hhmm = prop_oneof![
        3 => (0u32..26, 0u32..62).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        1 => pick(&["24:00", "8:00", "08:0", "08:000", "", " 08:00 ", "８:00", "-1:00", "08-00"])
            .prop_map(str::to_owned),
    ];
    prop_oneof![
        6 => (hhmm.clone(), hhmm).prop_map(|(a, b)| format!("{a}-{b}")),
        1 => pick(&["08:00-08:00", "22:00-06:00", "00:00-24:00", "-", "", "08:00", "a-b-c"])
            .prop_map(str::to_owned),
        1 => "\\PC{0,16}",
    ]
}

/// Instants to ask a schedule about: mostly near now, some far away.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        4 => (1_700_000_000i64..1_900_000_000).prop_map(at),
        2 => (0i64..4_200_000_000).prop_map(at),
        1 => (-62_135_596_800i64..253_402_300_799).prop_map(at),
        1 => pick(&["2026-03-29T00:59:59Z", "2026-03-29T01:00:00Z", "2026-10-25T00:30:00Z",
                    "2026-10-25T01:30:00Z", "2011-12-30T10:00:00Z", "2100-12-31T23:59:59Z",
                    "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
            .prop_map(|s| DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(DateTime::UNIX_EPOCH)),
    ]
}

#[derive(Debug, Clone)]
struct ScheduleCase {
    at: Option<String>,
    cron: Option<String>,
    timezone: Option<&'static str>,
    starts: Option<String>,
    ends: Option<String>,
    catch_up: Option<String>,
    window: Option<String>,
}

/// A `schedule:` block: mostly as people write it (so that most get through
/// to the questions asked of a schedule), otherwise from the wild dictionaries.
fn schedule_case() -> impl Strategy<Value = ScheduleCase> {
    prop_oneof![2 => plausible_schedule().boxed(), 1 => wild_schedule().boxed()]
}

fn plausible_schedule() -> impl Strategy<Value = ScheduleCase> {
    let date =
        (1990i64..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"));
    let time = (2020i64..2035, 1u32..13, 1u32..29, 0u32..24, 0u32..60)
        .prop_map(|(y, mo, d, h, mi)| format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}"));
    (
        prop_oneof![
            4 => plausible_cron().prop_map(|c| (None, Some(c))),
            1 => time.clone().prop_map(|a| (Some(a), None)),
        ],
        prop::option::of(pick(&ZONES[..17])),
        prop::option::weighted(0.3, prop_oneof![date.clone(), time.clone()]),
        prop::option::weighted(0.3, prop_oneof![date, time]),
        prop::option::weighted(0.3, pick(&["2h", "30m", "1d", "90s", "0s", "1h 30m"])),
        prop::option::weighted(
            0.3,
            (0u32..24, 0u32..60, 0u32..25, 0u32..60)
                .prop_map(|(a, b, c, d)| format!("{a:02}:{b:02}-{c:02}:{d:02}")),
        ),
    )
        .prop_map(
            |((at, cron), timezone, starts, ends, catch_up, window)| ScheduleCase {
                at,
                cron,
                timezone,
                starts,
                ends,
                catch_up: catch_up.map(str::to_owned),
                window,
            },
        )
}

fn wild_schedule() -> impl Strategy<Value = ScheduleCase> {
    (
        prop_oneof![
            6 => cron_text().prop_map(|c| (None, Some(c))),
            2 => when_text().prop_map(|a| (Some(a), None)),
            1 => Just((None, None)),
            1 => (when_text(), cron_text()).prop_map(|(a, c)| (Some(a), Some(c))),
        ],
        prop::option::of(pick(ZONES)),
        prop::option::weighted(0.3, when_text()),
        prop::option::weighted(0.3, when_text()),
        prop::option::weighted(0.3, duration_text()),
        prop::option::weighted(0.3, window_text()),
    )
        .prop_map(
            |((at, cron), timezone, starts, ends, catch_up, window)| ScheduleCase {
                at,
                cron,
                timezone,
                starts,
                ends,
                catch_up,
                window,
            },
        )
}

const FIELDS: &[&str] = &[
    "at", "cron", "timezone", "starts", "ends", "catch_up", "window", "schedule",
];

/// Parses a schedule; refused, it says why at a known field; accepted, every
/// question about it has a sane answer.
fn check_schedule(case: &ScheduleCase, nows: &[DateTime<Utc>], count: u64) -> TestCaseResult {
    let input = ScheduleInput {
        at: case.at.as_deref(),
        cron: case.cron.as_deref(),
        timezone: case.timezone,
        starts: case.starts.as_deref(),
        ends: case.ends.as_deref(),
        catch_up: case.catch_up.as_deref(),
        window: case.window.as_deref(),
    };
    let s = match schedule::parse_schedule(&input) {
        Ok(s) => {
            accepted();
            s
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "refused without a reason");
            for e in &errors {
                prop_assert!(FIELDS.contains(&e.field), "{e:?}");
                prop_assert!(!e.message.trim().is_empty(), "{e:?}");
                prop_assert!(!e.to_string().is_empty());
            }
            return Ok(());
        }
    };
    let _ = s.describe();
    let tz = s.timezone();
    for &now in nows {
        if let Some(o) = s.latest_at_or_before(now) {
            prop_assert!(o.instant <= now, "latest {} is after {now}", o.instant);
            prop_assert!(!o.id().is_empty());
        }
        if let Some(o) = s.next_after(now) {
            prop_assert!(o.instant > now, "next {} is not after {now}", o.instant);
        }
        let _ = s.due(now, |_| false);
        let _ = s.due(now, |_| true);
        if let Some(w) = s.window() {
            let open = w.next_open(now, tz);
            prop_assert!(open >= now, "the window opens at {open}, before {now}");
            if let Some(close) = w.closes_at(now, tz) {
                prop_assert!(close > now, "the window closes at {close}, not after {now}");
            }
            let _ = w.to_string();
        }
        let (start, end) = schedule::estimate_span(now, count, 25.0, s.window(), tz);
        prop_assert!(start <= end, "the span ends at {end}, before {start}");
    }
    Ok(())
}

#[test]
fn cron_schedules() {
    fuzz(
        "cron_schedules",
        400,
        (
            schedule_case(),
            prop::collection::vec(instant(), 1..4),
            0u64..2_000_000,
        ),
        |(case, nows, count)| check_schedule(&case, &nows, count),
    );
}

#[test]
fn times_windows_durations() {
    fuzz(
        "times_windows_durations",
        500,
        (
            when_text(),
            pick(ZONES),
            window_text(),
            duration_text(),
            instant(),
            any::<u64>(),
            prop_oneof![
                Just(0.0f64),
                Just(-1.0),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(1e-300),
                0.001f64..1e6,
            ],
        ),
        |(when, zone, window, duration, now, count, rate)| {
            let tz = zone.trim().parse().unwrap_or(chrono_tz::UTC);
            match schedule::parse_when(&when, tz) {
                Ok(_) => accepted(),
                Err(e) => prop_assert!(!e.trim().is_empty()),
            }
            match Window::parse(&window) {
                Ok(w) => {
                    let open = w.next_open(now, tz);
                    prop_assert!(open >= now);
                    let _ = w.closes_at(now, tz);
                    let (start, end) = schedule::estimate_span(now, count, rate, Some(&w), tz);
                    prop_assert!(start <= end, "{start} > {end}");
                }
                Err(e) => prop_assert!(!e.trim().is_empty()),
            }
            if let Err(e) = schedule::parse_duration(&duration) {
                prop_assert!(!e.trim().is_empty());
            }
            let (start, end) = schedule::estimate_span(now, count, rate, None, tz);
            prop_assert!(start <= end, "{start} > {end}");
            Ok(())
        },
    );
}

// ---- generated campaigns ------------------------------------------------------------

#[derive(Debug, Clone)]
struct CampaignCase {
    yaml: String,
    csv: CsvCase,
    jsonl: Vec<JsonlLine>,
}

const TYPE_NAMES: &[&str] = &["string", "integer", "number", "boolean", "date"];

/// A whole campaign: mostly one that passes validation (so that planning is
/// what gets exercised), otherwise one of roughly the right shape.
fn campaign_case() -> impl Strategy<Value = CampaignCase> {
    prop_oneof![3 => valid_campaign_case().boxed(), 1 => any_campaign_case().boxed()]
}

/// A row over the columns of `HEADER`, nearly always with an `id`.
fn header_row() -> impl Strategy<Value = Json> {
    (
        prop::collection::vec((pick(HEADER), json_value_small()), 0..8),
        prop::option::weighted(
            0.9,
            prop_oneof![
                4 => (0u32..20).prop_map(|i| Json::from(format!("k{i}"))),
                1 => json_value_small(),
            ],
        ),
    )
        .prop_map(|(fields, id)| {
            let mut row: serde_json::Map<String, Json> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(id) = id {
                row.insert("id".into(), id);
            }
            Json::Object(row)
        })
}

/// A CSV file whose header has every column of `HEADER` (in any order, maybe
/// more), with rows of any cells: ragged, typed-looking, not UTF-8.
fn header_csv() -> impl Strategy<Value = CsvCase> {
    let columns = Just(HEADER.to_vec()).prop_shuffle();
    (
        columns,
        any::<bool>(),
        pick(&["\n", "\n", "\r\n"]),
        prop::collection::vec(
            prop_oneof![
                6 => prop::collection::vec(csv_cell(), HEADER.len()..=HEADER.len()),
                1 => prop::collection::vec(csv_cell(), 0..HEADER.len() + 2),
            ],
            0..10,
        ),
        prop::collection::vec((pick(HEADER).prop_map(str::to_owned), column_type()), 0..3),
    )
        .prop_map(|(columns, bom, newline, mut rows, types)| {
            // Give most rows a usable, often repeated, key.
            for (i, row) in rows.iter_mut().enumerate() {
                if let Some(p) = columns.iter().position(|c| *c == "id") {
                    if row.len() == columns.len() && i % 4 != 3 {
                        row[p] = format!("k{}", i % 5).into_bytes();
                    }
                }
            }
            CsvCase {
                bom,
                delimiter: b',',
                newline,
                header: columns.iter().map(|c| c.as_bytes().to_vec()).collect(),
                rows,
                trailing_newline: true,
                types,
            }
        })
}

/// An audience's parts as the generators draw them: sources, `where`,
/// `exclude`, `key`.
type AudienceParts = (Vec<Json>, Option<String>, Option<Json>, Option<String>);

/// A JSON object of the pairs that are present.
fn object_of<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<Json>)>) -> Json {
    Json::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect(),
    )
}

/// A JSON object of string values.
fn string_map(pairs: Vec<(&str, String)>) -> Json {
    object_of(pairs.into_iter().map(|(k, v)| (k, Some(Json::from(v)))))
}

/// The start every generated campaign shares: version, name, bot, vars and
/// the audience.
fn campaign_head(name: &str, v1: bool, audience: AudienceParts) -> serde_json::Map<String, Json> {
    let (from, where_, exclude, key) = audience;
    let mut c = serde_json::Map::new();
    c.insert("version".into(), 1.into());
    c.insert("name".into(), name.into());
    c.insert(
        "bot".into(),
        if v1 {
            serde_json::json!({ "id": "b1", "token_env": "T", "api": "v1" })
        } else {
            Json::from("shop")
        },
    );
    c.insert(
        "vars".into(),
        serde_json::json!({ "sale_end": "30/11", "n": 3 }),
    );
    c.insert(
        "audience".into(),
        object_of([
            ("from", Some(Json::Array(from))),
            ("where", where_.map(Json::from)),
            ("exclude", exclude),
            ("key", key.map(Json::from)),
        ]),
    );
    c
}

/// The campaign as YAML, with its audience files.
fn finish_case(
    c: serde_json::Map<String, Json>,
    csv: CsvCase,
    jsonl: Vec<JsonlLine>,
) -> CampaignCase {
    let mut yaml = String::new();
    to_yaml(&Json::Object(c), 0, &mut yaml);
    CampaignCase { yaml, csv, jsonl }
}

/// A campaign that passes validation, but for its data: templates that read
/// only columns every source has, a `schedule` and `delivery` as people write
/// them, everything in the shape the API version asks for.
fn valid_campaign_case() -> impl Strategy<Value = CampaignCase> {
    let t = || template_in(VALID);
    let source = prop_oneof![
        2 => Just(serde_json::json!({ "csv": "a.csv" })),
        1 => prop::collection::vec((pick(HEADER), pick(&["integer", "number", "boolean"])), 1..3)
            .prop_map(|types| {
                let types: serde_json::Map<String, Json> = types
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Json::from(v)))
                    .collect();
                serde_json::json!({ "csv": { "path": "a.csv", "types": types } })
            }),
        2 => Just(serde_json::json!({ "jsonl": "b.jsonl" })),
        1 => prop::collection::vec(header_row(), 0..4)
            .prop_map(|rows| serde_json::json!({ "users": rows })),
    ];
    let audience = (
        prop::collection::vec(source, 1..3),
        prop::option::of(where_in(VALID)),
        prop::option::weighted(0.3, Just(serde_json::json!([{ "jsonl": "b.jsonl" }]))),
        prop::option::weighted(
            0.7,
            prop_oneof![
                3 => Just("{{ id }}".to_owned()),
                1 => t(),
            ],
        ),
    );
    let v2_content = prop_oneof![
        3 => t().prop_map(|x| ("text", Json::from(x))),
        1 => t().prop_map(|x| ("block_id", Json::from(x))),
        1 => (t(), t()).prop_map(|(a, b)| (
            "messages",
            serde_json::json!([{ "text": a }, { "attachment": { "payload": { "title": b, "n": 1 } } }])
        )),
    ];
    let v1_content = prop_oneof![
        Just(None),
        t().prop_map(|x| Some(("block_name", Json::from(x)))),
        t().prop_map(|x| Some(("block_id", Json::from(x)))),
    ];
    let message = (
        any::<bool>(),
        prop::option::weighted(
            0.8,
            pick(&[
                "ACCOUNT_UPDATE",
                "POST_PURCHASE_UPDATE",
                "CONFIRMED_EVENT_UPDATE",
            ]),
        ),
        v2_content,
        v1_content,
        prop::collection::vec((pick(&["code", "seen", "x", "a b"]), t()), 0..3),
        prop::option::weighted(0.3, t()),
    );
    let recipient = (
        prop_oneof![3 => Just("{{ id }}".to_owned()), 1 => t()],
        prop::collection::vec(
            (
                pick(&["customer_phone", "customer_email", "customer_fbid"]),
                t(),
            ),
            0..3,
        ),
    );
    let schedule = prop::option::weighted(
        0.3,
        (
            prop_oneof![
                4 => plausible_cron().prop_map(|c| ("cron", c)),
                1 => when_text().prop_map(|a| ("at", a)),
            ],
            prop::option::of(pick(&[
                "UTC",
                "Asia/Ho_Chi_Minh",
                "Europe/Berlin",
                "America/New_York",
                "Pacific/Apia",
                "Australia/Lord_Howe",
            ])),
            prop::option::weighted(0.3, pick(&["2026-01-01", "2026-11-01", "2027-06-30"])),
            prop::option::weighted(0.3, pick(&["2026-12-31", "2030-01-01", "2026-11-30"])),
            prop::option::weighted(0.3, pick(&["2h", "30m", "1d", "90s"])),
            prop::option::weighted(0.3, pick(&["08:00-21:00", "22:00-06:00", "09:15-09:45"])),
        ),
    );
    let delivery = prop::option::weighted(
        0.3,
        (
            prop::sample::select(&[25.0, 0.5, 10.0, 0.01][..]),
            pick(&["5s", "1m", "250ms"]),
            pick(&["5%", "50", "0", "100%"]),
            1u32..64,
        ),
    );
    (
        audience,
        message,
        recipient,
        (schedule, delivery),
        header_csv(),
        prop::collection::vec(
            prop_oneof![
                8 => header_row().prop_map(JsonlLine::Row),
                1 => jsonl_line(),
            ],
            0..8,
        ),
    )
        .prop_map(
            |(audience, message, recipient, (schedule, delivery), csv, jsonl)| {
                let (v1, tag, v2_content, v1_content, attributes, otn) = message;
                let (first_id, more_ids) = recipient;
                let mut c = campaign_head("fuzz-valid", v1, audience);
                let mut r = serde_json::Map::new();
                let mut m = serde_json::Map::new();
                if let Some(t) = tag {
                    m.insert("tag".into(), t.into());
                }
                if v1 {
                    r.insert("user_id".into(), first_id.into());
                    if let Some((k, v)) = v1_content {
                        m.insert(k.into(), v);
                    }
                } else {
                    r.insert("customer_id".into(), first_id.into());
                    for (k, v) in more_ids {
                        r.insert(k.into(), v.into());
                    }
                    m.insert(v2_content.0.into(), v2_content.1);
                    if let Some(o) = otn {
                        m.insert("one_time_notif_token".into(), o.into());
                    }
                }
                if !attributes.is_empty() {
                    m.insert("attributes".into(), string_map(attributes));
                }
                c.insert("recipient".into(), Json::Object(r));
                c.insert("message".into(), Json::Object(m));
                if let Some(((kind, when), tz, starts, ends, catch_up, window)) = schedule {
                    let text = |v: Option<&str>| v.map(Json::from);
                    c.insert(
                        "schedule".into(),
                        object_of([
                            (kind, Some(Json::from(when))),
                            ("timezone", text(tz)),
                            ("starts", text(starts)),
                            ("ends", text(ends)),
                            ("catch_up", text(catch_up)),
                            ("window", text(window)),
                        ]),
                    );
                }
                if let Some((rate, timeout, max_failures, concurrency)) = delivery {
                    c.insert(
                        "delivery".into(),
                        serde_json::json!({
                            "rate": rate,
                            "timeout": timeout,
                            "max_failures": max_failures,
                            "concurrency": concurrency,
                        }),
                    );
                }
                finish_case(c, csv, jsonl)
            },
        )
}

/// A campaign of roughly the right shape: templates, `where`, audience
/// files, schedule and delivery values from all of the dictionaries.
fn any_campaign_case() -> impl Strategy<Value = CampaignCase> {
    let audience = (
        prop::collection::vec(
            prop_oneof![
                Just(serde_json::json!({ "csv": "a.csv" })),
                prop::collection::vec((pick(COLUMNS), pick(TYPE_NAMES)), 0..3).prop_map(|types| {
                    let types: serde_json::Map<String, Json> = types
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), Json::from(v)))
                        .collect();
                    serde_json::json!({ "csv": { "path": "a.csv", "types": types } })
                }),
                Just(serde_json::json!({ "jsonl": "b.jsonl" })),
                prop::collection::vec(json_row(json_value_small()), 0..4)
                    .prop_map(|rows| serde_json::json!({ "users": rows })),
                Just(serde_json::json!({ "csv": "missing.csv" })),
            ],
            1..3,
        ),
        prop::option::of(where_expr()),
        prop::option::of(prop_oneof![
            Just(serde_json::json!([{ "csv": "a.csv" }])),
            Just(serde_json::json!([{ "jsonl": "b.jsonl" }])),
        ]),
        prop::option::of(any_template()),
    );
    let message = (
        any::<bool>(),
        prop::option::of(pick(&["ACCOUNT_UPDATE", "HUMAN_AGENT", "POST_PURCHASE_UPDATE", "x"])),
        prop_oneof![
            any_template().prop_map(|t| ("text", Json::from(t))),
            any_template().prop_map(|t| ("block_name", Json::from(t))),
            any_template().prop_map(|t| ("block_id", Json::from(t))),
            (any_template(), any_template()).prop_map(|(a, b)| (
                "messages",
                serde_json::json!([{ "text": a }, { "attachment": { "payload": { "title": b, "n": 1 } } }])
            )),
        ],
        prop::collection::vec((pick(&["code", "seen", "bot_token", "chatfuel_x", "a b"]),
            any_template()), 0..3),
        prop::option::of(any_template()),
    );
    let recipient = prop::collection::vec(
        (
            pick(&[
                "user_id",
                "customer_id",
                "customer_phone",
                "customer_email",
                "customer_fbid",
            ]),
            any_template(),
        ),
        0..3,
    );
    let extras = (
        prop::option::of(schedule_case()),
        prop::option::of((
            prop::option::of(prop_oneof![
                Just(Json::from(25)),
                Just(Json::from(0.01)),
                Just(Json::from(1e300)),
                Just(Json::from(-1)),
                Just(Json::from("25"))
            ]),
            prop::option::of(duration_text()),
            prop::option::of(pick(&[
                "5%", "100%", "100.5%", "50", "0", "nan%", "1e3%", "-1",
            ])),
            prop::option::of(0u32..2000),
        )),
    );
    (
        audience,
        message,
        recipient,
        extras,
        csv_case(),
        prop::collection::vec(jsonl_line(), 0..6),
    )
        .prop_map(|(audience, message, recipient, extras, csv, jsonl)| {
            let (v1, tag, (content_key, content), attributes, otn) = message;
            let (schedule_case, delivery) = extras;
            let mut c = campaign_head("fuzz", v1, audience);
            c.insert("recipient".into(), string_map(recipient));
            let mut m = serde_json::Map::new();
            if let Some(t) = tag {
                m.insert("tag".into(), t.into());
            }
            m.insert(content_key.into(), content);
            if !attributes.is_empty() {
                m.insert("attributes".into(), string_map(attributes));
            }
            if let Some(o) = otn {
                m.insert("one_time_notif_token".into(), o.into());
            }
            c.insert("message".into(), Json::Object(m));
            if let Some(s) = schedule_case {
                let text = |v: Option<String>| v.map(Json::from);
                c.insert(
                    "schedule".into(),
                    object_of([
                        ("at", text(s.at)),
                        ("cron", text(s.cron)),
                        ("timezone", s.timezone.map(Json::from)),
                        ("starts", text(s.starts)),
                        ("ends", text(s.ends)),
                        ("catch_up", text(s.catch_up)),
                        ("window", text(s.window)),
                    ]),
                );
            }
            if let Some((rate, timeout, max_failures, concurrency)) = delivery {
                c.insert(
                    "delivery".into(),
                    object_of([
                        ("rate", rate),
                        ("timeout", timeout.map(Json::from)),
                        ("max_failures", max_failures.map(Json::from)),
                        ("concurrency", concurrency.map(Json::from)),
                    ]),
                );
            }
            finish_case(c, csv, jsonl)
        })
}

fn generated_campaign_folder() -> (tempfile::TempDir, Project) {
    let dir = scratch();
    write(
        &dir.path().join("smax.yaml"),
        br#"bots:
  shop: { id: "64f0c2a1e4b0", token_env: SMAX_SHOP_TOKEN, api: v2 }
"#,
    );
    let project = campaign::load_project(&dir.path().join("smax.yaml")).expect("the project loads");
    (dir, project)
}

#[test]
fn campaigns_generated_and_planned() {
    let (dir, project) = generated_campaign_folder();
    fuzz(
        "campaigns_generated_and_planned",
        250,
        campaign_case(),
        |case| {
            write(&dir.path().join("a.csv"), &case.csv.bytes());
            write(
                &dir.path().join("b.jsonl"),
                &jsonl_bytes(&case.jsonl, false, false, true),
            );
            let path = dir.path().join("c.yaml");
            write(&path, case.yaml.as_bytes());
            check_campaign_file(&path, &project, true)
        },
    );
}

// ---- semantics the fuzzing ran into ------------------------------------------------

/// A row whose value at `path` is JSON `null`.
fn row_with_null(id: usize, path: &str) -> Json {
    let null = match path {
        "f" => serde_json::json!({ "f": null }),
        "m.k" => serde_json::json!({ "m": { "k": null } }),
        _ => serde_json::json!({ "items": [null] }),
    };
    let mut row = null.as_object().cloned().unwrap_or_default();
    row.insert("id".into(), Json::from(format!("k{id}")));
    Json::Object(row)
}

#[test]
fn null_is_a_missing_value() {
    let (dir, project) = generated_campaign_folder();
    fuzz(
        "null_is_a_missing_value",
        32,
        (
            pick(&["f", "m.k", "items[0]"]),
            pick(&[
                "{{ P }}",
                "Hi {{ P }}",
                "{{ P|upper }}",
                "{{ P ~ '' }}",
                "{{ P|string }}",
            ]),
            any::<bool>(),
        ),
        |(path, text, inline)| {
            let text = text.replace('P', path);
            let from = if inline {
                format!("    - users:\n        - {}\n", row_with_null(0, path))
            } else {
                write(
                    &dir.path().join("n.jsonl"),
                    format!("{}\n", row_with_null(0, path)).as_bytes(),
                );
                "    - jsonl: n.jsonl\n".to_owned()
            };
            let yaml = format!(
                "version: 1\nname: nulls\nbot: shop\naudience:\n  from:\n{from}  key: \"{{{{ id }}}}\"\n\
                 recipient:\n  customer_id: \"{{{{ id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: {}\n",
                Json::from(text.as_str())
            );
            let path = dir.path().join("nulls.yaml");
            write(&path, yaml.as_bytes());
            let (loaded, diagnostics) = campaign::load_campaign(&path, &project);
            let Some(c) = loaded else {
                return Err(TestCaseError::fail(format!("{diagnostics:?}")));
            };
            let preview = plan::preview_run(&c, at(1_796_194_800));
            let renderer = Arc::new(Renderer::new(&c, &preview.run).expect("compiles"));
            for planned in Pipeline::new(&c, renderer, Arc::new(KeySet::new()), None) {
                if let Planned::Send(request) = planned {
                    let body = String::from_utf8_lossy(&request.wire.body()).to_lowercase();
                    prop_assert!(!body.contains("none"), "{text} sends {body}");
                }
            }
            Ok(())
        },
    );
}

/// Timeouts `run` must be able to add its 5-second drain to (commands/run.rs).
fn huge_timeout() -> impl Strategy<Value = String> {
    prop_oneof![
        (u64::MAX - 10..=u64::MAX).prop_map(|s| format!("{s}s")),
        (u64::MAX - 10..=u64::MAX).prop_map(|s| format!("{s}s 999ms")),
        duration_text(),
    ]
}

#[test]
fn delivery_timeouts_run_can_use() {
    let (dir, project) = generated_campaign_folder();
    fuzz(
        "delivery_timeouts_run_can_use",
        64,
        huge_timeout(),
        |timeout| {
            let yaml = format!(
                "version: 1\nname: t\nbot: shop\naudience:\n  from:\n    - users: [{{ id: \"1\" }}]\n\
                 recipient:\n  customer_id: \"{{{{ id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  \
                 text: Hi\ndelivery:\n  timeout: {}\n",
                Json::from(timeout.as_str())
            );
            let path = dir.path().join("t.yaml");
            write(&path, yaml.as_bytes());
            let (loaded, diagnostics) = campaign::load_campaign(&path, &project);
            match loaded {
                Some(c) => prop_assert!(
                    c.delivery
                        .timeout
                        .checked_add(Duration::from_secs(5))
                        .is_some(),
                    "timeout {timeout:?} loads as {:?}",
                    c.delivery.timeout
                ),
                None => check_refusal(&diagnostics)?,
            }
            Ok(())
        },
    );
}
