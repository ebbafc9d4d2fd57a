//! One file per subcommand: resolve inputs, orchestrate, print.

mod completions;
mod due;
mod init;
mod plan;
mod run;
mod sandbox;
mod schema;
mod state;
mod status;
mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, ColorWhen, Command, GlobalArgs, StateCommand};
use crate::diagnostic::{render, Diagnostic, DiagnosticFormat};
use crate::run::RunError;

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
    let choice = match cli.output.color {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
    let out = &cli.output;
    // Each command takes only the options that mean something to it.
    let global = match &cli.command {
        Command::Validate(a) => GlobalArgs::new(out, Some(&a.project), Some(&a.api), None),
        Command::Plan(a) => GlobalArgs::new(out, Some(&a.project), Some(&a.api), Some(&a.state)),
        Command::Run(a) => GlobalArgs::new(out, Some(&a.project), Some(&a.api), Some(&a.state)),
        Command::Status(a) => GlobalArgs::new(out, Some(&a.project), None, Some(&a.state)),
        Command::Due(a) => GlobalArgs::new(out, Some(&a.project), None, Some(&a.state)),
        Command::State(StateCommand::Init(a)) => {
            GlobalArgs::new(out, Some(&a.project), None, Some(&a.state))
        }
        _ => GlobalArgs::new(out, None, None, None),
    };
    if let Some(url) = &global.api_url {
        crate::redact::register_url_password(url);
    }
    if let Some(state) = &global.state {
        crate::redact::register_url_password(&state.to_string_lossy());
    }
    match cli.command {
        Command::Validate(args) => validate::run(&global, &args),
        Command::Plan(args) if args.key.is_some() || args.list.is_some() => {
            plan::explain(&global, &args)
        }
        Command::Plan(args) => {
            plan::run(&global, &args.campaign, &args.options, args.out.as_deref())
        }
        Command::Run(args) if args.dry_run => match (args.campaigns.as_slice(), &args.due) {
            ([one], None) => plan::run(&global, one, &args.options, None),
            _ => usage_error("`run --dry-run` previews one campaign; use `plan CAMPAIGN` for each"),
        },
        Command::Run(args) => run::run(&global, &args),
        Command::Status(args) => status::run(&global, &args),
        Command::Due(args) => due::run(&global, &args),
        Command::Sandbox(args) => sandbox::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::State(command) => state::run(&global, &command),
        Command::Init(args) => init::run(&args),
        Command::Completions(args) => completions::run(&args),
    }
}

/// Where things are, as the flags and the environment say (nothing read yet).
pub(crate) fn inputs(global: &GlobalArgs) -> crate::run::Inputs {
    crate::run::Inputs {
        config: global.config.clone(),
        api_url: global.api_url.clone(),
        state: global
            .state
            .as_deref()
            .map(|s| crate::state::StateLocation::parse(s.as_os_str(), Path::new(""))),
    }
}

/// The exit code of an error: decided here, and only here.
pub(crate) fn exit_status(error: &RunError) -> ExitStatus {
    match error {
        RunError::Campaign { .. }
        | RunError::Invalid(_)
        | RunError::State { .. }
        | RunError::Lock { .. }
        | RunError::Changed { .. } => ExitStatus::Invalid,
        RunError::Locked { .. } => ExitStatus::Locked,
        RunError::TooManyInvalid(_) | RunError::Failed(_) => ExitStatus::Failed,
    }
}

/// Prints an error (on stderr) and says how the process should end.
pub(crate) fn render_error(error: &RunError) -> ExitStatus {
    eprint_diagnostics(&error.diagnostics());
    if let Some(footer) = error.footer() {
        print_err(&footer);
    }
    exit_status(error)
}

/// For commands that only read state: a missing store reads as empty, and says so
/// (on stderr, so that JSON and markdown output stay clean). Nothing is created.
pub(crate) fn note_missing_store(location: &crate::state::StateLocation, quiet: bool) {
    if location.is_missing_file() && !quiet {
        print_err(&format!(
            "note: no state store at {location}; read as empty, nothing was created (`run` needs --new-state or `state init` to create one)\n"
        ));
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
