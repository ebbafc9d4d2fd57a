//! sandbox (work in progress)
