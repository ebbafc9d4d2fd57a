//! `run` through the real binary against the real sandbox on 127.0.0.1.
//! Assertions are on the sandbox's record (counts), never on timing.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{self, customers_csv, max_in_any_second, transcript, SandboxProc, TempProject};

const TOKEN: &str = "sbx-TOKEN-7f3a9c-do-not-print";

fn project(api: &str) -> TempProject {
    TempProject::new(&format!(
        "bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n    api: {api}\n"
    ))
}

fn v2_campaign(extra_delivery: &str) -> String {
    format!(
        r#"version: 1
name: reminder
bot: shop
audience:
  from:
    - csv: customers.csv
recipient:
  customer_id: "{{{{ customer_id }}}}"
message:
  tag: ACCOUNT_UPDATE
  text: "Chào {{{{ first_name }}}}"
delivery:
  rate: 1000
  concurrency: 8
  timeout: 2s
{extra_delivery}"#
    )
}

fn env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SHOP_TOKEN", TOKEN.to_string()),
        ("SMAX_API_URL", url.to_string()),
        ("SMAX_RETRY_BASE_MS", "5".into()),
    ]
}

fn run(p: &TempProject, args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.run(args, &env)
}

fn per_recipient(records: &[serde_json::Value], field: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in records {
        let id = r["recipient"][field]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

#[test]
fn v1_requests_arrive_exactly_encoded() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project("v1");
    p.write(
        "people.csv",
        "uid,name,note\n1001,Nguyễn Thị Ánh 🎉,\"a&b=c+d#e%f g\"\n1002,\"Trần, Bình\",100% off? no: 50%\n",
    );
    p.write(
        "c.yaml",
        r#"version: 1
name: v1-encoding
bot: shop
audience:
  from:
    - csv: people.csv
recipient:
  user_id: "{{ uid }}"
message:
  tag: CONFIRMED_EVENT_UPDATE
  block_name: "Xác nhận đơn hàng"
  attributes:
    name: "{{ name }}"
    note: "{{ note }}"
    empty: ""
delivery:
  rate: 1000
"#,
    );
    let out = run(&p, &["run", "c.yaml"], &env(&sandbox.url));
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let records = sandbox.accepted();
    assert_eq!(records.len(), 2);
    let first = records
        .iter()
        .find(|r| r["recipient"]["user_id"] == "1001")
        .expect("1001");
    assert_eq!(first["block_name"], "Xác nhận đơn hàng");
    assert_eq!(first["tag"], "CONFIRMED_EVENT_UPDATE");
    assert_eq!(first["tag_style"], "quoted");
    assert_eq!(first["attributes"]["name"], "Nguyễn Thị Ánh 🎉");
    assert_eq!(first["attributes"]["note"], "a&b=c+d#e%f g");
    assert_eq!(first["attributes"]["empty"], "");
    let line = first["request_line"].as_str().expect("request line");
    assert!(
        line.contains("/bots/bot-1/users/1001/send?bot_token=***&block_name=X%C3%A1c%20nh%E1%BA%ADn%20%C4%91%C6%A1n%20h%C3%A0ng&messaging_tag=%22CONFIRMED_EVENT_UPDATE%22&name=Nguy%E1%BB%85n%20Th%E1%BB%8B%20%C3%81nh%20%F0%9F%8E%89&note=a%26b%3Dc%2Bd%23e%25f%20g&empty="),
        "{line}"
    );
    let second = records
        .iter()
        .find(|r| r["recipient"]["user_id"] == "1002")
        .expect("1002");
    assert_eq!(second["attributes"]["name"], "Trần, Bình");
    assert_eq!(second["attributes"]["note"], "100% off? no: 50%");
}

#[test]
fn v2_bodies_carry_only_non_empty_documented_fields() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project("v2");
    p.write(
        "customers.csv",
        "customer_id,first_name,phone,email\nC1,Ánh 🎉,0912,\nC2,\"a&b=c+d#e%\",,c2@example.vn\n",
    );
    p.write(
        "c.yaml",
        r#"version: 1
name: v2-body
bot: shop
audience:
  from:
    - csv: customers.csv
recipient:
  customer_id: "{{ customer_id }}"
  customer_phone: "{{ phone }}"
  customer_email: "{{ email }}"
  priority: [phone, email]
message:
  tag: POST_PURCHASE_UPDATE
  text: "Chào {{ first_name }}: đơn hàng đã giao"
delivery:
  rate: 1000
"#,
    );
    let out = run(&p, &["run", "c.yaml"], &env(&sandbox.url));
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let records = sandbox.accepted();
    assert_eq!(records.len(), 2);
    let c1 = records
        .iter()
        .find(|r| r["recipient"]["customer_id"] == "C1")
        .expect("C1");
    assert_eq!(c1["recipient"]["customer_phone"], "0912");
    assert!(
        c1["recipient"].get("customer_email").is_none(),
        "empty email omitted: {c1}"
    );
    assert_eq!(c1["messages"][0]["text"], "Chào Ánh 🎉: đơn hàng đã giao");
    assert_eq!(c1["tag"], "POST_PURCHASE_UPDATE");
    assert_eq!(c1["priority"], serde_json::json!(["phone", "email"]));
    let c2 = records
        .iter()
        .find(|r| r["recipient"]["customer_id"] == "C2")
        .expect("C2");
    assert_eq!(
        c2["messages"][0]["text"],
        "Chào a&b=c+d#e%: đơn hàng đã giao"
    );
}

