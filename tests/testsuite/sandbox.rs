//! In-process tests of the sandbox: each test starts its own server on port 0.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::time::Duration;

use serde_json::{json, Value};
use smax_campaign::sandbox::{
    serve_until, Api, BotCredentials, Fault, FaultSpec, Record, Sandbox, SandboxConfig, TagStyle,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const BOT: &str = "64f0c2a1e4b0";
const TOKEN: &str = "tok-S3cr3t-Value-42";
const OTHER_BOT: &str = "bot-two";
const OTHER_TOKEN: &str = "other-Token-77";
const WRONG_TOKEN: &str = "wrong-Token-99";

fn config() -> SandboxConfig {
    SandboxConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        bots: vec![
            BotCredentials {
                id: BOT.into(),
                token: TOKEN.into(),
            },
            BotCredentials {
                id: OTHER_BOT.into(),
                token: OTHER_TOKEN.into(),
            },
        ],
        ..SandboxConfig::default()
    }
}

/// RFC 3986 percent-encoding: unreserved characters stay, everything else is %XX.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Reply {
    status: u16,
    retry_after: Option<String>,
    text: String,
    json: Value,
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert!(json["success"].is_boolean(), "{text}");
    assert!(json["result"].is_string(), "{text}");
    Reply {
        status,
        retry_after,
        text,
        json,
    }
}

struct Harness {
    sb: Sandbox,
    client: reqwest::Client,
}

impl Harness {
    async fn new(config: SandboxConfig) -> Harness {
        Harness {
            sb: Sandbox::start(config).await.unwrap(),
            client: reqwest::Client::new(),
        }
    }

    fn v1_url(&self, bot: &str, user: &str, query: &str) -> String {
        format!(
            "{}/bots/{bot}/users/{user}/send?{query}",
            self.sb.base_url()
        )
    }

    /// POST with `Content-Type: application/json` and body `{}`.
    async fn v1(&self, user: &str, query: &str) -> Reply {
        let url = self.v1_url(BOT, user, query);
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        reply(resp).await
    }

    async fn v2_raw(&self, bot: &str, token: &str, body: String) -> Reply {
        let resp = self
            .client
            .post(format!("{}/public/bots/{bot}/send", self.sb.base_url()))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        reply(resp).await
    }

    async fn v2(&self, body: Value) -> Reply {
        self.v2_raw(BOT, TOKEN, body.to_string()).await
    }

    fn last(&self) -> Record {
        self.sb.records().pop().expect("a record")
    }
}

fn assert_refused(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["success"], false, "{}", r.text);
    let result = r.json["result"].as_str().unwrap();
    assert!(
        result.to_lowercase().contains(&needle.to_lowercase()),
        "result {result:?} should mention {needle:?}"
    );
}

fn assert_ok(r: &Reply) {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"success": true, "result": "ok"}));
}

fn query(token: &str, rest: &str) -> String {
    format!("bot_token={token}&{rest}")
}

// ---------------------------------------------------------------- V1

