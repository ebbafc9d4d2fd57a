//! `plan` through the real binary: snapshots of what people read, and the
//! audience edge cases (encodings, broken rows, row numbers, counts).

use crate::common::{run, transcript, TempProject};

#[test]
fn plan_text_of_the_bundled_campaigns() {
    for campaign in ["loyalty-points", "order-shipped"] {
        let out = run(&[
            "plan",
            &format!("campaigns/{campaign}.yaml"),
            "--sample",
            "2",
        ]);
        insta::assert_snapshot!(format!("plan_text_{campaign}"), transcript(&out));
    }
}

#[test]
fn plan_of_a_scheduled_campaign_shows_its_occurrence_and_window() {
    let out = run(&[
        "plan",
        "campaigns/appointment-reminder.yaml",
        "--at",
        "2026-11-25 08:30",
        "--sample",
        "1",
    ]);
    insta::assert_snapshot!(transcript(&out));
}

#[test]
fn plan_markdown_suits_a_pull_request() {
    let out = run(&[
        "plan",
        "campaigns/loyalty-points.yaml",
        "--format",
        "markdown",
        "--sample",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn plan_json_carries_the_counts_at_the_top_level() {
    let out = run(&[
        "plan",
        "campaigns/loyalty-points.yaml",
        "--format",
        "json",
        "--sample",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for (name, expected) in [
        ("read", 7),
        ("filtered", 2),
        ("suppressed", 1),
        ("duplicates", 1),
        ("invalid", 0),
        ("already_sent", 0),
        ("to_send", 3),
    ] {
        assert_eq!(v[name], expected, "{name}");
    }
    insta::assert_json_snapshot!(v);
}

fn v1_project() -> TempProject {
    TempProject::new("bots:\n  classic:\n    id: \"b1\"\n    token_env: T\n    api: v1\n  shop:\n    id: \"b2\"\n    token_env: T\n    api: v2\n")
}

fn requests(p: &TempProject, file: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p.path().join(file))
        .expect("requests file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn csv_edge_cases_survive_into_the_v1_query_encoded_exactly_once() {
    let p = v1_project();
    // BOM, a quoted field with a comma and a newline, Vietnamese, emoji, &=+#%.
    let mut csv = b"\xEF\xBB\xBFuid,name,note\n".to_vec();
    csv.extend_from_slice(
        "1,\"Nguyễn, Ánh\nHà Nội\",🎉 a&b=c+d#e%f\n2,Bình,%20 stays literal\n".as_bytes(),
    );
    std::fs::write(p.path().join("people.csv"), csv).expect("write");
    p.write(
        "c.yaml",
        "version: 1\nname: edge\nbot: classic\naudience:\n  from:\n    - csv: people.csv\nrecipient:\n  user_id: \"{{ uid }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  block_name: \"Cập nhật\"\n  attributes:\n    name: \"{{ name }}\"\n    note: \"{{ note }}\"\n",
    );
    let out = p.run(&["plan", "c.yaml", "--requests", "out.jsonl"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let reqs = requests(&p, "out.jsonl");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["row"], 2);
    // The first record spans lines 2-3, so the second starts on line 4.
    assert_eq!(reqs[1]["row"], 4);
    assert_eq!(
        reqs[0]["url"],
        "https://api.smax.bot/bots/b1/users/1/send?bot_token=***&block_name=C%E1%BA%ADp%20nh%E1%BA%ADt&messaging_tag=%22ACCOUNT_UPDATE%22&name=Nguy%E1%BB%85n%2C%20%C3%81nh%0AH%C3%A0%20N%E1%BB%99i&note=%F0%9F%8E%89%20a%26b%3Dc%2Bd%23e%25f"
    );
    assert!(reqs[1]["url"]
        .as_str()
        .expect("url")
        .ends_with("&note=%2520%20stays%20literal"));
}

/// A JSON plan's invalid rows, one `file:row reason` a line.
fn invalid_rows(plan: &serde_json::Value) -> String {
    plan["invalid_rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            format!(
                "{}:{} {}",
                r["file"].as_str().unwrap_or(""),
                r["row"],
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn broken_rows_are_reported_with_file_and_row_and_skipped() {
    let p = v1_project();
    let mut csv = "customer_id,first_name,orders\nC1,An,3\nC2,Bình\n"
        .as_bytes()
        .to_vec();
    csv.extend_from_slice(b"C3,\xff\xfe,2\n");
    csv.extend_from_slice("C4,Dũng,three\nC5,Em,5\n".as_bytes());
    csv.extend_from_slice(b"C6,Giang,1\n");
    std::fs::write(p.path().join("a.csv"), csv).expect("write");
    p.write("b.jsonl", "{\"customer_id\":\"J1\",\"first_name\":\"Hà\",\"orders\":4}\nnot json\n[1,2]\n\n{\"customer_id\":\"J2\",\"first_name\":\"Khoa\",\"orders\":9}\n");
    p.write(
        "c.yaml",
        "version: 1\nname: broken\nbot: shop\naudience:\n  from:\n    - csv: { path: a.csv, types: { orders: integer } }\n    - jsonl: b.jsonl\n  where: \"orders >= 2\"\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\n",
    );
    let out = p.run(
        &["plan", "c.yaml", "--format", "json", "--sample", "0"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["read"], 10);
    assert_eq!(v["invalid"], 5);
    assert_eq!(v["filtered"], 1);
    assert_eq!(v["to_send"], 4);
    insta::assert_snapshot!(invalid_rows(&v));
}

#[test]
fn fail_on_invalid_changes_the_exit_code() {
    let p = v1_project();
    p.write("a.csv", "customer_id,first_name\nC1,An\n,Bình\n");
    p.write("c.yaml", "version: 1\nname: inv\nbot: shop\naudience:\n  from:\n    - csv: a.csv\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\n");
    assert_eq!(p.run(&["plan", "c.yaml"], &[]).status.code(), Some(0));
    assert_eq!(
        p.run(&["plan", "c.yaml", "--fail-on-invalid"], &[])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn render_time_checks_make_rows_invalid() {
    let p = v1_project();
    let long = "x".repeat(2001);
    p.write(
        "a.csv",
        &format!("id,otn,body,phone\nA,t1,ok,0912\nB,t1,ok,\nC,t2,{long},\nD,t3,ok,\nA,t4,dup,\nE,,ok,\n"),
    );
    p.write(
        "c.yaml",
        "version: 1\nname: checks\nbot: shop\naudience:\n  from:\n    - csv: a.csv\n  key: \"{{ id }}\"\nrecipient:\n  customer_id: \"{{ id }}\"\n  customer_phone: \"{{ phone }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{{ body }}\"\n  one_time_notif_token: \"{{ otn }}\"\n",
    );
    let out = p.run(
        &["plan", "c.yaml", "--format", "json", "--sample", "5"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["duplicates"], 1);
    assert_eq!(v["invalid_reasons"]["otn-token-reused"], 1);
    assert_eq!(v["invalid_reasons"]["text-too-long"], 1);
    assert_eq!(v["to_send"], 3);
    // Leading zeros stay; an empty cell is an empty string, so the phone is omitted.
    assert_eq!(v["sample"][0]["body"]["customer_phone"], "0912");
    let d = v["sample"]
        .as_array()
        .expect("sample")
        .iter()
        .find(|r| r["key"] == "D")
        .expect("D");
    assert!(d["body"].get("customer_phone").is_none());
    let e = v["sample"]
        .as_array()
        .expect("sample")
        .iter()
        .find(|r| r["key"] == "E")
        .expect("E");
    assert!(
        e["body"].get("one_time_notif_token").is_none(),
        "empty token omitted"
    );
}

#[test]
fn a_broken_suppression_list_refuses_the_plan() {
    let p = v1_project();
    p.write("a.csv", "customer_id,first_name\nC1,An\n");
    p.write("optout.csv", "customer_id,reason\nC1,asked\nC2\n");
    p.write("c.yaml", "version: 1\nname: sup\nbot: shop\naudience:\n  from:\n    - csv: a.csv\n  exclude:\n    - csv: optout.csv\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\n");
    let out = p.run(&["plan", "c.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let text = transcript(&out);
    assert!(text.contains("optout.csv:3"), "{text}");
}

#[test]
fn a_json_null_is_a_missing_value_never_the_text_none() {
    let p = v1_project();
    p.write(
        "audiences/x.jsonl",
        "{\"customer_id\":\"J1\",\"first_name\":\"Hà\",\"city\":null}\n{\"customer_id\":\"J2\",\"first_name\":null}\n{\"customer_id\":\"J3\"}\n",
    );
    p.write(
        "c.yaml",
        "version: 1\nname: nulls\nbot: shop\naudience:\n  from:\n    - jsonl: audiences/x.jsonl\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}{% if city is defined %} ở {{ city }}{% endif %}\"\n",
    );
    let out = p.run(
        &[
            "plan",
            "c.yaml",
            "--format",
            "json",
            "--sample",
            "0",
            "--requests",
            "out.jsonl",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["to_send"], 1);
    assert_eq!(v["invalid"], 2);
    insta::assert_snapshot!(invalid_rows(&v));
    let written = std::fs::read_to_string(p.path().join("out.jsonl")).expect("requests");
    assert!(written.contains("Chào Hà"), "{written}");
    assert!(!written.contains("None"), "{written}");
}

/// `plan --key`: one recipient's path through the pipeline, for each way a row
/// can go (to send and a later duplicate, filtered, suppressed, in no row).
#[test]
fn key_explains_one_recipients_path() {
    let mut all = String::new();
    for key in ["C1001", "C1002", "C1006", "C9999"] {
        let out = run(&["-q", "plan", "campaigns/loyalty-points.yaml", "--key", key]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    insta::assert_snapshot!(all);
}

/// An invalid recipient's reason, and a V1 request with its token redacted.
#[test]
fn key_shows_the_reason_or_the_request_without_its_token() {
    let p = v1_project();
    p.write("c.csv", "user_id,name\n111,An\n222,\n333,Chi\n");
    p.write(
        "c.yaml",
        "version: 1\nname: keyed\nbot: classic\naudience:\n  from:\n    - csv: c.csv\nrecipient:\n  user_id: \"{{ user_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  block_name: \"{{ name }}\"\n",
    );
    let env = [("T", "v1-secret-token-77")];
    let out = p.run(&["-q", "plan", "c.yaml", "--key", "222"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("c.csv:3  invalid: block_name renders empty"),
        "{text}"
    );
    let out = p.run(
        &["-q", "plan", "c.yaml", "--key", "333", "--format", "json"],
        &env,
    );
    let story: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let request = &story["appearances"][0];
    assert_eq!(request["verdict"], "to_send");
    let url = request["request"]["url"].as_str().unwrap_or_default();
    assert!(url.contains("bot_token=***"), "{url}");
    assert!(!transcript(&out).contains("v1-secret-token-77"));
}

/// `plan --list CLASS`: the rows of that class, file:row and key, text or JSON.
#[test]
fn list_names_the_rows_of_a_class() {
    let list = |class: &str, format: &str| {
        let out = run(&[
            "-q",
            "plan",
            "campaigns/loyalty-points.yaml",
            "--list",
            class,
            "--format",
            format,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        list("filtered", "text"),
        "campaigns/audiences/members.csv:3  C1002\ncampaigns/audiences/members.csv:5  C1004\n"
    );
    assert_eq!(
        list("suppressed", "text"),
        "campaigns/audiences/members.csv:7  C1006\n"
    );
    let duplicates: serde_json::Value =
        serde_json::from_str(&list("duplicates", "json")).expect("json");
    assert_eq!(
        duplicates,
        serde_json::json!([{"file": "campaigns/audiences/members.csv", "row": 8, "key": "C1001"}])
    );
    assert_eq!(list("invalid", "json"), "[]\n");
}
