//! Command-line shaped configuration values: `--bot ID=TOKEN` and `--fail SPEC`.

use std::fmt;
use std::str::FromStr;

/// A bad `--bot` or `--fail` value. The message says what form was expected and
/// never repeats a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

/// One bot the sandbox knows: `--bot ID=TOKEN`.
#[derive(Clone, PartialEq, Eq)]
pub struct BotCredentials {
    pub id: String,
    pub token: String,
}

impl fmt::Debug for BotCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotCredentials")
            .field("id", &self.id)
            .field("token", &"***")
            .finish()
    }
}

impl FromStr for BotCredentials {
    type Err = SpecError;

    /// Parses `ID=TOKEN` (split at the first `=`; the token may contain `=`).
    /// Error messages never include the input, which may hold a token.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "expected ID=TOKEN (the bot id, '=', the bot token), e.g. --bot 64f0c2a1e4b0=$SMAX_SHOP_TOKEN";
        let Some((id, token)) = s.split_once('=') else {
            return Err(SpecError(format!(
                "invalid --bot value: {FORM}; the value has no '='"
            )));
        };
        let id = id.trim();
        if id.is_empty() {
            return Err(SpecError(format!(
                "invalid --bot value: {FORM}; the bot id is empty"
            )));
        }
        if token.is_empty() {
            return Err(SpecError(format!(
                "invalid --bot value for bot {id:?}: {FORM}; the token is empty"
            )));
        }
        if id.contains(['/', '?', '#']) || id.chars().any(char::is_whitespace) {
            return Err(SpecError(format!(
                "invalid --bot value: {FORM}; the bot id {id:?} contains '/', '?', '#' or whitespace"
            )));
        }
        Ok(BotCredentials {
            id: id.to_owned(),
            token: token.to_owned(),
        })
    }
}

/// Kinds of injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// 500 `{"success":false,"result":"internal error"}`.
    #[serde(rename = "500")]
    Http500,
    /// 429 with `Retry-After: 1`.
    #[serde(rename = "429")]
    Http429,
    /// Delivered, then no answer: the connection is held and dropped.
    #[serde(rename = "timeout")]
    Timeout,
    /// 200 `{"success":false,"result":"user has blocked the page"}`; not delivered.
    #[serde(rename = "reject")]
    Reject,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Http500 => "500",
            Fault::Http429 => "429",
            Fault::Timeout => "timeout",
            Fault::Reject => "reject",
        }
    }
}

/// Shares of requests that get each fault: `--fail 500:0.05,timeout:0.02,reject:0.01,429:0.1`.
///
/// Each share is in [0, 1] and they sum to at most 1. The order in the text does
/// not matter: a draw `x` in [0, 1) maps to 500, 429, timeout, reject in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultSpec {
    pub http_500: f64,
    pub http_429: f64,
    pub timeout: f64,
    pub reject: f64,
}

impl FaultSpec {
    /// True when no fault can be drawn.
    pub fn is_none(&self) -> bool {
        self.total() <= 0.0
    }

    fn total(&self) -> f64 {
        self.http_500 + self.http_429 + self.timeout + self.reject
    }

    /// Maps a uniform draw in [0, 1) to a fault.
    pub(crate) fn pick(&self, x: f64) -> Option<Fault> {
        let mut edge = 0.0;
        for (share, fault) in [
            (self.http_500, Fault::Http500),
            (self.http_429, Fault::Http429),
            (self.timeout, Fault::Timeout),
            (self.reject, Fault::Reject),
        ] {
            edge += share;
            if share > 0.0 && x < edge {
                return Some(fault);
            }
        }
        None
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("500", self.http_500),
            ("429", self.http_429),
            ("timeout", self.timeout),
            ("reject", self.reject),
        ]
        .into_iter()
        .filter(|(_, share)| *share > 0.0)
        .map(|(kind, share)| format!("{kind}:{share}"))
        .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

impl FromStr for FaultSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "expected KIND:SHARE[,KIND:SHARE...] with KIND one of 500, 429, timeout, reject and SHARE in [0, 1], e.g. 500:0.05,timeout:0.02,reject:0.01,429:0.1";
        let mut spec = FaultSpec::default();
        let mut seen = [false; 4];
        let text = s.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(spec);
        }
        for item in text.split(',') {
            let item = item.trim();
            let Some((kind, share)) = item.split_once(':') else {
                return Err(SpecError(format!("invalid --fail entry {item:?}: {FORM}")));
            };
            let (kind, share) = (kind.trim(), share.trim());
            let (slot, field) = match kind.to_ascii_lowercase().as_str() {
                "500" => (0, &mut spec.http_500),
                "429" => (1, &mut spec.http_429),
                "timeout" => (2, &mut spec.timeout),
                "reject" => (3, &mut spec.reject),
                _ => {
                    return Err(SpecError(format!(
                        "invalid --fail entry {item:?}: unknown fault kind {kind:?}; {FORM}"
                    )))
                }
            };
            if seen[slot] {
                return Err(SpecError(format!(
                    "invalid --fail spec: fault kind {kind} is listed twice"
                )));
            }
            seen[slot] = true;
            let value: f64 = share.parse().map_err(|_| {
                SpecError(format!(
                    "invalid --fail entry {item:?}: share {share:?} is not a number; {FORM}"
                ))
            })?;
            if !(0.0..=1.0).contains(&value) {
                return Err(SpecError(format!(
                    "invalid --fail entry {item:?}: share {share} is outside [0, 1]"
                )));
            }
            *field = value;
        }
        let total = spec.total();
        if total > 1.0 + 1e-9 {
            return Err(SpecError(format!(
                "invalid --fail spec {text:?}: the shares sum to {total}, they must sum to at most 1"
            )));
        }
        Ok(spec)
    }
}
