//! What people read about a run: the summary after sending, the JSON report and the
//! GitHub step summary.

use serde::Serialize;

use crate::delivery::DeliveryResult;
use crate::human::{human_duration, md_cell, percent, thousands};
use crate::plan::PlanCounts;

/// One campaign's run, as the JSON report and the step summary show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub campaign: String,
    pub file: String,
    pub run_id: String,
    pub api_url: String,
    pub started: String,
    pub plan: PlanCounts,
    #[serde(flatten)]
    pub delivery: DeliveryResult,
    /// Invalid recipients of the plan (not sent).
    pub invalid: u64,
    /// Recipients of this run not reached by this invocation; the next `run` takes them up.
    pub pending: u64,
    pub achieved_rate: f64,
    /// Whether the run ended well: everything sent or paused, nothing failed, every
    /// record kept. Callers map it to an exit code.
    #[serde(skip)]
    pub ok: bool,
}

impl RunReport {
    /// The summary printed after a run.
    pub fn text(&self) -> String {
        let (r, plan, pending) = (&self.delivery, &self.plan, self.pending);
        use std::fmt::Write;
        let mut out = String::new();
        let name = &self.campaign;
        let audience = plan.rendered();
        let share = |n: u64, of: u64| {
            percent(n, of)
                .map(|p| format!("  {p:>5.1}%"))
                .unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "\nRun {name}: {} in {}",
            if r.stopped.is_some() {
                "stopped"
            } else {
                "finished"
            },
            human_duration(r.seconds)
        );
        for (label, n) in [
            ("sent", r.sent),
            ("rejected", r.rejected),
            ("failed", r.failed),
            ("unknown", r.unknown),
            ("invalid", plan.invalid),
            ("pending", pending),
        ] {
            let _ = writeln!(
                out,
                "  {label:<10}{:>10}{}",
                thousands(n),
                share(n, audience)
            );
        }
        if plan.already_sent > 0 {
            let _ = writeln!(
                out,
                "  ({} of the audience of {} were settled by earlier attempts of this run)",
                thousands(plan.already_sent),
                thousands(audience)
            );
        }
        let _ = writeln!(
            out,
            "  requests {} (429s: {}), achieved {:.1}/s",
            thousands(r.requests),
            thousands(r.rate_limited),
            r.achieved_rate()
        );
        if !r.top_failures.is_empty() {
            let _ = writeln!(out, "  most frequent failures:");
            for (text, n) in &r.top_failures {
                let _ = writeln!(out, "    {}× {text}", thousands(*n));
            }
        }
        if let Some(reason) = &r.stopped {
            let _ = writeln!(out, "  stopped: {reason}");
        }
        if r.unknown > 0 {
            let _ = writeln!(out, "  {} recipient(s) may or may not have received the message; they are not resent unless you pass --resend-unknown", thousands(r.unknown));
        }
        out
    }

    /// The run as a GitHub step summary (markdown).
    pub fn markdown(&self) -> String {
        let r = self;
        use std::fmt::Write;
        let d = &r.delivery;
        let mut out = String::new();
        let _ = writeln!(out, "### Run `{}`\n", r.run_id);
        let _ = writeln!(out, "| outcome | count |\n|---|---:|");
        for (label, n) in [
            ("sent", d.sent),
            ("rejected", d.rejected),
            ("failed", d.failed),
            ("unknown", d.unknown),
            ("invalid", r.invalid),
            ("pending", r.pending),
        ] {
            let _ = writeln!(out, "| {label} | {} |", thousands(n));
        }
        let _ = writeln!(
            out,
            "\n{} requests in {} ({:.1}/s), 429s: {}",
            thousands(d.requests),
            human_duration(d.seconds),
            r.achieved_rate,
            d.rate_limited
        );
        if let Some(reason) = &d.stopped {
            let _ = writeln!(out, "\n**Stopped:** {reason}");
        }
        if !d.top_failures.is_empty() {
            let _ = writeln!(out, "\n| failure | count |\n|---|---:|");
            for (text, n) in &d.top_failures {
                let _ = writeln!(out, "| {} | {} |", md_cell(text), thousands(*n));
            }
        }
        out.push('\n');
        out
    }
}
