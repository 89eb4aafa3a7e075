//! Envelope addresses: the RFC 5321 §4.1.2 path grammar, typed.
//!
//! Owns parsing `<…>` paths of MAIL FROM and RCPT TO into [`ReversePath`]
//! and [`ForwardPath`], and spotting the local-part forms that must never be
//! honoured from SMTP ([`Disguise`]: percent hack, bang path, quoted `@`,
//! program, file, `:include:`, backslash; mta-semantics A.4 rule 5, F.2).
//! It is strict where Postfix is lax (`<a@b@c>`, `<<x@y>>` are errors,
//! mta-semantics B.4). It never looks anything up: whether a domain is
//! local or a relay domain is the host's business.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL: usize = 64;
/// Longest domain, in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path including `<` and `>`, in octets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// Why a path did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing where an address was expected.
    #[error("empty address")]
    Empty,
    /// `<` without `>`, or a stray bracket.
    #[error("unbalanced angle brackets")]
    Brackets,
    /// Not a valid dot-string or quoted string.
    #[error("bad local part")]
    LocalPart,
    /// Not a valid domain or address literal.
    #[error("bad domain")]
    Domain,
    /// A bad source route (`@a,@b:`).
    #[error("bad source route")]
    SourceRoute,
    /// A name without `@domain` that is not `postmaster`.
    #[error("address without domain")]
    Unqualified,
    /// Local part, domain or path longer than RFC 5321 allows.
    #[error("address too long")]
    TooLong,
    /// The null path `<>` where a recipient was expected, or `<postmaster>`
    /// as a sender.
    #[error("this path is not allowed here")]
    NotAllowed,
    /// Text after the path that is not separated by a space.
    #[error("junk after the address")]
    Trailing,
}

/// The domain of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A host name: ASCII lower-cased, one trailing dot removed. With
    /// SMTPUTF8 it may hold UTF-8 labels, compared byte-exact.
    Name(String),
    /// An address literal, as written between the brackets (`192.0.2.1`,
    /// `IPv6:…`). Never local (mta-semantics A.2).
    Literal(String),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::Literal(l) => write!(f, "[{l}]"),
        }
    }
}

/// A local-part form used to route mail through a host that should not be
/// doing so (mta-semantics A.4 rule 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disguise {
    /// `user%other.test@here`.
    Percent,
    /// `other.test!user@here`.
    Bang,
    /// `"user@other.test"@here`.
    QuotedAt,
    /// `"|prog"@here`.
    Program,
    /// `"/file"@here`.
    File,
    /// `":include:/list"@here`.
    Include,
    /// `"\\user"@here` (sendmail's "no alias expansion" marker).
    Backslash,
}

/// `local@domain`, the local part unquoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local: String,
    quoted: bool,
    domain: Domain,
    routed: bool,
}

impl Mailbox {
    /// The local part with quotes and quoted-pairs removed (`"a\"b"` is
    /// `a"b`); case is kept.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Whether the local part was written as a quoted string.
    pub fn was_quoted(&self) -> bool {
        self.quoted
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Whether a source route (`<@a,@b:u@d>`) was given and dropped
    /// (RFC 5321 §3.6.1 lets the server ignore it; mta-semantics A.4 rule 2).
    pub fn had_source_route(&self) -> bool {
        self.routed
    }

    /// Whether the local part has a routing form that must be refused
    /// from SMTP.
    pub fn disguise(&self) -> Option<Disguise> {
        let l = &self.local;
        if l.starts_with('|') {
            Some(Disguise::Program)
        } else if l.starts_with('/') {
            Some(Disguise::File)
        } else if l.len() >= 9 && l[..9].eq_ignore_ascii_case(":include:") {
            Some(Disguise::Include)
        } else if l.starts_with('\\') {
            Some(Disguise::Backslash)
        } else if l.contains('@') {
            Some(Disguise::QuotedAt)
        } else if l.contains('%') {
            Some(Disguise::Percent)
        } else if l.contains('!') {
            Some(Disguise::Bang)
        } else {
            None
        }
    }

    /// Whether any part of the address is outside ASCII (needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.to_string().is_ascii()
    }
}

/// The local part in the form it must be written: as is when it is a
/// dot-string, else quoted.
impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        write!(f, "@{}", self.domain)
    }
}

