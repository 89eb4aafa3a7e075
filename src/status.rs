//! Delivery outcomes, their classes, and the one SMTP reply type.
//!
//! An [`Outcome`] is what happened to one message for one recipient. Its
//! [`Class`] is a type, not a number: the sysexits code handed to an MTA, the
//! SMTP reply code and the enhanced status code all come from the same value
//! in [`Outcome::exit_code`] and [`Reply::from_outcome`], so a temporary
//! failure can never be reported with a permanent enhanced code. OS errors
//! are mapped to a class only here: [`Class::of_io`] for writing a
//! mailbox or running a program, [`Class::of_open`] for opening a file a
//! person keeps (an `:include:` list, a `.forward`).
//!
//! A [`Reply`] is every SMTP reply the crate sends or decides, whether the
//! session builds it or routing does. A failing reply is built from a
//! [`Class`], which gives the first digit of its enhanced code; the class is
//! read from a number in exactly one constructor, [`Reply::from_code`], for
//! codes a person wrote in a table (maddy's bug in STYLE.md: a 4xx reply
//! sent with a 5.x.x code because the class was recomputed from a number).
//! Reply text is generic; details belong in the log.
//!
//! This module is a leaf: it uses nothing else in the project, does no I/O
//! and never decides policy (which code a situation gets is its callers').

use std::fmt;
use std::io;

/// sysexits(3) values, as procmail uses them.
pub mod sysexits {
    /// Success.
    pub const EX_OK: i32 = 0;
    /// Command line usage error.
    pub const EX_USAGE: i32 = 64;
    /// Data format error.
    pub const EX_DATAERR: i32 = 65;
    /// Cannot open input.
    pub const EX_NOINPUT: i32 = 66;
    /// Addressee unknown.
    pub const EX_NOUSER: i32 = 67;
    /// Host name unknown.
    pub const EX_NOHOST: i32 = 68;
    /// Service unavailable (a program could not be run).
    pub const EX_UNAVAILABLE: i32 = 69;
    /// Internal software error.
    pub const EX_SOFTWARE: i32 = 70;
    /// System error (e.g. cannot fork).
    pub const EX_OSERR: i32 = 71;
    /// Critical OS file missing.
    pub const EX_OSFILE: i32 = 72;
    /// Cannot create output file.
    pub const EX_CANTCREAT: i32 = 73;
    /// Input/output error.
    pub const EX_IOERR: i32 = 74;
    /// Temporary failure; the user is invited to retry.
    pub const EX_TEMPFAIL: i32 = 75;
    /// Remote error in protocol.
    pub const EX_PROTOCOL: i32 = 76;
    /// Permission denied.
    pub const EX_NOPERM: i32 = 77;
    /// Configuration error.
    pub const EX_CONFIG: i32 = 78;
}

/// Whether a failure may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Try again later: the MTA keeps the message (exit 75, SMTP 4xx).
    Temp,
    /// Will not get better: bounce (exit 6x/7x, SMTP 5xx).
    Perm,
}

impl Class {
    /// The class of an OS error met while writing a mailbox or running a
    /// program. Only errors that a person must fix by hand and that retrying
    /// cannot cure are permanent; everything else (full disk, quota, locks,
    /// I/O) is temporary, because a bounce loses the mail for good while a
    /// retry costs only time.
    pub fn of_io(err: &io::Error) -> Class {
        match err.raw_os_error() {
            Some(libc::ENAMETOOLONG) | Some(libc::ELOOP) | Some(libc::EFBIG) => Class::Perm,
            _ => Class::Temp,
        }
    }

    /// The class of an OS error met while opening or reading a file a
    /// person keeps, such as an `:include:` list or a `~/.forward`
    /// (mta-semantics A.6.2, A.7; sendmail's `include()`): errors that pass
    /// by themselves (I/O, no memory or descriptors, a stale NFS handle, a
    /// lock) defer that recipient; the rest (missing, no permission, ...)
    /// are permanent, because only the person can fix them.
    pub fn of_open(err: &io::Error) -> Class {
        match err.raw_os_error() {
            Some(
                libc::EIO
                | libc::EAGAIN
                | libc::EINTR
                | libc::ENFILE
                | libc::EMFILE
                | libc::ENOMEM
                | libc::ETIMEDOUT
                | libc::ESTALE
                | libc::ENOLCK,
            ) => Class::Temp,
            _ => Class::Perm,
        }
    }

