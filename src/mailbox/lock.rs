//! Locking: NFS-safe dotlock files (procmail's `lockit`, spec §11) and
//! the fcntl write lock held on an mbox while it is written.
//!
//! Owns the lockfile protocol and nothing else: it never decides which
//! lockfile a recipe needs (that is `deliver`'s job) and never writes mail.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::time::Duration;

use super::{Level, name};

/// procmail's `MAX_locksize`: only lockfiles this small may be forced.
const MAX_LOCKSIZE: u64 = 16;

/// Mode of lockfiles (`LOCKperm`).
const LOCK_MODE: u32 = 0o444;

/// The tunables of dotlocking, from `LOCKSLEEP`, `LOCKTIMEOUT` and `SUSPEND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockParams {
    /// `LOCKSLEEP`: pause between attempts while the lock is busy (8 s).
    pub sleep: Duration,
    /// `LOCKTIMEOUT`: a lockfile older than this (whole seconds, measured
    /// with the filesystem's clock) is removed by force; zero never forces
    /// (1024 s).
    pub timeout: Duration,
    /// `SUSPEND`: pause after forcing a lock (16 s).
    pub suspend: Duration,
    /// Attempts on a transient error (ENOENT, ENOTDIR, EIO, ENOSPC,
    /// EDQUOT) before `Lock failure` (8, i.e. 7 pauses).
    pub retries: u32,
    /// Host name written into the temp file's name.
    pub host: Vec<u8>,
}

impl Default for LockParams {
    /// procmail's defaults, with this machine's host name.
    fn default() -> LockParams {
        LockParams {
            sleep: Duration::from_secs(8),
            timeout: Duration::from_secs(1024),
            suspend: Duration::from_secs(16),
            retries: 8,
            host: super::local_host(),
        }
    }
}

/// Failure to take a dotlock; procmail logs it as `Lock failure on "x"`.
#[derive(Debug, thiserror::Error)]
#[error("Lock failure on \"{}\"", .path.display())]
pub struct LockError {
    /// The lockfile.
    pub path: PathBuf,
    /// The last OS error met.
    #[source]
    pub source: io::Error,
}

/// A held dotlock; dropping it removes the lockfile.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
    held: bool,
    /// Its slot in [`HELD`], if one was free.
    slot: Option<usize>,
}

/// How many dotlocks [`unlink_held_locks`] can know of at once (a recipe
/// holds at most two: `LOCKFILE` and its local lockfile).
const MAX_HELD: usize = 32;

/// The absolute paths (leaked C strings) of the dotlocks held, with the pid
/// of the process holding each, so that a signal handler can remove them
/// without allocating or taking a lock (procmail removes its lockfiles
/// before it exits on a signal, spec §14). A clone made by fork(2) keeps
/// the entries of its parent, which the pid check skips.
static HELD: [AtomicPtr<libc::c_char>; MAX_HELD] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_HELD];
static HELD_PID: [AtomicI32; MAX_HELD] = [const { AtomicI32::new(0) }; MAX_HELD];

/// Records a held lockfile in [`HELD`]; `None` when it is full or the path
/// holds a NUL.
fn register(path: &Path) -> Option<usize> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let c = std::ffi::CString::new(abs.as_os_str().as_bytes())
        .ok()?
        .into_raw();
    for (i, slot) in HELD.iter().enumerate() {
        if slot
            .compare_exchange(std::ptr::null_mut(), c, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            HELD_PID[i].store(std::process::id() as i32, Ordering::SeqCst);
            return Some(i);
        }
    }
    // SAFETY: `c` came from CString::into_raw above and was not stored.
    drop(unsafe { std::ffi::CString::from_raw(c) });
    None
}

/// Forgets slot `i` of [`HELD`].
fn unregister(i: usize) {
    let c = HELD[i].swap(std::ptr::null_mut(), Ordering::SeqCst);
    if !c.is_null() {
        // SAFETY: every non-null entry came from CString::into_raw in
        // `register`, and the swap gave it to us alone.
        drop(unsafe { std::ffi::CString::from_raw(c) });
    }
}

/// Removes every dotlock this process holds. Async-signal-safe (atomic
/// loads, getpid(2) and unlink(2) only): for signal handlers that end the
/// process, which then leaves no lockfile behind.
pub fn unlink_held_locks() {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    for (slot, pid) in HELD.iter().zip(&HELD_PID) {
        let c = slot.load(Ordering::SeqCst);
        if !c.is_null() && pid.load(Ordering::SeqCst) == me {
            // SAFETY: a non-null entry is a valid C string until it is
            // unregistered, which a handler that never returns cannot race.
            unsafe { libc::unlink(c) };
        }
    }
}

