//! The gate between "looks right" and "sent": canary and partial sends (`run
//! --limit`, `--only`) and the question `run` asks on a terminal.

use std::collections::HashSet;

use crate::common::{customer_ids, customers_csv, transcript, SandboxProc, TempProject};

const TOKEN: &str = "gate-token-51c7";
const PROJECT: &str = "bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n";
const CAMPAIGN: &str = "version: 1\nname: gate\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\ndelivery:\n  rate: 1000\n";

fn project(rows: usize) -> TempProject {
    let p = TempProject::new(PROJECT);
    p.write("customers.csv", &customers_csv(rows));
    p.write("c.yaml", CAMPAIGN);
    p
}

fn sandbox() -> SandboxProc {
    SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")])
}

fn run(p: &TempProject, sandbox: &SandboxProc, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "c.yaml"];
    all.extend_from_slice(args);
    p.run(
        &all,
        &[
            ("SHOP_TOKEN", TOKEN),
            ("SMAX_API_URL", sandbox.url.as_str()),
        ],
    )
}

/// The customer ids the sandbox accepted, sorted (requests go out concurrently).
fn accepted_ids(sandbox: &SandboxProc) -> Vec<String> {
    let mut ids = customer_ids(&sandbox.accepted());
    ids.sort();
    ids
}

