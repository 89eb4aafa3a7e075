//! The single integration test target: every file under tests/ is a module here.

mod mailbox;
mod util;
