//! One message as bytes.
//!
//! A [`Message`] owns the raw bytes of a mail and knows where its header
//! ends. It edits the postmark (the mbox `From ` line) and the
//! `Content-Length:` field the way procmail does, and gives the views that
//! recipe conditions search. It never decodes: mail is not always UTF-8.
//! It knows nothing of files, rules or SMTP.

use std::borrow::Cow;
use std::cell::OnceCell;

/// A mail message: header (up to and including the first empty line) and body.
#[derive(Clone, Debug, Default)]
pub struct Message {
    bytes: Vec<u8>,
    header_len: usize,
    /// The header with continued lines joined, computed once; `None` when
    /// it has no continued line (then it is the header itself).
    joined: OnceCell<Option<Vec<u8>>>,
    /// The joined header followed by the body, for `HB` conditions.
    joined_whole: OnceCell<Vec<u8>>,
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Message {}

/// Length of the header of `bytes`: leading empty lines, then up to and
/// including the first empty line, or everything when there is none
/// (procmail-semantics §3; checked: `^Subject` matches a header that
/// follows two empty lines).
fn header_len(bytes: &[u8]) -> usize {
    let lead = bytes.iter().take_while(|&&b| b == b'\n').count();
    match memfind(&bytes[lead..], b"\n\n") {
        Some(p) => lead + p + 2,
        None => bytes.len(),
    }
}

/// Position of the first occurrence of `needle` in `hay`.
pub(crate) fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Message {
    /// Takes the bytes as they arrived; nothing is changed.
    pub fn from_bytes(bytes: Vec<u8>) -> Message {
        let header_len = header_len(&bytes);
        Message {
            bytes,
            header_len,
            joined: OnceCell::new(),
            joined_whole: OnceCell::new(),
        }
    }

    /// Builds a message from a separate header and body.
    pub fn from_parts(header: &[u8], body: &[u8]) -> Message {
        let mut bytes = Vec::with_capacity(header.len() + body.len());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(body);
        Message::from_bytes(bytes)
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Consumes the message, giving its bytes back.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the message has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The header, including its postmark and the separating empty line.
    pub fn header(&self) -> &[u8] {
        &self.bytes[..self.header_len]
    }

    /// Everything after the separating empty line.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }

    /// Replaces the header, keeping the body (an `h` filter). The body
    /// moves within the same buffer; it is never copied elsewhere.
    pub fn set_header(&mut self, header: &[u8]) {
        self.bytes.splice(..self.header_len, header.iter().copied());
        self.edited();
    }

    /// Replaces the body, keeping the header (a `b` filter).
    pub fn set_body(&mut self, body: &[u8]) {
        self.bytes.truncate(self.header_len);
        self.bytes.extend_from_slice(body);
        self.joined_whole = OnceCell::new();
    }

    /// The header as conditions search it: every newline followed by a
    /// blank (a continued field) becomes a space (procmail-semantics §3).
    pub fn joined_header(&self) -> &[u8] {
        let joined = self
            .joined
            .get_or_init(|| match join_continuations(self.header()) {
                Cow::Borrowed(_) => None,
                Cow::Owned(j) => Some(j),
            });
        joined.as_deref().unwrap_or(self.header())
    }

    /// The whole message as `HB` conditions search it: the joined header
    /// and the body. Borrowed from the message when no line is continued.
    pub fn joined_whole(&self) -> &[u8] {
        self.joined_header();
        if self.joined.get() == Some(&None) {
            return &self.bytes;
        }
        self.joined_whole.get_or_init(|| {
            let mut all = Vec::with_capacity(self.bytes.len());
            all.extend_from_slice(self.joined_header());
            all.extend_from_slice(self.body());
            all
        })
    }

    /// Forgets the cached views after an edit of the bytes.
    fn edited(&mut self) {
        self.header_len = header_len(&self.bytes);
        self.joined = OnceCell::new();
        self.joined_whole = OnceCell::new();
    }

    /// Length of the leading `From ` line with its newline, 0 when there is none.
    pub fn postmark_len(&self) -> usize {
        if !self.bytes.starts_with(b"From ") {
            return 0;
        }
        match self.bytes.iter().position(|&b| b == b'\n') {
            Some(p) if p < self.header_len => p + 1,
            _ => self.header_len,
        }
    }

    /// The postmark line without its newline, if any.
    pub fn postmark(&self) -> Option<&[u8]> {
        let n = self.postmark_len();
        (n > 0).then(|| {
            self.bytes[..n]
                .strip_suffix(b"\n")
                .unwrap_or(&self.bytes[..n])
        })
    }

    /// Length of the postmark plus the `>From ` lines right below it: the
    /// part that Maildir folders and forwards leave out (§10.4, §10.6).
    pub fn envelope_len(&self) -> usize {
        let mut n = self.postmark_len();
        if n == 0 {
            return 0;
        }
        while n < self.header_len && self.bytes[n..].starts_with(b">From ") {
            n = match self.bytes[n..self.header_len]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(p) => n + p + 1,
                None => self.header_len,
            };
        }
        n
    }

    /// Sets the postmark to `line` (without newline), replacing an existing one.
    /// The rest of the message moves within its buffer, so a big message
    /// is not held twice.
    pub fn set_postmark(&mut self, line: &[u8]) {
        let old = self.postmark_len();
        let new = line.iter().copied().chain(std::iter::once(b'\n'));
        self.bytes.splice(..old, new);
        self.edited();
    }

    /// Drops leading empty lines, as procmail does in `-d` mode.
    pub fn skip_leading_newlines(&mut self) {
        let n = self.bytes.iter().take_while(|&&b| b == b'\n').count();
        if n > 0 {
            self.bytes.drain(..n);
            self.edited();
        }
    }

    /// The value of the first header field named `name` (case-insensitive,
    /// without the colon), continuation lines joined, leading blanks trimmed.
    pub fn header_field(&self, name: &[u8]) -> Option<Vec<u8>> {
        let joined = self.joined_header();
        for line in joined.split(|&b| b == b'\n') {
            if line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name)
                && line[name.len()] == b':'
            {
                let v = &line[name.len() + 1..];
                let start = v
                    .iter()
                    .position(|&b| b != b' ' && b != b'\t')
                    .unwrap_or(v.len());
                return Some(v[start..].to_vec());
            }
        }
        None
    }

