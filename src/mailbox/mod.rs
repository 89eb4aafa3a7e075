//! Writing one message into one folder, with locking.
//!
//! Folders are mbox files, Maildir, MH and plain directories, written
//! exactly as procmail writes them (procmail-semantics §10, §11, §17 traps
//! 5–7): the folder type comes from the name, every writer goes through one
//! copy routine (`copy`) driven by options, and OS errors become an
//! [`Outcome`] through [`crate::status::Class::of_io`].
//!
//! This module knows nothing of recipes, variables or rcfiles: the caller
//! passes folder names already expanded (bytes, relative to the current
//! directory, which is `MAILDIR`), the bytes to write and where the body
//! starts. It never chooses a lockfile (see [`lock`] for the protocol) and
//! never changes the process umask.

mod copy;
mod dir;
pub mod lock;
mod maildir;
mod mbox;
mod mh;
mod name;

/// `n` in procmail's base 64, least significant digit first: the code of
/// an inode in directory-folder and `BOGUS.` mailbox names.
pub fn inode_code(n: u64) -> Vec<u8> {
    name::code(n)
}

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::status::Outcome;

/// Mode for new files: `0666` plus `o+x` (`NORMperm`), masked by the umask.
/// The `o+x` bit survives only if the umask allows it (spec §10.7: umask
/// 022 gives 0645), which mail readers take as "this folder was written".
const FILE_MODE: u32 = 0o667;

/// Mode for new directories, masked by the umask.
const DIR_MODE: u32 = 0o777;

/// How procmail logs a line: whether it appears without `VERBOSE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Always logged (`Skipped "x"`, `Error while writing to "x"`).
    Always,
    /// Logged only when a log file is open or `VERBOSE` is on
    /// (`Truncated file to former size`).
    Logged,
    /// Logged only with `VERBOSE=on` (`Linking to "x"`, `Locking "x"`).
    Verbose,
}

/// How to write one message; everything the caller knows and we must not
/// guess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOpts {
    /// The `r` flag: no final newline and no `>From` escaping.
    pub raw: bool,
    /// Offset of the body in the data (its length when only the header is
    /// written, 0 with `b`). Find it as procmail does: leading empty lines
    /// do not end the header.
    pub body_start: usize,
    /// The body bytes counted by the (rewritten) `Content-Length:` field,
    /// which are not `>From`-escaped; `None` without the field or with `-Y`.
    pub protect: Option<usize>,
    /// Length of the postmark and the `>From` lines right below it; Maildir
    /// drops these bytes (spec §10.4). 0 when the data does not start with
    /// the message's header.
    pub envelope_len: usize,
    /// `$MSGPREFIX` for directory folders (procmail's default `msg.`).
    pub msgprefix: Vec<u8>,
    /// Host name for Maildir names and temp files (escaped here).
    pub host: Vec<u8>,
    /// fsync files and directories (procmail always does; tests may not).
    pub fsync: bool,
    /// Log procmail's VERBOSE `Assigning "LASTFOLDER=<file>"` line where
    /// procmail writes it: before `Opening` for mbox, `/dev/null`, MH and
    /// directory folders, after writing a Maildir's file, and only for the
    /// first file of several (checked with procmail 3.23pre). The caller
    /// then sets the variable without logging it.
    pub announce: bool,
}

impl Default for WriteOpts {
    /// procmail's defaults: `msg.`, this host, fsync on; no body, no
    /// `Content-Length:`, no postmark.
    fn default() -> WriteOpts {
        WriteOpts {
            raw: false,
            body_start: 0,
            protect: None,
            envelope_len: 0,
            msgprefix: b"msg.".to_vec(),
            host: local_host(),
            fsync: true,
            announce: false,
        }
    }
}

/// A successful delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The new value of `LASTFOLDER`: `box`, `md/new/<name>`, `mh/7`,
    /// `dir/msg.X`, and for several names every file made, joined by spaces.
    pub lastfolder: Vec<u8>,
    /// Bytes written into the first folder (escapes and the added newline
    /// included), the size in the log abstract.
    pub written: usize,
    /// Further names not written because the first was an mbox (already
    /// logged as one `Skipped "a b"` line) or could not be made a directory.
    pub skipped: Vec<Vec<u8>>,
    /// Where the message starts in the first file: the mbox's size before
    /// the append, 0 for the new file of a Maildir, MH or directory folder
    /// and for `/dev/null` (procmail's `lasttell`, reported to COMSAT).
    pub offset: u64,
    /// Length of the first file's name at the start of `lastfolder`: the
    /// one name COMSAT reports when several folders got the message
    /// (checked: `mh/. d` notifies `.../mh/5`).
    pub first_len: usize,
}

