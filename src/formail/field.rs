//! Header fields as formail sees them: where a field name ends, how an
//! option's field name matches a header field (case-insensitive prefix),
//! and which names count as "known" when splitting digests.
//!
//! Owns no I/O and no message state; bytes only, never UTF-8.

/// One header field, or one field given on the command line.
///
/// `text` holds the whole field with its continuation lines and, for
/// fields read from a message or given as `-a`/`-I`/... values, its final
/// newline. `id_len` is the length of the name: up to and including the
/// colon for a complete name, the whole partial name (`Received`) for an
/// option that gives only a prefix, 5 for a `From ` postmark line, 0 for
/// a header line that is no field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's bytes.
    pub text: Vec<u8>,
    /// The length of its name (see above).
    pub id_len: usize,
}

impl Field {
    /// A field read from the message: a name that does not parse gives
    /// `id_len` 0.
    pub fn header(text: &[u8]) -> Field {
        let i = break_field(text);
        Field {
            text: text.to_vec(),
            id_len: if i > 0 { i as usize } else { 0 },
        }
    }

    /// A field given as an option value (`text` ends in a newline): a
    /// partial name keeps its length.
    pub fn option(text: &[u8]) -> Field {
        let i = break_field(text);
        Field {
            text: text.to_vec(),
            id_len: i.unsigned_abs(),
        }
    }

    /// The name, colon included when there is one.
    pub fn name(&self) -> &[u8] {
        &self.text[..self.id_len.min(self.text.len())]
    }

    /// Whether this is a `From ` postmark line.
    pub fn is_postmark(&self) -> bool {
        is_postmark(&self.text)
    }

    /// Whether the field has nothing after its name but the newline
    /// (formail: `id_len + 1 >= Tot_len`).
    pub fn name_only(&self) -> bool {
        self.id_len + 1 >= self.text.len()
    }
}