#[test]
fn a_bad_token_stops_after_a_handful_of_requests() {
    let sandbox = SandboxProc::start(&["--bot", "bot-1=the-right-token"]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(200));
    p.write("c.yaml", &v2_campaign(""));
    let out = run(&p, &["run", "c.yaml"], &env(&sandbox.url));
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let requests = sandbox.records().len();
    assert!(requests <= 16, "{requests} requests after a 401");
    let text = transcript(&out);
    assert!(text.contains("refused the bot's token"), "{text}");
}

#[test]
fn rejections_are_recorded_and_the_breaker_stops_identical_failures() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--fail", "reject:1"]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(100));
    p.write("c.yaml", &v2_campaign("  max_failures: \"1000\"\n"));
    let out = run(
        &p,
        &["run", "c.yaml", "--report", "report.json"],
        &env(&sandbox.url),
    );
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("report.json")).expect("report"))
            .expect("json");
    let run = &report["runs"][0];
    assert_eq!(run["stopped"]["reason"], "breaker", "{run}");
    let rejected = run["rejected"].as_u64().expect("count");
    assert!((20..=28).contains(&rejected), "{rejected}");
    assert_eq!(
        run["top_failures"][0][0],
        "HTTP 200 user has blocked the page"
    );
    // Nobody got more than one request.
    assert!(per_recipient(&sandbox.records(), "customer_id")
        .values()
        .all(|n| *n == 1));
}

#[test]
fn max_failures_aborts_the_run() {
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--fail",
        "reject:0.5",
        "--seed",
        "3",
    ]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(300));
    p.write("c.yaml", &v2_campaign("  max_failures: \"10\"\n"));
    let out = run(
        &p,
        &["run", "c.yaml", "--report", "report.json"],
        &env(&sandbox.url),
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(
        report["runs"][0]["stopped"]["reason"], "max-failures",
        "{report}"
    );
    assert!(sandbox.records().len() < 300);
}

#[test]
fn retry_storms_end_with_everyone_sent_exactly_once() {
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--fail",
        "500:0.3,429:0.05",
        "--seed",
        "11",
    ]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(60));
    p.write("c.yaml", &v2_campaign("  retries: 30\n"));
    let out = run(
        &p,
        &["run", "c.yaml", "--report", "report.json"],
        &env(&sandbox.url),
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let accepted = per_recipient(&sandbox.accepted(), "customer_id");
    assert_eq!(accepted.len(), 60);
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["runs"][0]["sent"], 60);
    assert!(
        report["runs"][0]["requests"].as_u64().expect("n") > 60,
        "some requests were retried"
    );
}

#[test]
fn unknown_outcomes_are_reported_and_not_resent() {
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--fail",
        "timeout:0.2",
        "--seed",
        "5",
    ]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(40));
    p.write(
        "c.yaml",
        &v2_campaign("").replace("timeout: 2s", "timeout: 1s"),
    );
    let out = run(
        &p,
        &["run", "c.yaml", "--report", "report.json"],
        &env(&sandbox.url),
    );
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("report.json")).expect("report"))
            .expect("json");
    let unknown = report["runs"][0]["unknown"].as_u64().expect("n");
    assert!(unknown > 0);
    let timeouts = sandbox
        .records()
        .iter()
        .filter(|r| r["fault"] == "timeout")
        .count() as u64;
    assert_eq!(unknown, timeouts);
    assert!(per_recipient(&sandbox.records(), "customer_id")
        .values()
        .all(|n| *n == 1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--resend-unknown"));
}

#[test]
fn the_rate_limiter_never_exceeds_its_budget_in_any_second() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--rate", "10"]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(35));
    p.write("c.yaml", &v2_campaign("").replace("rate: 1000", "rate: 10"));
    let out = run(&p, &["run", "c.yaml"], &env(&sandbox.url));
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let records = sandbox.records();
    assert_eq!(records.iter().filter(|r| r["status"] == 429).count(), 0);
    assert_eq!(records.len(), 35);
    assert!(
        max_in_any_second(&records) <= 10,
        "{}",
        max_in_any_second(&records)
    );
}