/// Whether an error may go away if we wait (procmail's `nfsTRY` cases).
fn transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::EIO | libc::ENOSPC | libc::EDQUOT)
    )
}

/// `what "path"`, a procmail log line.
fn quoted(what: &str, path: &Path) -> Vec<u8> {
    super::quoted(what, path.as_os_str().as_bytes())
}

/// Makes the unique temp file `_<code>.<host>` beside `path`, mode 0444,
/// holding `0`; returns its path and its mtime (the filesystem's clock).
///
/// A temp file that cannot be made is logged with VERBOSE as `Error while
/// writing to "<temp name>"` before each retry, as procmail's `lockit`
/// does (checked: `LOCKFILE=nodir/x.lock` logs `Locking "nodir/x.lock"`,
/// then `Error while writing to "nodir/_Ys.GlCCrB.vm"`, eight times; not
/// logged without VERBOSE).
fn make_temp(
    path: &Path,
    host: &[u8],
    log: &mut dyn FnMut(Level, &[u8]),
) -> io::Result<(PathBuf, i64)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(OsStr::from_bytes(&name::temp_name(
            name::next_stamp(),
            std::process::id(),
            host,
        )));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(LOCK_MODE)
            .open(&tmp)
        {
            Ok(mut f) => {
                // "pid 0": a pid means nothing across NFS clients.
                let written = f.write_all(b"0");
                let meta = f.metadata();
                drop(f);
                match (written, meta) {
                    (Ok(()), Ok(m)) => return Ok((tmp, m.mtime())),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = fs::remove_file(&tmp);
                        return Err(e);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                log(Level::Verbose, &quoted("Error while writing to", &tmp));
                return Err(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EEXIST)))
}

/// One attempt: temp file, hard link to the lock name, unlink the temp.
/// Returns the temp file's mtime on EEXIST so the caller can judge age.
fn try_once(
    path: &Path,
    host: &[u8],
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(), (io::Error, i64)> {
    let (tmp, t) = make_temp(path, host, log).map_err(|e| (e, 0))?;
    let linked = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(()),
        // Over NFS the reply to a link() that worked can be lost; the link
        // count of the temp file tells the truth (spec §11).
        Err(e) => match fs::metadata(&tmp) {
            Ok(m) if m.nlink() == 2 => Ok(()),
            _ => Err((e, t)),
        },
    };
    let _ = fs::remove_file(&tmp);
    linked
}

impl DotLock {
    /// Takes the dotlock `path`, waiting as procmail's `lockit` does.
    ///
    /// While the lock exists: if it is at most 16 bytes and older than
    /// `timeout`, it is removed (`Forcing lock on "x"`) and we pause for
    /// `suspend`; otherwise we pause for `sleep` and try again, for ever.
    /// Transient errors are retried `retries` times; any other error fails
    /// at once. Failures are logged as `Lock failure on "x"`.
    pub fn acquire(
        path: &Path,
        p: &LockParams,
        log: &mut dyn FnMut(Level, &[u8]),
    ) -> Result<DotLock, LockError> {
        let mut permanent = p.retries.max(1);
        let mut tried_force = false;
        loop {
            log(Level::Verbose, &quoted("Locking", path));
            let (err, t) = match try_once(path, &p.host, log) {
                Ok(()) => {
                    return Ok(DotLock {
                        path: path.to_path_buf(),
                        held: true,
                        slot: register(path),
                    });
                }
                Err(e) => e,
            };
            if err.kind() == io::ErrorKind::AlreadyExists {
                let stale = fs::symlink_metadata(path).ok().filter(|m| {
                    let timeout = p.timeout.as_secs() as i64;
                    m.len() <= MAX_LOCKSIZE && timeout > 0 && timeout < t - m.mtime()
                });
                if let Some(m) = stale {
                    if tried_force {
                        return Err(fail(path, err, log));
                    }
                    if m.is_dir() || fs::remove_file(path).is_err() {
                        tried_force = true;
                        log(Level::Always, &quoted("Forced unlock denied on", path));
                    } else {
                        log(Level::Always, &quoted("Forcing lock on", path));
                        std::thread::sleep(p.suspend);
                        continue;
                    }
                } else {
                    tried_force = false;
                }
                permanent = p.retries.max(1);
            } else if transient(&err) {
                permanent -= 1;
                if permanent == 0 {
                    return Err(fail(path, err, log));
                }
            } else {
                return Err(fail(path, err, log));
            }
            std::thread::sleep(p.sleep);
        }
    }

