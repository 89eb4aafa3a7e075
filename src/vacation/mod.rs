//! `postroom vacation`: the "I am away" auto-responder with vacation(1)'s
//! command line, run from an rcfile (`:0 c` + `| postroom vacation
//! carol`) or an alias or `.forward` pipe (`"|postroom vacation
//! alice"`), the message on stdin.
//!
//! Owns the whole run: the command line (`args`), whether a message gets
//! a reply at all (`decide`: RFC 3834 and vacation(1), mta-semantics
//! D.1), whether this sender was answered lately (`db`, a locked text
//! file per user), the reply (`reply`, D.2), and handing it to local
//! submission ([`crate::submit::submit_null_sender`]) with the envelope
//! sender `<>`, so a failing reply cannot bounce back.
//!
//! It never opens the spool or a socket and never delivers: the reply is
//! a maildrop file like any `postroom sendmail`. It reads all of stdin
//! whatever it decides, and a decision not to reply exits 0, so the pipe
//! delivery never bounces; every failure once a reply is due exits
//! `EX_TEMPFAIL` (75), so the caller keeps the message, and the sender
//! is recorded only once the reply is on disk. A bad command line is
//! `EX_USAGE` (64), as for vacation(1).

pub mod args;
pub mod db;
pub mod decide;
pub mod reply;

use std::ffi::{CString, OsStr, OsString};
use std::io::{BufRead as _, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::status::sysexits::{EX_TEMPFAIL, EX_USAGE};
use crate::submit::{self, SubmitError};
use args::Options;
use db::{Database, Stamp};
use decide::{Incoming, Me};

/// The database's name in the home directory (vacation(1)'s; the format
/// is ours, see [`db`]).
pub const DEFAULT_DB: &str = ".vacation.db";

/// The message file's name in the home directory.
pub const DEFAULT_MSG: &str = ".vacation.msg";

/// How much of the message is kept: its header (the rest is read and
/// dropped). `max_header_size`'s default.
const MAX_HEADER: usize = 256 * 1024;

/// Whether a program named `arg0` acts as vacation: its file name is
/// `vacation` (a symlink to `postroom`).
pub fn is_vacation_name(arg0: &OsStr) -> bool {
    Path::new(arg0).file_name().unwrap_or(arg0) == "vacation"
}

/// `vacation ARGS`: parses, acts, logs, returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let opts = match args::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("postroom vacation: {e}");
            return EX_USAGE;
        }
    };
    let log = Log { debug: opts.debug };
    if opts.init || opts.list || opts.exclude {
        return admin(&opts, &log);
    }
    // Read first: whatever happens next, the caller has delivered the
    // whole message to us (vacation(1) eatmsg(): no EPIPE for it).
    let header = match read_header(std::io::stdin().lock()) {
        Ok(h) => h,
        Err(e) => {
            log.error(&format!("cannot read the message from standard input: {e}"));
            return EX_TEMPFAIL;
        }
    };
    respond(&opts, &header, SystemTime::now(), &log)
}

/// `-i`, `-x`, `-l` (in that order when given together, as vacation(1)
/// truncates before it lists), and `-r`/`-t` stored.
fn admin(opts: &Options, log: &Log) -> i32 {
    let path = match paths(opts).0 {
        Ok(p) => p,
        Err(e) => {
            log.error(&e);
            return EX_TEMPFAIL;
        }
    };
    let opened = if opts.init {
        Database::create(&path)
    } else {
        Database::open(&path)
    };
    let mut db = match opened {
        Ok(db) => db,
        Err(e) => {
            log.error(&e.to_string());
            return EX_TEMPFAIL;
        }
    };
    if let Some(i) = opts.interval {
        db.set_interval(i);
    }
    if opts.exclude {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if !l.trim().is_empty() => db.exclude(l.trim()),
                Ok(_) => {}
                Err(e) => {
                    log.error(&format!("cannot read addresses from standard input: {e}"));
                    return EX_TEMPFAIL;
                }
            }
        }
    }
    let now = SystemTime::now();
    if (opts.init || opts.exclude || opts.interval.is_some())
        && let Err(e) = db.save(now)
    {
        log.error(&e.to_string());
        return EX_TEMPFAIL;
    }
    if opts.list {
        print!("{}", listing(&db));
    }
    0
}

