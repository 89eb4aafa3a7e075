//! The single integration test target: every file under tests/ is a module here.

mod diff;
mod util;