/// The argument of MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: the null sender of bounces; it must be accepted.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The argument of RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<postmaster>` without a domain (any case): RFC 5321 §4.5.1 says it
    /// must be accepted and mean the local postmaster.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// The mailbox, unless this is the bare postmaster.
    pub fn mailbox(&self) -> Option<&Mailbox> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Mailbox(m) => Some(m),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// What one path parsed to, before deciding whether it is allowed.
enum Parsed {
    Null,
    Postmaster,
    Mailbox(Mailbox),
}

/// Parses the reverse path at the start of `s` (the text after `FROM:`).
/// Returns it and the rest of `s`, which is empty or starts with a space.
/// `utf8` allows non-ASCII (the SMTPUTF8 parameter; the caller checks
/// that it was given).
pub fn parse_reverse_path(s: &str, utf8: bool) -> Result<(ReversePath, &str), AddressError> {
    let (p, rest) = parse_path(s, utf8)?;
    match p {
        Parsed::Null => Ok((ReversePath::Null, rest)),
        Parsed::Postmaster => Err(AddressError::Unqualified),
        Parsed::Mailbox(m) => Ok((ReversePath::Mailbox(m), rest)),
    }
}

/// Parses the forward path at the start of `s` (the text after `TO:`).
/// Returns it and the rest of `s`, which is empty or starts with a space.
pub fn parse_forward_path(s: &str, utf8: bool) -> Result<(ForwardPath, &str), AddressError> {
    let (p, rest) = parse_path(s, utf8)?;
    match p {
        Parsed::Null => Err(AddressError::NotAllowed),
        Parsed::Postmaster => Ok((ForwardPath::Postmaster, rest)),
        Parsed::Mailbox(m) => Ok((ForwardPath::Mailbox(m), rest)),
    }
}

/// RFC 5321 `atext` (RFC 6531 adds UTF-8 non-ASCII).
fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (utf8 && !c.is_ascii())
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(|c| is_atext(c, true)))
}

/// A cursor over the path text.
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl Cur<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.i += c.len_utf8();
            true
        } else {
            false
        }
    }
}

fn parse_path(s: &str, utf8: bool) -> Result<(Parsed, &str), AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    let mut cur = Cur { s, i: 0 };
    // mta-semantics B.4: a missing `<>` pair is tolerated, but what is
    // there must still be a whole mailbox.
    let bracketed = cur.eat('<');
    if bracketed && cur.eat('>') {
        return finish(Parsed::Null, &cur, bracketed);
    }
    let mut routed = false;
    if bracketed && cur.peek() == Some('@') {
        // A-d-l = At-domain *( "," At-domain ) ":"
        loop {
            if !cur.eat('@') {
                return Err(AddressError::SourceRoute);
            }
            domain(&mut cur, utf8).map_err(|_| AddressError::SourceRoute)?;
            if cur.eat(':') {
                break;
            }
            if !cur.eat(',') {
                return Err(AddressError::SourceRoute);
            }
        }
        routed = true;
    }
    let (local, quoted) = local_part(&mut cur, utf8)?;
    if local.len() > MAX_LOCAL {
        return Err(AddressError::TooLong);
    }
    if !cur.eat('@') {
        let end_ok = match cur.peek() {
            None | Some(' ') => !bracketed,
            Some('>') => bracketed,
            _ => false,
        };
        if !end_ok {
            return Err(match cur.peek() {
                Some('<') | Some('>') | None => AddressError::Brackets,
                _ => AddressError::LocalPart,
            });
        }
        if !routed && local.eq_ignore_ascii_case("postmaster") {
            cur.eat('>');
            return finish(Parsed::Postmaster, &cur, bracketed);
        }
        return Err(AddressError::Unqualified);
    }
    let dom = domain(&mut cur, utf8)?;
    if bracketed && !cur.eat('>') {
        return Err(match cur.peek() {
            Some('@') => AddressError::Domain,
            _ => AddressError::Brackets,
        });
    }
    let m = Mailbox {
        local,
        quoted,
        domain: dom,
        routed,
    };
    finish(Parsed::Mailbox(m), &cur, bracketed)
}