#[tokio::test]
async fn v1_round_trip_keeps_every_character() {
    let h = Harness::new(config()).await;
    let block = "Khuyến mãi 🎉";
    let coupon = "A&B=C+D#E%F 100% ✓";
    let name = "Nguyễn Thị Ánh 😀";
    let rest = format!(
        "block_name={}&messaging_tag=%22CONFIRMED_EVENT_UPDATE%22&coupon={}&full_name={}&cleared=&plus=1+1",
        enc(block),
        enc(coupon),
        enc(name)
    );
    let r = h.v1("1234567890", &query(TOKEN, &rest)).await;
    assert_ok(&r);

    let rec = h.last();
    assert_eq!(rec.seq, 1);
    assert_eq!(rec.api, Api::V1);
    assert_eq!(rec.bot, BOT);
    assert_eq!(rec.status, Some(200));
    assert!(rec.accepted);
    assert_eq!(rec.fault, None);
    assert_eq!(rec.result, "ok");
    assert_eq!(
        rec.recipient.as_ref().unwrap().user_id.as_deref(),
        Some("1234567890")
    );
    assert_eq!(rec.block_name.as_deref(), Some(block));
    assert_eq!(rec.block_id, None);
    assert_eq!(rec.tag.as_deref(), Some("CONFIRMED_EVENT_UPDATE"));
    assert_eq!(rec.tag_style, Some(TagStyle::Quoted));
    let attributes: Vec<(String, String)> = rec.attributes.clone().unwrap().into_iter().collect();
    let expected: Vec<(String, String)> = [
        ("coupon", coupon),
        ("full_name", name),
        ("cleared", ""),
        ("plus", "1+1"), // a raw `+` is a literal plus, never a space
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attributes, expected);

    // The raw request line, exactly as sent, token redacted.
    assert_eq!(
        rec.request_line,
        format!("POST /bots/{BOT}/users/1234567890/send?bot_token=***&{rest} HTTP/1.1")
    );
    assert!(rec
        .request_line
        .contains("block_name=Khuy%E1%BA%BFn%20m%C3%A3i%20%F0%9F%8E%89&"));
    assert!(rec
        .request_line
        .contains("coupon=A%26B%3DC%2BD%23E%25F%20100%25%20%E2%9C%93&"));
    assert!(!rec.request_line.contains(TOKEN));

    // The JSON form omits absent fields and keeps attribute order.
    let line = serde_json::to_string(&rec).unwrap();
    assert!(!line.contains("block_id"));
    assert!(!line.contains("messages"));
    assert!(line.contains(r#""fault":null"#));
    assert!(line.contains(r#""tag_style":"quoted""#));
    let back: Record = serde_json::from_str(&line).unwrap();
    assert_eq!(back, rec);
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_tags_quoted_and_bare_are_accepted() {
    let h = Harness::new(config()).await;
    for (raw, style) in [
        ("%22POST_PURCHASE_UPDATE%22", TagStyle::Quoted),
        ("ACCOUNT_UPDATE", TagStyle::Bare),
        ("CONFIRMED_EVENT_UPDATE", TagStyle::Bare),
    ] {
        let r = h
            .v1(
                "u1",
                &query(TOKEN, &format!("block_id=b1&messaging_tag={raw}")),
            )
            .await;
        assert_ok(&r);
        let rec = h.last();
        assert_eq!(rec.tag_style, Some(style));
        assert!(!rec.tag.unwrap().contains('"'));
        assert_eq!(rec.block_id.as_deref(), Some("b1"));
    }
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_bad_tags_are_refused() {
    let h = Harness::new(config()).await;
    let r = h
        .v1(
            "u1",
            &query(TOKEN, "block_id=b1&messaging_tag=%22HUMAN_AGENT%22"),
        )
        .await;
    assert_refused(&r, 400, "HUMAN_AGENT");
    let r = h
        .v1("u1", &query(TOKEN, "block_id=b1&messaging_tag=HUMAN_AGENT"))
        .await;
    assert_refused(&r, 400, "HUMAN_AGENT");
    for bad in ["PROMOTION", "%22ACCOUNT_UPDATE", "", "account_update"] {
        let r = h
            .v1(
                "u1",
                &query(TOKEN, &format!("block_id=b1&messaging_tag={bad}")),
            )
            .await;
        assert_refused(&r, 400, "messaging_tag");
    }
    assert!(h.sb.records().iter().all(|r| !r.accepted));
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_attributes_only_and_lenient_bodies() {
    let h = Harness::new(config()).await;
    let r = h.v1("u1", &query(TOKEN, "coupon=X1&")).await;
    assert_ok(&r);
    let rec = h.last();
    assert_eq!(rec.block_name, None);
    assert_eq!(rec.block_id, None);
    assert_eq!(rec.tag, None);

    let url = h.v1_url(BOT, "u1", &query(TOKEN, "coupon=X2"));
    for (content_type, body) in [
        ("application/json", ""),
        ("application/json; charset=utf-8", " { }\n"),
        ("Application/JSON", "{}"),
    ] {
        let resp = h
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_ok(&reply(resp).await);
    }
    let resp = h
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"coupon":"X3"}"#)
        .send()
        .await
        .unwrap();
    assert_refused(&reply(resp).await, 400, "body");
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_wrong_method_is_405() {
    let h = Harness::new(config()).await;
    let url = h.v1_url(BOT, "u1", &query(TOKEN, "block_id=b1"));
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let resp = h
            .client
            .request(method, &url)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["allow"], "POST");
        assert_refused(&reply(resp).await, 405, "POST");
    }
    let rec = h.last();
    assert_eq!(rec.status, Some(405));
    assert!(rec.request_line.starts_with("PUT /bots/"));
    assert!(!rec.request_line.contains(TOKEN));
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_wrong_content_type_is_400() {
    let h = Harness::new(config()).await;
    let url = h.v1_url(BOT, "u1", &query(TOKEN, "block_id=b1"));
    let resp = h
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_refused(&reply(resp).await, 400, "Content-Type");
    let resp = h.client.post(&url).body("{}").send().await.unwrap();
    assert_refused(&reply(resp).await, 400, "Content-Type");
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_bad_or_missing_token_is_401_and_never_echoed() {
    let h = Harness::new(config()).await;
    let r = h.v1("u1", &query(WRONG_TOKEN, "block_id=b1")).await;
    assert_refused(&r, 401, "token");
    assert!(!r.text.contains(WRONG_TOKEN) && !r.text.contains(TOKEN));
    let rec = h.last();
    assert_eq!(rec.status, Some(401));
    assert!(!rec.accepted);
    assert!(rec.request_line.contains("bot_token=***&block_id=b1"));

    // Another bot's valid token is still the wrong token for this bot.
    let r = h.v1("u1", &query(OTHER_TOKEN, "block_id=b1")).await;
    assert_refused(&r, 401, "token");

    let r = h.v1("u1", "block_id=b1").await;
    assert_refused(&r, 401, "bot_token");

    let records = serde_json::to_string(&h.sb.records()).unwrap();
    for secret in [TOKEN, WRONG_TOKEN, OTHER_TOKEN] {
        assert!(!records.contains(secret), "{secret} leaked into records");
    }
    h.sb.shutdown().await;
}

#[tokio::test]
async fn unknown_bot_is_404() {
    let h = Harness::new(config()).await;
    let url = h.v1_url("nope", "u1", &query(TOKEN, "block_id=b1"));
    let resp = h
        .client
        .post(url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_refused(&reply(resp).await, 404, "bot");
    let r = h
        .v2_raw(
            "nope",
            TOKEN,
            json!({"customer_id": "1", "block_id": "b"}).to_string(),
        )
        .await;
    assert_refused(&r, 404, "bot");
    assert_eq!(h.last().bot, "nope");
    h.sb.shutdown().await;
}

#[tokio::test]
async fn unknown_user_is_404_when_users_are_given() {
    let mut cfg = config();
    cfg.users = Some(HashSet::from(["u1".to_string(), "0912345678".to_string()]));
    let h = Harness::new(cfg).await;
    assert_ok(&h.v1("u1", &query(TOKEN, "block_id=b1")).await);
    assert_refused(&h.v1("u2", &query(TOKEN, "block_id=b1")).await, 404, "user");
    // V2: any customer_* value may match.
    let ok = h
        .v2(json!({"customer_id": "zzz", "customer_phone": "0912345678", "block_id": "b"}))
        .await;
    assert_ok(&ok);
    let r = h.v2(json!({"customer_id": "zzz", "block_id": "b"})).await;
    assert_refused(&r, 404, "user");
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v1_reserved_repeated_and_conflicting_parameters_are_400() {
    let h = Harness::new(config()).await;
    let cases = [
        ("block_id=b1&chatfuel_user_id=5", "chatfuel_"),
        ("block_id=b1&coupon=a&coupon=b", "repeated"),
        ("block_id=b1&coupon=a&coup%6Fn=b", "repeated"),
        ("block_name=Home&block_id=b1", "block_id"),
        ("block_id=b1&coupon=%ZZ", "percent"),
        ("block_id=b1&coupon=%C3%28", "UTF-8"),
        ("block_id=b1&=value", "empty name"),
    ];
    for (rest, needle) in cases {
        let r = h.v1("u1", &query(TOKEN, rest)).await;
        assert_refused(&r, 400, needle);
    }
    let r = h
        .v1(
            "u1",
            &format!("bot_token={TOKEN}&block_id=b1&bot_token={TOKEN}"),
        )
        .await;
    assert_refused(&r, 400, "repeated");
    assert!(!h.last().request_line.contains(TOKEN));
    h.sb.shutdown().await;
}

#[tokio::test]
async fn other_paths_are_404_not_found_and_not_recorded() {
    let h = Harness::new(config()).await;
    for path in [
        "/",
        "/health",
        "/bots/x/send",
        "/public/bots/x/send/extra",
        "/bots/x/users//send",
    ] {
        let resp = h
            .client
            .post(format!("{}{path}", h.sb.base_url()))
            .send()
            .await
            .unwrap();
        let r = reply(resp).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json, json!({"success": false, "result": "not found"}));
    }
    assert!(h.sb.records().is_empty());
    h.sb.shutdown().await;
}

// ---------------------------------------------------------------- V2

#[tokio::test]
async fn v2_happy_path_with_messages() {
    let h = Harness::new(config()).await;
    let text = "Chào An 😀, ưu đãi kết thúc ngày 30/11!";
    let body = json!({
        "customer_id": "1001",
        "customer_phone": "0912345678",
        "messages": [{"text": text}, {"attachment": {"type": "image", "url": "https://x/y.png"}}],
        "one_time_notif_token": "otn-1",
        "messaging_tag": "HUMAN_AGENT",
        "priority": ["fbid", "phone"],
        "coupon": "A&B=C",
        "first_name": "An"
    });
    assert_ok(&h.v2(body.clone()).await);
    let rec = h.last();
    assert_eq!(rec.api, Api::V2);
    assert_eq!(rec.bot, BOT);
    assert!(rec.accepted);
    assert_eq!(
        rec.request_line,
        format!("POST /public/bots/{BOT}/send HTTP/1.1")
    );
    let recipient = rec.recipient.clone().unwrap();
    assert_eq!(recipient.customer_id.as_deref(), Some("1001"));
    assert_eq!(recipient.customer_phone.as_deref(), Some("0912345678"));
    assert_eq!(recipient.user_id, None);
    assert_eq!(
        rec.messages.as_ref().unwrap(),
        body["messages"].as_array().unwrap()
    );
    assert_eq!(rec.tag.as_deref(), Some("HUMAN_AGENT"));
    assert_eq!(rec.tag_style, None);
    assert_eq!(rec.otn.as_deref(), Some("otn-1"));
    assert_eq!(rec.ntn, None);
    assert_eq!(
        rec.priority,
        Some(vec!["fbid".to_string(), "phone".to_string()])
    );
    let attributes: Vec<(String, String)> = rec.attributes.unwrap().into_iter().collect();
    assert_eq!(
        attributes,
        vec![
            ("coupon".to_string(), "A&B=C".to_string()),
            ("first_name".to_string(), "An".to_string())
        ]
    );

    // 2,000 characters is the limit, counted in characters, not bytes.
    let long = "ế".repeat(2000);
    assert_ok(
        &h.v2(json!({"customer_id": "1001", "messages": [{"text": long}]}))
            .await,
    );
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v2_happy_path_with_block_id() {
    let h = Harness::new(config()).await;
    let r = h
        .v2(json!({"customer_fbid": "fb-1", "block_id": "64f0b", "notification_messages_token": "ntn-9"}))
        .await;
    assert_ok(&r);
    let rec = h.last();
    assert_eq!(rec.block_id.as_deref(), Some("64f0b"));
    assert_eq!(rec.ntn.as_deref(), Some("ntn-9"));
    assert_eq!(rec.messages, None);
    assert_eq!(rec.attributes, None);
    assert_eq!(
        rec.recipient.unwrap().customer_fbid.as_deref(),
        Some("fb-1")
    );
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v2_invalid_bodies_are_400() {
    let h = Harness::new(config()).await;
    let cases = [
        (json!({"block_id": "b"}), "at least one of customer_id"),
        (
            json!({"customer_id": "1", "block_id": "b", "messages": [{"text": "hi"}]}),
            "mutually exclusive",
        ),
        (json!({"customer_id": "1"}), "one of block_id or messages"),
        (
            json!({"customer_id": null, "customer_phone": "1", "block_id": "b"}),
            "omitted",
        ),
        (
            json!({"customer_id": "", "customer_phone": "1", "block_id": "b"}),
            "omitted",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "messaging_tag": null}),
            "omitted",
        ),
        (json!({"customer_id": "1", "block_id": ""}), "omitted"),
        (
            json!({"customer_id": "1", "block_id": "b", "one_time_notif_token": "o", "notification_messages_token": "n"}),
            "mutually exclusive",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "priority": ["fbid", "fbid"]}),
            "twice",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "priority": ["sms"]}),
            "priority",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "priority": "fbid"}),
            "priority",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "priority": []}),
            "priority",
        ),
        (
            json!({"customer_id": "1", "messages": [{"text": "ế".repeat(2001)}]}),
            "2,000",
        ),
        (json!({"customer_id": "1", "messages": []}), "empty"),
        (
            json!({"customer_id": "1", "messages": [{"text": ""}]}),
            "empty",
        ),
        (
            json!({"customer_id": "1", "messages": ["hi"]}),
            "message object",
        ),
        (json!({"customer_id": 1001, "block_id": "b"}), "string"),
        (
            json!({"customer_id": "1", "block_id": "b", "orders": 4}),
            "must be strings",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "messaging_tag": "\"ACCOUNT_UPDATE\""}),
            "messaging_tag",
        ),
        (
            json!({"customer_id": "1", "block_id": "b", "messaging_tag": "PROMO"}),
            "messaging_tag",
        ),
        (json!(["customer_id", "1"]), "JSON object"),
    ];
    for (body, needle) in cases {
        let r = h.v2(body.clone()).await;
        assert_refused(&r, 400, needle);
        assert!(!h.last().accepted, "{body}");
    }
    let r = h
        .v2_raw(BOT, TOKEN, "{\"customer_id\": \"1\",".into())
        .await;
    assert_refused(&r, 400, "not valid JSON");
    h.sb.shutdown().await;
}

