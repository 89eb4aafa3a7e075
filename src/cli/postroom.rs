//! The `postroom` command line (clap): `check`, `smtpd` and `queue`, and
//! the queue runner's lines of `postroom.conf`. Argument and settings
//! parsing only: it never opens the spool, a socket or a mailbox.
//!
//! The runner's keys (`queue_interval`, `min_backoff`, `max_backoff`,
//! `max_lifetime`, `deliver`, `mail_root`, `virtual_user`) are read here, not in
//! `smtp::settings`, which owns the server's keys and rejects any other:
//! [`split_runner_settings`] takes them out of the file's text (blanking
//! their lines, so the server's diagnostics keep their line numbers) and
//! parses them with the same kind of diagnostics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::diag::{Diagnostic, Span};
use crate::queue::Schedule;

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
}

/// What `postroom queue` does besides listing.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Ask the running server to retry every entry now (a `flush` marker
    /// file in the spool, which the runner looks for every 100 ms); with
    /// no server running, run the queue once here.
    Flush,
}

/// The queue runner's settings from `postroom.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerSettings {
    /// How often the runner looks for due entries (`queue_interval`,
    /// seconds; default 5).
    pub interval: Duration,
    /// The retry schedule (`min_backoff`, `max_backoff`, `max_lifetime`;
    /// the rest as [`Schedule::default`]).
    pub schedule: Schedule,
    /// The `deliver` binary (`deliver`); `None`: the one next to the
    /// running `postroom`.
    pub deliver: Option<PathBuf>,
    /// Where virtual users' mail folders live (`mail_root`): the runner
    /// creates `mail_root/<user>/` for each virtual user before a run, as
    /// an rcfile's `MAILDIR=` expects. `None`: nothing is created.
    pub mail_root: Option<PathBuf>,
    /// The system user whose uid and gid the virtual users' deliveries
    /// run with when the server runs as root (`virtual_user`); `None`:
    /// as the server itself (the demo and the tests, not as root).
    pub virtual_user: Option<String>,
}

impl Default for RunnerSettings {
    fn default() -> RunnerSettings {
        RunnerSettings {
            interval: Duration::from_secs(5),
            schedule: Schedule::default(),
            deliver: None,
            mail_root: None,
            virtual_user: None,
        }
    }
}

/// The keys [`split_runner_settings`] takes.
pub const RUNNER_KEYS: &[&str] = &[
    "queue_interval",
    "min_backoff",
    "max_backoff",
    "max_lifetime",
    "deliver",
    "mail_root",
    "virtual_user",
];

/// A duration: a whole number with an optional unit `s`, `m`, `h` or `d`
/// (seconds when none), at least one second.
fn duration(v: &str) -> Result<Duration, &'static str> {
    let (num, mult) = match v.as_bytes().last() {
        Some(b's') => (&v[..v.len() - 1], 1),
        Some(b'm') => (&v[..v.len() - 1], 60),
        Some(b'h') => (&v[..v.len() - 1], 3600),
        Some(b'd') => (&v[..v.len() - 1], 86400),
        _ => (v, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(mult))),
        _ => Err("want a whole number of seconds (or with a unit s, m, h, d), at least 1"),
    }
}

