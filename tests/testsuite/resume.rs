//! Runs that survive anything: crash, resume, locks, fingerprints, state files.
//! Everything is asserted on the sandbox's record and the state store.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{
    self, accepted_per_recipient, customers_csv, transcript, SandboxProc, TempProject,
};
use smax_campaign::state::{OutcomeClass, SqliteStore};

const TOKEN: &str = "resume-token-5b1c";

fn project(rate: u32, concurrency: u32, rows: usize) -> TempProject {
    let p = TempProject::new("bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n");
    p.write("customers.csv", &customers_csv(rows));
    p.write(
        "c.yaml",
        &campaign(rate, concurrency, "Chào {{ first_name }}"),
    );
    p
}

fn campaign(rate: u32, concurrency: u32, text: &str) -> String {
    format!(
        "version: 1\nname: resume\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{text}\"\ndelivery:\n  rate: {rate}\n  concurrency: {concurrency}\n  timeout: 2s\n  max_failures: \"100000\"\n"
    )
}

fn env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SHOP_TOKEN", TOKEN.into()),
        ("SMAX_API_URL", url.into()),
        ("SMAX_RETRY_BASE_MS", "5".into()),
    ]
}

fn run(p: &TempProject, args: &[&str], url: &str) -> std::process::Output {
    let env = env(url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.run(args, &env)
}

fn classes(p: &TempProject, run_id: &str) -> HashMap<String, OutcomeClass> {
    let store = SqliteStore::open_read_only(&p.path().join(".smax/state.db"))
        .expect("state")
        .expect("exists");
    common::classes(&store, run_id)
}

#[cfg(unix)]
#[test]
fn sigkill_at_several_points_then_resume_sends_everyone_at_most_once() {
    for (kill_after, concurrency) in [(3usize, 4u32), (25, 8), (60, 16)] {
        let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--latency", "5"]);
        let p = project(200, concurrency, 120);
        let env = env(&sandbox.url);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut child = p.spawn(&["run", "c.yaml"], &env);
        assert!(
            sandbox.wait_for_records(kill_after, Duration::from_secs(30)),
            "the run got going"
        );
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let resumed = run(&p, &["run", "c.yaml"], &sandbox.url);
        let code = resumed.status.code();
        assert!(
            code == Some(0) || code == Some(1),
            "{}",
            transcript(&resumed)
        );

        let per = accepted_per_recipient(&sandbox);
        assert!(
            per.values().all(|n| *n == 1),
            "someone got two messages (kill after {kill_after}): {per:?}"
        );
        let state = classes(&p, "resume");
        assert_eq!(state.len(), 120, "every recipient has a record");
        let unknown = state
            .values()
            .filter(|c| **c == OutcomeClass::Unknown)
            .count();
        assert!(
            unknown <= concurrency as usize,
            "{unknown} unknown > concurrency {concurrency}"
        );
        for (key, class) in &state {
            assert!(
                matches!(
                    class,
                    OutcomeClass::Sent | OutcomeClass::Unknown | OutcomeClass::Rejected
                ),
                "{key}: {class:?}"
            );
            if *class == OutcomeClass::Sent {
                assert_eq!(
                    per.get(key),
                    Some(&1),
                    "{key} recorded sent but not delivered once"
                );
            }
        }
        // Unknowns are resent only when asked; then everyone has exactly what they should.
        let again = run(&p, &["run", "c.yaml"], &sandbox.url);
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("nothing to send"),
            "{}",
            transcript(&again)
        );
    }
}

#[test]
fn a_completed_run_sends_nothing_when_repeated() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project(1000, 8, 30);
    let first = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(first.status.code(), Some(0), "{}", transcript(&first));
    assert_eq!(sandbox.records().len(), 30);
    let second = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(second.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("nothing to send"),
        "{}",
        transcript(&second)
    );
    assert_eq!(sandbox.records().len(), 30, "a repeat made requests");
    // `plan` shows what state says, read-only.
    let plan = run(&p, &["plan", "c.yaml", "--format", "json"], &sandbox.url);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(v["already_sent"], 30);
    assert_eq!(v["to_send"], 0);
}

#[test]
fn new_audience_rows_are_picked_up_on_resume() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project(1000, 8, 10);
    assert_eq!(
        run(&p, &["run", "c.yaml"], &sandbox.url).status.code(),
        Some(0)
    );
    p.write("customers.csv", &customers_csv(15));
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(sandbox.records().len(), 15);
    assert!(accepted_per_recipient(&sandbox).values().all(|n| *n == 1));
}

#[test]
fn two_concurrent_runs_of_one_campaign_one_exits_3() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project(20, 4, 60);
    let env = env(&sandbox.url);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = p.spawn(&["run", "c.yaml"], &env_ref);
    assert!(sandbox.wait_for_records(3, Duration::from_secs(30)));
    let second = p.run(&["run", "c.yaml"], &env_ref);
    assert_eq!(second.status.code(), Some(3), "{}", transcript(&second));
    let text = transcript(&second);
    assert!(
        text.contains("held by another process") && text.contains("process "),
        "{text}"
    );
    let first = first.wait_with_output().expect("wait");
    assert_eq!(first.status.code(), Some(0), "{}", transcript(&first));
    let per = accepted_per_recipient(&sandbox);
    assert_eq!(per.len(), 60);
    assert!(per.values().all(|n| *n == 1));
}

