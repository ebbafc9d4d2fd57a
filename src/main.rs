use clap::Parser;

fn main() -> std::process::ExitCode {
    smax_campaign::redact::install_panic_hook();
    let cli = smax_campaign::cli::Cli::parse();
    smax_campaign::logging::init(cli.output.verbose, cli.output.quiet);
    std::process::ExitCode::from(smax_campaign::run(cli).code())
}
