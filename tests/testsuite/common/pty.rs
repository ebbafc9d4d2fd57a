//! The real binary on a pseudo-terminal, for what it does only when a person is
//! at the keyboard. Every wait is bounded, so a regression fails instead of hanging.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

pub struct Terminal {
    child: Child,
    keyboard: std::fs::File,
    screen: Receiver<Vec<u8>>,
    shown: Vec<u8>,
}

impl Terminal {
    /// Runs the binary in `dir` with `args` and `env`, its stdin, stdout and
    /// stderr all on one pseudo-terminal.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Terminal {
        use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let name = name.to_str().expect("a UTF-8 name").to_owned();
        let side = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&name)
                .expect("open the terminal")
        };
        let mut cmd: Command = super::bin();
        // A person at a terminal, not CI (the test run itself may be in CI).
        cmd.env_remove("CI");
        cmd.current_dir(dir)
            .args(args)
            .stdin(Stdio::from(side()))
            .stdout(Stdio::from(side()))
            .stderr(Stdio::from(side()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary runs");
        // The parent's ends of the terminal go with `cmd`: once the child exits,
        // reading the master ends.
        drop(cmd);
        let master = std::fs::File::from(master);
        let keyboard = master.try_clone().expect("clone");
        let (tx, screen) = channel();
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            // EIO once the last process on the terminal is gone: the end.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            keyboard,
            screen,
            shown: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown).into_owned()
    }

    /// Waits until the screen shows `what`.
    pub fn wait_for(&mut self, what: &str) {
        let start = Instant::now();
        while !self.text().contains(what) {
            let left = LIMIT.saturating_sub(start.elapsed());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self.shown.extend(bytes),
                Err(_) => panic!("{what:?} never appeared; the screen:\n{}", self.text()),
            }
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.keyboard
            .write_all(format!("{line}\n").as_bytes())
            .expect("type");
    }

    /// Waits for the process to end: its exit code and everything it showed.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!(
                    "still running after {LIMIT:?}; the screen:\n{}",
                    self.text()
                );
            }
            match self.screen.recv_timeout(Duration::from_millis(50)) {
                Ok(bytes) => self.shown.extend(bytes),
                Err(_) => continue,
            }
        };
        while let Ok(bytes) = self.screen.recv_timeout(Duration::from_secs(2)) {
            self.shown.extend(bytes);
        }
        (status.code(), self.text())
    }
}
