//! The maildrop: how a local submission (`postroom sendmail`) reaches the
//! queue without opening the spool.
//!
//! Owns the maildrop file format and the submitter's side of the hand-off:
//! [`drop_file`] writes `SPOOL/maildrop/.tmp-NAME`, fsyncs it, renames it to
//! `SPOOL/maildrop/NAME` and makes the rename durable. The spool's owner
//! turns each complete file into a queue entry ([`super::Spool::pickup`]).
//! Like Postfix's `postdrop`, the submitter never takes the spool's lock
//! (a running `postroom smtpd` holds it) and never touches `active/`.
//!
//! `maildrop/` is mode 1733 (made by [`super::Spool::open`]): anyone may
//! create a file there, nobody but the owner may list it, and the sticky
//! bit keeps users from removing or renaming each other's files. Files are
//! created 0600 and belong to their submitter: only they and root can read
//! them, so a server that does not run as root picks up only its own
//! user's submissions (the others wait, reported by every pickup).
//!
//! This module never opens a socket, never runs a program and never reads
//! the spool's other directories.
//!
//! # Format, version 1
//!
//! A header of ASCII lines, each ending in LF, in exactly this order, then
//! the message bytes (CRLF line ends, as the SMTP server queues them):
//!
//! ```text
//! postroom-maildrop 1
//! uid 1000
//! user alice
//! sender alice@mx.example.test
//! sender-set 1
//! trusted 0
//! hops 1
//! envid -
//! ret full
//! params BODY=8BITMIME
//! rcpt bob@example.test
//! rcpt carol@example.test
//! size 1234
//! end
//! ```
//!
//! Values are escaped as in the queue's envelope files (`%XX` for spaces,
//! controls, `%` and non-ASCII bytes; `-` for empty). `uid` and `user` say
//! who submitted it, `sender-set` whether the sender came from `-f`, and
//! `trusted` whether the submitter was allowed to set it without a warning;
//! pickup checks `uid` and `trusted` against the file's owner and never
//! takes the header's word for who submitted it. `size` is the number of
//! message bytes after `end`; anything else is a parse error, so a cut-off
//! or hand-edited file is moved to `corrupt/`, never queued half.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::entry::{Address, Envelope, esc, unesc};
use super::spool::QueueId;

/// The first line of a maildrop file: the format and its version.
pub const MAGIC: &str = "postroom-maildrop 1";

/// The name of the maildrop directory in the spool.
pub const DIR: &str = "maildrop";

/// The prefix of a file still being written.
pub const TMP_PREFIX: &str = ".tmp-";

/// One local submission, as the submitter writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Submission {
    /// The submitting user's uid (checked against the file's owner).
    pub uid: u32,
    /// The submitting user's login name, for the log and the listing.
    pub user: String,
    /// Envelope sender without angle brackets; empty for `<>`.
    pub sender: String,
    /// Whether the sender was given with `-f`/`-r`.
    pub sender_set: bool,
    /// Whether the submitter was trusted to set it (root or the spool's
    /// owner); an untrusted `-f` got an `X-Authentication-Warning:`.
    pub trusted: bool,
    /// `Received:` fields in the message, ours included.
    pub hops: u32,
    /// `-V envid` (RFC 3461 `ENVID`).
    pub envid: Option<String>,
    /// `-R hdrs`: a DSN returns only the header.
    pub ret_headers: bool,
    /// `BODY=8BITMIME`, `SMTPUTF8`, as the SMTP server records them.
    pub params: String,
    /// The recipients, in order, without duplicates.
    pub recipients: Vec<String>,
    /// The message, CRLF line ends, our trace fields included.
    pub message: Vec<u8>,
}

/// A maildrop file that is not in the format: the line (1-based) and what
/// is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FormatError {
    /// Line number from 1; the line after the last for a cut-off header.
    pub line: usize,
    /// Lowercase description.
    pub message: String,
}

