//! The vacation database: who was answered when, the senders never to
//! answer, and the reply interval; one small text file per user.
//!
//! Owns the file format, its lock and its atomic replacement. It never
//! decides whether a message deserves a reply (`decide`) and never sends
//! one; it reads the clock only through the `now` its callers pass.
//!
//! # Format, version 1
//!
//! ```text
//! postroom-vacation 1
//! interval 604800
//! at 1795000000 bob@client.test
//! exclude @example.test
//! ```
//!
//! The first line names the format. `interval` is the reply interval in
//! seconds, or `once` (reply at most once per sender, ever); without the
//! line it is a week (vacation(1)'s default). Each `at` line is the last
//! reply to a sender (seconds since the epoch), each `exclude` line an
//! address (or `@domain`) never to answer (`-x`). Addresses are
//! lowercase and escaped as `%XX` for spaces, `%`, control characters
//! and non-ASCII bytes. sendmail's vacation keeps the same facts in a
//! Berkeley DB; a file in that format is refused with a hint to run
//! `-i`, never overwritten unasked.
//!
//! # Concurrency
//!
//! [`Database::open`] takes an exclusive `flock` on the file and keeps
//! it until the `Database` is dropped; the caller holds it across the
//! decision, the submission of the reply and [`Database::save`], so two
//! deliveries at once cannot both reply. `save` writes `FILE.new`,
//! fsyncs it and renames it over the file, so a crash leaves the old or
//! the new database, never half of one. A process that waited for the
//! lock while the file was replaced finds that its descriptor is no
//! longer the file at the path and opens it again.

use std::collections::BTreeMap;

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first line of a database file.
pub const MAGIC: &str = "postroom-vacation 1";

/// vacation(1)'s default interval: one week.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What the database holds for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// Answered at this many seconds since the epoch.
    At(u64),
    /// Never answered (`-x`).
    Excluded,
}

/// A database error: what failed, on which file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened, locked, read or written.
    #[error("vacation database {path}: cannot {op}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not in the format.
    #[error("vacation database {path}: line {line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// Lowercase description.
        message: String,
    },
}

/// An open, locked database.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    /// The locked file; dropping it unlocks.
    _lock: Flock<File>,
    /// `None`: once only.
    interval: Option<Duration>,
    entries: BTreeMap<String, Stamp>,
}

impl Database {
    /// Opens (creating it empty, mode 0600, if missing) and locks the
    /// database at `path`, then reads it. Blocks while another process
    /// holds it.
    pub fn open(path: &Path) -> Result<Database, DbError> {
        Database::open_with(path, false)
    }

    /// Starts a new, empty database at `path` (`-i`): locked as
    /// [`Database::open`] does, whatever was there forgotten (the next
    /// [`Database::save`] replaces it).
    pub fn create(path: &Path) -> Result<Database, DbError> {
        Database::open_with(path, true)
    }

