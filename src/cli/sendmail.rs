//! The sendmail command line, as `postroom sendmail` takes it.
//!
//! Owns turning sendmail's arguments into an [`Invocation`]; nothing else
//! (it reads no file and no message). Written by hand like procmail's
//! parser in `cli`: sendmail's options are getopt letters that bundle
//! (`-ti`), take values glued or separate (`-fbob`, `-f bob`), include
//! the two-letter `-o` and `-b` families (`-oi`, `-oem`, `-bp`), and an
//! option it does not know is a warning, not an error, because scripts,
//! MUAs and procmail pass flags of every sendmail variant.
//!
//! sendmail(8) and the O'Reilly "sendmail" book (chapter "The Command
//! Line") are the reference: options come first, then recipients; `--`
//! ends the options; the first argument that is not an option starts the
//! recipients. Options sendmail would act on but we do not (`-odi`, `-N`,
//! `-v`, `-X` ...) are accepted with a warning; modes we do not have
//! (`-bs`, `-bd`, `-bi` ...) are a usage error (exit 64).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What `postroom sendmail` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// `-bm` (default), `-bp` or `-q`.
    pub mode: Mode,
    /// The recipient arguments as given (each may hold several addresses).
    pub recipients: Vec<Vec<u8>>,
    /// `-f ADDR` / `-r ADDR`: the envelope sender.
    pub from: Option<Vec<u8>>,
    /// Which letter set it (`f` or `r`), for `X-Authentication-Warning:`.
    pub from_letter: char,
    /// `-F NAME`: the full name for a `From:` that has to be made.
    pub full_name: Option<Vec<u8>>,
    /// `-t`: recipients from `To:`, `Cc:`, `Bcc:` (or their `Resent-`
    /// forms), added to the command line's; `Bcc:` removed.
    pub extract: bool,
    /// `-i`, `-oi`: a line holding a single `.` does not end the message.
    pub ignore_dots: bool,
    /// `-C PATH` / `--config PATH`: the configuration directory (or a file
    /// in it, as sendmail's `-C` names its `.cf` file).
    pub config: Option<PathBuf>,
    /// `-V ENVID` (RFC 3461).
    pub envid: Option<Vec<u8>>,
    /// `-R hdrs|full`: `Some(true)` returns only headers in a DSN.
    pub ret_headers: Option<bool>,
    /// `-B 8BITMIME|7BIT`, checked; the message's bytes decide its body
    /// type (`submit`), as they do in sendmail's collect().
    pub body_8bit: Option<bool>,
    /// Options accepted but ignored, one lowercase line each, for stderr.
    pub warnings: Vec<String>,
}

impl Default for Invocation {
    fn default() -> Invocation {
        Invocation {
            mode: Mode::Deliver,
            recipients: Vec::new(),
            from: None,
            from_letter: 'f',
            full_name: None,
            extract: false,
            ignore_dots: false,
            config: None,
            envid: None,
            ret_headers: None,
            body_8bit: None,
            warnings: Vec::new(),
        }
    }
}

/// The mode of operation (`-b`, `-q`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `-bm`: read a message and queue it (the default).
    Deliver,
    /// `-bp`: list the queue, like `mailq` (`postroom queue`).
    ListQueue,
    /// `-q`: run the queue once (`postroom queue flush`).
    FlushQueue,
}

/// A command line sendmail would refuse: exit `EX_USAGE` (64).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Letters that take a value (sendmail's getopt string).
const WITH_VALUE: &[u8] = b"ABbCDdeFfhLMNOopQqRrVX";

/// Of those, the ones whose value may be missing: sendmail's `obsolete()`
/// gives `-C`, `-q`, `-Q` and `-d` a default then, and takes the next
/// argument as the value only when it does not start with `-` (never for
/// `-d`).
const OPTIONAL_VALUE: &[u8] = b"CqQd";

