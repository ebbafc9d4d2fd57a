//! Strict reading of the two send routes: raw query strings (V1) and JSON bodies (V2).

use std::borrow::Cow;
use std::collections::HashSet;

use axum::http::StatusCode;
use indexmap::IndexMap;
use serde_json::Value;

use super::record::{Recipient, Record, TagStyle};

/// A refusal: the status and the platform-shaped `result` text.
#[derive(Debug, Clone)]
pub(crate) struct Reject {
    pub status: StatusCode,
    pub result: Cow<'static, str>,
}

impl Reject {
    pub(crate) fn new(status: StatusCode, result: impl Into<Cow<'static, str>>) -> Reject {
        Reject {
            status,
            result: result.into(),
        }
    }

    pub(crate) fn bad(result: impl Into<Cow<'static, str>>) -> Reject {
        Reject::new(StatusCode::BAD_REQUEST, result)
    }
}

/// Keeps the first error seen.
#[derive(Default)]
struct FirstError(Option<Reject>);

impl FirstError {
    fn set(&mut self, reject: Reject) {
        if self.0.is_none() {
            self.0 = Some(reject);
        }
    }

    fn bad(&mut self, text: impl Into<Cow<'static, str>>) {
        self.set(Reject::bad(text));
    }
}

pub(crate) const V1_TAGS: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
];
pub(crate) const V2_TAGS: [&str; 4] = [
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
    "HUMAN_AGENT",
];
const MAX_TEXT_CHARS: usize = 2000;

/// Why a strict percent-decoding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    BadEscape,
    BadUtf8,
}