/// A failed delivery. Its `Display` is procmail's log text; the line has
/// already been passed to the log callback, in order with the others.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// Writing the message failed (the mbox is back at its old size).
    #[error("{} \"{}\"", write_text(.source), String::from_utf8_lossy(.name))]
    Write {
        /// The folder or file.
        name: Vec<u8>,
        /// The OS error.
        #[source]
        source: io::Error,
        /// `LASTFOLDER` as procmail sets it even on failure (mbox only).
        lastfolder: Option<Vec<u8>>,
    },
    /// No temp file could be made or moved into place in a directory folder.
    #[error("Couldn't create or rename temp file \"{}\"", String::from_utf8_lossy(.name))]
    Temp {
        /// The temp file or folder.
        name: Vec<u8>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A Maildir's `new`, `cur` or `tmp` could not be made.
    #[error("Skipped \"{}\"", String::from_utf8_lossy(.name))]
    Skipped {
        /// The folder.
        name: Vec<u8>,
    },
    /// The action line had no folder name.
    #[error("no folder name given")]
    NoFolder,
}

/// procmail's text for a failed write, by errno.
fn write_text(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOSPC) => "No space left to finish writing",
        Some(libc::EDQUOT) => "Quota exceeded while writing",
        _ => "Error while writing to",
    }
}

impl MailboxError {
    /// The outcome for the MTA: the class comes from the OS error through
    /// [`crate::status::Class::of_io`]; a folder that cannot be made a
    /// directory is temporary, because someone can fix it and a bounce
    /// would lose the mail.
    pub fn outcome(&self) -> Outcome {
        let text = self.to_string();
        match self {
            MailboxError::Write { source, .. } | MailboxError::Temp { source, .. } => {
                Outcome::from_io(source, &text)
            }
            MailboxError::Skipped { .. } | MailboxError::NoFolder => {
                Outcome::temp((2, 0), text.to_lowercase())
            }
        }
    }

    /// `LASTFOLDER` after this failure, if procmail sets it.
    pub fn lastfolder(&self) -> Option<&[u8]> {
        match self {
            MailboxError::Write { lastfolder, .. } => lastfolder.as_deref(),
            _ => None,
        }
    }
}

/// This machine's host name as procmail uses it in unique names.
pub fn local_host() -> Vec<u8> {
    nix::unistd::gethostname()
        .map(|h| h.as_bytes().to_vec())
        .unwrap_or_else(|_| b"localhost".to_vec())
}

/// The type suffix of a folder name (spec §10.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Suffix {
    /// No suffix: mbox, `/dev/null` or an existing directory.
    None,
    /// `name/`.
    Maildir,
    /// `name/.`.
    Mh,
}

/// Splits a name into its folder and type suffix, dropping extra slashes
/// before the suffix but never the first byte (procmail `folderparse`:
/// `md///` is Maildir `md`, `mh//.` is MH `mh`, `/` is a plain name).
fn parse_name(name: &[u8]) -> (Suffix, &[u8]) {
    let (suffix, mut end) = match name.len() {
        0 | 1 => return (Suffix::None, name),
        2 if name[1] == b'/' => return (Suffix::Maildir, &name[..1]),
        2 => return (Suffix::None, name),
        n if name.ends_with(b"/.") => (Suffix::Mh, n - 2),
        n if name.ends_with(b"/") => (Suffix::Maildir, n - 1),
        _ => return (Suffix::None, name),
    };
    while end > 1 && name[end - 1] == b'/' {
        end -= 1;
    }
    (suffix, &name[..end])
}

/// What a name turned out to be, with the folder's permission bits
/// (for the `o+x` rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    DevNull,
    Mbox(u32),
    Maildir(u32),
    Mh(u32),
    Dir(u32),
}

/// Bytes as a path.
pub(crate) fn path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// `folder/rest` as bytes, the way procmail builds names (no
/// normalisation: folder `/` gives `//msg.X`, checked).
pub(crate) fn join(folder: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(folder.len() + 1 + rest.len());
    out.extend_from_slice(folder);
    out.push(b'/');
    out.extend_from_slice(rest);
    out
}

