//! `validate` through the real binary: one snapshot per invalid fixture.

use crate::common::{self, run, transcript, TempProject};

#[test]
fn every_invalid_fixture_is_reported_with_its_place() {
    insta::glob!("../fixtures/invalid", "*.yaml", |path| {
        let rel = path
            .strip_prefix(common::repo())
            .expect("fixture under the repo");
        let out = run(&["validate", "-q", rel.to_str().expect("utf-8 path")]);
        insta::assert_snapshot!(transcript(&out));
    });
}

#[test]
fn github_format_prints_annotations() {
    let out = run(&[
        "validate",
        "--format",
        "github",
        "tests/fixtures/invalid/unknown-column.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn json_format_lists_diagnostics() {
    let out = run(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/invalid/unknown-key.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    insta::assert_json_snapshot!(list);
}

#[test]
fn a_folder_reports_every_file_in_one_go() {
    let out = run(&["validate", "tests/fixtures/invalid"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let files_with_errors = std::fs::read_dir(common::repo().join("tests/fixtures/invalid"))
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // `policy-` and `warn-` fixtures have warnings only.
        .filter(|name| {
            name.ends_with(".yaml") && !name.starts_with("policy-") && !name.starts_with("warn-")
        })
        .collect::<Vec<_>>();
    for name in &files_with_errors {
        assert!(
            stdout.contains(&format!("invalid tests/fixtures/invalid/{name}")),
            "{name} missing from:\n{stdout}"
        );
    }
}

#[test]
fn the_bundled_examples_are_valid() {
    let out = run(&["validate", "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let file = "tests/fixtures/invalid/policy-warnings.yaml";
    assert_eq!(run(&["validate", file]).status.code(), Some(0));
    assert_eq!(
        run(&["validate", "--deny-warnings", file]).status.code(),
        Some(2)
    );
}

#[test]
fn a_missing_path_is_an_error_not_a_panic() {
    let out = run(&["validate", "no/such/campaign.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not exist"));
}

fn shop_project() -> TempProject {
    TempProject::new("bots:\n  shop:\n    id: \"b2\"\n    token_env: T\n    api: v2\n")
}

/// A v2 campaign over `from`, with `text` as its message.
fn campaign(from: &str, text: &str) -> String {
    format!(
        "version: 1\nname: c\nbot: shop\naudience:\n  from:\n{from}recipient:\n  customer_id: \"{{{{ customer_id }}}}\"\nmessage:\n  tag: ACCOUNT_UPDATE\n  text: \"{text}\"\n"
    )
}

/// `validate ARGS c.yaml` after writing `yaml` to c.yaml in `p`.
fn validate_file(p: &TempProject, yaml: &str, args: &[&str]) -> std::process::Output {
    p.write("c.yaml", yaml);
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    all.push("c.yaml");
    p.run(&all, &[])
}

#[test]
fn template_names_are_checked_against_jsonl_keys() {
    let p = shop_project();
    // Keys differ per line: the check takes their union.
    p.write(
        "audiences/new.jsonl",
        "{\"customer_id\":\"1\",\"first_name\":\"An\"}\n\n{\"customer_id\":\"2\",\"points\":3}\nnot json\n",
    );
    let from = "    - jsonl: audiences/new.jsonl\n";
    let typo = campaign(from, "Chào {{ frist_name }}, {{ points }} điểm");
    insta::assert_snapshot!(transcript(&validate_file(&p, &typo, &["-q"])));
    let fixed = campaign(from, "Chào {{ first_name }}, {{ points }} điểm");
    let out = validate_file(&p, &fixed, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn template_names_are_checked_against_inline_users() {
    let p = shop_project();
    let yaml = campaign(
        "    - users:\n        - { customer_id: \"1\", first_name: An }\n        - { customer_id: \"2\", first_name: Bình, city: Huế }\n",
        "Chào {{ frist_name }} ở {{ city }}",
    );
    insta::assert_snapshot!(transcript(&validate_file(&p, &yaml, &["-q"])));
}

#[test]
fn builtin_names_are_not_missing_columns() {
    let p = shop_project();
    p.write("a.csv", "customer_id,first_name\nC1,An\n");
    p.write(
        "c.yaml",
        &campaign(
            "    - csv: a.csv\n",
            "{{ range(3)|length }} {% for i in range(2) %}{{ loop.index }}{% endfor %} {{ dict(a=1).a }} {{ campaign.name }} {{ now }} {{ first_name }}",
        ),
    );
    let out = p.run(&["validate", "--deny-warnings", "c.yaml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn a_rate_above_the_platform_limit_is_an_error_against_the_real_api_only() {
    let p = shop_project();
    p.write("a.csv", "customer_id,first_name\nC1,An\n");
    p.write(
        "c.yaml",
        &format!(
            "{}delivery:\n  rate: 30\n",
            campaign("    - csv: a.csv\n", "Chào {{ first_name }}")
        ),
    );
    // The default API is the real one.
    let out = p.run(&["validate", "-q", "c.yaml"], &[]);
    insta::assert_snapshot!(transcript(&out));
    // So is any smax.bot host, however it is named.
    let out = p.run(
        &["validate", "c.yaml"],
        &[("SMAX_API_URL", "https://eu.smax.bot/")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    // Another URL, such as the sandbox, may take more: a warning.
    let out = p.run(
        &[
            "validate",
            "-q",
            "c.yaml",
            "--api-url",
            "http://127.0.0.1:1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    insta::assert_snapshot!("rate_against_another_url", transcript(&out));
}

#[test]
fn a_rate_from_project_defaults_is_checked_with_each_campaign() {
    let p = TempProject::new(
        "bots:\n  shop:\n    id: \"b2\"\n    token_env: T\n    api: v2\ndefaults:\n  delivery:\n    rate: 40\n",
    );
    p.write("a.csv", "customer_id,first_name\nC1,An\n");
    p.write(
        "c.yaml",
        &campaign("    - csv: a.csv\n", "Chào {{ first_name }}"),
    );
    let out = p.run(&["validate", "c.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("smax.yaml:8:11"),
        "{}",
        transcript(&out)
    );
    let out = p.run(
        &["validate", "c.yaml"],
        &[("SMAX_API_URL", "http://127.0.0.1:1")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
}

#[test]
fn tolerances_over_100_percent_are_errors_at_their_value() {
    let p = shop_project();
    p.write("a.csv", "customer_id,first_name\nC1,An\n");
    p.write(
        "c.yaml",
        &format!(
            "{}delivery:\n  max_failures: \"150%\"\n  max_invalid: \"101%\"\n",
            campaign("    - csv: a.csv\n", "Chào {{ first_name }}")
        ),
    );
    let out = p.run(&["validate", "--format", "json", "c.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for code in ["invalid-max-failures", "invalid-max-invalid"] {
        assert!(text.contains(code), "{code} missing: {text}");
    }
}