/// Parses the arguments after the program name (or after `sendmail` in
/// `postroom sendmail ...`).
pub fn parse<S: AsRef<OsStr>>(args: &[S]) -> Result<Invocation, UsageError> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_ref().as_bytes()).collect();
    let mut inv = Invocation::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == b"--" {
            i += 1;
            break;
        }
        if a == b"--config" {
            let v = args
                .get(i + 1)
                .ok_or_else(|| UsageError("option requires an argument -- config".into()))?;
            inv.config = Some(PathBuf::from(OsStr::from_bytes(v)));
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix(b"--config=") {
            inv.config = Some(PathBuf::from(OsStr::from_bytes(v)));
            i += 1;
            continue;
        }
        if a.starts_with(b"--") {
            inv.warnings
                .push(format!("unknown option {} ignored", show(a)));
            i += 1;
            continue;
        }
        if a.len() < 2 || a[0] != b'-' {
            break;
        }
        i += 1;
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            if !WITH_VALUE.contains(&c) {
                flag(&mut inv, c);
                j += 1;
                continue;
            }
            let glued = &a[j + 1..];
            let value = if !glued.is_empty() {
                Some(glued.to_vec())
            } else if OPTIONAL_VALUE.contains(&c) {
                match args.get(i) {
                    Some(next) if c != b'd' && !next.starts_with(b"-") => {
                        i += 1;
                        Some(next.to_vec())
                    }
                    _ => None,
                }
            } else {
                match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.to_vec())
                    }
                    None => {
                        return Err(UsageError(format!(
                            "option requires an argument -- {}",
                            char::from(c)
                        )));
                    }
                }
            };
            with_value(&mut inv, c, value)?;
            break;
        }
    }
    inv.recipients = args[i..].iter().map(|a| a.to_vec()).collect();
    Ok(inv)
}

/// `-X` shown for a message, control bytes replaced.
fn show(b: &[u8]) -> String {
    crate::diag::one_line(&String::from_utf8_lossy(b))
}

/// A letter without a value.
fn flag(inv: &mut Invocation, c: u8) {
    match c {
        b't' => inv.extract = true,
        b'i' => inv.ignore_dots = true,
        // Obsolete or no-ops in sendmail 8 as well: me-too, initial user
        // submission, gateway submission.
        b'm' | b'U' | b'G' => {}
        b'v' => inv
            .warnings
            .push("-v ignored: postroom sendmail only queues the message".into()),
        b'n' => inv
            .warnings
            .push("-n ignored: aliases are always expanded".into()),
        b'I' => inv
            .warnings
            .push("-I ignored: there is no alias database to rebuild".into()),
        b'c' | b's' | b'x' | b'T' => inv.warnings.push(format!(
            "-{} ignored (obsolete sendmail option)",
            char::from(c)
        )),
        other => inv
            .warnings
            .push(format!("unknown option -{} ignored", show(&[other]))),
    }
}

/// A letter with its value (`None` only for [`OPTIONAL_VALUE`] letters).
fn with_value(inv: &mut Invocation, c: u8, value: Option<Vec<u8>>) -> Result<(), UsageError> {
    let v = value.unwrap_or_default();
    match c {
        b'b' => match v.first() {
            Some(b'm') => inv.mode = Mode::Deliver,
            Some(b'p') => inv.mode = Mode::ListQueue,
            Some(b's' | b'd' | b'D') => {
                return Err(UsageError(format!(
                    "-b{} is not supported: run `postroom smtpd` for an SMTP server",
                    show(&v)
                )));
            }
            Some(b'i') => {
                return Err(UsageError(
                    "-bi is not supported: postroom reads the aliases file as text, there is nothing to rebuild"
                        .into(),
                ));
            }
            Some(b'v' | b't' | b'a' | b'h' | b'H' | b'P' | b'C') => {
                return Err(UsageError(format!(
                    "-b{} is not supported by postroom sendmail (use `postroom check`)",
                    show(&v)
                )));
            }
            _ => {
                return Err(UsageError(format!("invalid operation mode {}", show(&v))));
            }
        },
        b'C' => {
            if !v.is_empty() {
                inv.config = Some(PathBuf::from(OsStr::from_bytes(&v)));
            }
        }
        b'F' => inv.full_name = Some(v),
        b'f' | b'r' => {
            if inv.from.is_some() {
                // sendmail: "More than one "from" person".
                return Err(UsageError("more than one \"from\" person".into()));
            }
            inv.from = Some(v);
            inv.from_letter = char::from(c);
        }
        b'o' => dash_o(inv, &v),
        b'O' => long_option(inv, &v),
        b'e' => {} // old form of -oe: errors go to stderr and bounces anyway
        b'R' => match v.to_ascii_lowercase().as_slice() {
            b"hdrs" => inv.ret_headers = Some(true),
            b"full" => inv.ret_headers = Some(false),
            _ => {
                return Err(UsageError(format!(
                    "invalid -R value `{}`: want hdrs or full",
                    show(&v)
                )));
            }
        },
        b'B' => match v.to_ascii_uppercase().as_slice() {
            b"8BITMIME" => inv.body_8bit = Some(true),
            b"7BIT" => inv.body_8bit = Some(false),
            _ => {
                return Err(UsageError(format!(
                    "invalid -B value `{}`: want 7BIT or 8BITMIME",
                    show(&v)
                )));
            }
        },
        b'V' => {
            if v.is_empty() || !v.iter().all(|b| b.is_ascii_graphic()) {
                return Err(UsageError(format!("invalid -V envelope id `{}`", show(&v))));
            }
            inv.envid = Some(v);
        }
        b'q' => {
            inv.mode = Mode::FlushQueue;
            if !v.is_empty() && v != b"0" {
                inv.warnings.push(format!(
                    "-q{} ignored: the queue is run once, all of it",
                    show(&v)
                ));
            }
        }
        b'N' => inv
            .warnings
            .push("-N ignored: postroom does not keep DSN NOTIFY requests".into()),
        b'h' => inv
            .warnings
            .push("-h ignored: hops are counted from Received: fields".into()),
        other => inv
            .warnings
            .push(format!("-{}{} ignored", char::from(other), show(&v))),
    }
    Ok(())
}