/// `Assigning "LASTFOLDER=name"` with VERBOSE when `opts.announce`.
pub(crate) fn announce(opts: &WriteOpts, name: &[u8], log: &mut dyn FnMut(Level, &[u8])) {
    if opts.announce {
        let mut line = b"Assigning \"LASTFOLDER=".to_vec();
        line.extend_from_slice(name);
        line.push(b'"');
        log(Level::Verbose, &line);
    }
}

/// `what "name"`, a procmail log line.
pub(crate) fn quoted(what: &str, name: &[u8]) -> Vec<u8> {
    let mut line = what.as_bytes().to_vec();
    line.extend_from_slice(b" \"");
    line.extend_from_slice(name);
    line.push(b'"');
    line
}

/// The umask last set through [`set_umask`], or `u32::MAX` when it has
/// to be read.
static UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Sets the process umask and remembers it, so that `current_umask`
/// need not read `/proc/self/status` for every folder.
pub fn set_umask(mask: u32) {
    let mask = mask & 0o7777;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask as _));
    UMASK.store(mask, std::sync::atomic::Ordering::SeqCst);
}

/// The process umask: as last set by [`set_umask`], else read without
/// changing it (other threads may be creating files).
pub(crate) fn current_umask() -> u32 {
    let known = UMASK.load(std::sync::atomic::Ordering::SeqCst);
    if known != u32::MAX {
        return known;
    }
    if let Ok(s) = fs::read_to_string("/proc/self/status")
        && let Some(v) = s.lines().find_map(|l| l.strip_prefix("Umask:"))
        && let Ok(m) = u32::from_str_radix(v.trim(), 8)
    {
        return m;
    }
    // SAFETY: umask cannot fail; it is set straight back.
    unsafe {
        let m = libc::umask(0o077);
        libc::umask(m);
        m as u32
    }
}

