//! Trust boundaries (SPEC section 10): hostile campaign and project files,
//! driven through the real binary the way a pull request reaches CI.

use std::process::Output;

use crate::common::{self, files_under, TempProject};

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

/// A campaign with one inline recipient: for tests about everything but the audience.
fn one_user_campaign() -> String {
    campaign(
        "  from:\n    - users:\n        - { customer_id: \"1\" }",
        "hi",
    )
}

/// Runs the binary under a 2 GiB address-space limit and a 120 s time limit,
/// so an unbounded expansion or a hang ends in a failure instead of passing.
fn run_bounded(project: &TempProject, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_smax-campaign");
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(project.path())
        .env_remove("SMAX_API_URL")
        .env_remove("SMAX_STATE")
        .env("SMAX_LOOPBACK_ONLY", "1")
        .arg("-c")
        // `timeout` turns a hang into a failure instead of a stuck test run.
        .arg("ulimit -v 2097152 && exec timeout 120 \"$0\" --color never \"$@\"")
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
    assert!(all.contains("campaigns/bomb.yaml:5:"), "{all}");
    assert!(all.contains("alias"), "{all}");
}

#[test]
fn an_alias_bomb_project_file_is_refused_too() {
    let project = TempProject::new(&billion_laughs(""));
    project.write("campaigns/c.yaml", &one_user_campaign());
    let out = run_bounded(&project, &["validate", "campaigns/c.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("smax.yaml:4:"), "{all}");
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
    // A campaign the tool would really send (rate 25, a non-loopback URL):
    // only the loopback-only switch that every test process gets stands
    // between it and the network. The address is TEST-NET-1 (RFC 5737), so
    // even a regressed switch reaches nothing.
    let project = TempProject::new(PROJECT);
    project.write("c.yaml", &one_user_campaign());
    let out = project.run(
        &[
            "run",
            "c.yaml",
            "--state",
            "none",
            "--api-url",
            "http://192.0.2.1:9",
        ],
        &[("SMAX_TRUST_TOKEN", "trust-token-123456")],
    );
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("SMAX_LOOPBACK_ONLY is set"), "{all}");
    assert!(all.contains("`192.0.2.1`"), "{all}");
}

/// A secret in the environment that no bot names: confinement alone must
/// keep it from being printed.
const UNNAMED_SECRET: &str = "unnamed-secret-5b9e1d";

fn validate(project: &TempProject, file: &str) -> Output {
    project.run(
        &["validate", file],
        &[
            ("SMAX_TRUST_TOKEN", "named-token-77aa01"),
            ("OTHER_SECRET", UNNAMED_SECRET),
        ],
    )
}

/// Asserts a path-outside-project error at `place` that read nothing.
fn assert_refused(out: &Output, place: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("error[path-outside-project]"), "{all}");
    assert!(all.contains(place), "{all}");
    assert!(!all.contains(UNNAMED_SECRET), "{all}");
    assert!(!all.contains("root:"), "{all}");
}

