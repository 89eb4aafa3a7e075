//! The SMTP refusals that routing decides: each is a [`Reply`] with its
//! reply code, enhanced status code and short generic text.
//!
//! The codes here are constants, so each reply is built from its [`Class`]
//! (never parsed from its number; a code written in a table goes through
//! [`Reply::from_code`]). This module never formats the address into the
//! text: the SMTP layer adds it with [`Reply::about`] and keeps details for
//! its log.

use crate::status::{Class, Reply};

/// `550 5.1.1 User unknown` (mta-semantics A.4 rule 6, B.3).
pub fn user_unknown() -> Reply {
    Reply::perm(550, (1, 1), "User unknown")
}

/// `554 5.7.1 Relay access denied` (A.4 rule 8: never 4xx).
pub fn relay_denied() -> Reply {
    Reply::perm(554, (7, 1), "Relay access denied")
}

/// `550 5.7.1` for routing, program, file and include forms arriving from
/// SMTP (A.4 rule 5).
pub fn routing_form() -> Reply {
    Reply::perm(
        550,
        (7, 1),
        "Routing, program and file addresses are not accepted",
    )
}

/// `501 5.1.3` for an unqualified address other than postmaster (A.4 rule 3).
pub fn unqualified() -> Reply {
    Reply::perm(501, (1, 3), "Recipient address must be fully qualified")
}

/// `554 5.4.6` when alias and virtusertable hops pass the limit (A.5, A.6.3;
/// the text is sendmail's).
pub fn alias_loop(depth: usize, max: usize) -> Reply {
    Reply::perm(
        554,
        (4, 6),
        &format!("aliasing/forwarding loop broken ({depth} aliases deep; {max} max)"),
    )
}

/// `550 5.1.3` for an alias member that could not be parsed (A.6.5:
/// reported by DSN, not at RCPT time).
pub fn bad_member() -> Reply {
    Reply::perm(550, (1, 3), "Bad address syntax in alias")
}

/// `550 5.7.1` for a file or program listed where it is not allowed
/// (A.6.2: include files list addresses only unless trusted).
pub fn not_allowed_here() -> Reply {
    Reply::perm(
        550,
        (7, 1),
        "File and program deliveries are not allowed here",
    )
}

/// `451 4.2.4` / `550 5.2.4 Cannot open FILE` for an unreadable
/// `:include:` file or `.forward` (A.6.2, sendmail `include()`).
pub fn cannot_open(class: Class, path: &str) -> Reply {
    Reply::fail(
        class,
        class.basic_code(),
        (2, 4),
        &format!("Cannot open {path}"),
    )
}

/// `554 5.3.5` for a forward to a domain we have no route to (A.5).
pub fn no_route() -> Reply {
    Reply::perm(554, (3, 5), "No route to forward domain")
}

/// `554 5.3.5` for a virtusertable right-hand side that no longer parses
/// after `%n` substitution (A.5; the load-time check makes it rare).
pub fn config_error() -> Reply {
    Reply::perm(554, (3, 5), "Local configuration error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_code_enhanced_text() {
        let cases = [
            (user_unknown(), "550 5.1.1 User unknown"),
            (relay_denied(), "554 5.7.1 Relay access denied"),
            (
                alias_loop(11, 10),
                "554 5.4.6 aliasing/forwarding loop broken (11 aliases deep; 10 max)",
            ),
            (cannot_open(Class::Temp, "/l"), "451 4.2.4 Cannot open /l"),
            (cannot_open(Class::Perm, "/l"), "550 5.2.4 Cannot open /l"),
        ];
        for (reply, want) in cases {
            let got = reply.to_string();
            assert_eq!(got, want);
        }
    }
}