    /// The first digit of both the basic and the enhanced code: `4` or `5`.
    pub fn digit(self) -> u16 {
        match self {
            Class::Temp => 4,
            Class::Perm => 5,
        }
    }

    /// The basic reply code of a failure of this class when nothing more
    /// specific applies: `451` (local error in processing) or `550`
    /// (requested action not taken), RFC 5321 4.2.3.
    pub fn basic_code(self) -> u16 {
        match self {
            Class::Temp => 451,
            Class::Perm => 550,
        }
    }
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The message is in a mailbox (or was handed on).
    Delivered,
    /// It is not; `class` says whether to retry.
    Failed {
        /// Temporary or permanent.
        class: Class,
        /// Enhanced status code without its class digit, e.g. `(2, 2)` for `x.2.2`.
        detail: (u16, u16),
        /// The sysexits code for an MTA that calls us as its local mailer.
        exit: i32,
        /// One lowercase line for the log; never shown to an SMTP client.
        reason: String,
    },
}

impl Outcome {
    /// A temporary failure: exit 75, SMTP 451 4.x.x.
    pub fn temp(detail: (u16, u16), reason: impl Into<String>) -> Outcome {
        Outcome::Failed {
            class: Class::Temp,
            detail,
            exit: sysexits::EX_TEMPFAIL,
            reason: reason.into(),
        }
    }

    /// A permanent failure with the given sysexits code.
    pub fn perm(detail: (u16, u16), exit: i32, reason: impl Into<String>) -> Outcome {
        Outcome::Failed {
            class: Class::Perm,
            detail,
            exit,
            reason: reason.into(),
        }
    }

    /// A failure caused by an OS error while writing `what`.
    pub fn from_io(err: &io::Error, what: &str) -> Outcome {
        let reason = format!("{what}: {err}");
        // RFC 3463: x.2.2 mailbox full, x.3.1 mail system full.
        let detail = match err.raw_os_error() {
            Some(libc::EDQUOT) => (2, 2),
            Some(libc::ENOSPC) => (3, 1),
            _ => (2, 0),
        };
        match Class::of_io(err) {
            Class::Temp => Outcome::temp(detail, reason),
            Class::Perm => Outcome::perm(detail, sysexits::EX_CANTCREAT, reason),
        }
    }

    /// Whether the message is safe.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered)
    }

    /// The process exit status for an MTA.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Delivered => sysexits::EX_OK,
            Outcome::Failed { exit, .. } => *exit,
        }
    }

    /// The SMTP reply code and enhanced status code, both from one class
    /// (the codes of [`Reply::from_outcome`]).
    pub fn smtp(&self) -> (u16, String) {
        let reply = Reply::from_outcome(self);
        let enhanced = reply
            .enhanced()
            .expect("an outcome's reply has an enhanced code");
        (reply.code(), enhanced)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Failed { reason, .. } => f.write_str(reason),
        }
    }
}

/// One SMTP reply, possibly of several lines: a basic code, an enhanced
/// status code (RFC 3463) when the reply has one, and generic text.
///
/// Invariants, kept by every constructor: the code is in 200..=599; a
/// failure (4xx/5xx) has a [`Class`] whose digit is the code's first digit
/// and the enhanced code's first digit; a success has no class and a `2.x.x`
/// enhanced code if any; text lines hold no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    code: u16,
    class: Option<Class>,
    enhanced: Option<(u16, u16)>,
    lines: Vec<String>,
    closes: bool,
}

