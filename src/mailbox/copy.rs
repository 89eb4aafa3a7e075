//! The one copy routine every folder writer uses (Postfix `mail_copy`):
//! `>From` escaping, the final-newline rule, the kernel lock, fsync, the
//! new-mail timestamps and the truncate-on-error rollback, each switched
//! on by an option.
//!
//! It writes to a file it is handed and never decides a folder's format.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use super::{Level, lock};

/// What to do while copying; each writer picks its set (spec §10).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CopyOpts {
    /// Insert `>` before `From ` lines (mbox only, not with `r`).
    pub(crate) escape: Option<Escape>,
    /// Append one newline unless the data ends in two (spec §10.1).
    pub(crate) final_newline: bool,
    /// Hold the fcntl write lock while writing.
    pub(crate) kernel_lock: bool,
    /// Leave atime one second before mtime so mail readers see new mail.
    pub(crate) new_mail_times: bool,
    /// On failure cut the file back to its size before we started.
    pub(crate) truncate_on_error: bool,
    /// fsync the file before returning.
    pub(crate) fsync: bool,
}

/// Where `>From` escaping applies inside the data being written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Escape {
    /// Offset of the body in the data (the data's length if it is all header).
    pub(crate) body_start: usize,
    /// Body bytes exempt because `Content-Length:` counts them (`None` when
    /// the header has no such field, or with `-Y`).
    pub(crate) protect: Option<usize>,
}

/// A failed copy: the OS error, and whether the file was cut back.
#[derive(Debug)]
pub(crate) struct CopyError {
    /// What went wrong.
    pub(crate) source: io::Error,
    /// The file is back at its old size.
    pub(crate) truncated: bool,
}

/// Offsets of the lines in `data` that get a `>` in front.
///
/// Rules checked against the real procmail (spec §10.3, §3):
/// * a line counts if it starts with `From ` (case and space exact) right
///   after a newline, so the very first byte is never escaped;
/// * in the header, leading empty lines and the first line itself are
///   exempt, and the whole `\nFrom ` must lie inside the header;
/// * in the body, with `Content-Length:` giving N, a line is exempt while
///   its preceding newline lies within the first N body bytes (N=9 leaves
///   `From` at body offset 9 alone and escapes one at offset 16); without
///   the field the body's first line is escaped too.
pub(crate) fn escape_points(data: &[u8], e: Escape) -> Vec<usize> {
    const FROM: &[u8] = b"\nFrom ";
    let body_start = e.body_start.min(data.len());
    let real_start = data.iter().take_while(|&&b| b == b'\n').count() + 1;
    let rest_body = match e.protect {
        None => body_start.saturating_sub(1),
        Some(n) => body_start.saturating_add(n),
    };
    let mut out = Vec::new();
    let mut q = 0;
    while let Some(off) = memchr(b'\n', &data[q..]) {
        q += off;
        if data[q..].starts_with(FROM) {
            let in_header = q + FROM.len() <= body_start;
            let escape = if in_header {
                q >= real_start
            } else {
                q >= rest_body
            };
            if escape {
                out.push(q + 1);
            }
        }
        q += 1;
    }
    out
}

/// Position of the first `b` in `hay`.
fn memchr(b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == b)
}

/// Whether the final-newline rule adds a newline after `data`.
pub(crate) fn needs_newline(data: &[u8]) -> bool {
    !data.ends_with(b"\n\n")
}