#[tokio::test]
async fn v2_auth_and_content_type() {
    let h = Harness::new(config()).await;
    let body = json!({"customer_id": "1", "block_id": "b"}).to_string();
    let r = h.v2_raw(BOT, WRONG_TOKEN, body.clone()).await;
    assert_refused(&r, 401, "token");
    assert!(!r.text.contains(WRONG_TOKEN));
    let url = format!("{}/public/bots/{BOT}/send", h.sb.base_url());
    let resp = h
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_refused(&reply(resp).await, 401, "Authorization");
    let resp = h
        .client
        .post(&url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_refused(&reply(resp).await, 400, "Content-Type");
    let all = serde_json::to_string(&h.sb.records()).unwrap();
    assert!(!all.contains(TOKEN) && !all.contains(WRONG_TOKEN));
    h.sb.shutdown().await;
}

// ---------------------------------------------------------------- rate

#[tokio::test]
async fn rate_limit_holds_in_every_one_second_window() {
    let mut cfg = config();
    cfg.rate = Some(5);
    let h = Harness::new(cfg).await;
    let url = h.v1_url(BOT, "u1", &query(TOKEN, "block_id=b1"));
    let mut sent = 0usize;
    let mut saw_429 = false;
    // One burst is enough in practice; a slow machine gets at most three.
    for _round in 0..3 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let client = h.client.clone();
            let url = url.clone();
            set.spawn(async move {
                let resp = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                reply(resp).await
            });
        }
        while let Some(joined) = set.join_next().await {
            let r = joined.unwrap();
            sent += 1;
            if r.status == 429 {
                saw_429 = true;
                assert_eq!(r.retry_after.as_deref(), Some("1"));
                assert_eq!(
                    r.json,
                    json!({"success": false, "result": "rate limit exceeded"})
                );
            } else {
                assert_ok(&r);
            }
        }
        if saw_429 {
            break;
        }
    }
    assert!(
        saw_429,
        "20 concurrent requests at rate 5 should meet a 429"
    );

    let records = h.sb.records();
    assert_eq!(records.len(), sent);
    let mut admitted: Vec<u64> = records
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r| r.t_us)
        .collect();
    admitted.sort_unstable();
    assert!(!admitted.is_empty());
    for w in admitted.windows(6) {
        assert!(w[5] - w[0] >= 1_000_000, "6 admitted within 1 s: {w:?}");
    }
    let span_s = (admitted[admitted.len() - 1] - admitted[0]) / 1_000_000;
    assert!(admitted.len() as u64 <= 5 * (span_s + 1));

    // The budget is per bot: another bot is not affected.
    let r = h
        .v2_raw(
            OTHER_BOT,
            OTHER_TOKEN,
            json!({"customer_id": "1", "block_id": "b"}).to_string(),
        )
        .await;
    assert_ok(&r);
    h.sb.shutdown().await;
}