    /// The lockfile's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lockfile now, logging `Couldn't unlock "x"` on failure.
    pub fn release(mut self, log: &mut dyn FnMut(Level, &[u8])) -> io::Result<()> {
        self.held = false;
        log(Level::Verbose, &quoted("Unlocking", &self.path));
        let removed = fs::remove_file(&self.path).inspect_err(|_| {
            log(Level::Always, &quoted("Couldn't unlock", &self.path));
        });
        if let Some(i) = self.slot.take() {
            unregister(i);
        }
        removed
    }
}

/// Logs and builds a `Lock failure`.
fn fail(path: &Path, source: io::Error, log: &mut dyn FnMut(Level, &[u8])) -> LockError {
    log(Level::Always, &quoted("Lock failure on", path));
    LockError {
        path: path.to_path_buf(),
        source,
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if self.held {
            let _ = fs::remove_file(&self.path);
        }
        if let Some(i) = self.slot.take() {
            unregister(i);
        }
    }
}

/// fcntl commands for the kernel lock. On Linux these are open file
/// description locks: they conflict with the classic POSIX locks of
/// procmail and mutt like those do, and also between two descriptors of
/// one process, so threads delivering in-process exclude each other too.
#[cfg(target_os = "linux")]
const SETLK: (libc::c_int, libc::c_int) = (libc::F_OFD_SETLKW, libc::F_OFD_SETLK);
/// fcntl commands for the kernel lock (classic POSIX locks).
#[cfg(not(target_os = "linux"))]
const SETLK: (libc::c_int, libc::c_int) = (libc::F_SETLKW, libc::F_SETLK);

