//! The `-D maxlen cachefile` duplicate cache, in formail's own format so
//! that caches written by procmail's formail keep working (and the other
//! way round).
//!
//! The file is a ring of NUL-terminated keys. An empty key (a second NUL)
//! marks where the next key goes; a key is written there followed by a
//! new mark. Once the scan for the mark has read past `maxlen` bytes the
//! next key goes to offset 0 instead, overwriting the oldest keys; the
//! bytes after the mark are then the tail of a half-overwritten key, so
//! the scan skips the first word after the mark without comparing it.
//! The file is never truncated and may grow one key past `maxlen`.
//!
//! Locking: formail itself takes no lock on the cache (rcfiles run it
//! under a procmail lockfile, `:0 Wh: msgid.lock`). We hold an `flock` on
//! the open file while scanning and writing, which keeps concurrent
//! `postroom formail` runs apart and cannot disturb formail, which takes
//! none. Mixed use with the real formail still needs the rcfile lock.
//!
//! Owns this file format only; it never reads the message.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use nix::fcntl::{Flock, FlockArg};

/// Looks `key` up in the cache open as `file`; records it when absent.
/// Returns whether it was already there (a duplicate).
///
/// `key` must not contain NUL (formail's keys are C strings: the caller
/// cuts it at the first NUL).
pub fn check_and_record(file: &mut File, key: &[u8], maxlen: u64) -> io::Result<bool> {
    // Locked through a duplicate descriptor: flock belongs to the open
    // file, so the lock covers `file` and is released when `_lock` drops.
    let _lock = Flock::lock(file.try_clone()?, FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    file.seek(SeekFrom::Start(0))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let (dup, insert_at) = scan(&data, key, maxlen);
    if !dup {
        file.seek(SeekFrom::Start(insert_at))?;
        let mut rec = key.to_vec();
        rec.extend_from_slice(&[0, 0]);
        file.write_all(&rec)?;
        file.flush()?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(dup)
}

/// The scan of formail's `-D`, on the cache's bytes: whether `key` is
/// present, and where a new key would be written.
pub fn scan(data: &[u8], key: &[u8], maxlen: u64) -> (bool, u64) {
    let mut pos = 0usize; // formail's file position (one past the last read)
    let getc = |pos: &mut usize| -> Option<u8> {
        let c = data.get(*pos).copied();
        if c.is_some() {
            *pos += 1;
        }
        c
    };
    let mut insoffs = maxlen;
    'words: loop {
        // Compare the next word with the key, byte by byte.
        let mut p = 0usize;
        let mut j;
        loop {
            j = getc(&mut pos);
            let want = key.get(p).copied().unwrap_or(0);
            if j != Some(want) {
                break;
            }
            if want == 0 {
                return (true, insoffs);
            }
            p += 1;
        }
        let skip_rest = match j {
            Some(0) => {
                if p == 0 && insoffs == maxlen {
                    // The mark: the insertion point. The word after it is
                    // the remains of an overwritten key; skip it.
                    insoffs = pos as u64 - 1;
                    true
                } else {
                    false
                }
            }
            _ => true,
        };
        if skip_rest {
            loop {
                match getc(&mut pos) {
                    None => break 'words,
                    Some(0) => break,
                    Some(_) => {}
                }
            }
        }
        if pos as u64 >= maxlen {
            break;
        }
    }
    if insoffs >= maxlen {
        insoffs = 0;
    }
    (false, insoffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs keys through an in-memory cache the way the file is updated.
    fn run(maxlen: u64, keys: &[&str]) -> (Vec<u8>, Vec<bool>) {
        let mut data = Vec::new();
        let mut dups = Vec::new();
        for k in keys {
            let (dup, at) = scan(&data, k.as_bytes(), maxlen);
            dups.push(dup);
            if !dup {
                let at = at as usize;
                let mut rec = k.as_bytes().to_vec();
                rec.extend_from_slice(&[0, 0]);
                if data.len() < at + rec.len() {
                    data.resize(at + rec.len(), 0);
                }
                data[at..at + rec.len()].copy_from_slice(&rec);
            }
        }
        (data, dups)
    }

    #[test]
    fn records_then_finds() {
        let (data, dups) = run(8192, &["<a@x>", "bob@y", "<a@x>"]);
        assert_eq!(data, b"<a@x>\0bob@y\0\0");
        assert_eq!(dups, vec![false, false, true]);
    }

    #[test]
    fn wraps_at_maxlen() {
        let (data, dups) = run(10, &["<a>", "<b>", "<c>", "<d>", "<e>"]);
        assert_eq!(dups, vec![false; 5]);
        // What the real formail leaves after the same five keys.
        assert_eq!(data, b"<d>\0<e>\0\0c>\0\0");
    }
}