/// `-oXvalue`: sendmail's one-letter options.
fn dash_o(inv: &mut Invocation, v: &[u8]) {
    let (letter, rest) = match v.split_first() {
        Some((l, r)) => (*l, r),
        None => {
            inv.warnings.push("-o without an option ignored".into());
            return;
        }
    };
    match letter {
        b'i' => inv.ignore_dots = truth(rest),
        // Error modes: we always write usage errors to stderr and send
        // delivery failures back as DSNs, which is -oem; the others ask
        // for what we do not do.
        b'e' if rest == b"m" || rest.is_empty() => {}
        b'e' => inv.warnings.push(format!(
            "-oe{} ignored: errors are reported on stderr and by mail",
            show(rest)
        )),
        // Delivery modes: queueing is all we do (background and queue-only
        // are that); interactive delivery is not possible.
        b'd' if matches!(rest, b"b" | b"q" | b"") => {}
        b'd' => inv.warnings.push(format!(
            "-od{} ignored: the message is queued and delivered by the server",
            show(rest)
        )),
        b'm' => {}
        _ => inv.warnings.push(format!("-o{} ignored", show(v))),
    }
}

/// `-O Name=value`: sendmail's long options.
fn long_option(inv: &mut Invocation, v: &[u8]) {
    let (name, value) = match v.iter().position(|&b| b == b'=') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &b""[..]),
    };
    if name.eq_ignore_ascii_case(b"IgnoreDots") {
        inv.ignore_dots = truth(value);
    } else if name.eq_ignore_ascii_case(b"ErrorMode")
        && (value.is_empty() || value.eq_ignore_ascii_case(b"m"))
    {
    } else {
        inv.warnings.push(format!("-O{} ignored", show(v)));
    }
}

