//! The shared store end to end: the real binary, the sandbox, and one PostgreSQL database
//! that project folders share (and nothing else: no files, no process). Skipped, loudly,
//! without `SMAX_TEST_DATABASE_URL` (failed when `CI` is set); see `state::postgres`.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{accepted_per_recipient, customers_csv, transcript, SandboxProc, TempProject};
use crate::state::postgres::{admin_url, TestDatabase};
use smax_campaign::state::{LockName, OutcomeClass, PostgresStore, StateStore};

const TOKEN: &str = "shared-state-token-8d2e";

/// A project folder with one campaign `name` for `bot`, over `rows` customers.
fn project(name: &str, bot: &str, rows: usize, concurrency: u32) -> TempProject {
    let p = TempProject::without_state(&format!(
        "bots:\n  shop:\n    id: \"{bot}\"\n    token_env: SHOP_TOKEN\n"
    ));
    p.write("customers.csv", &customers_csv(rows));
    p.write(
        "c.yaml",
        &format!(
            "version: 1\nname: {name}\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{{{ first_name }}}}\"\ndelivery:\n  rate: 200\n  concurrency: {concurrency}\n  timeout: 2s\n  max_failures: \"100000\"\n"
        ),
    );
    p
}

fn env<'a>(db: &'a str, api: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("SHOP_TOKEN", TOKEN),
        ("SMAX_API_URL", api),
        ("SMAX_STATE", db),
        ("SMAX_RETRY_BASE_MS", "5"),
    ]
}

