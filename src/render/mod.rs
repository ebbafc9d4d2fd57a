//! Rendering: a row becomes the exact request that would go on the wire.
//!
//! Templates are compiled once per campaign; each row gets a cheap context
//! object (row fields at the top level, then `vars`, `campaign`, `run`, `now`)
//! rather than a freshly built map.

use std::sync::Arc;

use minijinja::Value;

use crate::api::wire::{V1Block, V1Send, V2Send, WireRequest};
use crate::api::{ApiVersion, MessagingTag, PriorityChannel};
use crate::audience::{Origin, Row};
use crate::campaign::{Campaign, Content};
use crate::templates::{self, Handle, TemplateError, TemplateSet, KEY, WHERE};

/// Messenger's limit on one text message, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The run a rendering belongs to, for `run.*` and `now` in templates.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub occurrence: Option<String>,
    /// Run start in the campaign's time zone, RFC 3339.
    pub now: String,
}

/// A recipient, rendered: the key it is tracked under, where it came from, and
/// the request that delivers to it.
#[derive(Debug, Clone)]
pub struct RenderedRequest {
    pub key: String,
    pub origin: Origin,
    pub wire: WireRequest,
}

/// Why a row cannot be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Invalid {
    Broken(String),
    Template {
        field: String,
        message: String,
    },
    /// A template ran out of its work budget or output cap.
    OverBudget {
        field: String,
        message: String,
    },
    /// The key rendered empty: the variables it names, as `` `customer_id` ``.
    EmptyKey(String),
    /// Every identifier the campaign declares rendered empty: the fields and the
    /// variables they name, as `` recipient.customer_id (`customer_id`) ``.
    NoIdentifier(String),
    EmptyField(&'static str),
    TextTooLong {
        chars: usize,
    },
    OtnReused {
        first: String,
    },
}

impl Invalid {
    /// A stable short code, for counting reasons.
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::Broken(_) => "broken-row",
            Invalid::Template { .. } => "template-error",
            Invalid::OverBudget { .. } => "template-budget",
            Invalid::EmptyKey(_) => "empty-key",
            Invalid::NoIdentifier(_) => "no-identifier",
            Invalid::EmptyField(_) => "empty-field",
            Invalid::TextTooLong { .. } => "text-too-long",
            Invalid::OtnReused { .. } => "otn-token-reused",
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Broken(reason) => write!(f, "{reason}"),
            Invalid::Template { field, message } | Invalid::OverBudget { field, message } => {
                write!(f, "{field}: {message}")
            }
            Invalid::EmptyKey(names) => write!(
                f,
                "audience.key renders empty: {names} is empty or missing in this row"
            ),
            Invalid::NoIdentifier(fields) => write!(
                f,
                "no identifier to send to: {fields} rendered empty in this row"
            ),
            Invalid::EmptyField(field) => write!(f, "{field} renders empty"),
            Invalid::TextTooLong { chars } => {
                write!(
                    f,
                    "text is {chars} characters; Messenger allows {MAX_TEXT_CHARS}"
                )
            }
            Invalid::OtnReused { first } => {
                write!(
                    f,
                    "one_time_notif_token was already used by {first} (single use)"
                )
            }
        }
    }
}

/// What Messenger accepts as a text message.
fn check_text(text: &str) -> Result<(), Invalid> {
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(Invalid::TextTooLong { chars });
    }
    if text.trim().is_empty() {
        return Err(Invalid::EmptyField("text"));
    }
    Ok(())
}

fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

fn template_invalid(e: TemplateError) -> Invalid {
    let field = if e.name == KEY {
        "audience.key".to_owned()
    } else {
        field_name(&e.name)
    };
    if e.over_budget {
        Invalid::OverBudget {
            field,
            message: e.message,
        }
    } else {
        Invalid::Template {
            field,
            message: e.message,
        }
    }
}

#[derive(Debug)]
struct Globals {
    vars: Value,
    campaign: Value,
    run: Value,
    now: Value,
}

#[derive(Debug)]
struct RowContext {
    row: Value,
    globals: Arc<Globals>,
}

