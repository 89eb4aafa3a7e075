//! The file spool: queue ids and crash-safe queue entries on disk.
//!
//! Owns the spool directory and every write to it. Layout under the root:
//!
//! ```text
//! tmp/<id>           an entry being written
//! active/<id>        a queued entry: its envelope as queued (entry.rs
//!                    format, up to the `end` line), then the message (the
//!                    bytes as received)
//! active/<id>.env    the envelope as it is now, once a state change had
//!                    to be written (it wins over the one in `<id>`);
//!                    `<id>.env.new` only while an update is being written
//! corrupt/<id>[.n]   entries that could not be read, moved aside (with
//!                    their `.env`; `maildrop-<name>[.n]` for maildrop files)
//! maildrop/          local submissions (`postroom sendmail`), see
//!                    `queue::maildrop`; [`Spool::pickup`] queues them
//! ```
//!
//! Directories are created mode 0700 and files 0600: queued mail is private.
//! Two exceptions let local users submit without the spool's lock, as
//! Postfix's `maildrop/` does: the root gets the search bits (0711: others
//! may pass through it but not list it) and `maildrop/` is 1733 (anyone
//! may drop a file, nobody may list the directory or remove another's
//! file).
//!
//! An entry exists exactly when `active/<id>` exists, and it appears there
//! in one `rename()` of a file already fsync'ed, so a crash at any point
//! leaves either no entry or a whole one (mta-semantics B.8). One file per
//! message, as Postfix's queue file: the message is written and synced
//! once, and a message delivered at the first attempt never needs its
//! state written at all ([`Queue::record_or_remove`]); every inode the
//! spool makes and frees costs CPU in the file system's allocator
//! (bench/README.md). A spool written by the earlier layout (a directory
//! per entry with `envelope` and `message`) is converted on open. Whatever is left in `tmp/` after a crash was never acknowledged and
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

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::entry::{Attempt, Entry, Envelope, State};
use super::maildrop::{self, Submission};
use super::schedule::Schedule;
use super::{Clock, Corrupt, Listing, Pickup, Queue, QueueError};

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
    /// Entries whose unfinished update (`<id>.env.new`) was dropped; their
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
    Partial,
    Written,
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
    /// Held by [`Spool::pickup`]: two pickups at once could queue one
    /// maildrop file twice.
    picking: Mutex<()>,
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
        open_maildrop(&root)?;
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
            picking: Mutex::new(()),
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

    /// `active/<id>`: the entry's file, the mark of its existence.
    fn entry_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("active").join(id.as_str())
    }

    /// `active/<id>.env`: the envelope as changed since the entry was
    /// queued.
    fn env_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("active").join(format!("{id}{ENV}"))
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
            let p = active.join(&name);
            if let Some(base) = name.strip_suffix(ENV_NEW) {
                // An update that did not finish: the state before it stands.
                fs::remove_file(&p).map_err(io_err("remove unfinished update", &p))?;
                if let Ok(id) = QueueId::parse(base) {
                    rec.dropped_updates.push(id);
                }
            } else if let Some(base) = name.strip_suffix(V1) {
                // A conversion that did not finish (see `convert_v1`).
                if active.join(base).exists() {
                    fs::remove_dir_all(&p).map_err(io_err("remove converted entry", &p))?;
                } else {
                    let back = active.join(base);
                    fs::rename(&p, &back).map_err(io_err("rename back", &p))?;
                }
            }
        }
        for name in list(&active)? {
            let p = active.join(&name);
            if let Some(base) = name.strip_suffix(ENV) {
                // The rest of an entry whose removal was cut short.
                if !active.join(base).exists() {
                    fs::remove_file(&p).map_err(io_err("remove leftover envelope", &p))?;
                }
            } else if QueueId::parse(&name).is_ok()
                && p.join("envelope").is_file()
                && p.join("message").is_file()
            {
                self.convert_v1(&name)?;
            }
        }
        sync_dir(&active)?;
        let listing = self.entries()?;
        rec.entries = listing.entries.len();
        rec.corrupt = listing.corrupt;
        Ok(rec)
    }

    /// Turns an entry of the earlier layout (`active/<id>/` with
    /// `envelope` and `message`) into one file: the file is written whole
    /// in `tmp/`, the directory renamed to `<id>.v1`, the file renamed into
    /// place, the directory removed. A crash anywhere leaves the old entry
    /// or the new one (recovery finishes or undoes the `.v1` step).
    fn convert_v1(&self, name: &str) -> Result<(), QueueError> {
        let active = self.dir("active");
        let old = active.join(name);
        let _ = fs::remove_file(old.join("envelope.new"));
        let env = fs::read(old.join("envelope")).map_err(io_err("read", &old))?;
        let msg = fs::read(old.join("message")).map_err(io_err("read", &old))?;
        let tmp = self.dir("tmp").join(name);
        write_new(&tmp, &[env, msg].concat())?;
        let aside = active.join(format!("{name}{V1}"));
        fs::rename(&old, &aside).map_err(io_err("rename aside", &old))?;
        fs::rename(&tmp, &old).map_err(io_err("rename into active", &old))?;
        sync_dir(&active)?;
        fs::remove_dir_all(&aside).map_err(io_err("remove converted entry", &aside))
    }

    /// Enqueues, stopping at `crash` (test only) as if the process died
    /// there: nothing is cleaned up.
    fn enqueue_until<'m>(
        &self,
        envelope: &Envelope,
        make: &dyn Fn(&QueueId) -> std::borrow::Cow<'m, [u8]>,
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
        let (id, path, mut file) = loop {
            let id = QueueId::generate(now);
            let path = tmp.join(id.as_str());
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => break (id, path, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        };
        let crashed = |id: &QueueId| Err(QueueError::Crashed(id.clone()));
        if at!(Created) {
            return crashed(&id);
        }
        let message = make(&id);
        let message: &[u8] = &message;
        let result = (|| {
            let entry = Entry::new(id.clone(), unix(now), message.len() as u64, envelope);
            let head = entry.to_text();
            if at!(Partial) {
                file.write_all(head.as_bytes())
                    .map_err(io_err("write", &path))?;
                return crashed(&id);
            }
            file.write_all(head.as_bytes())
                .and_then(|()| file.write_all(message))
                .map_err(io_err("write", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
            if at!(Written) {
                return crashed(&id);
            }
            let target = self.entry_path(&id);
            fs::rename(&path, &target).map_err(io_err("rename into active", &target))?;
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
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// Loads an entry, checking that it is whole: a parsable envelope for
    /// this id and a message of the recorded size; `None` when there is
    /// no such entry.
    fn load(&self, id: &QueueId) -> Result<Option<Entry>, String> {
        read_entry(&self.dir("active"), id)
    }

    /// Moves an unreadable entry (or stray file) in `active/` to
    /// `corrupt/`, with its `.env` if it has one, never overwriting an
    /// earlier one.
    fn quarantine(&self, name: &str, reason: String) -> Result<Corrupt, QueueError> {
        let active = self.dir("active");
        let from = active.join(name);
        let corrupt = self.dir("corrupt");
        let with_env = |p: &Path| PathBuf::from(format!("{}{ENV}", p.display()));
        let to = free_name(&corrupt, OsStr::new(name), |p| with_env(p).exists());
        fs::rename(&from, &to).map_err(io_err("move to corrupt", &from))?;
        let env = active.join(format!("{name}{ENV}"));
        if env.exists() {
            fs::rename(&env, with_env(&to)).map_err(io_err("move to corrupt", &env))?;
        }
        sync_dir(&corrupt)?;
        sync_dir(&active)?;
        Ok(Corrupt {
            name: name.to_string(),
            moved_to: to,
            reason,
        })
    }

    /// Loads `id` or, if it is unreadable, moves it aside and says so.
    fn load_or_quarantine(&self, id: &QueueId) -> Result<Entry, QueueError> {
        match self.load(id) {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(QueueError::NotFound(id.clone())),
            Err(reason) => Err(QueueError::Corrupt(self.quarantine(id.as_str(), reason)?)),
        }
    }

    /// Reads the entry, lets `f` change it, and writes it back durably:
    /// `<id>.env.new` → fsync → rename over `<id>.env` → fsync `active/`.
    /// Only then does the change count (and the caller may act on it).
    fn update<T>(
        &self,
        id: &QueueId,
        f: impl FnOnce(&mut Entry) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let _guard = self.lock(id.as_str());
        let mut entry = self.load_or_quarantine(id)?;
        let out = f(&mut entry)?;
        self.write_entry(id, &entry)?;
        Ok(out)
    }

    /// Writes `entry` as the state of `id` (its lock held).
    fn write_entry(&self, id: &QueueId, entry: &Entry) -> Result<(), QueueError> {
        let active = self.dir("active");
        let new = active.join(format!("{id}{ENV_NEW}"));
        let _ = fs::remove_file(&new);
        write_new(&new, entry.to_text().as_bytes())?;
        let env = self.env_path(id);
        fs::rename(&new, &env).map_err(io_err("rename", &env))?;
        sync_dir(&active)
    }

    /// Takes a finished entry out of `active/` (its lock held, its state
    /// checked by the caller): the entry's file first (the entry is gone),
    /// then its `.env` (a leftover one is removed on open).
    ///
    /// `active/` is not fsync'ed afterwards, as Postfix does not sync the
    /// removal of a queue file: if a crash loses the unlink, the entry is
    /// back after the restart and its last recipients are delivered again
    /// (the duplicate this module prefers to a loss); nothing can be lost,
    /// and every delivered message saves a journal commit.
    fn remove_entry(&self, id: &QueueId) -> Result<(), QueueError> {
        let path = self.entry_path(id);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        let env = self.env_path(id);
        match fs::remove_file(&env) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &env)(e)),
            _ => Ok(()),
        }
    }
}

/// Makes `root` searchable by everyone and `root/maildrop` a 1733
/// directory (module docs). A chmod the OS refuses (a spool made by
/// another user) is left alone: submitters then get a clear error.
fn open_maildrop(root: &Path) -> Result<(), QueueError> {
    let meta = fs::metadata(root).map_err(io_err("stat", root))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o011 != 0o011 {
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(mode | 0o011));
    }
    let md = root.join(maildrop::DIR);
    match DirBuilder::new().mode(0o700).create(&md) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create directory", &md)(e)),
    }
    let meta = fs::symlink_metadata(&md).map_err(io_err("stat", &md))?;
    if !meta.is_dir() {
        return Err(QueueError::Io {
            op: "use as the maildrop (not a directory)",
            path: md,
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    // umask took the write bits off at mkdir; set the mode itself.
    if meta.permissions().mode() & 0o7777 != 0o1733 {
        let _ = fs::set_permissions(&md, fs::Permissions::from_mode(0o1733));
    }
    Ok(())
}

/// What became of one maildrop file.
enum Picked {
    Queued(super::QueueId),
    /// Unusable: move it to `corrupt/` with this reason.
    Corrupt(String),
    /// Leave it for the next pickup, with why.
    Left(String),
    /// Gone before we opened it.
    Gone,
}

/// An abandoned `.tmp-` maildrop file is removed after this long.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Spool {
    /// Takes every complete file in `maildrop/` into the queue (Postfix's
    /// pickup): enqueue, then unlink the file. A crash between the two
    /// queues it again on the next pickup: a duplicate, never a loss.
    /// Files that are not maildrop files (bad format, a symbolic link, a
    /// FIFO, several hard links, a header whose uid is not the file's
    /// owner, or trust claimed by an untrusted owner) are moved to
    /// `corrupt/` and reported; `.tmp-` files older than a day are
    /// removed. The file's owner is the submitter; the header only
    /// confirms it.
    pub fn pickup(&self) -> Result<Pickup, QueueError> {
        let _guard = self.picking.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.dir(maildrop::DIR);
        let spool_owner = fs::metadata(&self.root)
            .map_err(io_err("stat", &self.root))?
            .uid();
        let mut names: Vec<OsString> = Vec::new();
        for d in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            names.push(d.map_err(io_err("read directory", &dir))?.file_name());
        }
        names.sort();
        let now = self.clock.now();
        let mut out = Pickup::default();
        for name in names {
            let shown = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            if shown.starts_with(maildrop::TMP_PREFIX) {
                let old = fs::symlink_metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
                if old && fs::remove_file(&path).is_ok() {
                    out.removed_stale.push(shown);
                }
                continue;
            }
            match self.pick_one(&path, spool_owner) {
                Ok(Picked::Queued(id)) => {
                    out.queued.push((shown.clone(), id.clone()));
                    if let Err(e) = fs::remove_file(&path)
                        .and_then(|()| File::open(&dir).and_then(|d| d.sync_all()))
                    {
                        out.errors.push(format!(
                            "maildrop {shown}: queued as {id}, but cannot remove it (it will be queued again): {e}"
                        ));
                    }
                }
                Ok(Picked::Corrupt(reason)) => {
                    out.corrupt.push(self.quarantine_drop(&name, reason)?);
                }
                Ok(Picked::Left(why)) => out.errors.push(format!("maildrop {shown}: {why}")),
                Ok(Picked::Gone) => {}
                Err(e) => {
                    // The queue itself fails (a full disk): the rest waits.
                    out.errors.push(format!("maildrop {shown}: {e}"));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads, checks and enqueues one maildrop file.
    fn pick_one(&self, path: &Path, spool_owner: u32) -> Result<Picked, QueueError> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        let mut f = match f {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Ok(Picked::Corrupt("a symbolic link".to_string()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Picked::Gone),
            Err(e) => return Ok(Picked::Left(format!("cannot open: {e}"))),
        };
        let meta = f.metadata().map_err(io_err("stat", path))?;
        if !meta.is_file() {
            return Ok(Picked::Corrupt("not a regular file".to_string()));
        }
        if meta.nlink() != 1 {
            return Ok(Picked::Corrupt(format!("{} hard links", meta.nlink())));
        }
        let mut data = Vec::with_capacity(meta.len().min(1 << 24) as usize);
        if let Err(e) = f.read_to_end(&mut data) {
            return Ok(Picked::Left(format!("cannot read: {e}")));
        }
        let drop = match Submission::parse(&data) {
            Ok(d) => d,
            Err(e) => return Ok(Picked::Corrupt(format!("maildrop file {e}"))),
        };
        let owner = meta.uid();
        if drop.uid != owner {
            return Ok(Picked::Corrupt(format!(
                "header says uid {}, the file belongs to uid {owner}",
                drop.uid
            )));
        }
        if drop.trusted && owner != 0 && owner != spool_owner {
            return Ok(Picked::Corrupt(format!(
                "claims a trusted sender, but uid {owner} is not trusted"
            )));
        }
        let id = self.enqueue(&drop.envelope(owner), &drop.message)?;
        Ok(Picked::Queued(id))
    }

    /// Moves a maildrop file to `corrupt/maildrop-NAME[.n]`.
    fn quarantine_drop(&self, name: &OsStr, reason: String) -> Result<Corrupt, QueueError> {
        let from = self.dir(maildrop::DIR).join(name);
        let corrupt = self.dir("corrupt");
        let mut base = OsString::from("maildrop-");
        base.push(name);
        let to = free_name(&corrupt, &base, |_| false);
        fs::rename(&from, &to).map_err(io_err("move to corrupt", &from))?;
        sync_dir(&corrupt)?;
        sync_dir(&self.dir(maildrop::DIR))?;
        Ok(Corrupt {
            name: name.to_string_lossy().into_owned(),
            moved_to: to,
            reason,
        })
    }
}

/// `dir/base`, or the first free `dir/base.1`, `dir/base.2`, ...: a name
/// nothing has (no file, no dangling link, and not `taken` for one that
/// needs a second file beside it), so a quarantine never overwrites an
/// earlier one.
fn free_name(dir: &Path, base: &OsStr, taken: impl Fn(&Path) -> bool) -> PathBuf {
    let mut to = dir.join(base);
    let mut n = 1;
    while to.symlink_metadata().is_ok() || taken(&to) {
        let mut b = base.to_owned();
        b.push(format!(".{n}"));
        to = dir.join(b);
        n += 1;
    }
    to
}

/// Suffix of the envelope as changed since queueing.
const ENV: &str = ".env";
/// Suffix of an envelope being written.
const ENV_NEW: &str = ".env.new";
/// Suffix of an earlier-layout entry directory being converted.
const V1: &str = ".v1";

/// Whether `name` in `active/` is a part of an entry, not an entry.
fn is_sidecar(name: &str) -> bool {
    name.ends_with(ENV) || name.ends_with(ENV_NEW) || name.ends_with(V1)
}

/// The length of the envelope at the start of an entry's file: up to and
/// including its `end` line (entry.rs; no other line of the format is
/// `end`, and every value is escaped).
fn head_len(data: &[u8]) -> Option<usize> {
    data.windows(5).position(|w| w == b"\nend\n").map(|p| p + 5)
}

/// The envelope at the start of the entry file `path` (read until its
/// `end` line, not the whole message; `None` when the file has no such
/// line) and the file's size.
fn read_head(path: &Path) -> io::Result<(Option<Vec<u8>>, u64)> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut head = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            return Ok((None, size));
        }
        let from = head.len().saturating_sub(4);
        head.extend_from_slice(&chunk[..n]);
        if let Some(p) = head_len(&head[from..]) {
            head.truncate(from + p);
            return Ok((Some(head), size));
        }
    }
}

/// Reads entry `id` from the directory `active` without any lock (the
/// owner's lock, or none for a reader beside a running server: every file
/// of an entry is replaced by a rename, so a reader sees an old or a new
/// state, never half of one). Checks that it is whole; `None` when the
/// entry's file does not exist.
pub fn read_entry(active: &Path, id: &QueueId) -> Result<Option<Entry>, String> {
    let path = active.join(id.as_str());
    let (head, size) = match read_head(&path) {
        Ok(got) => got,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("entry: {e}")),
    };
    let Some(head) = head else {
        return Err("entry: no complete envelope at its start".to_string());
    };
    let n = head.len();
    let env = match fs::read(active.join(format!("{id}{ENV}"))) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => head,
        Err(e) => return Err(format!("envelope: {e}")),
    };
    let entry = Entry::parse(&env).map_err(|e| format!("envelope {e}"))?;
    if entry.id != *id {
        return Err(format!("envelope names id {}", entry.id));
    }
    let message = size - n as u64;
    if message != entry.size {
        return Err(format!(
            "message has {message} octets, envelope says {}",
            entry.size
        ));
    }
    Ok(Some(entry))
}

