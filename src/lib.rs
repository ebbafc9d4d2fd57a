//! smax-campaign: campaigns kept in git, delivered through the smax.bot
//! Broadcasting API.
//!
//! Data flows one way: file → [`campaign::Campaign`] → audience rows →
//! [`render::RenderedRequest`] → outcome → state and report. The library is
//! usable without the CLI: load a campaign with [`campaign::load_campaign`],
//! plan it with [`plan::Pipeline`].

pub mod api;
pub mod audience;
pub mod campaign;
pub mod cli;
pub mod commands;
pub mod diagnostic;
pub mod human;
pub mod logging;
pub mod plan;
pub mod render;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod state;
pub mod templates;

pub use commands::{run, ExitStatus};
pub mod delivery;
pub mod redact;
