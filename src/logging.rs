//! Logs (`-v`, `-vv`, `RUST_LOG`) go to stderr through the secret scrubber.

use tracing_subscriber::EnvFilter;

/// Installs the log subscriber. Without `-v` or `RUST_LOG`, only warnings.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "smax_campaign=info,warn",
        (false, _) => "smax_campaign=debug,info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(|| crate::redact::Scrubbed::new(std::io::stderr()))
        .try_init();
}
