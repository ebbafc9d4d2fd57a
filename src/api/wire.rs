//! The exact requests that go on the wire (SPEC section 4).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::platform::{MessagingTag, TagStyle};

/// RFC 3986: everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`
/// is percent-encoded (a space is `%20`, never `+`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a path segment or query value as the platform expects.
///
/// ```
/// use smax_campaign::api::wire::encode;
/// assert_eq!(encode("Khuyến mãi & 50%").to_string(), "Khuy%E1%BA%BFn%20m%C3%A3i%20%26%2050%25");
/// assert_eq!(encode("a+b=c#d~e").to_string(), "a%2Bb%3Dc%23d~e");
/// ```
pub fn encode(s: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(s, COMPONENT)
}

pub const REDACTED: &str = "***";

#[derive(Debug, Clone, PartialEq)]
pub enum V1Block {
    Name(String),
    Id(String),
}

/// A V1 send: `POST /bots/{BOT}/users/{USER}/send?bot_token=…&…`, body `{}`.
#[derive(Debug, Clone, PartialEq)]
pub struct V1Send {
    pub user_id: String,
    pub block: Option<V1Block>,
    pub tag: Option<MessagingTag>,
    /// In campaign order; an empty value clears the attribute.
    pub attributes: Vec<(String, String)>,
}

/// A V2 send: `POST /public/bots/{BOT}/send` with this JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct V2Send {
    pub body: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WireRequest {
    V1(V1Send),
    V2(V2Send),
}

/// What the wire needs to know about the bot besides the token.
#[derive(Debug, Clone)]
pub struct BotEndpoint {
    pub id: String,
    pub tag_style: TagStyle,
}

impl WireRequest {
    /// Path and query. `token` is the V1 token; `None` writes `bot_token=***`
    /// (every URL shown to a person or written to a file).
    pub fn path_and_query(&self, bot: &BotEndpoint, token: Option<&str>) -> String {
        match self {
            WireRequest::V1(v1) => {
                let mut s = String::with_capacity(128);
                s.push_str("/bots/");
                s.extend(encode(&bot.id));
                s.push_str("/users/");
                s.extend(encode(&v1.user_id));
                s.push_str("/send?bot_token=");
                match token {
                    Some(t) => s.extend(encode(t)),
                    None => s.push_str(REDACTED),
                }
                match &v1.block {
                    Some(V1Block::Name(n)) => {
                        s.push_str("&block_name=");
                        s.extend(encode(n));
                    }
                    Some(V1Block::Id(id)) => {
                        s.push_str("&block_id=");
                        s.extend(encode(id));
                    }
                    None => {}
                }
                if let Some(tag) = v1.tag {
                    s.push_str("&messaging_tag=");
                    match bot.tag_style {
                        TagStyle::Quoted => {
                            s.push_str("%22");
                            s.push_str(tag.as_str());
                            s.push_str("%22");
                        }
                        TagStyle::Bare => s.push_str(tag.as_str()),
                    }
                }
                for (name, value) in &v1.attributes {
                    s.push('&');
                    s.extend(encode(name));
                    s.push('=');
                    s.extend(encode(value));
                }
                s
            }
            WireRequest::V2(_) => format!("/public/bots/{}/send", encode(&bot.id)),
        }
    }

    /// The request body.
    pub fn body(&self) -> Vec<u8> {
        match self {
            WireRequest::V1(_) => b"{}".to_vec(),
            WireRequest::V2(v2) => serde_json::to_vec(&v2.body).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }

    pub fn body_json(&self) -> serde_json::Value {
        match self {
            WireRequest::V1(_) => serde_json::Value::Object(serde_json::Map::new()),
            WireRequest::V2(v2) => serde_json::Value::Object(v2.body.clone()),
        }
    }

    /// The first identifier, for logs and lists.
    pub fn recipient_label(&self) -> String {
        match self {
            WireRequest::V1(v1) => v1.user_id.clone(),
            WireRequest::V2(v2) => [
                "customer_id",
                "customer_phone",
                "customer_email",
                "customer_fbid",
            ]
            .iter()
            .find_map(|k| v2.body.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc3986_with_percent20() {
        assert_eq!(
            encode("a b&c=d+e#f%g/h~i.j-k_l").to_string(),
            "a%20b%26c%3Dd%2Be%23f%25g%2Fh~i.j-k_l"
        );
        assert_eq!(
            encode("Khuyến mãi 🎉").to_string(),
            "Khuy%E1%BA%BFn%20m%C3%A3i%20%F0%9F%8E%89"
        );
    }

    #[test]
    fn v1_query_order_and_redaction() {
        let req = WireRequest::V1(V1Send {
            user_id: "123".into(),
            block: Some(V1Block::Name("Khuyến mãi".into())),
            tag: Some(MessagingTag::ConfirmedEventUpdate),
            attributes: vec![
                ("coupon".into(), "A&B=C".into()),
                ("empty".into(), String::new()),
            ],
        });
        let bot = BotEndpoint {
            id: "b1".into(),
            tag_style: TagStyle::Quoted,
        };
        assert_eq!(
            req.path_and_query(&bot, None),
            "/bots/b1/users/123/send?bot_token=***&block_name=Khuy%E1%BA%BFn%20m%C3%A3i&messaging_tag=%22CONFIRMED_EVENT_UPDATE%22&coupon=A%26B%3DC&empty="
        );
        let bare = BotEndpoint {
            tag_style: TagStyle::Bare,
            ..bot
        };
        assert!(req
            .path_and_query(&bare, Some("t k"))
            .contains("bot_token=t%20k&"));
        assert!(req
            .path_and_query(&bare, None)
            .contains("messaging_tag=CONFIRMED_EVENT_UPDATE&"));
    }
}
