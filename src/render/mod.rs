//! Rendering: a row becomes the exact request that would go on the wire.
//!
//! Templates are compiled once per campaign; each row gets a cheap context
//! object (row fields at the top level, then `vars`, `campaign`, `run`, `now`)
//! rather than a freshly built map.

pub mod templates;

use std::sync::Arc;

use minijinja::Value;

use crate::api::wire::{V1Block, V1Send, V2Send, WireRequest};
use crate::audience::Origin;
use crate::campaign::{ApiVersion, Campaign, Content, PriorityChannel};
use templates::{TemplateError, TemplateSet, KEY, WHERE};

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
    Template { field: String, message: String },
    EmptyKey,
    NoIdentifier,
    EmptyField(&'static str),
    TextTooLong { chars: usize },
    OtnReused { first: String },
}

impl Invalid {
    /// A stable short code, for counting reasons.
    pub fn code(&self) -> &'static str {
        match self {
            Invalid::Broken(_) => "broken-row",
            Invalid::Template { .. } => "template-error",
            Invalid::EmptyKey => "empty-key",
            Invalid::NoIdentifier => "no-identifier",
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
            Invalid::Template { field, message } => write!(f, "{field}: {message}"),
            Invalid::EmptyKey => write!(f, "the audience key renders empty"),
            Invalid::NoIdentifier => write!(f, "every recipient identifier renders empty"),
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

fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

fn template_invalid(e: TemplateError) -> Invalid {
    let field = if e.name == KEY {
        "audience.key".to_owned()
    } else {
        field_name(&e.name)
    };
    Invalid::Template {
        field,
        message: e.message,
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
        match key.as_str()? {
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
pub struct Context(Value);

/// Renders one campaign's templates.
#[derive(Debug)]
pub struct Renderer {
    set: TemplateSet,
    globals: Arc<Globals>,
    api: ApiVersion,
    content: Content,
    tag: Option<crate::campaign::MessagingTag>,
    attributes: Vec<(String, String)>,
    identifiers: Vec<(&'static str, String)>,
    priority: Vec<PriorityChannel>,
    has_where: bool,
    has_otn: bool,
    has_ntn: bool,
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
        let identifiers: Vec<(&'static str, String)> = match campaign.bot.api {
            ApiVersion::V1 => vec![],
            ApiVersion::V2 => [
                ("customer_id", &r.customer_id),
                ("customer_email", &r.customer_email),
                ("customer_phone", &r.customer_phone),
                ("customer_fbid", &r.customer_fbid),
            ]
            .into_iter()
            .filter(|(_, t)| t.is_some())
            .map(|(n, _)| (n, format!("/recipient/{n}")))
            .collect(),
        };
        Ok(Renderer {
            set,
            globals,
            api: campaign.bot.api,
            content: campaign.message.content.clone(),
            tag: campaign.message.tag,
            attributes: campaign
                .message
                .attributes
                .iter()
                .map(|(name, _)| {
                    (
                        name.clone(),
                        format!(
                            "/message/attributes/{}",
                            crate::campaign::yaml::pointer_segment(name)
                        ),
                    )
                })
                .collect(),
            identifiers,
            priority: campaign.recipient.priority.clone(),
            has_where: campaign.audience.where_expr.is_some(),
            has_otn: campaign.message.one_time_notif_token.is_some(),
            has_ntn: campaign.message.notification_messages_token.is_some(),
        })
    }

    pub fn context(&self, fields: &Value) -> Context {
        Context(Value::from_object(RowContext {
            row: fields.clone(),
            globals: self.globals.clone(),
        }))
    }

    fn render(&self, name: &str, ctx: &Context) -> Result<String, Invalid> {
        self.set.render(name, &ctx.0).map_err(template_invalid)
    }

    /// Whether the row passes `where` (always, without one).
    pub fn passes_where(&self, ctx: &Context) -> Result<bool, Invalid> {
        if !self.has_where {
            return Ok(true);
        }
        Ok(self.render(WHERE, ctx)? == "1")
    }

    pub fn key(&self, ctx: &Context) -> Result<String, Invalid> {
        let key = self.render(KEY, ctx)?;
        if key.trim().is_empty() {
            return Err(Invalid::EmptyKey);
        }
        Ok(key)
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
        let user_id = self.render("/recipient/user_id", ctx)?;
        if user_id.trim().is_empty() {
            return Err(Invalid::NoIdentifier);
        }
        let block = match &self.content {
            Content::BlockName(_) => Some(V1Block::Name(self.non_empty(
                "/message/block_name",
                "block_name",
                ctx,
            )?)),
            Content::BlockId(_) => Some(V1Block::Id(self.non_empty(
                "/message/block_id",
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
        template: &str,
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
        let mut body = serde_json::Map::new();
        for (field, template) in &self.identifiers {
            let value = self.render(template, ctx)?;
            if !value.is_empty() {
                body.insert((*field).to_owned(), J::String(value));
            }
        }
        if body.is_empty() {
            return Err(Invalid::NoIdentifier);
        }
        match &self.content {
            Content::BlockId(_) => {
                body.insert(
                    "block_id".into(),
                    J::String(self.non_empty("/message/block_id", "block_id", ctx)?),
                );
            }
            Content::Messages {
                messages,
                from_text,
            } => {
                let rendered = if *from_text {
                    let text = self.render("/message/text", ctx)?;
                    vec![J::Object(serde_json::Map::from_iter([(
                        "text".to_owned(),
                        J::String(text),
                    )]))]
                } else {
                    let mut out = Vec::with_capacity(messages.len());
                    for (i, m) in messages.iter().enumerate() {
                        out.push(self.render_json(
                            &J::Object(m.clone()),
                            &format!("/message/messages/{i}"),
                            ctx,
                        )?);
                    }
                    out
                };
                for m in &rendered {
                    if let Some(text) = m.get("text").and_then(J::as_str) {
                        let chars = text.chars().count();
                        if chars > MAX_TEXT_CHARS {
                            return Err(Invalid::TextTooLong { chars });
                        }
                        if text.trim().is_empty() {
                            return Err(Invalid::EmptyField("text"));
                        }
                    }
                }
                body.insert("messages".into(), J::Array(rendered));
            }
            Content::BlockName(_) | Content::AttributesOnly => {}
        }
        if self.has_ntn {
            let v = self.render("/message/notification_messages_token", ctx)?;
            if !v.is_empty() {
                body.insert("notification_messages_token".into(), J::String(v));
            }
        }
        if self.has_otn {
            let v = self.render("/message/one_time_notif_token", ctx)?;
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
        value: &serde_json::Value,
        pointer: &str,
        ctx: &Context,
    ) -> Result<serde_json::Value, Invalid> {
        use serde_json::Value as J;
        Ok(match value {
            J::String(_) => J::String(self.render(pointer, ctx)?),
            J::Array(items) => J::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.render_json(v, &format!("{pointer}/{i}"), ctx))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => J::Object(
                map.iter()
                    .map(|(k, v)| {
                        let p = format!("{pointer}/{}", crate::campaign::yaml::pointer_segment(k));
                        Ok((k.clone(), self.render_json(v, &p, ctx)?))
                    })
                    .collect::<Result<_, Invalid>>()?,
            ),
            other => other.clone(),
        })
    }
}
