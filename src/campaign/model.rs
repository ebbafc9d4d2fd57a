//! The file formats as written: serde + schemars types.
//!
//! These types are the single source of `schemas/*.schema.json`; their doc
//! comments are what an editor shows on hover. Nothing here is validated beyond
//! shape: `campaign::load` turns them into a checked [`super::Campaign`].

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{ApiVersion, MessagingTag, PriorityChannel, TagStyle, PLATFORM_RATE_LIMIT};
use crate::audience::ColumnType;

/// A campaign: who receives what, through which bot, when and how fast.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "smax-campaign campaign file")]
pub struct CampaignFile {
    /// Format version of this file. Always 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Identity of the campaign's runs: lowercase letters, digits, `-` and `_`,
    /// starting with a letter or digit. Renaming a campaign starts new runs.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"), length(max = 100))]
    pub name: String,
    /// What the campaign is for, shown in plans and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The bot that sends: a name from `bots:` in smax.yaml, or an inline bot.
    pub bot: BotRef,
    /// Constants for templates, available as `{{ vars.NAME }}`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub vars: IndexMap<String, serde_json::Value>,
    /// Who receives the campaign.
    pub audience: AudienceSpec,
    /// How a row of the audience becomes the platform's recipient identifiers.
    pub recipient: RecipientSpec,
    /// What is sent.
    pub message: MessageSpec,
    /// When the campaign runs. Without it, the campaign runs when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// How fast and how persistently the campaign is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// A bot named in smax.yaml, or defined inline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum BotRef {
    /// The name of a bot under `bots:` in smax.yaml.
    Named(String),
    /// An inline bot definition.
    Inline(BotSpec),
}

/// A bot of the platform and where its token comes from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BotSpec {
    /// The platform's BOT_ID.
    #[schemars(length(min = 1))]
    pub id: String,
    /// The environment variable that holds the bot's token (never the token itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub token_env: Option<String>,
    /// A file that holds the bot's token (relative to the file that names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// API version: v1 (block sends and attributes by messenger user id) or v2
    /// (customer identifiers, text messages). Default v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiVersion>,
    /// V1 only: how `messaging_tag` is written. `quoted` (default) sends
    /// `messaging_tag="TAG"` as the platform's page shows; `bare` sends `messaging_tag=TAG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1_tag_style: Option<TagStyle>,
}

/// Where the audience comes from and which of its rows receive the campaign.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceSpec {
    /// One or more sources, read in order.
    #[schemars(length(min = 1))]
    pub from: Vec<SourceSpec>,
    /// A template expression over the row; rows where it is false are skipped
    /// (counted as `filtered`). Example: `orders|int >= 3 and city == 'Hà Nội'`.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    /// Suppression lists (opt-outs). The `key` template is applied to their rows
    /// too; audience rows with a matching key are skipped (`suppressed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<SourceSpec>,
    /// Dedupe and resume key, a template. Default: the first recipient
    /// identifier (`user_id` for v1; for v2 the first of customer_id,
    /// customer_phone, customer_email, customer_fbid that the campaign sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One audience source.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceSpec {
    /// A CSV file with a header row, UTF-8 (a byte-order mark is accepted).
    Csv(CsvSource),
    /// A file of JSON objects, one a line.
    Jsonl(JsonlSource),
    /// Rows written inline.
    Users(Vec<serde_json::Map<String, serde_json::Value>>),
}

/// A CSV source: a path (every column a string), or a path with options.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CsvSource {
    /// Path relative to the campaign file.
    Path(String),
    Detailed(CsvOptions),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Path relative to the campaign file.
    pub path: String,
    /// Column types. Columns not named here stay strings (a phone number keeps
    /// its leading zero). A cell that does not parse as its type makes the row invalid.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub types: IndexMap<String, ColumnType>,
    /// Field delimiter, one character. Default `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: Option<String>,
}

/// A JSON-lines source: a path, or a path with options.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum JsonlSource {
    /// Path relative to the campaign file.
    Path(String),
    Detailed(JsonlOptions),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlOptions {
    /// Path relative to the campaign file.
    pub path: String,
}

/// Recipient identifiers, each a template over the row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientSpec {
    /// V1: the messenger user id (`{{messenger user id}}` or `{{fb_id}}` of the platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// V2: the platform's customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// V2: the customer's phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_phone: Option<String>,
    /// V2: the customer's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// V2: the customer's Facebook id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_fbid: Option<String>,
    /// V2: which identifier the platform tries first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    pub priority: Option<Vec<PriorityChannel>>,
}

/// What each recipient receives.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// Messenger messaging tag, for users outside the 24-hour window. HUMAN_AGENT is v2 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<MessagingTag>,
    /// V1: the name of the block to send; a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_name: Option<String>,
    /// V1 or V2: the id of the block to send; a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_id: Option<String>,
    /// V2: the text to send (shorthand for `messages: [{text: ...}]`); a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// V2: message objects; every string inside is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub messages: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// User attributes (V1: set before the block renders). Values are templates;
    /// quote numbers (`"10"`) so they stay exactly as written.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, String>,
    /// V2: a one-time notification token; single use, so it must vary per recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_notif_token: Option<String>,
    /// V2: a recurring notification messages token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_messages_token: Option<String>,
}

