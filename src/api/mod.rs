//! The platform's API: its vocabulary (platform), request building (wire) and
//! the client that sends.
pub mod client;
mod platform;
pub mod wire;

pub use client::{BotAuth, ClientError, HttpTransport, Reply, Secret, Transport};
pub use platform::{ApiVersion, MessagingTag, PriorityChannel, TagStyle};

/// The platform's limit, requests per second per bot. `run` refuses a
/// higher `delivery.rate` against the real API, and `validate` reports it
/// as an error there; any other URL (the sandbox) may take more.
pub const PLATFORM_RATE_LIMIT: f64 = 25.0;

/// Whether `url` is the real platform (smax.bot or any host under it, which
/// includes the default API URL), where [`PLATFORM_RATE_LIMIT`] applies.
pub fn is_real_api(url: &str) -> bool {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    host == "smax.bot" || host.ends_with(".smax.bot")
}

#[cfg(test)]
mod tests {
    use super::is_real_api;

    #[test]
    fn the_real_api_is_any_smax_bot_host() {
        for url in [
            "https://api.smax.bot",
            "https://api.smax.bot/",
            "https://smax.bot",
            "http://eu.api.smax.bot:8443/x",
            "HTTPS://API.SMAX.BOT",
        ] {
            assert!(is_real_api(url), "{url}");
        }
        for url in [
            "http://127.0.0.1:1",
            "http://localhost:8787",
            "https://smax.bot.example.com",
            "https://notsmax.bot",
            "not a url",
        ] {
            assert!(!is_real_api(url), "{url}");
        }
    }
}
