//! Why a campaign's run did not happen, or did not finish well: values, rendered in
//! one place by the caller ([`RunError::diagnostics`]) and mapped to an exit code once.

use crate::diagnostic::Diagnostic;
use crate::state::{FingerprintChange, Holder, LockError, LockName, StateError};

/// Why a run was refused or stopped.
#[derive(Debug)]
pub enum RunError {
    /// The campaign or its project file does not load (nothing was sent).
    Campaign {
        path: std::path::PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    /// A flag, a template or an input file is wrong (nothing was sent).
    Invalid(Vec<Diagnostic>),
    /// The state store refused (missing, empty, foreign, newer, unsupported…).
    State { location: String, error: StateError },
    /// Another process holds a lock the run needs.
    Locked { name: LockName, holder: Holder },
    /// A lock could not be taken for another reason than being held.
    Lock { name: LockName, error: LockError },
    /// The message changed since the run started; resuming would send a mix.
    Changed {
        run_id: String,
        changes: Vec<FingerprintChange>,
    },
    /// More invalid recipients than `delivery.max_invalid` allows; nothing was sent.
    TooManyInvalid(Diagnostic),
    /// Something failed while the run went on (the audience reader, the state writer,
    /// the HTTP client, recording the run's end).
    Failed(Vec<Diagnostic>),
}

impl RunError {
    pub fn state(location: impl Into<String>, error: StateError) -> RunError {
        RunError::State {
            location: location.into(),
            error,
        }
    }

    pub(crate) fn lock(name: &LockName, error: LockError) -> RunError {
        match error {
            LockError::Held(holder) => RunError::Locked {
                name: name.clone(),
                holder,
            },
            error => RunError::Lock {
                name: name.clone(),
                error,
            },
        }
    }

    pub(crate) fn failed(diagnostic: Diagnostic) -> RunError {
        RunError::Failed(vec![diagnostic])
    }

    /// What to tell the person who ran it.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            RunError::Invalid(d) | RunError::Failed(d) => d.clone(),
            RunError::Campaign { diagnostics, .. } => diagnostics.clone(),
            RunError::TooManyInvalid(d) => vec![d.clone()],
            RunError::State { location, error } => {
                vec![Diagnostic::error("state", error.to_string()).help(format!(
                    "the state store is {location}; it is never overwritten or started over silently"
                ))]
            }
            RunError::Locked { name, holder } => vec![Diagnostic::error(
                "locked",
                format!("{name} is held by another process: {holder}"),
            )
            .help("wait for it to finish, or pass --wait-lock 10m to wait here")],
            RunError::Lock { name, error } => vec![Diagnostic::error(
                "locked",
                format!("cannot take the lock for {name}: {error}"),
            )],
            RunError::Changed { run_id, changes } => vec![changed_since_start(run_id, changes)],
        }
    }
}

impl RunError {
    /// A closing line after the diagnostics, where one helps.
    pub fn footer(&self) -> Option<String> {
        match self {
            RunError::Campaign { path, diagnostics } => {
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                Some(format!(
                    "{}: {errors} error(s); run `smax-campaign validate {}` after fixing them\n",
                    path.display(),
                    path.display()
                ))
            }
            _ => None,
        }
    }
}

fn changed_since_start(run_id: &str, changed: &[FingerprintChange]) -> Diagnostic {
    use std::fmt::Write;
    let mut message = format!(
        "run `{run_id}` was started with a different message; resuming it would send a mix\n"
    );
    for c in changed {
        let show = |s: &str| {
            if s.is_empty() {
                "(none)".to_string()
            } else {
                s.replace('\n', " ")
            }
        };
        let _ = writeln!(message, "  {}: was {}", c.part, show(&c.old));
        let _ = writeln!(
            message,
            "  {}  now {}",
            " ".repeat(c.part.len()),
            show(&c.new)
        );
    }
    Diagnostic::error("changed-since-start", message.trim_end().to_string()).help(
        "to resume anyway with the new version, pass --accept-changes; to start afresh, rename the campaign (a new name is a new run)",
    )
}
