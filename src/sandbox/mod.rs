//! A strict local stand-in for the smax.bot Broadcasting API (SPEC section 8).
//!
//! It serves both send routes exactly as the platform's page reads them, refuses
//! anything the platform would refuse with a platform-shaped answer
//! (`{"success":false,"result":"…"}`), enforces the per-bot rate limit, injects
//! faults deterministically from a seed, and records every request that reached a
//! send route (in memory and, optionally, as JSON lines in a file).

mod conn;
mod record;
mod spec;
mod wire;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use record::{Api, Recipient, Record, TagStyle};
pub use spec::{BotCredentials, Fault, FaultSpec, SpecError};

use conn::{ConnHandle, CuttableListener};
use record::RecordSink;
use wire::{decode, parse_v1, parse_v2, redacted_target, Reject, TokenParam};

/// Largest request body read; larger bodies get 413.
const MAX_BODY: usize = 1 << 20;
const ONE_SECOND: Duration = Duration::from_secs(1);
/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the sandbox behaves. `Default` gives 127.0.0.1:8787, no bots, no rate
/// limit, no faults, seed 0, no latency, no record file, any user, 30 s timeout hold,
/// 30 s idle timeout, at most 1,024 open connections.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Known bots (`--bot ID=TOKEN`); at least one.
    pub bots: Vec<BotCredentials>,
    /// Per-bot limit in any sliding 1-second window; `None` = unlimited.
    pub rate: Option<u32>,
    /// Injected faults.
    pub fail: FaultSpec,
    /// Seed of the fault draws (deterministic for a given request order).
    pub seed: u64,
    /// Added before answering each request.
    pub latency: Duration,
    /// JSON lines file, created (truncated) at start, one line per request on a send route.
    pub record: Option<PathBuf>,
    /// Known users (V1 user id, V2 any customer_* value); unknown → 404. `None` = any.
    pub users: Option<HashSet<String>>,
    /// How long a `timeout` fault holds the request before dropping the connection.
    pub timeout_hold: Duration,
    /// A connection that moved no byte for this long, with no request being worked
    /// on, is closed (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Open connections served at once; later ones wait in the kernel's backlog
    /// until one closes, and are refused once that is full (`--max-connections`).
    pub max_connections: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            bots: Vec::new(),
            rate: None,
            fail: FaultSpec::default(),
            seed: 0,
            latency: Duration::ZERO,
            record: None,
            users: None,
            timeout_hold: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Reads a `--users FILE`: one user id per line; blank lines and lines starting
/// with `#` are skipped; surrounding whitespace is trimmed.
pub fn read_users(path: &Path) -> anyhow::Result<HashSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the users file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// A running sandbox. Dropping it stops the server (without waiting); prefer
/// [`Sandbox::shutdown`].
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Sandbox {
    /// Binds, spawns the server task and returns at once. Records are kept in memory
    /// (see [`Sandbox::records`]) and written to `config.record` if set.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        Self::launch(config, true).await
    }

    async fn launch(config: SandboxConfig, keep_in_memory: bool) -> anyhow::Result<Sandbox> {
        check_config(&config)?;
        let sink = RecordSink::open(config.record.as_deref(), keep_in_memory)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    anyhow!(
                        "cannot listen on {}: the port is in use (another sandbox still running?); stop it, or pass --listen 127.0.0.1:0 for any free port (the address is printed)",
                        config.listen
                    )
                } else {
                    anyhow!("cannot listen on {}: {e}", config.listen)
                }
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow!("cannot read the bound address: {e}"))?;
        let listener = CuttableListener::new(listener, config.max_connections, config.idle_timeout);
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            bots: config
                .bots
                .into_iter()
                .map(|bot| {
                    let state = BotState {
                        token: bot.token,
                        window: Mutex::new(VecDeque::new()),
                    };
                    (bot.id, state)
                })
                .collect(),
            rate: config.rate,
            faults: config.fail,
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            latency: config.latency,
            users: config.users,
            timeout_hold: config.timeout_hold,
            started: Instant::now(),
            sink,
            stopped: stopped.clone(),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let mut signal = stopped;
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ConnHandle>(),
        )
        .with_graceful_shutdown(async move {
            // An error means the sender is gone: stop as well.
            let _ = signal.wait_for(|stop| *stop).await;
        });
        let task = tokio::spawn(async move { server.await });
        tracing::debug!("sandbox listening on http://{addr}");
        Ok(Sandbox {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The bound address (with the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything recorded so far, in `seq` order.
    pub fn records(&self) -> Vec<Record> {
        self.shared.sink.snapshot()
    }

    /// Stops accepting, ends held `timeout` requests, lets in-flight requests
    /// finish (bounded), and flushes the record file.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::debug!("sandbox server ended with: {e}"),
                Ok(Err(e)) => tracing::debug!("sandbox server task failed: {e}"),
                Err(_) => {
                    tracing::debug!("sandbox: connections still open after the grace period");
                    task.abort();
                }
            }
        }
        self.shared.sink.flush();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// For the CLI: binds, prints `sandbox listening on http://ADDR` to stdout
/// (flushed) as soon as it is bound, serves until `shutdown` completes, then
/// shuts down gracefully. Records go only to `config.record` (not kept in memory).
pub async fn serve_until(
    config: SandboxConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let sandbox = Sandbox::launch(config, false).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "sandbox listening on {}", sandbox.base_url())
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
    }
    shutdown.await;
    sandbox.shutdown().await;
    Ok(())
}

