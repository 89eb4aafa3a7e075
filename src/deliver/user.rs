//! The recipient and trust (procmail-semantics §14): passwd lookups, the
//! switch to the recipient's identity, and the ownership and mode checks an
//! rcfile must pass before it is read.
//!
//! This module owns those rules and nothing else. It never reads an rcfile's
//! contents, never writes to the log (it returns the reason and the caller
//! logs procmail's `Suspicious rcfile "x"`), and never switches identity
//! except in [`become_user`].

use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::unistd::{self, Gid, Uid};

use crate::status::sysexits;

/// The login shell procmail uses when the passwd entry has none.
const BIN_SH: &[u8] = b"/bin/sh";

/// One user from the passwd database, with procmail's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The login name as passwd spells it (becomes `LOGNAME`).
    pub name: Vec<u8>,
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The home directory (becomes `HOME`).
    pub home: PathBuf,
    /// The login shell (becomes `SHELL` on Debian); `/bin/sh` when passwd
    /// leaves it empty, as procmail does (checked: `procmail -d` for a user
    /// with an empty shell field runs pipes with `SHELL=/bin/sh`).
    pub shell: Vec<u8>,
}

impl User {
    /// Builds a [`User`] from a nix passwd entry.
    fn from_passwd(pw: unistd::User) -> User {
        let shell = pw.shell.as_os_str().as_bytes();
        User {
            name: pw.name.into_bytes(),
            uid: pw.uid.as_raw(),
            gid: pw.gid.as_raw(),
            home: pw.dir,
            shell: if shell.is_empty() {
                BIN_SH.to_vec()
            } else {
                shell.to_vec()
            },
        }
    }
}

/// Looks up a recipient by name (`procmail -d name`).
///
/// Like procmail (authenticate.c `auth_finduser`, checked with `procmail -d
/// Root` and `-d ROOT@x.example`, which both deliver to root), a name that
/// is not found as given is tried again cut at its first `@` and folded to
/// ASCII lowercase. Returns `None` for unknown users, for names that are not
/// UTF-8 or contain NUL, and when the passwd database cannot be read.
pub fn lookup(name: &[u8]) -> Option<User> {
    if let Some(user) = getpwnam(name) {
        return Some(user);
    }
    let local = match name.iter().position(|&b| b == b'@') {
        Some(at) => &name[..at],
        None => name,
    };
    getpwnam(&local.to_ascii_lowercase())
}

/// getpwnam(3) for one exact name.
fn getpwnam(name: &[u8]) -> Option<User> {
    let name = std::str::from_utf8(name).ok()?;
    if name.is_empty() {
        return None;
    }
    unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(User::from_passwd)
}

/// The invoking user (procmail without `-d`).
///
/// The passwd entry of the real uid; when `LOGNAME` names another entry with
/// the same uid, that one is preferred (procmail.c's `idhint`, for several
/// names sharing a uid). A uid missing from passwd gives procmail's fallback:
/// the uid in decimal as the name, home `/`, shell `/bin/sh`.
pub fn current() -> User {
    let uid = unistd::getuid();
    if let Some(hint) = std::env::var_os("LOGNAME")
        && let Some(user) = lookup(hint.as_bytes())
        && user.uid == uid.as_raw()
    {
        return user;
    }
    match unistd::User::from_uid(uid) {
        Ok(Some(pw)) => User::from_passwd(pw),
        _ => User {
            name: uid.as_raw().to_string().into_bytes(),
            uid: uid.as_raw(),
            gid: unistd::getgid().as_raw(),
            home: PathBuf::from("/"),
            shell: BIN_SH.to_vec(),
        },
    }
}

/// Why [`become_user`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BecomeError {
    /// Not root, and not already that user (procmail: `Insufficient
    /// privileges`, exit 77).
    #[error("insufficient privileges to become user `{name}`")]
    InsufficientPrivileges {
        /// The user asked for, for the message.
        name: String,
    },
    /// A system call failed while switching identity.
    #[error("cannot {step} for user `{name}`: {source}")]
    Os {
        /// Which step: `initgroups`, `setgid` or `setuid`.
        step: &'static str,
        /// The user, for the message.
        name: String,
        /// The error from the system.
        source: nix::Error,
    },
}

