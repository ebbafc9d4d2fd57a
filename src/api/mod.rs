//! The platform's API: request building (wire) and the client that sends.
pub mod client;
pub mod wire;

pub use client::{BotAuth, HttpTransport, Reply, Secret, Transport};
