//! Unique file names: Maildir names, temp names for MH, directory folders
//! and lockfiles, and the base-64 "inode code" of directory folders.
//!
//! Owns the per-process name counter. Never creates a file itself.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// procmail's digit alphabet for numbers written in base 64 (`ultoan`).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The serial characters of temp names, one per name within a second
/// (checked against procmail's `strace`: `_LwB.2ZBCrB.vm`, `_HxB,6ZBCrB.vm`,
/// `_HxB+...`, `_HxB%...`).
const SERIAL: &[u8; 4] = b".,+%";

/// `n` in base 64, least significant digit first, as procmail writes inode
/// numbers of directory folders (`msg.xHMm` for inode 10011121, checked
/// against the real procmail) and pids/times in temp names.
pub(crate) fn code(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        out.push(ALPHABET[(n % 64) as usize]);
        n /= 64;
        if n == 0 {
            return out;
        }
    }
}

/// The host name as it appears in unique names: `/`, `:` and `\` become
/// `\ooo` octal escapes (spec §10.4) so the name stays one path component
/// and a valid Maildir name.
pub(crate) fn escape_host(host: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len());
    for &b in host {
        if matches!(b, b'/' | b':' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// One draw from the per-process counter: a time and a serial number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Seconds since the epoch when the counter last started over.
    pub(crate) t: u64,
    /// 0, 1, 2, 3 within one second; more only if more names are needed
    /// within the same second.
    pub(crate) n: u32,
}

/// The counter state: procmail keeps one per process, shared by every kind
/// of unique name (spec §10.4: `md/.._0`, an MH temp, then `dd/.._2`).
static COUNTER: Mutex<Option<Stamp>> = Mutex::new(None);

/// The current time in whole seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The next stamp from the counter given the current time.
///
/// Like procmail, four names share the time at which the counter last
/// started over. Deviation: after the fourth name within one second
/// procmail sleeps until the next second; we keep counting (`_4`, `_5`)
/// instead, which keeps names unique without stalling a busy process.
fn advance(state: &mut Option<Stamp>, now: u64) -> Stamp {
    let next = match *state {
        Some(s) if s.n < SERIAL.len() as u32 => s,
        Some(s) if s.t == now => s,
        _ => Stamp { t: now, n: 0 },
    };
    *state = Some(Stamp {
        t: next.t,
        n: next.n + 1,
    });
    next
}

/// Draws the next stamp from the process-wide counter.
pub(crate) fn next_stamp() -> Stamp {
    let mut state = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    advance(&mut state, now())
}

/// A Maildir file name `<secs>.<pid>_<n>.<host>` (spec §10.4).
pub(crate) fn maildir_name(s: Stamp, pid: u32, host: &[u8]) -> Vec<u8> {
    let mut out = format!("{}.{}_{}.", s.t, pid, s.n).into_bytes();
    out.extend_from_slice(&escape_host(host));
    out
}

/// A temp name `_<pid code><serial><time code>.<host>` as procmail's
/// `unique()` makes them for lockfiles and MH/directory folders.
pub(crate) fn temp_name(s: Stamp, pid: u32, host: &[u8]) -> Vec<u8> {
    let mut out = vec![b'_'];
    out.extend_from_slice(&code(u64::from(pid)));
    match SERIAL.get(s.n as usize) {
        Some(&c) => out.push(c),
        // Beyond procmail's four names per second (see `advance`): the
        // serial in base 64 behind `%`, which no pid code contains.
        None => {
            out.push(b'%');
            out.extend_from_slice(&code(u64::from(s.n)));
        }
    }
    out.extend_from_slice(&code(s.t));
    out.push(b'.');
    out.extend_from_slice(&escape_host(host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_base64_least_significant_first() {
        // Pairs seen in files and straces of the real procmail.
        let cases: &[(u64, &[u8])] = &[
            (10011121, b"xHMm"),     // inode of b/msg.xHMm
            (7179, b"LwB"),          // pid 7179 in _LwB.2ZBCrB.vm
            (7239, b"HxB"),          // pid 7239 in _HxB,6ZBCrB.vm
            (1795692154, b"6ZBCrB"), // time in _HxB,6ZBCrB.vm
            (0, b"A"),
            (63, b"_"),
            (64, b"AB"),
        ];
        for &(n, want) in cases {
            let got = code(n);
            assert_eq!(got, want, "code({n})");
        }
    }

    #[test]
    fn host_separators_are_octal_escaped() {
        let got = escape_host(b"a/b:c\\d.e");
        assert_eq!(got, b"a\\057b\\072c\\134d.e".to_vec());
    }

    #[test]
    fn four_names_share_a_second_then_the_counter_restarts() {
        let mut st = None;
        let got: Vec<Stamp> = [100, 100, 101, 101, 101, 102, 102]
            .iter()
            .map(|&t| advance(&mut st, t))
            .collect();
        let want = [
            (100, 0),
            (100, 1),
            (100, 2),
            (100, 3),
            (101, 0),
            (101, 1),
            (101, 2),
        ];
        let got: Vec<(u64, u32)> = got.iter().map(|s| (s.t, s.n)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn fifth_name_in_the_same_second_keeps_counting() {
        let mut st = None;
        let got: Vec<u32> = (0..6).map(|_| advance(&mut st, 7).n).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn names_have_procmails_shape() {
        let s = Stamp {
            t: 1795692154,
            n: 1,
        };
        assert_eq!(
            maildir_name(s, 7239, b"vm"),
            b"1795692154.7239_1.vm".to_vec()
        );
        assert_eq!(temp_name(s, 7239, b"vm"), b"_HxB,6ZBCrB.vm".to_vec());
        let s = Stamp {
            t: 1795692154,
            n: 9,
        };
        assert_eq!(temp_name(s, 7239, b"vm"), b"_HxB%J6ZBCrB.vm".to_vec());
    }
}