fn check_config(config: &SandboxConfig) -> anyhow::Result<()> {
    if config.bots.is_empty() {
        bail!("the sandbox needs at least one bot: pass --bot ID=TOKEN");
    }
    let mut ids = HashSet::new();
    for bot in &config.bots {
        if bot.id.is_empty() || bot.token.is_empty() {
            bail!("a bot needs a non-empty id and token (--bot ID=TOKEN)");
        }
        if !ids.insert(bot.id.as_str()) {
            bail!("bot {:?} is given twice", bot.id);
        }
    }
    if config.rate == Some(0) {
        bail!("--rate must be at least 1 request per second (omit it for no limit)");
    }
    let f = &config.fail;
    let shares = [f.http_500, f.http_429, f.timeout, f.reject];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || shares.iter().sum::<f64>() > 1.0 + 1e-9 {
        bail!("fault shares must each be in [0, 1] and sum to at most 1 (got {f})");
    }
    if config.idle_timeout.is_zero() {
        bail!("--idle-timeout must be longer than zero");
    }
    if config.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if config.max_connections > Semaphore::MAX_PERMITS {
        bail!("--max-connections {} is too large", config.max_connections);
    }
    Ok(())
}

struct BotState {
    token: String,
    /// Arrival instants of requests admitted in the last second.
    window: Mutex<VecDeque<Instant>>,
}

struct Shared {
    bots: HashMap<String, BotState>,
    rate: Option<u32>,
    faults: FaultSpec,
    rng: Mutex<StdRng>,
    latency: Duration,
    users: Option<HashSet<String>>,
    timeout_hold: Duration,
    started: Instant,
    sink: RecordSink,
    stopped: watch::Receiver<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BotState {
    /// Sliding-window admission: `Ok(now)` when fewer than `rate` requests were
    /// admitted in the second before `now`.
    fn admit(&self, rate: u32) -> Result<Instant, Instant> {
        let mut window = lock(&self.window);
        let now = Instant::now();
        while let Some(&first) = window.front() {
            if now.duration_since(first) >= ONE_SECOND {
                window.pop_front();
            } else {
                break;
            }
        }
        if window.len() >= rate as usize {
            Err(now)
        } else {
            window.push_back(now);
            Ok(now)
        }
    }
}

/// A matched send route; segments are still percent-encoded.
struct Route<'a> {
    api: Api,
    bot: &'a str,
    user: Option<&'a str>,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Route<'a>> {
        let mut it = path.strip_prefix('/')?.split('/');
        let segments = [it.next(), it.next(), it.next(), it.next(), it.next()];
        if it.next().is_some() {
            return None;
        }
        match segments {
            [Some("bots"), Some(bot), Some("users"), Some(user), Some("send")]
                if !bot.is_empty() && !user.is_empty() =>
            {
                Some(Route {
                    api: Api::V1,
                    bot,
                    user: Some(user),
                })
            }
            [Some("public"), Some("bots"), Some(bot), Some("send"), None] if !bot.is_empty() => {
                Some(Route {
                    api: Api::V2,
                    bot,
                    user: None,
                })
            }
            _ => None,
        }
    }
}

/// The answer decided for a request on a send route.
struct Verdict {
    /// `None`: a `timeout` fault, no answer at all.
    status: Option<StatusCode>,
    success: bool,
    result: Cow<'static, str>,
}

const OK_BODY: &[u8] = br#"{"success":true,"result":"ok"}"#;