/// Whether `line` starts with `From ` (case-sensitive, as formail does).
pub fn is_postmark(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

/// Where the field name in `line` ends (RFC 822 with formail's leniency).
///
/// Positive: the name's length including the colon (blanks before the
/// colon are allowed and counted; a `From ` line gives 5). Zero: a colon
/// right at the start. Negative: no colon; minus the length of the run of
/// name characters that was read (a partial name like `Received` gives
/// -8), stopped by a control character or a blank not followed by `:`.
pub fn break_field(line: &[u8]) -> isize {
    let mut p = 0usize;
    while p < line.len() {
        match line[p] {
            b':' => return if p == 0 { 0 } else { p as isize + 1 },
            b' ' | b'\t' if p > 0 => {
                let mut q = p + 1;
                while q < line.len() && matches!(line[q], b' ' | b'\t') {
                    q += 1;
                }
                if q < line.len() && line[q] == b':' {
                    return q as isize + 1;
                }
                if is_postmark(line) {
                    return 5;
                }
                // formail steps past the first blank before giving up.
                return -(p as isize + 1);
            }
            // A control character (C iscntrl in the C locale: bytes above
            // 0x7f are not) or a leading blank ends the name.
            c if c < 0x20 || c == 0x7f || c == b' ' || c == b'\t' => break,
            _ => p += 1,
        }
    }
    -(p as isize)
}

/// formail's `findf`: the first entry of `list` whose name is a
/// case-insensitive prefix of `field`'s text, where `field`'s own name is
/// at least as long. `-I Received` thus matches `Received:` and
/// `Received-SPF:`; `-x Subject:` matches only `Subject:`.
pub fn find(field: &Field, list: &[Field]) -> Option<usize> {
    list.iter().position(|h| matches(field, h))
}

/// Whether `entry` (an option's name) matches `field` as [`find`] says.
pub fn matches(field: &Field, entry: &Field) -> bool {
    field.id_len >= entry.id_len
        && field.text.len() >= entry.id_len
        && entry.text.len() >= entry.id_len
        && field.text[..entry.id_len].eq_ignore_ascii_case(&entry.text[..entry.id_len])
}

/// Skips blanks (space and tab) from `i`.
pub fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// formail's `detab`: every C whitespace byte but the space (tab, line
/// feed, vertical tab, form feed, carriage return) becomes a space, so
/// that a `-l` folder name or subject stays on one log line.
pub fn detab(s: &mut [u8]) {
    for c in s.iter_mut() {
        if matches!(*c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            *c = b' ';
        }
    }
}

/// The field names formail knows when deciding whether a run of lines is
/// the header of a new message in a digest (`-d`) or after a postmark
/// (procmail 3.22's `header.h`, in its order).
pub const KNOWN: &[&str] = &[
    "Return-Path:",
    "Received:",
    "Reply-To:",
    "From:",
    "Sender:",
    "Resent-Reply-To:",
    "Resent-From:",
    "Resent-Sender:",
    "Date:",
    "Resent-Date:",
    "To:",
    "Resent-To:",
    "Cc:",
    "Resent-Cc:",
    "Bcc:",
    "Resent-Bcc:",
    "Message-ID:",
    "Resent-Message-ID:",
    "In-Reply-To:",
    "References:",
    "Keywords:",
    "Subject:",
    "Comments:",
    "Encrypted:",
    "Notice-Requested-Upon-Delivery-To:",
    "Final-Recipient:",
    "Remote-MTA:",
    "Diagnostic-Code:",
    "Last-Attempt-Date:",
    "Errors-To:",
    "Return-Receipt-To:",
    "Precedence:",
    "Full-Name:",
    "Posted-Date:",
    "Received-Date:",
    "Message:",
    "Text:",
    "Via:",
    "Apparently-To:",
    "Apparently-Resent-To:",
    "Delivered-To:",
    "Mailing-List:",
    "Autoforwarded:",
    "Content-Identifier:",
    "Conversion:",
    "Conversion-With-Loss:",
    "Delivery-Date:",
    "Discarded-X400-IPMS-Extensions:",
    "Discarded-X400-MTS-Extensions:",
    "DL-Expansion-History:",
    "Deferred-Delivery:",
    "Expiry-Date:",
    "Importance:",
    "Incomplete-Copy:",
    "Language:",
    "Latest-Delivery-Time:",
    "Message-Type:",
    "Obsoletes:",
    "Supersedes:",
    "Original-Encoded-Information-Types:",
    "Originator-Return-Address:",
    "Priority:",
    "Reply-By:",
    "Requested-Delivery-Method:",
    "Sensitivity:",
    "X400-Content-Type:",
    "X400-MTS-Identifier:",
    "X400-Originator:",
    "X400-Received:",
    "X400-Recipients:",
    "X400-Trace:",
    "Alternate-Recipient:",
    "Prevent-Nondelivery-Report:",
    "Generate-Delivery-Report:",
    "Disclose-Recipients:",
    "Content-Return:",
    "Auto-Submitted:",
    "PP-Warning:",
    "Fcc:",
    "Resent:",
    "Forwarded:",
    "Replied:",
    "Article:",
    "Path:",
    "Summary:",
    "Organisation:",
    "Organization:",
    "Newsgroups:",
    "Followup-To:",
    "Approved:",
    "Lines:",
    "Expires:",
    "Control:",
    "Distribution:",
    "Xref:",
    "Originator:",
    "NNTP-Posting-Host:",
    "Submitted-by:",
    "Posted-To:",
    "Mail-Copies-To:",
    "Title:",
    "Article-I.D.:",
    "Posted:",
    "Relay-Version:",
    "Sent-By:",
    "Content-Type:",
    "Encoding:",
    "Content-MD5:",
    "MIME-Version:",
    "Content-Transfer-Encoding:",
    "Content-ID:",
    "Content-Description:",
    "Content-Disposition:",
    "Accept:",
    "Public:",
    "Allow:",
    "Last-Modified:",
    "URI:",
    "Version:",
    "Derived-From:",
    "Content-Language:",
    "Cost:",
    "Server:",
    "WWW-Link:",
    "Acknowledge-To:",
    "Transport-Options:",
    "Default-Options:",
    "Content-Length:",
    "Reference:",
    "Auto-Forwarded-From:",
    "Auto-Forward-Count:",
    "End-of-Header:",
    "Original-From:",
    "Original-To:",
    "Original-Cc:",
    "Original-Auto-Forwarded-From:",
    "Original-Date:",
    "Not-Delivered-To:",
    "Report-Version:",
    "Original-Received:",
    "Status:",
    "Mail-from:",
    "Return-Receipt-Requested:",
    "MR-Received:",
    "App-Message-ID:",
    "Hop-count:",
    "From-warning:",
    "Request-Remailing-To:",
    "Anon-Send-To:",
    "Latent-Time:",
    "Cutmarks:",
    "Post-To:",
    "Anon-Post-To:",
    "Encrypt-Key:",
    "Read-Receipt-To:",
    "Fake-Sender:",
    "Envelope-To:",
];

/// Whether `f` looks like a header field of a message (formail's
/// `digheadr`): a known name (blanks before the colon allowed), or an
/// `Old-` or `X-` name.
pub fn is_known_header(f: &Field) -> bool {
    let t = &f.text;
    let mut j = f.id_len;
    while j >= 2 && matches!(t.get(j - 2), Some(b' ' | b'\t')) {
        j -= 1;
    }
    if j == 0 {
        return false;
    }
    let name = &t[..(j - 1).min(t.len())];
    KNOWN
        .iter()
        .any(|k| k.len() == j && k.as_bytes()[..j - 1].eq_ignore_ascii_case(name))
        || (j > 4 && t.len() >= 4 && t[..4].eq_ignore_ascii_case(b"Old-"))
        || (j > 2 && t.len() >= 2 && t[..2].eq_ignore_ascii_case(b"X-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_end_where_formail_says() {
        let cases: &[(&[u8], isize)] = &[
            (b"Subject: hi\n", 8),
            (b"Subject : hi\n", 9),
            (b"From a@b  Mon\n", 5),
            (b"Received\n", -8),
            (b"Received", -8),
            (b":x\n", 0),
            (b"bad field\n", -4),
            (b"\n", 0),
            (b"X\x01Y: z\n", -1),
            (b"Caf\xc3\xa9: z\n", 6),
        ];
        for (line, want) in cases {
            assert_eq!(
                break_field(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn prefix_matching() {
        let opt = Field::option(b"Received\n");
        assert!(matches(&Field::header(b"Received: x\n"), &opt));
        assert!(matches(&Field::header(b"received-spf: x\n"), &opt));
        assert!(!matches(&Field::header(b"Recv: x\n"), &opt));
        let full = Field::option(b"Subject:\n");
        assert!(!matches(&Field::header(b"Subjects: x\n"), &full));
        assert!(matches(&Field::header(b"SUBJECT: x\n"), &full));
    }

    #[test]
    fn known_headers() {
        assert!(is_known_header(&Field::header(b"Subject: x\n")));
        assert!(is_known_header(&Field::header(b"X-Anything: x\n")));
        assert!(is_known_header(&Field::header(b"old-thing: x\n")));
        assert!(!is_known_header(&Field::header(b"Foo-Bar: x\n")));
        // formail compares a postmark's name without its last byte, so
        // `From ` passes as `From:`.
        assert!(is_known_header(&Field::header(b"From a  Mon\n")));
    }
}
