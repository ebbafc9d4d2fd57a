//! `state init`: the one way, besides `run --new-state`, that a state store comes to be.

use super::{print_out, render_error, usage_error, ExitStatus};
use crate::cli::{GlobalArgs, StateCommand};
use crate::run::RunError;

pub(super) fn run(global: &GlobalArgs, command: &StateCommand) -> ExitStatus {
    match command {
        StateCommand::Init(_) => init(global),
    }
}

fn init(global: &GlobalArgs) -> ExitStatus {
    let location = match super::inputs(global).state_location_for(None) {
        Ok(l) => l,
        Err(errors) => return render_error(&RunError::Invalid(errors)),
    };
    match crate::state::create(&location) {
        Ok(Some((_, true))) => {
            print_out(&format!("created the state store {location}\n"));
            ExitStatus::Success
        }
        Ok(Some((_, false))) => {
            print_out(&format!(
                "the state store {location} already exists; left as it was\n"
            ));
            ExitStatus::Success
        }
        Ok(None) => usage_error("--state none keeps no state; there is nothing to create"),
        Err(e) => render_error(&RunError::state(location.to_string(), e)),
    }
}
