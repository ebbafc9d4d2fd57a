//! Campaign and project files: parse (keeping positions), check against the
//! JSON Schema, then check meaning, and produce a validated [`Campaign`].
//!
//! Every problem becomes a [`Diagnostic`] pointing at file:line:column; a file
//! with errors yields no `Campaign`, so nothing downstream ever sees one.

mod check;
pub mod confine;
pub mod model;
mod schema_check;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use self::check::Masked;
pub use self::confine::{Confinement, Refusal};
use self::model::{ProjectFile, ScheduleSpec};
use self::yaml::Spans;
use crate::api::{ApiVersion, MessagingTag, PriorityChannel, TagStyle};
use crate::audience::Source;
use crate::diagnostic::{Diagnostic, Location, SourceText};

pub const DEFAULT_API_URL: &str = "https://api.smax.bot";
pub const PROJECT_FILE: &str = "smax.yaml";

/// A parsed file that passed the schema: the typed content plus what is
/// needed to point into it.
#[derive(Debug)]
pub struct Parsed<T> {
    pub content: T,
    pub raw: serde_json::Value,
    pub source: Arc<SourceText>,
    pub spans: Spans,
}

impl<T> Parsed<T> {
    /// A location for the key at `pointer` (or its nearest ancestor).
    pub fn key_at(&self, pointer: &str) -> Location {
        match self.spans.key(pointer) {
            Some(s) => Location::in_source(&self.source, s.start, s.width),
            None => Location::file(&self.source.path),
        }
    }

    /// A location for the value at `pointer` (or its nearest ancestor).
    pub fn value_at(&self, pointer: &str) -> Location {
        match self.spans.value(pointer) {
            Some(s) => Location::in_source(&self.source, s.start, s.width),
            None => Location::file(&self.source.path),
        }
    }
}

/// The largest campaign or project file read. Real ones are a few kilobytes;
/// inline `users:` lists are meant for a handful of rows, big audiences belong
/// in CSV or JSONL files, which are streamed.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}

fn read_source(path: &Path) -> Result<Arc<SourceText>, Vec<Diagnostic>> {
    match read_bounded(path) {
        Ok(None) => Err(vec![Diagnostic::error(
            "file-too-large",
            format!("the file is larger than {} MiB", MAX_FILE_BYTES >> 20),
        )
        .at(Location::file(path))
        .help(
            "move large audiences into a CSV or JSONL file and name it under `audience.from`",
        )]),
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceText::new(
                path,
                text.trim_start_matches('\u{feff}').to_owned(),
            )),
            Err(_) => Err(vec![Diagnostic::error(
                "not-utf8",
                "the file is not valid UTF-8",
            )
            .at(Location::file(path))
            .help("save it as UTF-8")]),
        },
        Err(e) => Err(vec![Diagnostic::error(
            "unreadable-file",
            format!("cannot read the file: {}", crate::human::io_reason(&e)),
        )
        .at(Location::file(path))]),
    }
}

/// A file read and parsed as YAML, with what the literal-token check and the
/// JSON Schema found wrong in it.
struct Checked {
    source: Arc<SourceText>,
    doc: yaml::Document,
    findings: Vec<schema_check::Finding>,
}

fn check_file(path: &Path, which: schema_check::Which) -> Result<Checked, Vec<Diagnostic>> {
    let source = read_source(path)?;
    let doc = yaml::parse(&source.text).map_err(|e| {
        let at = Location::in_source(&source, e.position, 1);
        vec![if e.over_limit {
            Diagnostic::error("yaml-too-large", e.message)
                .at(at)
                .help("write the values out instead of multiplying them with aliases and nesting")
        } else {
            Diagnostic::error("yaml-syntax", format!("YAML syntax error: {}", e.message))
                .at(at)
                .help("check the indentation and quoting on this line or the one before it")
        }]
    })?;
    if doc.value.is_null() {
        return Err(vec![
            Diagnostic::error("empty-file", "the file is empty").at(Location::file(path))
        ]);
    }
    let mut findings = check::literal_tokens(&doc, &source);
    // A literal token is also an unknown key to the schema; say it once.
    let token_places: Vec<String> = findings.iter().map(|f| f.pointer.clone()).collect();
    findings.extend(
        schema_check::check(which, &doc, &source)
            .into_iter()
            .filter(|f| !(f.diagnostic.code == "unknown-key" && token_places.contains(&f.pointer))),
    );
    Ok(Checked {
        source,
        doc,
        findings,
    })
}