fn init(p: &TempProject, db: &str) {
    let out = p.run(&["state", "init"], &[("SMAX_STATE", db)]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

/// Every recipient's class in run `run_id`, read through a session of the test's own.
fn classes(db: &TestDatabase, run_id: &str) -> HashMap<String, OutcomeClass> {
    let store = PostgresStore::open(&db.other_url("reader")).expect("open");
    crate::common::classes(&store, run_id)
}

/// After a crash or a lost session, what a resume must leave: nobody messaged twice,
/// everyone recorded, and no more unknowns than requests could be in flight.
fn assert_resumed_cleanly(
    sandbox: &SandboxProc,
    db: &TestDatabase,
    run_id: &str,
    rows: usize,
    concurrency: usize,
) {
    let per = accepted_per_recipient(sandbox);
    assert!(
        per.values().all(|n| *n == 1),
        "someone got two messages: {per:?}"
    );
    let state = classes(db, run_id);
    assert_eq!(state.len(), rows, "every recipient has a record");
    let unknown = state
        .values()
        .filter(|c| **c == OutcomeClass::Unknown)
        .count();
    assert!(
        unknown <= concurrency,
        "{unknown} unknown > concurrency {concurrency}"
    );
    for (key, class) in &state {
        match class {
            OutcomeClass::Sent => assert_eq!(per.get(key), Some(&1), "{key}"),
            OutcomeClass::Unknown => {}
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn a_run_held_on_another_machine_exits_3_naming_it() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let p = project("shared", "bot-1", 5, 4);
    init(&p, db.url());
    // Another process holds the run, through the database only.
    let holder = PostgresStore::open(&db.other_url("holder")).expect("open");
    let held = holder
        .lock(&LockName::Run("shared".into()), None)
        .expect("lock");

    let out = p.run(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    let text = transcript(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("process {}", std::process::id())),
        "{text}"
    );
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert!(text.contains(&host), "{text}");
    assert!(sandbox.records().is_empty(), "nothing was sent");

    drop(held);
    let out = p.run(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(accepted_per_recipient(&sandbox).len(), 5);
}

/// Two real processes, two folders, one run: the second exits 3 naming the first (its
/// pid), sends nothing, and once the first is gone (SIGKILL) takes the run over and
/// finishes it with nobody messaged twice.
#[cfg(unix)]
#[test]
fn a_second_process_on_the_same_run_exits_3_then_takes_over_after_a_kill() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let (rows, concurrency) = (300, 4);
    let first = project("same", "bot-1", rows, concurrency);
    let second = project("same", "bot-1", rows, concurrency);
    // 25/s: twelve seconds of sending, so the first is still at it while the second tries.
    for p in [&first, &second] {
        let text = std::fs::read_to_string(p.path().join("c.yaml")).expect("read");
        p.write("c.yaml", &text.replace("rate: 200", "rate: 25"));
    }
    init(&first, db.url());
    let mut child = first.spawn(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    assert!(
        sandbox.wait_for_records(3, Duration::from_secs(30)),
        "the first run got going"
    );
    let out = second.run(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    let text = transcript(&out);
    let sent_by_first = sandbox.records().len();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains(&format!("process {}", child.id())), "{text}");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(sent_by_first < rows, "the first was cut short");

    let out = second.run(
        &["run", "c.yaml", "--wait-lock", "30s"],
        &env(db.url(), &sandbox.url),
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        transcript(&out)
    );
    assert_resumed_cleanly(&sandbox, &db, "same", rows, concurrency as usize);
}

/// Schedules keep their record in the database too: `due` reads it, `run --due` twice
/// sends once, and a second folder sees the occurrence as done.
#[test]
fn scheduled_runs_are_due_once_across_folders() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")]);
    let folders: Vec<TempProject> = (0..2)
        .map(|_| {
            let p = project("daily", "bot-1", 10, 4);
            std::fs::create_dir(p.path().join("campaigns")).expect("mkdir");
            let text = std::fs::read_to_string(p.path().join("c.yaml"))
                .expect("read")
                .replace("csv: customers.csv", "csv: ../customers.csv")
                .replace(
                    "delivery:",
                    "schedule:\n  cron: \"0 9 * * *\"\n  timezone: UTC\n  catch_up: 2h\ndelivery:",
                );
            p.write("campaigns/c.yaml", &text);
            p
        })
        .collect();
    init(&folders[0], db.url());
    let at = "2026-11-25T09:05:00Z";
    let e = env(db.url(), &sandbox.url);
    let due = folders[0].run(&["due", "campaigns", "--at", at], &e);
    assert!(
        transcript(&due).contains("daily@2026-11-25T09:00:00+00:00"),
        "{}",
        transcript(&due)
    );
    for p in &folders {
        let out = p.run(&["run", "--due", "campaigns", "--at", at], &e);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    }
    assert_eq!(
        sandbox.accepted().len(),
        10,
        "sent once, by the first folder"
    );
    // The second folder sees, through the shared store, that the occurrence is done.
    let due = folders[1].run(&["due", "campaigns", "--at", at, "--format", "json"], &e);
    let v: serde_json::Value = serde_json::from_slice(&due.stdout)
        .unwrap_or_else(|_| panic!("json: {}", transcript(&due)));
    assert_eq!(v["campaigns"][0]["campaign"], "daily", "{v}");
    assert_eq!(v["campaigns"][0]["status"], "done", "{v}");
}

#[test]
fn two_folders_for_different_bots_send_at_once_each_recipient_once() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--bot",
        &format!("bot-2={TOKEN}"),
    ]);
    let one = project("one", "bot-1", 60, 8);
    let two = project("two", "bot-2", 60, 8);
    init(&one, db.url());
    let children: Vec<_> = [&one, &two]
        .iter()
        .map(|p| p.spawn(&["run", "c.yaml"], &env(db.url(), &sandbox.url)))
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    }
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for r in sandbox.accepted() {
        let key = (
            r["bot"].as_str().unwrap_or("").to_owned(),
            r["recipient"]["customer_id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
        *per.entry(key).or_insert(0) += 1;
    }
    assert_eq!(per.len(), 120, "{per:?}");
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    assert_eq!(classes(&db, "one").len(), 60);
    assert_eq!(classes(&db, "two").len(), 60);
}

#[cfg(unix)]
#[test]
fn sigkill_of_the_holder_then_another_folder_resumes_with_no_duplicates() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--latency", "5"]);
    let (rows, concurrency) = (150, 8);
    let first = project("crash", "bot-1", rows, concurrency);
    init(&first, db.url());
    let mut child = first.spawn(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    assert!(
        sandbox.wait_for_records(25, Duration::from_secs(30)),
        "the run got going"
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    // Another runner, another folder: only the database is shared. The server lets go
    // of the dead process's locks once it sees its connection close.
    let second = project("crash", "bot-1", rows, concurrency);
    let out = second.run(
        &["run", "c.yaml", "--wait-lock", "30s"],
        &env(db.url(), &sandbox.url),
    );
    let text = transcript(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
    assert!(!text.contains("--new-state"), "the store was there: {text}");
    assert_resumed_cleanly(&sandbox, &db, "crash", rows, concurrency as usize);
}

/// The server ends the run's session mid-run (as a restart or a failover does): the run
/// stops at once, never reconnects to carry on, and the next run resumes cleanly.
#[test]
fn a_session_ended_by_the_server_stops_the_run_and_the_next_resumes() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--latency", "5"]);
    // 400 at 200/s: two seconds, of which the cut below leaves most to do.
    let (rows, concurrency) = (400, 8);
    let p = project("lost", "bot-1", rows, concurrency);
    init(&p, db.url());
    let child = p.spawn(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    assert!(
        sandbox.wait_for_records(25, Duration::from_secs(30)),
        "the run got going"
    );
    let terminated: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'smax-campaign'",
            &[],
        )
        .expect("terminate")
        .get(0);
    assert_eq!(terminated, 1, "the run's one connection");
    let out = child.wait_with_output().expect("wait");
    let text = transcript(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("connection was lost"), "{text}");
    let stopped_at = sandbox.records().len();
    assert!(stopped_at < rows, "it stopped, at {stopped_at}");

    let out = p.run(&["run", "c.yaml"], &env(db.url(), &sandbox.url));
    let text = transcript(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
    assert!(
        sandbox.records().len() > stopped_at,
        "the resumed run sent the rest"
    );
    assert_resumed_cleanly(&sandbox, &db, "lost", rows, concurrency as usize);
}

#[test]
fn a_password_in_the_state_url_never_leaks() {
    let Some(admin) = admin_url() else {
        return;
    };
    let db = TestDatabase::new(&admin);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--fail", "reject:0.3"]);
    let p = project("pw", "bot-1", 20, 4);
    // The test server trusts loopback: the password is carried, never needed.
    let secret = "pg-pass-never-leaks-51f0";
    let url = db.url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{secret}@"),
        1,
    );
    let wrong = url.replace("smax_test_", "no_such_db_");
    let mut outputs = Vec::new();
    let e = env(&url, &sandbox.url);
    for args in [
        vec!["run", "c.yaml"],
        vec!["state", "init"],
        vec![
            "run",
            "c.yaml",
            "--report",
            "report.json",
            "--requests",
            "requests.jsonl",
        ],
        vec!["run", "c.yaml", "--format", "json"],
        vec!["status"],
        vec!["status", "pw", "--recipients", "all", "--format", "json"],
        vec!["plan", "c.yaml", "--format", "markdown"],
        vec!["due"],
        vec!["run", "--help"],
    ] {
        outputs.push(transcript(&p.run(&args, &e)));
    }
    let mut wrong_env = e;
    wrong_env[2] = ("SMAX_STATE", &wrong);
    let refused = p.run(&["run", "c.yaml", "--new-state"], &wrong_env);
    assert_eq!(refused.status.code(), Some(2), "{}", transcript(&refused));
    outputs.push(transcript(&refused));
    // Through PGPASSWORD instead of the URL.
    let mut pg_env = env(db.url(), &sandbox.url).to_vec();
    pg_env.push(("PGPASSWORD", secret));
    outputs.push(transcript(&p.run(&["status"], &pg_env)));
    outputs.push(transcript(&p.run(&["run", "c.yaml"], &pg_env)));
    for file in ["report.json", "requests.jsonl"] {
        outputs.push(std::fs::read_to_string(p.path().join(file)).expect(file));
    }
    let all = outputs.join("\n");
    assert!(all.contains("postgres:***@"), "{all}");
    assert!(!all.contains(secret), "{all}");
    // Every row of every table the tool writes.
    let dump: String = db
        .client()
        .query(
            "SELECT r::text FROM smax.runs r
             UNION ALL SELECT d::text FROM smax.deliveries d
             UNION ALL SELECT f::text FROM smax.fingerprint_history f
             UNION ALL SELECT l::text FROM smax.leases l
             UNION ALL SELECT h::text FROM smax.lock_holders h
             UNION ALL SELECT v::text FROM smax.schema_version v",
            &[],
        )
        .expect("dump")
        .iter()
        .map(|r| r.get::<_, String>(0) + "\n")
        .collect();
    assert!(
        dump.contains("customers.csv") && dump.lines().count() > 20,
        "{dump}"
    );
    assert!(!dump.contains(secret), "{dump}");
}