/// An enhanced status code `D.S.N` (RFC 3463; one to three digits each)
/// as numbers, or `None`.
pub fn parse_enhanced(s: &[u8]) -> Option<(u16, u16, u16)> {
    let parts: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
    let [c, sub, det] = parts[..] else {
        return None;
    };
    let num = |p: &[u8]| -> Option<u16> {
        if p.is_empty() || p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(p).ok()?.parse().ok()
    };
    Some((num(c)?, num(sub)?, num(det)?))
}

/// Replaces control characters so that a reply line can never be split or
/// forged by text that came from a client or a table. A tab stays: RFC
/// 5321 4.2 allows it in reply text, and sendmail sends a table's text as
/// written.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

impl Reply {
    /// A reply without an enhanced code: the greeting, EHLO/HELO and 354
    /// (RFC 2034 leaves these out; mta-semantics B.2, B.3).
    ///
    /// Panics if `code` is not 2xx or 3xx (an invariant of the callers).
    pub fn plain(code: u16, text: &str) -> Reply {
        assert!((200..400).contains(&code), "plain reply with code {code}");
        Reply::build(code, None, None, text)
    }

    /// A positive reply with enhanced code `2.<detail>`, e.g.
    /// `Reply::ok(250, (1, 0), "Ok")` is `250 2.1.0 Ok`.
    ///
    /// Panics if `code` is not 2xx.
    pub fn ok(code: u16, detail: (u16, u16), text: &str) -> Reply {
        assert!((200..300).contains(&code), "ok reply with code {code}");
        Reply::build(code, None, Some(detail), text)
    }

    /// A failure of class `class`: `Reply::fail(Class::Perm, 550, (1, 1), t)`
    /// is `550 5.1.1 t`.
    ///
    /// Panics if the first digit of `code` does not match `class`: codes
    /// given here are constants in the callers, so a mismatch is a
    /// programming error. A code from user input goes through
    /// [`Reply::from_code`] instead.
    pub fn fail(class: Class, code: u16, detail: (u16, u16), text: &str) -> Reply {
        assert!(
            code / 100 == class.digit(),
            "{class:?} reply with code {code}"
        );
        Reply::build(code, Some(class), Some(detail), text)
    }

    /// A temporary failure (4xx, enhanced `4.x.x`).
    pub fn temp(code: u16, detail: (u16, u16), text: &str) -> Reply {
        Reply::fail(Class::Temp, code, detail, text)
    }

    /// A permanent failure (5xx, enhanced `5.x.x`).
    pub fn perm(code: u16, detail: (u16, u16), text: &str) -> Reply {
        Reply::fail(Class::Perm, code, detail, text)
    }

    /// A failure whose class is read from `code`, a number a person wrote
    /// (a virtusertable `error:CODE text` entry, mta-semantics A.5): 4xx is
    /// temporary, 5xx permanent. This is the only place a class is parsed
    /// from a number; callers that also hold a class (a keyword, the first
    /// digit of a written enhanced code) compare it with [`Reply::class`].
    ///
    /// Fails with a lowercase message when `code` is not 4xx or 5xx or a
    /// part of the enhanced code has more than three digits (RFC 3463).
    pub fn from_code(code: u16, detail: (u16, u16), text: &str) -> Result<Reply, String> {
        let class = match code {
            400..=499 => Class::Temp,
            500..=599 => Class::Perm,
            _ => return Err(format!("reply code {code} is not a 4xx or 5xx code")),
        };
        if detail.0 > 999 || detail.1 > 999 {
            return Err(format!(
                "enhanced status code x.{}.{} is out of range",
                detail.0, detail.1
            ));
        }
        Ok(Reply::fail(class, code, detail, text))
    }

    /// The reply for a delivery or queueing [`Outcome`]: `250 2.0.0 Ok`, or
    /// the class's [`Class::basic_code`] with the outcome's own class and
    /// detail. The outcome's reason is for the log and is not shown.
    pub fn from_outcome(outcome: &Outcome) -> Reply {
        match outcome {
            Outcome::Delivered => Reply::ok(250, (0, 0), "Ok"),
            Outcome::Failed { class, detail, .. } => {
                let text = match class {
                    Class::Temp => "Error: local error in processing",
                    Class::Perm => "Error: requested action not taken",
                };
                Reply::fail(*class, class.basic_code(), *detail, text)
            }
        }
    }

