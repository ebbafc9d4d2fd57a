use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::api::wire::{BotEndpoint, WireRequest, REDACTED};
use crate::human::{human_duration, md_cell, thousands};
use crate::plan::{InvalidRow, PlanCounts};
use crate::render::RenderedRequest;

/// A request as people and tools review it: where it came from, the URL, the headers
/// with the token redacted, the body. The one redacted view of a request: the plan's
/// sample, `--requests` lines and `--format json` all show this.
pub fn request_json(
    request: &RenderedRequest,
    api_url: &str,
    bot: &BotEndpoint,
) -> serde_json::Value {
    let file = request.origin.file.display().to_string();
    serde_json::to_value(RequestLine::new(request, &file, api_url, bot))
        .unwrap_or(serde_json::Value::Null)
}

/// [`request_json`] serialized straight from the request, for `--requests` (a line per
/// recipient): building a `Value` first (a copy of the body, a map per line) cost more
/// than rendering the request.
pub struct RequestLine<'a> {
    request: &'a RenderedRequest,
    /// The request's file as shown (made once per file by callers that write many).
    file: &'a str,
    api_url: &'a str,
    bot: &'a BotEndpoint,
}

impl<'a> RequestLine<'a> {
    pub fn new(
        request: &'a RenderedRequest,
        file: &'a str,
        api_url: &'a str,
        bot: &'a BotEndpoint,
    ) -> RequestLine<'a> {
        RequestLine {
            request,
            file,
            api_url,
            bot,
        }
    }
}

impl Serialize for RequestLine<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Headers(bool);
        impl Serialize for Headers {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("Content-Type", "application/json")?;
                if self.0 {
                    map.serialize_entry("Authorization", &format_args!("Bearer {REDACTED}"))?;
                }
                map.end()
            }
        }
        let request = self.request;
        let v2 = match &request.wire {
            WireRequest::V2(v2) => Some(&v2.body),
            WireRequest::V1(_) => None,
        };
        let mut url = self.api_url.trim_end_matches('/').to_owned();
        url.push_str(&request.wire.path_and_query(self.bot, None));
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("file", self.file)?;
        map.serialize_entry("row", &request.origin.line)?;
        map.serialize_entry("key", &request.key)?;
        map.serialize_entry("method", "POST")?;
        map.serialize_entry("url", &url)?;
        map.serialize_entry("headers", &Headers(v2.is_some()))?;
        match v2 {
            Some(body) => map.serialize_entry("body", body)?,
            None => map.serialize_entry("body", &serde_json::Map::new())?,
        }
        map.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BotInfo {
    pub name: Option<String>,
    pub id: String,
    pub api: &'static str,
}

/// Everything a plan reports. Its JSON form carries the counts at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub campaign: String,
    pub description: Option<String>,
    pub file: String,
    pub run_id: String,
    pub bot: BotInfo,
    pub api_url: String,
    #[serde(flatten)]
    pub counts: PlanCounts,
    pub invalid_reasons: BTreeMap<&'static str, u64>,
    pub invalid_rows: Vec<InvalidRow>,
    pub rate: f64,
    pub estimated_seconds: f64,
    /// When sending would start and end, for scheduled campaigns with a window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_window: Option<SendingSpan>,
    /// What the schedule says at the plan's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub warnings: usize,
    pub sample: Vec<serde_json::Value>,
    /// `sha256:…` of every request the run renders, when the plan is saved
    /// (`plan --out`): what `run --plan` checks before sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_digest: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SendingSpan {
    pub window: String,
    pub starts: String,
    pub ends: String,
}

const SHOWN_INVALID: usize = 20;

impl PlanReport {
    /// The first invalid rows, one per line (`  file:row  reason`), and how many
    /// more there are: what the text plan shows and `run` repeats when it refuses.
    pub fn invalid_lines(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for row in self.invalid_rows.iter().take(SHOWN_INVALID) {
            let _ = writeln!(out, "  {}:{}  {}", row.file.display(), row.row, row.reason);
        }
        if self.counts.invalid as usize > SHOWN_INVALID {
            let _ = writeln!(
                out,
                "  … and {} more (--format json lists up to {})",
                thousands(self.counts.invalid - SHOWN_INVALID as u64),
                self.invalid_rows.len()
            );
        }
        out
    }

    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    fn count_rows(&self) -> Vec<(&'static str, u64)> {
        self.counts
            .named()
            .into_iter()
            // Held out only by `run --only`/`--limit`: no row otherwise.
            .filter(|(name, n)| *name != "held out" || *n > 0)
            .collect()
    }

    fn bot_line(&self) -> String {
        match &self.bot.name {
            Some(name) => format!("{name} (id {}, api {})", self.bot.id, self.bot.api),
            None => format!("{} (api {})", self.bot.id, self.bot.api),
        }
    }

