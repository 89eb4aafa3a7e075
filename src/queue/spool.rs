//! The file spool: queue ids and crash-safe queue entries on disk.
//!
//! Owns the spool directory and every write to it. Layout under the root:
//!
//! ```text
//! tmp/<id>/          an entry being written, or one being removed
//! active/<id>/       a queued entry: `message` (the bytes as received)
//!                    and `envelope` (entry.rs format); `envelope.new`
//!                    only while an update is being written
//! corrupt/<id>[.n]/  entries that could not be read, moved aside
//! ```
//!
//! Directories are created mode 0700 and files 0600: queued mail is private.
//!
//! An entry exists exactly when `active/<id>/` exists, and it appears there
//! in one `rename()` of a directory whose files are already fsync'ed, so a
//! crash at any point leaves either no entry or a whole one (mta-semantics
//! B.8). Whatever is left in `tmp/` after a crash was never acknowledged and
//! is removed on [`Spool::open`]; an entry in `active/` is never deleted
//! unless [`Queue::remove`] is asked to, and one that cannot be read is
//! moved to `corrupt/` and reported, never deleted.
//!
//! Like Postfix, we prefer a duplicate to a loss: a runner that crashes after
//! delivering but before [`Queue::record`] returned delivers that recipient
//! again on restart. Nothing can make "deliver" and "write down that it was
//! delivered" one atomic step, and the other order (record first) would lose
//! the message if the crash came before the delivery.
//!
//! One process owns a spool at a time: [`Spool::open`] takes an exclusive
//! `flock` on `lock` in the root and holds it while the [`Spool`] lives
//! (recovery clears `tmp/`, which would break another process's enqueue).
//! Inside it, the reads and updates of one entry are serialised by a lock
//! chosen by the entry's id (one of [`STRIPES`]), so the fsyncs of
//! different entries overlap; share one `Spool` between the server and the
//! runner threads. This module never opens a
//! socket and never runs `deliver`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::entry::{Attempt, Entry, Envelope, State};
use super::schedule::Schedule;
use super::{Clock, Corrupt, Listing, Queue, QueueError};

/// Length of a [`QueueId`] in characters.
const ID_LEN: usize = 26;

/// A queue id: 26 upper-case hex digits — arrival seconds (9), microseconds
/// (5), process id (8), a per-process counter (4).
///
/// Validated when built (Postfix `mail_queue.c` checks ids the same way),
/// so it is always safe as a file name, and ids sort by arrival time as
/// plain strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

/// A string that is not a queue id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue id `{0}`: want {ID_LEN} upper-case hex digits")]
pub struct BadQueueId(pub String);

impl QueueId {
    /// Checks and wraps an id read from a file name, a command line or an
    /// envelope file.
    pub fn parse(s: &str) -> Result<QueueId, BadQueueId> {
        if s.len() == ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            Ok(QueueId(s.to_string()))
        } else {
            Err(BadQueueId(s.chars().take(64).collect()))
        }
    }

    /// A new id for a message arriving at `now`, unique within this process.
    pub fn generate(now: SystemTime) -> QueueId {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() & 0xF_FFFF_FFFF;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) & 0xFFFF;
        QueueId(format!(
            "{secs:09X}{:05X}{:08X}{seq:04X}",
            since.subsec_micros(),
            std::process::id()
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`Spool::open`] found and did after a crash or a stop.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Partial entries removed from `tmp/` (never acknowledged).
    pub removed_partial: Vec<String>,
    /// Entries whose unfinished update (`envelope.new`) was dropped; their
    /// previous state stands.
    pub dropped_updates: Vec<QueueId>,
    /// Entries moved to `corrupt/`.
    pub corrupt: Vec<Corrupt>,
    /// Whole entries found in `active/`.
    pub entries: usize,
}

/// The points of [`Spool::enqueue`] at which the crash test stops.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Created,
    MessagePartial,
    MessageWritten,
    EnvelopeWritten,
    DirSynced,
    Renamed,
}