impl DecodeError {
    fn describe(self) -> &'static str {
        match self {
            DecodeError::BadEscape => {
                "invalid percent-encoding ('%' not followed by two hex digits)"
            }
            DecodeError::BadUtf8 => "percent-encoded bytes are not valid UTF-8",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding as UTF-8. A `+` stays a literal plus.
pub(crate) fn decode(raw: &str) -> Result<String, DecodeError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(DecodeError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::BadUtf8)
}

/// Shortens a client-chosen name for use in an error text.
fn shown(name: &str) -> String {
    const MAX: usize = 64;
    if name.chars().count() <= MAX {
        name.to_owned()
    } else {
        let cut: String = name.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// The path and query as received, with every `bot_token` value replaced by `***`.
pub(crate) fn redacted_target(path: &str, query: Option<&str>) -> String {
    let Some(query) = query else {
        return path.to_owned();
    };
    let mut out = String::with_capacity(path.len() + query.len() + 1);
    out.push_str(path);
    out.push('?');
    for (i, segment) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match segment.split_once('=') {
            Some((name, _))
                if percent_encoding::percent_decode_str(name).decode_utf8_lossy()
                    == "bot_token" =>
            {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(segment),
        }
    }
    out
}

/// What the request said about its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenParam {
    Missing,
    Repeated,
    Malformed,
    Given(String),
}

/// A parsed V1 request: the token, the fields for the record, and the first
/// validation error (checked after authentication and the rate limit).
pub(crate) struct V1Request {
    pub token: TokenParam,
    pub invalid: Option<Reject>,
}

/// Reads a V1 query string and body into `record`.
pub(crate) fn parse_v1(query: Option<&str>, body: &[u8], record: &mut Record) -> V1Request {
    let mut err = FirstError::default();
    let mut token = TokenParam::Missing;
    let mut seen: HashSet<String> = HashSet::new();
    let mut attributes: IndexMap<String, String> = IndexMap::new();

    for segment in query.unwrap_or("").split('&') {
        if segment.is_empty() {
            continue; // `a=1&&b=2` or a trailing `&`
        }
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        let name = match decode(raw_name) {
            Ok(name) => name,
            Err(e) => {
                err.bad(format!("a query parameter name has {}", e.describe()));
                continue;
            }
        };
        if name == "bot_token" {
            token = match (&token, decode(raw_value)) {
                (TokenParam::Missing, Ok(value)) => TokenParam::Given(value),
                (TokenParam::Missing, Err(_)) => TokenParam::Malformed,
                _ => TokenParam::Repeated,
            };
            continue;
        }
        if name.is_empty() {
            err.bad("a query parameter has an empty name");
            continue;
        }
        if !seen.insert(name.clone()) {
            err.bad(format!(
                "query parameter {} is repeated; every parameter may appear once",
                shown(&name)
            ));
            continue;
        }
        let value = match decode(raw_value) {
            Ok(value) => value,
            Err(e) => {
                err.bad(format!(
                    "the value of query parameter {} has {}",
                    shown(&name),
                    e.describe()
                ));
                continue;
            }
        };
        if name.len() >= 9 && name.as_bytes()[..9].eq_ignore_ascii_case(b"chatfuel_") {
            err.bad(format!(
                "query parameter {} is reserved: parameters starting with chatfuel_ must not be used",
                shown(&name)
            ));
            continue;
        }
        match name.as_str() {
            "block_name" => {
                if value.is_empty() {
                    err.bad("block_name is empty");
                }
                record.block_name = Some(value);
            }
            "block_id" => {
                if value.is_empty() {
                    err.bad("block_id is empty");
                }
                record.block_id = Some(value);
            }
            "messaging_tag" => {
                let (tag, style) = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(inner) => (inner.to_owned(), TagStyle::Quoted),
                    None => (value, TagStyle::Bare),
                };
                if tag == "HUMAN_AGENT" {
                    err.bad("messaging_tag HUMAN_AGENT is not accepted by the V1 API (V2 only); use CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE or ACCOUNT_UPDATE");
                } else if !V1_TAGS.contains(&tag.as_str()) {
                    err.bad("messaging_tag must be CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE or ACCOUNT_UPDATE (quoted as %22TAG%22 or bare)");
                }
                record.tag = Some(tag);
                record.tag_style = Some(style);
            }
            _ => {
                attributes.insert(name, value);
            }
        }
    }
    if record.block_name.is_some() && record.block_id.is_some() {
        err.bad("block_name and block_id are mutually exclusive; send at most one");
    }
    if !attributes.is_empty() {
        record.attributes = Some(attributes);
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        let trimmed = body.trim_ascii();
        let inner = trimmed
            .strip_prefix(b"{")
            .and_then(|rest| rest.strip_suffix(b"}"));
        if !inner.is_some_and(|inner| inner.iter().all(u8::is_ascii_whitespace)) {
            err.bad("the V1 body must be empty or {}: parameters travel in the query string");
        }
    }
    V1Request {
        token,
        invalid: err.0,
    }
}

/// Reads a V2 JSON body into `record`; returns the first validation error.
pub(crate) fn parse_v2(body: &[u8], record: &mut Record) -> Option<Reject> {
    let mut err = FirstError::default();
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return Some(Reject::bad(format!("the body is not valid JSON: {e}"))),
    };
    let Value::Object(map) = value else {
        return Some(Reject::bad("the body must be a JSON object"));
    };
    let mut recipient = Recipient::default();
    let mut attributes: IndexMap<String, String> = IndexMap::new();

    for (key, value) in map {
        match key.as_str() {
            "customer_id" => recipient.customer_id = string_field(&key, value, &mut err),
            "customer_email" => recipient.customer_email = string_field(&key, value, &mut err),
            "customer_phone" => recipient.customer_phone = string_field(&key, value, &mut err),
            "customer_fbid" => recipient.customer_fbid = string_field(&key, value, &mut err),
            "block_id" => record.block_id = string_field(&key, value, &mut err),
            "notification_messages_token" => record.ntn = string_field(&key, value, &mut err),
            "one_time_notif_token" => record.otn = string_field(&key, value, &mut err),
            "messaging_tag" => {
                if let Some(tag) = string_field(&key, value, &mut err) {
                    if !V2_TAGS.contains(&tag.as_str()) {
                        err.bad("messaging_tag must be CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE, ACCOUNT_UPDATE or HUMAN_AGENT (bare, without quotes)");
                    }
                    record.tag = Some(tag);
                }
            }
            "messages" => record.messages = messages_field(value, &mut err),
            "priority" => record.priority = priority_field(value, &mut err),
            _ => match value {
                Value::String(s) => {
                    attributes.insert(key, s);
                }
                _ => err.bad(format!(
                    "field {} is not a known field and not a string; extra top-level fields must be strings (they set user attributes)",
                    shown(&key)
                )),
            },
        }
    }