    fn duration_line(&self) -> String {
        let mut s = format!(
            "{} at {}/s",
            human_duration(self.estimated_seconds),
            trim_float(self.rate)
        );
        if let Some(span) = &self.sending_window {
            let _ = write!(
                s,
                "; window {}: sending from {} to {}",
                span.window, span.starts, span.ends
            );
        }
        s
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan for {}{}",
            self.campaign,
            self.description
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        let _ = writeln!(out, "  file      {}", self.file);
        let _ = writeln!(out, "  run       {}", self.run_id);
        let _ = writeln!(out, "  bot       {}", self.bot_line());
        let _ = writeln!(out, "  api       {}", self.api_url);
        if let Some(s) = &self.schedule {
            let _ = writeln!(out, "  schedule  {s}");
        }
        out.push('\n');
        let width = self
            .count_rows()
            .iter()
            .map(|(_, n)| thousands(*n).len())
            .max()
            .unwrap_or(1);
        for (label, n) in self.count_rows() {
            let _ = writeln!(out, "  {label:<14}{:>width$}", thousands(n));
        }
        out.push('\n');
        let _ = writeln!(out, "  estimated duration  {}", self.duration_line());
        if let Some(digest) = &self.requests_digest {
            let _ = writeln!(out, "  requests digest     {digest}");
        }
        if self.counts.invalid > 0 {
            let reasons: Vec<String> = self
                .invalid_reasons
                .iter()
                .map(|(k, v)| format!("{k} {}", thousands(*v)))
                .collect();
            let _ = writeln!(
                out,
                "\nInvalid rows ({}: {}):",
                thousands(self.counts.invalid),
                reasons.join(", ")
            );
            out.push_str(&self.invalid_lines());
        }
        if !self.sample.is_empty() {
            let _ = writeln!(
                out,
                "\nSample ({} of {}):",
                self.sample.len(),
                thousands(self.counts.to_send)
            );
            for (i, r) in self.sample.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  #{} {}:{}  key {}",
                    i + 1,
                    r["file"].as_str().unwrap_or(""),
                    r["row"],
                    r["key"].as_str().unwrap_or("")
                );
                let _ = writeln!(out, "     POST {}", r["url"].as_str().unwrap_or(""));
                let _ = writeln!(
                    out,
                    "     {}",
                    serde_json::to_string(&r["body"]).unwrap_or_default()
                );
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### Plan: `{}`", self.campaign);
        if let Some(d) = &self.description {
            let _ = writeln!(out, "\n{d}");
        }
        let _ = writeln!(out, "\n| | |\n|---|---|");
        let _ = writeln!(out, "| file | `{}` |", self.file);
        let _ = writeln!(out, "| run | `{}` |", self.run_id);
        let _ = writeln!(out, "| bot | {} |", self.bot_line());
        if let Some(s) = &self.schedule {
            let _ = writeln!(out, "| schedule | {s} |");
        }
        let _ = writeln!(out, "| estimated duration | {} |", self.duration_line());
        if let Some(digest) = &self.requests_digest {
            let _ = writeln!(out, "| requests digest | `{digest}` |");
        }
        let _ = writeln!(out, "\n| rows | count |\n|---|---:|");
        for (label, n) in self.count_rows() {
            let bold = if label == "to send" { "**" } else { "" };
            let _ = writeln!(
                out,
                "| {bold}{label}{bold} | {bold}{}{bold} |",
                thousands(n)
            );
        }
        if self.counts.invalid > 0 {
            let _ = writeln!(
                out,
                "\n<details><summary>Invalid rows ({})</summary>\n\n| row | reason |\n|---|---|",
                thousands(self.counts.invalid)
            );
            for row in self.invalid_rows.iter().take(SHOWN_INVALID) {
                let _ = writeln!(
                    out,
                    "| `{}:{}` | {} |",
                    row.file.display(),
                    row.row,
                    md_cell(&row.reason)
                );
            }
            let _ = writeln!(out, "\n</details>");
        }
        if !self.sample.is_empty() {
            let _ = writeln!(
                out,
                "\n<details><summary>Sample requests ({} of {})</summary>\n",
                self.sample.len(),
                thousands(self.counts.to_send)
            );
            for r in &self.sample {
                let _ = writeln!(
                    out,
                    "`{}:{}` key `{}`\n",
                    r["file"].as_str().unwrap_or(""),
                    r["row"],
                    r["key"].as_str().unwrap_or("")
                );
                let _ = writeln!(
                    out,
                    "```http\nPOST {}\n{}\n```\n",
                    r["url"].as_str().unwrap_or(""),
                    serde_json::to_string_pretty(&r["body"]).unwrap_or_default()
                );
            }
            let _ = writeln!(out, "</details>");
        }
        out
    }
}

fn trim_float(f: f64) -> String {
    let s = format!("{f:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
