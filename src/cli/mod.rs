//! Command-line parsing for the binaries; nothing else.
//!
//! `deliver` takes procmail's command line exactly (procmail(1)
//! "OPTIONS"): bundled letters, `-f`/`-a` values glued or separate, `-d`
//! ending the options, unknown letters reported and ignored. clap cannot
//! express "warn about an unknown option and carry on", which MTAs rely on
//! when they pass flags of newer procmail versions, so this parser is
//! written by hand; the `postroom` binary uses clap.

pub mod postroom;
pub mod sendmail;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// What `deliver` was asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    /// `argv[0]`.
    pub arg0: Vec<u8>,
    /// `-p`: keep the caller's environment.
    pub preserve_env: bool,
    /// `-t`: temporary failure (75) instead of 73 when nothing was delivered.
    pub soft_fail: bool,
    /// `-f ADDR` / `-r ADDR`: regenerate the postmark (`-` keeps the sender).
    pub from: Option<Vec<u8>>,
    /// `-o`: override a fake postmark.
    pub override_from: bool,
    /// `-Y`: ignore `Content-Length:`.
    pub berkeley: bool,
    /// `-a ARG` values, in order: `$1`, `$2`, ...
    pub args: Vec<Vec<u8>>,
    /// `VAR=value` arguments (raw, expanded later), in order.
    pub assignments: Vec<(Vec<u8>, Vec<u8>)>,
    /// The mode.
    pub mode: Mode,
    /// Complaints to print (procmail's texts), the run goes on.
    pub warnings: Vec<String>,
}

/// The mode of operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No `-d`/`-m`: the rcfiles named (or the default ones).
    #[default]
    Default,
    /// Rcfiles named on the command line.
    Rcfiles(Vec<Vec<u8>>),
    /// `-m rcfile [arg]...`.
    Filter {
        /// The rcfile; `None` means it was missing (exit 66).
        rcfile: Option<Vec<u8>>,
        /// `$1`...
        positional: Vec<Vec<u8>>,
    },
    /// `-d recipient...`.
    Deliver(Vec<Vec<u8>>),
    /// `-h`, `-?`, `--help`.
    Help,
    /// `-v`, `--version`.
    Version,
    /// `-z`: LMTP, not supported.
    Lmtp,
}

/// The usage text, printed for `-h` and after a conflict.
pub const USAGE: &str = "\
Usage: deliver [-vptoY] [-f fromwhom] [parameter=value | rcfile] ...
   Or: deliver [-toY] [-f fromwhom] [-a argument] ... -d recipient ...
   Or: deliver [-ptY] [-f fromwhom] -m [parameter=value] ... rcfile [arg] ...
";

