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
    /// Each outcome's share of the audience (the recipients that reached rendering),
    /// in percent, as the summary and the step summary show it; absent for an empty
    /// audience.
    pub percent: Option<OutcomeShares>,
    /// Whether the run ended well: everything sent or paused, nothing failed, every
    /// record kept. Callers map it to an exit code.
    #[serde(skip)]
    pub ok: bool,
}

/// Runs shorter than this show no average rate.
const MEASURED_SECONDS: f64 = 5.0;

/// Percent of the audience per outcome, in the order the summary lists them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OutcomeShares {
    pub sent: f64,
    pub rejected: f64,
    pub failed: f64,
    pub unknown: f64,
    pub invalid: f64,
    pub held_out: f64,
    pub pending: f64,
}

impl RunReport {
    /// Fills in what is derived from the counts; call once they are final.
    pub fn with_shares(mut self) -> RunReport {
        let audience = self.plan.rendered();
        let [sent, rejected, failed, unknown, invalid, held_out, pending] = self
            .outcomes()
            .map(|(_, n)| percent(n, audience).unwrap_or(0.0));
        self.percent = (audience > 0).then_some(OutcomeShares {
            sent,
            rejected,
            failed,
            unknown,
            invalid,
            held_out,
            pending,
        });
        self
    }

    /// The outcomes every view lists, in one order with one vocabulary.
    pub fn outcomes(&self) -> [(&'static str, u64); 7] {
        let d = &self.delivery;
        [
            ("sent", d.sent),
            ("rejected", d.rejected),
            ("failed", d.failed),
            ("unknown", d.unknown),
            ("invalid", self.invalid),
            ("held_out", self.plan.held_out),
            ("pending", self.pending),
        ]
    }

    /// The outcomes people read: `held_out` only when `--only`/`--limit` held some out.
    fn shown_outcomes(&self) -> impl Iterator<Item = (&'static str, u64)> {
        self.outcomes()
            .into_iter()
            .filter(|(name, n)| *name != "held_out" || *n > 0)
    }

    /// `, 24.7/s on average`, for runs long enough to say something: the rate
    /// limits requests in any one second, and a short run's first second may hold
    /// a whole second's requests in a few milliseconds (a burst within the limit),
    /// which divided by its length reads like a broken limit.
    fn average_rate(&self) -> String {
        if self.delivery.seconds < MEASURED_SECONDS {
            return String::new();
        }
        format!(", {:.1}/s on average", self.achieved_rate)
    }

    /// The summary printed after a run.
    pub fn text(&self) -> String {
        let (r, plan) = (&self.delivery, &self.plan);
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
        for (label, n) in self.shown_outcomes() {
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
            "  requests {} in {} (429s: {}){}",
            thousands(r.requests),
            human_duration(r.seconds),
            thousands(r.rate_limited),
            self.average_rate()
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
        if plan.held_out > 0 {
            let _ = writeln!(
                out,
                "  {} recipient(s) held out by --only/--limit stay pending; the next `run` takes them up",
                thousands(plan.held_out)
            );
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
        let audience = r.plan.rendered();
        let _ = writeln!(
            out,
            "| outcome | count | of the audience ({}) |\n|---|---:|---:|",
            thousands(audience)
        );
        for (label, n) in r.shown_outcomes() {
            let share = percent(n, audience)
                .map(|p| format!("{p:.1}%"))
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(out, "| {label} | {} | {share} |", thousands(n));
        }
        let _ = writeln!(
            out,
            "\n{} requests in {}{}, 429s: {}",
            thousands(d.requests),
            human_duration(d.seconds),
            r.average_rate(),
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