/// The typed content of a file the schema passed.
fn typed<T: DeserializeOwned>(checked: Checked) -> Result<Parsed<T>, Vec<Diagnostic>> {
    let content = serde_json::from_value::<T>(checked.doc.value.clone()).map_err(|e| {
        vec![
            Diagnostic::error("schema", format!("the file does not fit its schema: {e}"))
                .at(Location::file(&checked.source.path)),
        ]
    })?;
    Ok(Parsed {
        content,
        raw: checked.doc.value,
        source: checked.source,
        spans: checked.doc.spans,
    })
}

fn parse_file<T: DeserializeOwned>(
    path: &Path,
    which: schema_check::Which,
) -> Result<Parsed<T>, Vec<Diagnostic>> {
    let checked = check_file(path, which)?;
    if !checked.findings.is_empty() {
        return Err(checked.findings.into_iter().map(|f| f.diagnostic).collect());
    }
    typed(checked)
}

/// The project file and where it sits.
#[derive(Debug)]
pub struct Project {
    /// The folder that holds smax.yaml (or the current folder without one):
    /// relative `state` paths and `.smax/` live here.
    pub root: PathBuf,
    pub file: Option<Parsed<ProjectFile>>,
}

impl Project {
    pub fn none(root: PathBuf) -> Self {
        Project { root, file: None }
    }

    /// Where the files a campaign in `campaign_dir` names may lie: the
    /// project folder and its `data_dirs`, or the campaign's own folder when
    /// there is no project file.
    pub fn confinement(&self, campaign_dir: &Path) -> Confinement {
        match &self.file {
            Some(file) => Confinement::new(
                std::iter::once(self.root.clone()).chain(data_dirs(&self.root, &file.content)),
            ),
            None => Confinement::new([campaign_dir.to_path_buf()]),
        }
    }

    pub fn content(&self) -> Option<&ProjectFile> {
        self.file.as_ref().map(|f| &f.content)
    }

    pub fn api_url(&self) -> Option<&str> {
        self.content().and_then(|p| p.api_url.as_deref())
    }

    /// The API URL campaigns of this project go to: `explicit` (--api-url or
    /// SMAX_API_URL), else smax.yaml `api_url`, else the real API.
    pub fn api_url_in_effect(&self, explicit: Option<&str>) -> String {
        explicit
            .or_else(|| self.api_url())
            .unwrap_or(DEFAULT_API_URL)
            .to_owned()
    }

    /// The state location smax.yaml names, as written (default `.smax/state.db`);
    /// relative paths are relative to [`Project::root`].
    pub fn state_setting(&self) -> &str {
        self.content()
            .and_then(|p| p.state.as_deref())
            .unwrap_or(".smax/state.db")
    }
}

/// `a/b/../c` → `a/c`, without touching the file system (paths in messages
/// should read the way people write them).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Walks up from `start` looking for smax.yaml, like git looks for `.git`.
pub fn find_project_file(start: &Path) -> Option<PathBuf> {
    let start = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let absolute = std::path::absolute(start).ok()?;
    absolute
        .ancestors()
        .map(|dir| dir.join(PROJECT_FILE))
        .find(|candidate| candidate.is_file())
        .map(|found| relative_to_cwd(&found))
}