/// sendmail's boolean option values: empty or starting with `t`/`T`/`y`/`Y`
/// is true (readcf.c `atobool`).
fn truth(v: &[u8]) -> bool {
    matches!(v.first(), None | Some(b't' | b'T' | b'y' | b'Y'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Invocation {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn rcpts(inv: &Invocation) -> Vec<String> {
        inv.recipients
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    #[test]
    fn the_forms_scripts_use() {
        // (args, want ignore_dots, extract, from, full name, recipients)
        type Case<'a> = (
            &'a [&'a str],
            bool,
            bool,
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (
                &["bob@example.test"],
                false,
                false,
                None,
                None,
                &["bob@example.test"],
            ),
            // procmail's `!` with its default SENDMAILFLAGS
            (
                &["-oi", "carol@example.test"],
                true,
                false,
                None,
                None,
                &["carol@example.test"],
            ),
            (&["-i", "-t"], true, true, None, None, &[]),
            (&["-ti"], true, true, None, None, &[]),
            (&["-oi", "-t"], true, true, None, None, &[]),
            (
                &["-f", "a@x.test", "b"],
                false,
                false,
                Some("a@x.test"),
                None,
                &["b"],
            ),
            (
                &["-fa@x.test", "b"],
                false,
                false,
                Some("a@x.test"),
                None,
                &["b"],
            ),
            (
                &["-r", "a@x.test", "b"],
                false,
                false,
                Some("a@x.test"),
                None,
                &["b"],
            ),
            (
                &["-F", "Alice Example", "-f", "<>", "b"],
                false,
                false,
                Some("<>"),
                Some("Alice Example"),
                &["b"],
            ),
            (&["-FAlice", "b"], false, false, None, Some("Alice"), &["b"]),
            // vacation(1): sendmail -oi -f user recipient
            (
                &["-oi", "-f", "alice", "--", "-weird@x.test"],
                true,
                false,
                Some("alice"),
                None,
                &["-weird@x.test"],
            ),
            // the first non-option starts the recipients
            (&["bob", "-oi"], false, false, None, None, &["bob", "-oi"]),
            (
                &["-oem", "-oi", "a, b", "c"],
                true,
                false,
                None,
                None,
                &["a, b", "c"],
            ),
            (&["-OIgnoreDots=true", "a"], true, false, None, None, &["a"]),
            (&["-oiFalse", "a"], false, false, None, None, &["a"]),
            (
                &["-tif", "s@x.test"],
                true,
                true,
                Some("s@x.test"),
                None,
                &[],
            ),
        ];
        for (args, dots, t, from, name, want) in cases {
            let got = p(args);
            assert_eq!(got.ignore_dots, *dots, "{args:?}");
            assert_eq!(got.extract, *t, "{args:?}");
            assert_eq!(got.from.as_deref(), from.map(str::as_bytes), "{args:?}");
            assert_eq!(
                got.full_name.as_deref(),
                name.map(str::as_bytes),
                "{args:?}"
            );
            assert_eq!(rcpts(&got), *want, "{args:?}");
            assert_eq!(got.mode, Mode::Deliver, "{args:?}");
            assert!(got.warnings.is_empty(), "{args:?}: {:?}", got.warnings);
        }
        assert_eq!(p(&["-r", "x", "y"]).from_letter, 'r');
        assert_eq!(p(&["-f", "x", "y"]).from_letter, 'f');
    }

    #[test]
    fn modes_and_the_config_directory() {
        assert_eq!(p(&["-bp"]).mode, Mode::ListQueue);
        assert_eq!(p(&["-bm", "a"]).mode, Mode::Deliver);
        assert_eq!(p(&["-q"]).mode, Mode::FlushQueue);
        let q = p(&["-q30m"]);
        assert_eq!(q.mode, Mode::FlushQueue);
        assert_eq!(
            q.warnings,
            ["-q30m ignored: the queue is run once, all of it"]
        );
        let c = p(&["-C", "/etc/pr", "-bp"]);
        assert_eq!(c.config, Some(PathBuf::from("/etc/pr")));
        assert_eq!(c.mode, Mode::ListQueue);
        // -C followed by an option: no value (sendmail's default .cf).
        assert_eq!(p(&["-C", "-oi", "a"]).config, None);
        assert_eq!(p(&["-C/x", "a"]).config, Some(PathBuf::from("/x")));
        assert_eq!(
            p(&["--config", "/y", "a"]).config,
            Some(PathBuf::from("/y"))
        );
        assert_eq!(p(&["--config=/z", "a"]).config, Some(PathBuf::from("/z")));
    }

    #[test]
    fn dsn_options_are_kept() {
        let got = p(&["-R", "HDRS", "-V", "env-1", "-B8BITMIME", "a"]);
        assert_eq!(got.ret_headers, Some(true));
        assert_eq!(got.envid.as_deref(), Some(&b"env-1"[..]));
        assert_eq!(got.body_8bit, Some(true));
        assert_eq!(p(&["-Rfull", "-B", "7bit", "a"]).body_8bit, Some(false));
    }

    #[test]
    fn ignored_options_warn_and_the_run_goes_on() {
        let got = p(&[
            "-v", "-odi", "-oee", "-N", "never", "-X", "/tmp/log", "-Z", "-h", "3", "a",
        ]);
        assert_eq!(rcpts(&got), ["a"]);
        assert_eq!(
            got.warnings,
            [
                "-v ignored: postroom sendmail only queues the message",
                "-odi ignored: the message is queued and delivered by the server",
                "-oee ignored: errors are reported on stderr and by mail",
                "-N ignored: postroom does not keep DSN NOTIFY requests",
                "-X/tmp/log ignored",
                "unknown option -Z ignored",
                "-h ignored: hops are counted from Received: fields",
            ]
        );
        // Accepted silently: what we do anyway.
        assert!(
            p(&["-oem", "-odb", "-odq", "-m", "-U", "-G", "-e", "m", "a"])
                .warnings
                .is_empty()
        );
        assert_eq!(
            p(&["--frobnicate", "a"]).warnings,
            ["unknown option --frobnicate ignored"]
        );
    }

    #[test]
    fn usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["-bs"], "-bs is not supported: run `postroom smtpd`"),
            (&["-bd"], "-bd is not supported"),
            (&["-bi"], "-bi is not supported"),
            (&["-bv", "a"], "-bv is not supported"),
            (&["-bz"], "invalid operation mode z"),
            (&["-f"], "option requires an argument -- f"),
            (&["a", "b"][..0], ""),
            (
                &["-f", "a", "-r", "b", "c"],
                "more than one \"from\" person",
            ),
            (&["-R", "some", "a"], "invalid -R value `some`"),
            (&["-B", "binary", "a"], "invalid -B value `binary`"),
            (&["--config"], "option requires an argument -- config"),
        ];
        for (args, want) in cases {
            if want.is_empty() {
                assert!(parse(args).is_ok());
                continue;
            }
            let got = parse(args).expect_err(&format!("{args:?}")).to_string();
            assert!(got.starts_with(want), "{args:?}: {got}");
        }
    }
}
