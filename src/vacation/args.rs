//! The vacation(1) command line, as `postroom vacation` takes it.
//!
//! Owns turning arguments into [`Options`]; it reads no file and no
//! message. Written by hand like the sendmail parser in `cli::sendmail`:
//! vacation's options are getopt letters that bundle (`-jd`) and take
//! values glued or separate (`-aalias`, `-a alias`); `--` ends them. The
//! options are sendmail 8.18's vacation(1) (`a:C:df:Iijlm:R:r:s:t:Uxz`),
//! with SunOS/4.3BSD's `-t N[smhdw]` interval, which sendmail's parses
//! and ignores. An unknown option is a usage error (`EX_USAGE`), as it is
//! for vacation(1).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

/// What one `postroom vacation` run is asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-a ALIAS` (repeatable): other names mail to the user comes to.
    /// A bare name matches that local part at any domain, an address
    /// with `@` only that address.
    pub aliases: Vec<String>,
    /// `-C DIR`: the configuration directory (else `$POSTROOM_CONFIG`,
    /// else `/etc/postroom`); a file names its directory.
    pub config: Option<PathBuf>,
    /// `-d`: log to stderr instead of syslog.
    pub debug: bool,
    /// `-f FILE`: the database (default `~/.vacation.db`; a relative
    /// path is relative to the home directory).
    pub database: Option<PathBuf>,
    /// `-i` / `-I`: start a new, empty database (the interval given with
    /// `-r`/`-t` is kept in it).
    pub init: bool,
    /// `-j`: do not check that the user is a recipient in `To:`/`Cc:`.
    pub no_recipient_check: bool,
    /// `-l`: list the database.
    pub list: bool,
    /// `-m FILE`: the reply text (default `~/.vacation.msg`).
    pub message: Option<PathBuf>,
    /// `-R ADDR`: the address the reply comes from (its `From:`).
    pub return_addr: Option<String>,
    /// `-r DAYS` or `-t N[smhdw]`: the reply interval, stored in the
    /// database. `Some(None)` is "reply once only" (`-r 0` or a
    /// non-numeric `-r`, as vacation(1)).
    pub interval: Option<Option<Duration>>,
    /// `-s ADDR`: the sender to answer instead of the envelope sender.
    pub sender: Option<String>,
    /// `-x`: read addresses (or `@domain`) from stdin, one a line, never
    /// to be answered.
    pub exclude: bool,
    /// `-z`: the reply's envelope sender is `<>` (always so here).
    pub null_sender: bool,
    /// The login name: the user on vacation. Required unless `-i`, `-l`
    /// or `-x`.
    pub login: Option<String>,
}

/// A command line vacation(1) would refuse: exit `EX_USAGE` (64).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The usage line.
pub const USAGE: &str = "usage: postroom vacation [-a alias] [-C dir] [-d] [-f db] [-i] [-I] [-j] [-l] \
     [-m msg] [-R returnaddr] [-r interval] [-s address] [-t time] [-U] [-x] [-z] login";

/// Letters that take a value.
const WITH_VALUE: &[u8] = b"aCfmRrst";

/// Letters without one.
const FLAGS: &[u8] = b"dIijlUxz";

/// One day.
const DAY: u64 = 24 * 60 * 60;

/// Parses the arguments after the program name (or after `vacation` in
/// `postroom vacation ...`).
pub fn parse<S: AsRef<OsStr>>(args: &[S]) -> Result<Options, UsageError> {
    let mut o = Options::default();
    let mut i = 0;
    let mut rest: Vec<&[u8]> = Vec::new();
    while i < args.len() {
        let a = args[i].as_ref().as_bytes();
        i += 1;
        if a == b"--" {
            rest.extend(args[i..].iter().map(|a| a.as_ref().as_bytes()));
            break;
        }
        if a.starts_with(b"--") {
            // vacation(1) has no long options; `--help` gets the usage.
            return Err(UsageError(format!(
                "unknown option `{}`\n{USAGE}",
                String::from_utf8_lossy(a)
            )));
        }
        if a.len() < 2 || a[0] != b'-' {
            // getopt stops at the first operand.
            rest.push(a);
            rest.extend(args[i..].iter().map(|a| a.as_ref().as_bytes()));
            break;
        }
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            j += 1;
            if FLAGS.contains(&c) {
                match c {
                    b'd' => o.debug = true,
                    b'I' | b'i' => o.init = true,
                    b'j' => o.no_recipient_check = true,
                    b'l' => o.list = true,
                    b'x' => o.exclude = true,
                    b'z' => o.null_sender = true,
                    // -U: sendmail's "no passwd lookup"; we never need one
                    // for -f and -m given, and look HOME up otherwise.
                    _ => {}
                }
                continue;
            }
            if !WITH_VALUE.contains(&c) {
                return Err(UsageError(format!(
                    "unknown option `-{}`\n{USAGE}",
                    char::from(c).escape_default()
                )));
            }
            let value: Vec<u8> = if j < a.len() {
                let v = a[j..].to_vec();
                j = a.len();
                v
            } else if i < args.len() {
                i += 1;
                args[i - 1].as_ref().as_bytes().to_vec()
            } else {
                return Err(UsageError(format!(
                    "option `-{}` needs a value\n{USAGE}",
                    char::from(c)
                )));
            };
            let text = || {
                String::from_utf8(value.clone())
                    .map_err(|_| UsageError(format!("option `-{}`: not UTF-8", char::from(c))))
            };
            match c {
                b'a' => o.aliases.push(text()?),
                b'C' => o.config = Some(PathBuf::from(OsStr::from_bytes(&value))),
                b'f' => o.database = Some(PathBuf::from(OsStr::from_bytes(&value))),
                b'm' => o.message = Some(PathBuf::from(OsStr::from_bytes(&value))),
                b'R' => o.return_addr = Some(text()?),
                b's' => o.sender = Some(text()?),
                b'r' => o.interval = Some(days(&value)),
                b't' => o.interval = Some(Some(time(&value)?).filter(|d| !d.is_zero())),
                _ => unreachable!("every letter of WITH_VALUE is handled"),
            }
        }
    }
    match rest.as_slice() {
        [] if o.init || o.list || o.exclude => {}
        [] => return Err(UsageError(format!("no login name given\n{USAGE}"))),
        [login] => {
            let login = String::from_utf8(login.to_vec())
                .map_err(|_| UsageError("the login name is not UTF-8".into()))?;
            if login.is_empty() || login.contains(['@', '/', ' ', '\t', '\r', '\n']) {
                return Err(UsageError(format!("invalid login name `{login}`")));
            }
            o.login = Some(login);
        }
        more => {
            return Err(UsageError(format!(
                "{} login names given, one expected\n{USAGE}",
                more.len()
            )));
        }
    }
    Ok(o)
}

