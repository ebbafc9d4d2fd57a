//! Never twice, never silently skipped: state is never created on the way, the
//! database file alone is complete after a run, invalid recipients stop a run
//! before anything is sent, and a run can be handed over on purpose.
//! Everything is asserted on the sandbox's record, the state store and the files.

use std::path::Path;
use std::time::Duration;

use crate::common::{self, customer_ids, customers_csv, transcript, SandboxProc, TempProject};
use yaml_rust2::Yaml;

const TOKEN: &str = "never-silent-token-7e21";
const PROJECT: &str = "bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n";

fn campaign(extra: &str) -> String {
    format!(
        "version: 1\nname: ns\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{{{ first_name }}}}\"\ndelivery:\n  timeout: 2s\n{extra}"
    )
}

fn project(with_state: bool, rows: usize, delivery_extra: &str) -> TempProject {
    let p = if with_state {
        TempProject::new(PROJECT)
    } else {
        TempProject::without_state(PROJECT)
    };
    p.write("customers.csv", &customers_csv(rows));
    p.write("c.yaml", &campaign(delivery_extra));
    p
}

fn run(p: &TempProject, args: &[&str], url: &str) -> std::process::Output {
    p.run(
        args,
        &[
            ("SHOP_TOKEN", TOKEN),
            ("SMAX_API_URL", url),
            ("SMAX_RETRY_BASE_MS", "5"),
        ],
    )
}

