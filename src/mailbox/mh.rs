//! MH folders (`name/.`): the message becomes file `N`, one more than the
//! highest number in the folder (spec §10.5).
//!
//! The postmark is kept, nothing is escaped, the final-newline rule holds.
//! Never locks and never renumbers existing messages.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Delivered, Level, MailboxError, WriteOpts, join, path, quoted, sync_dir};

/// The number an MH entry name stands for, read as C's `strtol` would
/// with nothing left over: `09` is 9, `09x` and `.` are not numbers.
fn number(name: &[u8]) -> Option<u64> {
    let s = name
        .iter()
        .position(|b| !b" \t\n\x0b\x0c\r".contains(b))
        .map_or(&name[name.len()..], |p| &name[p..]);
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || neg {
        return None;
    }
    // strtol saturates at LONG_MAX.
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10)
            .saturating_add(u64::from(d - b'0'))
            .min(i64::MAX as u64)
    }))
}

/// One more than the highest numbered entry in `folder` (files or
/// directories alike); 1 for an empty or unreadable folder.
fn next_number(folder: &[u8], log: &mut dyn FnMut(Level, &[u8])) -> u64 {
    let mut high = 0;
    match fs::read_dir(path(folder)) {
        Ok(entries) => {
            for e in entries.flatten() {
                use std::os::unix::ffi::OsStrExt;
                if let Some(n) = number(e.file_name().as_bytes()) {
                    high = high.max(n);
                }
            }
        }
        Err(_) => log(Level::Always, &quoted("Couldn't read", folder)),
    }
    high.saturating_add(1)
}

/// Links `from` to the first free number in `folder`, trying the next
/// number whenever one is taken (another delivery got there first).
fn link_next(
    from: &Path,
    folder: &[u8],
    log: &mut dyn FnMut(Level, &[u8]),
) -> (Vec<u8>, io::Result<()>) {
    let mut n = next_number(folder, log);
    loop {
        let name = join(folder, n.to_string().as_bytes());
        match fs::hard_link(from, path(&name)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < u64::MAX => n += 1,
            r => return (name, r),
        }
    }
}

/// Writes the message as the next number in `folder`.
///
/// Deviation in order only: procmail links an empty temp file to the
/// number and then writes it; we write and fsync the temp file first, so
/// an MH reader never sees a half-written message and a crash leaves only
/// a temp file. The files written are the same, and a failed write is
/// reported under the number procmail would have used.
pub(crate) fn write(
    folder: &[u8],
    data: &[u8],
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Result<(Delivered, PathBuf), MailboxError> {
    let named = |_: &fs::File| {
        join(
            folder,
            next_number(folder, &mut |_, _| {}).to_string().as_bytes(),
        )
    };
    let (tmp, written) = super::dir::write_temp(folder, data, opts, &named, log)?;
    let (name, linked) = link_next(path(&tmp), folder, log);
    super::dir::finish_temp(folder, tmp, linked.map(|()| name), written, opts, log)
}

/// Links the delivered file `primary` as the next number in `folder`.
pub(crate) fn link(
    folder: &[u8],
    primary: &Path,
    opts: &WriteOpts,
    log: &mut dyn FnMut(Level, &[u8]),
) -> Option<Vec<u8>> {
    let (name, linked) = link_next(primary, folder, log);
    log(Level::Verbose, &quoted("Linking to", &name));
    if linked.is_err() {
        log(Level::Always, &quoted("Couldn't make link to", &name));
        return None;
    }
    if opts.fsync {
        let _ = sync_dir(folder);
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_numbers_read_like_strtol() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"1", Some(1)),
            (b"09", Some(9)),
            (b"09x", None),
            (b".", None),
            (b"..", None),
            (b"", None),
            (b"+5", Some(5)),
            (b" 7", Some(7)),
            (b"-3", None),
            (b"_HxB,6ZBCrB.vm", None),
            (b"99999999999999999999999", Some(i64::MAX as u64)),
        ];
        for &(name, want) in cases {
            let got = number(name);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn next_number_skips_non_numbers() {
        let d = tempfile::tempdir().unwrap();
        for n in ["3", "09x", "12", "7"] {
            fs::write(d.path().join(n), "").unwrap();
        }
        fs::create_dir(d.path().join("20")).unwrap();
        use std::os::unix::ffi::OsStrExt;
        let got = next_number(d.path().as_os_str().as_bytes(), &mut |_, _| {});
        assert_eq!(got, 21);
    }

    #[test]
    fn taken_numbers_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        use std::os::unix::ffi::OsStrExt;
        let folder = d.path().as_os_str().as_bytes();
        let src = d.path().join("src");
        fs::write(&src, "m").unwrap();
        fs::write(d.path().join("1"), "").unwrap();
        let (name, r) = link_next(&src, folder, &mut |_, _| {});
        r.unwrap();
        assert_eq!(name, join(folder, b"2"));
    }
}
