//! smax-campaign: campaigns kept in git, delivered through the smax.bot Broadcasting API.

pub mod sandbox;
pub mod schedule;
pub mod state;