/// `-l`: one line per address, vacation(1)'s layout: the address in 40
/// columns, then the time of the last reply or `(exclusion)`.
pub fn listing(db: &Database) -> String {
    let mut out = String::new();
    for (addr, stamp) in db.entries() {
        let when = match stamp {
            Stamp::Excluded => "(exclusion)".to_string(),
            Stamp::At(t) => {
                let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t);
                chrono::DateTime::<chrono::Local>::from(t)
                    .format(crate::message::CTIME)
                    .to_string()
            }
        };
        out.push_str(&format!("{addr:<40} {when}\n"));
    }
    out
}

/// One message: decide, look the sender up, reply, record. `header` is
/// the start of the message (its header and perhaps some of the body).
pub fn respond(opts: &Options, header: &[u8], now: SystemTime, log: &Log) -> i32 {
    let Some(login) = opts.login.as_deref() else {
        log.error("no login name given");
        return EX_USAGE;
    };
    let inc = Incoming::parse(header);
    let env_sender = std::env::var("SENDER").ok();
    let sender = decide::envelope_sender(&inc, opts.sender.as_deref(), env_sender.as_deref());
    let me = Me {
        login,
        aliases: &opts.aliases,
        check_recipient: !opts.no_recipient_check,
    };
    let sender = match decide::decide(&inc, sender, &me) {
        Ok(s) => s,
        Err(skip) => {
            log.note(&format!("{login}: no reply: {skip}"));
            return 0;
        }
    };
    let (db_path, msg_path) = paths(opts);
    let (db_path, msg_path) = match (db_path, msg_path) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => {
            log.error(&e);
            return EX_TEMPFAIL;
        }
    };
    // Held until we return: the look-up, the reply and the record are one
    // step for every other delivery to this user.
    let mut db = match Database::open(&db_path) {
        Ok(db) => db,
        Err(e) => {
            log.error(&e.to_string());
            return EX_TEMPFAIL;
        }
    };
    let mut changed = false;
    if let Some(i) = opts.interval
        && db.interval() != i
    {
        db.set_interval(i);
        changed = true;
    }
    if db.recent(&sender, now) {
        log.note(&format!("{login}: no reply: {sender} was answered already"));
        if changed && let Err(e) = db.save(now) {
            log.error(&e.to_string());
        }
        return 0;
    }
    let dir = submit::config_dir(opts.config.as_deref(), std::env::var_os(submit::CONFIG_ENV));
    let (settings, diags, _) = crate::smtp::settings::load(&dir);
    if let Some(d) = diags
        .iter()
        .find(|d| d.severity == crate::diag::Severity::Error)
    {
        log.error(&format!(
            "{}: {}",
            dir.join(crate::smtp::settings::FILE).display(),
            d.message
        ));
        return EX_TEMPFAIL;
    }
    let text = match std::fs::read(&msg_path) {
        Ok(t) => t,
        Err(e) => {
            log.error(&format!(
                "cannot read the message file {}: {e}",
                msg_path.display()
            ));
            return EX_TEMPFAIL;
        }
    };
    let from = opts
        .return_addr
        .clone()
        .unwrap_or_else(|| format!("{login}@{}", settings.hostname));
    let local = chrono::DateTime::<chrono::Local>::from(now);
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let message_id = format!(
        "<{}.{}.{nanos:x}.vacation@{}>",
        local.format("%Y%m%d%H%M%S"),
        std::process::id(),
        settings.hostname
    );
    let date = local.format(crate::message::RFC5322_DATE).to_string();
    let bytes = reply::build(&reply::Reply {
        from: &from,
        to: &sender,
        original: &inc,
        text: &text,
        date: &date,
        message_id: &message_id,
    });
    match submit::submit_null_sender(&dir, &settings, std::slice::from_ref(&sender), &bytes) {
        Ok(()) => {}
        Err(e @ (SubmitError::Usage(_) | SubmitError::NoRecipients)) => {
            // The sender cannot be written to: no retry would help.
            log.note(&format!("{login}: no reply: {e}"));
            return 0;
        }
        Err(e) => {
            log.error(&format!("{login}: cannot send the reply to {sender}: {e}"));
            return EX_TEMPFAIL;
        }
    }
    db.record(&sender, now);
    if let Err(e) = db.save(now) {
        // The reply is queued: exit 0, or the caller would deliver again
        // and we would answer twice.
        log.error(&format!("{e} (the reply to {sender} was sent)"));
    }
    log.info(&format!("{login}: replied to {sender}"));
    0
}

