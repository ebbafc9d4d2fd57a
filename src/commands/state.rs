//! `state init`: the one way, besides `run --new-state`, that a state store comes to be.

use super::runstate::{state_error, state_file_for};
use super::{print_out, usage_error, ExitStatus};
use crate::cli::{GlobalArgs, StateCommand};
use crate::state::SqliteStore;

pub(super) fn run(global: &GlobalArgs, command: &StateCommand) -> ExitStatus {
    match command {
        StateCommand::Init => init(global),
    }
}

fn init(global: &GlobalArgs) -> ExitStatus {
    let path = match state_file_for(global, None) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if path.as_os_str() == "none" {
        return usage_error("--state none keeps no state; there is nothing to create");
    }
    match SqliteStore::create(&path) {
        Ok((_, true)) => {
            print_out(&format!("created the state store {}\n", path.display()));
            ExitStatus::Success
        }
        Ok((_, false)) => {
            print_out(&format!(
                "the state store {} already exists; left as it was\n",
                path.display()
            ));
            ExitStatus::Success
        }
        Err(e) => state_error(&path, &e),
    }
}
