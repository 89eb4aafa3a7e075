//! The single integration test target: every file under tests/ is a module here.

mod deliver;
mod diff;
mod eval;
mod examples;
mod formail;
mod mailbox;
mod queue;
mod rc_syntax;
mod relay;
mod relay_client;
mod robust;
mod route;
mod runner;
mod sendmail;
mod smtp_proto;
mod smtpd;
mod smtpd_aliases;
mod util;
mod vacation;