    /// Rewrites a `Content-Length:` field in place to the real body length,
    /// keeping the field's width, and returns the number of body bytes it
    /// now protects from `>From` escaping (procmail-semantics §3). Returns 0
    /// when there is no such field.
    pub fn fix_content_length(&mut self) -> usize {
        let hl = self.header_len;
        let mut pos = 0;
        let mut field = None;
        while pos < hl {
            let end = self.bytes[pos..hl]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(hl, |p| pos + p);
            let line = &self.bytes[pos..end];
            if line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"Content-Length:") {
                field = Some((pos + 15, end));
                break;
            }
            pos = end + 1;
        }
        let Some((vstart, vend)) = field else {
            return 0;
        };
        let mut body_len = self.bytes.len() - hl;
        if self.bytes.len() >= 2 && self.bytes[self.bytes.len() - 2] == b'\n' && body_len > 0 {
            body_len -= 1;
        }
        let width = vend - vstart;
        let digits = body_len.to_string();
        let text = if digits.len() <= width {
            format!("{digits:>width$}")
        } else {
            "9".repeat(width)
        };
        self.bytes[vstart..vend].copy_from_slice(text.as_bytes());
        self.edited();
        text.trim_start().parse().unwrap_or(0)
    }
}

/// chrono's format for ctime(3)'s date, as in mbox postmarks and
/// procmail's log: `Thu Nov 26 09:01:41 2026`.
pub const CTIME: &str = "%a %b %e %H:%M:%S %Y";

/// chrono's format for an RFC 5322 date: `Thu, 26 Nov 2026 09:01:41 +0000`.
pub const RFC5322_DATE: &str = "%a, %d %b %Y %H:%M:%S %z";