/// The entries under `root/active/`, read without the spool's lock and
/// without moving anything (`postroom queue` beside a running server):
/// the readable entries oldest first, and the names that could not be
/// read with why.
pub fn read_unlocked(root: &Path) -> Result<(Listing, Vec<(String, String)>), String> {
    let active = root.join("active");
    let names = list(&active).map_err(|e| e.to_string())?;
    let mut listing = Listing::default();
    let mut bad = Vec::new();
    for name in names {
        if is_sidecar(&name) {
            continue;
        }
        let read = match QueueId::parse(&name) {
            Ok(id) => read_entry(&active, &id),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(Some(e)) => listing.entries.push(e),
            // Removed between the listing and the read: delivered.
            Ok(None) => {}
            Err(_) if !active.join(&name).exists() => {}
            Err(why) => bad.push((name, why)),
        }
    }
    listing
        .entries
        .sort_by(|a, b| (a.arrival, a.id.as_str()).cmp(&(b.arrival, b.id.as_str())));
    Ok((listing, bad))
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
    fn enqueue_made<'m>(
        &self,
        envelope: &Envelope,
        make: &dyn Fn(&QueueId) -> std::borrow::Cow<'m, [u8]>,
    ) -> Result<QueueId, QueueError> {
        self.enqueue_until(envelope, make, None)
    }

    fn entries(&self) -> Result<Listing, QueueError> {
        let mut listing = Listing::default();
        let active = self.dir("active");
        for name in list(&active)? {
            if is_sidecar(&name) {
                continue;
            }
            let _guard = self.lock(&name);
            let loaded = match QueueId::parse(&name) {
                Ok(id) => self.load(&id),
                Err(e) => Err(e.to_string()),
            };
            match loaded {
                Ok(Some(entry)) => listing.entries.push(entry),
                // Removed by a delivery since the directory was read.
                Ok(None) => {}
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
        let p = self.entry_path(id);
        let mut data = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => QueueError::NotFound(id.clone()),
            _ => io_err("read", &p)(e),
        })?;
        match head_len(&data) {
            // In place: a large message is not held twice.
            Some(n) => {
                data.drain(..n);
                Ok(data)
            }
            None => Err(QueueError::Io {
                op: "read (no envelope in the entry)",
                path: p,
                source: io::Error::from(io::ErrorKind::InvalidData),
            }),
        }
    }

    fn record(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &Attempt,
        now: i64,
    ) -> Result<State, QueueError> {
        self.update(id, |e| super::apply(e, rcpt, result, now, &self.schedule))
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
        self.remove_entry(id)
    }

    /// One durable step instead of two when the attempt finishes the
    /// entry: the removal is the record (a crash before it leaves the
    /// recipient pending, and it is delivered again: the usual duplicate,
    /// never a loss).
    fn record_or_remove(
        &self,
        id: &QueueId,
        rcpt: usize,
        result: &Attempt,
        now: i64,
    ) -> Result<(State, bool), QueueError> {
        let _guard = self.lock(id.as_str());
        let mut entry = self.load_or_quarantine(id)?;
        let state = super::apply(&mut entry, rcpt, result, now, &self.schedule)?;
        if super::check_done(&entry).is_ok() {
            self.remove_entry(id)?;
            Ok((state, true))
        } else {
            self.write_entry(id, &entry)?;
            Ok((state, false))
        }
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn pickup(&self) -> Result<Pickup, QueueError> {
        Spool::pickup(self)
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
        for step in [Step::Created, Step::Partial, Step::Written, Step::Renamed] {
            let dir = tempfile::tempdir().unwrap();
            let (spool, _) = open(dir.path());
            let err = spool
                .enqueue_until(&envelope(), &|_| msg.as_slice().into(), Some(step))
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
        spool
            .record(&id, 0, &Attempt::Delivered, 1_795_694_500)
            .unwrap();
        let before = spool.entry(&id).unwrap();
        assert_eq!(before.recipients[0].state, State::Delivered);
        let new = dir.path().join(format!("active/{id}.env.new"));
        fs::write(&new, b"postroom-queue 1\nid ").unwrap();
        drop(spool);
        let (spool, rec) = open(dir.path());
        assert_eq!(rec.dropped_updates, vec![id.clone()]);
        assert_eq!(spool.entry(&id).unwrap(), before);
        assert!(!new.exists());
    }

    #[test]
    fn queued_mail_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let id = spool.enqueue(&envelope(), b"x").unwrap();
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("active")), 0o700);
        assert_eq!(mode(spool.entry_path(&id)), 0o600);
        spool.record(&id, 0, &Attempt::Delivered, 1).unwrap();
        assert_eq!(mode(spool.env_path(&id)), 0o600);
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

    fn a_drop(uid: u32) -> Submission {
        Submission {
            uid,
            user: "alice".into(),
            sender: "alice@mx.example.test".into(),
            hops: 1,
            recipients: vec!["bob@example.test".into(), "carol@relay.test".into()],
            message: b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n".to_vec(),
            ..Submission::default()
        }
    }

    fn my_uid() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    #[test]
    fn open_makes_a_1733_maildrop_under_a_searchable_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let _ = open(&root);
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(root.join("maildrop")), 0o1733);
        assert_eq!(mode(root.clone()), 0o711);
        assert_eq!(mode(root.join("active")), 0o700);
    }

    #[test]
    fn pickup_queues_each_file_with_its_envelope_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let name = QueueId::generate(SystemTime::now());
        maildrop::drop_file(dir.path(), &name, &a_drop(my_uid())).unwrap();
        let mode = fs::metadata(dir.path().join("maildrop").join(name.as_str()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let got = spool.pickup().unwrap();
        assert!(got.corrupt.is_empty() && got.errors.is_empty(), "{got:?}");
        assert_eq!(got.queued.len(), 1);
        assert_eq!(got.queued[0].0, name.as_str());
        let e = spool.entry(&got.queued[0].1).unwrap();
        assert_eq!(e.envelope.sender, "alice@mx.example.test");
        let rcpts: Vec<_> = e
            .recipients
            .iter()
            .map(|r| r.address.address.as_str())
            .collect();
        assert_eq!(rcpts, ["bob@example.test", "carol@relay.test"]);
        assert_eq!(e.envelope.client, format!("local (uid {} alice)", my_uid()));
        assert_eq!(e.envelope.hops, 1);
        assert_eq!(spool.message(&e.id).unwrap(), a_drop(0).message);
        assert_eq!(
            list(&dir.path().join("maildrop")).unwrap(),
            Vec::<String>::new()
        );
        // Nothing left: a second pickup queues nothing more.
        assert!(spool.pickup().unwrap().queued.is_empty());
        assert_eq!(spool.entries().unwrap().entries.len(), 1);
    }

    #[test]
    fn pickup_moves_what_is_not_a_maildrop_file_to_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let md = dir.path().join("maildrop");
        fs::write(md.join("garbage"), b"hello\n").unwrap();
        let mut lying = a_drop(my_uid() + 1);
        lying.user = "mallory".into();
        fs::write(md.join("lying"), lying.to_bytes()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", md.join("link")).unwrap();
        nix::unistd::mkfifo(
            &md.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::write(md.join(".tmp-fresh"), b"half").unwrap();
        let got = spool.pickup().unwrap();
        assert!(got.queued.is_empty(), "{got:?}");
        let mut why: Vec<(String, String)> = got
            .corrupt
            .iter()
            .map(|c| (c.name.clone(), c.reason.clone()))
            .collect();
        why.sort();
        assert_eq!(why.len(), 4, "{why:?}");
        assert_eq!(why[0], ("fifo".into(), "not a regular file".into()));
        assert!(
            why[1].0 == "garbage" && why[1].1.starts_with("maildrop file line 1: expected"),
            "{why:?}"
        );
        assert_eq!(why[2], ("link".into(), "a symbolic link".into()));
        assert_eq!(why[3].0, "lying");
        assert!(why[3].1.starts_with("header says uid"), "{why:?}");
        for n in ["garbage", "lying", "link", "fifo"] {
            assert!(
                dir.path()
                    .join("corrupt")
                    .join(format!("maildrop-{n}"))
                    .symlink_metadata()
                    .is_ok(),
                "{n}"
            );
        }
        // A fresh .tmp- file is someone's submission in progress: kept.
        assert_eq!(list(&md).unwrap(), vec![".tmp-fresh".to_string()]);
        assert!(got.removed_stale.is_empty());
        // A day later it is abandoned.
        let later = Arc::new(ManualClock::at(0));
        later.advance(std::time::Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 2 * 24 * 3600,
        ));
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), Schedule::default(), later).unwrap();
        let got = spool.pickup().unwrap();
        assert_eq!(got.removed_stale, vec![".tmp-fresh".to_string()]);
        assert_eq!(list(&md).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn pickup_takes_a_trusted_sender_from_the_spool_owner() {
        // The spool's owner (or root) is trusted; an untrusted owner's
        // claim is refused in tests/sendmail.rs, which has a second user.
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let mut d = a_drop(my_uid());
        d.trusted = true;
        d.sender_set = true;
        d.sender = "list-owner@example.test".into();
        let name = QueueId::generate(SystemTime::now());
        maildrop::drop_file(dir.path(), &name, &d).unwrap();
        let got = spool.pickup().unwrap();
        assert!(got.corrupt.is_empty(), "{got:?}");
        let e = spool.entry(&got.queued[0].1).unwrap();
        assert_eq!(e.envelope.sender, "list-owner@example.test");
    }

    #[test]
    fn the_attempt_that_finishes_an_entry_removes_it_instead_of_writing_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (spool, _) = open(tmp.path());
        let mut env = envelope();
        env.recipients = vec![Address::new("a@x.test"), Address::new("b@x.test")];
        let id = spool.enqueue(&env, b"Subject: s\n\nbody\n").unwrap();
        let temp = Attempt::Failed(crate::queue::entry::Failure {
            class: crate::status::Class::Temp,
            detail: (4, 1),
            diagnostic: "x-unix; later".into(),
            remote: None,
        });
        let got = spool.record_or_remove(&id, 0, &temp, 100).unwrap();
        assert!(matches!(got, (State::Deferred { .. }, false)), "{got:?}");
        let got = spool
            .record_or_remove(&id, 0, &Attempt::Delivered, 101)
            .unwrap();
        assert_eq!(got, (State::Delivered, false), "b still waits");
        assert_eq!(
            spool.entry(&id).unwrap().recipients[0].state,
            State::Delivered
        );
        let got = spool
            .record_or_remove(&id, 1, &Attempt::Delivered, 102)
            .unwrap();
        assert_eq!(got, (State::Delivered, true));
        assert!(!tmp.path().join("active").join(id.as_str()).exists());
        assert_eq!(
            list(&tmp.path().join("active")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(list(&tmp.path().join("tmp")).unwrap(), Vec::<String>::new());
        assert!(matches!(spool.entry(&id), Err(QueueError::NotFound(_))));
    }

    #[test]
    fn an_entry_is_one_file_until_its_state_changes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let msg = b"Subject: s\r\n\r\nend\r\n\nend\n".to_vec();
        let id = spool.enqueue(&envelope(), &msg).unwrap();
        let active = dir.path().join("active");
        assert_eq!(list(&active).unwrap(), vec![id.to_string()]);
        let data = fs::read(spool.entry_path(&id)).unwrap();
        assert!(data.starts_with(b"postroom-queue 1\n"));
        assert!(data.ends_with(&msg), "the message follows the envelope");
        assert_eq!(
            spool.message(&id).unwrap(),
            msg,
            "an `end` line in the body is body"
        );
        spool.record(&id, 0, &Attempt::Delivered, 1).unwrap();
        assert_eq!(
            list(&active).unwrap(),
            vec![id.to_string(), format!("{id}.env")]
        );
        assert_eq!(
            spool.entry(&id).unwrap().recipients[0].state,
            State::Delivered
        );
        assert_eq!(spool.message(&id).unwrap(), msg);
        spool.record(&id, 1, &Attempt::Delivered, 2).unwrap();
        spool.remove(&id).unwrap();
        assert_eq!(list(&active).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_cut_short_removal_leaves_no_stray_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let id = spool.enqueue(&envelope(), b"x").unwrap();
        spool.record(&id, 0, &Attempt::Delivered, 1).unwrap();
        // The entry's file went, the process died before its `.env` did.
        fs::remove_file(spool.entry_path(&id)).unwrap();
        drop(spool);
        let (_spool, rec) = open(dir.path());
        assert_eq!(rec.entries, 0);
        assert!(rec.corrupt.is_empty());
        assert_eq!(
            list(&dir.path().join("active")).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_entry_of_the_earlier_directory_layout_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = open(dir.path());
        let id = spool
            .enqueue(&envelope(), b"Subject: old\r\n\r\nbody\r\n")
            .unwrap();
        spool.record(&id, 0, &Attempt::Delivered, 1).unwrap();
        let want = spool.entry(&id).unwrap();
        drop(spool);
        // Rebuild it as the earlier layout wrote it.
        let active = dir.path().join("active");
        let old = active.join(id.as_str());
        fs::remove_file(&old).unwrap();
        fs::remove_file(active.join(format!("{id}.env"))).unwrap();
        fs::create_dir(&old).unwrap();
        fs::write(old.join("envelope"), want.to_text()).unwrap();
        fs::write(old.join("message"), b"Subject: old\r\n\r\nbody\r\n").unwrap();
        fs::write(old.join("envelope.new"), b"half").unwrap();
        let (spool, rec) = open(dir.path());
        assert_eq!((rec.entries, rec.corrupt.len()), (1, 0));
        assert_eq!(spool.entry(&id).unwrap(), want);
        assert_eq!(spool.message(&id).unwrap(), b"Subject: old\r\n\r\nbody\r\n");
        assert!(spool.entry_path(&id).is_file());
        // A conversion cut short after the directory was set aside is
        // undone and done again.
        drop(spool);
        fs::remove_file(&old).unwrap();
        fs::create_dir(active.join(format!("{id}.v1"))).unwrap();
        let v1 = active.join(format!("{id}.v1"));
        fs::write(v1.join("envelope"), want.to_text()).unwrap();
        fs::write(v1.join("message"), b"Subject: old\r\n\r\nbody\r\n").unwrap();
        let (spool, rec) = open(dir.path());
        assert_eq!((rec.entries, rec.corrupt.len()), (1, 0));
        assert_eq!(spool.entry(&id).unwrap(), want);
        assert_eq!(list(&active).unwrap(), vec![id.to_string()]);
    }
}
