//! The single integration test target: every file under tests/ is a module here.

mod deliver;
mod diff;
mod mailbox;
mod rc_syntax;
mod robust;
mod util;