/// `text` as an RFC 5322 phrase (a display name, a `List-Id:`
/// description): as it is when it is atoms and blanks, else a quoted
/// string with `"` and `\` escaped.
pub fn phrase(text: &str) -> String {
    let atom = |c: char| c.is_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c);
    if text.chars().all(atom) {
        return text.to_string();
    }
    let mut q = String::from("\"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// `data` with every newline that is followed by a blank turned into a space.
pub fn join_continuations(data: &[u8]) -> Cow<'_, [u8]> {
    let continued = |i: usize| data[i] == b'\n' && matches!(data.get(i + 1), Some(b' ' | b'\t'));
    if !(0..data.len()).any(continued) {
        return Cow::Borrowed(data);
    }
    Cow::Owned(
        (0..data.len())
            .map(|i| if continued(i) { b' ' } else { data[i] })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_ends_after_first_empty_line() {
        let m = Message::from_bytes(b"A: b\n\nbody\n\nmore".to_vec());
        assert_eq!(m.header(), b"A: b\n\n");
        assert_eq!(m.body(), b"body\n\nmore");
        let m = Message::from_bytes(b"A: b\n".to_vec());
        assert_eq!(m.header(), b"A: b\n");
        assert_eq!(m.body(), b"");
    }

    #[test]
    fn continuation_joined_for_search_only() {
        let m = Message::from_bytes(b"Subject: a,\n b\n\nx".to_vec());
        assert_eq!(m.joined_header(), b"Subject: a,  b\n\n");
        assert_eq!(m.joined_whole(), b"Subject: a,  b\n\nx");
        assert_eq!(m.header(), b"Subject: a,\n b\n\n");
    }

    #[test]
    fn content_length_keeps_width() {
        let cases: [(&[u8], &[u8], usize); 3] = [
            (
                b"Content-Length: 3\n\n0123456789abc\n",
                b"Content-Length:14\n\n",
                14,
            ),
            (
                b"Content-Length: 99999\n\n0123456789abc\n",
                b"Content-Length:    14\n\n",
                14,
            ),
            (
                b"Content-Length:0\n\n0123456789abc\n",
                b"Content-Length:9\n\n",
                9,
            ),
        ];
        for (input, want, protect) in cases {
            let mut m = Message::from_bytes(input.to_vec());
            let got = m.fix_content_length();
            assert_eq!(
                m.header(),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(got, protect);
        }
    }

    #[test]
    fn set_header_keeps_the_body_and_finds_the_new_end() {
        // (new header, want bytes, want header): a filter's header output
        // without the empty line runs into the body, as procmail reads it.
        let cases: [(&[u8], &[u8], &[u8]); 3] = [
            (
                b"X: longer header\n\n",
                b"X: longer header\n\nbody\n\nmore\n",
                b"X: longer header\n\n",
            ),
            (b"X\n\n", b"X\n\nbody\n\nmore\n", b"X\n\n"),
            (b"X: y\n", b"X: y\nbody\n\nmore\n", b"X: y\nbody\n\n"),
        ];
        for (header, want, want_header) in cases {
            let mut m = Message::from_bytes(b"A: b\nC: d\n\nbody\n\nmore\n".to_vec());
            m.joined_whole();
            m.set_header(header);
            assert_eq!(m.as_bytes(), want);
            assert_eq!(m.header(), want_header);
            assert_eq!(m.joined_whole(), want, "cached view forgotten");
        }
    }

    #[test]
    fn set_postmark_inserts_or_replaces() {
        let cases: [(&[u8], &[u8]); 3] = [
            (b"A: b\n\nx\n", b"From me  now\nA: b\n\nx\n"),
            (b"From a  Mon\nA: b\n\nx\n", b"From me  now\nA: b\n\nx\n"),
            (
                b"From a-much-longer-sender@example.com  Mon\n\nx\n",
                b"From me  now\n\nx\n",
            ),
        ];
        for (input, want) in cases {
            let mut m = Message::from_bytes(input.to_vec());
            m.set_postmark(b"From me  now");
            assert_eq!(m.as_bytes(), want);
            assert_eq!(m.postmark(), Some(&b"From me  now"[..]));
            assert_eq!(m.body(), b"x\n");
        }
    }

    #[test]
    fn envelope_includes_gt_from_lines() {
        let m = Message::from_bytes(b"From a  Mon\n>From b\nX: y\n\nz".to_vec());
        assert_eq!(m.postmark(), Some(&b"From a  Mon"[..]));
        assert_eq!(m.envelope_len(), 20);
    }
}
