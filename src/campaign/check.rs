//! Meaning checks: what the schema cannot say.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::{
    BotRef, BotSpec, CampaignFile, CsvSource, DeliverySpec, JsonlSource, MaxFailuresSpec,
    ProjectFile, SourceSpec,
};
use super::schema_check::Finding;
use super::yaml::{pointer_segment, Document};
use super::{
    Audience, Bot, Campaign, Content, Delivery, MaxFailures, Message, Parsed, Project, Recipient,
    TemplateSource, TokenSource,
};
use super::{Confinement, Refusal};
use crate::api::{is_real_api, ApiVersion, MessagingTag, PLATFORM_RATE_LIMIT};
use crate::audience::{Source, SourceKind};
use crate::diagnostic::{suggest, Diagnostic, Location, Position, SourceText};
use crate::templates::{find_name, TemplateSet, KEY, WHERE};

/// The longest `delivery.timeout`: a request that takes longer has failed,
/// and the bound keeps the deadline arithmetic far from overflow.
const MAX_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

const RESERVED_ATTRIBUTES: [&str; 4] = ["bot_token", "block_name", "block_id", "messaging_tag"];
const TOKEN_KEYS: [&str; 5] = ["token", "bot_token", "access_token", "api_token", "api_key"];
const PROMOTIONAL: [&str; 11] = [
    "giảm giá",
    "khuyến mãi",
    "khuyến mại",
    "voucher",
    "sale",
    "discount",
    "coupon",
    "ưu đãi",
    "% off",
    "flash sale",
    "mã giảm",
];

/// A literal token anywhere in a file is refused, before anything else.
pub(super) fn literal_tokens(doc: &Document, source: &Arc<SourceText>) -> Vec<Finding> {
    let mut out = Vec::new();
    walk(&doc.value, String::new(), &mut |pointer, key, value| {
        let mut push = |diagnostic: Diagnostic| {
            out.push(Finding {
                diagnostic,
                pointer: pointer.to_owned(),
            })
        };
        let at = |p: &str| match doc.spans.key(p) {
            Some(s) => Location::in_source(source, s.start, s.width),
            None => Location::file(&source.path),
        };
        if let Some(key) = key {
            let is_attribute = pointer.starts_with("/message/attributes/");
            if TOKEN_KEYS.contains(&key) && !is_attribute && value.is_string() {
                push(
                    Diagnostic::error("literal-token", format!("`{key}` holds a literal secret; tokens never live in campaign or project files"))
                        .at(at(pointer))
                        .help("put the token in an environment variable (e.g. a CI secret) and name it with `token_env: SMAX_SHOP_TOKEN`, or use `token_file:`"),
                );
            }
        }
        if let Some(s) = value.as_str() {
            if s.contains("bot_token=") {
                push(
                    Diagnostic::error(
                        "literal-token",
                        "this value carries `bot_token=`: tokens never live in campaign files",
                    )
                    .at(at(pointer))
                    .help("the tool adds the token from `token_env` when it sends; remove it here"),
                );
            }
        }
    });
    out
}

fn walk(
    value: &serde_json::Value,
    pointer: String,
    f: &mut dyn FnMut(&str, Option<&str>, &serde_json::Value),
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{pointer}/{}", pointer_segment(k));
                f(&p, Some(k), v);
                walk(v, p, f);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{pointer}/{i}");
                f(&p, None, v);
                walk(v, p, f);
            }
        }
        _ => {}
    }
}

pub(super) fn check_project(project: &Parsed<ProjectFile>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(url) = &project.content.api_url {
        crate::redact::register_url_password(url);
        check_api_url(url, project.value_at("/api_url"), &mut out);
    }
    if let Some(state) = &project.content.state {
        crate::redact::register_url_password(state);
    }
    let root = super::folder_of(&project.source.path);
    let data_dirs = super::data_dirs(&root, &project.content);
    for (i, resolved) in data_dirs.iter().enumerate() {
        if let Some(why) = super::confine::data_dir_refusal(resolved, &root) {
            out.push(
                Diagnostic::error(
                    "data-dir-too-wide",
                    format!(
                        "data folder `{}` cannot be opted in: {why}",
                        resolved.display()
                    ),
                )
                .at(project.value_at(&format!("/data_dirs/{i}")))
                .help("name the folder that holds the audience files, e.g. `../shared-data`; campaign files arrive through pull requests, so smax.yaml must not open the machine's own files to them"),
            );
        } else if !resolved.is_dir() {
            out.push(
                Diagnostic::error(
                    "missing-folder",
                    format!(
                        "data folder `{}` does not exist or is not a folder",
                        resolved.display()
                    ),
                )
                .at(project.value_at(&format!("/data_dirs/{i}")))
                .help("paths are relative to smax.yaml's folder"),
            );
        }
    }
    let allowed = Confinement::new(std::iter::once(root).chain(data_dirs));
    for (name, bot) in &project.content.bots {
        let pointer = format!("/bots/{}", pointer_segment(name));
        token_source(bot, project, &pointer, &allowed, &mut out);
    }
    if let Some(defaults) = project
        .content
        .defaults
        .as_ref()
        .and_then(|d| d.delivery.as_ref())
    {
        let mut delivery = Delivery::default();
        apply_delivery(
            &mut delivery,
            defaults,
            project,
            "/defaults/delivery",
            &mut out,
        );
    }
    out
}

/// A URL for messages: scheme, host and port (never a password or a path).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            (Some(host), None) => format!("{}://{host}", u.scheme()),
            _ => u.scheme().to_owned(),
        },
        Err(_) => "an unparsable URL".into(),
    }
}