impl Submission {
    /// The file's bytes: header, then message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC}");
        let _ = writeln!(s, "uid {}", self.uid);
        let _ = writeln!(s, "user {}", esc(&self.user));
        let _ = writeln!(s, "sender {}", esc(&self.sender));
        let _ = writeln!(s, "sender-set {}", u8::from(self.sender_set));
        let _ = writeln!(s, "trusted {}", u8::from(self.trusted));
        let _ = writeln!(s, "hops {}", self.hops);
        let _ = writeln!(s, "envid {}", esc(self.envid.as_deref().unwrap_or("")));
        let _ = writeln!(s, "ret {}", if self.ret_headers { "hdrs" } else { "full" });
        let _ = writeln!(s, "params {}", esc(&self.params));
        for r in &self.recipients {
            let _ = writeln!(s, "rcpt {}", esc(r));
        }
        let _ = writeln!(s, "size {}", self.message.len());
        s.push_str("end\n");
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.message);
        out
    }

    /// Parses a maildrop file strictly (module docs).
    pub fn parse(data: &[u8]) -> Result<Submission, FormatError> {
        let mut p = Lines {
            data,
            pos: 0,
            line: 0,
        };
        let magic = p.next()?;
        if magic != MAGIC.as_bytes() {
            return Err(p.err(format!(
                "expected `{MAGIC}`, found `{}`",
                String::from_utf8_lossy(&magic[..magic.len().min(40)])
            )));
        }
        let uid = p.number("uid")?;
        let user = p.value("user")?;
        let sender = p.value("sender")?;
        let sender_set = p.flag("sender-set")?;
        let trusted = p.flag("trusted")?;
        let hops = p.number("hops")?;
        let envid = Some(p.value("envid")?).filter(|s| !s.is_empty());
        let ret_headers = match p.token("ret")?.as_slice() {
            b"hdrs" => true,
            b"full" => false,
            other => {
                return Err(p.err(format!(
                    "`ret` must be `full` or `hdrs`, not `{}`",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        let params = p.value("params")?;
        let mut recipients = Vec::new();
        let (size, size_line): (u64, usize) = loop {
            let line = p.next()?;
            if let Some(rest) = line.strip_prefix(b"rcpt ") {
                let r = unesc(rest).map_err(|m| p.err(format!("`rcpt`: {m}")))?;
                if r.is_empty() {
                    return Err(p.err("`rcpt` is empty".to_string()));
                }
                recipients.push(r);
            } else if let Some(rest) = line.strip_prefix(b"size ") {
                let n = number(rest).ok_or_else(|| p.err("`size`: bad number".to_string()))?;
                break (n, p.line);
            } else {
                return Err(p.err(format!(
                    "expected `rcpt` or `size`, found `{}`",
                    String::from_utf8_lossy(line.split(|&b| b == b' ').next().unwrap_or(b""))
                )));
            }
        };
        if recipients.is_empty() {
            return Err(p.err("no `rcpt` line".to_string()));
        }
        if p.next()? != b"end" {
            return Err(p.err("expected `end`".to_string()));
        }
        let message = &data[p.pos..];
        if message.len() as u64 != size {
            return Err(FormatError {
                line: size_line,
                message: format!("message has {} octets, `size` says {size}", message.len()),
            });
        }
        Ok(Submission {
            uid,
            user,
            sender,
            sender_set,
            trusted,
            hops,
            envid,
            ret_headers,
            params,
            recipients,
            message: message.to_vec(),
        })
    }

    /// The queue envelope of this submission by `owner` (the file's owner
    /// uid, which is what counts).
    pub fn envelope(&self, owner: u32) -> Envelope {
        Envelope {
            sender: self.sender.clone(),
            recipients: self.recipients.iter().map(Address::new).collect(),
            hops: self.hops,
            client: format!("local (uid {owner} {})", self.user),
            params: self.params.clone(),
            envid: self.envid.clone(),
            ret_headers: self.ret_headers,
        }
    }
}

fn number<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The header's lines, one at a time; `pos` is where the next begins.
struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn err(&self, message: String) -> FormatError {
        FormatError {
            line: self.line,
            message,
        }
    }

    fn next(&mut self) -> Result<&'a [u8], FormatError> {
        self.line += 1;
        let rest = &self.data[self.pos..];
        // A header line is short; a missing LF in the first 4 KiB is a
        // cut-off or foreign file, not a reason to scan a huge one.
        match rest.iter().take(4096).position(|&b| b == b'\n') {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(self.err("cut off: no line end".to_string())),
        }
    }

    /// `key token`: the token, still escaped.
    fn token(&mut self, key: &str) -> Result<Vec<u8>, FormatError> {
        let line = self.next()?;
        let got = line.split(|&b| b == b' ').next().unwrap_or(b"");
        if got != key.as_bytes() {
            return Err(self.err(format!(
                "expected `{key}`, found `{}`",
                String::from_utf8_lossy(got)
            )));
        }
        match line[key.len()..].strip_prefix(b" ") {
            Some(t) if !t.is_empty() && !t.contains(&b' ') => Ok(t.to_vec()),
            _ => Err(self.err(format!("`{key}` must have exactly one value"))),
        }
    }

    fn value(&mut self, key: &str) -> Result<String, FormatError> {
        let t = self.token(key)?;
        unesc(&t).map_err(|m| self.err(format!("`{key}`: {m}")))
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, FormatError> {
        let t = self.token(key)?;
        number(&t).ok_or_else(|| self.err(format!("`{key}`: bad number")))
    }

    fn flag(&mut self, key: &str) -> Result<bool, FormatError> {
        match self.token(key)?.as_slice() {
            b"0" => Ok(false),
            b"1" => Ok(true),
            _ => Err(self.err(format!("`{key}` must be 0 or 1"))),
        }
    }
}

/// Why a submission could not be dropped. The submitter exits
/// `EX_TEMPFAIL` for every one of them, so its caller keeps the message.
#[derive(Debug, thiserror::Error)]
#[error("maildrop: {op} {}: {source}", path.display())]
pub struct DropError {
    /// What was being done.
    pub op: &'static str,
    /// On which file or directory.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

fn drop_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DropError {
    let path = path.to_path_buf();
    move |source| DropError { op, path, source }
}

/// Writes `drop` into `spool/maildrop/` and returns its name (a
/// [`QueueId`]-shaped name made at `now`, also used in the message's
/// `Received:` field by the caller that chose it).
///
/// The bytes go to `.tmp-NAME`, which is fsync'ed and renamed to `NAME`;
/// then the directory is fsync'ed, so when this returns the submission
/// survives a crash and the caller may exit 0. A submitter that is not
/// the spool's owner cannot open `maildrop/` (mode 1733 has no read bit
/// for it) to fsync it; it then flushes the whole file system with
/// `syncfs(2)`, which also makes the rename durable.
pub fn drop_file(spool: &Path, name: &QueueId, drop: &Submission) -> Result<(), DropError> {
    let dir = spool.join(DIR);
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let target = dir.join(name.as_str());
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(drop_err("create", &tmp))?;
        f.write_all(&drop.to_bytes())
            .map_err(drop_err("write", &tmp))?;
        f.sync_all().map_err(drop_err("fsync", &tmp))?;
        fs::rename(&tmp, &target).map_err(drop_err("rename", &target))?;
        match File::open(&dir) {
            Ok(d) => d.sync_all().map_err(drop_err("fsync directory", &dir)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                // SAFETY: syncfs only reads the descriptor, which `f` owns
                // and keeps open for the call.
                if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
                    Ok(())
                } else {
                    Err(drop_err("syncfs", &dir)(io::Error::last_os_error()))
                }
            }
            Err(e) => Err(drop_err("open directory", &dir)(e)),
        }
    })();
    if result.is_err() {
        // Not renamed: nobody will ever pick it up; renamed but not synced:
        // it stays (the spool owner takes it), the caller still sees a
        // failure and keeps its copy: a duplicate, never a loss.
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Submission {
        Submission {
            uid: 1000,
            user: "alice".into(),
            sender: "alice@mx.example.test".into(),
            sender_set: true,
            trusted: false,
            hops: 1,
            envid: Some("x y".into()),
            ret_headers: true,
            params: "BODY=8BITMIME".into(),
            recipients: vec!["bob@example.test".into(), "\"a b\"@example.test".into()],
            message: b"Subject: hi\r\n\r\nbody\r\nend\r\n".to_vec(),
        }
    }

    #[test]
    fn round_trips_and_the_text_is_as_documented() {
        let d = sample();
        let bytes = d.to_bytes();
        let want = "postroom-maildrop 1\nuid 1000\nuser alice\nsender alice@mx.example.test\n\
                    sender-set 1\ntrusted 0\nhops 1\nenvid x%20y\nret hdrs\nparams BODY=8BITMIME\n\
                    rcpt bob@example.test\nrcpt \"a%20b\"@example.test\nsize 26\nend\n\
                    Subject: hi\r\n\r\nbody\r\nend\r\n";
        assert_eq!(String::from_utf8_lossy(&bytes), want);
        assert_eq!(Submission::parse(&bytes), Ok(d));
        let null = Submission {
            sender: String::new(),
            envid: None,
            ..sample()
        };
        assert_eq!(Submission::parse(&null.to_bytes()), Ok(null));
    }

    #[test]
    fn every_defect_is_an_error_naming_its_line() {
        let good = String::from_utf8(sample().to_bytes()).unwrap();
        let cases: &[(&str, &str, &str)] = &[
            (
                "postroom-maildrop 1",
                "postroom-maildrop 2",
                "line 1: expected",
            ),
            ("uid 1000", "uid x", "line 2: `uid`: bad number"),
            (
                "user alice\n",
                "",
                "line 3: expected `user`, found `sender`",
            ),
            ("trusted 0", "trusted 2", "line 6: `trusted` must be 0 or 1"),
            ("ret hdrs", "ret some", "line 9: `ret` must be"),
            (
                "rcpt bob@example.test\n",
                "rcpt \n",
                "line 11: `rcpt` is empty",
            ),
            (
                "size 26",
                "size 25",
                "line 13: message has 26 octets, `size` says 25",
            ),
            (
                "size 26",
                "size 27",
                "message has 26 octets, `size` says 27",
            ),
            ("end\n", "fin\n", "line 14: expected `end`"),
            (
                "rcpt bob@example.test\nrcpt \"a%20b\"@example.test\n",
                "",
                "line 11: no `rcpt` line",
            ),
            (
                "params BODY",
                "params BODY EXTRA",
                "line 10: `params` must have exactly one value",
            ),
        ];
        for (from, to, want) in cases {
            assert!(good.contains(from), "{from}");
            let bad = good.replacen(from, to, 1);
            let got = Submission::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(got.contains(want), "{from} -> {to}: {got}");
        }
        let cut = &good.as_bytes()[..40];
        assert!(
            Submission::parse(cut)
                .unwrap_err()
                .to_string()
                .contains("cut off")
        );
        assert!(Submission::parse(b"").is_err());
    }

    #[test]
    fn the_envelope_names_the_owner_not_the_header() {
        let env = sample().envelope(1234);
        assert_eq!(env.client, "local (uid 1234 alice)");
        assert_eq!(env.recipients[1].address, "\"a b\"@example.test");
        assert!(env.ret_headers);
        assert_eq!(env.envid.as_deref(), Some("x y"));
    }
}
