//! The byte level of the SMTP server, sans I/O: command lines and DATA.
//!
//! Owns cutting the client's byte stream into command lines
//! ([`LineReader`]) and reading a message after `354` up to the one true
//! end-of-data mark ([`DataReceiver`]). Both take input in chunks of any
//! size, split anywhere, and keep only bounded state. This module never
//! touches a socket, a clock or a file, and knows nothing of commands.
//!
//! # Line ends (mta-semantics B.6)
//!
//! * Command lines end at CRLF. A bare LF also ends a command line, so a
//!   sloppy client gets an answer and the session stays in step; the
//!   [`Line`] says so and the session refuses it under
//!   [`BareNewline::Reject`]. A bare CR never ends a line: it stays in the
//!   line, and the session refuses such a line as a bad character.
//! * In DATA only `CRLF . CRLF` ends the message. The first CRLF is the end
//!   of the last text line; right after `354` a lone `.CRLF` is the empty
//!   message. A line that starts with `.` loses that dot (dot-stuffing).
//!
//! # Anti-smuggling policy (mta-semantics B.6, "SMTP smuggling")
//!
//! A bare LF or a bare CR never ends DATA, and a `.` line only ends DATA
//! when the line before it ended in a real CRLF *and* the dot is followed
//! by a real CRLF: `<LF>.<LF>`, `<LF>.<CR><LF>`, `<CR><LF>.<LF>`,
//! `<CR>.<CR>` are all message content. What happens to a message that
//! holds a bare LF or CR is set by [`BareNewline`]:
//!
//! * [`BareNewline::Reject`] (the default): read on to the real
//!   `CRLF.CRLF`, then refuse the whole message (`550 5.5.2`). The reply is
//!   given only after the real end, never early: replying early and reading
//!   the rest as commands is the smuggling bug itself.
//! * [`BareNewline::Normalize`]: a bare LF or bare CR becomes CRLF in the
//!   stored message and starts a new line for dot-stuffing (a `.` line
//!   after it disappears, as in Postfix's `normalize`), but it still never
//!   counts as either CRLF of the end mark, so the text after it stays
//!   inside the first message.
//!
//! NUL and 8-bit bytes in DATA are kept byte-exact (mta-semantics B.6 lets
//! us keep them; we never stop or truncate at a NUL). Long text lines are
//! kept intact; only the total size and the header section are limited.
//! The stored message keeps the CRLF line ends as received; converting to
//! LF for local mailboxes is the queue's business.

/// What to do with a bare LF or bare CR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BareNewline {
    /// Refuse the command or, in DATA, the whole message after its real end.
    #[default]
    Reject,
    /// Treat it as CRLF, but never as part of the end-of-data mark.
    Normalize,
}

/// How a command line ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `<CR><LF>`, as RFC 5321 requires.
    CrLf,
    /// A `<LF>` without `<CR>` before it.
    BareLf,
}

/// One event from the [`LineReader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its line end. It may hold any byte but LF
    /// (NUL, bare CR, 8-bit): checking them is the session's job.
    Complete(Vec<u8>, Ending),
    /// A line longer than the limit; its bytes were discarded up to and
    /// including its line end, so the stream stays in step.
    TooLong,
}

/// Cuts input into command lines, with a length limit.
#[derive(Clone, Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    max: usize,
    overflow: bool,
}

impl LineReader {
    /// A reader that accepts lines of at most `max` octets including the
    /// line end (RFC 5321 §4.5.3.1.4 asks for at least 512; mta-semantics
    /// B.5 suggests up to 2048).
    pub fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            max: max.max(3),
            overflow: false,
        }
    }

    /// Takes bytes from the front of `input` up to and including the next
    /// line end and returns the line; or takes all of `input` and returns
    /// `None` when no line is complete yet. Never holds more than the limit
    /// in memory.
    pub fn next(&mut self, input: &mut &[u8]) -> Option<Line> {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (head, rest) = input.split_at(i + 1);
                *input = rest;
                let too_long = self.overflow || self.buf.len() + head.len() > self.max;
                self.overflow = false;
                if too_long {
                    self.buf.clear();
                    return Some(Line::TooLong);
                }
                let mut line = std::mem::take(&mut self.buf);
                line.extend_from_slice(&head[..i]);
                let ending = if line.last() == Some(&b'\r') {
                    line.pop();
                    Ending::CrLf
                } else {
                    Ending::BareLf
                };
                Some(Line::Complete(line, ending))
            }
            None => {
                // The LF is not here yet, so a line that already has `max`
                // octets cannot end in time.
                if !self.overflow {
                    if self.buf.len() + input.len() >= self.max {
                        self.buf = Vec::new();
                        self.overflow = true;
                    } else {
                        self.buf.extend_from_slice(input);
                    }
                }
                *input = &[];
                None
            }
        }
    }

    /// Whether part of a line is waiting for its end.
    pub fn is_pending(&self) -> bool {
        self.overflow || !self.buf.is_empty()
    }
}