impl BecomeError {
    /// The sysexits code procmail exits with: 77 (EX_NOPERM) for missing
    /// privileges, 71 (EX_OSERR) when the system refused a switch root is
    /// allowed to make.
    pub fn exit_code(&self) -> i32 {
        match self {
            BecomeError::InsufficientPrivileges { .. } => sysexits::EX_NOPERM,
            BecomeError::Os { .. } => sysexits::EX_OSERR,
        }
    }
}

/// Switches this process to `user`: supplementary groups, gid, then uid,
/// real and effective, for good.
///
/// Allowed as in procmail's `enoughprivs`: when the effective uid is root,
/// when the real uid already is the user's, or when both the effective uid
/// and gid already are. When not root nothing is changed. This affects the
/// whole process (all threads): call it in the per-recipient process, before
/// any other thread is started.
pub fn become_user(user: &User) -> Result<(), BecomeError> {
    become_keeping(user, None)
}

/// [`become_user`], keeping `saved_gid` (when root) as the saved
/// set-group-ID.
fn become_keeping(user: &User, saved_gid: Option<Gid>) -> Result<(), BecomeError> {
    let name = String::from_utf8_lossy(&user.name).into_owned();
    let euid = unistd::geteuid().as_raw();
    if euid != 0 {
        let allowed = unistd::getuid().as_raw() == user.uid
            || (euid == user.uid && unistd::getegid().as_raw() == user.gid);
        return if allowed {
            Ok(())
        } else {
            Err(BecomeError::InsufficientPrivileges { name })
        };
    }
    let os = |step| {
        let name = name.clone();
        move |source| BecomeError::Os { step, name, source }
    };
    let cname = CString::new(user.name.clone()).map_err(|_| BecomeError::Os {
        step: "initgroups",
        name: name.clone(),
        source: nix::Error::EINVAL,
    })?;
    let gid = Gid::from_raw(user.gid);
    // Checked: procmail -d gives the pipe `groups=<primary>,<supplementary>`.
    unistd::initgroups(&cname, gid).map_err(os("initgroups"))?;
    match saved_gid {
        Some(saved) => unistd::setresgid(gid, gid, saved).map_err(os("setresgid"))?,
        None => unistd::setgid(gid).map_err(os("setgid"))?,
    }
    unistd::setuid(Uid::from_raw(user.uid)).map_err(os("setuid"))?;
    Ok(())
}

/// The spool directory's group, kept after [`become_user_in_spool`] for
/// dotlocking the recipient's own system mailbox, and the prefix
/// (`/var/mail/NAME`) of the lockfiles it may make.
static SPOOL_GROUP: OnceLock<(Gid, Vec<u8>)> = OnceLock::new();

/// [`become_user`] for `-d` delivery beside a spool directory such as
/// `/var/mail` (`drwxrwsr-x root mail` on Debian).
///
/// Users cannot create files there, but procmail, installed setgid `mail`,
/// still makes `/var/mail/NAME.lock` (procmail-semantics §11: DEFAULT is
/// locked with `$DEFAULT$LOCKEXT`; checked: `procmail -d user` logs no
/// `Lock failure` and leaves no lockfile). We are started as root instead,
/// so when the spool directory is writable by a group that is not the
/// user's, that group is kept as the saved set-group-ID: it is not
/// effective, the programs started later lose it at exec(2), and only
/// [`with_spool_group`] takes it up, for the user's own mailbox lockfile.
pub fn become_user_in_spool(user: &User, spool: &Path) -> Result<(), BecomeError> {
    let keep = std::fs::metadata(spool).ok().filter(|m| {
        unistd::geteuid().is_root()
            && m.permissions().mode() & S_IWGRP != 0
            && m.gid() != user.gid
            && m.uid() != user.uid
    });
    let Some(meta) = keep else {
        return become_user(user);
    };
    let spool_gid = Gid::from_raw(meta.gid());
    become_keeping(user, Some(spool_gid))?;
    let mut prefix = spool.as_os_str().as_bytes().to_vec();
    if !prefix.ends_with(b"/") {
        prefix.push(b'/');
    }
    prefix.extend_from_slice(&user.name);
    let _ = SPOOL_GROUP.set((spool_gid, prefix));
    Ok(())
}

