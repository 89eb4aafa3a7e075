//! Who sent a message, as formail decides it: pulling one address out of
//! a header field the way formail's RFC 822 scanner does, and ranking the
//! candidate fields (envelope order without `-t`, header order with it).
//!
//! Owns no I/O. The scanner works in place on a NUL-terminated copy like
//! formail's, because where it stops and what it cuts off (comments,
//! phrases, everything after the first comma) is the behaviour that
//! replies and duplicate keys depend on.

use super::field::{Field, skip_space};
use crate::message::memfind;

/// The candidate sender fields, lowest envelope rank first (the index is
/// the weight without `-t`), each with its weight for `-rt` replies and
/// for `-rt` replies that prefer Resent- fields (`-a Resent-`).
const RANKING: &[(&[u8], i32, i32)] = &[
    (b"Reply-To:", 8, 7),
    (b"From:", 7, 6),
    (b"Sender:", 6, 5),
    (b"Resent-Reply-To:", 0, 10),
    (b"Resent-From:", 0, 9),
    (b"Resent-Sender:", 0, 8),
    (b"Path:", 1, 0),
    (b"Return-Receipt-To:", 2, 1),
    (b"Errors-To:", 3, 2),
    (b"Return-Path:", 5, 4),
    (b"From ", 4, 3),
];

/// The index of the postmark in [`RANKING`] (formail's `maxindex`).
const MAX_INDEX: i32 = 10;

/// The best sender found so far in one message's header.
#[derive(Clone, Debug, Default)]
pub struct Sender {
    /// The address, if any field gave one.
    pub address: Option<Vec<u8>>,
    weight: i32,
}

impl Sender {
    /// Considers one header field. `first` says whether it is the first
    /// field of the header (only there does a postmark count); `mode` is
    /// 0 for envelope ranking, 1 for `-rt`, 3 for `-rt -a Resent-`.
    pub fn consider(&mut self, field: &Field, first: bool, mode: u8) {
        let j = field.id_len;
        let name = &field.text[..j.min(field.text.len())];
        let Some(index) = RANKING
            .iter()
            .position(|(n, _, _)| n.len() == j && n.eq_ignore_ascii_case(name))
        else {
            return;
        };
        let is_postmark = index as i32 == MAX_INDEX;
        if is_postmark && !first {
            return;
        }
        let mut weight = match mode {
            0 => index as i32,
            1 => RANKING[index].1,
            _ => RANKING[index].2,
        };
        // The value without its final newline, NUL-terminated for the
        // scanner (with room for what the scanner may write past it).
        let end = field.text.len().saturating_sub(1).max(j);
        let mut value: Vec<u8> = field.text[j..end].to_vec();
        if let Some(n) = value.iter().position(|&c| c == 0) {
            value.truncate(n);
        }
        let mut buf: Vec<u8>;
        let mut chp = 0usize;
        if is_postmark {
            let (b, w) = postmark_address(&value);
            buf = b;
            weight -= w;
        } else {
            buf = value;
        }
        buf.extend_from_slice(&[0, 0, 0]);
        // Skip blanks and line breaks before the first word.
        loop {
            chp = skip_space(&buf, chp);
            if buf[chp] == b'\n' {
                chp += 1;
            } else {
                break;
            }
        }
        let mut saddr: Option<usize> = None;
        loop {
            match buf[chp] {
                0 => break,
                b'<' => {
                    saddr = Some(chp);
                    skip_words(&mut buf, chp);
                    break;
                }
                _ => {
                    if saddr.is_none() {
                        saddr = Some(chp);
                    }
                    chp = skip_words(&mut buf, chp);
                }
            }
        }
        let Some(s) = saddr else { return };
        let addr: Vec<u8> = buf[s..].iter().take_while(|&&c| c != 0).copied().collect();
        let step = MAX_INDEX + 2;
        if !addr.is_empty() {
            let has = |c: u8| addr.contains(&c);
            if !has(b'@') && !has(b'!') && !has(b'/') {
                weight -= step * 4; // a bare "user"
            } else if memfind(&addr, b".UUCP").is_some() {
                weight -= step * 3;
            } else if has(b'@') && !has(b'.') {
                weight -= step * 2; // user@host
            } else if has(b'!') {
                weight -= step; // a bang path
            }
            if self.address.is_none() || weight > self.weight {
                self.weight = weight;
                self.address = Some(addr);
            }
        } else if index == 9 {
            // `Return-Path: <>`: a bounce; it wins over everything.
            self.weight = step;
            self.address = Some(b"<>".to_vec());
        }
    }
}

