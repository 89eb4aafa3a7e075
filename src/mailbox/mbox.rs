//! mbox files: append under the kernel lock, `>From` escaping, the
//! final-newline rule, fsync, and rollback on error (spec §10.3).
//!
//! Never takes a dotlock (the caller holds it) and never touches other
//! folder kinds.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

use super::copy::{self, CopyOpts, Escape};
use super::{FILE_MODE, Level, MailboxError, WriteOpts, path, quoted};

/// Appends `data` to the mbox `name` (created 0667 & ~umask if missing,
/// its directory must exist); returns the bytes written and the offset
/// where they start.
pub(crate) fn write(
    name: &[u8],
    data: &[u8],
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(usize, u64), MailboxError> {
    let fail = |source, log: &mut dyn FnMut(Level, &[u8])| {
        let e = MailboxError::Write {
            name: name.to_vec(),
            source,
            lastfolder: Some(name.to_vec()),
        };
        log(Level::Always, e.to_string().as_bytes());
        e
    };
    log(Level::Verbose, &quoted("Opening", name));
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path(name))
        .map_err(|e| fail(e, log))?;
    let o = CopyOpts {
        escape: (!opts.raw).then_some(Escape {
            body_start: opts.body_start,
            protect: opts.protect,
        }),
        final_newline: !opts.raw,
        kernel_lock: true,
        new_mail_times: !opts.raw,
        truncate_on_error: true,
        fsync: opts.fsync,
    };
    copy::copy_at(&file, data, &o, log).map_err(|e| {
        let err = fail(e.source, log);
        if e.truncated {
            log(Level::Logged, b"Truncated file to former size");
        }
        err
    })
}
