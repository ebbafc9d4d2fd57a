//! Trust boundaries (SPEC section 10): hostile campaign and project files,
//! driven through the real binary the way a pull request reaches CI.

mod common;

use std::process::Output;

use common::TempProject;

const PROJECT: &str =
    "bots:\n  shop:\n    id: \"b1\"\n    token_env: SMAX_TRUST_TOKEN\n    api: v2\n";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A campaign with the given audience and text, for the project above.
fn campaign(audience: &str, message_text: &str) -> String {
    format!(
        "version: 1\nname: trust\nbot: shop\naudience:\n{audience}\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{message_text}\"\n"
    )
}

/// Runs the binary under a 2 GiB address-space limit, so an unbounded
/// expansion ends in an allocation failure instead of passing.
fn run_bounded(project: &TempProject, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_smax-campaign");
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(project.path())
        .env_remove("SMAX_API_URL")
        .env_remove("SMAX_STATE")
        .env("SMAX_LOOPBACK_ONLY", "1")
        .arg("-c")
        .arg("ulimit -v 2097152 && exec \"$0\" --color never \"$@\"")
        .arg(bin)
        .args(args);
    cmd.output().expect("bash runs")
}

fn billion_laughs(prefix: &str) -> String {
    let mut text = format!("{prefix}x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        text.push_str(&format!("x-{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text
}

#[test]
fn an_alias_bomb_campaign_is_refused_at_its_first_offending_alias() {
    let project = TempProject::new(PROJECT);
    project.write("campaigns/bomb.yaml", &billion_laughs("version: 1\n"));
    let out = run_bounded(&project, &["validate", "campaigns/bomb.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("campaigns/bomb.yaml:6:"), "{all}");
    assert!(all.contains("alias"), "{all}");
}

#[test]
fn an_alias_bomb_project_file_is_refused_too() {
    let project = TempProject::new(&billion_laughs(""));
    project.write(
        "campaigns/c.yaml",
        &campaign(
            "  from:\n    - users:\n        - { customer_id: \"1\" }",
            "hi",
        ),
    );
    let out = run_bounded(&project, &["validate", "campaigns/c.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("smax.yaml:5:"), "{all}");
    assert!(all.contains("alias"), "{all}");
}

#[test]
fn help_names_the_environment_variables_but_never_their_values() {
    let mut cmd = common::bin();
    let out = cmd
        .args(["run", "--help"])
        .env("SMAX_API_URL", "http://user:hunter2secret@127.0.0.1:9")
        .env("SMAX_STATE", "postgres://u:hunter3secret@127.0.0.1/db")
        .output()
        .expect("runs");
    let all = text(&out);
    assert!(all.contains("SMAX_API_URL"), "{all}");
    assert!(all.contains("SMAX_STATE"), "{all}");
    assert!(!all.contains("hunter2secret"), "{all}");
    assert!(!all.contains("hunter3secret"), "{all}");
}

#[test]
fn tests_cannot_reach_the_real_api_even_when_a_refusal_regresses() {
    // A campaign the tool would really send (rate 25, the real API's URL):
    // only the loopback-only switch that every test process gets stands
    // between it and the internet.
    let project = TempProject::new(PROJECT);
    project.write(
        "c.yaml",
        &campaign(
            "  from:\n    - users:\n        - { customer_id: \"1\" }",
            "hi",
        ),
    );
    let out = project.run(
        &[
            "run",
            "c.yaml",
            "--state",
            "none",
            "--api-url",
            "https://api.smax.bot",
        ],
        &[("SMAX_TRUST_TOKEN", "trust-token-123456")],
    );
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("SMAX_LOOPBACK_ONLY is set"), "{all}");
    assert!(all.contains("`api.smax.bot`"), "{all}");
}