/// Makes the kept spool group effective for good, if there is one, so that
/// a signal handler about to exit can remove `/var/mail/NAME.lock`.
/// Async-signal-safe: `OnceLock::get` never blocks (it loads an atomic and
/// reads a value set once) and the raw setresgid(2) system call acts for
/// this thread only, which is enough for a process about to _exit.
pub fn take_spool_group_for_exit() {
    if let Some((gid, _)) = SPOOL_GROUP.get() {
        let keep = libc::gid_t::MAX; // -1: leave unchanged
        // SAFETY: a plain system call with integer arguments.
        unsafe { libc::syscall(libc::SYS_setresgid, keep, gid.as_raw(), keep) };
    }
}

/// Runs `f` with the spool group kept by [`become_user_in_spool`] as the
/// effective group when `lockfile` is the recipient's own in the spool
/// directory (`/var/mail/NAME.lock`); otherwise, or when no group was
/// kept, just runs `f`. Use it both to make such a lockfile and to remove
/// it.
pub fn with_spool_group<T>(lockfile: &Path, f: impl FnOnce() -> T) -> T {
    let Some((gid, prefix)) = SPOOL_GROUP.get() else {
        return f();
    };
    if !is_own_spool_lock(lockfile, prefix) || unistd::setegid(*gid).is_err() {
        return f();
    }
    let got = f();
    // Back to the user's group; the saved gid stays for the next lock.
    let _ = unistd::setegid(unistd::getgid());
    got
}

/// Whether `lockfile` is `prefix` (`/var/mail/NAME`) plus `.lock`: the
/// recipient's own mailbox lock with the default `LOCKEXT`. Nothing else,
/// so that a rcfile cannot use the group to lock another user's mailbox
/// (`/var/mail/NAMEx.lock`, `/var/mail/NAME.x` for a user `NAME.x`).
fn is_own_spool_lock(lockfile: &Path, prefix: &[u8]) -> bool {
    lockfile.as_os_str().as_bytes().strip_prefix(prefix) == Some(b".lock")
}

/// The state of the recipient's system mailbox after
/// [`prepare_system_mailbox`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemMailbox {
    /// Usable (or left alone); the lines are procmail's notes for stderr
    /// (`Renaming bogus mailbox "x" info "y"`, `Enforcing stricter
    /// permissions on "x"`, `Couldn't create "x"`).
    Ready(Vec<String>),
    /// A setuid (or, for a file, setgid) mailbox: SysV autoforwarding,
    /// which procmail refuses with `Autoforwarding mailbox found` and exit
    /// 67 (EX_NOUSER).
    Autoforward,
}

/// Bits of a mailbox's mode by which its owner asks procmail to leave its
/// permissions alone (procmail-semantics §14: "unless u+x is set").
const OVERRIDE_MASK: u32 = 0o100 | 0o4000 | 0o2000 | 0o1000;