impl minijinja::value::Object for RowContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    // The engine looks names up by `&str`; answering here spares a `Value`
    // built from the name on every lookup.
    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "vars" => Some(self.globals.vars.clone()),
            "campaign" => Some(self.globals.campaign.clone()),
            "run" => Some(self.globals.run.clone()),
            "now" => Some(self.globals.now.clone()),
            name => self.row.get_attr(name).ok().filter(|v| !v.is_undefined()),
        }
    }
}

/// A context for templates over one row.
#[derive(Debug, Clone)]
pub struct Context {
    value: Value,
    /// The row's own fields (also inside `value`), and where it came from,
    /// for the reason a render fails.
    row: Value,
    origin: Origin,
    /// Results of [`Renderer::prerender`], by handle slot.
    ahead: Vec<Result<String, Invalid>>,
}

/// A `messages` entry with its template handles resolved once, so rendering a
/// row builds no pointer strings.
#[derive(Debug)]
enum JsonTemplate {
    Text(Handle),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
    Fixed(serde_json::Value),
}

impl JsonTemplate {
    fn new(set: &TemplateSet, value: &serde_json::Value, pointer: &str) -> JsonTemplate {
        use serde_json::Value as J;
        match value {
            J::String(_) => JsonTemplate::Text(set.handle(pointer)),
            J::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| JsonTemplate::new(set, v, &format!("{pointer}/{i}")))
                    .collect(),
            ),
            J::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| {
                        let p = format!("{pointer}/{}", crate::campaign::yaml::pointer_segment(k));
                        (k.clone(), JsonTemplate::new(set, v, &p))
                    })
                    .collect(),
            ),
            other => JsonTemplate::Fixed(other.clone()),
        }
    }
}

/// Handles of the templates rendered for every row.
#[derive(Debug)]
struct Handles {
    where_expr: Handle,
    key: Handle,
    user_id: Handle,
    block_name: Handle,
    block_id: Handle,
    text: Handle,
    ntn: Handle,
    otn: Handle,
    messages: Vec<JsonTemplate>,
}