/// procmail's `trymkdir`: the permission bits and whether `dir` is a
/// directory, making it (mode 0777 & ~umask) if it does not exist; `None`
/// if it neither exists nor can be made. Missing parents are not made.
fn try_mkdir(dir: &[u8]) -> Option<(bool, u32)> {
    for _ in 0..3 {
        match fs::metadata(path(dir)) {
            Ok(m) => return Some((m.is_dir(), m.mode() & 0o7777)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
        match fs::DirBuilder::new().mode(DIR_MODE).create(path(dir)) {
            Ok(()) => return Some((true, DIR_MODE & !current_umask())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Works out what `folder` is, making directories as needed (procmail
/// `foldertype`). `force_dir` is set for the second and later names of a
/// multi-folder delivery, which must be directories. `None` means the
/// name was skipped (already logged).
fn resolve(
    folder: &[u8],
    suffix: Suffix,
    force_dir: bool,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Option<Kind> {
    let wants_dir = force_dir || suffix != Suffix::None;
    if !wants_dir {
        return Some(match fs::metadata(path(folder)) {
            Ok(m) if m.is_dir() => Kind::Dir(m.mode() & 0o7777),
            _ if folder == b"/dev/null" => Kind::DevNull,
            Ok(m) => Kind::Mbox(m.mode() & 0o7777),
            Err(_) => Kind::Mbox(FILE_MODE & !current_umask()),
        });
    }
    let made = try_mkdir(folder);
    let mode = match made {
        Some((true, mode)) => mode,
        other => {
            log(
                Level::Always,
                &quoted("Unable to treat as directory", folder),
            );
            if force_dir {
                log(Level::Always, &quoted("Skipped", folder));
                return None;
            }
            // A `name/` or `name/.` that is a file (or cannot be made) is
            // written as an mbox file, as the real procmail does (checked:
            // `f1/` with f1 a file appends to f1).
            return Some(Kind::Mbox(match other {
                Some((_, mode)) => mode,
                None => FILE_MODE & !current_umask(),
            }));
        }
    };
    Some(match suffix {
        Suffix::Maildir => {
            if let Err(sub) = maildir::make_subdirs(folder) {
                log(Level::Always, &quoted("Unable to treat as directory", &sub));
                log(Level::Always, &quoted("Skipped", folder));
                return None;
            }
            Kind::Maildir(mode)
        }
        Suffix::Mh => Kind::Mh(mode),
        Suffix::None => Kind::Dir(mode),
    })
}

/// procmail's `o+x` rule (spec §10.7): after a delivery, a folder whose
/// mode lacks `o+x` gets it, unless the umask masks `o+x`. `target` is the
/// file procmail actually chmods, which for Maildir is not the folder:
/// `md/tmp` for the first name, `md/new` for a linked one (both checked
/// against the real procmail; the quirk is kept so that modes match).
fn mark_written(target: &[u8], folder_mode: u32) {
    if (folder_mode | current_umask()) & 0o001 == 0 {
        let _ = fs::set_permissions(
            path(target),
            fs::Permissions::from_mode(folder_mode | 0o001),
        );
    }
}

/// Creates a fresh file in `dir` with a unique name from `make`, mode
/// 0667 & ~umask, trying further names while one exists.
pub(crate) fn create_unique(dir: &[u8], make: &dyn Fn() -> Vec<u8>) -> io::Result<(Vec<u8>, File)> {
    let mut last = None;
    for _ in 0..16 {
        let name = join(dir, &make());
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path(&name))
        {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EEXIST)))
}

/// A procmail temp name (`_<code>.<host>`) for files in `dir`.
pub(crate) fn create_temp(dir: &[u8], host: &[u8]) -> io::Result<(Vec<u8>, File)> {
    create_unique(dir, &|| {
        name::temp_name(name::next_stamp(), std::process::id(), host)
    })
}

/// fsyncs a directory so that a new name in it survives a crash.
pub(crate) fn sync_dir(dir: &[u8]) -> io::Result<()> {
    File::open(path(dir))?.sync_all()
}

/// Writes `data` into the folder `names[0]` and links it into the others,
/// exactly as procmail does for one action line (spec §10).
///
/// The first name decides the format: `/dev/null`, Maildir (`name/`), MH
/// (`name/.`), an existing directory, or an mbox file. Every further name
/// becomes a directory folder of its own suffix's kind and gets a hard link
/// to the same file; after an mbox they are skipped. Diagnostics go to
/// `log` as procmail's texts (without the `procmail: ` prefix or newline).
pub fn deliver<N: AsRef<[u8]>>(
    names: &[N],
    data: &[u8],
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<Delivered, MailboxError> {
    let (first, rest) = names.split_first().ok_or(MailboxError::NoFolder)?;
    let (suffix, folder) = parse_name(first.as_ref());
    let kind = resolve(folder, suffix, false, log).ok_or_else(|| MailboxError::Skipped {
        name: folder.to_vec(),
    })?;
    let (mut out, primary, chmod_target, mode) = match kind {
        Kind::DevNull | Kind::Mbox(_) => {
            let skipped: Vec<Vec<u8>> = rest.iter().map(|n| n.as_ref().to_vec()).collect();
            if !skipped.is_empty() {
                log(Level::Always, &quoted("Skipped", &skipped.join(&b' ')));
            }
            announce(opts, folder, log);
            let (written, offset) = match kind {
                Kind::Mbox(mode) => {
                    let got = mbox::write(folder, data, opts, log)?;
                    mark_written(folder, mode);
                    got
                }
                _ => {
                    // procmail opens /dev/null like any file (checked:
                    // VERBOSE logs `Opening "/dev/null"`, but no kernel
                    // lock), so the line is logged without writing.
                    log(Level::Verbose, &quoted("Opening", folder));
                    (data.len(), 0)
                }
            };
            return Ok(Delivered {
                lastfolder: folder.to_vec(),
                written,
                skipped,
                offset,
                first_len: folder.len(),
            });
        }
        Kind::Maildir(mode) => {
            let (out, file) = maildir::write(folder, data, opts, log)?;
            announce(opts, &out.lastfolder, log);
            (out, file, join(folder, b"tmp"), mode)
        }
        Kind::Mh(mode) => {
            let (out, file) = mh::write(folder, data, opts, log)?;
            (out, file, folder.to_vec(), mode)
        }
        Kind::Dir(mode) => {
            let (out, file) = dir::write(folder, data, opts, log)?;
            (out, file, folder.to_vec(), mode)
        }
    };
    mark_written(&chmod_target, mode);
    out.first_len = out.lastfolder.len();
    for other in rest {
        let (suffix, folder) = parse_name(other.as_ref());
        let Some(kind) = resolve(folder, suffix, true, log) else {
            out.skipped.push(other.as_ref().to_vec());
            continue;
        };
        let (linked, target, mode) = match kind {
            Kind::Maildir(mode) => (
                maildir::link(folder, &primary, opts, log),
                join(folder, b"new"),
                mode,
            ),
            Kind::Mh(mode) => (mh::link(folder, &primary, opts, log), folder.to_vec(), mode),
            Kind::Dir(mode) => (
                dir::link(folder, &primary, opts, log),
                folder.to_vec(),
                mode,
            ),
            Kind::DevNull | Kind::Mbox(_) => unreachable!("resolve forces a directory"),
        };
        if let Some(name) = linked {
            out.lastfolder.push(b' ');
            out.lastfolder.extend_from_slice(&name);
            mark_written(&target, mode);
        }
    }
    Ok(out)
}

/// Links `primary` to `name` (a further folder of a multi-folder
/// delivery), logging as procmail: `Linking to "x"` with VERBOSE, and
/// `Couldn't make link to "x"` on failure.
pub(crate) fn link_logged(
    primary: &Path,
    name: &[u8],
    log: &mut dyn FnMut(Level, &[u8]),
) -> io::Result<()> {
    log(Level::Verbose, &quoted("Linking to", name));
    fs::hard_link(primary, path(name)).inspect_err(|_| {
        log(Level::Always, &quoted("Couldn't make link to", name));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_folderparse() {
        let cases: &[(&[u8], Suffix, &[u8])] = &[
            (b"mbox", Suffix::None, b"mbox"),
            (b"md/", Suffix::Maildir, b"md"),
            (b"md///", Suffix::Maildir, b"md"),
            (b"mh/.", Suffix::Mh, b"mh"),
            (b"mh//.", Suffix::Mh, b"mh"),
            (b"a/b/", Suffix::Maildir, b"a/b"),
            (b"x/", Suffix::Maildir, b"x"),
            (b"/", Suffix::None, b"/"),
            (b"", Suffix::None, b""),
            (b"//", Suffix::Maildir, b"/"),
            (b"/.", Suffix::None, b"/."),
            (b"a.", Suffix::None, b"a."),
            (b"/dev/null", Suffix::None, b"/dev/null"),
        ];
        for &(name, want_suffix, want_folder) in cases {
            let got = parse_name(name);
            assert_eq!(
                got,
                (want_suffix, want_folder),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    /// The VERBOSE lines of one delivery, as text.
    fn verbose_lines(names: &[&[u8]]) -> (Vec<String>, Delivered) {
        let opts = WriteOpts {
            fsync: false,
            ..WriteOpts::default()
        };
        let mut got = Vec::new();
        let out = deliver(names, b"From a  b\n\nx\n", &opts, &mut |l, t| {
            if l == Level::Verbose {
                got.push(String::from_utf8_lossy(t).into_owned());
            }
        })
        .unwrap();
        (got, out)
    }

    #[test]
    fn verbose_lines_are_procmails() {
        // Checked with procmail 3.23pre, VERBOSE=on: /dev/null is opened
        // but not kernel-locked; MH and directory folders log their final
        // name and the kernel lock; Maildir logs neither; further names
        // log `Linking to`.
        let d = tempfile::tempdir().unwrap();
        let base = d.path().as_os_str().as_bytes().to_vec();
        let name = |rest: &[u8]| join(&base, rest);
        let (got, _) = verbose_lines(&[b"/dev/null"]);
        assert_eq!(got, vec!["Opening \"/dev/null\"".to_string()]);

        let mh = name(b"mh/.");
        let (got, out) = verbose_lines(&[&mh]);
        let want_name = String::from_utf8_lossy(&name(b"mh/1")).into_owned();
        assert_eq!(out.lastfolder, name(b"mh/1"));
        assert_eq!(
            got,
            vec![
                format!("Opening \"{want_name}\""),
                "Acquiring kernel-lock".into()
            ]
        );

        let dir = name(b"d");
        fs::create_dir(path(&dir)).unwrap();
        let (got, out) = verbose_lines(&[&dir]);
        let want_name = String::from_utf8_lossy(&out.lastfolder).into_owned();
        assert!(want_name.contains("/d/msg."), "{want_name}");
        assert_eq!(
            got,
            vec![
                format!("Opening \"{want_name}\""),
                "Acquiring kernel-lock".into()
            ]
        );

        let (got, _) = verbose_lines(&[&name(b"md/")]);
        assert_eq!(got, Vec::<String>::new());
    }

    #[test]
    fn lastfolder_is_announced_where_procmail_logs_it() {
        // Checked with procmail 3.23pre, VERBOSE=on: `Assigning
        // "LASTFOLDER=x"` comes before `Opening`, after a Maildir write,
        // and names only the first file of several.
        let d = tempfile::tempdir().unwrap();
        let base = d.path().as_os_str().as_bytes().to_vec();
        let opts = WriteOpts {
            fsync: false,
            announce: true,
            ..WriteOpts::default()
        };
        let run = |names: &[&[u8]]| {
            let mut got = Vec::new();
            let out = deliver(names, b"From a  b\n\nx\n", &opts, &mut |l, t| {
                if l == Level::Verbose {
                    got.push(String::from_utf8_lossy(t).into_owned());
                }
            })
            .unwrap();
            (
                got,
                String::from_utf8_lossy(&out.lastfolder[..out.first_len]).into_owned(),
            )
        };
        let mbox = join(&base, b"box");
        let (got, name) = run(&[&mbox]);
        let want = vec![
            format!("Assigning \"LASTFOLDER={name}\""),
            format!("Opening \"{name}\""),
            "Acquiring kernel-lock".to_string(),
        ];
        assert_eq!(got, want);
        let (mh, md) = (join(&base, b"mh/."), join(&base, b"md/"));
        let (got, name) = run(&[&mh, &md]);
        assert_eq!(got[0], format!("Assigning \"LASTFOLDER={name}\""));
        assert_eq!(got.iter().filter(|l| l.starts_with("Assigning")).count(), 1);
        assert!(got[3].starts_with("Linking to"), "{got:?}");
        let (got, name) = run(&[&md, &mh]);
        assert_eq!(got[0], format!("Assigning \"LASTFOLDER={name}\""));
        assert!(name.contains("/md/new/"), "{name}");
    }

    #[test]
    fn offset_is_where_the_message_starts() {
        // Checked with procmail 3.23pre and COMSAT: a second append to an
        // mbox reports the size before it (`root@54:.../mbox` after one
        // 54-byte message); Maildir, MH and /dev/null report 0.
        let d = tempfile::tempdir().unwrap();
        let base = d.path().as_os_str().as_bytes().to_vec();
        let opts = WriteOpts {
            fsync: false,
            ..WriteOpts::default()
        };
        let data = b"From a  b\n\nx\n";
        let mut quiet = |_: Level, _: &[u8]| {};
        let mbox = join(&base, b"box");
        let first = deliver(&[&mbox], data, &opts, &mut quiet).unwrap();
        assert_eq!(first.offset, 0);
        let second = deliver(&[&mbox], data, &opts, &mut quiet).unwrap();
        assert_eq!(second.offset, first.written as u64);
        for name in [
            join(&base, b"md/"),
            join(&base, b"mh/."),
            b"/dev/null".to_vec(),
        ] {
            let got = deliver(&[&name], data, &opts, &mut quiet).unwrap();
            assert_eq!(got.offset, 0, "{}", String::from_utf8_lossy(&name));
            assert_eq!(got.first_len, got.lastfolder.len());
        }
        let (mh, md) = (join(&base, b"mh/."), join(&base, b"md/"));
        let got = deliver(&[&mh, &md], data, &opts, &mut quiet).unwrap();
        assert_eq!(&got.lastfolder[..got.first_len], &join(&base, b"mh/2")[..]);
    }

    #[test]
    fn error_texts_are_procmails() {
        let e = |errno| MailboxError::Write {
            name: b"box".to_vec(),
            source: io::Error::from_raw_os_error(errno),
            lastfolder: None,
        };
        assert_eq!(e(libc::EIO).to_string(), "Error while writing to \"box\"");
        assert_eq!(
            e(libc::ENOSPC).to_string(),
            "No space left to finish writing \"box\""
        );
        assert_eq!(
            e(libc::EDQUOT).to_string(),
            "Quota exceeded while writing \"box\""
        );
        assert_eq!(e(libc::ENOSPC).outcome().exit_code(), 75);
        assert_eq!(e(libc::ENAMETOOLONG).outcome().smtp().0, 550);
    }
}
