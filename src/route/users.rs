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
}

/// The mailbox users known to the server.
pub trait Users {
    /// The user called `name` (an ASCII case-insensitive match, as
    /// sendmail's local mailer without `F=u` folds user names), if any.
    fn lookup(&self, name: &[u8]) -> Option<User>;
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

    /// Users with these names, homes under `/home` and no mailbox (tests).
    pub fn with_names<N: AsRef<[u8]>>(names: impl IntoIterator<Item = N>) -> VirtualUsers {
        let mut u = VirtualUsers::default();
        for n in names {
            let name = n.as_ref().to_ascii_lowercase();
            let home = Path::new("/home").join(OsStr::from_bytes(&name));
            u.insert(User {
                name,
                home,
                mailbox: None,
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
        })
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
    fn system_users_know_root() {
        // Every Unix system has root in passwd; names are folded.
        let got = SystemUsers.lookup(b"ROOT").map(|u| u.name);
        assert_eq!(got, Some(b"root".to_vec()));
        assert_eq!(SystemUsers.lookup(b"no-such-user-postroom"), None);
    }
}
