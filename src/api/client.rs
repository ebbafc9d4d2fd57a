//! The HTTP client: sends a [`WireRequest`] and classifies what came back
//! (SPEC section 6). It never retries; the delivery loop decides that.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::platform::ApiVersion;
use super::wire::{BotEndpoint, WireRequest};

/// A bot token. Its `Debug` never shows it; it is read only to build requests.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(token: String) -> Self {
        Secret(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything needed to address a bot.
#[derive(Debug, Clone)]
pub struct BotAuth {
    pub endpoint: BotEndpoint,
    pub api: ApiVersion,
    pub token: Secret,
}

/// What one HTTP exchange amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 2xx and `success: true`.
    Sent { status: u16, result: Option<String> },
    /// The platform refused this recipient: `success: false`, or 400/404/422.
    Rejected { status: u16, text: String },
    /// Worth another try: 429, 5xx, or no connection before the request was written.
    Retryable {
        status: Option<u16>,
        text: String,
        retry_after: Option<Duration>,
    },
    /// The request may have been delivered: timeout or a broken connection after writing.
    Unknown { text: String },
    /// 401/403: the token is wrong; every recipient would fail alike.
    Fatal { status: u16, text: String },
}

impl Reply {
    /// A signature for the breaker: two failures "fail the same way" when equal.
    pub fn signature(&self) -> Option<String> {
        match self {
            Reply::Sent { .. } => None,
            Reply::Rejected { status, text } | Reply::Fatal { status, text } => {
                Some(format!("{status} {text}"))
            }
            Reply::Retryable { status, text, .. } => Some(format!(
                "{} {text}",
                status.map(|s| s.to_string()).unwrap_or_default()
            )),
            Reply::Unknown { text } => Some(format!("unknown {text}")),
        }
    }
}

/// Sends requests. A trait so the delivery loop can be driven by a fake in tests.
pub trait Transport: Send + Sync {
    fn send<'a>(
        &'a self,
        bot: &'a BotAuth,
        request: &'a WireRequest,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;
}

/// The real transport: reqwest over rustls, keep-alive connections reused.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base_url: String,
}

/// When this variable is set (to anything but empty or `0`), the client
/// connects to loopback addresses only. This project's tests set it for every
/// process they start, so a regression elsewhere (say, in the refusal of a rate
/// above the platform's limit) can never make a test reach the real API.
pub const LOOPBACK_ONLY_ENV: &str = "SMAX_LOOPBACK_ONLY";

/// How long an idle connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