/// `-r`: whole days (its leading digits, as atol(3)); 0 or a value not
/// starting with a digit means once only (vacation(1): "infinite").
fn days(v: &[u8]) -> Option<Duration> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    let n: u64 = std::str::from_utf8(&v[..digits]).ok()?.parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(DAY)?)).filter(|d| !d.is_zero())
}

/// `-t N[smhdw]`: seconds, minutes, hours, days or weeks (4.3BSD and
/// SunOS vacation(1)); a bare number is days, as `-r`'s.
fn time(v: &[u8]) -> Result<Duration, UsageError> {
    let bad = || {
        UsageError(format!(
            "option `-t`: `{}` is not a number with s, m, h, d or w",
            String::from_utf8_lossy(v)
        ))
    };
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = std::str::from_utf8(&v[..digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let unit = match &v[digits..] {
        b"s" => 1,
        b"m" => 60,
        b"h" => 60 * 60,
        b"" | b"d" => DAY,
        b"w" => 7 * DAY,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.checked_mul(unit).ok_or_else(bad)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, UsageError> {
        parse(args)
    }

    #[test]
    fn options_bundle_and_take_values_glued_or_separate() {
        let o = p(&[
            "-jd",
            "-aallman",
            "-a",
            "info@x.test",
            "-f",
            "db",
            "-mmsg",
            "-z",
            "eric",
        ])
        .unwrap();
        assert!(o.no_recipient_check && o.debug && o.null_sender);
        assert_eq!(o.aliases, ["allman", "info@x.test"]);
        assert_eq!(o.database, Some(PathBuf::from("db")));
        assert_eq!(o.message, Some(PathBuf::from("msg")));
        assert_eq!(o.login.as_deref(), Some("eric"));
        assert_eq!(o.interval, None);
        let o = p(&[
            "-s",
            "a@b.test",
            "-R",
            "me@x.test",
            "-C",
            "/etc/p",
            "--",
            "eric",
        ])
        .unwrap();
        assert_eq!(o.sender.as_deref(), Some("a@b.test"));
        assert_eq!(o.return_addr.as_deref(), Some("me@x.test"));
        assert_eq!(o.config, Some(PathBuf::from("/etc/p")));
    }

    #[test]
    fn intervals_follow_vacation_1() {
        let want: &[(&[&str], Option<Option<u64>>)] = &[
            (&["-r", "7"], Some(Some(7 * DAY))),
            (&["-r1"], Some(Some(DAY))),
            (&["-r", "0"], Some(None)),
            (&["-r", "infinite"], Some(None)),
            (&["-t", "30s"], Some(Some(30))),
            (&["-t", "2h"], Some(Some(7200))),
            (&["-t", "3"], Some(Some(3 * DAY))),
            (&["-t", "1w"], Some(Some(7 * DAY))),
            (&["-t", "0m"], Some(None)),
        ];
        for (args, want) in want {
            let mut a = args.to_vec();
            a.push("u");
            let got = p(&a).unwrap().interval;
            assert_eq!(got, want.map(|o| o.map(Duration::from_secs)), "{args:?}");
        }
        assert!(p(&["-t", "5y", "u"]).is_err());
        assert!(p(&["-t", "x", "u"]).is_err());
    }

    #[test]
    fn the_login_is_required_unless_a_database_mode() {
        assert_eq!(
            p(&["-d"]).unwrap_err().0.lines().next(),
            Some("no login name given")
        );
        assert!(p(&["-i"]).unwrap().login.is_none());
        assert!(p(&["-l"]).unwrap().list);
        assert!(p(&["-x"]).unwrap().exclude);
        assert!(p(&["-I", "-r", "2"]).unwrap().init);
        assert!(p(&["a", "b"]).is_err());
        assert!(p(&["a@b"]).is_err());
    }

    #[test]
    fn unknown_options_and_missing_values_are_usage_errors() {
        let e = p(&["--help"]).unwrap_err();
        assert!(e.0.starts_with("unknown option `--help`\nusage: "), "{e}");
        let e = p(&["-q", "u"]).unwrap_err();
        assert!(e.0.starts_with("unknown option `-q`\nusage: "), "{e}");
        // After the login everything is an operand: two logins here.
        let e = p(&["u", "-f"]).unwrap_err();
        assert!(e.0.starts_with("2 login names given"), "{e}");
        let e = p(&["-f"]).unwrap_err();
        assert!(e.0.starts_with("option `-f` needs a value"), "{e}");
    }
}
