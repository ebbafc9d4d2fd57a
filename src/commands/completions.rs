//! `completions SHELL` and `completions --man DIR`: generated from the clap
//! definitions, so they can never drift from what the binary accepts.

use std::path::Path;

use clap::CommandFactory;

use super::{usage_error, ExitStatus};
use crate::cli::{Cli, CompletionsArgs};

pub(super) fn run(args: &CompletionsArgs) -> ExitStatus {
    let mut command = Cli::command();
    if let Some(dir) = &args.man {
        return match write_man_pages(command, dir) {
            Ok(written) => {
                super::print_out(&format!("wrote {written} man pages to {}\n", dir.display()));
                ExitStatus::Success
            }
            Err(e) => usage_error(&format!(
                "cannot write the man pages to `{}`: {}",
                dir.display(),
                crate::human::io_reason(&e)
            )),
        };
    }
    let Some(shell) = args.shell else {
        return usage_error("name a shell: bash, zsh, fish, powershell or elvish");
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "smax-campaign", &mut script);
    super::print_out(&String::from_utf8_lossy(&script));
    ExitStatus::Success
}

/// `smax-campaign.1`, and `smax-campaign-COMMAND.1` for each command (and
/// `smax-campaign-state-init.1`); how many were written.
fn write_man_pages(command: clap::Command, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut written = 0;
    let mut pending = vec![(command.get_name().to_owned(), command)];
    while let Some((name, mut command)) = pending.pop() {
        command.build();
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let full = format!("{name}-{}", sub.get_name());
            pending.push((full.clone(), sub.clone().name(full)));
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
        written += 1;
    }
    Ok(written)
}