/// The database and message file paths: `-f`/`-m`, relative ones in the
/// home directory (vacation(1)), else the defaults there.
fn paths(opts: &Options) -> (Result<PathBuf, String>, Result<PathBuf, String>) {
    let home = home_dir(opts.login.as_deref());
    let resolve = |given: Option<&PathBuf>, default: &str| {
        let rel = match given {
            Some(p) if p.is_absolute() => return Ok(p.clone()),
            Some(p) => p.clone(),
            None => PathBuf::from(default),
        };
        match &home {
            Some(h) => Ok(h.join(rel)),
            None => Err(format!(
                "no home directory for {} (HOME is not set): give -f and -m as absolute paths",
                opts.login.as_deref().unwrap_or("this user")
            )),
        }
    };
    (
        resolve(opts.database.as_ref(), DEFAULT_DB),
        resolve(opts.message.as_ref(), DEFAULT_MSG),
    )
}

/// `$HOME` (what procmail and `deliver` set for the user, virtual users
/// included), else the login's passwd entry, else the real uid's.
fn home_dir(login: Option<&str>) -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    login
        .and_then(|l| nix::unistd::User::from_name(l).ok().flatten())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
        })
        .map(|u| u.dir)
}

/// Reads `r` to its end, keeping the first 256 KiB (the header, and
/// perhaps the start of the body).
pub fn read_header(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    r.by_ref().take(MAX_HEADER as u64).read_to_end(&mut kept)?;
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(kept)
}

/// Where messages go: with `-d` stderr, else syslog (facility mail);
/// errors go to stderr as well, where procmail's log and the queue
/// runner's report find them.
#[derive(Clone, Copy, Debug)]
pub struct Log {
    /// `-d`.
    pub debug: bool,
}

impl Log {
    /// A decision not to reply: stderr with `-d`, else syslog's debug
    /// level (vacation(1) says nothing).
    pub fn note(&self, m: &str) {
        self.at(libc::LOG_DEBUG, m);
    }

    /// A reply sent.
    pub fn info(&self, m: &str) {
        self.at(libc::LOG_INFO, m);
    }

    /// A failure.
    pub fn error(&self, m: &str) {
        if !self.debug {
            eprintln!("postroom vacation: {m}");
        }
        self.at(libc::LOG_ERR, m);
    }

    fn at(&self, priority: libc::c_int, m: &str) {
        if self.debug {
            eprintln!("postroom vacation: {m}");
            return;
        }
        static OPEN: std::sync::Once = std::sync::Once::new();
        OPEN.call_once(|| {
            // SAFETY: a static NUL-terminated ident; openlog keeps the
            // pointer, which lives for the whole program.
            unsafe { libc::openlog(c"postroom-vacation".as_ptr(), libc::LOG_PID, libc::LOG_MAIL) }
        });
        let Ok(c) = CString::new(m.replace('\0', "?")) else {
            return;
        };
        // SAFETY: a constant "%s" format with one valid C string.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_name_vacation_selects_this_command_line() {
        assert!(is_vacation_name(OsStr::new("/usr/bin/vacation")));
        assert!(is_vacation_name(OsStr::new("vacation")));
        assert!(!is_vacation_name(OsStr::new("/usr/bin/postroom")));
        assert!(!is_vacation_name(OsStr::new("vacation.sendmail")));
    }

    #[test]
    fn read_header_reads_everything_and_keeps_the_start() {
        let big = vec![b'x'; MAX_HEADER * 3];
        let mut cursor = std::io::Cursor::new(big);
        let got = read_header(&mut cursor).unwrap();
        assert_eq!(got.len(), MAX_HEADER);
        assert_eq!(cursor.position() as usize, MAX_HEADER * 3, "drained");
    }

    #[test]
    fn relative_paths_are_in_the_home_directory() {
        let o = Options {
            database: Some(PathBuf::from("/abs/db")),
            message: Some(PathBuf::from("away.txt")),
            login: Some("nobody-here-xyz".into()),
            ..Options::default()
        };
        let (d, m) = paths(&o);
        assert_eq!(d.unwrap(), PathBuf::from("/abs/db"));
        let m = m.unwrap();
        assert!(
            m.ends_with("away.txt") && m.is_absolute(),
            "{}",
            m.display()
        );
    }

    #[test]
    fn listing_shows_times_and_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(&dir.path().join("db")).unwrap();
        db.exclude("@quiet.test");
        db.record("bob@x.test", SystemTime::UNIX_EPOCH);
        let l = listing(&db);
        let lines: Vec<&str> = l.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("{:<40} (exclusion)", "@quiet.test"));
        assert!(lines[1].starts_with(&format!("{:<40} ", "bob@x.test")));
        assert!(
            lines[1].ends_with(" 1970") || lines[1].ends_with(" 1969"),
            "{l}"
        );
    }
}