/// How a DATA phase ended, once the real `CRLF.CRLF` was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// The message, dot-stuffing undone, CRLF line ends as received
    /// (bare ones made CRLF under [`BareNewline::Normalize`]).
    Message(Vec<u8>),
    /// Bigger than the size limit; its bytes were counted and dropped.
    TooBig,
    /// The header section (its field and continuation lines, up to the
    /// first line that is neither) was bigger than its limit.
    HeaderTooBig,
    /// A bare LF was seen under [`BareNewline::Reject`].
    BareLf,
    /// A bare CR was seen under [`BareNewline::Reject`].
    BareCr,
}

/// Where the receiver is within the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line; `real` when the line before ended in a real
    /// CRLF (or this is the first line).
    LineStart { real: bool },
    /// Read `.` at the start of a line.
    Dot { real: bool },
    /// Read `.<CR>` at the start of a line.
    DotCr { real: bool },
    /// Inside a line.
    Mid,
    /// Read a `<CR>` inside a line.
    Cr,
}

/// The shape of the current header line, for finding the header's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// Nothing of the line yet.
    Start,
    /// Inside a field name.
    Name,
    /// After the colon, or in a continuation line.
    Value,
}

/// Reads one message after `354`: finds the end mark across any chunk
/// boundary, undoes dot-stuffing, counts the size and applies the bare
/// LF/CR policy (see the module docs).
#[derive(Clone, Debug)]
pub struct DataReceiver {
    state: State,
    policy: BareNewline,
    max_size: u64,
    max_header: u64,
    buf: Vec<u8>,
    size: u64,
    header: u64,
    header_line: u64,
    in_header: bool,
    field: Field,
    too_big: bool,
    header_too_big: bool,
    bare_lf: bool,
    bare_cr: bool,
}

impl DataReceiver {
    /// A receiver for a message of at most `max_size` octets (counted after
    /// undoing dot-stuffing, CRLFs included, the final `.CRLF` excluded, as
    /// RFC 1870 counts), whose header section is at most `max_header`.
    pub fn new(max_size: u64, max_header: u64, policy: BareNewline) -> DataReceiver {
        DataReceiver {
            state: State::LineStart { real: true },
            policy,
            max_size,
            max_header,
            buf: Vec::new(),
            size: 0,
            header: 0,
            header_line: 0,
            in_header: true,
            field: Field::Start,
            too_big: false,
            header_too_big: false,
            bare_lf: false,
            bare_cr: false,
        }
    }

    /// The message octets counted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the message will be kept: no limit broken and no refused
    /// bare line end so far.
    fn storing(&self) -> bool {
        !(self.too_big
            || self.header_too_big
            || (self.policy == BareNewline::Reject && (self.bare_lf || self.bare_cr)))
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.in_header {
            self.header_bytes(bytes);
        }
        if self.size > self.max_size {
            self.too_big = true;
        }
        if self.storing() {
            self.buf.extend_from_slice(bytes);
        } else {
            self.buf = Vec::new();
        }
    }