/// Checks and creates `spool/NAME`, the system mailbox, as root before the
/// switch to the user (procmail-semantics §14; each case checked with
/// Debian's `procmail -d`):
/// * a mailbox the user does not own, a symlink, a hard-linked file or a
///   directory without `u+x` is bogus: it is renamed to
///   `BOGUS.NAME.<inode code>` in the spool directory and a new one made,
///   so that mail never goes through a link to someone else's file;
/// * a setuid mailbox (or a setgid file) is [`SystemMailbox::Autoforward`];
/// * permissions looser than `0600` (`0660` in a group-writable spool) are
///   tightened, unless a bit of `u+x`, setuid, setgid or sticky is set;
/// * a missing mailbox is created owned by the user: `0660` in the spool
///   directory's group when that group may write the directory (Debian's
///   `drwxrwsr-x root mail`: procmail, setgid mail, makes `-rw-rw---- USER
///   mail`, so mail readers of that group can lock and rewrite it), else
///   `0600` in the user's group.
///
/// Does nothing unless the effective uid is root.
pub fn prepare_system_mailbox(user: &User, spool: &Path) -> SystemMailbox {
    use std::os::unix::fs::OpenOptionsExt;
    let mut notes = Vec::new();
    if !unistd::geteuid().is_root() {
        return SystemMailbox::Ready(notes);
    }
    let _ = std::fs::create_dir_all(spool);
    let group = std::fs::metadata(spool)
        .ok()
        .filter(|m| m.mode() & S_IWGRP != 0)
        .map(|m| m.gid());
    // The umask procmail applies to the mailbox: 077, sparing group
    // read/write in a group-writable spool (checked: 0644 becomes 0640).
    let cumask = if group.is_some() { 0o017 } else { 0o077 };
    let path = spool.join(OsStr::from_bytes(&user.name));
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        let mode = meta.mode();
        let bogus = meta.uid() != user.uid
            || if meta.is_dir() {
                mode & 0o100 == 0
            } else {
                !meta.is_file() || meta.nlink() != 1
            };
        if !bogus {
            if mode & 0o4000 != 0 || (!meta.is_dir() && mode & 0o2000 != 0) {
                return SystemMailbox::Autoforward;
            }
            if mode & OVERRIDE_MASK == 0 && mode & cumask != 0 {
                notes.push(format!(
                    "Enforcing stricter permissions on \"{}\"",
                    path.display()
                ));
                let tight = std::fs::Permissions::from_mode(mode & 0o7777 & !cumask);
                let _ = std::fs::set_permissions(&path, tight);
            }
            return SystemMailbox::Ready(notes);
        }
        let mut name = b"BOGUS.".to_vec();
        name.extend_from_slice(&user.name);
        name.push(b'.');
        name.extend_from_slice(&crate::mailbox::inode_code(meta.ino()));
        let to = spool.join(OsStr::from_bytes(&name));
        // procmail's text, "info" included (sic), for log watchers.
        notes.push(format!(
            "Renaming bogus mailbox \"{}\" info \"{}\"",
            path.display(),
            to.display()
        ));
        if std::fs::rename(&path, &to).is_err() {
            notes.push(format!("Couldn't create \"{}\"", path.display()));
            return SystemMailbox::Ready(notes);
        }
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    match created {
        Ok(f) => {
            let _ = std::os::unix::fs::fchown(&f, Some(user.uid), Some(group.unwrap_or(user.gid)));
            if group.is_some() {
                let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
            }
        }
        Err(_) => notes.push(format!("Couldn't create \"{}\"", path.display())),
    }
    SystemMailbox::Ready(notes)
}

/// Whether an rcfile may be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// It passes every check.
    Ok,
    /// It must be refused; the caller logs `Suspicious rcfile "x"` (and then
    /// `Couldn't read "x"`) and goes on as procmail does. The string says
    /// which check failed, for our own diagnostics.
    Suspicious(String),
}

/// Checks an rcfile by path (spec §14; procmail.c, after opening it).
///
/// Prefer [`rcfile_trust_opened`] with the open file, as procmail does, so
/// the file checked is the file read. See there for the rules.
pub fn rcfile_trust(path: &Path, user: &User, is_home_procmailrc: bool) -> Trust {
    match std::fs::metadata(path) {
        Ok(meta) => rcfile_trust_meta(&meta, path, user, is_home_procmailrc),
        Err(err) => Trust::Suspicious(format!("cannot stat {}: {err}", path.display())),
    }
}

