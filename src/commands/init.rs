//! `init [DIR]`: a working project to start from, which passes `validate` and
//! `plan` as it is. It never overwrites: when any file it would write exists,
//! it writes nothing.

use std::path::{Path, PathBuf};

use super::{eprint_diagnostics, print_out, ExitStatus};
use crate::cli::InitArgs;
use crate::diagnostic::Diagnostic;

/// The `.gitignore` line that keeps the state store out of the repository.
const IGNORED: &str = ".smax/";

/// What `init` writes, relative to DIR.
fn files() -> Vec<(&'static str, String)> {
    let schema = |v: serde_json::Value| super::schema::schema_text(&v);
    vec![
        ("smax.yaml", include_str!("init/smax.yaml").to_owned()),
        (
            "campaigns/welcome.yaml",
            include_str!("init/welcome.yaml").to_owned(),
        ),
        (
            "campaigns/audiences/new-customers.csv",
            include_str!("init/new-customers.csv").to_owned(),
        ),
        (
            "campaigns/audiences/unsubscribed.csv",
            include_str!("init/unsubscribed.csv").to_owned(),
        ),
        (
            "schemas/campaign.schema.json",
            schema(crate::campaign::model::campaign_schema()),
        ),
        (
            "schemas/project.schema.json",
            schema(crate::campaign::model::project_schema()),
        ),
        (
            ".github/workflows/campaigns-pr.yml",
            include_str!("../../examples/ci/github-pull-request.yml").to_owned(),
        ),
        (
            ".github/workflows/campaigns-scheduled.yml",
            include_str!("../../examples/ci/github-scheduled.yml").to_owned(),
        ),
    ]
}

pub(super) fn run(args: &InitArgs) -> ExitStatus {
    let dir = &args.dir;
    let files = files();
    let taken: Vec<PathBuf> = files
        .iter()
        .map(|(rel, _)| dir.join(rel))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    if !taken.is_empty() {
        let list: Vec<String> = taken.iter().map(|p| format!("`{}`", p.display())).collect();
        eprint_diagnostics(&[Diagnostic::error(
            "init-would-overwrite",
            format!(
                "{} already exist{}; nothing was written",
                list.join(", "),
                if taken.len() == 1 { "s" } else { "" }
            ),
        )
        .help("init starts a new project: run it in an empty folder, or move those files away")]);
        return ExitStatus::Invalid;
    }
    for (rel, text) in &files {
        if let Err(e) = write_new(&dir.join(rel), text) {
            return failed(&dir.join(rel), &e);
        }
    }
    let gitignore = dir.join(".gitignore");
    if let Err(e) = ignore_state(&gitignore) {
        return failed(&gitignore, &e);
    }
    let shown = dir.display();
    print_out(&format!(
        "created a project in {shown}:\n{}  .gitignore (ignores {IGNORED})\n\nnext:\n  cd {shown}\n  smax-campaign validate\n  smax-campaign plan campaigns/welcome.yaml\n  # then set your bot's id in smax.yaml, export SMAX_SHOP_TOKEN=…, and:\n  smax-campaign state init\n  smax-campaign run campaigns/welcome.yaml\n",
        files
            .iter()
            .map(|(rel, _)| format!("  {rel}\n"))
            .collect::<String>()
    ));
    ExitStatus::Success
}

fn failed(path: &Path, e: &std::io::Error) -> ExitStatus {
    eprint_diagnostics(&[Diagnostic::error(
        "unwritable-file",
        format!(
            "cannot write `{}`: {}",
            path.display(),
            crate::human::io_reason(e)
        ),
    )]);
    ExitStatus::Failed
}

/// Writes a file that must not exist yet (checked again here, atomically).
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Adds `.smax/` to `.gitignore` unless a line already ignores it.
fn ignore_state(path: &Path) -> std::io::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let ignored = existing
        .lines()
        .map(str::trim)
        .any(|l| l == IGNORED || l == ".smax" || l == "/.smax/" || l == "/.smax");
    if ignored {
        return Ok(());
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# smax-campaign: the run state store (never commit it)\n");
    text.push_str(IGNORED);
    text.push('\n');
    std::fs::write(path, text)
}
