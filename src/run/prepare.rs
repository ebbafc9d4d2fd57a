//! From what was typed to what a run needs: every input read, checked and resolved
//! before any work starts (the campaign, its project, the API in effect, the token,
//! the time, where the state lives). After this, nothing is looked up again.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::RunError;
use crate::api::{is_real_api, Secret, PLATFORM_RATE_LIMIT};
use crate::campaign::{self, Campaign, Project, TokenSource};
use crate::diagnostic::Diagnostic;
use crate::human::io_reason;
use crate::state::StateLocation;

/// What the caller said about where things are (flags and environment), before
/// anything is read.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--config`: the project file, instead of the one found above the campaign.
    pub config: Option<PathBuf>,
    /// `--api-url` / `SMAX_API_URL`.
    pub api_url: Option<String>,
    /// `--state` / `SMAX_STATE`, instead of smax.yaml's `state`.
    pub state: Option<StateLocation>,
}

impl Inputs {
    /// Where the state of `project`'s campaigns lives: `--state`, else smax.yaml
    /// `state` (relative to the project), else `.smax/state.db` in the project.
    pub fn state_location(&self, project: &Project) -> StateLocation {
        self.state.clone().unwrap_or_else(|| {
            StateLocation::parse(OsStr::new(project.state_setting()), &project.root)
        })
    }

    /// The state location of commands that name one campaign file or none: the
    /// project is found from the campaign's folder, else from the current one.
    pub fn state_location_for(
        &self,
        campaign_file: Option<&Path>,
    ) -> Result<StateLocation, Vec<Diagnostic>> {
        if let Some(location) = &self.state {
            return Ok(location.clone());
        }
        let project = match campaign_file {
            Some(file) => campaign::project_for(file, self.config.as_deref())?,
            None => campaign::project_in(Path::new("."), self.config.as_deref())?,
        };
        Ok(self.state_location(&project))
    }
}

/// A campaign loaded with its project, ready to plan.
pub struct Prepared {
    pub campaign: Campaign,
    pub project: Project,
    /// The API in effect: `--api-url`, else smax.yaml `api_url`, else the real API.
    pub api_url: String,
    pub state: StateLocation,
    /// What the campaign's checks warned about (the campaign is usable).
    pub warnings: Vec<Diagnostic>,
}

impl Prepared {
    /// Loads the project and the campaign at `path`.
    pub fn load(path: &Path, inputs: &Inputs) -> Result<Prepared, RunError> {
        let invalid = |diagnostics| RunError::Campaign {
            path: path.to_path_buf(),
            diagnostics,
        };
        let project = campaign::project_for(path, inputs.config.as_deref()).map_err(invalid)?;
        let (loaded, diagnostics) = campaign::load_campaign(path, &project);
        let Some(campaign) = loaded else {
            return Err(invalid(diagnostics));
        };
        let api_url = project.api_url_in_effect(inputs.api_url.as_deref());
        if reqwest::Url::parse(&api_url).is_err() {
            return Err(RunError::Invalid(vec![Diagnostic::error(
                "invalid-api-url",
                format!("`{api_url}` is not a URL"),
            )
            .help("e.g. --api-url http://127.0.0.1:8787")]));
        }
        let state = inputs.state_location(&project);
        Ok(Prepared {
            campaign,
            project,
            api_url,
            state,
            warnings: diagnostics,
        })
    }

    /// `--at TIME` (in the campaign's zone when it has no offset), or now.
    pub fn at(&self, at: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, RunError> {
        resolve_at(at, &self.campaign)
    }

    /// The project file (smax.yaml) the campaign was loaded with, if any.
    pub fn project_file(&self) -> Option<&Path> {
        self.project.file.as_ref().map(|f| f.source.path.as_path())
    }
}

/// `--at TIME` (in the campaign's zone when it has no offset), or now.
pub fn resolve_at(
    at: Option<&str>,
    campaign: &Campaign,
) -> Result<chrono::DateTime<chrono::Utc>, RunError> {
    let Some(text) = at else {
        return Ok(chrono::Utc::now());
    };
    let tz = campaign
        .schedule
        .as_ref()
        .map(|s| s.timezone())
        .unwrap_or(chrono_tz::UTC);
    crate::schedule::parse_when(text, tz).map_err(|e| {
        RunError::Invalid(vec![Diagnostic::error(
            "usage",
            format!("--at `{text}`: {e}"),
        )])
    })
}

/// A campaign ready to send: loaded, within the platform's limit, with its token read
/// and its time fixed.
pub struct PreparedRun {
    pub prepared: Prepared,
    pub token: Secret,
    /// The time the run acts at (`--at`, else when it was prepared).
    pub at: chrono::DateTime<chrono::Utc>,
    /// `run --plan`: the reviewed plan this run must match exactly.
    pub binding: Option<PlanBinding>,
}

/// What a saved plan fixes about the run that sends it (`run --plan`); the files
/// it was made from are checked before the run is prepared.
#[derive(Debug, Clone)]
pub struct PlanBinding {
    /// The plan file, for messages.
    pub file: std::path::PathBuf,
    pub run_id: String,
    /// `now` as the plan's templates saw it.
    pub now: String,
    pub requests_digest: String,
}

impl PreparedRun {
    /// Checks what only sending needs: the rate against the real API, and the token.
    pub fn new(prepared: Prepared, at: Option<&str>) -> Result<PreparedRun, RunError> {
        let campaign = &prepared.campaign;
        let rate = campaign.delivery.rate;
        if rate > PLATFORM_RATE_LIMIT && is_real_api(&prepared.api_url) {
            return Err(RunError::Invalid(vec![Diagnostic::error(
                "rate-above-platform-limit",
                format!(
                    "{}: rate {rate}/s is above the platform's limit of {PLATFORM_RATE_LIMIT} requests per second per bot",
                    campaign.path.display()
                ),
            )
            .help(format!(
                "lower `delivery.rate` to {PLATFORM_RATE_LIMIT} or less; higher rates are allowed only against another --api-url (e.g. the sandbox)"
            ))]));
        }
        let token = read_token(&campaign.bot.token, campaign.bot.label())
            .map_err(|d| RunError::Invalid(vec![d]))?;
        let at = prepared.at(at)?;
        Ok(PreparedRun {
            prepared,
            token,
            at,
            binding: None,
        })
    }

    /// This run must send exactly the plan `binding` describes.
    pub fn bound_to(mut self, binding: PlanBinding) -> PreparedRun {
        self.binding = Some(binding);
        self
    }

    pub fn campaign(&self) -> &Campaign {
        &self.prepared.campaign
    }
}

/// Reads a bot's token and registers it with the scrubber before anything can print it.
fn read_token(source: &TokenSource, bot_label: &str) -> Result<Secret, Diagnostic> {
    let token = match source {
        TokenSource::Env(var) => std::env::var(var).map_err(|_| {
            Diagnostic::error(
                "missing-token",
                format!("the environment variable `{var}` (bot `{bot_label}`'s token) is not set"),
            )
            .help(format!(
                "export {var}=… (in CI: a repository secret mapped to {var})"
            ))
        })?,
        TokenSource::File(path) => crate::redact::read_secret_file(path).map_err(|e| {
            Diagnostic::error(
                "missing-token",
                format!(
                    "cannot read the token file `{}`: {}",
                    path.display(),
                    io_reason(&e)
                ),
            )
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(Diagnostic::error(
            "missing-token",
            format!("bot `{bot_label}`'s token is empty"),
        ));
    }
    crate::redact::register(&token);
    Ok(Secret::new(token))
}