/// The help text after the usage.
pub const HELP: &str = "\
\t-v\t\tprint the version and exit
\t-p\t\tkeep the caller's environment
\t-t\t\texit 75 (try again later) when the mail cannot be delivered
\t-f fromwhom\tregenerate the leading 'From ' line
\t-o\t\treplace a fake leading 'From ' line
\t-Y\t\tBerkeley mailbox format: ignore Content-Length:
\t-a argument\tset $1, $2, ...
\t-d recipient\tdeliver to these users (as an MTA's local mailer)
\t-m\t\tact as a general purpose mail filter
Recipe flags:
\tH  search the header (default)\tB  search the body
\tD  case-sensitive matching
\tA  also run if the previous recipe's conditions matched
\ta  like A, and only if the previous recipe succeeded
\tE  else: run if the previous recipe's conditions did not match
\te  on error: run if the previous recipe failed
\th  pass the header (default)\tb  pass the body (default)
\tf  filter\t\t\ti  ignore write errors
\tc  carbon copy\t\t\tr  raw mode, no added newline
\tw  wait for the program\t\tW  like w, without 'Program failure'
";

fn is_assignment(arg: &[u8]) -> bool {
    match arg.iter().position(|&b| b == b'=') {
        Some(p) if p > 0 => {
            let name = &arg[..p];
            (name[0].is_ascii_alphabetic() || name[0] == b'_')
                && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        _ => false,
    }
}

fn split_assignment(arg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let p = arg.iter().position(|&b| b == b'=').unwrap_or(arg.len());
    (arg[..p].to_vec(), arg.get(p + 1..).unwrap_or(&[]).to_vec())
}

/// Whether a program name implies `-d` (procmail(1): a procmail installed
/// under another name acts as a delivery agent). `deliver` itself does not:
/// it is our name for procmail, and MTAs pass `-d` explicitly.
pub fn name_implies_d(arg0: &[u8]) -> bool {
    let base = arg0.rsplit(|&b| b == b'/').next().unwrap_or(arg0);
    !(base.starts_with(b"procmail") || base.starts_with(b"deliver"))
}

/// Parses procmail's command line.
pub fn parse_deliver(argv: Vec<OsString>) -> Invocation {
    let mut argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let mut inv = Invocation {
        arg0: if argv.is_empty() {
            b"deliver".to_vec()
        } else {
            argv.remove(0)
        },
        ..Invocation::default()
    };
    let mut filter = false;
    let mut deliver = name_implies_d(&inv.arg0);
    let mut i = 0;
    while i < argv.len() && !deliver {
        let arg = argv[i].clone();
        if arg == b"--help" {
            inv.mode = Mode::Help;
            return inv;
        }
        if arg == b"--version" {
            inv.mode = Mode::Version;
            return inv;
        }
        if arg.first() != Some(&b'-') || arg.len() < 2 {
            break;
        }
        i += 1;
        if arg == b"--" {
            break;
        }
        let mut j = 1;
        while j < arg.len() {
            let c = arg[j];
            j += 1;
            match c {
                b'v' => {
                    inv.mode = Mode::Version;
                    return inv;
                }
                b'h' | b'?' => {
                    inv.mode = Mode::Help;
                    return inv;
                }
                b'p' => inv.preserve_env = true,
                b't' => inv.soft_fail = true,
                b'o' => inv.override_from = true,
                b'Y' | b'y' => inv.berkeley = true,
                b'm' => filter = true,
                b'z' => {
                    inv.mode = Mode::Lmtp;
                    return inv;
                }
                b'd' => {
                    deliver = true;
                    // The rest of this word, if any, is the first recipient.
                    if j < arg.len() {
                        argv.insert(i, arg[j..].to_vec());
                    }
                    break;
                }
                b'f' | b'r' | b'a' => {
                    let value = if j < arg.len() {
                        let v = arg[j..].to_vec();
                        j = arg.len();
                        Some(v)
                    } else if i < argv.len() {
                        i += 1;
                        Some(argv[i - 1].clone())
                    } else {
                        None
                    };
                    match (c, value) {
                        (b'a', Some(v)) => inv.args.push(v),
                        (_, Some(v)) => inv.from = Some(v),
                        (_, None) => inv
                            .warnings
                            .push(format!("Missing argument for option \"-{}\"", c as char)),
                    }
                }
                other => inv.warnings.push(format!(
                    "Unrecognised options: \"{}\"",
                    String::from_utf8_lossy(&[other])
                )),
            }
        }
    }
    let rest = argv.split_off(i.min(argv.len()));
    if deliver {
        if filter || inv.preserve_env {
            inv.warnings.push("Conflicting options".to_string());
            inv.preserve_env = false;
        }
        inv.mode = Mode::Deliver(rest);
        return inv;
    }
    let mut rest = rest.into_iter();
    let mut rcfiles = Vec::new();
    for arg in rest.by_ref() {
        if is_assignment(&arg) {
            inv.assignments.push(split_assignment(&arg));
        } else if filter {
            inv.mode = Mode::Filter {
                rcfile: Some(arg),
                positional: Vec::new(),
            };
            break;
        } else {
            rcfiles.push(arg);
        }
    }
    if filter {
        if !inv.args.is_empty() {
            inv.warnings.push("Conflicting options".to_string());
            inv.args.clear();
        }
        match &mut inv.mode {
            Mode::Filter { positional, .. } => positional.extend(rest),
            _ => {
                inv.mode = Mode::Filter {
                    rcfile: None,
                    positional: Vec::new(),
                }
            }
        }
    } else if !rcfiles.is_empty() {
        inv.mode = Mode::Rcfiles(rcfiles);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Invocation {
        parse_deliver(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn filter_mode_takes_assignments_then_rcfile_then_args() {
        let got = parse(&["procmail", "-tf", "bob", "-m", "A=1", "./rc", "x", "B=2"]);
        assert!(got.soft_fail);
        assert_eq!(got.from.as_deref(), Some(&b"bob"[..]));
        assert_eq!(got.assignments, vec![(b"A".to_vec(), b"1".to_vec())]);
        assert_eq!(
            got.mode,
            Mode::Filter {
                rcfile: Some(b"./rc".to_vec()),
                positional: vec![b"x".to_vec(), b"B=2".to_vec()],
            }
        );
    }

    #[test]
    fn d_ends_options_and_glued_values_work() {
        let got = parse(&["deliver", "-abar", "-a", "baz", "-d", "alice", "-t"]);
        assert_eq!(got.args, vec![b"bar".to_vec(), b"baz".to_vec()]);
        assert_eq!(
            got.mode,
            Mode::Deliver(vec![b"alice".to_vec(), b"-t".to_vec()])
        );
        assert!(!got.soft_fail);
    }

    #[test]
    fn unknown_letters_warn_and_go_on() {
        let got = parse(&["procmail", "-xm", "rc"]);
        assert_eq!(
            got.warnings,
            vec!["Unrecognised options: \"x\"".to_string()]
        );
        assert!(matches!(got.mode, Mode::Filter { .. }));
    }

    #[test]
    fn missing_rcfile_in_filter_mode() {
        let got = parse(&["procmail", "-m"]);
        assert_eq!(
            got.mode,
            Mode::Filter {
                rcfile: None,
                positional: vec![]
            }
        );
    }

    #[test]
    fn other_names_imply_d() {
        assert!(!name_implies_d(b"/usr/bin/procmail"));
        assert!(!name_implies_d(b"deliver"));
        assert!(name_implies_d(b"/usr/libexec/mail.local"));
        let got = parse(&["mail.local", "alice"]);
        assert_eq!(got.mode, Mode::Deliver(vec![b"alice".to_vec()]));
    }
}