/// `delivery.rate` (the campaign's, else the project's default) against the
/// platform's limit: an error when the campaign is checked for the real API
/// (`run` would refuse it), a warning otherwise. Checked per campaign, not
/// with smax.yaml: which API a campaign goes to is known only with it (an
/// --api-url overrides `api_url`).
fn check_rate(
    file: &Parsed<CampaignFile>,
    project: &Project,
    rate: f64,
    api_url: Option<&str>,
    out: &mut Vec<Diagnostic>,
) {
    if rate <= PLATFORM_RATE_LIMIT {
        return;
    }
    let own = file
        .content
        .delivery
        .as_ref()
        .is_some_and(|d| d.rate.is_some());
    let at = match (&project.file, own) {
        (Some(pf), false) => pf.value_at("/defaults/delivery/rate"),
        _ => file.value_at("/delivery/rate"),
    };
    let whence = if own {
        ""
    } else {
        " (from smax.yaml `defaults.delivery`)"
    };
    match api_url {
        Some(url) if is_real_api(url) => {
            out.push(
                Diagnostic::error(
                    "rate-above-platform-limit",
                    format!(
                        "rate {rate}/s{whence} is above the platform's limit of {PLATFORM_RATE_LIMIT} requests per second per bot, and the API in effect is the real one (`{}`)",
                        shown_url(url)
                    ),
                )
                .at(at)
                .help(format!("lower `delivery.rate` to {PLATFORM_RATE_LIMIT} or less: `run` refuses more against the real API; higher rates are for another URL (--api-url, SMAX_API_URL or smax.yaml `api_url`), such as the sandbox")),
            );
        }
        _ => {
            let allowed = match api_url {
                Some(url) => format!(
                    "it is allowed against `{}`, which is not the real API",
                    shown_url(url)
                ),
                None => "it is allowed only against another URL such as the sandbox".into(),
            };
            out.push(
                Diagnostic::warning(
                    "rate-above-platform-limit",
                    format!("rate {rate}/s{whence} is above the platform's {PLATFORM_RATE_LIMIT} requests per second per bot"),
                )
                .at(at)
                .help(format!("`run` refuses it against the real API; {allowed}")),
            );
        }
    }
}

fn check_api_url(url: &str, at: Location, out: &mut Vec<Diagnostic>) {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || reqwest::Url::parse(url).is_err()
    {
        out.push(
            Diagnostic::error("invalid-api-url", format!("`{url}` is not an http(s) URL"))
                .at(at)
                .help("e.g. `https://api.smax.bot`, or `http://127.0.0.1:8787` for the sandbox"),
        );
    }
}

/// A `token_file` as it is checked and read: relative to the file naming it,
/// `.` and `..` resolved by the text of the path.
fn token_file_path(naming_file: &Path, token_file: &str) -> PathBuf {
    let base = naming_file.parent().unwrap_or(Path::new("."));
    super::normalize(&base.join(token_file))
}

fn token_source<T>(
    bot: &BotSpec,
    file: &Parsed<T>,
    pointer: &str,
    allowed: &Confinement,
    out: &mut Vec<Diagnostic>,
) -> Option<TokenSource> {
    match (&bot.token_env, &bot.token_file) {
        (Some(env), None) => {
            // Registered now, not when sending: `validate` and `plan` print
            // audience headers and rows, which could hold the token.
            crate::redact::register_env(env);
            Some(TokenSource::Env(env.clone()))
        }
        (None, Some(path)) => {
            let resolved = token_file_path(&file.source.path, path);
            if let Err(refusal) = allowed.check_file(&resolved) {
                out.push(
                    super::refusal_diagnostic("token file", &resolved, &refusal, allowed)
                        .at(file.value_at(&format!("{pointer}/token_file"))),
                );
                return None;
            }
            crate::redact::register_file(&resolved);
            Some(TokenSource::File(resolved))
        }
        (Some(_), Some(_)) => {
            out.push(
                Diagnostic::error(
                    "token-source",
                    "a bot names its token once: `token_env` or `token_file`, not both",
                )
                .at(file.key_at(&format!("{pointer}/token_file"))),
            );
            None
        }
        (None, None) => {
            out.push(
                Diagnostic::error("token-source", "the bot does not say where its token comes from")
                    .at(file.key_at(pointer))
                    .help("add `token_env: SMAX_BOT_TOKEN` (the environment variable that holds the token)"),
            );
            None
        }
    }
}

fn apply_delivery<T>(
    delivery: &mut Delivery,
    spec: &DeliverySpec,
    file: &Parsed<T>,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(rate) = spec.rate {
        delivery.rate = rate;
    }
    if let Some(c) = spec.concurrency {
        delivery.concurrency = c;
    }
    if let Some(t) = &spec.timeout {
        match humantime::parse_duration(t) {
            Ok(d) if d > MAX_REQUEST_TIMEOUT => out.push(
                Diagnostic::error(
                    "invalid-duration",
                    format!("a request timeout of `{t}` is longer than the 10 minutes allowed"),
                )
                .at(file.value_at(&format!("{pointer}/timeout")))
                .help("a request that takes minutes has failed; `10s` is the default"),
            ),
            Ok(d) if !d.is_zero() => delivery.timeout = d,
            _ => out.push(
                Diagnostic::error("invalid-duration", format!("`{t}` is not a duration"))
                    .at(file.value_at(&format!("{pointer}/timeout")))
                    .help("write it like `10s`, `1m` or `1m 30s`"),
            ),
        }
    }
    if let Some(r) = spec.retries {
        delivery.retries = r;
    }
    if let Some(r) = spec.retry_unknown {
        delivery.retry_unknown = r;
    }
    // The same form for both: a share up to 100% or a count.
    for (key, code, examples, spec, slot) in [
        (
            "max_failures",
            "invalid-max-failures",
            "(`5%`) or a count (`50`)",
            &spec.max_failures,
            &mut delivery.max_failures,
        ),
        (
            "max_invalid",
            "invalid-max-invalid",
            "(`2%`) or a count (`3`)",
            &spec.max_invalid,
            &mut delivery.max_invalid,
        ),
    ] {
        let Some(m) = spec else { continue };
        match parse_tolerance(m) {
            Some(v) => *slot = v,
            None => out.push(
                Diagnostic::error(code, format!("{key} is a share up to 100% {examples}"))
                    .at(file.value_at(&format!("{pointer}/{key}"))),
            ),
        }
    }
}