/// SIGKILL while recipients wait for the rate permit: only requests that
/// really left may read as `unknown` afterwards (SPEC section 6).
#[cfg(unix)]
#[test]
fn after_a_kill_unknown_recipients_are_only_those_whose_request_left() {
    use smax_campaign::state::{OutcomeClass, SqliteStore, StateStore};
    // The first request is held by the sandbox; the next slot is 20 s away,
    // so the other recipients taken are waiting for their turn at the kill.
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--latency", "30000"]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(30));
    p.write(
        "c.yaml",
        &v2_campaign("")
            .replace("rate: 1000", "rate: 0.05")
            .replace("concurrency: 8", "concurrency: 25")
            .replace("timeout: 2s", "timeout: 60s"),
    );
    let env = env(&sandbox.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = p.spawn(&["run", "c.yaml"], &env);
    assert!(
        sandbox.wait_for_records(1, Duration::from_secs(30)),
        "the run started sending"
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let received = common::customer_ids(&sandbox.records());
    assert_eq!(received.len(), 1, "{received:?}");
    let store = SqliteStore::open_read_only(&p.path().join(".smax/state.db"))
        .expect("state")
        .expect("exists");
    // In flight at the kill: what the next run settles as `unknown`.
    let in_flight: Vec<String> = store
        .deliveries("reminder", &[OutcomeClass::Attempted], None)
        .expect("deliveries")
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(in_flight, received);
}

#[test]
fn rate_above_25_is_refused_against_the_real_api() {
    let p = project("v2");
    p.write("customers.csv", &customers_csv(3));
    p.write("c.yaml", &v2_campaign(""));
    let out = p.run(&["run", "c.yaml"], &[("SHOP_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(transcript(&out).contains("above the platform's limit"));
}

#[test]
fn a_missing_token_variable_is_a_clear_error() {
    let p = project("v2");
    p.write("customers.csv", &customers_csv(3));
    p.write("c.yaml", &v2_campaign(""));
    let out = p.run(&["run", "c.yaml", "--api-url", "http://127.0.0.1:9"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        transcript(&out).contains("`SHOP_TOKEN`"),
        "{}",
        transcript(&out)
    );
}

#[test]
fn an_unreachable_api_fails_without_panicking() {
    let p = project("v2");
    p.write("customers.csv", &customers_csv(3));
    p.write("c.yaml", &v2_campaign("  retries: 1\n"));
    let out = run(&p, &["run", "c.yaml"], &env("http://127.0.0.1:9"));
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let text = transcript(&out);
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("panicked"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_mid_run_ends_cleanly_with_a_summary() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project("v2");
    p.write("customers.csv", &customers_csv(500));
    p.write("c.yaml", &v2_campaign("").replace("rate: 1000", "rate: 20"));
    let env = env(&sandbox.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let child = p.spawn(&["run", "c.yaml"], &env);
    assert!(
        sandbox.wait_for_records(5, Duration::from_secs(30)),
        "the run started sending"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let text = transcript(&out);
    assert!(text.contains("stopped: interrupted"), "{text}");
    assert!(sandbox.records().len() < 500);
}

#[test]
fn the_token_never_appears_in_any_output() {
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--fail",
        "500:0.2,reject:0.2,timeout:0.1",
        "--seed",
        "2",
    ]);
    let p = project("v1");
    p.write(
        "people.csv",
        "uid,name\n1,An\n2,Bình\n3,Cường\n4,Dũng\n5,Em\n6,Giang\n7,Hà\n8,Khoa\n",
    );
    p.write(
        "c.yaml",
        r#"version: 1
name: leak-check
bot: shop
audience:
  from:
    - csv: people.csv
recipient:
  user_id: "{{ uid }}"
message:
  tag: ACCOUNT_UPDATE
  block_name: "Cập nhật"
  attributes:
    name: "{{ name }}"
delivery:
  rate: 1000
  timeout: 1s
  retries: 2
"#,
    );
    let mut env = env(&sandbox.url);
    env.push(("RUST_LOG", "debug".into()));
    let summary = p.path().join("step-summary.md");
    env.push(("GITHUB_STEP_SUMMARY", summary.display().to_string()));
    let out = run(
        &p,
        &[
            "-vv",
            "run",
            "c.yaml",
            "--report",
            "report.json",
            "--requests",
            "requests.jsonl",
        ],
        &env,
    );
    let plan = run(
        &p,
        &[
            "plan",
            "c.yaml",
            "--requests",
            "plan-requests.jsonl",
            "--format",
            "json",
        ],
        &env,
    );
    let mut everything = Vec::new();
    for o in [&out, &plan] {
        everything.extend_from_slice(&o.stdout);
        everything.extend_from_slice(&o.stderr);
    }
    for file in [
        "report.json",
        "requests.jsonl",
        "plan-requests.jsonl",
        "step-summary.md",
    ] {
        everything.extend(std::fs::read(p.path().join(file)).unwrap_or_default());
    }
    let haystack = String::from_utf8_lossy(&everything);
    assert!(!haystack.contains(TOKEN), "the token leaked");
    assert!(!haystack.contains("7f3a9c"), "part of the token leaked");
    assert!(
        haystack.contains("bot_token=***"),
        "URLs are shown, redacted"
    );
}