/// Checks the path length and what follows the path.
fn finish<'a>(
    p: Parsed,
    cur: &Cur<'a>,
    bracketed: bool,
) -> Result<(Parsed, &'a str), AddressError> {
    let len = cur.i + if bracketed { 0 } else { 2 };
    if len > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    let rest = &cur.s[cur.i..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(if rest.contains('>') || rest.starts_with('<') {
            AddressError::Brackets
        } else {
            AddressError::Trailing
        });
    }
    Ok((p, rest))
}

/// `Dot-string / Quoted-string`, returned unquoted.
fn local_part(cur: &mut Cur<'_>, utf8: bool) -> Result<(String, bool), AddressError> {
    let mut out = String::new();
    if cur.eat('"') {
        loop {
            match cur.bump() {
                None => return Err(AddressError::LocalPart),
                Some('"') => break,
                Some('\\') => match cur.bump() {
                    // quoted-pairSMTP = "\" %d32-126
                    Some(c) if (' '..='~').contains(&c) => out.push(c),
                    _ => return Err(AddressError::LocalPart),
                },
                // qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8
                Some(c) if (' '..='~').contains(&c) || (utf8 && !c.is_ascii()) => out.push(c),
                Some(_) => return Err(AddressError::LocalPart),
            }
        }
        // mta-semantics B.4: an empty local part is refused, quoted or not.
        if out.is_empty() {
            return Err(AddressError::LocalPart);
        }
        return Ok((out, true));
    }
    let start = cur.i;
    while let Some(c) = cur.peek() {
        if is_atext(c, utf8) || c == '.' {
            cur.bump();
        } else {
            break;
        }
    }
    let text = &cur.s[start..cur.i];
    // Dot-string: atoms separated by single dots, none empty.
    if text.is_empty() || !text.split('.').all(|a| !a.is_empty()) {
        return Err(AddressError::LocalPart);
    }
    Ok((text.to_string(), false))
}