// ---------------------------------------------------------------- faults

async fn run_faults(seed: u64) -> (Vec<u16>, Vec<Option<Fault>>) {
    let mut cfg = config();
    cfg.fail = "500:0.5".parse().unwrap();
    cfg.seed = seed;
    let h = Harness::new(cfg).await;
    let mut statuses = Vec::new();
    for i in 0..200 {
        let r = h
            .v2(json!({"customer_id": format!("c{i}"), "block_id": "b"}))
            .await;
        match r.status {
            500 => assert_eq!(
                r.json,
                json!({"success": false, "result": "internal error"})
            ),
            _ => assert_ok(&r),
        }
        statuses.push(r.status);
    }
    let records = h.sb.records();
    h.sb.shutdown().await;
    assert_eq!(records.len(), 200);
    for (rec, status) in records.iter().zip(&statuses) {
        assert_eq!(rec.status, Some(*status));
        assert_eq!(rec.accepted, *status == 200);
    }
    (statuses, records.into_iter().map(|r| r.fault).collect())
}

#[tokio::test]
async fn faults_are_deterministic_for_a_seed() {
    let (first, faults) = run_faults(7).await;
    let errors = first.iter().filter(|s| **s == 500).count();
    assert!((60..=140).contains(&errors), "{errors} 500s out of 200");
    assert_eq!(
        faults
            .iter()
            .filter(|f| **f == Some(Fault::Http500))
            .count(),
        errors
    );
    let (second, _) = run_faults(7).await;
    assert_eq!(first, second);
}

