//! The platform's API: request building (wire) and, for sending, the client.
pub mod wire;