fn run_status(p: &TempProject) -> String {
    p.status_json()["runs"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn limit_sends_the_first_n_then_the_next_run_continues() {
    let sandbox = sandbox();
    let p = project(10);
    let out = run(&p, &sandbox, &["--limit", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(accepted_ids(&sandbox), ["C0001", "C0002", "C0003"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("held out       7"), "{shown}");
    assert!(shown.contains("7 recipient(s) held out"), "{shown}");
    assert_eq!(run_status(&p), "interrupted");
    // `plan --key` reads what the run already did from state.
    let explained = p.run(&["-q", "plan", "c.yaml", "--key", "C0002"], &[]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(
        explained.contains("customers.csv:3  already sent (or settled) by this run"),
        "{explained}"
    );

    let out = run(&p, &sandbox, &["--limit", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(accepted_ids(&sandbox).len(), 6);

    let out = run(&p, &sandbox, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let ids = accepted_ids(&sandbox);
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10, "never twice");
    assert_eq!(run_status(&p), "completed");
}

#[test]
fn only_sends_those_keys_and_the_rest_stay_pending() {
    let sandbox = sandbox();
    let p = project(10);
    let out = run(&p, &sandbox, &["--only", "C0002,C0005", "--only", "C0404"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(accepted_ids(&sandbox), ["C0002", "C0005"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this key is not among the recipients to send"),
        "{err}"
    );
    assert!(err.contains("C0404"), "{err}");
    assert_eq!(run_status(&p), "interrupted");

    // Already sent: nothing to send among those selected, and the run stays open.
    let out = run(&p, &sandbox, &["--only", "C0002"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("nothing to send among the recipients selected"));
    assert_eq!(accepted_ids(&sandbox).len(), 2);
    assert_eq!(run_status(&p), "interrupted");

    let out = run(&p, &sandbox, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let ids = accepted_ids(&sandbox);
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10, "never twice");
}

#[test]
fn limit_and_only_choose_among_one_campaigns_recipients() {
    let sandbox = sandbox();
    let p = project(3);
    p.write("d.yaml", &CAMPAIGN.replace("name: gate", "name: other"));
    for args in [
        vec!["run", "c.yaml", "d.yaml", "--limit", "1"],
        vec!["run", "--due", ".", "--only", "C0001"],
        vec!["run", "c.yaml", "--limit", "0"],
        vec!["run", "c.yaml", "--only", " "],
    ] {
        let out = p.run(
            &args,
            &[
                ("SHOP_TOKEN", TOKEN),
                ("SMAX_API_URL", sandbox.url.as_str()),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", transcript(&out));
    }
    assert!(sandbox.records().is_empty());
}

#[cfg(unix)]
mod terminal {
    use super::*;
    use crate::common::pty::Terminal;

    fn ask(
        p: &TempProject,
        sandbox: &SandboxProc,
        args: &[&str],
        answer: Option<&str>,
        env: &[(&str, &str)],
    ) -> (Option<i32>, String) {
        let mut all = vec!["run", "c.yaml"];
        all.extend_from_slice(args);
        let mut vars = vec![
            ("SHOP_TOKEN", TOKEN),
            ("SMAX_API_URL", sandbox.url.as_str()),
        ];
        vars.extend_from_slice(env);
        let mut term = Terminal::spawn(p.path(), &all, &vars);
        if let Some(answer) = answer {
            term.wait_for("[y/N] ");
            term.type_line(answer);
        }
        term.finish()
    }

    #[test]
    fn anything_but_yes_sends_nothing_and_records_nothing() {
        let sandbox = sandbox();
        let p = project(4);
        for answer in ["", "n", "no", "yep", "Y es"] {
            let (code, screen) = ask(&p, &sandbox, &[], Some(answer), &[]);
            assert_eq!(code, Some(0), "{answer:?}: {screen}");
            assert!(
                screen.contains("send to 4 recipients of gate via shop? [y/N]"),
                "{screen}"
            );
            assert!(
                screen.contains("not sent: gate (nothing was sent or recorded)"),
                "{screen}"
            );
        }
        assert!(sandbox.records().is_empty());
        let out = p.run(&["status"], &[]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("no runs"),
            "{}",
            transcript(&out)
        );
    }

    #[test]
    fn yes_sends_and_the_question_counts_what_this_invocation_sends() {
        let sandbox = sandbox();
        let p = project(4);
        let (code, screen) = ask(&p, &sandbox, &["--limit", "3"], Some("y"), &[]);
        assert_eq!(code, Some(0), "{screen}");
        assert!(
            screen.contains("send to 3 recipients of gate via shop? [y/N]"),
            "{screen}"
        );
        assert_eq!(accepted_ids(&sandbox).len(), 3);
        // The plan was shown once, before the question.
        assert_eq!(screen.matches("Plan for gate").count(), 1, "{screen}");

        let (code, screen) = ask(&p, &sandbox, &[], Some("YES"), &[]);
        assert_eq!(code, Some(0), "{screen}");
        assert!(screen.contains("send to 1 recipients of gate"), "{screen}");
        assert_eq!(accepted_ids(&sandbox).len(), 4);
    }

    #[test]
    fn ci_never_asks_even_on_a_terminal() {
        let sandbox = sandbox();
        let p = project(2);
        let (code, screen) = ask(&p, &sandbox, &[], None, &[("CI", "true")]);
        assert_eq!(code, Some(0), "{screen}");
        assert!(!screen.contains("[y/N]"), "{screen}");
        assert_eq!(accepted_ids(&sandbox).len(), 2);
    }

    #[test]
    fn yes_flag_does_not_ask() {
        let sandbox = sandbox();
        let p = project(2);
        let (code, screen) = ask(&p, &sandbox, &["--yes"], None, &[]);
        assert_eq!(code, Some(0), "{screen}");
        assert!(!screen.contains("[y/N]"), "{screen}");
        assert_eq!(accepted_ids(&sandbox).len(), 2);
    }
}

#[test]
fn without_a_terminal_run_never_asks() {
    let sandbox = sandbox();
    let p = project(2);
    let out = run(&p, &sandbox, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(!transcript(&out).contains("[y/N]"));
    assert_eq!(accepted_ids(&sandbox).len(), 2);
}

/// A re-run with nothing to do leaves a finished run as it was: `status` does not
/// show it a little longer after every no-op tick.
#[test]
fn a_no_op_re_run_leaves_the_finished_run_as_it_was() {
    let sandbox = sandbox();
    let p = project(2);
    let out = run(&p, &sandbox, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let finished = |p: &TempProject| {
        let doc = p.status_json();
        let run = &doc["runs"][0];
        (run["status"].clone(), run["finished"].clone())
    };
    let before = finished(&p);
    assert_eq!(before.0, "completed");
    assert!(before.1.is_string(), "{before:?}");
    for _ in 0..2 {
        let out = run(&p, &sandbox, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to send"));
        assert_eq!(finished(&p), before);
    }
}
