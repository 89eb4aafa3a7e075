//! The single integration test target: every file under tests/ is a module here.

mod rc_syntax;
mod util;