fn parse_tolerance(spec: &MaxFailuresSpec) -> Option<MaxFailures> {
    match spec {
        MaxFailuresSpec::Count(n) => Some(MaxFailures::Count(*n)),
        MaxFailuresSpec::Text(t) => match t.strip_suffix('%') {
            Some(share) => share
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=100.0).contains(s))
                .map(|s| MaxFailures::Share(s / 100.0)),
            None => t.trim().parse::<u64>().ok().map(MaxFailures::Count),
        },
    }
}

/// Maps a byte offset inside a template (the YAML value at `pointer`) to a
/// position in the file: exact for plain, quoted and block scalars of every
/// style (see [`super::yaml::scalar_position`]).
fn template_position(
    file: &Parsed<CampaignFile>,
    pointer: &str,
    template: &str,
    offset: usize,
) -> Position {
    match file.spans.value(pointer) {
        Some(span) => super::yaml::scalar_position(&file.source.text, &span, template, offset),
        None => Position { line: 1, col: 1 },
    }
}

fn template_location(
    file: &Parsed<CampaignFile>,
    pointer: &str,
    template: &str,
    range: Option<std::ops::Range<usize>>,
) -> Location {
    match range {
        Some(r) => {
            let pos = template_position(file, pointer, template, r.start);
            let width = template
                .get(r.clone())
                .map(|s| s.chars().count() as u32)
                .unwrap_or(1);
            Location::in_source(&file.source, pos, width.clamp(1, 80))
        }
        None => file.value_at(pointer),
    }
}

fn resolve_source(
    spec: &SourceSpec,
    dir: &Path,
    allowed: &Confinement,
    file: &Parsed<CampaignFile>,
    pointer: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<Source> {
    let (path, kind, path_pointer) = match spec {
        SourceSpec::Csv(CsvSource::Path(p)) => (
            p.clone(),
            SourceKind::Csv {
                types: Vec::new(),
                delimiter: b',',
            },
            format!("{pointer}/csv"),
        ),
        SourceSpec::Csv(CsvSource::Detailed(o)) => {
            let delimiter = match o.delimiter.as_deref() {
                None => b',',
                Some(d) if d.len() == 1 => d.as_bytes()[0],
                Some(d) => {
                    out.push(
                        Diagnostic::error(
                            "invalid-delimiter",
                            format!("delimiter `{d}` must be one ASCII character"),
                        )
                        .at(file.value_at(&format!("{pointer}/csv/delimiter"))),
                    );
                    b','
                }
            };
            (
                o.path.clone(),
                SourceKind::Csv {
                    types: o.types.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    delimiter,
                },
                format!("{pointer}/csv/path"),
            )
        }
        SourceSpec::Jsonl(JsonlSource::Path(p)) => {
            (p.clone(), SourceKind::Jsonl, format!("{pointer}/jsonl"))
        }
        SourceSpec::Jsonl(JsonlSource::Detailed(o)) => (
            o.path.clone(),
            SourceKind::Jsonl,
            format!("{pointer}/jsonl/path"),
        ),
        SourceSpec::Users(rows) => {
            let rows = rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let line = file
                        .spans
                        .value(&format!("{pointer}/users/{i}"))
                        .map(|s| u64::from(s.start.line))
                        .unwrap_or(0);
                    (row.clone(), line)
                })
                .collect();
            return Some(Source {
                kind: SourceKind::Inline {
                    rows: Arc::new(rows),
                },
                path: file.source.path.clone(),
            });
        }
    };
    let resolved = super::normalize(&dir.join(&path));
    if let Err(refusal) = allowed.check_file(&resolved) {
        let mut d = super::refusal_diagnostic("audience file", &resolved, &refusal, allowed)
            .at(file.value_at(&path_pointer));
        if matches!(refusal, Refusal::Missing) {
            d = d.help("paths are relative to the campaign file's folder");
        }
        out.push(d);
        return None;
    }
    Some(Source {
        kind,
        path: resolved,
    })
}

struct TemplateField {
    pointer: String,
    source: String,
}

fn collect_templates(c: &CampaignFile) -> Vec<TemplateField> {
    let mut t = Vec::new();
    let mut push = |pointer: String, source: &str| {
        t.push(TemplateField {
            pointer,
            source: source.to_owned(),
        })
    };
    if let Some(w) = &c.audience.where_ {
        push(WHERE.into(), w);
    }
    let r = &c.recipient;
    for (name, v) in [
        ("user_id", &r.user_id),
        ("customer_id", &r.customer_id),
        ("customer_phone", &r.customer_phone),
        ("customer_email", &r.customer_email),
        ("customer_fbid", &r.customer_fbid),
    ] {
        if let Some(v) = v {
            push(format!("/recipient/{name}"), v);
        }
    }
    let m = &c.message;
    for (name, v) in [
        ("block_name", &m.block_name),
        ("block_id", &m.block_id),
        ("text", &m.text),
        ("one_time_notif_token", &m.one_time_notif_token),
        (
            "notification_messages_token",
            &m.notification_messages_token,
        ),
    ] {
        if let Some(v) = v {
            push(format!("/message/{name}"), v);
        }
    }
    if let Some(messages) = &m.messages {
        for (i, msg) in messages.iter().enumerate() {
            let v = serde_json::Value::Object(msg.clone());
            walk(&v, format!("/message/messages/{i}"), &mut |p, _, value| {
                if let Some(s) = value.as_str() {
                    push(p.to_owned(), s);
                }
            });
        }
    }
    for (name, v) in &m.attributes {
        push(format!("/message/attributes/{}", pointer_segment(name)), v);
    }
    t
}

