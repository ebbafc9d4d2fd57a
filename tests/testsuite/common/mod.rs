//! Helpers shared by the integration tests: run the real binary.

#[cfg(unix)]
pub mod pty;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smax-campaign"));
    cmd.current_dir(repo())
        .env_remove("SMAX_API_URL")
        .env_remove("SMAX_STATE")
        // The client refuses every non-loopback host: no test can reach the
        // real API, whatever regresses.
        .env("SMAX_LOOPBACK_ONLY", "1")
        .env("NO_COLOR", "1")
        .arg("--color")
        .arg("never");
    cmd
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.current_dir(dir).args(args);
    cmd.output().expect("the binary runs")
}

pub fn run(args: &[&str]) -> Output {
    run_in(&repo(), args)
}

/// Exit code, stdout and stderr in one text, for snapshots.
pub fn transcript(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "signal".into()),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A `smax-campaign sandbox` child process on 127.0.0.1 with a free port.
pub struct SandboxProc {
    child: std::process::Child,
    pub url: String,
    pub record: PathBuf,
    _dir: tempfile::TempDir,
}

impl SandboxProc {
    /// `args` are extra sandbox flags, e.g. `["--bot", "b1=tok", "--rate", "5"]`.
    pub fn start(args: &[&str]) -> SandboxProc {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let record = dir.path().join("record.jsonl");
        let mut child = Command::new(env!("CARGO_BIN_EXE_smax-campaign"))
            .args(["sandbox", "--listen", "127.0.0.1:0", "--record"])
            .arg(&record)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("sandbox starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the sandbox prints its address");
        let url = line
            .rsplit(' ')
            .next()
            .expect("an address")
            .trim()
            .to_owned();
        SandboxProc {
            child,
            url,
            record,
            _dir: dir,
        }
    }

    /// Every request the sandbox has recorded so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("record lines are JSON"))
            .collect()
    }

    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["accepted"] == true)
            .collect()
    }

    /// Waits (bounded) until the record holds at least `n` requests.
    pub fn wait_for_records(&self, n: usize, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.records().len() >= n {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }
}

impl Drop for SandboxProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway project: smax.yaml, campaigns and audience files in a temp dir.
pub struct TempProject {
    pub dir: tempfile::TempDir,
}

impl TempProject {
    /// A project whose state store exists (as after `state init`), unless smax.yaml
    /// names another state location.
    pub fn new(smax_yaml: &str) -> TempProject {
        let p = TempProject::without_state(smax_yaml);
        if !smax_yaml.contains("state:") {
            smax_campaign::state::SqliteStore::create(&p.path().join(".smax/state.db"))
                .expect("create the state store");
        }
        p
    }

    /// A project with no state store yet.
    pub fn without_state(smax_yaml: &str) -> TempProject {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("smax.yaml"), smax_yaml).expect("write smax.yaml");
        TempProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }

    /// Runs the binary in the project folder with these environment variables.
    /// `status --format json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.run(&["status", "--format", "json"], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        serde_json::from_slice(&out.stdout).expect("status prints JSON")
    }

    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = bin();
        cmd.current_dir(self.path()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("the binary runs")
    }

    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = bin();
        cmd.current_dir(self.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("the binary starts")
    }
}

/// The V2 `customer_id` of each sandbox record, in record order.
pub fn customer_ids(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r["recipient"]["customer_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// How many messages the sandbox accepted for each V2 `customer_id`.
pub fn accepted_per_recipient(sandbox: &SandboxProc) -> std::collections::HashMap<String, usize> {
    let mut per = std::collections::HashMap::new();
    for id in customer_ids(&sandbox.accepted()) {
        *per.entry(id).or_insert(0) += 1;
    }
    per
}

/// Every recipient's class in run `run_id` of `store`.
pub fn classes(
    store: &dyn smax_campaign::state::StateStore,
    run_id: &str,
) -> std::collections::HashMap<String, smax_campaign::state::OutcomeClass> {
    store
        .deliveries(run_id, &[], None)
        .expect("deliveries")
        .into_iter()
        .map(|d| (d.key, d.class))
        .collect()
}

/// A CSV audience of `n` customers with ids C0001…
pub fn customers_csv(n: usize) -> String {
    let mut s = String::from("customer_id,first_name,phone\n");
    for i in 1..=n {
        s.push_str(&format!("C{i:04},Khách {i},09{i:08}\n"));
    }
    s
}

/// Largest number of records whose `t_us` falls in any 1-second window.
pub fn max_in_any_second(records: &[serde_json::Value]) -> usize {
    let mut times: Vec<i64> = records.iter().filter_map(|r| r["t_us"].as_i64()).collect();
    times.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1_000_000 {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p);
            }
        }
    }
    found
}
