//! Review, then send exactly what was reviewed: `plan --out FILE`, `run --plan FILE`.

use crate::common::{customer_ids, customers_csv, transcript, SandboxProc, TempProject};

const TOKEN: &str = "saved-plan-token-9e1f";
const PROJECT: &str = "bots:\n  shop:\n    id: \"bot-1\"\n    token_env: SHOP_TOKEN\n";

fn campaign(text: &str) -> String {
    format!("version: 1\nname: reviewed\nbot: shop\naudience:\n  from:\n    - csv: customers.csv\n  exclude:\n    - csv: optout.csv\n  key: \"{{{{ customer_id }}}}\"\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{text}\"\ndelivery:\n  rate: 1000\n")
}

fn project() -> TempProject {
    let p = TempProject::new(PROJECT);
    p.write("customers.csv", &customers_csv(5));
    p.write("optout.csv", "customer_id\nC0005\n");
    p.write("c.yaml", &campaign("Chào {{ first_name }}"));
    p
}

fn env(sandbox: &SandboxProc) -> [(&'static str, String); 2] {
    [
        ("SHOP_TOKEN", TOKEN.to_owned()),
        ("SMAX_API_URL", sandbox.url.clone()),
    ]
}

fn smax(p: &TempProject, sandbox: &SandboxProc, args: &[&str]) -> std::process::Output {
    let env = env(sandbox);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.run(args, &env)
}

fn sandbox() -> SandboxProc {
    SandboxProc::start(&["--bot", &format!("bot-1={TOKEN}")])
}

fn saved(p: &TempProject) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.path().join("p.json")).expect("plan file"))
        .expect("JSON")
}

