//! SMTP refusals that routing decides: a reply code, an enhanced status code
//! and a short generic text.
//!
//! The class (temporary or permanent) is a type and is taken from the reply
//! code in exactly one place, [`Reply::new`]; the enhanced code's first
//! digit is always printed from that class, so a `4xx` reply can never carry
//! a `5.x.x` code (STYLE.md, maddy's bug). This module never formats the
//! address into the text: the SMTP layer adds `<addr>:` and keeps details
//! for its log.

use std::fmt;

/// Whether a refusal may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// `4xx` / `4.x.x`: the client should retry.
    Temp,
    /// `5xx` / `5.x.x`: it will not get better.
    Perm,
}

impl Class {
    /// The first digit of both codes.
    pub fn digit(self) -> u16 {
        match self {
            Class::Temp => 4,
            Class::Perm => 5,
        }
    }
}

/// An SMTP error reply: `CODE C.S.D text`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    code: u16,
    class: Class,
    subject: u16,
    detail: u16,
    text: String,
}

impl Reply {
    /// A reply with basic code `code` (400..=599) and enhanced code
    /// `class.subject.detail`, where the class digit comes from `code`.
    ///
    /// Fails with a lowercase message when `code` is not a 4xx or 5xx code.
    pub fn new(
        code: u16,
        subject: u16,
        detail: u16,
        text: impl Into<String>,
    ) -> Result<Reply, String> {
        let class = match code {
            400..=499 => Class::Temp,
            500..=599 => Class::Perm,
            _ => return Err(format!("reply code {code} is not a 4xx or 5xx code")),
        };
        if subject > 999 || detail > 999 {
            return Err(format!(
                "enhanced status code x.{subject}.{detail} is out of range"
            ));
        }
        Ok(Reply {
            code,
            class,
            subject,
            detail,
            text: text.into(),
        })
    }

    /// A reply built from constants known to be valid.
    fn fixed(code: u16, subject: u16, detail: u16, text: &str) -> Reply {
        Reply::new(code, subject, detail, text).expect("valid fixed reply")
    }

    /// The basic reply code, e.g. 550.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// Temporary or permanent, from the reply code.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The enhanced status code, e.g. `5.1.1`.
    pub fn enhanced(&self) -> String {
        format!("{}.{}.{}", self.class.digit(), self.subject, self.detail)
    }

    /// The text after the codes.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `550 5.1.1 User unknown` (mta-semantics A.4 rule 6, B.3).
    pub fn user_unknown() -> Reply {
        Reply::fixed(550, 1, 1, "User unknown")
    }

    /// `554 5.7.1 Relay access denied` (A.4 rule 8: never 4xx).
    pub fn relay_denied() -> Reply {
        Reply::fixed(554, 7, 1, "Relay access denied")
    }

    /// `550 5.7.1` for routing, program, file and include forms arriving
    /// from SMTP (A.4 rule 5).
    pub fn routing_form() -> Reply {
        Reply::fixed(
            550,
            7,
            1,
            "Routing, program and file addresses are not accepted",
        )
    }

    /// `501 5.1.3` for an unqualified address other than postmaster (A.4 rule 3).
    pub fn unqualified() -> Reply {
        Reply::fixed(501, 1, 3, "Recipient address must be fully qualified")
    }

    /// `554 5.4.6` when alias and virtusertable hops pass the limit (A.5, A.6.3;
    /// the text is sendmail's).
    pub fn alias_loop(depth: usize, max: usize) -> Reply {
        Reply::fixed(
            554,
            4,
            6,
            &format!("aliasing/forwarding loop broken ({depth} aliases deep; {max} max)"),
        )
    }

    /// `550 5.1.3` for an alias member that could not be parsed (A.6.5:
    /// reported by DSN, not at RCPT time).
    pub fn bad_member() -> Reply {
        Reply::fixed(550, 1, 3, "Bad address syntax in alias")
    }

    /// `550 5.7.1` for a file or program listed where it is not allowed
    /// (A.6.2: include files list addresses only unless trusted).
    pub fn not_allowed_here() -> Reply {
        Reply::fixed(
            550,
            7,
            1,
            "File and program deliveries are not allowed here",
        )
    }

    /// `451 4.2.4` / `550 5.2.4 Cannot open FILE` for an unreadable
    /// `:include:` file (A.6.2, sendmail `include()`).
    pub fn cannot_open(class: Class, path: &str) -> Reply {
        match class {
            Class::Temp => Reply::fixed(451, 2, 4, &format!("Cannot open {path}")),
            Class::Perm => Reply::fixed(550, 2, 4, &format!("Cannot open {path}")),
        }
    }

    /// `554 5.3.5` for a forward to a domain we have no route to (A.5).
    pub fn no_route() -> Reply {
        Reply::fixed(554, 3, 5, "No route to forward domain")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced(), self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_comes_from_the_reply_code() {
        let cases = [(451, "4.2.4"), (550, "5.2.4"), (554, "5.2.4")];
        for (code, want) in cases {
            let got = Reply::new(code, 2, 4, "x").unwrap().enhanced();
            assert_eq!(got, want, "code {code}");
        }
    }

    #[test]
    fn only_4xx_and_5xx_are_refusals() {
        for code in [250, 354, 600, 99] {
            assert!(Reply::new(code, 0, 0, "x").is_err(), "code {code}");
        }
    }

    #[test]
    fn display_is_code_enhanced_text() {
        assert_eq!(Reply::user_unknown().to_string(), "550 5.1.1 User unknown");
        assert_eq!(
            Reply::alias_loop(11, 10).to_string(),
            "554 5.4.6 aliasing/forwarding loop broken (11 aliases deep; 10 max)"
        );
    }
}
