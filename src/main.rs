use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = smax_campaign::cli::Cli::parse();
    std::process::ExitCode::from(smax_campaign::run(cli).code())
}