/// Checks an rcfile that is already open (procmail uses fstat(2) on it).
///
/// procmail checks every rcfile except one named relative to the current
/// directory (`-m rc`, `./rc`): the caller skips the call for those. The file
/// is refused when:
/// * it is owned by neither `user` nor root, or is world-writable, or — for
///   `$HOME/.procmailrc` only — is group-writable with a group other than the
///   user's primary group (GROUP_PER_USER); `/dev/null` is exempt;
/// * its directory (the path up to the last `/`, `.` if there is none)
///   cannot be stat'ed;
/// * its directory is not sticky and is writable *and* searchable by others,
///   or — for `$HOME/.procmailrc` only — writable and searchable by a group
///   other than the user's primary group.
///
/// All checked against procmail: owner `nobody`, `o+w`, `g+w` with root's
///   group and with `nogroup`, directory modes 0777, 0776 (accepted: not
///   searchable), 1777, 0775 with a foreign group (accepted for an explicit
///   rcfile, refused for `.procmailrc`), 0764, 1775, a symlink owned by
///   `nobody` (the target counts) and `/dev/null`.
pub fn rcfile_trust_opened(
    file: &File,
    path: &Path,
    user: &User,
    is_home_procmailrc: bool,
) -> Trust {
    match file.metadata() {
        Ok(meta) => rcfile_trust_meta(&meta, path, user, is_home_procmailrc),
        Err(err) => Trust::Suspicious(format!("cannot stat {}: {err}", path.display())),
    }
}

/// Mode bits, spelled as procmail's checks use them.
const S_IWOTH: u32 = 0o002;
const S_IXOTH: u32 = 0o001;
const S_IWGRP: u32 = 0o020;
const S_IXGRP: u32 = 0o010;
const S_ISVTX: u32 = 0o1000;

/// The checks of [`rcfile_trust_opened`] on the file's metadata.
fn rcfile_trust_meta(meta: &Metadata, path: &Path, user: &User, home: bool) -> Trust {
    let mode = meta.permissions().mode();
    // /dev/null is a special case in procmail.c: its owner and modes are not
    // checked (a system file every user may name as rcfile).
    if path.as_os_str().as_bytes() != b"/dev/null" {
        if meta.uid() != user.uid && meta.uid() != 0 {
            return Trust::Suspicious(format!(
                "{} is owned by uid {}, neither by {} nor by root",
                path.display(),
                meta.uid(),
                String::from_utf8_lossy(&user.name)
            ));
        }
        if mode & S_IWOTH != 0 {
            return Trust::Suspicious(format!("{} is world-writable", path.display()));
        }
        if home && mode & S_IWGRP != 0 && meta.gid() != user.gid {
            return Trust::Suspicious(format!(
                "{} is writable by group {}, not the user's primary group",
                path.display(),
                meta.gid()
            ));
        }
    }
    let dir = parent_dir(path);
    let dmeta = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(err) => {
            return Trust::Suspicious(format!("cannot stat {}: {err}", dir.display()));
        }
    };
    let dmode = dmeta.permissions().mode();
    if dmode & S_ISVTX != 0 {
        return Trust::Ok;
    }
    // procmail only objects to a directory others can both write and search.
    if dmode & (S_IWOTH | S_IXOTH) == S_IWOTH | S_IXOTH {
        return Trust::Suspicious(format!(
            "directory {} is world-writable and not sticky",
            dir.display()
        ));
    }
    if home && dmode & (S_IWGRP | S_IXGRP) == S_IWGRP | S_IXGRP && dmeta.gid() != user.gid {
        return Trust::Suspicious(format!(
            "directory {} is writable by group {}, not the user's primary group",
            dir.display(),
            dmeta.gid()
        ));
    }
    Trust::Ok
}

/// The directory procmail checks: the path up to and including its last `/`
/// (so `/x` gives `/`); `.` when there is no `/` (procmail never checks such
/// a path, since relative rcfiles are made absolute or not checked).
fn parent_dir(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => PathBuf::from(OsStr::from_bytes(&bytes[..=i])),
        None => PathBuf::from("."),
    }
}