/// When the campaign runs: one occurrence (`at`) or a cron schedule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// One occurrence, RFC 3339 (e.g. `2026-11-27T09:00:00+07:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// A crontab expression: 5 fields (minute hour day-of-month month day-of-week),
    /// or 6 with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly. Read on
    /// the wall clock of `timezone`. Day-of-week: 0 and 7 are Sunday; steps (`*/2`,
    /// `1/2`) stay within SUN-SAT. Ranges do not wrap (`FRI-SUN`: write
    /// `FRI,SAT,SUN`). When day-of-month and day-of-week both restrict, either
    /// matching is enough (`0 9 13 * FRI`: the 13th and every Friday); when one starts
    /// with `*`, even `*/2`, both must match (`0 0 */2 * MON`: Mondays on odd days).
    /// A skipped local time runs after the clock change, a repeated one once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone name (e.g. `Asia/Ho_Chi_Minh`). Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// First day (or instant) occurrences may fall on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    /// Last day (or instant) occurrences may fall on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<String>,
    /// An occurrence older than this when first seen is reported missed, never
    /// sent late (e.g. `2h`). Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
    /// Local send window `HH:MM-HH:MM`: sending pauses outside it and resumes inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{2}:\d{2}-\d{2}:\d{2}$"))]
    pub window: Option<String>,
}

/// Delivery settings. Any of them may be set for all campaigns in smax.yaml `defaults.delivery`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverySpec {
    /// Requests per second for this bot; at most [`PLATFORM_RATE_LIMIT`]
    /// against the real API, and that by default. (The schema's wording comes
    /// from `rate_description`, which takes its numbers from the code.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01), description = rate_description())]
    pub rate: Option<f64>,
    /// The most requests in flight at once. Below this cap the number adapts
    /// to the observed round trip so the bot reaches its rate. Default 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: Option<u32>,
    /// How long one request may take (e.g. `10s`). Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retries for retryable failures (429, 5xx, connection refused). Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub retries: Option<u32>,
    /// Stop the run past this many failures: a share (`5%`, counted after 100
    /// attempts) or an absolute count (`50`). Default 5%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<MaxFailuresSpec>,
    /// Invalid recipients tolerated: a count (`3`) or a share of the recipients
    /// that reach rendering (`2%`). With more, `run` sends nothing, lists them
    /// and exits 1. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_invalid: Option<MaxFailuresSpec>,
    /// Retry requests whose outcome is unknown (timeouts after the request was
    /// written). Default false: messaging a customer twice is worse than once too few.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_unknown: Option<bool>,
}

/// The schema's description of `delivery.rate`: the platform's limit and the
/// default as the code has them, not as a doc comment would repeat them.
fn rate_description() -> String {
    let default = super::Delivery::default().rate;
    format!(
        "Requests per second for this bot; at most {PLATFORM_RATE_LIMIT} against the real API. Default {default}."
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MaxFailuresSpec {
    /// An absolute count of failed deliveries.
    Count(u64),
    /// A share like `5%`, or a count written as a string.
    Text(#[schemars(regex(pattern = r"^\d+(\.\d+)?%?$"))] String),
}

/// The project file, smax.yaml, found by walking up from a campaign's folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "smax-campaign project file (smax.yaml)")]
pub struct ProjectFile {
    /// Base URL of the API. Default `https://api.smax.bot`; SMAX_API_URL or --api-url override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Run state: a SQLite file, relative to this file (default `.smax/state.db`);
    /// a shared PostgreSQL database, `postgres://USER@HOST:PORT/DB?sslmode=require`
    /// (keep its password out of this file: PGPASSWORD); or `none`. SMAX_STATE or
    /// --state override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Folders outside the project that audience, suppression and token files
    /// may be read from (relative to this file). Without them, every file a
    /// campaign names must lie inside the folder of this file, symlinks
    /// followed: campaigns arrive through pull requests, and CI must not read
    /// whatever they point at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_dirs: Vec<String>,
    /// Bots campaigns refer to by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub bots: IndexMap<String, BotSpec>,
    /// Settings applied to every campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ProjectDefaults>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectDefaults {
    /// Any `delivery:` keys, applied to every campaign (a campaign's own keys win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// The JSON Schemas, generated from these types. Draft-07: editors (the YAML
/// language server) support it best, and its meta-schema is cheap to check
/// at start-up (2020-12's `$dynamicRef` machinery cost 80 ms and 70 MB).
pub fn campaign_schema() -> serde_json::Value {
    schema_of::<CampaignFile>()
}

pub fn project_schema() -> serde_json::Value {
    schema_of::<ProjectFile>()
}

fn schema_of<T: JsonSchema>() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default()
}
