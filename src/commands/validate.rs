use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{campaign_files, print_err, print_out, ExitStatus};
use crate::campaign::{self, Campaign, Content, Project};
use crate::cli::{GlobalArgs, ValidateArgs, ValidateFormat};
use crate::diagnostic::{render, Diagnostic, DiagnosticFormat, Location, Tally};
use crate::render::Invalid;

/// Rows of the audience that `validate` renders to see whether a template
/// already runs out of its work budget on real data.
const PROBED_ROWS: usize = 20;

/// A warning per template that runs out of its work budget or output cap on
/// the first rows: it would make (nearly) every recipient invalid.
fn budget_warnings(campaign: &Campaign) -> Vec<Diagnostic> {
    let mut seen = std::collections::BTreeSet::new();
    crate::plan::probe(campaign, PROBED_ROWS)
        .into_iter()
        .filter_map(|(origin, reason)| match reason {
            Invalid::OverBudget { field, message } if seen.insert(field.clone()) => Some(
                Diagnostic::warning(
                    "template-budget",
                    format!("`{field}` already fails on {origin}: {message}"),
                )
                .at(Location::file(&campaign.path))
                .help("every recipient renders it: avoid loops over row data and large repeats"),
            ),
            _ => None,
        })
        .collect()
}

pub(super) fn run(global: &GlobalArgs, args: &ValidateArgs) -> ExitStatus {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("campaigns")]
    } else {
        args.paths.clone()
    };
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut summaries: Vec<String> = Vec::new();
    let mut files = Vec::new();
    for path in &paths {
        if !path.exists() {
            diagnostics.push(
                Diagnostic::error(
                    "missing-file",
                    format!("`{}` does not exist", path.display()),
                )
                .at(Location::file(path))
                .help("name campaign files or folders; the default is campaigns/"),
            );
            continue;
        }
        match campaign_files(path) {
            Ok(found) if found.is_empty() => diagnostics.push(
                Diagnostic::warning(
                    "no-campaigns",
                    format!("no campaign files (*.yaml) under `{}`", path.display()),
                )
                .at(Location::file(path)),
            ),
            Ok(found) => files.extend(found),
            Err(e) => diagnostics.push(
                Diagnostic::error(
                    "unreadable-file",
                    format!(
                        "cannot list `{}`: {}",
                        path.display(),
                        crate::human::io_reason(&e)
                    ),
                )
                .at(Location::file(path)),
            ),
        }
    }

    // Project files are checked once each, however many campaigns share them.
    let mut projects: BTreeMap<Option<PathBuf>, Option<Project>> = BTreeMap::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        let project_path = match &global.config {
            Some(p) => Some(p.clone()),
            None => campaign::find_project_file(file.parent().unwrap_or(std::path::Path::new("."))),
        };
        let project = projects
            .entry(project_path.clone())
            .or_insert_with(|| match &project_path {
                Some(p) => match campaign::load_project(p) {
                    Ok(project) => Some(project),
                    Err(errors) => {
                        diagnostics.extend(errors);
                        None
                    }
                },
                None => Some(Project::none(PathBuf::from("."))),
            });
        let Some(project) = project else {
            summaries.push(format!(
                "skipped {} (its smax.yaml has errors)",
                file.display()
            ));
            continue;
        };
        let api_url = project.api_url_in_effect(global.api_url.as_deref());
        let (campaign, mut found) = campaign::load_campaign_for(file, project, Some(&api_url));
        if let Some(c) = &campaign {
            found.extend(budget_warnings(c));
        }
        let tally = Tally::of(&found);
        diagnostics.extend(found);
        match campaign {
            Some(c) => {
                if let Some(other) = names.insert(c.name.clone(), c.path.clone()) {
                    diagnostics.push(
                        Diagnostic::error(
                            "duplicate-campaign-name",
                            format!(
                                "campaign name `{}` is also used by {}",
                                c.name,
                                other.display()
                            ),
                        )
                        .at(Location::file(&c.path))
                        .help("names identify runs in the state store; give each campaign its own"),
                    );
                }
                summaries.push(format!(
                    "ok      {}  {}{}",
                    file.display(),
                    describe(&c),
                    warnings_suffix(tally)
                ));
            }
            None => summaries.push(format!(
                "invalid {}  ({} error{}{})",
                file.display(),
                tally.errors,
                if tally.errors == 1 { "" } else { "s" },
                if tally.warnings > 0 {
                    format!(
                        ", {} warning{}",
                        tally.warnings,
                        if tally.warnings == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                }
            )),
        }
    }

    let tally = Tally::of(&diagnostics);
    match args.format {
        ValidateFormat::Text => {
            print_out(&render(&diagnostics, DiagnosticFormat::Text));
            if !global.quiet {
                let mut s = summaries.join("\n");
                s.push('\n');
                s.push_str(&format!(
                    "{} file{} checked: {} error{}, {} warning{}\n",
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                    tally.errors,
                    if tally.errors == 1 { "" } else { "s" },
                    tally.warnings,
                    if tally.warnings == 1 { "" } else { "s" }
                ));
                print_out(&s);
            }
        }
        ValidateFormat::Json => print_out(&render(&diagnostics, DiagnosticFormat::Json)),
        ValidateFormat::Github => {
            print_out(&render(&diagnostics, DiagnosticFormat::Github));
            print_err(&format!(
                "{} files checked: {} errors, {} warnings\n",
                files.len(),
                tally.errors,
                tally.warnings
            ));
        }
    }
    if tally.errors > 0 || (args.deny_warnings && tally.warnings > 0) {
        ExitStatus::Invalid
    } else {
        ExitStatus::Success
    }
}

fn warnings_suffix(t: Tally) -> String {
    match t.warnings {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    }
}

fn describe(c: &Campaign) -> String {
    let what = match &c.message.content {
        Content::AttributesOnly => {
            "attributes-only (sets user attributes, sends no block)".to_string()
        }
        Content::BlockName(_) => "block by name".into(),
        Content::BlockId(_) => "block by id".into(),
        Content::Messages {
            from_text: true, ..
        } => "text".into(),
        Content::Messages { messages, .. } => format!(
            "{} message{}",
            messages.len(),
            if messages.len() == 1 { "" } else { "s" }
        ),
    };
    let schedule = if c.schedule.is_some() {
        ", scheduled"
    } else {
        ""
    };
    format!(
        "({} {what}, bot {}{schedule}",
        c.bot.api.as_str(),
        c.bot.label()
    ) + ")"
}
