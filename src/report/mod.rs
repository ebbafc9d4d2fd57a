//! What people read about plans and runs: text, JSON and markdown.

mod plan;
mod run;

pub use plan::{request_json, BotInfo, PlanReport, RequestLine, SendingSpan};
pub use run::RunReport;

/// The bot as plans and reports show it.
pub fn plan_bot_info(campaign: &crate::campaign::Campaign) -> plan::BotInfo {
    plan::BotInfo {
        name: campaign.bot.name.clone(),
        id: campaign.bot.id.clone(),
        api: campaign.bot.api.as_str(),
    }
}