#[test]
fn an_audience_outside_the_project_is_refused_at_its_path_before_it_is_read() {
    let project = TempProject::new(PROJECT);
    // `frist_name` is not a column: before confinement, the error quoted the
    // file's first line as "the columns are …".
    for (i, path) in [
        "/proc/self/environ",
        "/etc/passwd",
        "../../../../etc/passwd",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("c{i}.yaml");
        project.write(
            &name,
            &campaign(&format!("  from:\n    - csv: {path}"), "{{ frist_name }}"),
        );
        assert_refused(&validate(&project, &name), &format!("{name}:6:12"));
        let plan = project.run(&["plan", &name], &[("OTHER_SECRET", UNNAMED_SECRET)]);
        assert_refused(&plan, &format!("{name}:6:12"));
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_committed_into_the_project_cannot_point_out() {
    let project = TempProject::new(PROJECT);
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret.csv");
    std::fs::write(&secret, format!("customer_id,{UNNAMED_SECRET}\n1,x\n")).expect("write");
    std::fs::create_dir_all(project.path().join("data")).expect("mkdir");
    std::os::unix::fs::symlink(&secret, project.path().join("data/vip.csv")).expect("link");
    std::os::unix::fs::symlink("/proc/self/environ", project.path().join("data/env.csv"))
        .expect("link");
    project.write(
        "c.yaml",
        &campaign(
            "  from:\n    - csv: data/vip.csv\n  exclude:\n    - csv: data/env.csv",
            "{{ frist_name }}",
        ),
    );
    let out = validate(&project, "c.yaml");
    assert_refused(&out, "c.yaml:6:12");
    assert!(text(&out).contains("c.yaml:8:12"), "{}", text(&out));
    assert!(text(&out).contains("is a symlink to"), "{}", text(&out));
}

#[cfg(unix)]
#[test]
fn a_campaign_file_that_links_out_is_refused_before_it_is_read() {
    let project = TempProject::new(PROJECT);
    std::fs::create_dir_all(project.path().join("campaigns")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/proc/self/environ",
        project.path().join("campaigns/env.yaml"),
    )
    .expect("link");
    let out = validate(&project, "campaigns");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("error[path-outside-project]"), "{all}");
    assert!(!all.contains(UNNAMED_SECRET), "{all}");
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let project = TempProject::new(PROJECT);
    let made = std::process::Command::new("mkfifo")
        .arg(project.path().join("pipe.csv"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    project.write("c.yaml", &campaign("  from:\n    - csv: pipe.csv", "hi"));
    let out = run_bounded(&project, &["validate", "c.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("error[not-a-file]"), "{all}");
    assert!(all.contains("c.yaml:6:12"), "{all}");
}

#[test]
fn data_dirs_opt_a_folder_outside_the_project_in() {
    let root = tempfile::tempdir().expect("tempdir");
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("vip.csv"), "customer_id\n1\n").expect("write");
    let project_dir = root.path().join("project");
    std::fs::create_dir_all(&project_dir).expect("mkdir");
    let body = campaign("  from:\n    - csv: ../shared/vip.csv", "hi");
    std::fs::write(project_dir.join("c.yaml"), &body).expect("write");

    std::fs::write(project_dir.join("smax.yaml"), PROJECT).expect("write");
    let refused = common::run_in(&project_dir, &["validate", "c.yaml"]);
    assert_refused(&refused, "c.yaml:6:12");

    std::fs::write(
        project_dir.join("smax.yaml"),
        format!("data_dirs: [../shared]\n{PROJECT}"),
    )
    .expect("write");
    let allowed = common::run_in(&project_dir, &["validate", "c.yaml"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
}

#[test]
fn data_dirs_cannot_open_the_machine_to_campaign_files() {
    // A pull request can change smax.yaml too: `data_dirs: ["/"]` would undo
    // the confinement, so folders that hold more than data are refused.
    let outer = tempfile::tempdir().expect("tempdir");
    let project_dir = outer.path().join("project");
    std::fs::create_dir_all(outer.path().join("hidden/.aws")).expect("mkdir");
    std::fs::create_dir_all(&project_dir).expect("mkdir");
    std::fs::write(
        project_dir.join("c.yaml"),
        campaign(
            "  from:\n    - users:\n        - { customer_id: \"1\" }",
            "hi",
        ),
    )
    .expect("write");
    for (dir, why) in [
        ("/", "root of the file system"),
        ("..", "the project itself lies in it"),
        ("/etc", "system folder `/etc`"),
        ("../hidden/.aws", "hidden folder"),
    ] {
        std::fs::write(
            project_dir.join("smax.yaml"),
            format!("data_dirs: [\"{dir}\"]\n{PROJECT}"),
        )
        .expect("write");
        let out = common::run_in(&project_dir, &["validate", "c.yaml"]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{dir}: {all}");
        assert!(all.contains("error[data-dir-too-wide]"), "{dir}: {all}");
        assert!(all.contains("smax.yaml:1:13"), "{dir}: {all}");
        assert!(all.contains(why), "{dir}: {all}");
    }
}

#[test]
fn without_smax_yaml_a_path_out_of_the_campaigns_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "version: 1\nname: r\nbot: { id: \"b1\", token_env: SMAX_TRUST_TOKEN }\naudience:\n  from:\n    - csv: /etc/passwd\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{{ frist_name }}\"\n";
    std::fs::write(dir.path().join("r.yaml"), body).expect("write");
    let out = common::run_in(dir.path(), &["validate", "r.yaml"]);
    assert_refused(&out, "r.yaml:6:12");
}

#[test]
fn a_token_file_outside_the_project_is_refused() {
    let project = TempProject::new(
        "bots:\n  shop:\n    id: \"b1\"\n    token_file: /etc/passwd\n    api: v2\n",
    );
    project.write("c.yaml", &one_user_campaign());
    let out = validate(&project, "c.yaml");
    assert_refused(&out, "smax.yaml:4:17");
}

/// `token_file: ln/../tok` with `ln` a committed symlink out of the project: the
/// path is checked as `tok` inside the project, so that is what must be read,
/// never the `tok` beside the symlink's target.
#[cfg(unix)]
#[test]
fn a_named_bots_token_file_is_read_where_it_was_checked() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(outside.path().join("deep")).expect("mkdir");
    std::fs::write(outside.path().join("tok"), "outside-secret-31f0").expect("write");
    let project = TempProject::new(
        "bots:\n  shop:\n    id: \"b1\"\n    token_file: ln/../tok\n    api: v2\n",
    );
    std::os::unix::fs::symlink(outside.path().join("deep"), project.path().join("ln"))
        .expect("symlink");
    project.write("tok", "decoy-token-7a2c");
    project.write("c.yaml", &one_user_campaign());
    let sandbox = common::SandboxProc::start(&["--bot", "b1=decoy-token-7a2c"]);
    let out = project.run(&["run", "c.yaml", "--api-url", &sandbox.url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        sandbox.accepted().len(),
        1,
        "sent with the checked file's token"
    );
}

/// The token of the scrubbing test, and its percent-encoded form.
const LEAKY_TOKEN: &str = "tok-LEAK/9d8c+7b6a5f";
const LEAKY_TOKEN_ENCODED: &str = "tok-LEAK%2F9d8c%2B7b6a5f";

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for needle in [LEAKY_TOKEN, LEAKY_TOKEN_ENCODED, "tok-LEAK/9d8c"] {
        assert!(
            !text.contains(needle),
            "{what} holds the token ({needle}):\n{text}"
        );
    }
}

#[test]
fn a_token_is_scrubbed_from_every_byte_the_tool_writes() {
    let sandbox = common::SandboxProc::start(&["--bot", &format!("b1={LEAKY_TOKEN}")]);
    let project = TempProject::new(PROJECT);
    let out_dir = tempfile::tempdir().expect("tempdir");
    // The token as a column name, as a cell that is sent, as a cell that
    // breaks its declared type (quoted, cut to 20 characters) and as a key.
    project.write(
        "audience.csv",
        &format!(
            "customer_id,first_name,orders,{LEAKY_TOKEN}\n\
             C1,An {LEAKY_TOKEN},3,x\n\
             C2,Bình,{LEAKY_TOKEN},x\n\
             {LEAKY_TOKEN},Chi,1,x\n"
        ),
    );
    let good = "version: 1\nname: leak\nbot: shop\naudience:\n  from:\n    - csv:\n        path: audience.csv\n        types: { orders: integer }\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"Chào {{ first_name }}\"\ndelivery:\n  max_invalid: 1\n";
    project.write("good.yaml", good);
    project.write("bad.yaml", &good.replace("first_name", "frist_name"));

    let out_path = |name: &str| out_dir.path().join(name).to_string_lossy().into_owned();
    let summary = out_path("step-summary.md");
    let env = [
        ("SMAX_TRUST_TOKEN", LEAKY_TOKEN),
        ("GITHUB_STEP_SUMMARY", summary.as_str()),
        ("RUST_LOG", "smax_campaign=trace,debug"),
    ];
    let mut commands: Vec<Vec<String>> = Vec::new();
    for format in ["text", "json", "github"] {
        commands.push(vec![
            "validate".into(),
            "bad.yaml".into(),
            "--format".into(),
            format.into(),
        ]);
    }
    for format in ["text", "json", "markdown"] {
        commands.push(vec![
            "plan".into(),
            "good.yaml".into(),
            "--format".into(),
            format.into(),
            "--sample".into(),
            "10".into(),
            "--requests".into(),
            out_path(&format!("requests-{format}.jsonl")),
        ]);
    }
    commands.push(vec![
        "run".into(),
        "good.yaml".into(),
        "--api-url".into(),
        sandbox.url.clone(),
        "--report".into(),
        out_path("report.json"),
        "--requests".into(),
        out_path("run-requests.jsonl"),
        "-vv".into(),
    ]);
    commands.push(vec![
        "status".into(),
        "leak".into(),
        "--recipients".into(),
        "all".into(),
    ]);
    commands.push(vec!["status".into(), "--format".into(), "json".into()]);

    let mut saw_scrubbed = false;
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = project.run(&args, &env);
        assert!(out.status.code().is_some(), "{args:?} ended by a signal");
        assert_clean(&format!("stdout of {args:?}"), &out.stdout);
        assert_clean(&format!("stderr of {args:?}"), &out.stderr);
        saw_scrubbed |= text(&out).contains("***");
    }
    assert!(
        saw_scrubbed,
        "the token never reached an output: the test proves nothing"
    );
    // The run really sent, with the real token on the wire.
    assert_eq!(sandbox.accepted().len(), 2, "{:?}", sandbox.records());

    // The sandbox is the tool too: its record of what it received (a
    // message that quotes the token) goes through the same scrubber.
    let written: Vec<_> = files_under(project.path())
        .into_iter()
        .chain(files_under(out_dir.path()))
        .chain([sandbox.record.clone()])
        .collect();
    assert!(written.iter().any(|p| p.ends_with("report.json")));
    assert!(written.iter().any(|p| p.ends_with("step-summary.md")));
    assert!(written
        .iter()
        .any(|p| p.to_string_lossy().contains("state.db")));
    for path in written {
        if path.ends_with("audience.csv") {
            continue; // the input itself
        }
        let bytes = std::fs::read(&path).expect("read");
        assert_clean(&path.display().to_string(), &bytes);
    }
}

#[test]
fn a_token_file_is_scrubbed_like_a_token_env() {
    const FILE_TOKEN: &str = "filetok-LEAK-5e4d3c";
    let project = TempProject::new(
        "bots:\n  shop:\n    id: \"b1\"\n    token_file: secrets/shop.token\n    api: v2\n",
    );
    project.write("secrets/shop.token", &format!("{FILE_TOKEN}\n"));
    // The token as a column name: the typo's did-you-mean lists the columns.
    project.write("a.csv", &format!("customer_id,{FILE_TOKEN}\n1,x\n"));
    project.write(
        "c.yaml",
        &campaign("  from:\n    - csv: a.csv", "{{ frist_name }}"),
    );
    for format in ["text", "json", "github"] {
        let out = project.run(&["validate", "c.yaml", "--format", format], &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(
            all.contains("***"),
            "the token never reached an output: {all}"
        );
        assert!(!all.contains(FILE_TOKEN), "{format}: {all}");
    }
}

#[test]
fn a_later_files_token_never_leaks_through_an_earlier_files_output() {
    // b.yaml's inline bot names the token; a.yaml's error quotes it. The
    // error must not be printed before b.yaml has been read.
    const LATER_TOKEN: &str = "laterTokLEAK4f3e2d";
    let project = TempProject::new(PROJECT);
    project.write("a.csv", "customer_id,first_name\n1,x\n");
    project.write(
        "a.yaml",
        &campaign(
            "  from:\n    - csv: a.csv",
            &format!("{{{{ {LATER_TOKEN} }}}}"),
        ),
    );
    project.write(
        "b.yaml",
        &one_user_campaign()
            .replace("name: trust", "name: later")
            .replace(
                "bot: shop",
                "bot: { id: \"b2\", token_env: SMAX_LATER_TOKEN }",
            ),
    );
    for command in ["run", "due"] {
        let args: &[&str] = if command == "run" {
            &["run", "a.yaml", "b.yaml", "--api-url", "http://127.0.0.1:9"]
        } else {
            &["due", "."]
        };
        let out = project.run(args, &[("SMAX_LATER_TOKEN", LATER_TOKEN)]);
        let all = text(&out);
        assert!(
            all.contains("***"),
            "{command}: the token never reached an output: {all}"
        );
        assert!(!all.contains(LATER_TOKEN), "{command}: {all}");
    }
}

const NESTED_LOOPS: &str = "{% for a in s %}{% for b in s %}{% for c in s %}{% for d in s %}{% for e in s %}{% for f in s %}{% for g in s %}{% for h in s %}x{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
const STRING_REPEAT: &str = "{% for i in range(40) %}{{ 'x' * 100000000 }}{% endfor %}";

#[test]
fn templates_that_would_run_for_hours_or_fill_memory_end_as_invalid_recipients() {
    for (name, template) in [("loops", NESTED_LOOPS), ("repeat", STRING_REPEAT)] {
        let project = TempProject::new(PROJECT);
        project.write(
            "c.yaml",
            &format!(
                "version: 1\nname: {name}\nbot: shop\naudience:\n  from:\n    - users:\n        - {{ customer_id: \"1\", s: \"0123456789\" }}\n        - {{ customer_id: \"2\", s: \"0123456789\" }}\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{template}\"\n"
            ),
        );
        let validate = run_bounded(&project, &["validate", "c.yaml"]);
        let all = text(&validate);
        assert_eq!(validate.status.code(), Some(0), "{all}");
        assert!(all.contains("warning[template-budget]"), "{all}");
        assert!(all.contains("already fails on c.yaml:7"), "{all}");

        let plan = run_bounded(&project, &["plan", "c.yaml", "--format", "json"]);
        let all = text(&plan);
        assert!(
            plan.status.code().is_some(),
            "{name}: killed by a signal: {all}"
        );
        let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect(&all);
        assert_eq!(doc["invalid"], 2, "{all}");
        assert_eq!(doc["to_send"], 0, "{all}");
        let reason = if name == "loops" {
            "template ran out of its work budget"
        } else {
            "template output passed its cap"
        };
        assert!(all.contains(reason), "{all}");
    }
}

#[test]
fn without_smax_yaml_a_campaign_in_the_current_folder_reads_its_own_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.csv"), "customer_id\n1\n").expect("write");
    let body = "version: 1\nname: r\nbot: { id: \"b1\", token_env: SMAX_TRUST_TOKEN }\naudience:\n  from:\n    - csv: r.csv\nrecipient:\n  customer_id: \"{{ customer_id }}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: hi\n";
    std::fs::write(dir.path().join("r.yaml"), body).expect("write");
    let out = common::run_in(dir.path(), &["validate", "r.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_data_dir_that_does_not_exist_is_an_error_at_its_place() {
    let project = TempProject::new(&format!("data_dirs: [../nowhere]\n{PROJECT}"));
    project.write("c.yaml", &one_user_campaign());
    let out = validate(&project, "c.yaml");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("error[missing-folder]"), "{all}");
    assert!(all.contains("smax.yaml:1:13"), "{all}");
}

#[test]
fn a_campaign_file_past_8_mib_is_refused_unread() {
    let project = TempProject::new(PROJECT);
    let mut body = one_user_campaign();
    body.push_str(&format!("# {}\n", "x".repeat(9 << 20)));
    project.write("c.yaml", &body);
    let out = run_bounded(&project, &["validate", "c.yaml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("error[file-too-large]"), "{all}");
}

/// Thousands of schema errors under one key, plus one that needs its parent
/// taken out: salvaging the rest for the meaning checks must stay linear (it
/// took minutes), so the file is reported within the bounded run.
#[test]
fn many_schema_errors_under_one_key_are_reported_within_bounds() {
    let project = TempProject::new(PROJECT);
    let mut unknown = String::new();
    for i in 0..5000 {
        unknown.push_str(&format!("  unknown_{i}: x\n"));
    }
    let file = format!(
        "version: 1\nname: trust\nbot: shop\naudience:\n  from:\n    - csv: 5\nrecipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: hi\n{unknown}"
    );
    project.write("campaigns/c.yaml", &file);
    let out = run_bounded(&project, &["validate", "-q", "campaigns/c.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown_4999"), "every key is reported");
}
