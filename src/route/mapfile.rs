//! Plain makemap-input maps (mta-semantics A.1): `key<blanks>value` lines,
//! `#` comment lines and blank lines, read directly without a makemap step.
//!
//! This module owns the line syntax only; what a value means belongs to the
//! map that uses it (`virtusertable`). It never opens a file: it gets the
//! bytes and the name to show in diagnostics.

use std::collections::HashMap;

use crate::diag::{Diagnostic, Span};

use super::table::MemTable;

/// One `key value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// The key as written.
    pub key: Vec<u8>,
    /// The value: the rest of the line after the blanks, trailing blanks cut.
    pub value: Vec<u8>,
    /// Where the key is.
    pub key_span: Span,
    /// Where the value is.
    pub value_span: Span,
    /// 1-based line number.
    pub line: usize,
}

/// The good entries of one map file, in file order, without duplicate keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapFile {
    /// The entries kept (the first of each key).
    pub entries: Vec<MapEntry>,
}

impl MapFile {
    /// The entries as a [`MemTable`].
    pub fn table(&self) -> MemTable {
        MemTable::from_pairs(self.entries.iter().map(|e| (&e.key, &e.value)))
    }
}

/// The physical lines of `src`: (offset of the line, its bytes without the
/// newline and without one trailing CR).
pub(crate) fn lines(src: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= src.len() {
            return None;
        }
        let end = src[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(src.len(), |p| start + p);
        let mut line = &src[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let item = (start, line);
        start = end + 1;
        Some(item)
    })
}

/// Whether `b` is a blank (space or tab).
pub(crate) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses a makemap-input map. Bad lines are reported and skipped; the rest
/// load (A.1: one typo must not stop all mail).
///
/// Rules (A.1): blank lines and lines whose first byte is `#` are ignored;
/// the key runs to the first blank, the value is the rest after the blanks
/// (it may hold spaces); a missing value is an error; a duplicate key (ASCII
/// case-insensitive) is a warning and the first entry wins.
pub fn parse(file: &str, src: &[u8]) -> (MapFile, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut map = MapFile::default();
    let mut first_line: HashMap<Vec<u8>, usize> = HashMap::new();
    for (lineno, (off, line)) in lines(src).enumerate() {
        let lineno = lineno + 1;
        if line.iter().all(|&b| is_blank(b)) || line[0] == b'#' {
            continue;
        }
        if is_blank(line[0]) {
            let col = line.iter().position(|&b| !is_blank(b)).unwrap_or(0);
            diags.push(Diagnostic::error(
                file,
                Span::new(off, off + col),
                "line starts with a blank: missing key",
            ));
            continue;
        }
        let key_end = line.iter().position(|&b| is_blank(b)).unwrap_or(line.len());
        let key = &line[..key_end];
        let key_span = Span::new(off, off + key_end);
        let value_start = line[key_end..]
            .iter()
            .position(|&b| !is_blank(b))
            .map_or(line.len(), |p| key_end + p);
        let mut value_end = line.len();
        while value_end > value_start && is_blank(line[value_end - 1]) {
            value_end -= 1;
        }
        if value_start == value_end {
            diags.push(Diagnostic::error(
                file,
                key_span,
                format!("missing value for key `{}`", String::from_utf8_lossy(key)),
            ));
            continue;
        }
        let folded = key.to_ascii_lowercase();
        if let Some(first) = first_line.get(&folded) {
            diags.push(
                Diagnostic::warning(
                    file,
                    key_span,
                    format!(
                        "duplicate key `{}` ignored, the first entry wins",
                        String::from_utf8_lossy(key)
                    ),
                )
                .with_note(format!("first defined on line {first}")),
            );
            continue;
        }
        first_line.insert(folded, lineno);
        map.entries.push(MapEntry {
            key: key.to_vec(),
            value: line[value_start..value_end].to_vec(),
            key_span,
            value_span: Span::new(off + value_start, off + value_end),
            line: lineno,
        });
    }
    (map, diags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::table::Table;

    #[test]
    fn value_is_the_rest_of_the_line() {
        // A.1: the value may contain spaces.
        let src = b"# comment\n\nbob@x.test\terror:nouser 550 No such user\n";
        let (map, diags) = parse("vt", src);
        assert!(diags.is_empty(), "{diags:?}");
        let got = map.table();
        assert_eq!(
            got.lookup(b"BOB@x.test"),
            Some(&b"error:nouser 550 No such user"[..])
        );
        assert_eq!(map.entries[0].line, 3);
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_loads() {
        // A.1: missing value is an error, the duplicate keeps the first entry.
        let src = b"a@x.test one\nlonely\n  indented value\nA@X.test two\nb@x.test three\r\n";
        let (map, diags) = parse("vt", src);
        let got: Vec<String> = diags.iter().map(|d| d.short(src)).collect();
        let want = [
            "vt:2:1: missing value for key `lonely`",
            "vt:3:1: line starts with a blank: missing key",
            "vt:4:1: duplicate key `A@X.test` ignored, the first entry wins",
        ];
        assert_eq!(got, want);
        let t = map.table();
        assert_eq!(t.lookup(b"a@x.test"), Some(&b"one"[..]));
        assert_eq!(t.lookup(b"b@x.test"), Some(&b"three"[..]));
    }

    #[test]
    fn comment_only_at_line_start() {
        // A.1: `#` starts a comment only as the first character.
        let (map, _) = parse("vt", b"k v # not a comment\n");
        assert_eq!(map.entries[0].value, b"v # not a comment");
    }
}