fn sandbox() -> SandboxProc {
    SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status_json(p: &TempProject) -> serde_json::Value {
    let out = run(p, &["status", "--format", "json"], "http://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    serde_json::from_slice(&out.stdout).expect("status prints JSON")
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[test]
fn run_without_a_store_sends_nothing_and_creates_nothing() {
    let sandbox = sandbox();
    let p = project(false, 5, "");
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("no state store"), "{err}");
    assert!(err.contains("message everyone again"), "{err}");
    assert!(err.contains("--new-state"), "{err}");
    assert!(sandbox.records().is_empty(), "nothing may be sent");
    assert!(!exists(&p.path().join(".smax")), "nothing may be created");

    // A mistyped --state is the same refusal, not a fresh store.
    let out = run(
        &p,
        &["run", "c.yaml", "--state", "elsewhere/state.db"],
        &sandbox.url,
    );
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert!(!exists(&p.path().join("elsewhere")));
    assert!(sandbox.records().is_empty());

    // On purpose: --new-state creates it, and the run sends.
    let out = run(&p, &["run", "c.yaml", "--new-state"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(stderr(&out).contains("created a new state store"));
    assert_eq!(sandbox.accepted().len(), 5);
    // With the store in place --new-state changes nothing: a resume sends nobody twice.
    let out = run(&p, &["run", "c.yaml", "--new-state"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(sandbox.accepted().len(), 5);
}

#[test]
fn a_zero_length_store_is_refused_and_left_untouched_even_with_new_state() {
    let sandbox = sandbox();
    let p = project(false, 4, "");
    std::fs::create_dir_all(p.path().join(".smax")).expect("mkdir");
    let db = p.path().join(".smax/state.db");
    std::fs::write(&db, b"").expect("truncate");
    for args in [
        &["run", "c.yaml"][..],
        &["run", "c.yaml", "--new-state"][..],
    ] {
        let out = run(&p, args, &sandbox.url);
        assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
        assert!(stderr(&out).contains("zero bytes"), "{}", transcript(&out));
    }
    for args in [&["plan", "c.yaml"][..], &["status"][..]] {
        let out = run(&p, args, &sandbox.url);
        assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    }
    assert!(sandbox.records().is_empty());
    assert_eq!(std::fs::read(&db).expect("read"), b"");
    let mut names: Vec<String> = std::fs::read_dir(p.path().join(".smax"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["state.db"], "no -wal, -shm or lock files appear");
}

#[test]
fn plan_status_and_due_read_a_missing_store_as_empty_and_create_nothing() {
    let p = project(false, 3, "");
    let plan = run(&p, &["plan", "c.yaml"], "http://127.0.0.1:9");
    assert_eq!(plan.status.code(), Some(0), "{}", transcript(&plan));
    assert!(
        stderr(&plan).contains("read as empty"),
        "{}",
        transcript(&plan)
    );
    let status = run(&p, &["status"], "http://127.0.0.1:9");
    assert_eq!(status.status.code(), Some(0), "{}", transcript(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no state store"));
    std::fs::create_dir_all(p.path().join("campaigns")).expect("mkdir");
    std::fs::copy(p.path().join("c.yaml"), p.path().join("campaigns/c.yaml")).expect("copy");
    std::fs::copy(
        p.path().join("customers.csv"),
        p.path().join("campaigns/customers.csv"),
    )
    .expect("copy");
    let due = run(&p, &["due", "campaigns"], "http://127.0.0.1:9");
    assert_eq!(due.status.code(), Some(0), "{}", transcript(&due));
    assert!(
        stderr(&due).contains("read as empty"),
        "{}",
        transcript(&due)
    );
    assert!(!exists(&p.path().join(".smax")), "nothing may be created");
}

#[test]
fn state_init_creates_the_store_once() {
    let p = project(false, 3, "");
    let first = run(&p, &["state", "init"], "http://127.0.0.1:9");
    assert_eq!(first.status.code(), Some(0), "{}", transcript(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"));
    let db = p.path().join(".smax/state.db");
    assert!(std::fs::metadata(&db).expect("created").len() > 0);
    let bytes = std::fs::read(&db).expect("read");
    let second = run(&p, &["state", "init"], "http://127.0.0.1:9");
    assert_eq!(second.status.code(), Some(0), "{}", transcript(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("already exists"));
    assert_eq!(std::fs::read(&db).expect("read"), bytes);
    let none = run(
        &p,
        &["state", "init", "--state", "none"],
        "http://127.0.0.1:9",
    );
    assert_eq!(none.status.code(), Some(2), "{}", transcript(&none));
}

/// A store named in a shared folder (`--state /tmp/x.db`) adds only its own
/// files there: the database and `x.db.locks/`, never a bare `locks/`.
#[test]
fn a_store_in_a_shared_folder_keeps_its_locks_to_itself() {
    let sandbox = sandbox();
    let p = project(false, 2, "");
    let shared = tempfile::tempdir().expect("tempdir");
    let db = shared.path().join("x.db");
    let db_arg = db.display().to_string();
    let out = run(
        &p,
        &["run", "c.yaml", "--new-state", "--state", &db_arg],
        &sandbox.url,
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let mut names: Vec<String> = std::fs::read_dir(shared.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["x.db", "x.db.locks"]);
}

/// A read-only connection that has read, as a concurrent `status` would: while
/// it is open, closing the run's own connections cannot fold the log back.
fn a_reader_holding_the_log(db: &Path) -> rusqlite::Connection {
    let reader =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("reader");
    let _: i64 = reader
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .expect("read");
    reader
}

/// CI caches may carry `state.db` without its `-wal`: after a run the file alone
/// must hold every record. A reader keeps its connection open across the run, as
/// a concurrent `status` would, so closing the run's connections cannot fold the
/// log back on its own.
#[test]
fn after_a_run_the_database_file_alone_is_complete() {
    let sandbox = sandbox();
    let p = project(true, 30, "");
    let db = p.path().join(".smax/state.db");
    let reader = a_reader_holding_the_log(&db);
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(sandbox.accepted().len(), 30);

    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&db, copy.path().join("state.db")).expect("copy the file alone");
    let copied = rusqlite::Connection::open(copy.path().join("state.db")).expect("open copy");
    let (sent, status): (i64, String) = copied
        .query_row(
            "SELECT (SELECT count(*) FROM deliveries WHERE class = 'sent'), \
             (SELECT status FROM runs WHERE run_id = 'ns')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query the copy");
    assert_eq!((sent, status.as_str()), (30, "completed"));
    drop(reader);
}

/// The run's row as a copy of `state.db` alone holds it (no `-wal` beside it).
fn status_in_the_file_alone(db: &Path) -> String {
    let copy = tempfile::tempdir().expect("tempdir");
    std::fs::copy(db, copy.path().join("state.db")).expect("copy the file alone");
    let copied = rusqlite::Connection::open(copy.path().join("state.db")).expect("open copy");
    copied
        .query_row("SELECT status FROM runs WHERE run_id = 'ns'", [], |r| {
            r.get(0)
        })
        .expect("the run is in the file")
}

/// Runs that end badly checkpoint too: a run aborted by a refused token, and one
/// handed over by `--max-duration`.
#[test]
fn after_a_failed_or_handed_over_run_the_database_file_alone_is_complete() {
    let sandbox = SandboxProc::start(&["--bot", "bot-1=another-token"]);
    let p = project(true, 5, "");
    let db = p.path().join(".smax/state.db");
    let reader = a_reader_holding_the_log(&db);
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert_eq!(status_in_the_file_alone(&db), "aborted");

    let sandbox = self::sandbox();
    let out = run(&p, &["run", "c.yaml", "--max-duration", "0s"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(status_in_the_file_alone(&db), "interrupted");
    drop(reader);
}

#[test]
fn an_invalid_recipient_stops_the_run_before_anything_is_sent() {
    let sandbox = sandbox();
    let p = project(true, 6, "");
    // Row 4 (C0003) has no customer id: no identifier renders.
    let mut csv = customers_csv(6);
    csv = csv.replace("C0003,", ",");
    p.write("customers.csv", &csv);
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let err = stderr(&out);
    assert!(err.contains("max_invalid"), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert!(err.contains("customers.csv:4"), "{err}");
    // The reason names what is empty, not just that something is.
    assert!(err.contains("renders empty: `customer_id`"), "{err}");
    assert!(sandbox.records().is_empty(), "nothing may be sent");
    let runs = status_json(&p);
    assert_eq!(runs["runs"][0]["status"], "aborted");
    assert_eq!(runs["runs"][0]["outcomes"]["invalid"], 1);
    assert_eq!(runs["runs"][0]["outcomes"]["pending"], 5);

    // A tolerance lets the valid ones go.
    p.write("c.yaml", &campaign("  max_invalid: 1\n"));
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(sandbox.accepted().len(), 5);
    let runs = status_json(&p);
    assert_eq!(runs["runs"][0]["status"], "completed");
    assert_eq!(runs["runs"][0]["outcomes"]["sent"], 5);
    assert_eq!(runs["runs"][0]["percent"]["sent"], 83.3);
}

#[test]
fn max_invalid_as_a_share_counts_rendered_recipients() {
    let sandbox = sandbox();
    let p = project(true, 10, "  max_invalid: 10%\n");
    let csv = customers_csv(10)
        .replace("C0003,", ",")
        .replace("C0007,", ",");
    p.write("customers.csv", &csv);
    // 2 of 10 is 20%: over 10%.
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(sandbox.records().is_empty());
    p.write("c.yaml", &campaign("  max_invalid: 20%\n"));
    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(sandbox.accepted().len(), 8);
}

#[test]
fn a_scheduled_occurrence_with_too_many_invalid_stays_due() {
    let sandbox = sandbox();
    let p = project(true, 3, "");
    let scheduled = campaign("").replace(
        "delivery:",
        "schedule:\n  cron: \"0 9 * * *\"\n  timezone: UTC\n  catch_up: 2h\ndelivery:",
    );
    std::fs::create_dir_all(p.path().join("campaigns")).expect("mkdir");
    p.write("campaigns/c.yaml", &scheduled);
    p.write(
        "campaigns/customers.csv",
        &customers_csv(3).replace("C0002,", ","),
    );
    let at = "2026-11-28T09:05:00Z";
    let out = run(&p, &["run", "--due", "campaigns", "--at", at], &sandbox.url);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(sandbox.records().is_empty());
    let due = run(
        &p,
        &["due", "campaigns", "--at", at, "--format", "json"],
        &sandbox.url,
    );
    let v: serde_json::Value = serde_json::from_slice(&due.stdout).expect("json");
    assert_eq!(
        v["campaigns"][0]["status"], "due",
        "an occurrence that sent nothing is not done: {v}"
    );
    // Stopped by the tool, it is retried within catch_up only: a broken campaign
    // must not be taken up again tick after tick all day.
    let late = run(
        &p,
        &[
            "due",
            "campaigns",
            "--at",
            "2026-11-28T11:30:00Z",
            "--format",
            "json",
        ],
        &sandbox.url,
    );
    let v: serde_json::Value = serde_json::from_slice(&late.stdout).expect("json");
    assert_eq!(v["campaigns"][0]["status"], "missed", "{v}");
}

#[test]
fn max_duration_hands_the_run_over_to_the_next_invocation() {
    // 60 recipients at 5/s take 12 s; the first invocation stops after 1 s.
    let sandbox = sandbox();
    let p = project(true, 60, "  rate: 5\n");
    let out = run(&p, &["run", "c.yaml", "--max-duration", "1s"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--max-duration reached"), "{text}");
    let first = sandbox.accepted().len();
    assert!(first < 60, "the run was cut short ({first} sent)");
    let runs = status_json(&p);
    assert_eq!(runs["runs"][0]["status"], "interrupted");
    assert_eq!(runs["runs"][0]["outcomes"]["pending"], 60 - first as u64);

    let out = run(&p, &["run", "c.yaml"], &sandbox.url);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let mut keys = customer_ids(&sandbox.accepted());
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!((total, keys.len()), (60, 60), "everyone once, nobody twice");

    let bad = run(
        &p,
        &["run", "c.yaml", "--max-duration", "soon"],
        &sandbox.url,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", transcript(&bad));
}

#[cfg(unix)]
#[test]
fn a_killed_run_reads_as_interrupted_not_running() {
    let sandbox = sandbox();
    let p = project(true, 200, "  rate: 20\n");
    let mut child = p.spawn(
        &["run", "c.yaml"],
        &[
            ("SHOP_TOKEN", TOKEN),
            ("SMAX_API_URL", sandbox.url.as_str()),
        ],
    );
    assert!(
        sandbox.wait_for_records(3, Duration::from_secs(30)),
        "the run got going"
    );
    let live = status_json(&p);
    assert_eq!(live["runs"][0]["status"], "running", "{live}");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let dead = status_json(&p);
    assert_eq!(dead["runs"][0]["status"], "interrupted", "{dead}");
    let text = run(&p, &["status"], "http://127.0.0.1:9");
    assert!(String::from_utf8_lossy(&text.stdout).contains("interrupted"));
}

#[cfg(unix)]
#[test]
fn an_audience_cut_short_during_the_run_fails_it() {
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--latency",
        "20",
        "--rate",
        "1000",
    ]);
    // Far more rows than the reader buffers ahead of the senders.
    let p = project(true, 20_000, "  rate: 500\n  concurrency: 16\n");
    let child = p.spawn(
        &["run", "c.yaml"],
        &[
            ("SHOP_TOKEN", TOKEN),
            ("SMAX_API_URL", sandbox.url.as_str()),
        ],
    );
    assert!(
        sandbox.wait_for_records(1, Duration::from_secs(60)),
        "the run got going"
    );
    p.write("customers.csv", &customers_csv(10));
    // The reader meets the end of the shortened file at once; the senders drain
    // what was read ahead, then the run ends.
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    assert!(
        stderr(&out).contains("the audience changed while it was being sent"),
        "{}",
        transcript(&out)
    );
    let runs = status_json(&p);
    assert_eq!(runs["runs"][0]["status"], "aborted");
}

fn yaml(text: &str) -> yaml_rust2::Yaml {
    yaml_rust2::YamlLoader::load_from_str(text)
        .expect("YAML")
        .into_iter()
        .next()
        .expect("a document")
}

/// The scheduled recipes carry the state the way the README promises: the whole
/// `.smax/` folder (a crashed run's records are in the WAL), a key per attempt (a
/// re-run's save is not refused), a job that fails when the save did not happen, and
/// a hand-over before the job limit.
#[test]
fn the_scheduled_ci_recipes_keep_the_whole_state_folder_and_fail_on_a_lost_save() {
    let text = std::fs::read_to_string(common::repo().join("examples/ci/github-scheduled.yml"))
        .expect("recipe");
    let doc = yaml(&text);
    let steps = doc["jobs"]["due"]["steps"].as_vec().expect("steps");
    let uses =
        |step: &Yaml, action: &str| step["uses"].as_str().is_some_and(|u| u.starts_with(action));
    let cache_steps: Vec<&Yaml> = steps.iter().filter(|s| uses(s, "actions/cache/")).collect();
    assert_eq!(cache_steps.len(), 3, "restore, save, check");
    for step in &cache_steps {
        assert_eq!(step["with"]["path"].as_str(), Some(".smax/"), "{step:?}");
        let key = step["with"]["key"].as_str().unwrap_or_default();
        assert!(key.contains("github.run_attempt"), "{key}");
    }
    let save = cache_steps
        .iter()
        .position(|s| uses(s, "actions/cache/save"))
        .expect("a save step");
    let check = &cache_steps[save + 1];
    assert_eq!(check["if"].as_str(), Some("always()"));
    assert_eq!(check["with"]["lookup-only"].as_bool(), Some(true));
    assert_eq!(check["with"]["fail-on-cache-miss"].as_bool(), Some(true));
    let run = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("smax-campaign run --due"))
        .expect("the run step");
    assert!(run.contains("--max-duration"), "{run}");
    assert!(run.contains("--new-state"), "first-run switch: {run}");

    let gitlab =
        std::fs::read_to_string(common::repo().join("examples/ci/gitlab-ci.yml")).expect("recipe");
    let doc = yaml(&gitlab);
    let paths = doc["due"]["cache"]["paths"].as_vec().expect("paths");
    assert_eq!(paths[0].as_str(), Some(".smax/"));
    assert_eq!(doc["due"]["cache"]["when"].as_str(), Some("always"));
    let script = doc["due"]["script"][0].as_str().unwrap_or_default();
    assert!(script.contains("--max-duration"), "{script}");
}

/// `--max-duration` of a scheduled job, and the job's own limit.
fn max_duration_of(script: &str) -> std::time::Duration {
    let value = script
        .split_whitespace()
        .skip_while(|w| *w != "--max-duration")
        .nth(1)
        .expect("--max-duration VALUE");
    smax_campaign::schedule::parse_duration(value).expect("a duration")
}

/// Every scheduled job hands over before its limit ends it: what is in flight is
/// recorded and the state saved only when the tool stops first.
#[test]
fn every_scheduled_recipe_hands_over_before_its_job_limit() {
    let minutes = |m: i64| std::time::Duration::from_secs(60 * m as u64);
    for file in ["github-scheduled.yml", "github-scheduled-postgres.yml"] {
        let text =
            std::fs::read_to_string(common::repo().join("examples/ci").join(file)).expect("recipe");
        let doc = yaml(&text);
        let job = &doc["jobs"]["due"];
        let limit = minutes(job["timeout-minutes"].as_i64().expect("timeout-minutes"));
        let run = job["steps"]
            .as_vec()
            .expect("steps")
            .iter()
            .filter_map(|s| s["run"].as_str())
            .find(|r| r.contains("smax-campaign run --due"))
            .expect("the run step");
        // The install and the cache save need their time too.
        assert!(max_duration_of(run) + minutes(10) <= limit, "{file}");
    }
    let gitlab =
        std::fs::read_to_string(common::repo().join("examples/ci/gitlab-ci.yml")).expect("recipe");
    let doc = yaml(&gitlab);
    for job in ["due", "due-postgres"] {
        let limit = smax_campaign::schedule::parse_duration(
            doc[job]["timeout"]
                .as_str()
                .expect("a job timeout: the default is 1 hour"),
        )
        .expect("a duration");
        let script = doc[job]["script"][0].as_str().unwrap_or_default();
        assert!(max_duration_of(script) + minutes(10) <= limit, "{job}");
    }
    // A merge-request pipeline has only its own branch: the target is fetched before
    // the diff that picks the campaigns to preview.
    let script = doc["validate"]["script"][1].as_str().unwrap_or_default();
    let fetch = script
        .find("git fetch")
        .expect("the target branch is fetched");
    assert!(fetch < script.find("git diff").expect("a diff"), "{script}");
}

/// The PostgreSQL variants keep the state in the database: the URL and the password
/// from secrets (the password apart, in PGPASSWORD), no cache to lose, and a first-run
/// switch; GitLab picks one of its two jobs by SMAX_STATE, never both.
#[test]
fn the_postgres_ci_recipes_take_the_state_and_password_from_secrets() {
    let text =
        std::fs::read_to_string(common::repo().join("examples/ci/github-scheduled-postgres.yml"))
            .expect("recipe");
    let doc = yaml(&text);
    let steps = doc["jobs"]["due"]["steps"].as_vec().expect("steps");
    assert!(
        !steps.iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/cache"))),
        "no cache: the database is the state"
    );
    let step = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("smax-campaign run --due"))
        })
        .expect("the run step");
    let run = step["run"].as_str().unwrap_or_default();
    assert!(
        run.contains("--max-duration") && run.contains("--new-state"),
        "{run}"
    );
    let env = &step["env"];
    assert_eq!(
        env["SMAX_STATE"].as_str(),
        Some("${{ secrets.SMAX_STATE_URL }}")
    );
    assert_eq!(
        env["PGPASSWORD"].as_str(),
        Some("${{ secrets.SMAX_STATE_PASSWORD }}")
    );

    let gitlab =
        std::fs::read_to_string(common::repo().join("examples/ci/gitlab-ci.yml")).expect("recipe");
    let doc = yaml(&gitlab);
    let rule = |job: &str| {
        doc[job]["rules"][0]["if"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        rule("due").contains("$SMAX_STATE !~ /^postgres/"),
        "{}",
        rule("due")
    );
    assert!(
        rule("due-postgres").contains("$SMAX_STATE =~ /^postgres/"),
        "{}",
        rule("due-postgres")
    );
    assert!(doc["due-postgres"]["cache"].is_badvalue());
    let script = doc["due-postgres"]["script"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        script.contains("--max-duration") && script.contains("--new-state"),
        "{script}"
    );
}

#[test]
fn a_scheduled_run_handed_over_resumes_after_catch_up_has_passed() {
    // A daily 09:00 occurrence with catch_up 2h, cut by --max-duration, is resumed
    // by a tick at 14:00: it was first seen in time, so it is not "missed".
    let sandbox = sandbox();
    let p = project(true, 3, "");
    std::fs::create_dir_all(p.path().join("campaigns")).expect("mkdir");
    p.write(
        "campaigns/c.yaml",
        &campaign("  rate: 5\n").replace(
            "delivery:",
            "schedule:\n  cron: \"0 9 * * *\"\n  timezone: UTC\n  catch_up: 2h\ndelivery:",
        ),
    );
    p.write("campaigns/customers.csv", &customers_csv(40));
    let first = run(
        &p,
        &[
            "run",
            "--due",
            "campaigns",
            "--at",
            "2026-11-28T09:05:00Z",
            "--max-duration",
            "1s",
        ],
        &sandbox.url,
    );
    assert_eq!(first.status.code(), Some(0), "{}", transcript(&first));
    let sent_first = sandbox.accepted().len();
    assert!(sent_first < 40, "cut short ({sent_first})");
    let later = run(
        &p,
        &["run", "--due", "campaigns", "--at", "2026-11-28T14:00:00Z"],
        &sandbox.url,
    );
    assert_eq!(later.status.code(), Some(0), "{}", transcript(&later));
    assert!(
        !String::from_utf8_lossy(&later.stdout).contains("missed"),
        "{}",
        transcript(&later)
    );
    assert_eq!(sandbox.accepted().len(), 40, "the rest was sent, once");
}
