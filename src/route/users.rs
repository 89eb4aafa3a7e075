//! Mailbox users: who may receive mail once aliases are done.
//!
//! [`Users`] is the backend trait; [`VirtualUsers`] reads a `users` file in
//! the configuration directory (so the example configuration runs without
//! root and without passwd entries) and [`SystemUsers`] asks the passwd
//! database. This module never switches identity and never touches a
//! mailbox: it only answers "is there such a user, and where do they live".
//!
//! The `users` file format, one user per line:
//!
//! ```text
//! # name:home[:mailbox]
//! alice:homes/alice
//! bob:/srv/mail/bob:/srv/mail/bob/Maildir/
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. The name is folded to
//! lower case and must not contain `+` (the detail delimiter), `@`, blanks
//! or control characters. A relative home or mailbox is taken from the
//! configuration directory. An empty or missing mailbox means the delivery
//! agent's default.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Span};
use crate::status::Class;

use super::mapfile::lines;

/// One mailbox user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name, lower case.
    pub name: Vec<u8>,
    /// The home directory.
    pub home: PathBuf,
    /// The default mailbox, when the user entry names one.
    pub mailbox: Option<PathBuf>,
    /// The user's own uid (system users); `None` for virtual users, who
    /// all share the server's uid.
    pub uid: Option<u32>,
}

/// What a user's `~/.forward` says (mta-semantics A.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// No usable file: deliver to the mailbox.
    None,
    /// A safe file was read.
    Found {
        /// Which file.
        path: PathBuf,
        /// Its contents.
        src: Vec<u8>,
    },
    /// A file exists but fails the safety checks, so it is ignored (A.7);
    /// the reason is for the log.
    Unsafe {
        /// Which file.
        path: PathBuf,
        /// Why it was not used.
        reason: String,
    },
    /// Reading failed in a way that may pass: defer the recipient (A.7).
    Defer {
        /// Which file.
        path: PathBuf,
    },
}

/// The mailbox users known to the server.
pub trait Users {
    /// The user called `name` (an ASCII case-insensitive match, as
    /// sendmail's local mailer without `F=u` folds user names), if any.
    fn lookup(&self, name: &[u8]) -> Option<User>;

    /// The user's `.forward` (A.7). The default reads none.
    fn forward(&self, user: &User, detail: Option<&[u8]>) -> Forward {
        let _ = (user, detail);
        Forward::None
    }
}

/// Reads `home/.forward+detail`, then `home/.forward` (A.7, our rule), with
/// sendmail's safety checks: the file is owned by the user (for virtual
/// users: the server's uid) or root and is not group or world writable,
/// and the home directory is not group or world writable; otherwise the
/// file is ignored. Transient errors defer.
pub fn read_forward(user: &User, detail: Option<&[u8]>) -> Forward {
    use std::os::unix::fs::MetadataExt;
    let owner = user.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    let mut names: Vec<Vec<u8>> = Vec::new();
    if let Some(d) = detail.filter(|d| !d.is_empty() && !d.contains(&b'/')) {
        names.push([&b".forward+"[..], d].concat());
    }
    names.push(b".forward".to_vec());
    for name in names {
        let path = user.home.join(OsStr::from_bytes(&name));
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if transient(&e) => return Forward::Defer { path },
            Err(e) => {
                let reason = e.to_string();
                return Forward::Unsafe { path, reason };
            }
        };
        let unsafe_because = |reason: &str| Forward::Unsafe {
            path: path.clone(),
            reason: reason.to_string(),
        };
        if !meta.is_file() {
            return unsafe_because("not a regular file");
        }
        if meta.uid() != owner && meta.uid() != 0 {
            return unsafe_because("owned by someone else");
        }
        if meta.mode() & 0o022 != 0 {
            return unsafe_because("group or world writable");
        }
        match std::fs::metadata(&user.home) {
            Ok(h) if h.mode() & 0o022 != 0 => {
                return unsafe_because("home directory is group or world writable");
            }
            Ok(_) => {}
            Err(e) if transient(&e) => return Forward::Defer { path },
            Err(e) => return unsafe_because(&e.to_string()),
        }
        return match std::fs::read(&path) {
            Ok(src) => Forward::Found { path, src },
            Err(e) if transient(&e) => Forward::Defer { path },
            Err(e) => Forward::Unsafe {
                path,
                reason: e.to_string(),
            },
        };
    }
    Forward::None
}

/// Whether an OS error may pass by itself (A.7: defer the recipient).
fn transient(e: &std::io::Error) -> bool {
    Class::of_open(e) == Class::Temp
}

/// Users listed in a `users` file, held in memory (also the in-memory twin
/// for tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualUsers {
    map: HashMap<Vec<u8>, User>,
}

impl VirtualUsers {
    /// Adds a user unless the name is taken; returns whether it was added.
    pub fn insert(&mut self, user: User) -> bool {
        let key = user.name.to_ascii_lowercase();
        if self.map.contains_key(&key) {
            return false;
        }
        self.map.insert(key, user);
        true
    }

