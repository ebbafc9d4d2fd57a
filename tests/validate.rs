//! `validate` through the real binary: one snapshot per invalid fixture.

mod common;

use common::{run, transcript};

#[test]
fn every_invalid_fixture_is_reported_with_its_place() {
    insta::glob!("fixtures/invalid/*.yaml", |path| {
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
        .filter(|name| name.ends_with(".yaml") && !name.starts_with("policy-"))
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