fn relative_to_cwd(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// The project's `data_dirs`, resolved against its folder `root`.
fn data_dirs(root: &Path, project: &ProjectFile) -> Vec<PathBuf> {
    project
        .data_dirs
        .iter()
        .map(|d| normalize(&root.join(d)))
        .collect()
}

/// The folder of `path` ("." for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Refuses a campaign or project file that is a symlink out of `allowed`, a
/// system file or not a regular file, before reading it: a pull request can
/// commit `campaigns/x.yaml -> /proc/self/environ`, and a syntax error would
/// quote its first line.
fn confine_own_file(path: &Path, allowed: Confinement) -> Result<(), Vec<Diagnostic>> {
    match allowed.check_file(path) {
        // A missing or unreadable file is read_source's to report.
        Ok(()) | Err(Refusal::Missing | Refusal::Folder | Refusal::Unreadable { .. }) => Ok(()),
        Err(refusal) => Err(vec![refusal_diagnostic(
            "the file", path, &refusal, &allowed,
        )
        .at(Location::file(path))]),
    }
}

/// The diagnostic for a path refused by a [`Confinement`] (`what` names the
/// file, e.g. "audience file").
pub fn refusal_diagnostic(
    what: &str,
    path: &Path,
    refusal: &Refusal,
    allowed: &Confinement,
) -> Diagnostic {
    let shown = path.display();
    let folders = allowed
        .folders()
        .map(|f| {
            let shown = relative_to_cwd(f);
            if shown.as_os_str().is_empty() {
                "`.`".to_owned()
            } else {
                format!("`{}`", shown.display())
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let keep_inside = format!(
        "keep data inside the project folder ({folders}); to read another folder, list it under `data_dirs:` in smax.yaml"
    );
    match refusal {
        Refusal::Outside => Diagnostic::error(
            "path-outside-project",
            format!("{what} `{shown}` is outside the project; it was not read"),
        )
        .help(keep_inside),
        Refusal::LinksOutside { target } => Diagnostic::error(
            "path-outside-project",
            format!(
                "{what} `{shown}` is a symlink to `{}`, outside the project; it was not read",
                target.display()
            ),
        )
        .help(keep_inside),
        Refusal::SystemFile { target } => Diagnostic::error(
            "path-outside-project",
            format!(
                "{what} `{shown}` leads to the system file `{}`; it was not read",
                target.display()
            ),
        )
        .help(keep_inside),
        Refusal::GitMetadata => Diagnostic::error(
            "path-outside-project",
            format!(
                "{what} `{shown}` is inside `.git`, which can hold credentials; it was not read"
            ),
        )
        .help("keep audience data in the project's own folders, outside `.git`"),
        Refusal::Missing => {
            Diagnostic::error("missing-file", format!("{what} `{shown}` does not exist"))
                .help("paths are relative to the file that names them")
        }
        Refusal::Folder => Diagnostic::error(
            "missing-file",
            format!("{what} `{shown}` is a folder, not a file"),
        )
        .help("name a file in that folder"),
        Refusal::NotRegular { kind } => Diagnostic::error(
            "not-a-file",
            format!("{what} `{shown}` is {kind}, not a regular file; it was not read"),
        )
        .help("name a regular file"),
        Refusal::Unreadable { reason } => Diagnostic::error(
            "unreadable-file",
            format!("cannot read {what} `{shown}`: {reason}"),
        ),
    }
}

/// Loads and checks a project file.
pub fn load_project(path: &Path) -> Result<Project, Vec<Diagnostic>> {
    confine_own_file(path, Confinement::new([folder_of(path)]))?;
    let parsed = parse_file::<ProjectFile>(path, schema_check::Which::Project)?;
    let errors = check::check_project(&parsed);
    if errors.iter().any(Diagnostic::is_error) {
        return Err(errors);
    }
    let root = folder_of(path);
    Ok(Project {
        root,
        file: Some(parsed),
    })
}

/// Finds (or takes `explicit`) and loads the project file for a campaign.
pub fn project_for(campaign: &Path, explicit: Option<&Path>) -> Result<Project, Vec<Diagnostic>> {
    project_in(campaign.parent().unwrap_or(Path::new(".")), explicit)
}

/// The project of a command run in `folder`: `explicit` (`--config`), else smax.yaml
/// found by walking up from `folder`, else none.
pub fn project_in(folder: &Path, explicit: Option<&Path>) -> Result<Project, Vec<Diagnostic>> {
    let found = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => find_project_file(folder),
    };
    match found {
        Some(path) => load_project(&path),
        None => Ok(Project::none(PathBuf::from("."))),
    }
}

/// Parses a campaign file up to the schema (no meaning checks).
pub fn parse_campaign(path: &Path) -> Result<Parsed<model::CampaignFile>, Vec<Diagnostic>> {
    parse_file(path, schema_check::Which::Campaign)
}

/// Loads a campaign: parse, schema, meaning. Returns the campaign (when it has
/// no errors) and every diagnostic, warnings included.
pub fn load_campaign(path: &Path, project: &Project) -> (Option<Campaign>, Vec<Diagnostic>) {
    load_campaign_for(path, project, None)
}

/// [`load_campaign`] for a campaign to be sent to `api_url` (see
/// [`Project::api_url_in_effect`]): what only `run` refused before, such as
/// a rate above the real platform's limit, is then an error here too.
pub fn load_campaign_for(
    path: &Path,
    project: &Project,
    api_url: Option<&str>,
) -> (Option<Campaign>, Vec<Diagnostic>) {
    let mut allowed = vec![folder_of(path)];
    if project.file.is_some() {
        allowed.push(project.root.clone());
    }
    if let Err(diagnostics) = confine_own_file(path, Confinement::new(allowed)) {
        return (None, diagnostics);
    }
    let checked = match check_file(path, schema_check::Which::Campaign) {
        Ok(checked) => checked,
        Err(diagnostics) => return (None, diagnostics),
    };
    if checked.findings.is_empty() {
        return match typed(checked) {
            Ok(parsed) => check::check_campaign_for(parsed, project, api_url, &Masked::default()),
            Err(diagnostics) => (None, diagnostics),
        };
    }
    // Schema errors must not hide the meaning errors of the rest of the file
    // (a template typo, a bad cron): the meaning checks run over the file
    // with the wrong parts taken out, and skip what reads those parts, so
    // one problem is not reported twice.
    let pointers: Vec<String> = checked.findings.iter().map(|f| f.pointer.clone()).collect();
    let mut out: Vec<Diagnostic> = checked.findings.into_iter().map(|f| f.diagnostic).collect();
    if let Some((content, removed)) = schema_check::salvage_campaign(&checked.doc.value, &pointers)
    {
        let parsed = Parsed {
            content,
            raw: checked.doc.value,
            source: checked.source,
            spans: checked.doc.spans,
        };
        let masked = Masked::new(pointers.into_iter().chain(removed));
        let (_, meaning) = check::check_campaign_for(parsed, project, api_url, &masked);
        out.extend(meaning);
    }
    (None, out)
}

// ---- the validated campaign ------------------------------------------------

/// Where a bot's token comes from. The token itself is read only when sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Bot {
    /// The name in smax.yaml, when the campaign refers to one.
    pub name: Option<String>,
    pub id: String,
    pub api: ApiVersion,
    pub tag_style: TagStyle,
    pub token: TokenSource,
}

impl Bot {
    /// How people refer to the bot: its name, or its id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone)]
pub struct Audience {
    pub sources: Vec<Source>,
    pub where_expr: Option<String>,
    pub exclude: Vec<Source>,
    /// The key template (default: the first recipient identifier).
    pub key: String,
}

#[derive(Debug, Clone, Default)]
pub struct Recipient {
    pub user_id: Option<String>,
    pub customer_id: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_fbid: Option<String>,
    pub priority: Vec<PriorityChannel>,
}

/// What a campaign sends besides attributes.
#[derive(Debug, Clone)]
pub enum Content {
    /// V1 attributes-only: set user attributes, send no block.
    AttributesOnly,
    BlockName(String),
    BlockId(String),
    /// V2 messages; every string inside is a template. `text:` is the
    /// shorthand for one text message.
    Messages {
        messages: Vec<serde_json::Map<String, serde_json::Value>>,
        from_text: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Message {
    pub tag: Option<MessagingTag>,
    pub content: Content,
    pub attributes: Vec<(String, String)>,
    pub one_time_notif_token: Option<String>,
    pub notification_messages_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxFailures {
    /// A share, 0..=1: of attempts (applied after 100 of them) for
    /// `max_failures`, of rendered recipients for `max_invalid`.
    Share(f64),
    Count(u64),
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub rate: f64,
    pub concurrency: u32,
    pub timeout: Duration,
    pub retries: u32,
    pub max_failures: MaxFailures,
    pub max_invalid: MaxFailures,
    pub retry_unknown: bool,
}

impl MaxFailures {
    /// Whether `count` out of `total` goes past this tolerance.
    pub fn exceeded_by(self, count: u64, total: u64) -> bool {
        match self {
            MaxFailures::Count(n) => count > n,
            MaxFailures::Share(share) => count as f64 > share * total as f64,
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            rate: crate::api::PLATFORM_RATE_LIMIT,
            concurrency: 64,
            timeout: Duration::from_secs(10),
            retries: 5,
            max_failures: MaxFailures::Share(0.05),
            max_invalid: MaxFailures::Count(0),
            retry_unknown: false,
        }
    }
}

/// A template of the campaign: its source and the JSON pointer of its field.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub name: String,
    pub source: String,
}

/// A campaign that passed every check. Only this type reaches rendering and delivery.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub bot: Bot,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub audience: Audience,
    pub recipient: Recipient,
    pub message: Message,
    pub schedule: Option<crate::schedule::Schedule>,
    pub delivery: Delivery,
    /// Every template of the campaign, in file order.
    pub templates: Vec<TemplateSource>,
}

/// Schedule checks (cron, time zone, bounds, window), each error at its field.
fn check_schedule(
    file: &Parsed<model::CampaignFile>,
    spec: &ScheduleSpec,
    out: &mut Vec<Diagnostic>,
) -> Option<crate::schedule::Schedule> {
    let input = crate::schedule::ScheduleInput {
        at: spec.at.as_deref(),
        cron: spec.cron.as_deref(),
        timezone: spec.timezone.as_deref(),
        starts: spec.starts.as_deref(),
        ends: spec.ends.as_deref(),
        catch_up: spec.catch_up.as_deref(),
        window: spec.window.as_deref(),
    };
    match crate::schedule::parse_schedule(&input) {
        Ok(s) => {
            for w in s.warnings() {
                let mut d = Diagnostic::warning(w.code, w.message)
                    .at(file.value_at(&format!("/schedule/{}", w.field)));
                if let Some(help) = w.help {
                    d = d.help(help);
                }
                out.push(d);
            }
            Some(s)
        }
        Err(errors) => {
            for e in errors {
                let pointer = if e.field == "schedule" {
                    "/schedule".to_string()
                } else {
                    format!("/schedule/{}", e.field)
                };
                let code = match e.field {
                    "cron" => "invalid-cron",
                    "timezone" => "invalid-timezone",
                    "window" => "invalid-window",
                    _ => "invalid-schedule",
                };
                let mut d = Diagnostic::error(code, e.message).at(file.value_at(&pointer));
                if let Some(help) = e.help {
                    d = d.help(help);
                }
                out.push(d);
            }
            None
        }
    }
}