    /// Users with these names, no mailbox, and homes under
    /// `/nonexistent/home` (so they have no `.forward`; for tests).
    pub fn with_names<N: AsRef<[u8]>>(names: impl IntoIterator<Item = N>) -> VirtualUsers {
        let mut u = VirtualUsers::default();
        for n in names {
            let name = n.as_ref().to_ascii_lowercase();
            let home = Path::new("/nonexistent/home").join(OsStr::from_bytes(&name));
            u.insert(User {
                name,
                home,
                mailbox: None,
                uid: None,
            });
        }
        u
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Users for VirtualUsers {
    fn lookup(&self, name: &[u8]) -> Option<User> {
        self.map.get(&name.to_ascii_lowercase()).cloned()
    }

    fn forward(&self, user: &User, detail: Option<&[u8]>) -> Forward {
        read_forward(user, detail)
    }
}

/// Users from the passwd database (getpwnam).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemUsers;

impl Users for SystemUsers {
    fn lookup(&self, name: &[u8]) -> Option<User> {
        let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        if name.is_empty() || name.contains('\0') {
            return None;
        }
        let pw = nix::unistd::User::from_name(&name).ok().flatten()?;
        Some(User {
            name: name.into_bytes(),
            home: pw.dir,
            mailbox: None,
            uid: Some(pw.uid.as_raw()),
        })
    }

    fn forward(&self, user: &User, detail: Option<&[u8]>) -> Forward {
        read_forward(user, detail)
    }
}

/// Why `name` cannot be a user name, or `None`.
fn bad_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty user name");
    }
    if name.contains(&b'+') {
        return Some("user name contains `+`, the detail delimiter");
    }
    if name.contains(&b'@') {
        return Some("user name contains `@`");
    }
    if name
        .iter()
        .any(|&b| b <= b' ' || b == 0x7f || b"\"\\,;<>()[]".contains(&b))
    {
        return Some("user name contains a blank, a control or a special character");
    }
    None
}

/// Parses a `users` file (format in the module doc); relative paths are
/// joined to `base`. Bad lines are reported and skipped; a duplicate name
/// is a warning and the first entry wins.
pub fn parse(file: &str, src: &[u8], base: &Path) -> (VirtualUsers, Vec<Diagnostic>) {
    let mut users = VirtualUsers::default();
    let mut diags = Vec::new();
    let mut first_line: HashMap<Vec<u8>, usize> = HashMap::new();
    for (lineno, (off, line)) in lines(src).enumerate() {
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        let span = Span::new(off, off + line.len());
        if fields.len() < 2 || fields.len() > 3 {
            diags.push(Diagnostic::error(
                file,
                span,
                "want `name:home` or `name:home:mailbox`",
            ));
            continue;
        }
        let name_span = Span::new(off, off + fields[0].len());
        if let Some(why) = bad_name(fields[0]) {
            diags.push(Diagnostic::error(file, name_span, why));
            continue;
        }
        if fields[1].is_empty() {
            diags.push(Diagnostic::error(file, span, "empty home directory"));
            continue;
        }
        let path = |p: &[u8]| base.join(OsStr::from_bytes(p));
        let name = fields[0].to_ascii_lowercase();
        if let Some(first) = first_line.get(&name) {
            diags.push(
                Diagnostic::warning(
                    file,
                    name_span,
                    format!(
                        "duplicate user `{}` ignored, the first entry wins",
                        String::from_utf8_lossy(&name)
                    ),
                )
                .with_note(format!("first defined on line {first}")),
            );
            continue;
        }
        first_line.insert(name.clone(), lineno + 1);
        users.insert(User {
            name,
            home: path(fields[1]),
            mailbox: fields.get(2).filter(|m| !m.is_empty()).map(|m| path(m)),
            uid: None,
        });
    }
    (users, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file() {
        let src = b"# users\nAlice:homes/alice\nbob:/srv/bob:/srv/bob/Maildir/\nbad+name:/x\nnohome:\nalice:/other\ntoo:many:fields:here\n";
        let (users, diags) = parse("users", src, Path::new("/etc/postroom"));
        let got: Vec<String> = diags.iter().map(|d| d.short(src)).collect();
        let want = [
            "users:4:1: user name contains `+`, the detail delimiter",
            "users:5:1: empty home directory",
            "users:6:1: duplicate user `alice` ignored, the first entry wins",
            "users:7:1: want `name:home` or `name:home:mailbox`",
        ];
        assert_eq!(got, want);
        let alice = users.lookup(b"ALICE").unwrap();
        assert_eq!(alice.home, Path::new("/etc/postroom/homes/alice"));
        assert_eq!(alice.mailbox, None);
        let bob = users.lookup(b"bob").unwrap();
        assert_eq!(bob.mailbox.as_deref(), Some(Path::new("/srv/bob/Maildir/")));
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn forward_files() {
        // A.7: `.forward+detail` before `.forward`; unsafe files ignored.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        let user = User {
            name: b"alice".to_vec(),
            home: home.clone(),
            mailbox: None,
            uid: None,
        };
        assert_eq!(read_forward(&user, None), Forward::None);
        std::fs::write(home.join(".forward"), "plain\n").unwrap();
        std::fs::write(home.join(".forward+lists"), "lists\n").unwrap();
        for f in [".forward", ".forward+lists"] {
            std::fs::set_permissions(home.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let src = |f: Forward| match f {
            Forward::Found { src, .. } => String::from_utf8(src).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(src(read_forward(&user, Some(b"lists"))), "lists\n");
        assert_eq!(src(read_forward(&user, Some(b"other"))), "plain\n");
        assert_eq!(src(read_forward(&user, None)), "plain\n");
        std::fs::set_permissions(
            home.join(".forward"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert!(matches!(read_forward(&user, None), Forward::Unsafe { .. }));
        std::fs::set_permissions(
            home.join(".forward"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(read_forward(&user, None), Forward::Unsafe { .. }));
    }

    #[test]
    fn system_users_know_root() {
        // Every Unix system has root in passwd; names are folded.
        let got = SystemUsers.lookup(b"ROOT").map(|u| u.name);
        assert_eq!(got, Some(b"root".to_vec()));
        assert_eq!(SystemUsers.lookup(b"no-such-user-postroom"), None);
    }
}