fn answer(status: StatusCode, success: bool, result: &str) -> Response {
    let mut response = if success && result == "ok" {
        Response::new(Body::from(OK_BODY))
    } else {
        let body = serde_json::json!({ "success": success, "result": result }).to_string();
        Response::new(Body::from(body))
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn bearer(headers: &HeaderMap) -> TokenParam {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return TokenParam::Missing;
    };
    if values.next().is_some() {
        return TokenParam::Repeated;
    }
    let Ok(value) = value.to_str() else {
        return TokenParam::Malformed;
    };
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                TokenParam::Malformed
            } else {
                TokenParam::Given(token.to_owned())
            }
        }
        _ => TokenParam::Malformed,
    }
}

async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, Reject> {
    let too_large = || {
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than 1 MiB",
        )
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Reject::bad("could not read the request body (interrupted, or larger than 1 MiB)")
    })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let arrival = Instant::now();
    let (parts, body) = request.into_parts();
    let Some(route) = Route::parse(parts.uri.path()) else {
        let _busy = conn.busy();
        shared.delay().await;
        return answer(StatusCode::NOT_FOUND, false, "not found");
    };
    // Reading the body waits on the client, so it stays under the idle rule; from
    // here on the wait is the server's own (latency, a held `timeout` fault).
    let body = read_body(&parts, body).await;
    let _busy = conn.busy();
    let verdict = shared.judge(&parts, &route, body, arrival);
    let Some(status) = verdict.status else {
        // `timeout` fault: delivered and recorded; hold, then drop the connection
        // without a byte of response (or stop holding when the sandbox stops).
        let mut stopped = shared.stopped.clone();
        tokio::select! {
            () = tokio::time::sleep(shared.timeout_hold) => {}
            _ = stopped.wait_for(|stop| *stop) => {}
        }
        conn.cut();
        return StatusCode::INTERNAL_SERVER_ERROR.into_response(); // never written
    };
    shared.delay().await;
    answer(status, verdict.success, &verdict.result)
}

impl Shared {
    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    fn draw_fault(&self) -> Option<Fault> {
        if self.faults.is_none() {
            return None;
        }
        let x: f64 = lock(&self.rng).random();
        self.faults.pick(x)
    }

