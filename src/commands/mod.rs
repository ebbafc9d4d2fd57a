//! One file per subcommand: resolve inputs, orchestrate, print.

mod due;
mod plan;
mod run;
mod runstate;
mod sandbox;
mod schema;
mod state;
mod status;
mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, ColorWhen, Command};
use crate::diagnostic::{render, Diagnostic, DiagnosticFormat};

/// How the process ends (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success, also "nothing due".
    Success,
    /// 1: a run ended with failed deliveries or was aborted.
    Failed,
    /// 2: invalid campaign, project file or usage.
    Invalid,
    /// 3: another process holds the run's lock.
    Locked,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Invalid => 2,
            ExitStatus::Locked => 3,
        }
    }

    /// The worse of two statuses, for commands acting on several campaigns.
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        let rank = |s: ExitStatus| match s {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 2,
            ExitStatus::Invalid => 3,
            ExitStatus::Locked => 1,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

pub fn run(cli: Cli) -> ExitStatus {
    let choice = match cli.global.color {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
    let global = cli.global;
    if let Some(url) = &global.api_url {
        crate::redact::register_url_password(url);
    }
    if let Some(state) = &global.state {
        crate::redact::register_url_password(&state.to_string_lossy());
    }
    match cli.command {
        Command::Validate(args) => validate::run(&global, &args),
        Command::Plan(args) => plan::run(&global, &args.campaign, &args.options),
        Command::Run(args) if args.dry_run => match (args.campaigns.as_slice(), &args.due) {
            ([one], None) => plan::run(&global, one, &args.options),
            _ => usage_error("`run --dry-run` previews one campaign; use `plan CAMPAIGN` for each"),
        },
        Command::Run(args) => run::run(&global, &args),
        Command::Status(args) => status::run(&global, &args),
        Command::Due(args) => due::run(&global, &args),
        Command::Sandbox(args) => sandbox::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::State(command) => state::run(&global, &command),
    }
}

pub(crate) fn usage_error(message: &str) -> ExitStatus {
    eprint_diagnostics(&[Diagnostic::error("usage", message)]);
    ExitStatus::Invalid
}

pub(crate) fn print_out(text: &str) {
    let mut out = anstream::stdout();
    let _ = out.write_all(crate::redact::scrub(text).as_bytes());
    let _ = out.flush();
}

pub(crate) fn print_err(text: &str) {
    let mut err = anstream::stderr();
    let _ = err.write_all(crate::redact::scrub(text).as_bytes());
    let _ = err.flush();
}

pub(crate) fn eprint_diagnostics(diagnostics: &[Diagnostic]) {
    print_err(&render(diagnostics, DiagnosticFormat::Text));
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens `--requests FILE` for writing (buffered), or says why not.
pub(crate) fn create_requests_file(
    path: Option<&Path>,
) -> Result<Option<crate::redact::ScrubbedFile>, ExitStatus> {
    let Some(path) = path else {
        return Ok(None);
    };
    match crate::redact::create_file(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            eprint_diagnostics(&[Diagnostic::error(
                "unwritable-file",
                format!(
                    "cannot write `{}`: {}",
                    path.display(),
                    crate::campaign::io_reason(&e)
                ),
            )]);
            Err(ExitStatus::Invalid)
        }
    }
}

/// Campaign files under `path`: the file itself, or every `.yaml`/`.yml`
/// below the folder (smax.yaml excluded), sorted for a stable order.
pub(crate) fn campaign_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && p.file_name().and_then(|n| n.to_str()) != Some(crate::campaign::PROJECT_FILE)
            {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}