    /// Counts the octets of the current header line and follows its shape.
    /// The header section ends at an empty line or at a line that is
    /// neither a field (`name:`) nor a continuation, so a message without
    /// an empty line is not taken for one huge header.
    fn header_bytes(&mut self, bytes: &[u8]) {
        self.header_line += bytes.len() as u64;
        for &b in bytes {
            self.field = match (self.field, b) {
                (Field::Start, b' ' | b'\t') => Field::Value,
                (Field::Start | Field::Name, b':') => Field::Value,
                (Field::Start | Field::Name, 33..=126) => Field::Name,
                (Field::Start | Field::Name, _) => {
                    self.in_header = false;
                    return;
                }
                (Field::Value, _) => Field::Value,
            };
        }
    }

    /// A line end: a real CRLF, or a bare one made CRLF.
    fn end_line(&mut self, real: bool) {
        self.emit(b"\r\n");
        if self.in_header {
            if self.field == Field::Value {
                // A whole field line: it counts against the header limit.
                self.header += self.header_line;
                if self.header > self.max_header {
                    self.header_too_big = true;
                }
            } else {
                // An empty line, or a line without a colon: the body begins.
                self.in_header = false;
            }
        }
        self.header_line = 0;
        self.field = Field::Start;
        self.state = State::LineStart { real };
    }

    fn bare(&mut self, lf: bool) {
        if lf {
            self.bare_lf = true;
        } else {
            self.bare_cr = true;
        }
        self.end_line(false);
    }

