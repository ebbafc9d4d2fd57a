//! README.md is true as written: the blocks marked `<!-- readme-test: … -->` are
//! the bundled files they say they are, and the runnable ones are run as pasted,
//! in order, against a copy of the repository's campaigns.

use std::path::{Path, PathBuf};

use crate::common::repo;

enum Marked {
    /// A shell block, run with bash as pasted.
    Run(String),
    /// `$ command` lines, each followed by exactly what it prints.
    Console(String),
    /// A file shown verbatim.
    File(String, String),
}

fn marked_blocks() -> Vec<Marked> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let mut lines = readme.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        let Some(mark) = line
            .strip_prefix("<!-- readme-test: ")
            .and_then(|m| m.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "a marked block starts right after its mark: {line}"
        );
        let body: String = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .map(|l| format!("{l}\n"))
            .collect();
        found.push(match mark.split_once(' ') {
            Some(("file", path)) => Marked::File(path.to_owned(), body),
            _ if mark == "run" => Marked::Run(body),
            _ if mark == "console" => Marked::Console(body),
            _ => panic!("unknown mark {mark}"),
        });
    }
    found
}

#[test]
fn readme_shows_the_bundled_files_as_they_are() {
    let mut shown = 0;
    for block in marked_blocks() {
        if let Marked::File(path, body) = block {
            let file = std::fs::read_to_string(repo().join(&path)).expect(&path);
            assert_eq!(body, file, "README's {path} differs from the file");
            shown += 1;
        }
    }
    assert!(shown >= 2);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A fresh copy of what a user has after cloning: campaigns, smax.yaml, schemas.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for folder in ["campaigns", "schemas"] {
        copy_dir(&repo().join(folder), &dir.path().join(folder));
    }
    std::fs::copy(repo().join("smax.yaml"), dir.path().join("smax.yaml")).expect("copy");
    std::fs::create_dir_all(dir.path().join("home")).expect("mkdir");
    dir
}

fn shell(dir: &Path, script: &str) -> std::process::Output {
    let bin: PathBuf = Path::new(env!("CARGO_BIN_EXE_smax-campaign"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("300")
        .arg("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        // Whatever the block leaves running (a sandbox, if it failed half way) ends with it.
        .arg(format!(
            "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
        ))
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir.join("home"))
        .env("NO_COLOR", "1")
        // The blocks talk to their own sandbox; nothing may reach the real API.
        .env("SMAX_LOOPBACK_ONLY", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("SMAX_") && key != "SMAX_LOOPBACK_ONLY" {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("bash")
}

#[test]
fn readme_blocks_run_as_pasted_in_order() {
    let dir = checkout();
    // One shell, as a person pasting block after block in one terminal has: a
    // `cd` or an `export` left behind by one block reaches the next.
    let mut session = String::new();
    let mut consoles = Vec::new();
    for block in marked_blocks() {
        match block {
            Marked::Run(script) => {
                session.push_str(&script);
                session.push_str("echo '--- block done'\n");
            }
            Marked::Console(text) => consoles.push(text),
            Marked::File(..) => {}
        }
    }
    let out = shell(dir.path(), &session);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "README's blocks failed ({:?}) after {} of them ran:\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status.code(),
        stdout.matches("--- block done").count(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.matches("--- block done").count() >= 3,
        "the marked blocks ran"
    );
    for text in consoles {
        let mut expected = String::new();
        let mut command: Option<String> = None;
        let check = |command: &Option<String>, expected: &str| {
            if let Some(command) = command {
                let out = shell(dir.path(), command);
                assert!(
                    out.status.success(),
                    "{command}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    expected,
                    "README shows what `{command}` prints"
                );
            }
        };
        for line in text.lines() {
            if let Some(next) = line.strip_prefix("$ ") {
                check(&command, &expected);
                command = Some(next.to_owned());
                expected.clear();
            } else {
                expected.push_str(line);
                expected.push('\n');
            }
        }
        check(&command, &expected);
    }
    // The rehearsals left nothing outside the git-ignored .smax/ folder.
    assert!(!dir.path().join("sandbox.jsonl").exists());
    assert!(!dir.path().join("locks").exists());
}
