//! Every integration test, in one test binary: one link instead of one per
//! file after each change to the library. The modules share one process, so a
//! test must not change process-wide state (environment variables, the current
//! folder, the secret scrubber's list): anything that does runs in a child
//! process (the real binary, or this one with a filter), or, for a secret the
//! library registers, uses one that no other test prints.

mod cli;
mod common;
mod cron_reference;

mod delivery;
mod due;
mod fuzz;
mod gate;
mod init;
mod never_silent;
mod plan;
mod readme;
mod resume;
mod run;
mod runner;
mod sandbox;
mod saved_plan;
mod schedule;
mod schema;
mod shared_state;
mod state;
mod summary;
mod trust;
mod validate;
mod workflows;
