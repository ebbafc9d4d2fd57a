//! Diagnostics: what is wrong, where, and what to do about it.
//!
//! Every finding carries a stable kebab-case `code`, a severity, a message, an
//! optional location (file:line:column plus the offending line) and an optional
//! help text. Renderers turn a list of them into text for people, JSON for
//! tools, or GitHub workflow annotations.

pub(crate) mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use render::{render, DiagnosticFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a text file: 1-based line and column. The column counts
/// characters (Unicode scalar values): not bytes, and not display columns,
/// which the text renderer works out for its carets (an emoji is one
/// character but two columns wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: u32,
    pub col: u32,
}

/// A file whose lines diagnostics can quote.
#[derive(Debug)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceText {
            path: path.into(),
            text: text.into(),
        })
    }

    pub fn line(&self, line: u32) -> Option<&str> {
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        self.text
            .split('\n')
            .nth(index)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }
}

/// Where a diagnostic points: a file, and when known a position in it and the
/// width of the underlined span (in characters, like [`Position::col`]).
#[derive(Debug, Clone)]
pub struct Location {
    pub file: PathBuf,
    pub position: Option<Position>,
    pub width: u32,
    /// The quoted line, when the file is text a person wrote (never audience rows:
    /// they hold personal data).
    pub snippet: Option<String>,
    /// "row" for data files, "line" for source files; changes only the wording.
    pub is_data_row: bool,
}

impl Location {
    pub fn in_source(source: &SourceText, position: Position, width: u32) -> Self {
        Location {
            file: source.path.clone(),
            position: Some(position),
            width: width.max(1),
            snippet: source.line(position.line).map(str::to_owned),
            is_data_row: false,
        }
    }

    pub fn file(path: &Path) -> Self {
        Location {
            file: path.to_path_buf(),
            position: None,
            width: 1,
            snippet: None,
            is_data_row: false,
        }
    }

    pub fn data_row(path: &Path, line: u64) -> Self {
        Location {
            file: path.to_path_buf(),
            position: Some(Position {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: 1,
            }),
            width: 1,
            snippet: None,
            is_data_row: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub location: Option<Location>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            location: None,
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Counts of a diagnostic list, for summaries and exit codes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub errors: usize,
    pub warnings: usize,
}

impl Tally {
    pub fn of(diagnostics: &[Diagnostic]) -> Self {
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        Tally {
            errors,
            warnings: diagnostics.len() - errors,
        }
    }
}

/// "did you mean …?" for a misspelt name among known ones.
pub fn suggest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(wrong, k), k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 4) && *d < k.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