/// The address part of a postmark's value (after `From `), marked with a
/// leading `<` so that the scanner takes it whole, and how much the
/// weight drops (2 when `>From` continuation lines follow).
fn postmark_address(value: &[u8]) -> (Vec<u8>, i32) {
    let mut drop = 0;
    let mut saddr = 0usize;
    if value.contains(&b'\n') {
        drop = 2;
    }
    if value.first() == Some(&b'\n')
        && let Some(sp) = value.iter().position(|&c| c == b' ')
    {
        saddr = sp + 1;
    }
    // Move to the address of the last `>From` line.
    let mut chp = saddr;
    while let Some(nl) = value[chp..].iter().position(|&c| c == b'\n') {
        let after = chp + nl;
        let Some(sp) = value[after..].iter().position(|&c| c == b' ') else {
            break;
        };
        chp = after + sp + 1;
    }
    let Some(sp) = value[chp..].iter().position(|&c| c == b' ') else {
        return (value[chp..].to_vec(), drop);
    };
    let addr = &value[chp..chp + sp];
    let mut out = vec![b'<'];
    if addr.contains(&b'@') {
        out.extend_from_slice(addr);
    } else {
        // A UUCP postmark: prepend the hosts named by "remote from" and
        // "forwarded by", each followed by `!`.
        const REMOTE: &[u8] = b" remote from ";
        const FORWARD: &[u8] = b" forwarded by ";
        let mut s = saddr;
        loop {
            let find = |pat: &[u8], from: usize| memfind(&value[from..], pat).map(|p| p + from);
            let p1 = find(REMOTE, s);
            let p2 = find(FORWARD, s);
            let start = match (p1, p2) {
                (None, None) => break,
                (Some(a), Some(b)) if b < a => b + FORWARD.len(),
                (None, Some(b)) => b + FORWARD.len(),
                (Some(a), _) => a + REMOTE.len(),
            };
            let mut k = start;
            while k < value.len() && value[k] != b'\n' {
                out.push(value[k]);
                k += 1;
            }
            out.push(b'!');
            s = (k + 1).min(value.len());
        }
        out.extend_from_slice(addr);
    }
    (out, drop)
}

/// Skips a parenthesised comment starting at `start` (at its `(`);
/// returns the index of its `)` or of the last byte before the end.
fn skip_comment(buf: &[u8], mut start: usize) -> usize {
    loop {
        start += 1;
        match buf.get(start).copied().unwrap_or(0) {
            0 => return start - 1,
            b')' => return start,
            b'\\' => start += 1,
            b'(' => start = skip_comment(buf, start),
            _ => {}
        }
    }
}

