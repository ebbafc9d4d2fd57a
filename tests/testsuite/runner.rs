//! The runner as a library and many bots at once: campaigns for different bots send at
//! the same time, campaigns for one bot share its budget and its lock, and the state
//! seam refuses a location it cannot serve without creating anything.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smax_campaign::run::{Ended, Inputs, Prepared, PreparedRun, RunEvent, RunOptions, Runner};

use crate::common::{customers_csv, max_in_any_second, transcript, SandboxProc, TempProject};

/// Preparing a run in this process registers the token with the scrubber, which
/// is process-wide: no other test prints this string.
const TOKEN: &str = "sbx-RUNNER-4d2b-do-not-print";

fn campaign(name: &str, bot: &str, rate: u32) -> String {
    format!(
        r#"version: 1
name: {name}
bot: {{ id: "{bot}", token_file: token.txt, api: v2 }}
audience:
  from:
    - csv: customers.csv
  key: "{{{{ customer_id }}}}"
recipient:
  customer_id: "{{{{ customer_id }}}}"
message:
  tag: ACCOUNT_UPDATE
  text: "Hello {{{{ first_name }}}}"
delivery:
  rate: {rate}
  timeout: 30s
"#
    )
}

fn project(customers: usize, campaigns: &[(&str, &str, u32)]) -> (TempProject, Vec<PathBuf>) {
    // Whatever a test forgets to name, nothing leaves the machine.
    let p = TempProject::new("api_url: http://127.0.0.1:9\n");
    p.write("token.txt", TOKEN);
    p.write("customers.csv", &customers_csv(customers));
    let files = campaigns
        .iter()
        .map(|(name, bot, rate)| p.write(&format!("{name}.yaml"), &campaign(name, bot, *rate)))
        .collect();
    (p, files)
}

/// A platform stand-in that holds every bot's first request until each bot in `bots`
/// has one waiting: campaigns sent one after another never get there (the first bot's
/// request is answered 503 once `bound` has passed, and the meeting is marked missed).
/// `bound` is shorter than the campaigns' request timeout, so a waiting request is
/// still in flight when the meeting is judged.
struct Rendezvous {
    url: String,
    met: Arc<Mutex<Option<bool>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Rendezvous {
    async fn start(bots: &[&str], bound: Duration) -> Rendezvous {
        use axum::extract::{Path, State};
        use axum::http::StatusCode;
        use axum::routing::post;

        #[derive(Clone)]
        struct Shared {
            expected: usize,
            waiting: Arc<Mutex<HashSet<String>>>,
            all_here: Arc<tokio::sync::Notify>,
            met: Arc<Mutex<Option<bool>>>,
            bound: Duration,
        }

        async fn send(Path(bot): Path<String>, State(s): State<Shared>) -> (StatusCode, String) {
            let first = {
                let mut waiting = s.waiting.lock().expect("lock");
                let first = waiting.insert(bot);
                if waiting.len() == s.expected {
                    // Marked before waking: a waiter checks the mark after it starts
                    // listening, so no wake-up is lost between the two.
                    s.met.lock().expect("lock").get_or_insert(true);
                    s.all_here.notify_waiters();
                }
                first && waiting.len() < s.expected
            };
            if first {
                let notified = s.all_here.notified();
                let already = s.met.lock().expect("lock").is_some();
                if !already && tokio::time::timeout(s.bound, notified).await.is_err() {
                    s.met.lock().expect("lock").get_or_insert(false);
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"success":false,"result":"rendezvous missed"}"#.into(),
                    );
                }
            }
            (StatusCode::OK, r#"{"success":true,"result":"ok"}"#.into())
        }

        let met = Arc::new(Mutex::new(None));
        let shared = Shared {
            expected: bots.len(),
            waiting: Arc::default(),
            all_here: Arc::default(),
            met: met.clone(),
            bound,
        };
        let app = axum::Router::new()
            .route("/public/bots/{bot}/send", post(send))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Rendezvous {
            url,
            met,
            _server: server,
        }
    }
}

fn prepare(files: &[PathBuf], api_url: &str) -> Vec<PreparedRun> {
    let inputs = Inputs {
        api_url: Some(api_url.to_owned()),
        ..Inputs::default()
    };
    files
        .iter()
        .map(|f| {
            let prepared = Prepared::load(f, &inputs)
                .unwrap_or_else(|e| panic!("{}: {:?}", f.display(), e.diagnostics()));
            PreparedRun::new(prepared, None).unwrap_or_else(|e| panic!("{:?}", e.diagnostics()))
        })
        .collect()
}

fn options() -> RunOptions {
    RunOptions {
        retry_base: Duration::from_millis(10),
        ..RunOptions::default()
    }
}