/// This machine's name as procmail's `HOST` default: uname's nodename,
/// which on Linux is gethostname(2). Empty if it cannot be read.
pub fn hostname() -> Vec<u8> {
    unistd::gethostname()
        .map(|name| name.as_bytes().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// uid/gid of `nobody`/`nogroup` on Debian; used as "someone else".
    const NOBODY: u32 = 65534;

    fn is_root() -> bool {
        unistd::geteuid().is_root()
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn chown(path: &Path, uid: Option<u32>, gid: Option<u32>) {
        unistd::chown(path, uid.map(Uid::from_raw), gid.map(Gid::from_raw)).unwrap();
    }

    /// The recipient of the trust tests: the current uid, primary group 4322
    /// (a group nothing on the machine uses).
    fn me() -> User {
        User {
            name: b"me".to_vec(),
            uid: unistd::geteuid().as_raw(),
            gid: 4322,
            home: PathBuf::from("/nonexistent"),
            shell: b"/bin/sh".to_vec(),
        }
    }

    /// A directory (mode 0755) with an rcfile (mode 0644) in it.
    fn rc_in_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let rc = dir.path().join(".procmailrc");
        std::fs::write(&rc, "DEFAULT=/dev/null\n").unwrap();
        chmod(&rc, 0o644);
        (dir, rc)
    }

    #[test]
    fn lookup_root() {
        let root = lookup(b"root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.name, b"root");
        assert_eq!(root.home, PathBuf::from("/root"));
    }

    #[test]
    fn lookup_folds_case_and_drops_the_domain() {
        // Checked with procmail: `-d Root` and `-d ROOT@x.example` deliver
        // to /var/mail/root; `-d nosuch` gives `Unknown user`, exit 67.
        for name in [&b"Root"[..], b"ROOT@x.example", b"root@"] {
            let got = lookup(name).map(|u| u.name);
            assert_eq!(
                got,
                Some(b"root".to_vec()),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn lookup_missing() {
        for name in [&b"no-such-user-postroom"[..], b"", b"a\0b", b"\xff"] {
            assert_eq!(lookup(name), None, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn empty_login_shell_becomes_bin_sh() {
        let pw = unistd::User::from_uid(Uid::from_raw(0)).unwrap().unwrap();
        let pw = unistd::User {
            shell: PathBuf::new(),
            ..pw
        };
        assert_eq!(User::from_passwd(pw).shell, b"/bin/sh");
    }

    #[test]
    fn current_is_the_real_uid() {
        let got = current();
        assert_eq!(got.uid, unistd::getuid().as_raw());
        assert!(!got.name.is_empty());
    }

    #[test]
    fn hostname_is_the_kernels() {
        let want = std::fs::read("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), want.trim_ascii_end());
    }

    #[test]
    fn trust_file_modes() {
        // Each case checked against procmail (see rcfile_trust_opened); gid
        // 4322 is the user's primary group, NOBODY a foreign one.
        struct Case {
            what: &'static str,
            mode: u32,
            owner: Option<u32>,
            group: Option<u32>,
            home: bool,
            want_ok: bool,
        }
        let me = me();
        let cases = [
            Case {
                what: "plain",
                mode: 0o644,
                owner: None,
                group: None,
                home: true,
                want_ok: true,
            },
            Case {
                what: "world-writable",
                mode: 0o646,
                owner: None,
                group: None,
                home: false,
                want_ok: false,
            },
            Case {
                what: "g+w primary group",
                mode: 0o664,
                owner: None,
                group: Some(4322),
                home: true,
                want_ok: true,
            },
            Case {
                what: "g+w foreign group, home",
                mode: 0o664,
                owner: None,
                group: Some(NOBODY),
                home: true,
                want_ok: false,
            },
            Case {
                what: "g+w foreign group, named",
                mode: 0o664,
                owner: None,
                group: Some(NOBODY),
                home: false,
                want_ok: true,
            },
            Case {
                what: "owned by someone else",
                mode: 0o644,
                owner: Some(NOBODY),
                group: None,
                home: false,
                want_ok: false,
            },
            Case {
                what: "owned by root",
                mode: 0o644,
                owner: Some(0),
                group: None,
                home: true,
                want_ok: true,
            },
        ];
        for case in cases {
            if (case.owner.is_some() || case.group.is_some()) && !is_root() {
                continue; // chown needs root (CI runs the tests as root)
            }
            let (_dir, rc) = rc_in_dir();
            if case.owner.is_some() || case.group.is_some() {
                chown(&rc, case.owner, case.group);
            }
            chmod(&rc, case.mode);
            let got = rcfile_trust(&rc, &me, case.home);
            assert_eq!(got == Trust::Ok, case.want_ok, "{}: {got:?}", case.what);
            let file = File::open(&rc).unwrap();
            let got2 = rcfile_trust_opened(&file, &rc, &me, case.home);
            assert_eq!(got2, got, "{}", case.what);
        }
    }

    #[test]
    fn trust_directory_modes() {
        let me = me();
        // (what, dir mode, dir group, home, want_ok); checked against
        // procmail, including the quirk that o+w without o+x is accepted.
        let cases: &[(&str, u32, Option<u32>, bool, bool)] = &[
            ("0777", 0o777, None, false, false),
            ("0776: not searchable", 0o776, None, false, true),
            ("1777: sticky", 0o1777, None, false, true),
            (
                "0775 foreign group, named",
                0o775,
                Some(NOBODY),
                false,
                true,
            ),
            ("0775 foreign group, home", 0o775, Some(NOBODY), true, false),
            ("0775 primary group, home", 0o775, Some(4322), true, true),
            ("0764 foreign group, home", 0o764, Some(NOBODY), true, true),
            ("1775 foreign group, home", 0o1775, Some(NOBODY), true, true),
        ];
        for &(what, mode, group, home, want_ok) in cases {
            if group.is_some() && !is_root() {
                continue;
            }
            let (dir, rc) = rc_in_dir();
            if group.is_some() {
                chown(dir.path(), None, group);
            }
            chmod(dir.path(), mode);
            let got = rcfile_trust(&rc, &me, home);
            assert_eq!(got == Trust::Ok, want_ok, "{what}: {got:?}");
        }
    }

    #[test]
    fn trust_follows_symlinks_but_checks_the_links_directory() {
        if !is_root() {
            return;
        }
        let me = me();
        let (dir, rc) = rc_in_dir();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&rc, &link).unwrap();
        // Checked with procmail: a link owned by nobody to a good file is
        // accepted (the file opened is what counts).
        unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            Some(Uid::from_raw(NOBODY)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        assert_eq!(rcfile_trust(&link, &me, false), Trust::Ok);
        // ...and the link's own directory is the one checked.
        let other = tempfile::tempdir().unwrap();
        chmod(other.path(), 0o777);
        let link2 = other.path().join("link");
        std::os::unix::fs::symlink(&rc, &link2).unwrap();
        assert!(matches!(
            rcfile_trust(&link2, &me, false),
            Trust::Suspicious(_)
        ));
    }

    #[test]
    fn dev_null_is_exempt_and_missing_files_are_suspicious() {
        let other = User {
            uid: NOBODY,
            ..me()
        };
        assert_eq!(
            rcfile_trust(Path::new("/dev/null"), &other, true),
            Trust::Ok
        );
        let got = rcfile_trust(Path::new("/no/such/rcfile"), &other, false);
        assert!(matches!(got, Trust::Suspicious(ref why) if why.contains("/no/such/rcfile")));
    }

    #[test]
    fn system_mailbox_checks() {
        if !is_root() {
            return; // chown and the spool checks need root (CI runs as root)
        }
        // (what, set up spool/me, want notes, want mode of spool/me after);
        // each checked with Debian's procmail -d (see prepare_system_mailbox).
        let me = User {
            uid: NOBODY,
            gid: NOBODY,
            ..me()
        };
        type Setup = fn(&Path);
        let cases: &[(&str, Setup, &[&str], Option<u32>)] = &[
            ("missing", |_| {}, &[], Some(0o660)),
            (
                "symlink",
                |p| std::os::unix::fs::symlink("/etc/passwd", p).unwrap(),
                &["Renaming bogus mailbox"],
                Some(0o660),
            ),
            (
                "owned by root",
                |p| std::fs::write(p, "x").unwrap(),
                &["Renaming bogus mailbox"],
                Some(0o660),
            ),
            (
                "too loose",
                |p| {
                    std::fs::write(p, "x").unwrap();
                    chown(p, Some(NOBODY), None);
                    chmod(p, 0o644);
                },
                &["Enforcing stricter permissions"],
                Some(0o640),
            ),
            (
                "u+x keeps its mode",
                |p| {
                    std::fs::write(p, "x").unwrap();
                    chown(p, Some(NOBODY), None);
                    chmod(p, 0o706);
                },
                &[],
                Some(0o706),
            ),
        ];
        for &(what, setup, want_notes, want_mode) in cases {
            let spool = tempfile::tempdir().unwrap();
            chmod(spool.path(), 0o775);
            let path = spool.path().join("me");
            setup(&path);
            let SystemMailbox::Ready(notes) = prepare_system_mailbox(&me, spool.path()) else {
                panic!("{what}: autoforward");
            };
            assert_eq!(notes.len(), want_notes.len(), "{what}: {notes:?}");
            for (got, want) in notes.iter().zip(want_notes) {
                assert!(got.starts_with(want), "{what}: {got}");
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(meta.is_file(), "{what}");
            assert_eq!(meta.uid(), NOBODY, "{what}");
            assert_eq!(
                Some(meta.permissions().mode() & 0o7777),
                want_mode,
                "{what}"
            );
        }
        let spool = tempfile::tempdir().unwrap();
        let path = spool.path().join("me");
        std::fs::write(&path, "x").unwrap();
        chown(&path, Some(NOBODY), None);
        chmod(&path, 0o4600);
        assert_eq!(
            prepare_system_mailbox(&me, spool.path()),
            SystemMailbox::Autoforward
        );
    }

    #[test]
    fn only_the_users_own_spool_lock_gets_the_spool_group() {
        let cases: &[(&str, bool)] = &[
            ("/var/mail/bob.lock", true),
            ("/var/mail/bob", false),
            ("/var/mail/bob/../alice.lock", false),
            ("/var/mail/alice.lock", false),
            ("/var/mail/bobx.lock", false),
            ("/var/mail/bob.x", false),
            ("/tmp/var/mail/bob.lock", false),
        ];
        for &(path, want) in cases {
            let got = is_own_spool_lock(Path::new(path), b"/var/mail/bob");
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn parent_dir_is_up_to_the_last_slash() {
        let cases: &[(&str, &str)] = &[
            ("/home/u/.procmailrc", "/home/u/"),
            ("/rc", "/"),
            ("rc", "."),
        ];
        for &(path, want) in cases {
            assert_eq!(parent_dir(Path::new(path)), PathBuf::from(want), "{path}");
        }
    }

    #[test]
    fn become_user_without_privileges() {
        if is_root() {
            return; // covered by become_user_as_root in a child process
        }
        let me = current();
        assert!(
            become_user(&me).is_ok(),
            "becoming oneself needs no privileges"
        );
        let root = lookup(b"root").unwrap();
        let err = become_user(&root).unwrap_err();
        assert_eq!(err.exit_code(), 77);
        assert_eq!(
            err.to_string(),
            "insufficient privileges to become user `root`"
        );
    }

    /// The environment variable that turns `become_user_child` on.
    const CHILD: &str = "POSTROOM_BECOME_USER_CHILD";

    #[test]
    fn become_user_as_root() {
        if !is_root() {
            return;
        }
        // Switching identity changes the whole process, so it happens in a
        // fresh copy of the test binary running only become_user_child.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "deliver::user::tests::become_user_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("1 passed"),
            "the child test did not run: {text}"
        );
    }

    #[test]
    #[ignore = "run by become_user_as_root in its own process"]
    fn become_user_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        // Debian's nobody is in no supplementary group, so after initgroups
        // the list must be exactly its primary group (root's 0 is dropped).
        let nobody = lookup(b"nobody").unwrap();
        become_user(&nobody).unwrap();
        assert_eq!(unistd::getuid().as_raw(), nobody.uid);
        assert_eq!(unistd::geteuid().as_raw(), nobody.uid);
        assert_eq!(unistd::getgid().as_raw(), nobody.gid);
        assert_eq!(unistd::getegid().as_raw(), nobody.gid);
        let groups: Vec<u32> = unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.as_raw())
            .collect();
        assert_eq!(groups, vec![nobody.gid]);
        // No way back.
        let err = become_user(&lookup(b"root").unwrap()).unwrap_err();
        assert_eq!(err.exit_code(), 77);
        assert!(become_user(&nobody).is_ok());
    }
}
