//! `init`: a new project that works as it is, and never a file overwritten.

use crate::common::{files_under, repo, run_in, transcript};

fn snapshot_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).expect("inside").display().to_string();
            (rel, std::fs::read(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn init_makes_a_project_that_validates_and_plans_unedited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["init", "shop"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    let project = dir.path().join("shop");

    let validate = run_in(&project, &["validate", "--deny-warnings"]);
    assert_eq!(validate.status.code(), Some(0), "{}", transcript(&validate));
    assert!(String::from_utf8_lossy(&validate.stdout).contains("ok      campaigns/welcome.yaml"));

    let plan = run_in(
        &project,
        &["plan", "campaigns/welcome.yaml", "--format", "json"],
    );
    assert_eq!(plan.status.code(), Some(0), "{}", transcript(&plan));
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    assert_eq!(
        (
            doc["read"].as_u64(),
            doc["filtered"].as_u64(),
            doc["suppressed"].as_u64(),
            doc["to_send"].as_u64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "the welcome campaign shows each step: {doc}"
    );

    let ignore = std::fs::read_to_string(project.join(".gitignore")).expect(".gitignore");
    assert!(ignore.lines().any(|l| l == ".smax/"), "{ignore}");
    // The workflows are the recipes this repository documents and tests.
    for (written, recipe) in [
        (
            ".github/workflows/campaigns-pr.yml",
            "github-pull-request.yml",
        ),
        (
            ".github/workflows/campaigns-scheduled.yml",
            "github-scheduled.yml",
        ),
    ] {
        assert_eq!(
            std::fs::read(project.join(written)).expect(written),
            std::fs::read(repo().join("examples/ci").join(recipe)).expect(recipe),
        );
    }
    // Nothing was created that a plan should not create.
    assert!(!project.join(".smax").exists());
}

#[test]
fn init_never_overwrites_and_writes_nothing_when_it_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".gitignore"), "target/").expect("write");
    let out = run_in(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    // An existing .gitignore is kept and extended once.
    let ignore = std::fs::read_to_string(dir.path().join(".gitignore")).expect("read");
    assert!(ignore.starts_with("target/\n"), "{ignore}");
    std::fs::write(dir.path().join("campaigns/welcome.yaml"), "mine").expect("write");
    let before = snapshot_of(dir.path());

    let again = run_in(dir.path(), &["init"]);
    let all = transcript(&again);
    assert_eq!(again.status.code(), Some(2), "{all}");
    assert!(all.contains("error[init-would-overwrite]"), "{all}");
    assert!(all.contains("campaigns/welcome.yaml"), "{all}");
    assert_eq!(snapshot_of(dir.path()), before, "nothing was written");

    // One file in the way is enough to write nothing at all.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(other.path().join("smax.yaml"), "bots: {}\n").expect("write");
    let before = snapshot_of(other.path());
    let out = run_in(other.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert_eq!(snapshot_of(other.path()), before);
}
