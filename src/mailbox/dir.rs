//! Directory folders: an existing directory without a type suffix gets
//! the message as `$MSGPREFIX` + the base-64 code of the file's inode
//! number (spec §10.5, `msg.xHMm`).
//!
//! Also holds the temp-file writer shared with MH. Never locks and never
//! overwrites an existing message.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::copy::{self, CopyOpts};
use super::{
    Delivered, Level, MailboxError, WriteOpts, create_temp, join, link_logged, name, path, sync_dir,
};

/// Writes the message into a fresh temp file in `folder` (postmark kept,
/// no escaping, final-newline rule unless raw, kernel lock, fsync);
/// returns its name and the bytes written. The temp file is removed again
/// on failure, and the error names the file procmail would have been
/// writing, which `final_name` works out from the temp file.
///
/// With VERBOSE procmail logs `Opening "<final name>"` and `Acquiring
/// kernel-lock` for MH and directory folders, because it opens the final
/// name itself and writes it under the kernel lock (checked against
/// procmail 3.23pre: `Opening "mh/1"`, `Opening "d/msg.jIcm"`); we log the
/// same lines for the name the temp file will get.
pub(crate) fn write_temp(
    folder: &[u8],
    data: &[u8],
    opts: &WriteOpts,
    final_name: &dyn Fn(&fs::File) -> Vec<u8>,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(Vec<u8>, usize), MailboxError> {
    let (tmp, file) = create_temp(folder, &opts.host).map_err(|source| {
        let e = MailboxError::Temp {
            name: folder.to_vec(),
            source,
        };
        log(Level::Always, e.to_string().as_bytes());
        e
    })?;
    let name = final_name(&file);
    super::announce(opts, &name, log);
    log(Level::Verbose, &super::quoted("Opening", &name));
    let o = CopyOpts {
        final_newline: !opts.raw,
        kernel_lock: true,
        fsync: opts.fsync,
        ..CopyOpts::default()
    };
    match copy::copy(&file, data, &o, log) {
        Ok(n) => Ok((tmp, n)),
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(path(&tmp));
            let err = MailboxError::Write {
                name,
                source: e.source,
                lastfolder: None,
            };
            log(Level::Always, err.to_string().as_bytes());
            Err(err)
        }
    }
}

/// `folder/<prefix><inode code>`.
fn code_name(folder: &[u8], prefix: &[u8], ino: u64) -> Vec<u8> {
    let mut base = prefix.to_vec();
    base.extend_from_slice(&name::code(ino));
    join(folder, &base)
}

/// `folder/<prefix><inode code>` for the file at `file`.
fn msg_name(folder: &[u8], prefix: &[u8], file: &Path) -> std::io::Result<Vec<u8>> {
    Ok(code_name(folder, prefix, fs::metadata(file)?.ino()))
}

/// Writes the message into the directory folder `folder`.
pub(crate) fn write(
    folder: &[u8],
    data: &[u8],
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(Delivered, PathBuf), MailboxError> {
    let named = |f: &fs::File| match f.metadata() {
        Ok(m) => code_name(folder, &opts.msgprefix, m.ino()),
        Err(_) => folder.to_vec(),
    };
    let (tmp, written) = write_temp(folder, data, opts, &named, log)?;
    let placed = msg_name(folder, &opts.msgprefix, path(&tmp)).and_then(|name| {
        // procmail refuses to overwrite an old message of the same name.
        fs::hard_link(path(&tmp), path(&name)).map(|()| name)
    });
    finish_temp(folder, tmp, placed, written, opts, log)
}

/// The end of a temp-file delivery (directory and MH folders): the temp
/// file goes, a failed link is logged and returned, the folder is synced,
/// and the delivery names the file it became.
pub(crate) fn finish_temp(
    folder: &[u8],
    tmp: Vec<u8>,
    placed: std::io::Result<Vec<u8>>,
    written: usize,
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(Delivered, PathBuf), MailboxError> {
    let _ = fs::remove_file(path(&tmp));
    let name = placed.map_err(|source| {
        let e = MailboxError::Temp { name: tmp, source };
        log(Level::Always, e.to_string().as_bytes());
        e
    })?;
    if opts.fsync {
        let _ = sync_dir(folder);
    }
    Ok((
        Delivered {
            lastfolder: name.clone(),
            written,
            skipped: Vec::new(),
            offset: 0,
            first_len: 0,
        },
        path(&name).to_path_buf(),
    ))
}

/// Links the delivered file `primary` into `folder` under the same inode
/// code (`msg.<same code>`).
pub(crate) fn link(
    folder: &[u8],
    primary: &Path,
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Option<Vec<u8>> {
    let name = msg_name(folder, &opts.msgprefix, primary).ok()?;
    link_logged(primary, &name, log).ok()?;
    if opts.fsync {
        let _ = sync_dir(folder);
    }
    Some(name)
}