    let has_customer = recipient.customer_id.is_some()
        || recipient.customer_email.is_some()
        || recipient.customer_phone.is_some()
        || recipient.customer_fbid.is_some();
    if !has_customer {
        err.bad("at least one of customer_id, customer_email, customer_phone, customer_fbid is required");
    }
    match (record.block_id.is_some(), record.messages.is_some()) {
        (true, true) => err.bad("block_id and messages are mutually exclusive; send exactly one"),
        (false, false) => err.bad("one of block_id or messages is required"),
        _ => {}
    }
    if record.ntn.is_some() && record.otn.is_some() {
        err.bad("notification_messages_token and one_time_notif_token are mutually exclusive; send at most one");
    }
    if has_customer {
        record.recipient = Some(recipient);
    }
    if !attributes.is_empty() {
        record.attributes = Some(attributes);
    }
    err.0
}

fn string_field(key: &str, value: Value, err: &mut FirstError) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::String(_) => {
            err.bad(format!(
                "{key} is \"\": absent values must be omitted, not sent as \"\""
            ));
            None
        }
        Value::Null => {
            err.bad(format!(
                "{key} is null: absent values must be omitted, not sent as null"
            ));
            None
        }
        _ => {
            err.bad(format!("{key} must be a string"));
            None
        }
    }
}

fn messages_field(value: Value, err: &mut FirstError) -> Option<Vec<Value>> {
    let items = match value {
        Value::Array(items) => items,
        Value::Null => {
            err.bad("messages is null: absent values must be omitted, not sent as null");
            return None;
        }
        Value::String(s) if s.is_empty() => {
            err.bad("messages is \"\": absent values must be omitted, not sent as \"\"");
            return None;
        }
        _ => {
            err.bad("messages must be an array of message objects");
            return None;
        }
    };
    if items.is_empty() {
        err.bad("messages must not be empty");
    }
    for (i, item) in items.iter().enumerate() {
        let Value::Object(message) = item else {
            err.bad(format!("messages[{i}] must be a message object"));
            continue;
        };
        if message.is_empty() {
            err.bad(format!("messages[{i}] is an empty object"));
            continue;
        }
        match message.get("text") {
            None => {}
            Some(Value::String(text)) if text.is_empty() => {
                err.bad(format!("messages[{i}].text is empty"));
            }
            Some(Value::String(text)) => {
                let chars = text.chars().count();
                if chars > MAX_TEXT_CHARS {
                    err.bad(format!(
                        "messages[{i}].text has {chars} characters; the limit is 2,000"
                    ));
                }
            }
            Some(_) => err.bad(format!("messages[{i}].text must be a non-empty string")),
        }
    }
    Some(items)
}

fn priority_field(value: Value, err: &mut FirstError) -> Option<Vec<String>> {
    const FORM: &str =
        "priority must be an ordered subset of \"fbid\", \"phone\", \"email\" without repeats";
    let items = match value {
        Value::Array(items) => items,
        Value::Null => {
            err.bad("priority is null: absent values must be omitted, not sent as null");
            return None;
        }
        Value::String(s) if s.is_empty() => {
            err.bad("priority is \"\": absent values must be omitted, not sent as \"\"");
            return None;
        }
        _ => {
            err.bad(FORM);
            return None;
        }
    };
    if items.is_empty() {
        err.bad("priority is empty: omit it instead");
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if matches!(s.as_str(), "fbid" | "phone" | "email") => {
                if out.contains(&s) {
                    err.bad(format!("priority lists \"{s}\" twice; {FORM}"));
                }
                out.push(s);
            }
            _ => err.bad(FORM),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_strict() {
        assert_eq!(decode("a+b%20c").as_deref(), Ok("a+b c"));
        assert_eq!(decode("Kh%C3%BAy").as_deref(), Ok("Khúy"));
        assert_eq!(decode("%"), Err(DecodeError::BadEscape));
        assert_eq!(decode("%4"), Err(DecodeError::BadEscape));
        assert_eq!(decode("%zz"), Err(DecodeError::BadEscape));
        assert_eq!(decode("%C3%28"), Err(DecodeError::BadUtf8));
    }

    #[test]
    fn redaction_covers_encoded_names() {
        assert_eq!(
            redacted_target("/p", Some("a=1&bot_token=s3cr3t&bot%5Ftoken=x&b")),
            "/p?a=1&bot_token=***&bot%5Ftoken=***&b"
        );
        assert_eq!(redacted_target("/p", None), "/p");
    }
}
