//! The `postroom` command line (clap): `check` today; the SMTP server,
//! queue and sendmail commands join it as they are built.

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
    /// Parse rcfiles and report every error as FILE:LINE:COL; exit 1 on any.
    Check {
        /// The rcfiles to check.
        #[arg(required = true)]
        rcfiles: Vec<PathBuf>,
    },
}
