//! postroom: the mail room of a small server.
//!
//! The library holds every part; the binaries `deliver` (a drop-in for
//! procmail) and `postroom` (the SMTP server and tools) are thin shells
//! around it. See `ARCHITECTURE.md` for the map and the invariants.
#![warn(missing_docs)]

pub mod cli;
pub mod daemon;
pub mod deliver;
pub mod diag;
pub mod formail;
pub mod mailbox;
pub mod message;
pub mod queue;
pub mod rc;
pub mod route;
pub mod runner;
pub mod smtp;
pub mod status;
pub mod submit;
pub mod vacation;
