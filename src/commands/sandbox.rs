use std::time::Duration;

use super::{eprint_diagnostics, ExitStatus};
use crate::cli::SandboxArgs;
use crate::diagnostic::Diagnostic;
use crate::sandbox::{read_users, serve_until, BotCredentials, FaultSpec, SandboxConfig};

fn usage(message: String, help: &str) -> ExitStatus {
    eprint_diagnostics(&[Diagnostic::error("usage", message).help(help)]);
    ExitStatus::Invalid
}

pub(super) fn run(args: &SandboxArgs) -> ExitStatus {
    let listen = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => {
            return usage(
                format!("--listen `{}` is not an address", args.listen),
                "e.g. 127.0.0.1:8787 (port 0 picks a free one)",
            )
        }
    };
    let mut bots = Vec::new();
    for spec in &args.bots {
        // `ID=env:VAR` keeps the token out of the process list.
        let resolved = match spec.split_once("=env:") {
            Some((id, var)) => match std::env::var(var) {
                Ok(token) => format!("{id}={token}"),
                Err(_) => {
                    return usage(
                        format!("--bot {id}=env:{var}: `{var}` is not set"),
                        "export the variable or pass ID=TOKEN",
                    )
                }
            },
            None => spec.clone(),
        };
        match resolved.parse::<BotCredentials>() {
            Ok(b) => {
                crate::redact::register(&b.token);
                bots.push(b);
            }
            Err(e) => {
                return usage(
                    format!("--bot: {e}"),
                    "pass --bot ID=TOKEN, e.g. --bot 64f0c2a1e4b0=sandbox-token",
                )
            }
        }
    }
    let fail = match &args.fail {
        Some(spec) => match spec.parse::<FaultSpec>() {
            Ok(f) => f,
            Err(e) => {
                return usage(
                    format!("--fail: {e}"),
                    "e.g. --fail 500:0.05,timeout:0.02,reject:0.01,429:0.01",
                )
            }
        },
        None => FaultSpec::default(),
    };
    let users = match &args.users {
        Some(path) => match read_users(path) {
            Ok(u) => Some(u),
            Err(e) => return usage(format!("{e:#}"), "one user id per line"),
        },
        None => None,
    };
    let idle_timeout = match crate::schedule::parse_duration(&args.idle_timeout) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return usage("--idle-timeout must be longer than zero".into(), "e.g. 30s"),
        Err(e) => return usage(format!("--idle-timeout: {e}"), "e.g. 30s or 500ms"),
    };
    let config = SandboxConfig {
        listen,
        bots,
        rate: args.rate,
        fail,
        seed: args.seed,
        latency: Duration::from_millis(args.latency),
        record: args.record.clone(),
        users,
        idle_timeout,
        max_connections: args.max_connections,
        ..SandboxConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage(format!("cannot start: {e}"), "retry"),
    };
    let result = runtime.block_on(serve_until(config, super::shutdown_signal()));
    match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprint_diagnostics(&[Diagnostic::error("sandbox", format!("{e:#}"))]);
            ExitStatus::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::sandbox::SandboxConfig;

    #[test]
    fn sandbox_flag_defaults_match_the_config_defaults() {
        let cli = Cli::try_parse_from(["smax-campaign", "sandbox"]).expect("parses");
        let Command::Sandbox(args) = cli.command else {
            panic!("not the sandbox command");
        };
        let defaults = SandboxConfig::default();
        assert_eq!(
            crate::schedule::parse_duration(&args.idle_timeout),
            Ok(defaults.idle_timeout)
        );
        assert_eq!(args.max_connections, defaults.max_connections);
    }
}