#[tokio::test]
async fn reject_and_429_faults() {
    let mut cfg = config();
    cfg.fail = "reject:1".parse().unwrap();
    let h = Harness::new(cfg).await;
    let r = h.v2(json!({"customer_id": "1", "block_id": "b"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json,
        json!({"success": false, "result": "user has blocked the page"})
    );
    let rec = h.last();
    assert_eq!(rec.fault, Some(Fault::Reject));
    assert!(!rec.accepted);
    h.sb.shutdown().await;

    let mut cfg = config();
    cfg.fail = "429:1".parse().unwrap();
    let h = Harness::new(cfg).await;
    let r = h.v1("u1", &query(TOKEN, "block_id=b1")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(h.last().fault, Some(Fault::Http429));
    // Faults are drawn only for valid requests.
    let r = h.v1("u1", &query(WRONG_TOKEN, "block_id=b1")).await;
    assert_refused(&r, 401, "token");
    assert_eq!(h.last().fault, None);
    h.sb.shutdown().await;
}

#[tokio::test]
async fn timeout_fault_delivers_but_never_answers() {
    let mut cfg = config();
    cfg.fail = "timeout:1".parse().unwrap();
    let h = Harness::new(cfg).await; // default hold: 30 s, ended by shutdown
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(h.v1_url(BOT, "u1", &query(TOKEN, "block_id=b1")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let rec = h.last();
    assert!(rec.accepted);
    assert_eq!(rec.fault, Some(Fault::Timeout));
    assert_eq!(rec.status, None);
    h.sb.shutdown().await;
}

#[tokio::test]
async fn timeout_fault_drops_the_connection_after_the_hold() {
    let mut cfg = config();
    cfg.fail = "timeout:1".parse().unwrap();
    cfg.timeout_hold = Duration::from_millis(50);
    let h = Harness::new(cfg).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let result = client
        .post(format!("{}/public/bots/{BOT}/send", h.sb.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(json!({"customer_id": "1", "block_id": "b"}).to_string())
        .send()
        .await;
    let err = result.expect_err("no response is ever written");
    assert!(!err.is_timeout(), "{err}");
    let rec = h.last();
    assert!(rec.accepted);
    assert_eq!(rec.fault, Some(Fault::Timeout));
    h.sb.shutdown().await;
}

// ---------------------------------------------------------------- record file

#[tokio::test]
async fn record_file_has_one_json_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.jsonl");
    let mut cfg = config();
    cfg.record = Some(path.clone());
    let h = Harness::new(cfg).await;
    assert_ok(
        &h.v1(
            "u1",
            &query(TOKEN, "block_name=Khuy%E1%BA%BFn&coupon=%F0%9F%8E%89"),
        )
        .await,
    );
    assert_refused(
        &h.v1("u1", &query(WRONG_TOKEN, "block_id=b1")).await,
        401,
        "token",
    );
    assert_ok(
        &h.v2(json!({"customer_email": "an@example.vn", "block_id": "b"}))
            .await,
    );

    // Readable while the sandbox runs.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Record> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, h.sb.records());
    assert_eq!(lines.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(lines[0].block_name.as_deref(), Some("Khuyến"));
    assert!(!text.contains(TOKEN) && !text.contains(WRONG_TOKEN));
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v.get("t_us").is_some() && v.get("request_line").is_some());
    }

    let in_memory = h.sb.records();
    h.sb.shutdown().await;
    let after: Vec<Record> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(after, in_memory);
}

#[tokio::test]
async fn serve_until_stops_when_told() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_until(config(), async move {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let mut cfg = config();
    cfg.bots.clear();
    let err = Sandbox::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("--bot ID=TOKEN"), "{err}");

    let mut cfg = config();
    cfg.rate = Some(0);
    assert!(Sandbox::start(cfg).await.is_err());

    let mut cfg = config();
    cfg.bots.push(cfg.bots[0].clone());
    let err = Sandbox::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("twice"), "{err}");
}

// ---------------------------------------------------------------- parsing

#[test]
fn fault_spec_parses() {
    let spec: FaultSpec = "500:0.05,timeout:0.02,reject:0.01,429:0.1".parse().unwrap();
    assert_eq!(
        spec,
        FaultSpec {
            http_500: 0.05,
            http_429: 0.1,
            timeout: 0.02,
            reject: 0.01
        }
    );
    assert_eq!(" 500 : 1 ".parse::<FaultSpec>().unwrap().http_500, 1.0);
    assert!("".parse::<FaultSpec>().unwrap().is_none());
    assert!("none".parse::<FaultSpec>().unwrap().is_none());
    assert_eq!(
        spec.to_string(),
        "500:0.05,429:0.1,timeout:0.02,reject:0.01"
    );
}

#[test]
fn fault_spec_errors_are_clear() {
    let cases = [
        ("500", "KIND:SHARE"),
        ("503:0.1", "unknown fault kind"),
        ("500:abc", "not a number"),
        ("500:1.5", "outside [0, 1]"),
        ("500:-0.1", "outside [0, 1]"),
        ("500:NaN", "outside [0, 1]"),
        ("500:0.6,429:0.6", "at most 1"),
        ("500:0.1,500:0.2", "twice"),
    ];
    for (text, needle) in cases {
        let err = text.parse::<FaultSpec>().unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?} → {err}");
    }
}

#[test]
fn bot_credentials_parse() {
    let bot: BotCredentials = "64f0c2a1e4b0=abc=def".parse().unwrap();
    assert_eq!(bot.id, "64f0c2a1e4b0");
    assert_eq!(bot.token, "abc=def");
    assert!(!format!("{bot:?}").contains("abc"));

    for bad in ["justatokenvalue", "=tok", "id=", "a/b=tok", ""] {
        let err = bad.parse::<BotCredentials>().unwrap_err().to_string();
        assert!(err.contains("ID=TOKEN"), "{bad:?} → {err}");
        assert!(
            bad.is_empty() || !err.contains(bad),
            "{err} echoes the input"
        );
    }
}

#[tokio::test]
async fn latency_delays_but_still_answers() {
    let mut cfg = config();
    cfg.latency = Duration::from_millis(20);
    let h = Harness::new(cfg).await;
    assert_ok(&h.v1("u1", &query(TOKEN, "block_id=b1")).await);
    h.sb.shutdown().await;
}

#[test]
fn users_file_is_one_id_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.txt");
    std::fs::write(&path, "# known users\nu1\n  1001  \n\nan@example.vn\n").unwrap();
    let users = smax_campaign::sandbox::read_users(&path).unwrap();
    let expected: HashSet<String> = ["u1", "1001", "an@example.vn"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(users, expected);
    let missing = smax_campaign::sandbox::read_users(&dir.path().join("nope.txt"));
    assert!(missing.unwrap_err().to_string().contains("users file"));
}

// ---------------------------------------------------------------- connection limits

/// Bound on every wait below, so a regression fails instead of hanging CI; it is a
/// safety net, never a timing assertion.
const SAFETY_NET: Duration = Duration::from_secs(10);

/// Not a send route: answered 404 (after `latency`), never recorded.
const PLAIN_GET: &[u8] = b"GET /nothing-here HTTP/1.1\r\nHost: sandbox\r\n\r\n";
const NOT_FOUND: &str = "HTTP/1.1 404 Not Found";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one whole answer (head and `Content-Length` body); returns its status line.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut chunk = [0u8; 1024];
    for _ in 0..1000 {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("the sandbox always sends Content-Length");
            if data.len() >= end + 4 + length {
                return head.lines().next().unwrap().to_owned();
            }
        }
        let n = tokio::time::timeout(SAFETY_NET, stream.read(&mut chunk))
            .await
            .expect("an answer within the safety net")
            .expect("the connection stays readable");
        assert!(n > 0, "closed before a whole answer: {data:?}");
        data.extend_from_slice(&chunk[..n]);
    }
    panic!("no whole answer in 1000 reads: {data:?}");
}

/// Sends `PLAIN_GET` on a kept-alive connection and reads its answer.
async fn round_trip(stream: &mut TcpStream) -> String {
    stream.write_all(PLAIN_GET).await.unwrap();
    read_answer(stream).await
}

/// Waits (up to the safety net) for the sandbox to close `stream`, sending nothing.
async fn assert_closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(SAFETY_NET, stream.read(&mut buf))
        .await
        .expect("the sandbox closes the idle connection (the safety net ran out first)");
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection closed, got {:?}", &buf[..n]),
    }
}