/// The default key: the first recipient identifier the campaign sets.
fn default_key(c: &CampaignFile, api: ApiVersion) -> Option<String> {
    let r = &c.recipient;
    let candidates: [&Option<String>; 4] = match api {
        ApiVersion::V1 => [&r.user_id, &None, &None, &None],
        ApiVersion::V2 => [
            &r.customer_id,
            &r.customer_phone,
            &r.customer_email,
            &r.customer_fbid,
        ],
    };
    candidates.into_iter().flatten().next().cloned()
}

/// Parts of a campaign the schema found wrong (JSON pointers). They are
/// taken out of the typed campaign the meaning checks see, or stood in for;
/// checks that read them are skipped, so that one problem is reported once
/// (an unknown key `txt:` under `message:` is not also "the message sends
/// nothing").
#[derive(Debug, Default)]
pub(super) struct Masked(Vec<String>);

impl Masked {
    pub(super) fn new(pointers: impl IntoIterator<Item = String>) -> Masked {
        Masked(pointers.into_iter().collect())
    }

    /// Whether a schema error sits at `pointer`, inside it or around it.
    fn touches(&self, pointer: &str) -> bool {
        self.0.iter().any(|m| {
            m == pointer
                || m.strip_prefix(pointer).is_some_and(|r| r.starts_with('/'))
                || pointer
                    .strip_prefix(m.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// Checks the meaning of a campaign that passed the schema, meant for `api_url`, with the `masked`
/// parts left unchecked.
pub(super) fn check_campaign_for(
    file: Parsed<CampaignFile>,
    project: &Project,
    api_url: Option<&str>,
    masked: &Masked,
) -> (Option<Campaign>, Vec<Diagnostic>) {
    let mut out: Vec<Diagnostic> = Vec::new();
    let c = &file.content;
    let dir = file
        .source
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let allowed = project.confinement(&dir);

    // The bot. Without one the schema passed, the API version is unknown,
    // and so is what the message and the recipient must hold.
    let api_known = !masked.touches("/bot");
    let bot = if api_known {
        resolve_bot(&file, project, &allowed, &mut out)
    } else {
        None
    };
    let api = bot.as_ref().map(|b| b.api).unwrap_or(ApiVersion::V2);

    // Fields that fit the API version.
    if api_known {
        check_version_fit(&file, api, &mut out);
    }

    // Content: at most one of block_name / block_id / text / messages.
    let m = &c.message;
    let given: Vec<&str> = [
        ("block_name", m.block_name.is_some()),
        ("block_id", m.block_id.is_some()),
        ("text", m.text.is_some()),
        ("messages", m.messages.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    if given.len() > 1 {
        out.push(
            Diagnostic::error(
                "conflicting-content",
                format!(
                    "a message sends one thing, but this one sets {}",
                    given
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )
            .at(file.key_at(&format!("/message/{}", given[1])))
            .help("keep exactly one of block_name, block_id, text, messages"),
        );
    }
    let content = match (given.first().copied(), api) {
        (Some("block_name"), _) => Content::BlockName(m.block_name.clone().unwrap_or_default()),
        (Some("block_id"), _) => Content::BlockId(m.block_id.clone().unwrap_or_default()),
        (Some("text"), _) => Content::Messages {
            messages: vec![serde_json::Map::from_iter([(
                "text".to_string(),
                serde_json::Value::String(m.text.clone().unwrap_or_default()),
            )])],
            from_text: true,
        },
        (Some(_), _) => Content::Messages {
            messages: m.messages.clone().unwrap_or_default(),
            from_text: false,
        },
        (None, _) if !api_known || masked.touches("/message") => Content::AttributesOnly,
        (None, ApiVersion::V2) => {
            out.push(
                Diagnostic::error(
                    "missing-content",
                    "a v2 campaign sends a block or messages, and this one sets neither",
                )
                .at(file.key_at("/message"))
                .help("add `text: \"…\"`, `messages: [...]` or `block_id: \"…\"`"),
            );
            Content::AttributesOnly
        }
        (None, ApiVersion::V1) => {
            if m.attributes.is_empty() {
                out.push(
                    Diagnostic::error("missing-content", "the message sends nothing: no block and no attributes")
                        .at(file.key_at("/message"))
                        .help("add `block_name:` or `block_id:`, or `attributes:` for an attributes-only campaign"),
                );
            }
            Content::AttributesOnly
        }
    };

    if m.one_time_notif_token.is_some() && m.notification_messages_token.is_some() {
        out.push(
            Diagnostic::error(
                "conflicting-tokens",
                "set `one_time_notif_token` or `notification_messages_token`, not both",
            )
            .at(file.key_at("/message/notification_messages_token")),
        );
    }

    // Attribute names.
    for name in m.attributes.keys() {
        let pointer = format!("/message/attributes/{}", pointer_segment(name));
        if RESERVED_ATTRIBUTES.contains(&name.as_str()) || name.starts_with("chatfuel_") {
            out.push(
                Diagnostic::error("reserved-attribute", format!("attribute name `{name}` is reserved by the platform"))
                    .at(file.key_at(&pointer))
                    .help("rename the attribute; `bot_token`, `block_name`, `block_id`, `messaging_tag` and names starting `chatfuel_` are the platform's"),
            );
        } else if name.is_empty() {
            out.push(
                Diagnostic::error("reserved-attribute", "an attribute needs a name")
                    .at(file.key_at(&pointer)),
            );
        }
    }

    // Identifiers.
    let r = &c.recipient;
    match api {
        _ if !api_known || masked.touches("/recipient") => {}
        ApiVersion::V1 if r.user_id.is_none() => out.push(
            Diagnostic::error("missing-identifier", "a v1 campaign needs `recipient.user_id` (the messenger user id)")
                .at(file.key_at("/recipient"))
                .help("e.g. `user_id: \"{{ messenger_user_id }}\"`"),
        ),
        ApiVersion::V2
            if r.customer_id.is_none() && r.customer_phone.is_none() && r.customer_email.is_none() && r.customer_fbid.is_none() =>
        {
            out.push(
                Diagnostic::error("missing-identifier", "a v2 campaign needs at least one of customer_id, customer_phone, customer_email, customer_fbid")
                    .at(file.key_at("/recipient"))
                    .help("e.g. `customer_phone: \"{{ phone }}\"`"),
            )
        }
        _ => {}
    }
    if let Some(priority) = &r.priority {
        let mut seen = HashSet::new();
        if priority.iter().any(|p| !seen.insert(*p)) {
            out.push(
                Diagnostic::error(
                    "invalid-priority",
                    "`priority` names each channel at most once",
                )
                .at(file.value_at("/recipient/priority")),
            );
        }
    }

    // Templates compile.
    let fields = collect_templates(c);
    let key_source = c.audience.key.clone().or_else(|| default_key(c, api));
    let mut sources: Vec<(&str, &str)> = fields
        .iter()
        .map(|f| (f.pointer.as_str(), f.source.as_str()))
        .collect();
    if let Some(k) = &key_source {
        sources.push((KEY, k));
    }
    let (set, errors) = TemplateSet::compile(sources.iter().copied());
    for e in &errors {
        let pointer = if e.name == KEY && c.audience.key.is_none() {
            first_identifier_pointer(c, api)
        } else {
            e.name.clone()
        };
        let template = sources
            .iter()
            .find(|(n, _)| *n == e.name)
            .map(|(_, s)| *s)
            .unwrap_or("");
        out.push(
            Diagnostic::error(
                "template-syntax",
                format!(
                    "template error in {}: {}",
                    super::schema_check::dotted(&pointer),
                    e.message
                ),
            )
            .at(template_location(
                &file,
                &pointer,
                template,
                e.range.clone(),
            )),
        );
    }

    // Audience sources exist; their headers have what templates read.
    let mut audience_sources = Vec::new();
    for (i, spec) in c.audience.from.iter().enumerate() {
        if let Some(s) = resolve_source(
            spec,
            &dir,
            &allowed,
            &file,
            &format!("/audience/from/{i}"),
            &mut out,
        ) {
            audience_sources.push((i, s));
        }
    }
    let mut exclude_sources = Vec::new();
    for (i, spec) in c.audience.exclude.iter().enumerate() {
        if let Some(s) = resolve_source(
            spec,
            &dir,
            &allowed,
            &file,
            &format!("/audience/exclude/{i}"),
            &mut out,
        ) {
            exclude_sources.push((i, s));
        }
    }
    // (variable, template pointer, source), builtins (`range`, `loop`, …) left out.
    let mut per_row_names: Vec<(String, String, &str)> = Vec::new();
    for f in &fields {
        let mut names: Vec<String> = set.undeclared(&f.pointer).into_iter().collect();
        // In source order: the engine's set has none, and diagnostics must not move.
        names.sort_by_key(|v| (find_name(&f.source, v).unwrap_or(usize::MAX), v.clone()));
        for v in names.into_iter().filter(|v| !set.is_builtin(v)) {
            per_row_names.push((v, f.pointer.clone(), &f.source));
        }
    }
    let mut key_names: Vec<String> = key_source
        .as_ref()
        .filter(|_| !masked.touches(KEY))
        .map(|_| set.undeclared(KEY).into_iter().collect())
        .unwrap_or_default();
    key_names.retain(|v| !set.is_builtin(v));
    key_names.sort();
    for (i, s) in &audience_sources {
        let pointer = format!("/audience/from/{i}");
        check_columns(
            &file,
            s,
            &pointer,
            &per_row_names,
            &key_names,
            key_source.as_deref(),
            c,
            api,
            true,
            &mut out,
        );
    }
    for (i, s) in &exclude_sources {
        let pointer = format!("/audience/exclude/{i}");
        check_columns(
            &file,
            s,
            &pointer,
            &[],
            &key_names,
            key_source.as_deref(),
            c,
            api,
            false,
            &mut out,
        );
    }

    // `vars.NAME` must be declared.
    for f in &fields {
        if !set.contains(&f.pointer) {
            continue;
        }
        let nested = set_nested(&set, &f.pointer);
        for var in nested.iter().filter_map(|n| n.strip_prefix("vars.")) {
            let var = var.split('.').next().unwrap_or(var);
            if !c.vars.contains_key(var) {
                let mut d = Diagnostic::error(
                    "unknown-var",
                    format!("`vars.{var}` is not declared under `vars:`"),
                )
                .at(template_location(
                    &file,
                    &f.pointer,
                    &f.source,
                    find_name(&f.source, var).map(|o| o..o + var.len()),
                ));
                if let Some(s) = suggest(var, c.vars.keys().map(String::as_str)) {
                    d = d.help(format!("did you mean `vars.{s}`?"));
                }
                out.push(d);
            }
        }
    }

    // Messenger policy (what the tag allows only once the tag is known).
    let tag_known = !masked.touches("/message/tag");
    policy_warnings(&file, &set, api, &content, tag_known, &mut out);

    // Delivery.
    let mut delivery = Delivery::default();
    if let Some(defaults) = project
        .content()
        .and_then(|p| p.defaults.as_ref())
        .and_then(|d| d.delivery.as_ref())
    {
        if let Some(pf) = &project.file {
            apply_delivery(
                &mut delivery,
                defaults,
                pf,
                "/defaults/delivery",
                &mut Vec::new(),
            );
        }
    }
    if let Some(spec) = &c.delivery {
        apply_delivery(&mut delivery, spec, &file, "/delivery", &mut out);
    }
    check_rate(&file, project, delivery.rate, api_url, &mut out);

    // Schedule.
    // Without its `at` or `cron` a schedule would be "neither given" again.
    let schedule = c
        .schedule
        .as_ref()
        .filter(|_| !masked.touches("/schedule/at") && !masked.touches("/schedule/cron"))
        .and_then(|spec| super::check_schedule(&file, spec, &mut out));

    let has_errors = out.iter().any(Diagnostic::is_error);
    let (Some(bot), Some(key), false) = (bot, key_source, has_errors) else {
        return (None, out);
    };
    let mut templates: Vec<TemplateSource> = fields
        .into_iter()
        .map(|f| TemplateSource {
            name: f.pointer,
            source: f.source,
        })
        .collect();
    templates.push(TemplateSource {
        name: KEY.into(),
        source: key.clone(),
    });
    let campaign = Campaign {
        path: file.source.path.clone(),
        dir,
        name: c.name.clone(),
        description: c.description.clone(),
        bot,
        vars: c.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        audience: Audience {
            sources: audience_sources.into_iter().map(|(_, s)| s).collect(),
            where_expr: c.audience.where_.clone(),
            exclude: exclude_sources.into_iter().map(|(_, s)| s).collect(),
            key,
        },
        recipient: Recipient {
            user_id: r.user_id.clone(),
            customer_id: r.customer_id.clone(),
            customer_email: r.customer_email.clone(),
            customer_phone: r.customer_phone.clone(),
            customer_fbid: r.customer_fbid.clone(),
            priority: r.priority.clone().unwrap_or_default(),
        },
        message: Message {
            tag: m.tag,
            content,
            attributes: m
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            one_time_notif_token: m.one_time_notif_token.clone(),
            notification_messages_token: m.notification_messages_token.clone(),
        },
        schedule,
        delivery,
        templates,
    };
    (Some(campaign), out)
}

fn set_nested(set: &TemplateSet, name: &str) -> BTreeSet<String> {
    set.undeclared_nested(name).into_iter().collect()
}

fn first_identifier_pointer(c: &CampaignFile, api: ApiVersion) -> String {
    let r = &c.recipient;
    let names: &[(&str, &Option<String>)] = match api {
        ApiVersion::V1 => &[("user_id", &r.user_id)],
        ApiVersion::V2 => &[
            ("customer_id", &r.customer_id),
            ("customer_phone", &r.customer_phone),
            ("customer_email", &r.customer_email),
            ("customer_fbid", &r.customer_fbid),
        ],
    };
    names
        .iter()
        .find(|(_, v)| v.is_some())
        .map(|(n, _)| format!("/recipient/{n}"))
        .unwrap_or_else(|| "/recipient".into())
}

/// Lines of a JSONL source whose keys `validate` takes as its fields: enough
/// to see every field a real file has, few enough to read in a moment.
const SAMPLED_JSONL_LINES: usize = 1_000;
/// Bytes of a JSONL source read for that sample at most, whatever its lines
/// (a file of one endless line included).
const SAMPLED_JSONL_BYTES: u64 = 16 << 20;
/// Field names listed in a help text at most.
const SHOWN_FIELDS: usize = 30;

/// The names a source's rows have, as far as `validate` can know them
/// without reading the whole audience.
struct Fields {
    names: Vec<String>,
    /// "column" or "field".
    noun: &'static str,
    /// What holds them, for messages: "the audience file `a.csv`".
    holder: String,
}

/// The fields of `source`: a CSV header, the keys of a JSONL file's first
/// lines, the keys of inline rows. None when there is nothing to compare
/// against (an empty JSONL file or `users: []`); Err when the file cannot be read.
fn source_fields(source: &Source, is_audience: bool) -> Result<Option<Fields>, String> {
    let what = if is_audience {
        "audience file"
    } else {
        "suppression list"
    };
    let path = source.path.display();
    match &source.kind {
        SourceKind::Csv { delimiter, .. } => {
            let names = crate::audience::read_csv_header(&source.path, *delimiter)
                .map_err(|reason| format!("cannot read the header of `{path}`: {reason}"))?;
            Ok(Some(Fields {
                names,
                noun: "column",
                holder: format!("the {what} `{path}`"),
            }))
        }
        SourceKind::Jsonl => {
            let names =
                crate::audience::jsonl_keys(&source.path, SAMPLED_JSONL_LINES, SAMPLED_JSONL_BYTES)
                    .map_err(|reason| format!("cannot read `{path}`: {reason}"))?;
            Ok((!names.is_empty()).then(|| Fields {
                names,
                noun: "field",
                holder: format!(
                    "the {what} `{path}` (in its first {} lines)",
                    crate::human::thousands(SAMPLED_JSONL_LINES as u64)
                ),
            }))
        }
        SourceKind::Inline { rows } => {
            let mut names: Vec<String> = Vec::new();
            for (row, _) in rows.iter() {
                for key in row.keys() {
                    if !names.contains(key) {
                        names.push(key.clone());
                    }
                }
            }
            let whose = if is_audience {
                "audience"
            } else {
                "suppression list"
            };
            Ok((!rows.is_empty()).then(|| Fields {
                names,
                noun: "field",
                holder: format!("any of the {whose}'s inline `users:` rows"),
            }))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_columns(
    file: &Parsed<CampaignFile>,
    source: &Source,
    pointer: &str,
    names: &[(String, String, &str)],
    key_names: &[String],
    key_source: Option<&str>,
    c: &CampaignFile,
    api: ApiVersion,
    is_audience: bool,
    out: &mut Vec<Diagnostic>,
) {
    let fields = match source_fields(source, is_audience) {
        Ok(Some(fields)) => fields,
        Ok(None) => return,
        Err(message) => {
            // At the file's path, however the source is written.
            let at = ["/csv/path", "/csv", "/jsonl/path", "/jsonl"]
                .iter()
                .map(|tail| format!("{pointer}{tail}"))
                .find(|p| file.spans.value(p).is_some())
                .unwrap_or_else(|| pointer.to_owned());
            out.push(Diagnostic::error("unreadable-audience", message).at(file.value_at(&at)));
            return;
        }
    };
    let columns: HashSet<&str> = fields.names.iter().map(String::as_str).collect();
    let mut shown = fields
        .names
        .iter()
        .take(SHOWN_FIELDS)
        .map(|h| format!("`{h}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if fields.names.len() > SHOWN_FIELDS {
        shown.push_str(&format!(" and {} more", fields.names.len() - SHOWN_FIELDS));
    }
    let mut reported = HashSet::new();
    let key_pointer = if c.audience.key.is_some() {
        KEY.to_string()
    } else {
        first_identifier_pointer(c, api)
    };
    let key_template = key_source.unwrap_or("");
    let key_entries: Vec<(String, String, &str)> = key_names
        .iter()
        .map(|n| (n.clone(), key_pointer.clone(), key_template))
        .collect();
    for (var, template_pointer, template) in names.iter().chain(key_entries.iter()) {
        if columns.contains(var.as_str()) || !reported.insert(var.clone()) {
            continue;
        }
        let template_pointer = if template_pointer == KEY {
            "/audience/key"
        } else {
            template_pointer.as_str()
        };
        let range = find_name(template, var).map(|o| o..o + var.len());
        let noun = fields.noun;
        let mut d = Diagnostic::error(
            "unknown-template-variable",
            format!(
                "{} uses `{var}`, which is not a {noun} of {}",
                super::schema_check::dotted(template_pointer),
                fields.holder
            ),
        )
        .at(template_location(file, template_pointer, template, range));
        d = match suggest(var, fields.names.iter().map(String::as_str)) {
            Some(s) => d.help(format!("did you mean `{s}`? the {noun}s are {shown}")),
            None => d.help(format!("the {noun}s are {shown}")),
        };
        out.push(d);
    }
    let SourceKind::Csv { types, .. } = &source.kind else {
        return;
    };
    for (name, _) in types {
        if !columns.contains(name.as_str()) {
            let mut d = Diagnostic::error(
                "unknown-column",
                format!(
                    "`types` names `{name}`, which is not a column of `{}`",
                    source.path.display()
                ),
            )
            .at(file.key_at(&format!("{pointer}/csv/types/{}", pointer_segment(name))));
            if let Some(s) = suggest(name, fields.names.iter().map(String::as_str)) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            out.push(d);
        }
    }
}

fn resolve_bot(
    file: &Parsed<CampaignFile>,
    project: &Project,
    allowed: &Confinement,
    out: &mut Vec<Diagnostic>,
) -> Option<Bot> {
    let (name, spec, bot_file_pointer): (Option<String>, BotSpec, Option<String>) = match &file
        .content
        .bot
    {
        BotRef::Inline(spec) => (None, spec.clone(), Some("/bot".into())),
        BotRef::Named(name) => {
            let Some(project_file) = &project.file else {
                out.push(
                    Diagnostic::error("unknown-bot", format!("bot `{name}` is a name, but no smax.yaml was found above this campaign"))
                        .at(file.value_at("/bot"))
                        .help("add smax.yaml with `bots: {{ name: {{ id: …, token_env: … }} }}`, pass --config, or define the bot inline"),
                );
                return None;
            };
            match project_file.content.bots.get(name) {
                Some(spec) => (Some(name.clone()), spec.clone(), None),
                None => {
                    let known: Vec<&str> = project_file
                        .content
                        .bots
                        .keys()
                        .map(String::as_str)
                        .collect();
                    let mut d = Diagnostic::error(
                        "unknown-bot",
                        format!(
                            "bot `{name}` is not defined in {}",
                            project_file.source.path.display()
                        ),
                    )
                    .at(file.value_at("/bot"));
                    d = match suggest(name, known.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if known.is_empty() => d.help("smax.yaml defines no bots"),
                        None => d.help(format!("defined bots: {}", known.join(", "))),
                    };
                    out.push(d);
                    return None;
                }
            }
        }
    };
    let token = match &bot_file_pointer {
        Some(p) => token_source(&spec, file, p, allowed, out),
        // A named bot's token source was checked with the project file.
        // The same path that check was made on, or a `..` after a symlink could
        // be read from somewhere else than was checked.
        None => spec.token_env.clone().map(TokenSource::Env).or_else(|| {
            let project_file = project.file.as_ref()?;
            spec.token_file
                .as_ref()
                .map(|f| TokenSource::File(token_file_path(&project_file.source.path, f)))
        }),
    }?;
    Some(Bot {
        name,
        id: spec.id.clone(),
        api: spec.api.unwrap_or(ApiVersion::V2),
        tag_style: spec.v1_tag_style.unwrap_or_default(),
        token,
    })
}

fn check_version_fit(file: &Parsed<CampaignFile>, api: ApiVersion, out: &mut Vec<Diagnostic>) {
    let c = &file.content;
    let (r, m) = (&c.recipient, &c.message);
    let mut not_in = |pointer: &str, field: &str, help: &str| {
        out.push(
            Diagnostic::error(
                "field-not-in-api-version",
                format!("`{field}` is not part of the {} API", api.as_str()),
            )
            .at(file.key_at(pointer))
            .help(help.to_owned()),
        );
    };
    match api {
        ApiVersion::V1 => {
            for (name, set) in [
                ("customer_id", r.customer_id.is_some()),
                ("customer_phone", r.customer_phone.is_some()),
                ("customer_email", r.customer_email.is_some()),
                ("customer_fbid", r.customer_fbid.is_some()),
                ("priority", r.priority.is_some()),
            ] {
                if set {
                    not_in(&format!("/recipient/{name}"), &format!("recipient.{name}"), "v1 addresses users by `user_id`; set `api: v2` on the bot to use customer identifiers");
                }
            }
            for (name, set) in [
                ("text", m.text.is_some()),
                ("messages", m.messages.is_some()),
                ("one_time_notif_token", m.one_time_notif_token.is_some()),
                (
                    "notification_messages_token",
                    m.notification_messages_token.is_some(),
                ),
            ] {
                if set {
                    not_in(&format!("/message/{name}"), &format!("message.{name}"), "v1 sends blocks (`block_name`/`block_id`) and attributes; text messages need `api: v2`");
                }
            }
            if m.tag == Some(MessagingTag::HumanAgent) {
                out.push(
                    Diagnostic::error("tag-not-in-api-version", "HUMAN_AGENT is a v2 tag; v1 accepts CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE, ACCOUNT_UPDATE")
                        .at(file.value_at("/message/tag")),
                );
            }
        }
        ApiVersion::V2 => {
            if r.user_id.is_some() {
                not_in("/recipient/user_id", "recipient.user_id", "v2 addresses customers by customer_id, customer_phone, customer_email or customer_fbid (the messenger id is `customer_fbid`)");
            }
            if m.block_name.is_some() {
                not_in(
                    "/message/block_name",
                    "message.block_name",
                    "v2 sends a block by `block_id`, or text with `text:`",
                );
            }
            if !m.attributes.is_empty() {
                out.push(
                    Diagnostic::warning("undocumented-v2-attributes", "v2 attributes travel as extra top-level fields, which the platform's page does not document")
                        .at(file.key_at("/message/attributes"))
                        .help("existing integrations do this; check with a test send that the platform stores them"),
                );
            }
        }
    }
}

fn policy_warnings(
    file: &Parsed<CampaignFile>,
    set: &TemplateSet,
    api: ApiVersion,
    content: &Content,
    tag_known: bool,
    out: &mut Vec<Diagnostic>,
) {
    let m = &file.content.message;
    match m.tag {
        _ if !tag_known => {}
        Some(MessagingTag::HumanAgent) if api == ApiVersion::V2 => out.push(
            Diagnostic::warning("human-agent-tag", "HUMAN_AGENT is reserved for replies by a human agent within 7 days, not broadcasts")
                .at(file.value_at("/message/tag"))
                .help("Meta may restrict the page for misuse; use a tag that fits the message, or none"),
        ),
        None => out.push(
            Diagnostic::warning("missing-tag", "the message has no `tag`: users outside the 24-hour window won't receive it")
                .at(file.key_at("/message"))
                .help("add `tag: CONFIRMED_EVENT_UPDATE`, `POST_PURCHASE_UPDATE` or `ACCOUNT_UPDATE` if the message fits one"),
        ),
        _ => {}
    }
    if m.one_time_notif_token.is_some()
        && set.contains("/message/one_time_notif_token")
        && !set.varies_per_row("/message/one_time_notif_token")
    {
        out.push(
            Diagnostic::warning("constant-otn-token", "`one_time_notif_token` is the same for every recipient, but each token is single-use")
                .at(file.value_at("/message/one_time_notif_token"))
                .help("take it from the row, e.g. `\"{{ otn_token }}\"`; at plan time a token already used by an earlier row makes that row invalid"),
        );
    }
    if m.tag.is_some() {
        let mut texts: Vec<(String, String)> = Vec::new();
        if let Some(b) = &m.block_name {
            texts.push(("/message/block_name".into(), b.clone()));
        }
        if let Content::Messages {
            messages,
            from_text,
        } = content
        {
            if *from_text {
                texts.push(("/message/text".into(), m.text.clone().unwrap_or_default()));
            } else {
                for (i, msg) in messages.iter().enumerate() {
                    walk(
                        &serde_json::Value::Object(msg.clone()),
                        format!("/message/messages/{i}"),
                        &mut |p, _, v| {
                            if let Some(s) = v.as_str() {
                                texts.push((p.to_owned(), s.to_owned()));
                            }
                        },
                    );
                }
            }
        }
        for (pointer, text) in texts {
            let lower = without_template_code(&text).to_lowercase();
            let word = PROMOTIONAL
                .iter()
                .find(|w| contains_word(&lower, w))
                .copied()
                .or_else(|| percent_off(&lower));
            if let Some(word) = word {
                let offset = lower.find(word).unwrap_or(0);
                out.push(
                    Diagnostic::warning("promotional-tagged-message", format!("a tagged message must not carry promotions, and this one says “{word}”"))
                        .at(template_location(file, &pointer, &text, Some(offset..offset + word.len())))
                        .help("send promotions without a tag (inside the 24-hour window), or keep the tagged message to the update itself"),
                );
            }
        }
    }
}

fn contains_word(haystack: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    haystack.match_indices(word).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The literal text of a template: `{{ … }}`, `{% … %}` and `{# … #}` blanked
/// out with spaces of the same length, so offsets still match the source.
fn without_template_code(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find(['{']) {
        let close = match rest.get(start + 1..start + 2) {
            Some("{") => "}}",
            Some("%") => "%}",
            Some("#") => "#}",
            _ => {
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(close)
            .map(|e| start + e + 2)
            .unwrap_or(rest.len());
        out.extend(std::iter::repeat_n(' ', rest[start..end].len()));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// "20%" or "20 %" (a discount), but not "100% of your order is shipped".
fn percent_off(lower: &str) -> Option<&'static str> {
    let bytes = lower.as_bytes();
    for (i, _) in lower.match_indices('%') {
        let digits_before = i > 0 && bytes[i - 1].is_ascii_digit()
            || i > 1 && bytes[i - 1] == b' ' && bytes[i - 2].is_ascii_digit();
        let after = lower[i + 1..].trim_start();
        if digits_before
            && (after.starts_with("off") || after.starts_with("giảm") || lower[..i].contains('-'))
        {
            return Some("%");
        }
    }
    None
}