/// Writes `data` to the end of `file` as `o` says; returns the bytes
/// written (escapes and the added newline included, as the log abstract
/// counts them).
///
/// Like procmail, a kernel lock that cannot be had (e.g. ENOLCK on NFS
/// without lockd) is logged as `Kernel-lock failed` and the write goes on
/// under the dotlock alone; a file that cannot seek (a FIFO, a tty) is
/// written without rollback.
pub(crate) fn copy(
    file: &File,
    data: &[u8],
    o: &CopyOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<usize, CopyError> {
    copy_at(file, data, o, log).map(|(n, _)| n)
}

/// [`copy`], also returning where the data starts in the file: its size
/// when the kernel lock was taken (procmail's `lasttell`, which COMSAT
/// reports), 0 for a file that cannot seek.
pub(crate) fn copy_at(
    file: &File,
    data: &[u8],
    o: &CopyOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(usize, u64), CopyError> {
    let locked = o.kernel_lock && {
        log(Level::Verbose, b"Acquiring kernel-lock");
        let ok = lock::kernel_lock(file).is_ok();
        if !ok {
            log(Level::Always, b"Kernel-lock failed");
        }
        ok
    };
    let mut f = file;
    let old_len = f.seek(SeekFrom::End(0)).ok();
    let result = match write_all(file, data, o) {
        Ok(n) => Ok((n, old_len.unwrap_or(0))),
        Err(source) => {
            // Leave the folder as it was: a half message would corrupt the
            // next one in an mbox (spec §10.1, procmail `Truncated file to
            // former size`).
            let truncated = o.truncate_on_error && old_len.is_some_and(|n| file.set_len(n).is_ok());
            if truncated && o.fsync {
                let _ = file.sync_data();
            }
            Err(CopyError { source, truncated })
        }
    };
    if locked && lock::kernel_unlock(file).is_err() {
        log(Level::Always, b"Kernel-unlock failed");
    }
    result
}

/// The write itself, without rollback.
fn write_all(file: &File, data: &[u8], o: &CopyOpts) -> io::Result<usize> {
    let mut w = BufWriter::with_capacity(64 * 1024, file);
    let mut written = 0;
    let mut from = 0;
    if let Some(e) = o.escape {
        for p in escape_points(data, e) {
            w.write_all(&data[from..p])?;
            w.write_all(b">")?;
            written += p - from + 1;
            from = p;
        }
    }
    w.write_all(&data[from..])?;
    written += data.len() - from;
    if o.final_newline && needs_newline(data) {
        w.write_all(b"\n")?;
        written += 1;
    }
    w.flush()?;
    drop(w);
    if o.new_mail_times && written > 0 {
        set_new_mail_times(file);
    }
    if o.fsync {
        match file.sync_all() {
            // EINVAL: not a file that can be synced (procmail ignores it).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            r => r?,
        }
    }
    Ok(written)
}

/// Sets atime one second before mtime, so that mail readers see new mail.
///
/// procmail writes the first byte, and sleeps a second if atime equals
/// mtime (spec §10.3); setting the time explicitly gives the same
/// `atime < mtime` without the sleep. Failure (e.g. EPERM on a mailbox
/// we do not own) only costs the new-mail flag, so it is ignored.
fn set_new_mail_times(file: &File) {
    use nix::sys::stat::{fstat, futimens};
    use nix::sys::time::TimeSpec;
    if let Ok(st) = fstat(file.as_fd()) {
        let atime = TimeSpec::new(st.st_mtime - 1, st.st_mtime_nsec);
        let _ = futimens(file.as_fd(), &atime, &TimeSpec::UTIME_OMIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(data: &[u8], body_start: usize, protect: Option<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut from = 0;
        for p in escape_points(
            data,
            Escape {
                body_start,
                protect,
            },
        ) {
            out.extend_from_slice(&data[from..p]);
            out.push(b'>');
            from = p;
        }
        out.extend_from_slice(&data[from..]);
        out
    }

    fn body_of(m: &[u8]) -> usize {
        m.windows(2)
            .position(|w| w == b"\n\n")
            .map_or(m.len(), |p| p + 2)
    }

    #[test]
    fn escaping_matches_procmail() {
        // Each `want` is the mbox the real procmail 3.23pre wrote for the
        // message (`procmail -m rc < msg`, rc = `:0` + folder).
        let cases: &[(&[u8], Option<usize>, &[u8])] = &[
            (
                b"From a  b\nFrom x\nSubject: s\n\nFrom body\nfrom low\nFromnospace\n>From q\n From sp\nFrom last",
                None,
                b"From a  b\n>From x\nSubject: s\n\n>From body\nfrom low\nFromnospace\n>From q\n From sp\n>From last",
            ),
            // Content-Length:5 rewritten to 9 (too narrow for 23).
            (
                b"From a  b\nContent-Length:9\n\n12345678\nFrom x\nFrom y\n",
                Some(9),
                b"From a  b\nContent-Length:9\n\n12345678\nFrom x\n>From y\n",
            ),
            (
                b"From a  b\nContent-Length:9\n\n1234567\nFrom x\nFrom y\n",
                Some(9),
                b"From a  b\nContent-Length:9\n\n1234567\nFrom x\n>From y\n",
            ),
            (
                b"From a  b\nContent-Length:9\n\nFrom x\nFrom y\n",
                Some(9),
                b"From a  b\nContent-Length:9\n\nFrom x\nFrom y\n",
            ),
            (
                b"From a  b\nContent-Length:20\n\nFrom \nFrom 2\nFrom 3\n",
                Some(20),
                b"From a  b\nContent-Length:20\n\nFrom \nFrom 2\nFrom 3\n",
            ),
        ];
        for &(msg, protect, want) in cases {
            let got = esc(msg, body_of(msg), protect);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "message {:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn leading_newlines_are_not_a_header_end() {
        // Checked: procmail wrote "\n\nFrom x\n\n" for "\n\nFrom x\n", and
        // escaped the second line of "\n\nSubject: x\nFrom y\n\nFrom b\n".
        let m = b"\n\nFrom x\n";
        assert_eq!(esc(m, m.len(), None), m.to_vec());
        let m = b"\n\nSubject: x\nFrom y\n\nFrom b\n";
        let want = b"\n\nSubject: x\n>From y\n\n>From b\n";
        assert_eq!(esc(m, 21, None), want.to_vec());
    }

    #[test]
    fn body_alone_keeps_its_first_line() {
        // `:0b` into an mbox: the body's first `From ` line is the first
        // byte written and stays as it is (checked).
        let b = b"From body\nFrom 2\n";
        assert_eq!(esc(b, 0, None), b"From body\n>From 2\n".to_vec());
    }

    #[test]
    fn final_newline_rule() {
        let cases: &[(&[u8], bool)] = &[
            (b"", true),
            (b"\n", true),
            (b"text", true),
            (b"text\n", true),
            (b"text\n\n", false),
            (b"\n\n", false),
        ];
        for &(data, want) in cases {
            assert_eq!(needs_newline(data), want, "{data:?}");
        }
    }

    #[test]
    fn copy_counts_escapes_and_newline_and_sets_new_mail_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box");
        std::fs::write(&path, b"old\n").unwrap();
        let f = File::options().append(true).open(&path).unwrap();
        let data = b"From a\n\nFrom b";
        let o = CopyOpts {
            escape: Some(Escape {
                body_start: 8,
                protect: None,
            }),
            final_newline: true,
            kernel_lock: true,
            new_mail_times: true,
            truncate_on_error: true,
            fsync: true,
        };
        let got = copy(&f, data, &o, &mut |_, _| {}).unwrap();
        assert_eq!(got, data.len() + 2);
        // Look at the times before reading: reading sets atime (relatime).
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&path).unwrap();
        assert!(
            m.atime() < m.mtime(),
            "atime {} mtime {}",
            m.atime(),
            m.mtime()
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old\nFrom a\n\n>From b\n");
    }
}
