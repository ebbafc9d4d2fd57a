//! What the user typed: clap definitions only, no I/O and no logic.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "smax-campaign",
    version,
    about = "Campaigns kept in git, delivered through the smax.bot Broadcasting API",
    long_about = "Campaigns kept in git, delivered through the smax.bot Broadcasting API.\n\nValidate campaign files, preview exactly what every user would receive, and send at the platform's rate limit, resumably."
)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How every command prints: the only options every subcommand takes.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Print less: errors and the final summary only.
    #[arg(short, long, global = true, help_heading = "Output")]
    pub quiet: bool,
    /// Print more (repeat for debug logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
    /// When to use colour.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN", help_heading = "Output")]
    pub color: ColorWhen,
}

/// `--config`, for the commands that read a project file.
#[derive(Debug, Args, Clone, Default)]
pub struct ProjectArg {
    /// The project file (default: smax.yaml found by walking up from the campaign).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--api-url`, for the commands that talk to (or check against) the API.
#[derive(Debug, Args, Clone, Default)]
pub struct ApiArg {
    // `--help` names the variable behind an option, never its value: the value
    // may be a URL with a password, and help text ends up in CI logs.
    /// Base URL of the API (default: smax.yaml `api_url`, else https://api.smax.bot).
    #[arg(long, env = "SMAX_API_URL", hide_env_values = true, value_name = "URL")]
    pub api_url: Option<String>,
}

/// `--state`, for the commands that read or write run state.
#[derive(Debug, Args, Clone, Default)]
pub struct StateArg {
    /// Where run state lives: a SQLite file (default: smax.yaml `state`, else
    /// .smax/state.db), a shared PostgreSQL database
    /// (`postgres://USER@HOST:PORT/DB?sslmode=require`, password in the URL or
    /// PGPASSWORD), or `none` (no resume, no duplicate protection).
    #[arg(
        long,
        env = "SMAX_STATE",
        hide_env_values = true,
        value_name = "LOCATION"
    )]
    pub state: Option<PathBuf>,
}

/// What a command was told about where things are and how to print, whichever of
/// the options above it takes (the others stay unset).
#[derive(Debug, Clone)]
pub struct GlobalArgs {
    pub config: Option<PathBuf>,
    pub api_url: Option<String>,
    pub state: Option<PathBuf>,
    pub quiet: bool,
    pub verbose: u8,
    pub color: ColorWhen,
}

