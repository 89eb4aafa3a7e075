//! The `postroom` command line (clap): `check`, `smtpd`, `queue` and
//! `sendmail` (whose arguments are sendmail's, parsed by `cli::sendmail`),
//! `vacation` and `formail` (their own command lines, parsed by their modules).
//! Argument parsing only: it never opens the spool, a socket or a mailbox;
//! the settings file is read by `smtp::settings`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// postroom: the mail room of a small server.
#[derive(Debug, Parser)]
#[command(name = "postroom", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse rcfiles, or a whole configuration directory, and report every
    /// error as FILE:LINE:COL; exit 1 on any.
    Check {
        /// A configuration directory: its settings file and every table.
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
        /// The rcfiles to check.
        #[arg(required_unless_present = "config")]
        rcfiles: Vec<PathBuf>,
    },
    /// Run the SMTP server and the queue runner in the foreground, logging
    /// to stderr; SIGTERM or SIGINT stops both.
    Smtpd {
        /// The configuration directory (postroom.conf and the tables).
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
    },
    /// List the queue like mailq (works while `smtpd` runs), or `flush`
    /// it: make the running server retry every deferred recipient now.
    Queue {
        /// `flush`: retry now.
        #[command(subcommand)]
        action: Option<QueueAction>,
        /// The configuration directory (postroom.conf and the tables).
        #[arg(long, value_name = "DIR", global = true)]
        config: Option<PathBuf>,
    },
    /// Submit a message like sendmail (`postroom::submit`): sendmail's
    /// options and recipients, the message on stdin, queued through the
    /// spool's maildrop. Also what `postroom` does when run as
    /// `sendmail` or `mailq`.
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail's arguments, passed on untouched.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Answer a message on stdin with the user's "I am away" text, once
    /// per sender and interval, like vacation(1) (`postroom::vacation`);
    /// also what `postroom` does when run as `vacation`.
    #[command(disable_help_flag = true)]
    Vacation {
        /// vacation(1)'s arguments, passed on untouched.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Reformat a message like procmail's formail (`postroom::formail`):
    /// formail's options, the message on stdin, the result on stdout.
    /// Also what `postroom` does when run as `formail`.
    #[command(disable_help_flag = true)]
    Formail {
        /// formail's arguments, passed on untouched.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// What `postroom queue` does besides listing.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Ask the running server to retry every entry now (a `flush` marker
    /// file in the spool, which the runner looks for every 100 ms); with
    /// no server running, run the queue once here.
    Flush,
}
