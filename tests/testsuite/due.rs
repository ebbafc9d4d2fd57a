//! Scheduled runs through the real binary, at a chosen time (`--at`).

use crate::common::{customers_csv, transcript, SandboxProc, TempProject};

const TOKEN: &str = "due-token-91ac";

fn campaign(name: &str, schedule: &str, text: &str) -> String {
    format!(
        "version: 1\nname: {name}\nbot: shop\naudience:\n  from:\n    - csv: ../customers.csv\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{text} {{{{ first_name }}}}\"\n{schedule}delivery:\n  rate: 1000\n"
    )
}

fn folder() -> TempProject {
    let p = TempProject::new("bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n");
    p.write("customers.csv", &customers_csv(5));
    p.write(
        "campaigns/morning.yaml",
        &campaign("morning", "schedule:\n  cron: \"0 9 * * *\"\n  timezone: Asia/Ho_Chi_Minh\n  catch_up: 2h\n  window: \"08:00-21:00\"\n", "Sáng"),
    );
    p.write(
        "campaigns/evening.yaml",
        &campaign(
            "evening",
            "schedule:\n  cron: \"0 18 * * *\"\n  timezone: Asia/Ho_Chi_Minh\n",
            "Tối",
        ),
    );
    p.write(
        "campaigns/early.yaml",
        &campaign(
            "early",
            "schedule:\n  cron: \"0 6 * * *\"\n  timezone: Asia/Ho_Chi_Minh\n  catch_up: 1h\n",
            "Sớm",
        ),
    );
    p.write("campaigns/manual.yaml", &campaign("manual", "", "Tay"));
    p
}

fn run(p: &TempProject, args: &[&str], url: &str) -> std::process::Output {
    p.run(args, &[("SHOP_TOKEN", TOKEN), ("SMAX_API_URL", url)])
}

fn texts(sandbox: &SandboxProc) -> Vec<String> {
    sandbox
        .accepted()
        .iter()
        .map(|r| {
            r["messages"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn run_due_sends_only_the_due_campaigns_once() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = folder();
    let at = "2026-11-25T09:05:00+07:00";

    let due = run(&p, &["due", "campaigns", "--at", at], &sandbox.url);
    assert_eq!(due.status.code(), Some(0));
    insta::assert_snapshot!(String::from_utf8_lossy(&due.stdout));

    let out = run(&p, &["run", "--due", "campaigns", "--at", at], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let sent = texts(&sandbox);
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(
        sent.iter().all(|t| t.starts_with("Sáng ")),
        "only the due campaign sends: {sent:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("early: occurrence 2026-11-25T06:00:00+07:00 was missed"),
        "{stdout}"
    );

    // A second call at the same time sends nothing.
    let again = run(&p, &["run", "--due", "campaigns", "--at", at], &sandbox.url);
    assert_eq!(again.status.code(), Some(0), "{}", transcript(&again));
    assert_eq!(sandbox.records().len(), 5);

    // `due` now reports the morning run done and the early one missed.
    let after = run(
        &p,
        &["due", "campaigns", "--at", at, "--format", "json"],
        &sandbox.url,
    );
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).expect("json");
    let status = |name: &str| {
        v["campaigns"]
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["campaign"] == name)
            .map(|c| c["status"].clone())
            .expect(name)
    };
    assert_eq!(status("morning"), "done");
    assert_eq!(status("early"), "missed");
    // Yesterday's 18:00 was never sent and is older than the default catch_up.
    assert_eq!(status("evening"), "missed");
    assert_eq!(status("manual"), "unscheduled");

    // The next day's occurrence is a new run.
    let next_day = run(
        &p,
        &[
            "run",
            "--due",
            "campaigns",
            "--at",
            "2026-11-26T09:01:00+07:00",
        ],
        &sandbox.url,
    );
    assert_eq!(next_day.status.code(), Some(0), "{}", transcript(&next_day));
    assert_eq!(
        texts(&sandbox)
            .iter()
            .filter(|t| t.starts_with("Sáng"))
            .count(),
        10
    );
}

#[test]
fn outside_the_window_nothing_is_sent_and_the_run_stays_open() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = TempProject::new("bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n");
    p.write("customers.csv", &customers_csv(3));
    p.write(
        "campaigns/late.yaml",
        &campaign("late", "schedule:\n  cron: \"30 20 * * *\"\n  timezone: Asia/Ho_Chi_Minh\n  catch_up: 3h\n  window: \"08:00-21:00\"\n", "Muộn"),
    );
    let out = run(
        &p,
        &[
            "run",
            "campaigns/late.yaml",
            "--at",
            "2026-11-25T21:30:00+07:00",
        ],
        &sandbox.url,
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(
        transcript(&out).contains("window closed"),
        "{}",
        transcript(&out)
    );
    assert_eq!(sandbox.records().len(), 0);
    let status = run(&p, &["status", "--format", "json"], &sandbox.url);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(v["runs"][0]["status"], "interrupted");
}