/// Takes the runner's keys out of the text of a settings file named
/// `file`: returns the text with their lines blanked (same length, so
/// spans elsewhere stay right), the runner settings (relative paths joined
/// to `dir`) and the diagnostics of those lines.
pub fn split_runner_settings(
    file: &str,
    src: &[u8],
    dir: &Path,
) -> (Vec<u8>, RunnerSettings, Vec<Diagnostic>) {
    let mut rest = src.to_vec();
    let mut s = RunnerSettings::default();
    let mut diags = Vec::new();
    let mut off = 0;
    for raw in src.split_inclusive(|&b| b == b'\n') {
        let start = off;
        off += raw.len();
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let body = match line.iter().position(|&b| b == b'#') {
            Some(p) => &line[..p],
            None => line,
        };
        let Ok(body) = std::str::from_utf8(body) else {
            continue;
        };
        let Some((key, value)) = body.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if !RUNNER_KEYS.contains(&key) {
            continue;
        }
        let lead = body.len() - body.trim_start().len();
        let span = Span::new(start + lead, start + body.trim_end().len());
        for b in &mut rest[start..start + line.len()] {
            if *b != b'\r' {
                *b = b' ';
            }
        }
        let result = match key {
            "queue_interval" => duration(value).map(|d| s.interval = d),
            "min_backoff" => duration(value).map(|d| s.schedule.min_backoff = d),
            "max_backoff" => duration(value).map(|d| s.schedule.max_backoff = d),
            "max_lifetime" => duration(value).map(|d| s.schedule.max_lifetime = d),
            _ if value.is_empty() => Err("want a value"),
            "virtual_user" => {
                s.virtual_user = Some(value.to_string());
                Ok(())
            }
            "deliver" => {
                s.deliver = Some(dir.join(value));
                Ok(())
            }
            _ => {
                s.mail_root = Some(dir.join(value));
                Ok(())
            }
        };
        if let Err(what) = result {
            diags.push(Diagnostic::error(file, span, format!("`{key}`: {what}")));
        }
    }
    if let Err(e) = s.schedule.validate() {
        diags.push(Diagnostic::error(file, Span::default(), e.to_string()));
    }
    (rest, s, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_keys_are_taken_out_and_the_rest_keeps_its_offsets() {
        let src = b"hostname = a.test\nqueue_interval = 2\nmin_backoff = 1m # c\nmax_backoff = 2h\nmax_lifetime = 3d\ndeliver = bin/deliver\nmail_root = ../state/mail\nvirtual_user = mail\nlisten = 127.0.0.1:0\n";
        let (rest, got, diags) = split_runner_settings("postroom.conf", src, Path::new("/etc/p"));
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(rest.len(), src.len());
        let rest = String::from_utf8(rest).unwrap();
        assert!(rest.starts_with("hostname = a.test\n"));
        assert!(rest.ends_with("\nlisten = 127.0.0.1:0\n"));
        assert!(!rest.contains("queue_interval") && !rest.contains("mail_root"));
        assert_eq!(rest.lines().count(), 9);
        assert_eq!(got.virtual_user.as_deref(), Some("mail"));
        assert_eq!(got.interval, Duration::from_secs(2));
        assert_eq!(got.schedule.min_backoff, Duration::from_secs(60));
        assert_eq!(got.schedule.max_backoff, Duration::from_secs(7200));
        assert_eq!(got.schedule.max_lifetime, Duration::from_secs(3 * 86400));
        assert_eq!(got.deliver, Some(PathBuf::from("/etc/p/bin/deliver")));
        assert_eq!(got.mail_root, Some(PathBuf::from("/etc/p/../state/mail")));
    }

    #[test]
    fn bad_runner_values_are_reported_on_their_line() {
        // (line, want message)
        let cases = [
            (
                "queue_interval = 0\n",
                "`queue_interval`: want a whole number",
            ),
            ("min_backoff = soon\n", "`min_backoff`: want a whole number"),
            (
                "min_backoff = 2h\nmax_backoff = 1h\n",
                "maximal backoff is shorter than the minimal backoff",
            ),
        ];
        for (src, want) in cases {
            let (_, _, diags) = split_runner_settings("f", src.as_bytes(), Path::new("."));
            assert_eq!(diags.len(), 1, "{src}");
            let got = &diags[0].message;
            assert!(got.contains(want), "{src}: {got}");
        }
        let (_, _, diags) =
            split_runner_settings("f", b"x\ny\nqueue_interval = -1\n", Path::new("."));
        assert_eq!(diags[0].span.start, 4);
    }
}
