//! The CI files this repository ships (its own workflows, the recipes people
//! copy, the install action) are checked against the published schemas, pin
//! the tool's version, and install it the way README promises.

use std::path::{Path, PathBuf};

use crate::common::repo;

fn schema(name: &str) -> jsonschema::Validator {
    let path = repo().join("tests/fixtures/schemastore").join(name);
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("schema")).expect("JSON");
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::fancy_regex())
        .build(&schema)
        .expect("the schema compiles")
}

fn yaml(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read");
    smax_campaign::campaign::yaml::parse(&text)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
        .value
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn assert_valid(validator: &jsonschema::Validator, path: &Path) {
    let doc = yaml(path);
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("  at {}: {e}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{} does not follow its schema:\n{}",
        path.display(),
        errors.join("\n")
    );
}

#[test]
fn every_workflow_action_and_pipeline_follows_its_schema() {
    let workflows = schema("github-workflows.json");
    let mut checked = 0;
    for path in files(".github/workflows", ".yml").into_iter().chain(
        files("examples/ci", ".yml").into_iter().filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("github-"))
        }),
    ) {
        assert_valid(&workflows, &path);
        checked += 1;
    }
    assert!(
        checked >= 4,
        "the release workflow and three recipes, at least"
    );
    assert_valid(&schema("github-actions.json"), &repo().join("action.yml"));
    assert_valid(
        &schema("gitlab-ci.json"),
        &repo().join("examples/ci/gitlab-ci.yml"),
    );
}

/// The schema check can fail: a misspelt key is caught.
#[test]
fn a_broken_workflow_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.yml");
    let text = std::fs::read_to_string(repo().join("examples/ci/github-scheduled.yml"))
        .expect("recipe")
        .replace("runs-on:", "run-on:");
    std::fs::write(&path, text).expect("write");
    let doc = yaml(&path);
    assert!(!schema("github-workflows.json").is_valid(&doc));
}

fn crate_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a version")
        .to_owned()
}

/// Every recipe installs the released binary of this version (the action's tag,
/// GitLab's variable), never a build from a moving branch.
#[test]
fn the_recipes_install_the_pinned_release() {
    let version = crate_version();
    let action = format!("smax-bot/smax-campaign@v{version}");
    for path in files("examples/ci", ".yml") {
        let text = std::fs::read_to_string(&path).expect("recipe");
        let builds = text
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("cargo install"));
        assert!(
            !builds,
            "{}: build from source only as the installer's fallback",
            path.display()
        );
        if path.to_string_lossy().contains("gitlab") {
            let doc = yaml(&path);
            assert_eq!(
                doc[".install"]["variables"]["SMAX_CAMPAIGN_VERSION"].as_str(),
                Some(version.as_str())
            );
        } else {
            assert!(
                text.contains(&format!("uses: {action}")),
                "{}",
                path.display()
            );
        }
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    assert!(
        !readme.contains("cargo install --locked --git"),
        "README's recipes too"
    );
    assert!(readme.contains(&format!("uses: {action}")));
}

/// `rust-version` is the real minimum: no locked dependency needs a newer Rust,
/// and README says the same.
#[test]
fn rust_version_is_what_the_lock_file_needs() {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let declared = toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("rust-version")
        .to_owned();
    // The packages this machine builds (the others may not be downloaded here).
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("a host triple");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(repo())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // `1.89` is `1.89.0`.
    let parse = |v: &str| -> Vec<u32> {
        let mut parts: Vec<u32> = v.split('.').map(|p| p.parse().unwrap_or(0)).collect();
        parts.resize(3, 0);
        parts
    };
    let (needed, by) = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| {
            Some((
                parse(p["rust_version"].as_str()?),
                p["name"].as_str()?.to_owned(),
            ))
        })
        .max()
        .expect("some dependency declares a rust-version");
    assert!(
        parse(&declared) >= needed,
        "{by} needs Rust {needed:?}, Cargo.toml says {declared}"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    assert!(
        readme.contains(&format!("Rust {declared} or newer")),
        "README states {declared}"
    );
}

/// A release on 127.0.0.1: files by path, anything else 404. Serves until dropped.
struct FakeRelease {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
}

impl FakeRelease {
    fn serve(files: Vec<(String, Vec<u8>)>) -> FakeRelease {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let mut reader = std::io::BufReader::new(&stream);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let mut stream = &stream;
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(body);
                    }
                    None => {
                        let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            }
        });
        FakeRelease {
            url: format!("http://{addr}/v9.9.9"),
            stop,
            addr,
        }
    }
}