/// Sets or clears the fcntl lock on the whole of `file`, waiting for it
/// if `wait`.
///
/// procmail locks from the current end of file onwards; the whole file is
/// a superset and also conflicts with mutt's and mail.local's whole-file
/// locks, so every mbox writer on the machine excludes every other.
fn fcntl_whole(file: &File, kind: libc::c_short, wait: bool) -> io::Result<()> {
    // SAFETY: `flock` is plain old data; zeroed is a valid value and every
    // field we rely on is set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // l_pid must be 0 for OFD locks; zeroed above.
    let cmd = if wait { SETLK.0 } else { SETLK.1 };
    loop {
        // SAFETY: the fd is open for the lifetime of `file`, and `fl` is a
        // valid flock structure that outlives the call.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits for and takes the fcntl write lock on the whole of `file`
/// (procmail's "kernel-lock", spec §10.3).
pub(crate) fn kernel_lock(file: &File) -> io::Result<()> {
    fcntl_whole(file, libc::F_WRLCK as libc::c_short, true)
}

/// Releases the lock taken by [`kernel_lock`].
pub(crate) fn kernel_unlock(file: &File) -> io::Result<()> {
    fcntl_whole(file, libc::F_UNLCK as libc::c_short, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, SystemTime};

    fn quick() -> LockParams {
        LockParams {
            sleep: Duration::from_millis(10),
            timeout: Duration::from_secs(1024),
            suspend: Duration::from_millis(10),
            retries: 8,
            host: b"testhost".to_vec(),
        }
    }

    /// The paths registered for `unlink_held_locks` (which is not called
    /// here: other tests in this process hold locks of their own; the
    /// integration test `signals_end_the_run_like_procmail` runs it).
    fn registered() -> Vec<Vec<u8>> {
        let me = std::process::id() as i32;
        HELD.iter()
            .zip(&HELD_PID)
            .filter_map(|(c, pid)| {
                let c = c.load(Ordering::SeqCst);
                (!c.is_null() && pid.load(Ordering::SeqCst) == me)
                    // SAFETY: a registered entry is a valid C string.
                    .then(|| unsafe { std::ffi::CStr::from_ptr(c) }.to_bytes().to_vec())
            })
            .collect()
    }

    #[test]
    fn held_locks_are_registered_for_signal_handlers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.lock"), dir.path().join("b.lock"));
        let la = DotLock::acquire(&a, &quick(), &mut |_, _| {}).unwrap();
        let lb = DotLock::acquire(&b, &quick(), &mut |_, _| {}).unwrap();
        let name = |p: &Path| p.as_os_str().as_bytes().to_vec();
        assert!(registered().contains(&name(&a)));
        assert!(registered().contains(&name(&b)));
        drop(lb);
        assert!(
            !registered().contains(&name(&b)),
            "a dropped lock stays registered"
        );
        la.release(&mut |_, _| {}).unwrap();
        assert!(
            !registered().contains(&name(&a)),
            "a released lock stays registered"
        );
    }

    #[test]
    fn lock_file_is_like_procmails_and_goes_away_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.lock");
        let lock = DotLock::acquire(&path, &quick(), &mut |_, _| {}).unwrap();
        // Checked against `strace procmail`: mode 0444 (masked by umask),
        // content "0", and the temp file is gone.
        assert_eq!(fs::read(&path).unwrap(), b"0");
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o222, 0, "lockfile must not be writable: {mode:o}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("box.lock")]);
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn busy_lock_waits_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.lock");
        fs::write(&path, "0").unwrap();
        let p2 = path.clone();
        let remover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            fs::remove_file(p2).unwrap();
        });
        let start = Instant::now();
        let mut lines = Vec::new();
        let lock = DotLock::acquire(&path, &quick(), &mut |l, t| {
            lines.push((l, t.to_vec()));
        })
        .unwrap();
        remover.join().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(lines.iter().all(|(l, _)| *l == Level::Verbose), "{lines:?}");
        assert!(lines.len() >= 2, "expected several attempts: {lines:?}");
        lock.release(&mut |_, _| {}).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn stale_lock_is_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.lock");
        fs::write(&path, "0").unwrap();
        let old = SystemTime::now() - Duration::from_secs(2000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut lines = Vec::new();
        let lock = DotLock::acquire(&path, &quick(), &mut |l, t| {
            if l == Level::Always {
                lines.push(String::from_utf8_lossy(t).into_owned());
            }
        })
        .unwrap();
        let want = vec![format!("Forcing lock on \"{}\"", path.display())];
        assert_eq!(lines, want);
        drop(lock);
    }

    #[test]
    fn big_or_young_locks_are_not_forced() {
        for (content, age) in [(&b"01234567890123456"[..], 2000u64), (&b"0"[..], 10)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("box.lock");
            fs::write(&path, content).unwrap();
            let old = SystemTime::now() - Duration::from_secs(age);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
            let p2 = path.clone();
            let remover = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(80));
                fs::remove_file(p2).unwrap();
            });
            let mut forced = false;
            let lock = DotLock::acquire(&path, &quick(), &mut |l, _| forced |= l == Level::Always);
            remover.join().unwrap();
            assert!(lock.is_ok());
            assert!(
                !forced,
                "size {} age {age} must not be forced",
                content.len()
            );
        }
    }

    #[test]
    fn missing_directory_retries_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodir/box.lock");
        let mut attempts = 0;
        let mut failure = Vec::new();
        let mut temp_errors = 0;
        let err = DotLock::acquire(&path, &quick(), &mut |l, t| match l {
            Level::Verbose if t.starts_with(b"Locking \"") => attempts += 1,
            Level::Verbose => {
                // Checked against procmail: `Error while writing to
                // "nodir/_<code>.<host>"` after each `Locking`.
                let t = String::from_utf8_lossy(t).into_owned();
                let want = format!(
                    "Error while writing to \"{}/_",
                    path.parent().unwrap().display()
                );
                assert!(t.starts_with(&want), "{t}");
                temp_errors += 1;
            }
            _ => failure.push(String::from_utf8_lossy(t).into_owned()),
        })
        .unwrap_err();
        assert_eq!(temp_errors, 8);
        // nfsTRY: eight attempts, i.e. seven pauses (spec §11: ~56 s with
        // LOCKSLEEP=8 on the real procmail).
        assert_eq!(attempts, 8);
        assert_eq!(err.source.raw_os_error(), Some(libc::ENOENT));
        let want = vec![format!("Lock failure on \"{}\"", path.display())];
        assert_eq!(failure, want);
        assert_eq!(err.to_string(), want[0]);
    }

    #[test]
    fn permission_error_fails_at_once() {
        if nix::unistd::geteuid().is_root() {
            eprintln!("skipping: root ignores directory permissions");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        let mut attempts = 0;
        let err = DotLock::acquire(&ro.join("x.lock"), &quick(), &mut |l, t| {
            attempts += (l == Level::Verbose && t.starts_with(b"Locking")) as u32
        });
        assert!(err.is_err());
        assert_eq!(attempts, 1);
    }

    #[test]
    fn kernel_lock_excludes_another_descriptor_of_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let a = File::create(&path).unwrap();
        let b = File::options().append(true).open(&path).unwrap();
        kernel_lock(&a).unwrap();
        let busy = fcntl_whole(&b, libc::F_WRLCK as libc::c_short, false).unwrap_err();
        assert!(
            matches!(busy.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)),
            "{busy}"
        );
        kernel_unlock(&a).unwrap();
        fcntl_whole(&b, libc::F_WRLCK as libc::c_short, false).unwrap();
    }
}