    fn open_with(path: &Path, fresh: bool) -> Result<Database, DbError> {
        let io = |op: &'static str| {
            move |source| DbError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        // A bounded number of tries: each retry means another process
        // replaced the file while we waited, which cannot go on forever.
        for _ in 0..1000 {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(io("open"))?;
            let lock = Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| io("lock")(std::io::Error::from(e)))?;
            let held = lock.metadata().map_err(io("stat"))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
                _ => continue,
            }
            let mut data = Vec::new();
            if !fresh {
                (&*lock).read_to_end(&mut data).map_err(io("read"))?;
            }
            let mut db = Database {
                path: path.to_path_buf(),
                _lock: lock,
                interval: Some(DEFAULT_INTERVAL),
                entries: BTreeMap::new(),
            };
            db.parse(&data)?;
            return Ok(db);
        }
        Err(io("lock")(std::io::Error::other(
            "the file keeps being replaced",
        )))
    }

    fn parse(&mut self, data: &[u8]) -> Result<(), DbError> {
        if data.is_empty() {
            return Ok(());
        }
        let err = |line: usize, message: String| DbError::Format {
            path: self.path.clone(),
            line,
            message,
        };
        let mut lines = data.split(|&b| b == b'\n').enumerate();
        match lines.next() {
            Some((_, m)) if m == MAGIC.as_bytes() => {}
            _ => {
                return Err(err(
                    1,
                    format!(
                        "not a postroom vacation database (no `{MAGIC}` line); \
                         `postroom vacation -i` starts a new one"
                    ),
                ));
            }
        }
        for (n, line) in lines {
            let n = n + 1;
            if line.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(line).map_err(|_| err(n, "not ASCII".into()))?;
            let mut words = text.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("interval"), Some("once"), None) => self.interval = None,
                (Some("interval"), Some(s), None) => {
                    let secs: u64 = s
                        .parse()
                        .map_err(|_| err(n, format!("bad interval `{s}`")))?;
                    self.interval = Some(Duration::from_secs(secs)).filter(|d| !d.is_zero());
                }
                (Some("at"), Some(t), Some(a)) => {
                    let t: u64 = t.parse().map_err(|_| err(n, format!("bad time `{t}`")))?;
                    let a = unesc(a).ok_or_else(|| err(n, "bad address escape".into()))?;
                    self.entries.insert(a, Stamp::At(t));
                }
                (Some("exclude"), Some(a), None) => {
                    let a = unesc(a).ok_or_else(|| err(n, "bad address escape".into()))?;
                    self.entries.insert(a, Stamp::Excluded);
                }
                _ => return Err(err(n, format!("unknown line `{}`", text.escape_default()))),
            }
        }
        Ok(())
    }

    /// The reply interval; `None` is once only.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Sets the reply interval (`-r`, `-t`); `None` is once only.
    pub fn set_interval(&mut self, interval: Option<Duration>) {
        self.interval = interval;
    }

    /// Whether `sender` must not be answered now: excluded (itself or
    /// its `@domain`), answered within the interval, or answered ever
    /// when the interval is once only (vacation(1) recent()).
    pub fn recent(&self, sender: &str, now: SystemTime) -> bool {
        let key = sender.to_ascii_lowercase();
        let domain = key.rfind('@').map(|at| key[at..].to_string());
        let now = secs(now);
        [Some(key), domain].into_iter().flatten().any(|k| {
            match (self.entries.get(&k), self.interval) {
                (None, _) => false,
                (Some(Stamp::Excluded), _) | (Some(Stamp::At(_)), None) => true,
                (Some(Stamp::At(t)), Some(i)) => t.saturating_add(i.as_secs()) > now,
            }
        })
    }

    /// Records a reply to `sender` at `now` (an exclusion stays).
    pub fn record(&mut self, sender: &str, now: SystemTime) {
        let key = sender.to_ascii_lowercase();
        if self.entries.get(&key) != Some(&Stamp::Excluded) {
            self.entries.insert(key, Stamp::At(secs(now)));
        }
    }

    /// Excludes `addr` (or `@domain`) from replies (`-x`).
    pub fn exclude(&mut self, addr: &str) {
        self.entries
            .insert(addr.to_ascii_lowercase(), Stamp::Excluded);
    }

    /// Every entry, in address order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Stamp)> {
        self.entries.iter().map(|(a, s)| (a.as_str(), *s))
    }

    /// The file's bytes. Replies older than the interval are left out:
    /// they no longer stop a reply, and the file stays small.
    pub fn to_bytes(&self, now: SystemTime) -> Vec<u8> {
        let now = secs(now);
        let mut s = format!("{MAGIC}\n");
        match self.interval {
            None => s.push_str("interval once\n"),
            Some(i) => s.push_str(&format!("interval {}\n", i.as_secs())),
        }
        for (a, stamp) in &self.entries {
            match (stamp, self.interval) {
                (Stamp::Excluded, _) => s.push_str(&format!("exclude {}\n", esc(a))),
                (Stamp::At(t), Some(i)) if t.saturating_add(i.as_secs()) <= now => {}
                (Stamp::At(t), _) => s.push_str(&format!("at {t} {}\n", esc(a))),
            }
        }
        s.into_bytes()
    }

    /// Writes the database: `FILE.new`, fsync, rename over `FILE`, fsync
    /// of the directory. The lock is still held.
    pub fn save(&self, now: SystemTime) -> Result<(), DbError> {
        let io = |op: &'static str| {
            move |source| DbError::Io {
                op,
                path: self.path.clone(),
                source,
            }
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io("create the new copy"))?;
        f.write_all(&self.to_bytes(now))
            .and_then(|()| f.sync_all())
            .map_err(io("write the new copy"))?;
        std::fs::rename(&tmp, &self.path).map_err(io("replace"))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync the directory of"))?;
        Ok(())
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `%XX` for spaces, `%`, controls and non-ASCII bytes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b <= b' ' || b == b'%' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