impl GlobalArgs {
    pub fn new(
        output: &OutputArgs,
        project: Option<&ProjectArg>,
        api: Option<&ApiArg>,
        state: Option<&StateArg>,
    ) -> GlobalArgs {
        GlobalArgs {
            config: project.and_then(|p| p.config.clone()),
            api_url: api.and_then(|a| a.api_url.clone()),
            state: state.and_then(|s| s.state.clone()),
            quiet: output.quiet,
            verbose: output.verbose,
            color: output.color,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check campaign files: schema, then meaning (templates, columns, cron, policy).
    Validate(ValidateArgs),
    /// Dry-run: read the audience, render every recipient, send nothing.
    Plan(PlanArgs),
    /// Send campaigns (or every due scheduled run with --due).
    Run(RunArgs),
    /// Runs and their counts from the state store.
    Status(StatusArgs),
    /// Which scheduled runs are due now (or at --at TIME).
    Due(DueArgs),
    /// A local, strict stand-in for the smax.bot API.
    Sandbox(SandboxArgs),
    /// Print a JSON Schema.
    Schema(SchemaArgs),
    /// Manage the state store.
    #[command(subcommand)]
    State(StateCommand),
    /// Start a project: smax.yaml, a welcome campaign, CI workflows (never overwrites).
    Init(InitArgs),
    /// Print shell completions, or write man pages (--man DIR).
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to create the project in.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, required_unless_present = "man")]
    pub shell: Option<clap_complete::Shell>,
    /// Write the man pages (smax-campaign.1 and one per command) into DIR instead.
    #[arg(long, value_name = "DIR", conflicts_with = "shell")]
    pub man: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create the state store (--state, SMAX_STATE, smax.yaml `state`, else
    /// .smax/state.db); an existing store is left as it is.
    Init(StateInitArgs),
}

#[derive(Debug, Args)]
pub struct StateInitArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    Github,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Campaign files or folders (default: campaigns/).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
    /// Fail (exit 2) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub api: ApiArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args, Clone)]
pub struct PlanOptions {
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// How many rendered requests to show.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub sample: usize,
    /// Write every rendered request as JSON lines (tokens redacted).
    #[arg(long, value_name = "FILE")]
    pub requests: Option<PathBuf>,
    /// Exit 1 when any recipient is invalid.
    #[arg(long)]
    pub fail_on_invalid: bool,
    /// Evaluate schedules at TIME instead of now (RFC 3339, or local `YYYY-MM-DD HH:MM`).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The campaign file.
    pub campaign: PathBuf,
    #[command(flatten)]
    pub options: PlanOptions,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub api: ApiArg,
    #[command(flatten)]
    pub state: StateArg,
    /// Save the plan to FILE (JSON): its files by SHA-256 and a digest of every
    /// request, for `run --plan FILE` to send exactly it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "list"])]
    pub out: Option<PathBuf>,
    /// Explain one recipient: every row that holds KEY and what became of it
    /// (filtered, suppressed by which row, duplicate of which row, invalid and
    /// why), or the full request it gets (tokens redacted).
    #[arg(long, value_name = "KEY", conflicts_with = "list")]
    pub key: Option<String>,
    /// List the rows of one class (file:row and key).
    #[arg(long, value_enum, value_name = "CLASS")]
    pub list: Option<ListClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListClass {
    Filtered,
    Suppressed,
    Duplicates,
    Invalid,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Campaign files.
    #[arg(value_name = "CAMPAIGN", required_unless_present_any = ["due", "plan"])]
    pub campaigns: Vec<PathBuf>,
    /// Send exactly the plan saved by `plan --out FILE`: nothing is sent when its
    /// campaign, project, audience or suppression files changed since (exit 2).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["due", "dry_run"])]
    pub plan: Option<PathBuf>,
    /// Run every campaign in DIR with a due occurrence (default campaigns/).
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "campaigns", conflicts_with = "campaigns")]
    pub due: Option<PathBuf>,
    /// Same as `plan`: render everything, send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub options: PlanOptions,
    /// Write a JSON report of the run.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Retry recipients the platform rejected in an earlier attempt of this run.
    #[arg(long)]
    pub retry_failed: bool,
    /// Resend recipients whose outcome is unknown (they may get the message twice).
    #[arg(long)]
    pub resend_unknown: bool,
    /// Resume even though the message, tag, bot or attributes changed since the run started.
    #[arg(long)]
    pub accept_changes: bool,
    /// Wait up to DURATION for another process's lock instead of exiting 3.
    #[arg(long, value_name = "DURATION")]
    pub wait_lock: Option<String>,
    /// Create the state store if it does not exist. Without it a missing store is an
    /// error (exit 2): a lost cache or a mistyped path must not message everyone again.
    #[arg(long)]
    pub new_state: bool,
    /// Stop taking recipients after DURATION (e.g. `5h30m`), finish the requests in
    /// flight, record them and exit 0; the run is "interrupted" and the next `run` resumes.
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,
    /// Send to at most N recipients in this invocation (the first N to send, in
    /// audience order), then stop with the run "interrupted"; the next `run` continues.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Send only to these audience keys (comma-separated or repeated); the others
    /// stay pending for the next `run`.
    #[arg(long, value_name = "KEY", value_delimiter = ',', num_args = 1..)]
    pub only: Vec<String>,
    /// Do not ask for confirmation on a terminal (runs without a terminal never ask).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub api: ApiArg,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecipientFilter {
    /// Failed for now: the next run takes them up again.
    Failed,
    /// Refused by the platform for good.
    Rejected,
    /// May have been delivered: resent only with `run --resend-unknown`.
    Unknown,
    Sent,
    /// Every recipient the run recorded.
    All,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A campaign file, campaign name or run id (default: every run).
    pub target: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// List the recipients of a run with this outcome.
    #[arg(long, value_enum)]
    pub recipients: Option<RecipientFilter>,
    /// At most this many recipients.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DueFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DueArgs {
    /// Folder of campaigns (default campaigns/).
    #[arg(default_value = "campaigns")]
    pub dir: PathBuf,
    /// Evaluate at TIME instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[arg(long, value_enum, default_value_t = DueFormat::Text)]
    pub format: DueFormat,
    #[command(flatten)]
    pub project: ProjectArg,
    #[command(flatten)]
    pub state: StateArg,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: String,
    /// A bot the sandbox knows: `ID=TOKEN` (repeatable). The token may also be `env:VAR`.
    #[arg(long = "bot", value_name = "ID=TOKEN")]
    pub bots: Vec<String>,
    /// 429 past this many requests per bot in any 1-second window.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Inject faults by share, e.g. `500:0.05,timeout:0.02,reject:0.01,429:0.01`.
    #[arg(long, value_name = "SPEC")]
    pub fail: Option<String>,
    /// Seed for fault injection.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Added to every answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency: u64,
    /// Write every request as a JSON line to FILE.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Known user ids / customer identifiers, one a line; others get 404.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Close a connection after DURATION with no byte either way and no request in progress.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub idle_timeout: String,
    /// Serve at most N connections at once; later ones wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Campaign,
    Project,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[arg(value_enum, default_value_t = SchemaKind::Campaign)]
    pub kind: SchemaKind,
}