/// How many locks the entries' ids are spread over: enough that parallel
/// deliveries of different entries rarely wait for each other.
pub const STRIPES: usize = 64;

/// The durable file spool.
pub struct Spool {
    root: PathBuf,
    /// Held for the spool's lifetime; released when dropped.
    _owner: Flock<File>,
    schedule: Schedule,
    clock: Arc<dyn Clock>,
    /// Entry locks, chosen by [`Spool::lock`] from the entry's name.
    locks: Vec<Mutex<()>>,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QueueError {
    let path = path.to_path_buf();
    move |source| QueueError::Io { op, path, source }
}

/// fsync a directory so a rename or create in it is on disk.
fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Creates `path` (which must not exist), writes `data` and fsyncs it.
fn write_new(path: &Path, data: &[u8]) -> Result<(), QueueError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create", path))?;
    f.write_all(data).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

impl Spool {
    /// Opens (creating if needed) the spool at `root` and recovers it: what
    /// a crash left in `tmp/` is removed, unfinished updates are dropped,
    /// unreadable entries are moved to `corrupt/`.
    pub fn open(
        root: impl Into<PathBuf>,
        schedule: Schedule,
        clock: Arc<dyn Clock>,
    ) -> Result<(Spool, Recovery), QueueError> {
        let root = root.into();
        for d in ["", "tmp", "active", "corrupt"] {
            let p = root.join(d);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(io_err("create directory", &p))?;
        }
        sync_dir(&root)?;
        let lock_path = root.join("lock");
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let owner = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            let source = io::Error::from_raw_os_error(e as i32);
            let op = if e == Errno::EWOULDBLOCK {
                "lock (another process has the spool open)"
            } else {
                "lock"
            };
            QueueError::Io {
                op,
                path: lock_path.clone(),
                source,
            }
        })?;
        let spool = Spool {
            root,
            _owner: owner,
            schedule,
            clock,
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        };
        let recovery = spool.recover()?;
        Ok((spool, recovery))
    }

    /// The spool's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    fn entry_dir(&self, id: &QueueId) -> PathBuf {
        self.root.join("active").join(id.as_str())
    }

    /// The lock of the entry (or stray file) named `name` in `active/`: held
    /// while it is read, updated, quarantined or removed.
    fn lock(&self, name: &str) -> MutexGuard<'_, ()> {
        // FNV-1a: names are ids whose last digits (pid, counter) vary most.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.locks[(h % STRIPES as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn recover(&self) -> Result<Recovery, QueueError> {
        let mut rec = Recovery::default();
        let tmp = self.dir("tmp");
        for name in list(&tmp)? {
            let p = tmp.join(&name);
            let res = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            res.map_err(io_err("remove partial entry", &p))?;
            rec.removed_partial.push(name);
        }
        sync_dir(&tmp)?;
        let active = self.dir("active");
        for name in list(&active)? {
            let new = active.join(&name).join("envelope.new");
            if new.exists() {
                fs::remove_file(&new).map_err(io_err("remove unfinished update", &new))?;
                if let Ok(id) = QueueId::parse(&name) {
                    rec.dropped_updates.push(id);
                }
            }
        }
        let listing = self.entries()?;
        rec.entries = listing.entries.len();
        rec.corrupt = listing.corrupt;
        Ok(rec)
    }

    /// Enqueues, stopping at `crash` (test only) as if the process died
    /// there: nothing is cleaned up.
    fn enqueue_until(
        &self,
        envelope: &Envelope,
        message: &[u8],
        crash: Option<Step>,
    ) -> Result<QueueId, QueueError> {
        macro_rules! at {
            ($s:ident) => {
                crash == Some(Step::$s)
            };
        }
        if envelope.recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let now = self.clock.now();
        let tmp = self.dir("tmp");
        let (id, dir) = loop {
            let id = QueueId::generate(now);
            let dir = tmp.join(id.as_str());
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &dir)(e)),
            }
        };
        let crashed = |id: &QueueId| Err(QueueError::Crashed(id.clone()));
        if at!(Created) {
            return crashed(&id);
        }
        let result = (|| {
            if at!(MessagePartial) {
                fs::write(dir.join("message"), &message[..message.len() / 2])
                    .map_err(io_err("write", &dir))?;
                return crashed(&id);
            }
            write_new(&dir.join("message"), message)?;
            if at!(MessageWritten) {
                return crashed(&id);
            }
            let arrival = unix(now);
            let entry = Entry::new(id.clone(), arrival, message.len() as u64, envelope);
            write_new(&dir.join("envelope"), entry.to_text().as_bytes())?;
            if at!(EnvelopeWritten) {
                return crashed(&id);
            }
            sync_dir(&dir)?;
            if at!(DirSynced) {
                return crashed(&id);
            }
            let target = self.entry_dir(&id);
            fs::rename(&dir, &target).map_err(io_err("rename into active", &target))?;
            if at!(Renamed) {
                return crashed(&id);
            }
            sync_dir(&self.dir("active"))?;
            Ok(id.clone())
        })();
        if let Err(e) = &result
            && !matches!(e, QueueError::Crashed(_))
        {
            // mta-semantics B.8 step 3: any failure before the rename is
            // reported (the SMTP client gets 451) and the partial file goes.
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Loads an entry, checking that it is whole: a parsable envelope for
    /// this id and a message of the recorded size.
    fn load(&self, id: &QueueId) -> Result<Entry, String> {
        let dir = self.entry_dir(id);
        let env = match fs::read(dir.join("envelope")) {
            Ok(b) => b,
            Err(e) => return Err(format!("envelope: {e}")),
        };
        let entry = Entry::parse(&env).map_err(|e| format!("envelope {e}"))?;
        if entry.id != *id {
            return Err(format!("envelope names id {}", entry.id));
        }
        match fs::metadata(dir.join("message")) {
            Ok(m) if m.len() == entry.size => Ok(entry),
            Ok(m) => Err(format!(
                "message has {} octets, envelope says {}",
                m.len(),
                entry.size
            )),
            Err(e) => Err(format!("message: {e}")),
        }
    }

    /// Moves an unreadable entry (or stray file) in `active/` to
    /// `corrupt/`, never overwriting an earlier one.
    fn quarantine(&self, name: &str, reason: String) -> Result<Corrupt, QueueError> {
        let from = self.dir("active").join(name);
        let corrupt = self.dir("corrupt");
        let mut to = corrupt.join(name);
        let mut n = 1;
        while to.exists() {
            to = corrupt.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(&from, &to).map_err(io_err("move to corrupt", &from))?;
        sync_dir(&corrupt)?;
        sync_dir(&self.dir("active"))?;
        Ok(Corrupt {
            name: name.to_string(),
            moved_to: to,
            reason,
        })
    }

    /// Loads `id` or, if it is unreadable, moves it aside and says so.
    fn load_or_quarantine(&self, id: &QueueId) -> Result<Entry, QueueError> {
        if !self.entry_dir(id).exists() {
            return Err(QueueError::NotFound(id.clone()));
        }
        self.load(id).or_else(|reason| {
            let c = self.quarantine(id.as_str(), reason)?;
            Err(QueueError::Corrupt(c))
        })
    }

    /// Reads the entry, lets `f` change it, and writes it back durably:
    /// `envelope.new` → fsync → rename over `envelope` → fsync directory.
    /// Only then does the change count (and the caller may act on it).
    fn update<T>(
        &self,
        id: &QueueId,
        f: impl FnOnce(&mut Entry) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let _guard = self.lock(id.as_str());
        let mut entry = self.load_or_quarantine(id)?;
        let out = f(&mut entry)?;
        let dir = self.entry_dir(id);
        let new = dir.join("envelope.new");
        let _ = fs::remove_file(&new);
        write_new(&new, entry.to_text().as_bytes())?;
        let env = dir.join("envelope");
        fs::rename(&new, &env).map_err(io_err("rename", &env))?;
        sync_dir(&dir)?;
        Ok(out)
    }
}

/// The names in a directory, sorted (ids sort by arrival).
fn list(dir: &Path) -> Result<Vec<String>, QueueError> {
    let mut names = Vec::new();
    for d in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let d = d.map_err(io_err("read directory", dir))?;
        names.push(d.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Unix seconds of a time (0 before 1970).
pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Queue for Spool {
    fn enqueue(&self, envelope: &Envelope, message: &[u8]) -> Result<QueueId, QueueError> {
        self.enqueue_until(envelope, message, None)
    }

    fn entries(&self) -> Result<Listing, QueueError> {
        let mut listing = Listing::default();
        let active = self.dir("active");
        for name in list(&active)? {
            let _guard = self.lock(&name);
            let loaded = match QueueId::parse(&name) {
                Ok(id) => self.load(&id),
                Err(e) => Err(e.to_string()),
            };
            match loaded {
                Ok(entry) => listing.entries.push(entry),
                // Removed by a delivery since the directory was read.
                Err(_) if !active.join(&name).exists() => {}
                Err(reason) => listing.corrupt.push(self.quarantine(&name, reason)?),
            }
        }
        Ok(listing)
    }

    fn entry(&self, id: &QueueId) -> Result<Entry, QueueError> {
        let _guard = self.lock(id.as_str());
        self.load_or_quarantine(id)
    }

    fn message(&self, id: &QueueId) -> Result<Vec<u8>, QueueError> {
        let p = self.entry_dir(id).join("message");
        fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => QueueError::NotFound(id.clone()),
            _ => io_err("read", &p)(e),
        })
    }

    fn record(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &Attempt,
        now: i64,
    ) -> Result<State, QueueError> {
        let schedule = &self.schedule;
        self.update(id, |e| {
            e.apply(rcpt, result, now, schedule)
                .cloned()
                .map_err(|source| QueueError::Apply {
                    id: id.clone(),
                    source,
                })
        })
    }

    fn mark_notified(&self, id: &QueueId, rcpts: &[usize]) -> Result<(), QueueError> {
        self.update(id, |e| super::mark_notified(id, e, rcpts))
    }

    fn mark_warned(&self, id: &QueueId) -> Result<(), QueueError> {
        self.update(id, |e| {
            e.warned = true;
            Ok(())
        })
    }

    fn remove(&self, id: &QueueId) -> Result<(), QueueError> {
        let _guard = self.lock(id.as_str());
        let entry = self.load_or_quarantine(id)?;
        super::check_done(&entry)?;
        // Rename out of active/ first: a crash while deleting then leaves
        // a half-deleted directory in tmp/ (cleared on open), never a
        // half-deleted entry that looks whole.
        let from = self.entry_dir(id);
        let to = self.dir("tmp").join(format!("{id}.done"));
        fs::rename(&from, &to).map_err(io_err("rename out of active", &from))?;
        sync_dir(&self.dir("active"))?;
        fs::remove_dir_all(&to).map_err(io_err("remove", &to))
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::super::ManualClock;
    use super::super::entry::Address;
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            sender: "alice@example.test".to_string(),
            recipients: vec![
                Address::new("bob@relay.test"),
                Address::new("carol@relay.test"),
            ],
            ..Envelope::default()
        }
    }

    fn open(root: &Path) -> (Spool, Recovery) {
        let clock = Arc::new(ManualClock::at(1_795_694_400));
        Spool::open(root, Schedule::default(), clock).unwrap()
    }

    #[test]
    fn ids_are_valid_unique_and_sort_by_arrival() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_795_694_400_123_456);
        let a = QueueId::generate(t);
        let b = QueueId::generate(t);
        let c = QueueId::generate(t + std::time::Duration::from_micros(1));
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("06B081F40" /* 1795694400 */), "{a}");
        assert!(c.as_str()[..14] > a.as_str()[..14]);
        assert_eq!(QueueId::parse(a.as_str()), Ok(a.clone()));
        for bad in [
            "",
            "../../etc/passwd",
            "0692a4c5e03f2a000001f40001",
            "0692A4C5E03F2A000001F4000",
            "0692A4C5E03F2A000001F4000/",
        ] {
            assert!(QueueId::parse(bad).is_err(), "{bad}");
        }
    }

    /// mta-semantics B.8 and F.3: stop enqueue at every step as if the
    /// process died there, then restart. Before the rename no entry is
    /// visible and tmp/ is cleared; from the rename on the entry is whole.
    #[test]
    fn crash_at_every_step_never_loses_or_exposes_a_partial_entry() {
        let msg = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
        for step in [
            Step::Created,
            Step::MessagePartial,
            Step::MessageWritten,
            Step::EnvelopeWritten,
            Step::DirSynced,
            Step::Renamed,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (spool, _) = open(dir.path());
            let err = spool
                .enqueue_until(&envelope(), &msg, Some(step))
                .unwrap_err();
            let QueueError::Crashed(id) = err else {
                panic!("{err}")
            };
            drop(spool);
            let (spool, rec) = open(dir.path());
            let listing = spool.entries().unwrap();
            assert!(
                listing.corrupt.is_empty() && rec.corrupt.is_empty(),
                "{step:?}"
            );
            assert_eq!(list(&dir.path().join("tmp")).unwrap(), Vec::<String>::new());
            if step >= Step::Renamed {
                assert_eq!(rec.entries, 1, "{step:?}");
                assert_eq!(listing.entries[0].id, id);
                assert_eq!(spool.message(&id).unwrap(), msg);
                assert!(rec.removed_partial.is_empty());
            } else {
                assert!(listing.entries.is_empty(), "{step:?}");
                assert_eq!(rec.removed_partial, vec![id.to_string()], "{step:?}");
            }
        }
    }

    #[test]
    fn unfinished_update_is_dropped_and_the_old_state_stands() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let id = spool.enqueue(&envelope(), b"x\r\n").unwrap();
        let before = spool.entry(&id).unwrap();
        fs::write(
            spool.entry_dir(&id).join("envelope.new"),
            b"postroom-queue 1\nid ",
        )
        .unwrap();
        drop(spool);
        let (spool, rec) = open(dir.path());
        assert_eq!(rec.dropped_updates, vec![id.clone()]);
        assert_eq!(spool.entry(&id).unwrap(), before);
        assert!(!spool.entry_dir(&id).join("envelope.new").exists());
    }

    #[test]
    fn queued_mail_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let id = spool.enqueue(&envelope(), b"x").unwrap();
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("active")), 0o700);
        assert_eq!(mode(spool.entry_dir(&id)), 0o700);
        assert_eq!(mode(spool.entry_dir(&id).join("message")), 0o600);
        assert_eq!(mode(spool.entry_dir(&id).join("envelope")), 0o600);
    }

    #[test]
    fn a_second_owner_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let clock = Arc::new(ManualClock::at(0));
        let err = Spool::open(dir.path(), Schedule::default(), clock.clone())
            .err()
            .expect("second open must fail");
        assert!(
            err.to_string()
                .contains("another process has the spool open"),
            "{err}"
        );
        drop(spool);
        assert!(Spool::open(dir.path(), Schedule::default(), clock).is_ok());
    }

    #[test]
    fn failure_before_the_rename_removes_the_partial_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        // active/ is a file: the rename fails, as on a broken spool.
        fs::remove_dir(dir.path().join("active")).unwrap();
        fs::write(dir.path().join("active"), b"").unwrap();
        let err = spool.enqueue(&envelope(), b"x").unwrap_err();
        assert!(err.to_string().contains("rename into active"), "{err}");
        assert_eq!(list(&dir.path().join("tmp")).unwrap(), Vec::<String>::new());
    }
}