    fn build(code: u16, class: Option<Class>, enhanced: Option<(u16, u16)>, text: &str) -> Reply {
        Reply {
            code,
            class,
            enhanced,
            lines: vec![clean(text)],
            closes: false,
        }
    }

    /// Adds a line (for multi-line replies such as EHLO).
    pub fn with_line(mut self, text: &str) -> Reply {
        self.lines.push(clean(text));
        self
    }

    /// Puts `subject: ` before the first line, e.g. the recipient in
    /// `554 5.7.1 <a@b.test>: Relay access denied`: routing decides the
    /// generic text, the SMTP layer says which address it is about.
    pub fn about(mut self, subject: &str) -> Reply {
        self.lines[0] = format!("{}: {}", clean(subject), self.lines[0]);
        self
    }

    /// Marks the reply as the last one: the server closes the connection
    /// after sending it.
    pub fn closing(mut self) -> Reply {
        self.closes = true;
        self
    }

    /// The basic reply code, e.g. 550.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// `Some(class)` for a 4xx/5xx reply, `None` for 2xx/3xx.
    pub fn class(&self) -> Option<Class> {
        self.class
    }

    /// The enhanced status code, e.g. `"5.1.1"`, when the reply has one;
    /// its first digit is the class's, `2` for a success.
    pub fn enhanced(&self) -> Option<String> {
        let first = self.class.map_or(2, Class::digit);
        self.enhanced.map(|(a, b)| format!("{first}.{a}.{b}"))
    }

    /// The enhanced code's subject and detail (`(1, 1)` for `5.1.1`), if
    /// the reply has one.
    pub fn detail(&self) -> Option<(u16, u16)> {
        self.enhanced
    }

    /// The text lines, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Whether the connection must be closed after this reply.
    pub fn closes(&self) -> bool {
        self.closes
    }

    /// The reply as sent: one `code-`/`code ` line per text line, each
    /// ending in CRLF.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = String::new();
        self.write_lines(&mut out, "\r\n");
        out.into_bytes()
    }

    fn write_lines(&self, out: &mut String, eol: &str) {
        let enhanced = self.enhanced();
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.push_str(&format!("{}{sep}", self.code));
            if let Some(e) = &enhanced {
                out.push_str(e);
                if !line.is_empty() {
                    out.push(' ');
                }
            }
            out.push_str(line);
            out.push_str(eol);
        }
    }
}

