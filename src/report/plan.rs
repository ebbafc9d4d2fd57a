use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{human_duration, thousands};
use crate::api::wire::{BotEndpoint, WireRequest, REDACTED};
use crate::plan::{Counts, InvalidRow};
use crate::render::RenderedRequest;

/// A request as people and tools review it: redacted URL, headers, body.
pub fn request_json(
    request: &RenderedRequest,
    api_url: &str,
    bot: &BotEndpoint,
) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    headers.insert("Content-Type".into(), "application/json".into());
    if matches!(request.wire, WireRequest::V2(_)) {
        headers.insert("Authorization".into(), format!("Bearer {REDACTED}").into());
    }
    serde_json::json!({
        "file": request.origin.file.display().to_string(),
        "row": request.origin.line,
        "key": request.key,
        "method": "POST",
        "url": format!("{}{}", api_url.trim_end_matches('/'), request.wire.path_and_query(bot, None)),
        "headers": headers,
        "body": request.wire.body_json(),
    })
}

#[derive(Debug, Serialize)]
pub struct BotInfo {
    pub name: Option<String>,
    pub id: String,
    pub api: &'static str,
}

/// Everything a plan reports. Its JSON form carries the counts at the top level.
#[derive(Debug, Serialize)]
pub struct PlanReport {
    pub campaign: String,
    pub description: Option<String>,
    pub file: String,
    pub run_id: String,
    pub bot: BotInfo,
    pub api_url: String,
    #[serde(flatten)]
    pub counts: Counts,
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
}

#[derive(Debug, Serialize)]
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
        let c = &self.counts;
        vec![
            ("read", c.read),
            ("filtered", c.filtered),
            ("suppressed", c.suppressed),
            ("duplicates", c.duplicates),
            ("invalid", c.invalid),
            ("already sent", c.already_sent),
            ("to send", c.to_send),
        ]
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
                    super::md_cell(&row.reason)
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