    fn since_start(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.started).as_micros()).unwrap_or(u64::MAX)
    }

    /// Reads and checks one request on a send route, records it, and says how to answer.
    fn judge(
        &self,
        parts: &Parts,
        route: &Route<'_>,
        body: Result<Bytes, Reject>,
        arrival: Instant,
    ) -> Verdict {
        let query = parts.uri.query();
        let request_line = format!(
            "{} {} {:?}",
            parts.method,
            redacted_target(parts.uri.path(), query),
            parts.version
        );
        let bot_id = decode(route.bot);
        let bot_shown = bot_id.clone().unwrap_or_else(|_| route.bot.to_owned());
        let mut record = Record::new(route.api, bot_shown, request_line);
        let body_bytes: &[u8] = body.as_ref().map(|b| &b[..]).unwrap_or_default();

        let mut user_ok = true;
        let (token, invalid) = match route.api {
            Api::V1 => {
                let raw_user = route.user.unwrap_or_default();
                let user = decode(raw_user);
                user_ok = user.is_ok();
                record.recipient = Some(Recipient {
                    user_id: Some(user.unwrap_or_else(|_| raw_user.to_owned())),
                    ..Recipient::default()
                });
                let parsed = parse_v1(query, body_bytes, &mut record);
                (parsed.token, parsed.invalid)
            }
            Api::V2 => {
                let invalid = match &body {
                    Ok(bytes) => parse_v2(bytes, &mut record),
                    Err(_) => None,
                };
                (bearer(&parts.headers), invalid)
            }
        };

        let mut t = arrival;
        let checked: Result<(), Reject> = 'check: {
            if parts.method != Method::POST {
                break 'check Err(Reject::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {} is not allowed: use POST", parts.method),
                ));
            }
            let Ok(bot_id) = &bot_id else {
                break 'check Err(Reject::bad(
                    "the bot id in the path is not valid percent-encoded UTF-8",
                ));
            };
            let Some(bot) = self.bots.get(bot_id) else {
                break 'check Err(Reject::new(StatusCode::NOT_FOUND, "bot not found"));
            };
            let unauthorized = |text: &'static str| Reject::new(StatusCode::UNAUTHORIZED, text);
            match (&token, route.api) {
                (TokenParam::Given(given), _) if *given == bot.token => {}
                (TokenParam::Given(_), _) => break 'check Err(unauthorized("invalid bot token")),
                (TokenParam::Missing, Api::V1) => {
                    break 'check Err(unauthorized("missing bot_token query parameter"))
                }
                (TokenParam::Missing, Api::V2) => {
                    break 'check Err(unauthorized(
                        "missing Authorization header (Authorization: Bearer <bot token>)",
                    ))
                }
                (TokenParam::Malformed, Api::V1) => {
                    break 'check Err(unauthorized("invalid bot token"))
                }
                (TokenParam::Malformed, Api::V2) => {
                    break 'check Err(unauthorized(
                        "the Authorization header must be: Bearer <bot token>",
                    ))
                }
                (TokenParam::Repeated, Api::V1) => {
                    break 'check Err(Reject::bad("query parameter bot_token is repeated"))
                }
                (TokenParam::Repeated, Api::V2) => {
                    break 'check Err(Reject::bad("the Authorization header is repeated"))
                }
            }
            if let Some(rate) = self.rate {
                match bot.admit(rate) {
                    Ok(now) => t = now,
                    Err(now) => {
                        t = now;
                        break 'check Err(Reject::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate limit exceeded",
                        ));
                    }
                }
            }
            if !is_json(&parts.headers) {
                break 'check Err(Reject::bad("Content-Type must be application/json"));
            }
            if let Err(reject) = &body {
                break 'check Err(reject.clone());
            }
            if !user_ok {
                break 'check Err(Reject::bad(
                    "the user id in the path is not valid percent-encoded UTF-8",
                ));
            }
            if let Some(reject) = invalid {
                break 'check Err(reject);
            }
            if let Some(users) = &self.users {
                let known = record
                    .recipient
                    .as_ref()
                    .is_some_and(|r| r.ids().any(|id| users.contains(id)));
                if !known {
                    break 'check Err(Reject::new(StatusCode::NOT_FOUND, "user not found"));
                }
            }
            Ok(())
        };

        let verdict = match checked {
            Err(reject) => Verdict {
                status: Some(reject.status),
                success: false,
                result: reject.result,
            },
            Ok(()) => {
                let fault = self.draw_fault();
                record.fault = fault;
                record.accepted = matches!(fault, None | Some(Fault::Timeout));
                let (status, success, result) = match fault {
                    None => (Some(StatusCode::OK), true, "ok"),
                    Some(Fault::Http500) => (
                        Some(StatusCode::INTERNAL_SERVER_ERROR),
                        false,
                        "internal error",
                    ),
                    Some(Fault::Http429) => (
                        Some(StatusCode::TOO_MANY_REQUESTS),
                        false,
                        "rate limit exceeded",
                    ),
                    Some(Fault::Reject) => {
                        (Some(StatusCode::OK), false, "user has blocked the page")
                    }
                    Some(Fault::Timeout) => (None, false, "timeout: delivered, no answer"),
                };
                Verdict {
                    status,
                    success,
                    result: Cow::Borrowed(result),
                }
            }
        };
        record.t_us = self.since_start(t);
        record.status = verdict.status.map(|s| s.as_u16());
        record.result = verdict.result.to_string();
        self.sink.push(record);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_default_to_30_s_idle_and_1024_open() {
        let config = SandboxConfig::default();
        assert_eq!(config.idle_timeout, Duration::from_secs(30));
        assert_eq!(config.max_connections, 1024);
    }

    #[test]
    fn zero_connection_limits_are_refused() {
        let bot = BotCredentials {
            id: "b".into(),
            token: "t".into(),
        };
        let base = SandboxConfig {
            bots: vec![bot],
            ..SandboxConfig::default()
        };
        assert!(check_config(&base).is_ok());
        let zero_idle = SandboxConfig {
            idle_timeout: Duration::ZERO,
            ..base.clone()
        };
        let err = check_config(&zero_idle).expect_err("zero idle timeout");
        assert!(err.to_string().contains("--idle-timeout"), "{err}");
        let zero_cap = SandboxConfig {
            max_connections: 0,
            ..base.clone()
        };
        let err = check_config(&zero_cap).expect_err("zero cap");
        assert!(err.to_string().contains("--max-connections"), "{err}");
        let huge_cap = SandboxConfig {
            max_connections: usize::MAX,
            ..base
        };
        assert!(check_config(&huge_cap).is_err());
    }
}
