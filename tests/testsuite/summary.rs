//! What CI shows people after a run: the markdown appended to
//! $GITHUB_STEP_SUMMARY and the JSON report's shape.

use crate::common::{customers_csv, transcript, SandboxProc, TempProject};

/// A sandbox that rejects about 30% of sends (seeded), and a project with one bot.
fn rejecting_sandbox_and_project() -> (SandboxProc, TempProject) {
    let sandbox = SandboxProc::start(&[
        "--bot",
        "bot-1=summary-token",
        "--fail",
        "reject:0.3",
        "--seed",
        "4",
    ]);
    let p = TempProject::new("bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n");
    (sandbox, p)
}

#[test]
fn the_step_summary_of_a_run_with_rejections() {
    let (sandbox, p) = rejecting_sandbox_and_project();
    p.write("customers.csv", &customers_csv(20));
    p.write(
        "c.yaml",
        "version: 1\nname: summary\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\ndelivery:\n  rate: 1000\n  concurrency: 1\n  max_failures: \"100\"\n",
    );
    let summary = p.path().join("summary.md");
    let summary_str = summary.display().to_string();
    let out = p.run(
        &["run", "c.yaml", "--report", "report.json"],
        &[
            ("SHOP_TOKEN", "summary-token"),
            ("SMAX_API_URL", &sandbox.url),
            ("GITHUB_STEP_SUMMARY", &summary_str),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let markdown = std::fs::read_to_string(&summary).expect("summary written");
    insta::with_settings!({filters => vec![
        (r"requests in [^,]+(, [0-9.]+/s on average)?,", "requests in [DURATION],"),
    ]}, {
        insta::assert_snapshot!(markdown);
    });
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("report.json")).expect("report"))
            .expect("json");
    let run = &report["runs"][0];
    for key in [
        "campaign",
        "run_id",
        "plan",
        "sent",
        "rejected",
        "failed",
        "unknown",
        "invalid",
        "pending",
        "requests",
        "rate_limited",
        "seconds",
        "achieved_rate",
        "top_failures",
        "exit_code",
    ] {
        assert!(run.get(key).is_some(), "report lacks {key}: {run}");
    }
    assert_eq!(report["exit_code"], 1);
    let (sent, rejected) = (
        run["sent"].as_u64().unwrap_or(0),
        run["rejected"].as_u64().unwrap_or(0),
    );
    assert_eq!(sent + rejected, 20);
    // Shares of the audience, as the summary shows them.
    let shares = &run["percent"];
    assert_eq!(shares["sent"].as_f64(), Some(sent as f64 * 5.0), "{run}");
    assert_eq!(
        shares["rejected"].as_f64(),
        Some(rejected as f64 * 5.0),
        "{run}"
    );
    assert_eq!(shares["pending"].as_f64(), Some(0.0), "{run}");
}

/// The run summary and `status` speak one vocabulary, with shares of the audience.
#[test]
fn the_run_summary_and_status_share_one_vocabulary() {
    let (sandbox, p) = rejecting_sandbox_and_project();
    // Row 3 has no customer id: invalid, tolerated by max_invalid.
    p.write("customers.csv", &customers_csv(20).replace("C0002,", ","));
    p.write(
        "c.yaml",
        "version: 1\nname: summary\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\ndelivery:\n  rate: 1000\n  concurrency: 1\n  max_failures: \"100\"\n  max_invalid: 1\n",
    );
    let env = [
        ("SHOP_TOKEN", "summary-token"),
        ("SMAX_API_URL", sandbox.url.as_str()),
    ];
    let out = p.run(&["-q", "run", "c.yaml"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", transcript(&out));
    let status = p.run(&["status"], &env);
    assert_eq!(status.status.code(), Some(0), "{}", transcript(&status));

    // JSON speaks the same words: no second vocabulary of store classes.
    let json = p.run(&["status", "--format", "json"], &env);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let run = &doc["runs"][0];
    assert!(run.get("counts").is_none(), "{run}");
    let outcomes = &run["outcomes"];
    let (rejected, invalid) = (outcomes["rejected"].as_u64(), outcomes["invalid"].as_u64());
    assert!(rejected.is_some_and(|n| n > 0), "{run}");
    assert_eq!(invalid, Some(1), "{run}");
    // Each filter lists its own outcome: `failed` ones are retried, `rejected` never.
    let listed = |filter: &str| -> Vec<String> {
        let out = p.run(
            &[
                "status",
                "summary",
                "--recipients",
                filter,
                "--format",
                "json",
            ],
            &env,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        doc["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .map(|r| r["class"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let rejected_rows = listed("rejected");
    assert_eq!(rejected_rows.len() as u64, rejected.unwrap_or(0));
    assert!(rejected_rows.iter().all(|c| c == "rejected"));
    assert!(listed("failed").is_empty(), "nothing failed for now");
    insta::with_settings!({filters => vec![
        (r"in [0-9.]+m?s\b", "in [DURATION]"),
        (r", [0-9.]+/s on average", ", [RATE]/s on average"),
    ]}, {
        insta::assert_snapshot!("run_summary", String::from_utf8_lossy(&out.stdout));
    });
    insta::with_settings!({filters => vec![
        (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "[STARTED]"),
        (r"  [0-9.]+m?s  ", "  [DURATION]  "),
        // Column widths follow the duration's text; the words and numbers are what matter.
        (r" {2,}", "  "),
    ]}, {
        insta::assert_snapshot!("status", String::from_utf8_lossy(&status.stdout));
    });
}