/// `Domain / address-literal`; one trailing dot is dropped and ASCII is
/// lower-cased (mta-semantics B.4).
fn domain(cur: &mut Cur<'_>, utf8: bool) -> Result<Domain, AddressError> {
    if cur.eat('[') {
        let start = cur.i;
        while let Some(c) = cur.peek() {
            if c == ']' {
                break;
            }
            cur.bump();
        }
        let lit = &cur.s[start..cur.i];
        if !cur.eat(']') {
            return Err(AddressError::Domain);
        }
        let ok = match lit.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => lit[5..].parse::<Ipv6Addr>().is_ok(),
            _ => lit.parse::<Ipv4Addr>().is_ok(),
        };
        if !ok {
            return Err(AddressError::Domain);
        }
        return Ok(Domain::Literal(lit.to_string()));
    }
    let start = cur.i;
    while let Some(c) = cur.peek() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' || (utf8 && !c.is_ascii()) {
            cur.bump();
        } else {
            break;
        }
    }
    let mut name = &cur.s[start..cur.i];
    if let Some(n) = name.strip_suffix('.') {
        name = n;
    }
    if name.is_empty() {
        return Err(AddressError::Domain);
    }
    if name.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    // sub-domain = Let-dig [Ldh-str]: no empty label, no hyphen at either
    // end, at most 63 octets.
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-');
    if !name.split('.').all(label_ok) {
        return Err(AddressError::Domain);
    }
    Ok(Domain::Name(name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(s: &str) -> Result<String, AddressError> {
        parse_forward_path(s, false).map(|(p, rest)| format!("{p}{rest}"))
    }

    #[test]
    fn forward_paths() {
        let cases: &[(&str, Result<&str, AddressError>)] = &[
            ("<alice@Example.TEST>", Ok("<alice@example.test>")),
            ("<Alice@example.test.>", Ok("<Alice@example.test>")),
            ("alice@example.test", Ok("<alice@example.test>")),
            (
                "<alice@example.test> NOTIFY=NEVER",
                Ok("<alice@example.test> NOTIFY=NEVER"),
            ),
            ("<\"alice\"@example.test>", Ok("<alice@example.test>")),
            ("<\"a b\"@example.test>", Ok("<\"a b\"@example.test>")),
            ("<\"a\\\"b\"@x.test>", Ok("<\"a\\\"b\"@x.test>")),
            ("<@a.test,@b.test:u@c.test>", Ok("<u@c.test>")),
            ("<user@[192.0.2.1]>", Ok("<user@[192.0.2.1]>")),
            ("<user@[IPv6:2001:db8::1]>", Ok("<user@[IPv6:2001:db8::1]>")),
            ("<postmaster>", Ok("<postmaster>")),
            ("<PostMaster>", Ok("<postmaster>")),
            ("postmaster", Ok("<postmaster>")),
            ("<>", Err(AddressError::NotAllowed)),
            ("", Err(AddressError::Empty)),
            ("<alice>", Err(AddressError::Unqualified)),
            ("<a@b@c.test>", Err(AddressError::Domain)),
            ("<<x@y.test>>", Err(AddressError::LocalPart)),
            ("<x@y.test", Err(AddressError::Brackets)),
            ("x@y.test>", Err(AddressError::Brackets)),
            ("<x@y.test>junk", Err(AddressError::Trailing)),
            ("<@x.test>", Err(AddressError::SourceRoute)),
            ("<.a@x.test>", Err(AddressError::LocalPart)),
            ("<a..b@x.test>", Err(AddressError::LocalPart)),
            ("<a.@x.test>", Err(AddressError::LocalPart)),
            ("<a@>", Err(AddressError::Domain)),
            ("<@>", Err(AddressError::SourceRoute)),
            ("<a@-x.test>", Err(AddressError::Domain)),
            ("<a@x..test>", Err(AddressError::Domain)),
            ("<a@[300.1.1.1]>", Err(AddressError::Domain)),
            ("<a@[x]>", Err(AddressError::Domain)),
            ("<\"unterminated@x.test>", Err(AddressError::LocalPart)),
            ("<\"\"@x.test>", Err(AddressError::LocalPart)),
            ("<@x.test:>", Err(AddressError::LocalPart)),
            ("<jöran@x.test>", Err(AddressError::LocalPart)),
        ];
        for (input, want) in cases {
            let got = rcpt(input);
            let want = want.clone().map(str::to_string);
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn reverse_paths() {
        assert_eq!(
            parse_reverse_path("<>", false).unwrap().0,
            ReversePath::Null
        );
        assert_eq!(
            parse_reverse_path("<> SIZE=10", false).unwrap().1,
            " SIZE=10"
        );
        assert_eq!(
            parse_reverse_path("<postmaster>", false).unwrap_err(),
            AddressError::Unqualified
        );
    }

    #[test]
    fn utf8_only_when_allowed() {
        let (p, _) = parse_forward_path("<jöran@bücher.test>", true).unwrap();
        let m = p.mailbox().unwrap();
        assert_eq!(m.local(), "jöran");
        assert!(!m.is_ascii());
        assert!(parse_forward_path("<a@bücher.test>", false).is_err());
    }

    #[test]
    fn limits() {
        let local = "a".repeat(MAX_LOCAL);
        assert!(rcpt(&format!("<{local}@x.test>")).is_ok());
        let got = rcpt(&format!("<{local}a@x.test>"));
        assert_eq!(got, Err(AddressError::TooLong));
        // A long domain pushes the path over 256 octets.
        let label = "d".repeat(60);
        let dom = [label.as_str(); 4].join(".");
        let got = rcpt(&format!("<{local}@{dom}>"));
        assert_eq!(got, Err(AddressError::TooLong));
    }

    #[test]
    fn disguises() {
        let cases: &[(&str, Option<Disguise>)] = &[
            ("<u%other.test@here.test>", Some(Disguise::Percent)),
            ("<other.test!u@here.test>", Some(Disguise::Bang)),
            ("<\"u@other.test\"@here.test>", Some(Disguise::QuotedAt)),
            ("<\"|/bin/true\"@here.test>", Some(Disguise::Program)),
            ("<\"/etc/passwd\"@here.test>", Some(Disguise::File)),
            ("<\":INCLUDE:/x\"@here.test>", Some(Disguise::Include)),
            ("<\"\\\\u\"@here.test>", Some(Disguise::Backslash)),
            ("<u+tag@here.test>", None),
        ];
        for (input, want) in cases {
            let (p, _) = parse_forward_path(input, false).unwrap();
            let got = p.mailbox().unwrap().disguise();
            assert_eq!(got, *want, "input {input:?}");
        }
        // A source route is dropped and remembered.
        let (p, _) = parse_forward_path("<@here.test:u@other.test>", false).unwrap();
        assert!(p.mailbox().unwrap().had_source_route());
    }
}
