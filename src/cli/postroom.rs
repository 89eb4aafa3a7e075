//! The `postroom` command line (clap): `check` and `smtpd`; the queue and
//! sendmail commands join it as they are built. Argument parsing only.

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
    /// Run the SMTP server in the foreground, logging to stderr.
    Smtpd {
        /// The configuration directory (postroom.conf and the tables).
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
    },
}
