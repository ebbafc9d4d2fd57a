//! The command line itself: completions, man pages, and which options each
//! command offers.

use crate::common::{run, transcript};

fn help(command: &[&str]) -> String {
    let mut args = command.to_vec();
    args.push("--help");
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command offers the options that mean something to it, and no others.
#[test]
fn each_command_offers_only_the_options_that_apply_to_it() {
    let offers = |text: &str, option: &str| text.contains(&format!("--{option} <"));
    for (command, expected) in [
        (vec!["validate"], ["config", "api-url"].as_slice()),
        (vec!["plan"], &["config", "api-url", "state"]),
        (vec!["run"], &["config", "api-url", "state"]),
        (vec!["status"], &["config", "state"]),
        (vec!["due"], &["config", "state"]),
        (vec!["state", "init"], &["config", "state"]),
        (vec!["sandbox"], &[]),
        (vec!["schema"], &[]),
        (vec!["completions"], &[]),
    ] {
        let text = help(&command);
        for option in ["config", "api-url", "state"] {
            assert_eq!(
                offers(&text, option),
                expected.contains(&option),
                "{command:?} and --{option}:\n{text}"
            );
        }
        // How to print applies everywhere.
        assert!(
            text.contains("--quiet") && text.contains("--color <WHEN>"),
            "{text}"
        );
    }
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", transcript(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in [
            "validate",
            "plan",
            "run",
            "status",
            "due",
            "sandbox",
            "--resend-unknown",
        ] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    // The bash script is valid bash.
    let out = run(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smax-campaign.bash");
    std::fs::write(&path, &out.stdout).expect("write");
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let none = run(&["completions"]);
    assert_eq!(none.status.code(), Some(2), "{}", transcript(&none));
}

#[test]
fn man_pages_for_the_tool_and_each_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["completions", "--man", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
    for page in [
        "smax-campaign.1",
        "smax-campaign-run.1",
        "smax-campaign-plan.1",
        "smax-campaign-state-init.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.contains(".TH"), "{page} is a man page:\n{text}");
    }
    let run_page = std::fs::read_to_string(dir.path().join("smax-campaign-run.1")).expect("run");
    assert!(run_page.contains("resend\\-unknown"), "{run_page}");
}