/// The wire form with `\n` line ends and no final newline (for logs,
/// transcripts and snapshots).
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_lines(&mut out, "\n");
        out.pop();
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_decides_both_codes() {
        let t = Outcome::temp((2, 2), "mailbox full");
        assert_eq!(t.exit_code(), 75);
        assert_eq!(t.smtp(), (451, "4.2.2".to_string()));
        let p = Outcome::perm((1, 1), sysexits::EX_NOUSER, "no such user");
        assert_eq!(p.exit_code(), 67);
        assert_eq!(p.smtp(), (550, "5.1.1".to_string()));
    }

    #[test]
    fn full_disk_is_temporary() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Class::of_io(&e), Class::Temp);
    }

    #[test]
    fn opening_a_kept_file_defers_only_passing_errors() {
        let cases = [
            (libc::EIO, Class::Temp),
            (libc::EAGAIN, Class::Temp),
            (libc::ESTALE, Class::Temp),
            (libc::ENOENT, Class::Perm),
            (libc::EACCES, Class::Perm),
            (libc::ELOOP, Class::Perm),
        ];
        for (errno, want) in cases {
            let got = Class::of_open(&io::Error::from_raw_os_error(errno));
            assert_eq!(got, want, "errno {errno}");
        }
    }

    #[test]
    fn class_gives_both_digits() {
        let cases = [
            (Reply::perm(550, (1, 1), "x"), "550 5.1.1 x"),
            (Reply::temp(452, (5, 3), "x"), "452 4.5.3 x"),
            (Reply::fail(Class::Temp, 451, (2, 4), "x"), "451 4.2.4 x"),
            (Reply::ok(250, (1, 5), "Ok"), "250 2.1.5 Ok"),
            (Reply::plain(354, "go"), "354 go"),
        ];
        for (reply, want) in cases {
            let got = reply.to_string();
            assert_eq!(got, want);
        }
    }

    #[test]
    #[should_panic]
    fn temp_class_with_5xx_code_panics() {
        let _ = Reply::temp(550, (1, 1), "x");
    }

    #[test]
    #[should_panic]
    fn perm_class_with_4xx_code_panics() {
        let _ = Reply::perm(451, (1, 1), "x");
    }

    #[test]
    fn class_comes_from_a_written_code() {
        let cases = [
            (451, Class::Temp, "451 4.2.4 x"),
            (450, Class::Temp, "450 4.2.4 x"),
            (550, Class::Perm, "550 5.2.4 x"),
            (554, Class::Perm, "554 5.2.4 x"),
        ];
        for (code, class, want) in cases {
            let got = Reply::from_code(code, (2, 4), "x").unwrap();
            assert_eq!(got.class(), Some(class), "code {code}");
            assert_eq!(got.to_string(), want, "code {code}");
        }
    }

    #[test]
    fn only_written_4xx_and_5xx_codes_are_failures() {
        for code in [99, 250, 354, 399, 600, 999] {
            let got = Reply::from_code(code, (0, 0), "x");
            assert_eq!(
                got,
                Err(format!("reply code {code} is not a 4xx or 5xx code"))
            );
        }
        assert!(Reply::from_code(550, (1000, 0), "x").is_err());
        assert!(Reply::from_code(550, (0, 1000), "x").is_err());
        assert!(Reply::from_code(550, (999, 999), "x").is_ok());
    }

    #[test]
    fn multi_line_wire_form() {
        let r = Reply::plain(250, "mx greets c")
            .with_line("PIPELINING")
            .with_line("8BITMIME");
        let got = String::from_utf8(r.to_wire()).unwrap();
        assert_eq!(got, "250-mx greets c\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        let r = Reply::ok(250, (0, 0), "a").with_line("b");
        assert_eq!(r.to_string(), "250-2.0.0 a\n250 2.0.0 b");
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let r = Reply::perm(550, (1, 1), "<a\r\n250 ok>");
        assert_eq!(r.to_wire(), b"550 5.1.1 <a??250 ok>\r\n");
        let r = Reply::perm(550, (1, 1), "a\0b\x1bc\td");
        assert_eq!(r.to_wire(), b"550 5.1.1 a?b?c\td\r\n");
        let r = Reply::perm(554, (7, 1), "Relay access denied").about("<a\r\n250 ok>");
        assert_eq!(
            r.to_wire(),
            b"554 5.7.1 <a??250 ok>: Relay access denied\r\n"
        );
    }

    #[test]
    fn about_names_the_subject_on_the_first_line_only() {
        let r = Reply::perm(550, (1, 1), "User unknown")
            .with_line("second")
            .about("<a@b.test>");
        assert_eq!(
            r.to_string(),
            "550-5.1.1 <a@b.test>: User unknown\n550 5.1.1 second"
        );
    }

    #[test]
    fn outcome_class_survives() {
        let got = Reply::from_outcome(&Outcome::temp((3, 1), "disk full"));
        assert_eq!(
            (got.code(), got.enhanced().unwrap()),
            (451, "4.3.1".to_string())
        );
        let got = Reply::from_outcome(&Outcome::perm((1, 1), sysexits::EX_NOUSER, "no user"));
        assert_eq!(
            (got.code(), got.enhanced().unwrap()),
            (550, "5.1.1".to_string())
        );
        assert!(!got.to_string().contains("no user"), "reason leaked: {got}");
        let got = Reply::from_outcome(&Outcome::Delivered);
        assert_eq!(got.to_string(), "250 2.0.0 Ok");
    }
}