/// Numbers the handles that [`Renderer::request`] renders through the engine
/// for this campaign, and returns them in slot order.
fn slot_request_handles(
    campaign: &Campaign,
    handles: &mut Handles,
    identifiers: &mut [(&'static str, Handle)],
    attributes: &mut [(String, Handle)],
) -> Vec<Handle> {
    fn walk<'a>(t: &'a mut JsonTemplate, out: &mut Vec<&'a mut Handle>) {
        match t {
            JsonTemplate::Text(h) => out.push(h),
            JsonTemplate::Array(items) => items.iter_mut().for_each(|t| walk(t, out)),
            JsonTemplate::Object(fields) => fields.iter_mut().for_each(|(_, t)| walk(t, out)),
            JsonTemplate::Fixed(_) => {}
        }
    }
    let message = &campaign.message;
    let mut used: Vec<&mut Handle> = Vec::new();
    match campaign.bot.api {
        ApiVersion::V1 => {
            used.push(&mut handles.user_id);
            match message.content {
                Content::BlockName(_) => used.push(&mut handles.block_name),
                Content::BlockId(_) => used.push(&mut handles.block_id),
                _ => {}
            }
        }
        ApiVersion::V2 => {
            used.extend(identifiers.iter_mut().map(|(_, h)| h));
            match message.content {
                Content::BlockId(_) => used.push(&mut handles.block_id),
                Content::Messages {
                    from_text: true, ..
                } => used.push(&mut handles.text),
                Content::Messages { .. } => {
                    handles.messages.iter_mut().for_each(|t| walk(t, &mut used))
                }
                _ => {}
            }
            if message.notification_messages_token.is_some() {
                used.push(&mut handles.ntn);
            }
            if message.one_time_notif_token.is_some() {
                used.push(&mut handles.otn);
            }
        }
    }
    used.extend(attributes.iter_mut().map(|(_, h)| h));
    let mut ahead = Vec::new();
    for handle in used.into_iter().filter(|h| h.needs_engine()) {
        handle.slot = Some(ahead.len());
        ahead.push(handle.clone());
    }
    ahead
}

/// Renders one campaign's templates.
#[derive(Debug)]
pub struct Renderer {
    set: TemplateSet,
    handles: Handles,
    globals: Arc<Globals>,
    api: ApiVersion,
    content: Content,
    tag: Option<MessagingTag>,
    attributes: Vec<(String, Handle)>,
    identifiers: Vec<(&'static str, Handle)>,
    priority: Vec<PriorityChannel>,
    /// What [`Renderer::prerender`] renders: the handles `request` renders
    /// through the engine, each at its slot.
    ahead: Vec<Handle>,
    /// The most fields a V2 body can have: sized up front, the map never
    /// grows (and rehashes) while a row is rendered.
    body_fields: usize,
    has_where: bool,
    has_otn: bool,
    has_ntn: bool,
    /// For reasons: the variables the key names, and the identifier fields with
    /// theirs, worded once here rather than for every invalid row.
    key_names: String,
    identifier_names: String,
}

/// `` `a`, `b` `` for the variables a template names (sorted), or "the value it
/// renders" for one that names none.
fn names_used(set: &TemplateSet, template: &str) -> String {
    let mut names: Vec<String> = set.undeclared(template).into_iter().collect();
    names.sort();
    if names.is_empty() {
        return "the value it renders".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Renderer {
    /// Compiles the campaign's templates. A validated campaign always compiles;
    /// the error case exists for library users who build campaigns by hand.
    pub fn new(campaign: &Campaign, run: &RunInfo) -> Result<Renderer, Vec<TemplateError>> {
        let (set, errors) = TemplateSet::compile(
            campaign
                .templates
                .iter()
                .map(|t| (t.name.as_str(), t.source.as_str())),
        );
        if !errors.is_empty() {
            return Err(errors);
        }
        let globals = Arc::new(Globals {
            vars: Value::from_serialize(&campaign.vars),
            campaign: Value::from_serialize(serde_json::json!({
                "name": campaign.name,
                "description": campaign.description,
            })),
            run: Value::from_serialize(serde_json::json!({
                "id": run.id,
                "occurrence": run.occurrence,
            })),
            now: Value::from(run.now.clone()),
        });
        let r = &campaign.recipient;
        let mut identifiers: Vec<(&'static str, Handle)> = match campaign.bot.api {
            ApiVersion::V1 => vec![],
            ApiVersion::V2 => [
                ("customer_id", &r.customer_id),
                ("customer_email", &r.customer_email),
                ("customer_phone", &r.customer_phone),
                ("customer_fbid", &r.customer_fbid),
            ]
            .into_iter()
            .filter(|(_, t)| t.is_some())
            .map(|(n, _)| (n, set.handle(&format!("/recipient/{n}"))))
            .collect(),
        };
        let messages = match &campaign.message.content {
            Content::Messages {
                messages,
                from_text: false,
            } => messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    JsonTemplate::new(
                        &set,
                        &serde_json::Value::Object(m.clone()),
                        &format!("/message/messages/{i}"),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut handles = Handles {
            where_expr: set.handle(WHERE),
            key: set.handle(KEY),
            user_id: set.handle("/recipient/user_id"),
            block_name: set.handle("/message/block_name"),
            block_id: set.handle("/message/block_id"),
            text: set.handle("/message/text"),
            ntn: set.handle("/message/notification_messages_token"),
            otn: set.handle("/message/one_time_notif_token"),
            messages,
        };
        let mut attributes: Vec<(String, Handle)> = campaign
            .message
            .attributes
            .iter()
            .map(|(name, _)| {
                let pointer = format!(
                    "/message/attributes/{}",
                    crate::campaign::yaml::pointer_segment(name)
                );
                (name.clone(), set.handle(&pointer))
            })
            .collect();
        let identifier_pointers: Vec<String> = match campaign.bot.api {
            ApiVersion::V1 => vec!["/recipient/user_id".into()],
            ApiVersion::V2 => identifiers
                .iter()
                .map(|(n, _)| format!("/recipient/{n}"))
                .collect(),
        };
        let identifier_names = identifier_pointers
            .iter()
            .map(|p| format!("{} ({})", field_name(p), names_used(&set, p)))
            .collect::<Vec<_>>()
            .join(", ");
        let key_names = names_used(&set, KEY);
        let ahead = slot_request_handles(campaign, &mut handles, &mut identifiers, &mut attributes);
        let body_fields = identifiers.len()
            + 4
            + usize::from(!campaign.recipient.priority.is_empty())
            + attributes.len();
        Ok(Renderer {
            body_fields,
            set,
            handles,
            globals,
            api: campaign.bot.api,
            content: campaign.message.content.clone(),
            tag: campaign.message.tag,
            attributes,
            identifiers,
            priority: campaign.recipient.priority.clone(),
            ahead,
            has_where: campaign.audience.where_expr.is_some(),
            has_otn: campaign.message.one_time_notif_token.is_some(),
            has_ntn: campaign.message.notification_messages_token.is_some(),
            key_names,
            identifier_names,
        })
    }

    pub fn context(&self, row: &Row) -> Context {
        Context {
            value: Value::from_object(RowContext {
                row: row.fields.clone(),
                globals: self.globals.clone(),
            }),
            row: row.fields.clone(),
            origin: row.origin.clone(),
            ahead: Vec::new(),
        }
    }

    /// Why rendering failed, for the row's reason. The engine says only
    /// "undefined value": the reason names the variable, and says so when
    /// the row holds it as a JSON null.
    fn invalid(&self, e: TemplateError, ctx: &Context) -> Invalid {
        let mut e = e;
        if e.undefined {
            if let Some(name) = self.set.missing_name(&e.name, &ctx.value, e.range.clone()) {
                let first = name.split('.').next().unwrap_or(&name);
                e.message = if crate::audience::json_row::is_null_at(&ctx.row, &name) {
                    format!("`{name}` is null at {}", ctx.origin)
                } else if templates::GLOBALS.contains(&first) {
                    format!("`{name}` is undefined")
                } else {
                    format!("`{name}` is undefined: the row has no such field")
                };
            }
        }
        template_invalid(e)
    }

    /// Renders, now, what [`Renderer::request`] would render through the
    /// engine. Rendering is a pure function of the row, so the request comes
    /// out the same; this only moves the work, e.g. to another thread.
    pub fn prerender(&self, ctx: &mut Context) {
        ctx.ahead = self
            .ahead
            .iter()
            .map(|h| {
                self.set
                    .render_handle(h, &ctx.value)
                    .map_err(|e| self.invalid(e, ctx))
            })
            .collect();
    }

    fn render(&self, handle: &Handle, ctx: &Context) -> Result<String, Invalid> {
        if let Some(done) = handle.slot.and_then(|slot| ctx.ahead.get(slot)) {
            // A copy, so that the original is freed by the thread that made it.
            return done.clone();
        }
        self.set
            .render_handle(handle, &ctx.value)
            .map_err(|e| self.invalid(e, ctx))
    }

    /// Whether the row passes `where` (always, without one).
    pub fn passes_where(&self, ctx: &Context) -> Result<bool, Invalid> {
        if !self.has_where {
            return Ok(true);
        }
        Ok(self.render(&self.handles.where_expr, ctx)? == "1")
    }

    pub fn key(&self, ctx: &Context) -> Result<String, Invalid> {
        let key = self.render(&self.handles.key, ctx)?;
        if key.trim().is_empty() {
            return Err(Invalid::EmptyKey(self.key_names.clone()));
        }
        Ok(key)
    }

    /// Whether requests carry a one-time notification token (single use: every
    /// rendered request's token is checked against the others').
    pub fn has_otn(&self) -> bool {
        self.has_otn
    }

    /// The rendered one-time notification token, when the campaign has one.
    pub fn otn_token(wire: &WireRequest) -> Option<&str> {
        match wire {
            WireRequest::V2(v2) => v2.body.get("one_time_notif_token").and_then(|v| v.as_str()),
            WireRequest::V1(_) => None,
        }
    }

    pub fn request(
        &self,
        ctx: &Context,
        key: String,
        origin: Origin,
    ) -> Result<RenderedRequest, Invalid> {
        let wire = match self.api {
            ApiVersion::V1 => WireRequest::V1(self.v1(ctx)?),
            ApiVersion::V2 => WireRequest::V2(self.v2(ctx)?),
        };
        Ok(RenderedRequest { key, origin, wire })
    }

    fn rendered_attributes(&self, ctx: &Context) -> Result<Vec<(String, String)>, Invalid> {
        self.attributes
            .iter()
            .map(|(name, template)| Ok((name.clone(), self.render(template, ctx)?)))
            .collect()
    }

    fn v1(&self, ctx: &Context) -> Result<V1Send, Invalid> {
        let user_id = self.render(&self.handles.user_id, ctx)?;
        if user_id.trim().is_empty() {
            return Err(Invalid::NoIdentifier(self.identifier_names.clone()));
        }
        let block = match &self.content {
            Content::BlockName(_) => Some(V1Block::Name(self.non_empty(
                &self.handles.block_name,
                "block_name",
                ctx,
            )?)),
            Content::BlockId(_) => Some(V1Block::Id(self.non_empty(
                &self.handles.block_id,
                "block_id",
                ctx,
            )?)),
            _ => None,
        };
        Ok(V1Send {
            user_id,
            block,
            tag: self.tag,
            attributes: self.rendered_attributes(ctx)?,
        })
    }

    fn non_empty(
        &self,
        template: &Handle,
        field: &'static str,
        ctx: &Context,
    ) -> Result<String, Invalid> {
        let value = self.render(template, ctx)?;
        if value.trim().is_empty() {
            return Err(Invalid::EmptyField(field));
        }
        Ok(value)
    }

    fn v2(&self, ctx: &Context) -> Result<V2Send, Invalid> {
        use serde_json::Value as J;
        let mut body = serde_json::Map::with_capacity(self.body_fields);
        for (field, template) in &self.identifiers {
            let value = self.render(template, ctx)?;
            if !value.is_empty() {
                body.insert((*field).to_owned(), J::String(value));
            }
        }
        if body.is_empty() {
            return Err(Invalid::NoIdentifier(self.identifier_names.clone()));
        }
        match &self.content {
            Content::BlockId(_) => {
                body.insert(
                    "block_id".into(),
                    J::String(self.non_empty(&self.handles.block_id, "block_id", ctx)?),
                );
            }
            Content::Messages { from_text, .. } => {
                let rendered = if *from_text {
                    let text = self.render(&self.handles.text, ctx)?;
                    check_text(&text)?;
                    vec![J::Object(serde_json::Map::from_iter([(
                        "text".to_owned(),
                        J::String(text),
                    )]))]
                } else {
                    let mut out = Vec::with_capacity(self.handles.messages.len());
                    for m in &self.handles.messages {
                        out.push(self.render_json(m, ctx)?);
                    }
                    for m in &out {
                        if let Some(text) = m.get("text").and_then(J::as_str) {
                            check_text(text)?;
                        }
                    }
                    out
                };
                body.insert("messages".into(), J::Array(rendered));
            }
            Content::BlockName(_) | Content::AttributesOnly => {}
        }
        if self.has_ntn {
            let v = self.render(&self.handles.ntn, ctx)?;
            if !v.is_empty() {
                body.insert("notification_messages_token".into(), J::String(v));
            }
        }
        if self.has_otn {
            let v = self.render(&self.handles.otn, ctx)?;
            if !v.is_empty() {
                body.insert("one_time_notif_token".into(), J::String(v));
            }
        }
        if let Some(tag) = self.tag {
            body.insert("messaging_tag".into(), J::String(tag.as_str().into()));
        }
        if !self.priority.is_empty() {
            let p = self
                .priority
                .iter()
                .map(|c| {
                    J::String(match c {
                        PriorityChannel::Fbid => "fbid".into(),
                        PriorityChannel::Phone => "phone".into(),
                        PriorityChannel::Email => "email".into(),
                    })
                })
                .collect();
            body.insert("priority".into(), J::Array(p));
        }
        for (name, value) in self.rendered_attributes(ctx)? {
            if !value.is_empty() && !body.contains_key(&name) {
                body.insert(name, J::String(value));
            }
        }
        Ok(V2Send { body })
    }

    fn render_json(
        &self,
        template: &JsonTemplate,
        ctx: &Context,
    ) -> Result<serde_json::Value, Invalid> {
        use serde_json::Value as J;
        Ok(match template {
            JsonTemplate::Text(handle) => J::String(self.render(handle, ctx)?),
            JsonTemplate::Array(items) => J::Array(
                items
                    .iter()
                    .map(|v| self.render_json(v, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(fields) => J::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(v, ctx)?)))
                    .collect::<Result<_, Invalid>>()?,
            ),
            JsonTemplate::Fixed(value) => value.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audience::{AudienceReader, RowEvent};
    use crate::plan::testing;

    fn requests(yaml: &str, users: &str) -> Vec<(String, String)> {
        let (_dir, campaign) = testing::campaign(yaml, &[("a.jsonl", users)]);
        let run = RunInfo {
            id: "t".into(),
            occurrence: None,
            now: "2026-11-24T00:00:00Z".into(),
        };
        let renderer = Renderer::new(&campaign, &run).expect("compiles");
        assert!(!renderer.ahead.is_empty(), "some templates need the engine");
        AudienceReader::new(&campaign.audience.sources)
            .map(|event| {
                let RowEvent::Row(row) = event else {
                    panic!("{event:?}")
                };
                let mut ctx = renderer.context(&row);
                let plain = renderer.request(&ctx, "k".into(), row.origin.clone());
                renderer.prerender(&mut ctx);
                let ahead = renderer.request(&ctx, "k".into(), row.origin);
                (format!("{plain:?}"), format!("{ahead:?}"))
            })
            .collect()
    }

    const USERS: &str = "{\"id\":\"1\",\"name\":\"An\",\"vip\":true,\"code\":\"X\"}
{\"id\":\"2\",\"name\":\"Bình\",\"vip\":false}
{\"id\":\"\",\"name\":\"Cường\",\"vip\":false,\"code\":\"Y\"}
{\"id\":\"4\",\"vip\":true,\"code\":\"Z\"}
";

    #[test]
    fn rendering_ahead_gives_the_same_v2_requests() {
        let yaml = "version: 1
name: t
bot: { id: \"b1\", token_env: T, api: v2 }
audience:
  from:
    - jsonl: a.jsonl
  key: \"{{ id }}\"
recipient:
  customer_id: \"{{ id }}\"
message:
  tag: ACCOUNT_UPDATE
  messages:
    - text: \"Chào {{ name }}{% if vip %} (VIP){% endif %}\"
    - attachment: { type: template, payload: { buttons: [ { title: \"{{ name|upper }}\", n: 1 } ] } }
  one_time_notif_token: \"{{ code }}\"
  attributes:
    code: \"{{ code }}-{{ id }}\"
";
        let out = requests(yaml, USERS);
        assert_eq!(out.len(), 4);
        for (plain, ahead) in &out {
            assert_eq!(plain, ahead);
        }
        assert!(out[0].0.contains("Ok("), "{}", out[0].0);
        assert!(out[1].0.contains("Err("), "{}", out[1].0);
        assert!(out[3].0.contains("Err("), "{}", out[3].0);
    }

    #[test]
    fn rendering_ahead_gives_the_same_v1_requests() {
        let yaml = "version: 1
name: t
bot: { id: \"b1\", token_env: T, api: v1 }
audience:
  from:
    - jsonl: a.jsonl
  key: \"{{ id }}\"
recipient:
  user_id: \"{{ id }}{{ code }}\"
message:
  tag: ACCOUNT_UPDATE
  block_name: \"{{ name }}\"
  attributes:
    code: \"{{ code }}\"
    vip: \"{{ 'y' if vip else 'n' }}\"
";
        let out = requests(yaml, USERS);
        for (plain, ahead) in &out {
            assert_eq!(plain, ahead);
        }
        assert!(out[0].0.contains("Ok("), "{}", out[0].0);
        assert!(out[1].0.contains("Err("), "{}", out[1].0);
    }
}