fn loopback_only() -> bool {
    std::env::var_os(LOOPBACK_ONLY_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Why the HTTP client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{url}` is not a URL")]
    NotAUrl { url: String },
    #[error("{LOOPBACK_ONLY_ENV} is set: refusing to connect to `{host}`, which is not a loopback address")]
    NotLoopback { host: String },
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

impl HttpTransport {
    /// `pool_size`: the most requests in flight at once (`delivery.concurrency`).
    pub fn new(base_url: &str, timeout: Duration, pool_size: usize) -> Result<Self, ClientError> {
        if loopback_only() {
            let url = reqwest::Url::parse(base_url).map_err(|_| ClientError::NotAUrl {
                url: base_url.to_owned(),
            })?;
            if !is_loopback(&url) {
                return Err(ClientError::NotLoopback {
                    host: url.host_str().unwrap_or_default().to_owned(),
                });
            }
        }
        let client = reqwest::Client::builder()
            // An API answer is never a redirect; following one would send the
            // request (and a V1 token in its query) somewhere unchecked.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // The in-flight limit adapts below `pool_size`, so connections
            // fall idle and are wanted again a moment later: keep up to the
            // cap. Drop them well before servers' usual keep-alive (the
            // sandbox's 30 s, proxies' 60 s): a request written into a
            // connection the server is closing fails as `unknown`.
            .pool_max_idle_per_host(pool_size.max(1))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(concat!("smax-campaign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Build(e.without_url()))?;
        Ok(HttpTransport {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

#[derive(serde::Deserialize)]
struct Body {
    success: Option<bool>,
    result: Option<serde_json::Value>,
}

fn result_text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Classifies a complete HTTP response (SPEC section 6).
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Reply {
    let parsed: Option<Body> = serde_json::from_slice(body).ok();
    let (success, text) = match parsed {
        Some(b) => (b.success, result_text(b.result)),
        None => (None, None),
    };
    let text = text.unwrap_or_else(|| body_excerpt(body));
    match status {
        200..=299 if success == Some(true) => Reply::Sent {
            status,
            result: Some(text).filter(|t| !t.is_empty()),
        },
        200..=299 => Reply::Rejected {
            status,
            text: if success == Some(false) {
                text
            } else {
                format!("unexpected answer: {text}")
            },
        },
        401 | 403 => Reply::Fatal { status, text },
        429 => Reply::Retryable {
            status: Some(status),
            text,
            retry_after,
        },
        500..=599 => Reply::Retryable {
            status: Some(status),
            text,
            retry_after,
        },
        _ => Reply::Rejected { status, text },
    }
}

/// The start of a non-JSON body (a proxy's page), scrubbed before it is cut:
/// a page that echoes the request could hold the token.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = crate::redact::scrub(&text);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 200 {
        format!("{}…", flat.chars().take(200).collect::<String>())
    } else if flat.is_empty() {
        "(empty body)".into()
    } else {
        flat
    }
}

fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

impl Transport for HttpTransport {
    fn send<'a>(
        &'a self,
        bot: &'a BotAuth,
        request: &'a WireRequest,
    ) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>> {
        Box::pin(async move {
            let token = bot.token.expose();
            let url = match request {
                WireRequest::V1(_) => format!(
                    "{}{}",
                    self.base_url,
                    request.path_and_query(&bot.endpoint, Some(token))
                ),
                WireRequest::V2(_) => format!(
                    "{}{}",
                    self.base_url,
                    request.path_and_query(&bot.endpoint, None)
                ),
            };
            let mut builder = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(request.body());
            if matches!(request, WireRequest::V2(_)) {
                builder = builder.bearer_auth(token);
            }
            let response = match builder.send().await {
                Ok(r) => r,
                Err(e) => return transport_error(e),
            };
            let status = response.status().as_u16();
            let retry_after = parse_retry_after(response.headers());
            match response.bytes().await {
                Ok(body) => classify(status, &body, retry_after),
                // The status line arrived, so the platform took the request.
                Err(e) if (200..300).contains(&status) => Reply::Unknown {
                    text: format!("answer cut off: {}", describe(&e)),
                },
                Err(_) => classify(status, b"", retry_after),
            }
        })
    }
}

/// Never includes the URL (a V1 URL carries the token).
fn describe(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    if text.is_empty() {
        "connection error".into()
    } else {
        text
    }
}

fn transport_error(e: reqwest::Error) -> Reply {
    let e = e.without_url();
    if e.is_connect() {
        Reply::Retryable {
            status: None,
            text: format!("cannot connect: {}", describe(&e)),
            retry_after: None,
        }
    } else if e.is_timeout() {
        Reply::Unknown {
            text: "timed out waiting for the answer".into(),
        }
    } else {
        Reply::Unknown {
            text: format!(
                "connection broke after the request was sent: {}",
                describe(&e)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_status_and_success() {
        assert!(matches!(
            classify(200, br#"{"success":true,"result":"ok"}"#, None),
            Reply::Sent { .. }
        ));
        assert!(
            matches!(classify(200, br#"{"success":false,"result":"blocked"}"#, None), Reply::Rejected { ref text, .. } if text == "blocked")
        );
        assert!(matches!(
            classify(200, b"<html>proxy</html>", None),
            Reply::Rejected { .. }
        ));
        assert!(matches!(
            classify(404, br#"{"success":false,"result":"no user"}"#, None),
            Reply::Rejected { .. }
        ));
        assert!(matches!(classify(401, b"{}", None), Reply::Fatal { .. }));
        assert!(matches!(classify(403, b"", None), Reply::Fatal { .. }));
        assert!(matches!(
            classify(429, b"", Some(Duration::from_secs(2))),
            Reply::Retryable {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(
            matches!(classify(502, b"<html>bad gateway</html>", None), Reply::Retryable { ref text, .. } if text.contains("bad gateway"))
        );
        assert!(matches!(
            classify(200, br#"{"success":true,"extra":1}"#, None),
            Reply::Sent { .. }
        ));
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("abc".into())), "Secret(***)");
    }
}