#[tokio::test]
async fn idle_connection_that_sends_nothing_is_closed() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(200);
    let sb = Sandbox::start(cfg).await.unwrap();
    let mut silent = TcpStream::connect(sb.addr()).await.unwrap();
    assert_closed_by_server(&mut silent).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn kept_alive_connection_is_closed_once_idle_after_its_answer() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(200);
    let sb = Sandbox::start(cfg).await.unwrap();
    let mut conn = TcpStream::connect(sb.addr()).await.unwrap();
    assert_eq!(round_trip(&mut conn).await, NOT_FOUND);
    assert_closed_by_server(&mut conn).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn slow_answers_outlive_a_shorter_idle_timeout() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(200);
    cfg.latency = Duration::from_millis(800);
    let h = Harness::new(cfg).await;
    // The client is silent while the sandbox works on its request: not idle.
    assert_ok(&h.v1("u1", &query(TOKEN, "block_id=b1")).await);
    let mut conn = TcpStream::connect(h.sb.addr()).await.unwrap();
    assert_eq!(round_trip(&mut conn).await, NOT_FOUND);
    h.sb.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let mut cfg = config();
    cfg.max_connections = 2;
    // Far beyond the test, so only closing `first` can free a slot.
    cfg.idle_timeout = Duration::from_secs(3600);
    let sb = Sandbox::start(cfg).await.unwrap();

    // Answers prove the sandbox took both connections (a finished handshake alone
    // would not: the kernel completes it for the backlog).
    let mut first = TcpStream::connect(sb.addr()).await.unwrap();
    assert_eq!(round_trip(&mut first).await, NOT_FOUND);
    let mut second = TcpStream::connect(sb.addr()).await.unwrap();
    assert_eq!(round_trip(&mut second).await, NOT_FOUND);

    let mut third = std::net::TcpStream::connect(sb.addr()).unwrap();
    third.write_all(PLAIN_GET).unwrap();
    third.set_nonblocking(true).unwrap();
    // Each answer on `second` gives an uncapped server ample turns to have answered
    // `third`; with the cap, `third` cannot be answered, however the turns fall.
    for _ in 0..20 {
        assert_eq!(round_trip(&mut second).await, NOT_FOUND);
        let mut byte = [0u8; 1];
        match third.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a third connection was served while two were open: {other:?}"),
        }
    }

    drop(first);
    let mut third = TcpStream::from_std(third).unwrap();
    assert_eq!(read_answer(&mut third).await, NOT_FOUND);
    sb.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_silent_connections_drains_and_the_sandbox_still_answers() {
    let mut cfg = config();
    cfg.max_connections = 4;
    cfg.idle_timeout = Duration::from_millis(200);
    let h = Harness::new(cfg).await;
    let mut flood = Vec::new();
    for _ in 0..16 {
        flood.push(TcpStream::connect(h.sb.addr()).await.unwrap());
    }
    // Each waits for a slot, then idles out, handing the slot on.
    for conn in &mut flood {
        assert_closed_by_server(conn).await;
    }
    drop(flood);
    assert_ok(&h.v1("u1", &query(TOKEN, "block_id=b1")).await);
    h.sb.shutdown().await;
}

/// A second sandbox on a port in use says so and how to pick a free one.
#[test]
fn a_port_in_use_is_an_error_that_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = crate::common::run(&["sandbox", "--listen", &addr, "--bot", "a=b"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the port is in use"), "{err}");
    assert!(err.contains("--listen 127.0.0.1:0"), "{err}");
}
