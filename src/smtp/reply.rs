//! SMTP replies: a basic code, an enhanced status code and generic text.
//!
//! A failing [`Reply`] is built from a [`Class`] (temporary or permanent):
//! the first digit of the basic code is checked against it and the first
//! digit of the enhanced code comes from it, never from the number, so a
//! 4xx reply can never carry a 5.x.x code (the maddy bug named in
//! STYLE.md). Reply text is generic; details belong in the log. This module
//! never does I/O.

use std::fmt;

use crate::status::{Class, Outcome};

/// One SMTP reply, possibly of several lines.
///
/// Invariants: the code is in 200..=599; a failure (4xx/5xx) has a class
/// that matches its first digit; text lines hold no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    class: Option<Class>,
    enhanced: Option<(u16, u16)>,
    lines: Vec<String>,
    closes: bool,
}

/// Replaces control characters so that a reply line can never be split or
/// forged by text that came from the client.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Reply {
    /// A reply without an enhanced code: the greeting, EHLO/HELO and 354
    /// (RFC 2034 leaves these out; mta-semantics B.2, B.3).
    ///
    /// Panics if `code` is not 2xx or 3xx (an invariant of the callers).
    pub fn plain(code: u16, text: &str) -> Reply {
        assert!((200..400).contains(&code), "plain reply with code {code}");
        Reply {
            code,
            class: None,
            enhanced: None,
            lines: vec![clean(text)],
            closes: false,
        }
    }

    /// A positive reply with enhanced code `2.<detail>`, e.g.
    /// `Reply::ok(250, (1, 0), "Ok")` is `250 2.1.0 Ok`.
    ///
    /// Panics if `code` is not 2xx.
    pub fn ok(code: u16, detail: (u16, u16), text: &str) -> Reply {
        assert!((200..300).contains(&code), "ok reply with code {code}");
        Reply {
            code,
            class: None,
            enhanced: Some(detail),
            lines: vec![clean(text)],
            closes: false,
        }
    }

    /// A failure of class `class`: `Reply::fail(Class::Perm, 550, (1, 1), t)`
    /// is `550 5.1.1 t`.
    ///
    /// Panics if the first digit of `code` does not match `class`: codes
    /// are constants in the callers, so a mismatch is a programming error.
    pub fn fail(class: Class, code: u16, detail: (u16, u16), text: &str) -> Reply {
        let want = match class {
            Class::Temp => 4,
            Class::Perm => 5,
        };
        assert!(
            code / 100 == want && code < 600,
            "{class:?} reply with code {code}"
        );
        Reply {
            code,
            class: Some(class),
            enhanced: Some(detail),
            lines: vec![clean(text)],
            closes: false,
        }
    }

    /// A temporary failure (4xx, enhanced `4.x.x`).
    pub fn temp(code: u16, detail: (u16, u16), text: &str) -> Reply {
        Reply::fail(Class::Temp, code, detail, text)
    }

    /// A permanent failure (5xx, enhanced `5.x.x`).
    pub fn perm(code: u16, detail: (u16, u16), text: &str) -> Reply {
        Reply::fail(Class::Perm, code, detail, text)
    }

    /// The reply for a delivery or queueing [`Outcome`]: `250 2.0.0`, or
    /// 451/550 with the outcome's own class and detail. The outcome's
    /// reason is for the log and is not shown.
    pub fn from_outcome(outcome: &Outcome) -> Reply {
        match outcome {
            Outcome::Delivered => Reply::ok(250, (0, 0), "Ok"),
            Outcome::Failed { class, detail, .. } => match class {
                Class::Temp => Reply::temp(451, *detail, "Error: local error in processing"),
                Class::Perm => Reply::perm(550, *detail, "Error: requested action not taken"),
            },
        }
    }

    /// Adds a line (for multi-line replies such as EHLO).
    pub fn with_line(mut self, text: &str) -> Reply {
        self.lines.push(clean(text));
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

    /// The enhanced status code, e.g. `"5.1.1"`, when the reply has one.
    pub fn enhanced(&self) -> Option<String> {
        let first = match self.class {
            Some(Class::Temp) => 4,
            Some(Class::Perm) => 5,
            None => 2,
        };
        self.enhanced.map(|(a, b)| format!("{first}.{a}.{b}"))
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

/// The wire form with `\n` line ends and no final newline (for logs and
/// transcripts).
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
    use crate::status::sysexits;

    #[test]
    fn class_gives_both_digits() {
        let cases = [
            (Reply::perm(550, (1, 1), "x"), "550 5.1.1 x"),
            (Reply::temp(452, (5, 3), "x"), "452 4.5.3 x"),
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
    }
}