#[test]
fn a_saved_plan_is_sent_exactly_and_binds_every_file() {
    let sandbox = sandbox();
    let p = project();
    let out = smax(
        &p,
        &sandbox,
        &["plan", "c.yaml", "--out", "p.json", "--format", "markdown"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let plan = saved(&p);
    let digest = plan["requests_digest"].as_str().expect("digest").to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // The pull request's summary shows the digest the run will check.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("| requests digest | `{digest}` |"))
    );
    let roles: Vec<(&str, &str)> = plan["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["role"].as_str().unwrap_or(""),
                f["path"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("campaign", "c.yaml"),
            ("project", "smax.yaml"),
            ("audience", "customers.csv"),
            ("suppression", "optout.csv"),
        ]
    );
    assert_eq!(
        plan["to_send"],
        serde_json::Value::Null,
        "counts sit under `counts`"
    );
    assert_eq!(plan["counts"]["to_send"], 4);

    let out = smax(&p, &sandbox, &["run", "--plan", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let mut ids = customer_ids(&sandbox.accepted());
    ids.sort();
    assert_eq!(ids, ["C0001", "C0002", "C0003", "C0004"]);
}

#[test]
fn a_changed_file_refuses_the_plan_naming_it_and_how_the_counts_move() {
    let sandbox = sandbox();
    for (file, changed) in [
        ("customers.csv", customers_csv(6)),
        ("optout.csv", "customer_id\nC0004\nC0005\n".to_owned()),
        ("c.yaml", campaign("Xin chào {{ first_name }}")),
        ("smax.yaml", format!("{PROJECT}# reviewed\n")),
    ] {
        let p = project();
        let out = smax(&p, &sandbox, &["plan", "c.yaml", "--out", "p.json"]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        p.write(file, &changed);
        let out = smax(&p, &sandbox, &["run", "--plan", "p.json"]);
        let all = transcript(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {all}");
        assert!(all.contains("error[plan-outdated]"), "{all}");
        assert!(
            all.contains(&format!("`{file}` changed since the plan was made")),
            "{all}"
        );
        // Nothing was sent, and nothing was recorded: the run never began.
        let status = p.run(&["status"], &[]);
        assert!(
            String::from_utf8_lossy(&status.stdout).contains("no runs"),
            "{file}"
        );
        if file == "customers.csv" {
            insta::with_settings!({filters => vec![(r"sha256:[0-9a-f]{64}", "sha256:[HASH]")]}, {
                insta::assert_snapshot!(all);
            });
        }
    }
    assert!(sandbox.records().is_empty(), "nothing may be sent");
}

#[test]
fn a_plan_renders_with_its_own_now_and_resumes_as_itself() {
    let sandbox = sandbox();
    let p = project();
    p.write(
        "c.yaml",
        &campaign("Chào {{ first_name }}, as of {{ now }}"),
    );
    let out = smax(
        &p,
        &sandbox,
        &[
            "plan",
            "c.yaml",
            "--out",
            "p.json",
            "--at",
            "2026-01-02T03:04:05Z",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(saved(&p)["now"], "2026-01-02T03:04:05Z");

    // A canary first, then the rest: one plan, each recipient once.
    let out = smax(&p, &sandbox, &["run", "--plan", "p.json", "--limit", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let out = smax(&p, &sandbox, &["run", "c.yaml", "--plan", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let accepted = sandbox.accepted();
    assert_eq!(accepted.len(), 4, "{accepted:?}");
    for request in &accepted {
        let text = request["messages"][0]["text"].to_string();
        assert!(text.contains("as of 2026-01-02T03:04:05Z"), "{request}");
    }
}

#[test]
fn a_plan_whose_requests_no_longer_match_is_refused_before_sending() {
    let sandbox = sandbox();
    let p = project();
    let out = smax(&p, &sandbox, &["plan", "c.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    // The files are the same; what they render is not what the plan says.
    let mut plan = saved(&p);
    plan["requests_digest"] = format!("sha256:{}", "0".repeat(64)).into();
    p.write("p.json", &plan.to_string());
    let out = smax(&p, &sandbox, &["run", "--plan", "p.json"]);
    let all = transcript(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("the requests this run renders differ from the reviewed plan"),
        "{all}"
    );
    assert!(sandbox.records().is_empty(), "nothing may be sent");
}

#[test]
fn only_a_plan_of_that_campaign_is_sent() {
    let sandbox = sandbox();
    let p = project();
    p.write(
        "d.yaml",
        &campaign("hi").replace("name: reviewed", "name: other"),
    );
    let out = smax(&p, &sandbox, &["plan", "c.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    p.write("not-a-plan.json", "{\"runs\": []}");
    for args in [
        vec!["run", "d.yaml", "--plan", "p.json"],
        vec!["run", "--plan", "not-a-plan.json"],
        vec!["run", "--plan", "missing.json"],
        vec!["run", "--due", ".", "--plan", "p.json"],
    ] {
        let out = smax(&p, &sandbox, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", transcript(&out));
    }
    assert!(sandbox.records().is_empty());
}

/// The pull-request recipe keeps each plan it previews, and the scheduled recipe
/// can send one of them by hand, exactly.
#[test]
fn the_ci_recipes_keep_reviewed_plans_and_send_them() {
    let read = |name: &str| {
        let text = std::fs::read_to_string(crate::common::repo().join("examples/ci").join(name))
            .expect("recipe");
        yaml_rust2::YamlLoader::load_from_str(&text)
            .expect("YAML")
            .remove(0)
    };
    let pr = read("github-pull-request.yml");
    let steps = pr["jobs"]["validate-and-preview"]["steps"]
        .as_vec()
        .expect("steps");
    let plan = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("smax-campaign plan"))
        .expect("a plan step");
    assert!(plan.contains("--out \"plans/"), "{plan}");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("the plans are kept");
    assert_eq!(upload["with"]["path"].as_str(), Some("plans/"));
    let artifact = upload["with"]["name"].as_str().expect("a name").to_owned();

    let scheduled = read("github-scheduled.yml");
    let steps = scheduled["jobs"]["due"]["steps"].as_vec().expect("steps");
    let download = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/download-artifact"))
        })
        .expect("a reviewed plan is downloaded");
    assert_eq!(download["with"]["name"].as_str(), Some(artifact.as_str()));
    let send = steps
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("run --plan")))
        .expect("and sent");
    // A workflow input never becomes part of the script's text.
    assert!(!send["run"]
        .as_str()
        .unwrap_or_default()
        .contains("${{ inputs.plan }}"));
    assert_eq!(send["env"]["PLAN"].as_str(), Some("${{ inputs.plan }}"));
}

/// The plan names its files however the campaign was named; `--out` never
/// overwrites one of them; a password in the API URL does not make a plan
/// unusable; refusing a plan leaves a finished run as it was.
#[test]
fn plans_hold_up_to_ordinary_use() {
    let sandbox = sandbox();
    let p = project();
    let campaign = std::fs::read(p.path().join("c.yaml")).expect("read");
    let out = smax(&p, &sandbox, &["plan", "c.yaml", "--out", "c.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert!(transcript(&out).contains("is the plan's own campaign file"));
    assert_eq!(
        std::fs::read(p.path().join("c.yaml")).expect("read"),
        campaign
    );

    let out = smax(&p, &sandbox, &["plan", "./c.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let out = smax(&p, &sandbox, &["run", "--plan", "p.json", "c.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert_eq!(customer_ids(&sandbox.accepted()).len(), 4);

    // The run is done; a tampered copy of its plan is refused and changes nothing.
    let status = || {
        let doc = p.status_json();
        (
            doc["runs"][0]["status"].clone(),
            doc["runs"][0]["finished"].clone(),
        )
    };
    let before = status();
    let mut plan = saved(&p);
    plan["requests_digest"] = format!("sha256:{}", "1".repeat(64)).into();
    p.write("p.json", &plan.to_string());
    let out = smax(&p, &sandbox, &["run", "--plan", "p.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert_eq!(status(), before);

    // The API URL is kept as written to the plan (a password as `***`) and
    // compared that way: the plan is not refused for it.
    let url = sandbox.url.replace("http://", "http://user:pw-9c1e@");
    let out = smax(
        &p,
        &sandbox,
        &["plan", "c.yaml", "--out", "q.json", "--api-url", &url],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    assert!(
        !String::from_utf8_lossy(&std::fs::read(p.path().join("q.json")).expect("q"))
            .contains("pw-9c1e")
    );
    let out = smax(
        &p,
        &sandbox,
        &["run", "--plan", "q.json", "--api-url", &url],
    );
    assert!(
        !transcript(&out).contains("it was made for the API"),
        "{}",
        transcript(&out)
    );
}