/// formail's `skipwords`: reads one RFC 822 address starting at `start`,
/// copying its significant bytes to the front of where it started and
/// NUL-terminating them there; returns where reading stopped (at a `<`
/// that starts a machine address, at a `,`, at the end, or at a second
/// word after a blank). Comments and blanks are dropped, quoted strings
/// and domain literals kept.
pub fn skip_words(buf: &mut Vec<u8>, start: usize) -> usize {
    let at = |b: &Vec<u8>, i: usize| b.get(i).copied().unwrap_or(0);
    let oldstart = start;
    let mut start = start;
    let mut target = start;
    let mut group = 1;
    let mut hitspc = 0;
    let mut machref = 0;
    if at(buf, start) == b'<' {
        start += 1;
        machref = 1;
    }
    let put = |b: &mut Vec<u8>, i: usize, c: u8| {
        if i >= b.len() {
            b.resize(i + 1, 0);
        }
        b[i] = c;
    };
    loop {
        let c = at(buf, start);
        let delim;
        match c {
            b'<' => {
                if machref != 0 {
                    target = oldstart;
                    hitspc = 0;
                    start += 1;
                    continue;
                }
                return start;
            }
            b'(' | b' ' | b'\t' | b'\n' => {
                if c == b'(' {
                    start = skip_comment(buf, start);
                }
                hitspc |= 1;
                start += 1;
                continue;
            }
            b';' | b',' => {
                if c == b';' && group == 2 {
                    put(buf, start + 1, 0);
                }
                if group == 2 {
                    hitspc = 0;
                    put(buf, target, at(buf, start));
                    target += 1;
                    start += 1;
                    continue;
                }
                if machref != 0 {
                    machref = 2;
                    hitspc = 0;
                    put(buf, target, at(buf, start));
                    target += 1;
                    start += 1;
                    continue;
                }
                put(buf, target, 0);
                return start;
            }
            b':' | b'@' | b'.' => {
                if c == b':' && group == 1 {
                    group = 2;
                }
                if group == 1 {
                    group = 0;
                }
                hitspc = 0;
                put(buf, target, c);
                target += 1;
                start += 1;
                continue;
            }
            b'[' => delim = b']',
            b'"' => {
                put(buf, target, b'"');
                target += 1;
                delim = b'"';
                start += 1;
            }
            _ => {
                let end_here = c == 0 || c == b'>';
                if end_here || (machref == 0 && hitspc == 3 && target > oldstart) {
                    if machref == 2 {
                        // A `,` or `;` inside <...>: keep the brackets.
                        put(buf, target, b'>');
                        let len = target - oldstart;
                        target += 1;
                        buf.copy_within(oldstart..oldstart + len + 1, oldstart + 1);
                        target += 1;
                        put(buf, oldstart, b'<');
                    }
                    put(buf, target, 0);
                    return start;
                }
                if c == b'\\' {
                    put(buf, target, b'\\');
                    target += 1;
                    start += 1;
                }
                hitspc = 2;
                put(buf, target, at(buf, start));
                target += 1;
                start += 1;
                continue;
            }
        }
        // A quoted string or domain literal, copied up to its delimiter.
        loop {
            let i = at(buf, start);
            put(buf, target, i);
            target += 1;
            start += 1;
            if i == delim {
                break;
            }
            if i == b'\\' && at(buf, start) != 0 {
                put(buf, target, at(buf, start));
                target += 1;
                start += 1;
            }
            if at(buf, start) == 0 {
                break;
            }
        }
        hitspc = 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender_of(fields: &[&[u8]], mode: u8) -> Option<String> {
        let mut s = Sender::default();
        for (n, f) in fields.iter().enumerate() {
            s.consider(&Field::header(f), n == 0, mode);
        }
        s.address.map(|a| String::from_utf8_lossy(&a).into_owned())
    }

    #[test]
    fn one_address_from_a_field() {
        let want = |f: &[u8], a: &str| assert_eq!(sender_of(&[f], 1).as_deref(), Some(a));
        want(b"From: Joe <joe@y.org>\n", "joe@y.org");
        want(b"From: joe@y.org (Joe)\n", "joe@y.org");
        want(b"From: a@b.c, d@e.f\n", "a@b.c");
        want(b"From: \"Joe, Q\" <j@x.org>\n", "j@x.org");
        want(b"From: joe @ x . org\n", "joe@x.org");
        want(b"From: Joe Q. Public\n", "Joe");
    }

    #[test]
    fn ranking() {
        let msg: &[&[u8]] = &[
            b"From a@b.c  Mon Jan  1 00:00:00 2024\n",
            b"Return-Path: <env@x.org>\n",
            b"From: Joe <joe@y.org>\n",
            b"Reply-To: list@z.org\n",
        ];
        assert_eq!(sender_of(msg, 0).as_deref(), Some("a@b.c"));
        assert_eq!(sender_of(msg, 1).as_deref(), Some("list@z.org"));
        // A bare user loses to anything with a domain.
        let m2: &[&[u8]] = &[b"From: joe\n", b"Sender: a@b\n"];
        assert_eq!(sender_of(m2, 1).as_deref(), Some("a@b"));
        // An empty Return-Path wins.
        let m3: &[&[u8]] = &[b"Return-Path: <>\n", b"From: a@b.c\n"];
        assert_eq!(sender_of(m3, 0).as_deref(), Some("<>"));
    }

    #[test]
    fn uucp_postmark() {
        let m: &[&[u8]] = &[b"From joe  Mon Jan 1 remote from hostb\n"];
        assert_eq!(sender_of(m, 0).as_deref(), Some("hostb!joe"));
    }
}