#[test]
fn a_changed_message_is_refused_then_accepted_with_the_flag() {
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--fail", "500:1"]);
    let p = project(1000, 4, 5);
    p.write(
        "c.yaml",
        &campaign(1000, 4, "Chào {{ first_name }}")
            .replace("timeout: 2s", "timeout: 2s\n  retries: 0"),
    );
    let first = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(first.status.code(), Some(1), "{}", transcript(&first));
    p.write("c.yaml", &campaign(1000, 4, "Xin chào {{ first_name }}"));
    let refused = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(refused.status.code(), Some(2), "{}", transcript(&refused));
    let text = transcript(&refused);
    assert!(
        text.contains("changed-since-start") && text.contains("message: was"),
        "{text}"
    );
    assert!(text.contains("--accept-changes"));
    let before = sandbox.records().len();
    let healthy = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let accepted = run(&p, &["run", "c.yaml", "--accept-changes"], &healthy.url);
    assert_eq!(accepted.status.code(), Some(0), "{}", transcript(&accepted));
    assert_eq!(sandbox.records().len(), before);
    assert_eq!(healthy.accepted().len(), 5);
    let first = healthy
        .accepted()
        .into_iter()
        .find(|r| r["recipient"]["customer_id"] == "C0001")
        .expect("C0001 was sent");
    assert_eq!(first["messages"][0]["text"], "Xin chào Khách 1");
}

#[test]
fn rejected_are_retried_only_with_retry_failed() {
    let rejecting = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--fail", "reject:1"]);
    let p = project(1000, 4, 6);
    assert_eq!(
        run(&p, &["run", "c.yaml"], &rejecting.url).status.code(),
        Some(1)
    );
    let healthy = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let plain = run(&p, &["run", "c.yaml"], &healthy.url);
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("nothing to send"),
        "{}",
        transcript(&plain)
    );
    assert_eq!(healthy.records().len(), 0);
    let retried = run(&p, &["run", "c.yaml", "--retry-failed"], &healthy.url);
    assert_eq!(retried.status.code(), Some(0), "{}", transcript(&retried));
    assert_eq!(healthy.accepted().len(), 6);
    // status lists who failed, with the platform's text.
    let status = run(
        &p,
        &["status", "resume", "--recipients", "all"],
        &healthy.url,
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("6 recipient(s) of run resume"),
        "{}",
        transcript(&status)
    );
}

#[test]
fn unknown_are_resent_only_with_resend_unknown() {
    let hanging = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--fail", "timeout:1"]);
    let p = project(1000, 4, 4);
    p.write(
        "c.yaml",
        &campaign(1000, 4, "Chào {{ first_name }}").replace("timeout: 2s", "timeout: 1s"),
    );
    assert_eq!(
        run(&p, &["run", "c.yaml"], &hanging.url).status.code(),
        Some(1)
    );
    let status = run(
        &p,
        &["status", "resume", "--recipients", "unknown"],
        &hanging.url,
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("4 recipient(s)"),
        "{}",
        transcript(&status)
    );
    let healthy = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let plain = run(&p, &["run", "c.yaml"], &healthy.url);
    assert!(String::from_utf8_lossy(&plain.stdout).contains("nothing to send"));
    let resent = run(&p, &["run", "c.yaml", "--resend-unknown"], &healthy.url);
    assert_eq!(resent.status.code(), Some(0), "{}", transcript(&resent));
    assert_eq!(healthy.accepted().len(), 4);
}

#[test]
fn a_corrupt_or_future_state_file_is_a_clear_error_and_left_alone() {
    let p = project(1000, 4, 3);
    std::fs::create_dir_all(p.path().join(".smax")).expect("mkdir");
    let garbage = b"this is not a database, it is a shopping list\n".repeat(100);
    std::fs::write(p.path().join(".smax/state.db"), &garbage).expect("write");
    let out = run(&p, &["run", "c.yaml"], "http://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert!(!transcript(&out).contains("panicked"));
    assert!(
        transcript(&out).contains("state.db"),
        "{}",
        transcript(&out)
    );
    assert_eq!(
        std::fs::read(p.path().join(".smax/state.db")).expect("read"),
        garbage
    );
    let status = run(&p, &["status"], "http://127.0.0.1:9");
    assert_eq!(status.status.code(), Some(2));

    // A file written by a newer version.
    std::fs::remove_file(p.path().join(".smax/state.db")).expect("rm");
    {
        let _ = SqliteStore::create(&p.path().join(".smax/state.db")).expect("create");
    }
    let conn = rusqlite::Connection::open(p.path().join(".smax/state.db")).expect("open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let out = run(&p, &["run", "c.yaml"], "http://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(2));
    assert!(transcript(&out).contains("newer"), "{}", transcript(&out));
}