    /// Takes bytes from the front of `input` up to and including the end
    /// mark and returns how the message ended; or takes all of `input` and
    /// returns `None`. After `Some`, the rest of `input` is commands.
    pub fn feed(&mut self, input: &mut &[u8]) -> Option<DataEnd> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            match self.state {
                State::LineStart { real } => {
                    if b == b'.' {
                        self.state = State::Dot { real };
                    } else {
                        self.state = State::Mid;
                        i -= 1;
                    }
                }
                State::Dot { real } => match b {
                    b'\r' => self.state = State::DotCr { real },
                    // `.<LF>`: never an end mark.
                    b'\n' => self.bare(true),
                    // The stuffed dot is dropped; `b` is ordinary text.
                    _ => {
                        self.state = State::Mid;
                        i -= 1;
                    }
                },
                State::DotCr { real } => match b {
                    b'\n' if real => {
                        *input = &input[i..];
                        return Some(self.finish());
                    }
                    // `<LF>.<CR><LF>`: a `.` line after a bare line end is
                    // content, an empty line once unstuffed.
                    b'\n' => self.end_line(true),
                    // `.<CR>x`: the CR is bare.
                    _ => {
                        self.bare(false);
                        i -= 1;
                    }
                },
                State::Mid => match b {
                    b'\r' => self.state = State::Cr,
                    b'\n' => self.bare(true),
                    _ => {
                        // Copy the run of ordinary bytes at once.
                        let start = i - 1;
                        let end = input[start..]
                            .iter()
                            .position(|&c| c == b'\r' || c == b'\n')
                            .map_or(input.len(), |p| start + p);
                        let run = &input[start..end];
                        self.emit(run);
                        i = end;
                    }
                },
                State::Cr => match b {
                    b'\n' => self.end_line(true),
                    _ => {
                        self.bare(false);
                        i -= 1;
                    }
                },
            }
        }
        *input = &[];
        None
    }

    fn finish(&mut self) -> DataEnd {
        if self.too_big {
            DataEnd::TooBig
        } else if self.header_too_big {
            DataEnd::HeaderTooBig
        } else if self.policy == BareNewline::Reject && self.bare_lf {
            DataEnd::BareLf
        } else if self.policy == BareNewline::Reject && self.bare_cr {
            DataEnd::BareCr
        } else {
            DataEnd::Message(std::mem::take(&mut self.buf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks cut at `cuts` and returns the end and the
    /// bytes left over after it.
    fn data_split(input: &[u8], cuts: &[usize], policy: BareNewline) -> (Option<DataEnd>, Vec<u8>) {
        let mut rx = DataReceiver::new(1000, 500, policy);
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(input.len());
        let mut left = Vec::new();
        let mut end = None;
        for w in bounds.windows(2) {
            let mut chunk = &input[w[0]..w[1]];
            if end.is_some() {
                left.extend_from_slice(chunk);
                continue;
            }
            end = rx.feed(&mut chunk);
            left.extend_from_slice(chunk);
        }
        (end, left)
    }

    /// The same result for every way of cutting the input in two and for
    /// one byte at a time.
    fn data(input: &[u8], policy: BareNewline) -> (Option<DataEnd>, Vec<u8>) {
        let want = data_split(input, &[], policy);
        for cut in 0..=input.len() {
            let got = data_split(input, &[cut], policy);
            assert_eq!(
                got,
                want,
                "cut at {cut} of {:?}",
                input.escape_ascii().to_string()
            );
        }
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(data_split(input, &all, policy), want, "one byte at a time");
        want
    }

    fn msg(m: &[u8]) -> Option<DataEnd> {
        Some(DataEnd::Message(m.to_vec()))
    }

    #[test]
    fn end_mark_and_dot_stuffing() {
        let cases: &[(&[u8], Option<DataEnd>, &[u8])] = &[
            (b".\r\n", msg(b""), b""),
            (b"a\r\n.\r\nQUIT\r\n", msg(b"a\r\n"), b"QUIT\r\n"),
            (
                b"..\r\n...\r\n.x\r\n..x\r\n.\r\n",
                msg(b".\r\n..\r\nx\r\n.x\r\n"),
                b"",
            ),
            (b"a\r\n. \r\n.\r\n", msg(b"a\r\n \r\n"), b""),
            (b"a.\r\nb\r\n.\r\n", msg(b"a.\r\nb\r\n"), b""),
            // A final dot without CRLF is not the end (mta-semantics B.6).
            (b"a\r\n.", None, b""),
            (b"a\r\n.\r", None, b""),
            (b"nul\0 and \xff\r\n.\r\n", msg(b"nul\0 and \xff\r\n"), b""),
        ];
        for (input, want, want_left) in cases {
            let (got, left) = data(input, BareNewline::Reject);
            assert_eq!(&got, want, "input {:?}", input.escape_ascii().to_string());
            assert_eq!(&left, want_left);
        }
    }

    /// The 2023 smuggling inputs: none of them ends DATA; each message is
    /// refused after the real end, or normalised into one message.
    #[test]
    fn smuggling_never_ends_data() {
        let hidden =
            b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\nFrom: ceo\r\n";
        let cases: &[(&[u8], DataEnd, &[u8])] = &[
            (b"\n.\n", DataEnd::BareLf, b"\r\n\r\n"),
            (b"\n.\r\n", DataEnd::BareLf, b"\r\n\r\n"),
            (b"\r\n.\n", DataEnd::BareLf, b"\r\n\r\n"),
            (b"\r.\r", DataEnd::BareCr, b"\r\n\r\n"),
            (b"\r.\r\n", DataEnd::BareCr, b"\r\n\r\n"),
            (b"\r\n.\r", DataEnd::BareCr, b"\r\n\r\n"),
        ];
        for (mark, want_reject, normal) in cases {
            let mut input = b"Subject: hi\r\n\r\nbody".to_vec();
            input.extend_from_slice(mark);
            input.extend_from_slice(hidden);
            input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
            let (got, left) = data(&input, BareNewline::Reject);
            assert_eq!(
                got.as_ref(),
                Some(want_reject),
                "mark {:?}",
                mark.escape_ascii().to_string()
            );
            assert_eq!(left, b"QUIT\r\n");
            let (got, left) = data(&input, BareNewline::Normalize);
            let mut want = b"Subject: hi\r\n\r\nbody".to_vec();
            want.extend_from_slice(normal);
            want.extend_from_slice(hidden);
            want.extend_from_slice(b"\r\n");
            assert_eq!(
                got,
                msg(&want),
                "mark {:?}",
                mark.escape_ascii().to_string()
            );
            assert_eq!(left, b"QUIT\r\n");
        }
    }

    #[test]
    fn bare_lf_alone_is_refused_after_the_real_end() {
        let (got, left) = data(b"a\nb\r\n.\r\nNOOP\r\n", BareNewline::Reject);
        assert_eq!(got, Some(DataEnd::BareLf));
        assert_eq!(left, b"NOOP\r\n");
        let (got, _) = data(b"a\nb\r\n.\r\n", BareNewline::Normalize);
        assert_eq!(got, msg(b"a\r\nb\r\n"));
    }

    #[test]
    fn size_limit_counts_unstuffed_octets() {
        // 998 octets of text plus CRLF is 1000: at the limit, kept.
        let mut input = vec![b'x'; 998];
        input.extend_from_slice(b"\r\n.\r\n");
        let (got, _) = data_split(&input, &[], BareNewline::Reject);
        assert!(matches!(got, Some(DataEnd::Message(m)) if m.len() == 1000));
        // One more octet is too big.
        // Stuffed dots do not count: 999 dots sent as ".." lines.
        let mut input = vec![b'x'; 999];
        input.extend_from_slice(b"\r\n.\r\n");
        let (got, _) = data_split(&input, &[500], BareNewline::Reject);
        assert_eq!(got, Some(DataEnd::TooBig));
        let mut input = b"..\r\n".repeat(333);
        input.extend_from_slice(b".\r\n");
        let (got, _) = data_split(&input, &[], BareNewline::Reject);
        assert!(matches!(got, Some(DataEnd::Message(m)) if m.len() == 999));
    }

    #[test]
    fn header_limit() {
        let mut input = b"X: ".to_vec();
        input.extend(vec![b'h'; 600]);
        input.extend_from_slice(b"\r\n\r\nbody\r\n.\r\n");
        let (got, _) = data_split(&input, &[], BareNewline::Reject);
        assert_eq!(got, Some(DataEnd::HeaderTooBig));
        // A long continued field counts too.
        let mut input = b"X: y\r\n".to_vec();
        input.extend(b" more\r\n".repeat(100));
        input.extend_from_slice(b"\r\n.\r\n");
        let (got, _) = data_split(&input, &[], BareNewline::Reject);
        assert_eq!(got, Some(DataEnd::HeaderTooBig));
        // A long first line that is no field is body, not header.
        let mut input = vec![b'x'; 600];
        input.extend_from_slice(b"\r\n.\r\n");
        let (got, _) = data_split(&input, &[], BareNewline::Reject);
        assert!(matches!(got, Some(DataEnd::Message(_))));
        // A long body after a short header is fine.
        let mut input = b"X: y\r\n\r\n".to_vec();
        input.extend(vec![b'b'; 600]);
        input.extend_from_slice(b"\r\n.\r\n");
        let (got, _) = data_split(&input, &[], BareNewline::Reject);
        assert!(matches!(got, Some(DataEnd::Message(_))));
    }

    fn lines(input: &[u8], cuts: &[usize], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(max);
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(input.len());
        let mut out = Vec::new();
        for w in bounds.windows(2) {
            let mut chunk = &input[w[0]..w[1]];
            while let Some(l) = r.next(&mut chunk) {
                out.push(l);
            }
        }
        out
    }

    #[test]
    fn command_lines_in_any_chunks() {
        let input = b"NOOP\r\nA\nB\rC\r\n0123456789\r\n01234567\r\nQUIT\r\n";
        let want = vec![
            Line::Complete(b"NOOP".to_vec(), Ending::CrLf),
            Line::Complete(b"A".to_vec(), Ending::BareLf),
            Line::Complete(b"B\rC".to_vec(), Ending::CrLf),
            Line::TooLong,
            Line::Complete(b"01234567".to_vec(), Ending::CrLf),
            Line::Complete(b"QUIT".to_vec(), Ending::CrLf),
        ];
        for cut in 0..=input.len() {
            for cut2 in cut..=input.len() {
                let got = lines(input, &[cut, cut2], 10);
                assert_eq!(got, want, "cuts at {cut}, {cut2}");
            }
        }
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(lines(input, &all, 10), want);
    }

    #[test]
    fn overlong_line_is_not_kept() {
        let mut r = LineReader::new(512);
        let big = vec![b'x'; 100_000];
        let mut chunk = &big[..];
        assert_eq!(r.next(&mut chunk), None);
        assert!(r.buf.capacity() < 512, "the reader kept the overlong line");
        let mut end = &b"\r\nNOOP\r\n"[..];
        assert_eq!(r.next(&mut end), Some(Line::TooLong));
        assert_eq!(
            r.next(&mut end),
            Some(Line::Complete(b"NOOP".to_vec(), Ending::CrLf))
        );
    }
}
