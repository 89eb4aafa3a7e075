//! Maildir folders: `tmp/` then a hard link into `new/` (spec §10.4).
//!
//! Names are `<secs>.<pid>_<n>.<host>`; the postmark is dropped, nothing
//! is escaped and no newline is added. Never locks: Maildir needs none.

use std::fs;
use std::path::PathBuf;

use super::copy::{self, CopyOpts};
use super::{
    Delivered, Level, MailboxError, WriteOpts, create_unique, join, link_logged, name, path,
    sync_dir,
};

/// Makes `new`, `cur` and `tmp` in `folder` as needed; on failure the
/// subdirectory that could not be made (or is not a directory), which
/// procmail names in `Unable to treat as directory "md/new"` (checked).
pub(crate) fn make_subdirs(folder: &[u8]) -> Result<(), Vec<u8>> {
    for sub in [&b"new"[..], b"cur", b"tmp"] {
        let dir = join(folder, sub);
        if !matches!(super::try_mkdir(&dir), Some((true, _))) {
            return Err(dir);
        }
    }
    Ok(())
}

/// A fresh Maildir name, reserved as an empty file in `folder/tmp`.
fn reserve(folder: &[u8], host: &[u8]) -> std::io::Result<(Vec<u8>, fs::File)> {
    let tmp = join(folder, b"tmp");
    create_unique(&tmp, &|| {
        name::maildir_name(name::next_stamp(), std::process::id(), host)
    })
}

/// The base name of a path in bytes.
fn base(p: &[u8]) -> &[u8] {
    p.rsplit(|&b| b == b'/').next().unwrap_or(p)
}

/// Writes the message into `folder/new`; returns the result and the file.
pub(crate) fn write(
    folder: &[u8],
    data: &[u8],
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(Delivered, PathBuf), MailboxError> {
    let temp_fail = |name: &[u8], source, log: &mut dyn FnMut(Level, &[u8])| {
        let e = MailboxError::Temp {
            name: name.to_vec(),
            source,
        };
        log(Level::Always, e.to_string().as_bytes());
        e
    };
    let (tmp, file) = reserve(folder, &opts.host).map_err(|e| temp_fail(folder, e, log))?;
    // Maildir drops the postmark and the `>From` lines under it (spec §10.4).
    let body = data.get(opts.envelope_len..).unwrap_or_default();
    let o = CopyOpts {
        fsync: opts.fsync,
        ..CopyOpts::default()
    };
    let written = match copy::copy(&file, body, &o, log) {
        Ok(n) => n,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(path(&tmp));
            let err = MailboxError::Write {
                name: tmp.clone(),
                source: e.source,
                lastfolder: None,
            };
            log(Level::Always, err.to_string().as_bytes());
            return Err(err);
        }
    };
    drop(file);
    let new = join(&join(folder, b"new"), base(&tmp));
    if let Err(e) = fs::hard_link(path(&tmp), path(&new)) {
        // Filesystems without hard links: fall back to rename, but never
        // over an existing message.
        if e.kind() == std::io::ErrorKind::AlreadyExists
            || fs::rename(path(&tmp), path(&new)).is_err()
        {
            let _ = fs::remove_file(path(&tmp));
            return Err(temp_fail(&tmp, e, log));
        }
    } else {
        let _ = fs::remove_file(path(&tmp));
    }
    if opts.fsync {
        let _ = sync_dir(&join(folder, b"new"));
    }
    Ok((
        Delivered {
            lastfolder: new.clone(),
            written,
            skipped: Vec::new(),
            offset: 0,
            first_len: 0,
        },
        path(&new).to_path_buf(),
    ))
}

/// Links the delivered file `primary` into `folder/new` under a fresh
/// name (reserved in `tmp` first, as procmail does); returns the new name.
pub(crate) fn link(
    folder: &[u8],
    primary: &std::path::Path,
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Option<Vec<u8>> {
    let (tmp, file) = match reserve(folder, &opts.host) {
        Ok(r) => r,
        Err(_) => {
            log(
                Level::Always,
                &super::quoted("Couldn't make link to", folder),
            );
            return None;
        }
    };
    drop(file);
    let _ = fs::remove_file(path(&tmp));
    let new = join(&join(folder, b"new"), base(&tmp));
    link_logged(primary, &new, log).ok()?;
    if opts.fsync {
        let _ = sync_dir(&join(folder, b"new"));
    }
    Some(new)
}