#[test]
fn campaigns_for_different_bots_send_at_the_same_time() {
    let bots = ["bot-a", "bot-b", "bot-c"];
    let (_p, files) = project(
        6,
        &[("a", bots[0], 25), ("b", bots[1], 25), ("c", bots[2], 25)],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (events, received) = std::sync::mpsc::channel();
    let (ended, met) = runtime.block_on(async {
        let server = Rendezvous::start(&bots, Duration::from_secs(10)).await;
        let runs = prepare(&files, &server.url);
        let runner = Runner::new(options(), events);
        let ended = runner.run(runs).await;
        let met = *server.met.lock().expect("lock");
        (ended, met)
    });
    assert_eq!(met, Some(true), "every bot had a request in flight at once");
    for result in ended {
        match result {
            Ok(Ended::Sent(report)) => {
                assert!(report.ok, "{report:?}");
                assert_eq!(report.delivery.sent, 6, "{report:?}");
            }
            other => panic!("{:?}", other.map_err(|e| e.diagnostics())),
        }
    }
    // Every campaign planned and finished, and the runner said so on its channel.
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for event in received.try_iter() {
        match event {
            RunEvent::Planned(r) => seen.entry(r.campaign.clone()).or_default().push("planned"),
            RunEvent::Finished(r) => seen.entry(r.campaign.clone()).or_default().push("finished"),
            _ => {}
        }
    }
    for name in ["a", "b", "c"] {
        assert_eq!(
            seen.get(name).map(Vec::as_slice),
            Some(&["planned", "finished"][..])
        );
    }
}

#[test]
fn campaigns_for_one_bot_share_its_lock_and_its_lowest_rate() {
    let (p, _) = project(8, &[("fast", "bot-1", 25), ("slow", "bot-1", 4)]);
    let sandbox = SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}"), "--rate", "4"]);
    let out = p.run(
        &["run", "fast.yaml", "slow.yaml", "--api-url", &sandbox.url],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let records = sandbox.records();
    assert_eq!(records.len(), 16, "{}", transcript(&out));
    // The sandbox answers 429 past 4 a second for the bot: the shared budget kept to
    // the lower rate for both campaigns together.
    assert_eq!(records.iter().filter(|r| r["status"] == 429).count(), 0);
    assert!(
        max_in_any_second(&records) <= 4,
        "{}",
        max_in_any_second(&records)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Run fast: finished"), "{stdout}");
    assert!(stdout.contains("Run slow: finished"), "{stdout}");
}

#[test]
fn an_unreachable_postgres_is_a_clear_error_and_nothing_is_created() {
    let (p, _) = project(2, &[("c", "bot-1", 25)]);
    let listing = || {
        let mut names: Vec<String> = walk(p.path());
        names.sort();
        names
    };
    let before = listing();
    let url = "postgres://smax:pg-Secret-91@127.0.0.1:1/smax";
    for args in [
        vec!["run", "c.yaml", "--new-state", "--state", url],
        vec!["run", "c.yaml", "--state", url],
        vec!["status", "--state", url],
        vec!["state", "init", "--state", url],
        vec!["plan", "c.yaml", "--state", url],
    ] {
        let out = p.run(&args, &[("SMAX_API_URL", "http://127.0.0.1:9")]);
        let text = transcript(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("cannot connect"), "{args:?}: {text}");
        assert!(text.contains("127.0.0.1:1/smax"), "{args:?}: {text}");
        assert!(!text.contains("pg-Secret-91"), "{args:?}: {text}");
    }
    // The same through SMAX_STATE, with the password in the query this time.
    let url = "postgresql://smax@127.0.0.1:1/smax?sslmode=disable&password=pg-Secret-92";
    let out = p.run(&["run", "c.yaml", "--new-state"], &[("SMAX_STATE", url)]);
    let text = transcript(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("pg-Secret-92"), "{text}");
    assert_eq!(listing(), before, "nothing was created");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        found.push(path.display().to_string());
        if path.is_dir() {
            found.extend(walk(&path));
        }
    }
    found
}

#[test]
fn two_campaigns_of_one_name_in_one_run_are_refused_not_raced() {
    let (p, _) = project(2, &[("c", "bot-1", 25)]);
    p.write("copy.yaml", &campaign("c", "bot-2", 25));
    let sandbox = SandboxProc::start(&[
        "--bot",
        &format!("bot-1={TOKEN}"),
        "--bot",
        &format!("bot-2={TOKEN}"),
    ]);
    let out = p.run(
        &["run", "c.yaml", "copy.yaml", "--api-url", &sandbox.url],
        &[],
    );
    let text = transcript(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("duplicate-campaign"), "{text}");
    assert!(text.contains("copy.yaml"), "{text}");
    // The first of them ran as usual; the second sent nothing.
    assert_eq!(sandbox.records().len(), 2, "{text}");
}

#[test]
fn a_refused_store_gives_its_error_and_no_checkpoint_warning() {
    let (p, _) = project(2, &[("c", "bot-1", 25)]);
    let out = p.run(&["run", "c.yaml", "--state", "elsewhere/state.db"], &[]);
    let text = transcript(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("there is no state store"), "{text}");
    assert!(!text.contains("write-ahead log"), "{text}");
}