impl Drop for FakeRelease {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

const TARGET: &str = "x86_64-unknown-linux-musl";
const ARCHIVE: &str = "smax-campaign-v9.9.9-x86_64-unknown-linux-musl.tar.gz";

/// A release archive holding a stand-in binary, and its SHA-256.
fn release_archive(dir: &Path) -> (Vec<u8>, String) {
    let inner = dir.join(format!("smax-campaign-v9.9.9-{TARGET}"));
    std::fs::create_dir_all(&inner).expect("mkdir");
    std::fs::write(
        inner.join("smax-campaign"),
        "#!/bin/sh\necho released 9.9.9\n",
    )
    .expect("write");
    let archive = dir.join(ARCHIVE);
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .arg(format!("smax-campaign-v9.9.9-{TARGET}"))
        .status()
        .expect("tar");
    assert!(tar.success());
    let bytes = std::fs::read(&archive).expect("archive");
    let sum = std::process::Command::new("sha256sum")
        .arg(&archive)
        .output()
        .expect("sha256sum");
    let hash = String::from_utf8_lossy(&sum.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_owned();
    (bytes, hash)
}

struct Installed {
    code: Option<i32>,
    stderr: String,
    binary: Option<String>,
    fallback: Option<String>,
}

/// Runs scripts/install.sh against `release` with a stand-in `cargo` that
/// records how it was called and "builds" a binary.
fn install(release: &FakeRelease, extra: &[(&str, &str)]) -> Installed {
    let home = tempfile::tempdir().expect("tempdir");
    let bin_dir = home.path().join("bin");
    let calls = home.path().join("cargo-calls");
    let cargo = home.path().join("fake-cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\necho \"$@\" > {calls}\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\" && printf '#!/bin/sh\\necho built\\n' > \"$2/bin/smax-campaign\"\n",
            calls = calls.display()
        ),
    )
    .expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo().join("scripts/install.sh"))
        .env("HOME", home.path())
        .env("SMAX_CAMPAIGN_VERSION", "9.9.9")
        .env("SMAX_CAMPAIGN_TARGET", TARGET)
        .env("SMAX_CAMPAIGN_RELEASE_URL", &release.url)
        .env("SMAX_CAMPAIGN_BIN_DIR", &bin_dir)
        .env("SMAX_CAMPAIGN_CARGO", &cargo)
        .env_remove("SMAX_CAMPAIGN_SHA256")
        .env_remove("SMAX_CAMPAIGN_SOURCE");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash");
    let installed = bin_dir.join("smax-campaign");
    Installed {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        binary: installed.exists().then(|| {
            let ran = std::process::Command::new("sh")
                .arg(&installed)
                .output()
                .expect("run");
            String::from_utf8_lossy(&ran.stdout).trim().to_owned()
        }),
        fallback: std::fs::read_to_string(&calls).ok(),
    }
}

#[cfg(unix)]
#[test]
fn the_installer_takes_the_released_binary_only_when_its_checksum_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, hash) = release_archive(dir.path());
    let sums = |hash: &str| format!("{hash}  {ARCHIVE}\n").into_bytes();
    let with = |sums: Vec<u8>| {
        FakeRelease::serve(vec![
            (format!("/v9.9.9/{ARCHIVE}"), archive.clone()),
            ("/v9.9.9/SHA256SUMS".into(), sums),
        ])
    };

    let good = with(sums(&hash));
    let ok = install(&good, &[]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert_eq!(ok.binary.as_deref(), Some("released 9.9.9"));
    assert!(ok.fallback.is_none(), "nothing built");
    // A hash pinned by the user is checked too.
    let pinned = install(&good, &[("SMAX_CAMPAIGN_SHA256", &hash.to_uppercase())]);
    assert_eq!(pinned.code, Some(0), "{}", pinned.stderr);
    let wrong_pin = install(&good, &[("SMAX_CAMPAIGN_SHA256", &"0".repeat(64))]);
    assert_eq!(wrong_pin.code, Some(1), "{}", wrong_pin.stderr);
    assert!(wrong_pin.binary.is_none() && wrong_pin.fallback.is_none());

    // A tampered archive (or list) is refused, never "fixed" by building instead.
    let tampered = with(sums(&"f".repeat(64)));
    let refused = install(&tampered, &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("checksum mismatch"),
        "{}",
        refused.stderr
    );
    assert!(refused.binary.is_none() && refused.fallback.is_none());
    let unlisted = with(b"abc  other.tar.gz\n".to_vec());
    let refused = install(&unlisted, &[]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.binary.is_none() && refused.fallback.is_none());
}

#[cfg(unix)]
#[test]
fn the_installer_builds_the_pinned_version_where_no_binary_is_released() {
    let empty = FakeRelease::serve(Vec::new());
    let built = install(&empty, &[]);
    assert_eq!(built.code, Some(0), "{}", built.stderr);
    assert_eq!(built.binary.as_deref(), Some("built"));
    let call = built.fallback.expect("cargo install ran");
    assert!(call.starts_with("install --locked"), "{call}");
    assert!(call.contains("--tag v9.9.9"), "{call}");
    // A pinned hash names an archive: without one, nothing is built in its place.
    let pinned = install(&empty, &[("SMAX_CAMPAIGN_SHA256", &"a".repeat(64))]);
    assert_eq!(pinned.code, Some(1), "{}", pinned.stderr);
    assert!(pinned.binary.is_none() && pinned.fallback.is_none());
}

/// The pre-commit hook runs for every kind of file a campaign depends on, and
/// validates every campaign (a renamed CSV column breaks the ones that use it).
#[test]
fn the_pre_commit_hook_runs_when_anything_a_campaign_reads_changes() {
    let hooks = yaml(&repo().join(".pre-commit-hooks.yaml"));
    let hook = &hooks[0];
    assert_eq!(hook["id"], "smax-campaign-validate");
    assert_eq!(hook["pass_filenames"], false);
    assert_eq!(hook["entry"], "smax-campaign validate campaigns/");
    assert!(
        hook.get("types").is_none(),
        "`types: [yaml]` would skip CSV files"
    );
    let files = regex::Regex::new(hook["files"].as_str().expect("files")).expect("a regex");
    for path in [
        "smax.yaml",
        "campaigns/loyalty-points.yaml",
        "campaigns/audiences/members.csv",
        "campaigns/audiences/appointments.jsonl",
    ] {
        assert!(files.is_match(path), "{path}");
    }
    for path in ["src/main.rs", "README.md", "other/smax.yaml"] {
        assert!(!files.is_match(path), "{path}");
    }
}