fn unesc(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    const DAY: u64 = 24 * 60 * 60;

    #[test]
    fn a_sender_is_recent_within_the_interval_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let mut db = Database::open(&p).unwrap();
        assert_eq!(db.interval(), Some(DEFAULT_INTERVAL));
        assert!(!db.recent("bob@x.test", at(1000)));
        db.record("Bob@X.test", at(1000));
        assert!(db.recent("bob@x.test", at(1000 + 7 * DAY - 1)));
        assert!(!db.recent("bob@x.test", at(1000 + 7 * DAY)));
        db.set_interval(Some(Duration::from_secs(60)));
        assert!(db.recent("BOB@x.test", at(1059)));
        assert!(!db.recent("bob@x.test", at(1060)));
        db.set_interval(None);
        assert!(db.recent("bob@x.test", at(u64::MAX / 2)), "once only");
        assert!(!db.recent("carol@x.test", at(1000)));
    }

    #[test]
    fn exclusions_cover_an_address_or_a_domain_forever() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(&dir.path().join("db")).unwrap();
        db.exclude("boss@work.test");
        db.exclude("@Family.test");
        assert!(db.recent("boss@work.test", at(0)));
        assert!(db.recent("anyone@family.test", at(u64::MAX / 2)));
        assert!(!db.recent("other@work.test", at(0)));
        db.record("boss@work.test", at(5));
        assert_eq!(
            db.entries().collect::<Vec<_>>(),
            [
                ("@family.test", Stamp::Excluded),
                ("boss@work.test", Stamp::Excluded)
            ]
        );
    }

    #[test]
    fn save_and_reopen_keep_everything_but_expired_replies() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        {
            let mut db = Database::open(&p).unwrap();
            db.set_interval(Some(Duration::from_secs(100)));
            db.record("old@x.test", at(10));
            db.record("new@x.test", at(950));
            db.record("\"a b\"@x.test", at(990));
            db.exclude("@quiet.test");
            db.save(at(1000)).unwrap();
        }
        let text = String::from_utf8(std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(
            text,
            "postroom-vacation 1\ninterval 100\nat 990 \"a%20b\"@x.test\n\
             exclude @quiet.test\nat 950 new@x.test\n"
        );
        let db = Database::open(&p).unwrap();
        assert_eq!(db.interval(), Some(Duration::from_secs(100)));
        assert!(db.recent("\"a b\"@x.test", at(1000)));
        assert!(db.recent("x@quiet.test", at(1000)));
        assert!(!db.recent("old@x.test", at(1000)));
        drop(db);
        let db = Database::create(&p).unwrap();
        assert_eq!(db.entries().count(), 0);
        assert_eq!(db.interval(), Some(DEFAULT_INTERVAL));
        // Once only is kept as such.
        let mut db = db;
        db.set_interval(None);
        db.record("a@x", at(1));
        db.save(at(u64::MAX / 2)).unwrap();
        drop(db);
        let db = Database::open(&p).unwrap();
        assert_eq!(db.interval(), None);
        assert!(db.recent("a@x", at(u64::MAX / 2)));
    }

    #[test]
    fn a_foreign_or_broken_file_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, b"\x00\x06\x15\x61 berkeley").unwrap();
        let e = Database::open(&p).unwrap_err().to_string();
        assert!(
            e.contains(": line 1: not a postroom vacation database"),
            "{e}"
        );
        std::fs::write(&p, format!("{MAGIC}\nat soon bob@x\n")).unwrap();
        let e = Database::open(&p).unwrap_err().to_string();
        assert!(e.ends_with(": line 2: bad time `soon`"), "{e}");
        // -i starts over without reading it.
        assert!(Database::create(&p).is_ok());
    }

    #[test]
    fn the_lock_is_held_until_drop_and_follows_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let mut first = Database::open(&p).unwrap();
        let p2 = p.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let db = Database::open(&p2).unwrap();
            tx.send(db.recent("bob@x.test", at(1))).unwrap();
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "the second open waits");
        first.record("bob@x.test", at(0));
        first.save(at(0)).unwrap();
        drop(first);
        // The waiter locked the old inode, saw it replaced and read the new.
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        waiter.join().unwrap();
    }
}
