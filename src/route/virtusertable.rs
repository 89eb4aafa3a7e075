//! The `virtusertable` (mta-semantics A.5): which local name, remote address
//! or error an address in a local domain stands for.
//!
//! This module owns sendmail's key order, the `%1 %2 %3` substitution and
//! the right-hand-side forms. It never follows a result (the resolver does:
//! aliases, another round for a local domain, a forward) and never reads a
//! file itself; lookups go through the [`Table`] trait.

use crate::diag::{Diagnostic, Span};
use crate::status::{Class, Reply};

use super::Address;
use super::domains::{invalid_domain, normalize};
use super::mapfile;
use super::reply;
use super::table::{MemTable, Table};

/// What an entry's right-hand side says, after substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rhs {
    /// A name without `@`: continue with aliases, then mailboxes (the
    /// domain is dropped). It may carry a `+detail`.
    Local(Vec<u8>),
    /// `user@domain`: resolved again when the domain is local, else a forward.
    Address(Address),
    /// `error:...`: refuse the recipient at RCPT time.
    Error(Reply),
}

/// A successful lookup: the key that matched and what it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The key that matched, as looked up (lower case domain).
    pub key: Vec<u8>,
    /// The right-hand side after `%n` substitution.
    pub rhs: Rhs,
}

/// A virtusertable over any [`Table`] backend.
#[derive(Clone, Debug, Default)]
pub struct VirtUserTable<T: Table = MemTable> {
    table: T,
}

/// The sysexits keywords of `error:KEYWORD [CODE] [text]`: class, enhanced
/// subject and detail, text when none is given. The five the spec names
/// (A.5: nouser, tempfail, unavailable, noperm, nohost) use its codes; the
/// others use the nearest RFC 3463 code.
const KEYWORDS: &[(&str, Class, u16, u16, &str)] = &[
    ("nouser", Class::Perm, 1, 1, "User unknown"),
    ("nohost", Class::Perm, 1, 2, "Host unknown"),
    ("tempfail", Class::Temp, 0, 0, "Temporary failure"),
    ("unavailable", Class::Perm, 0, 0, "Service unavailable"),
    ("noperm", Class::Perm, 7, 1, "Permission denied"),
    ("usage", Class::Perm, 5, 4, "Usage error"),
    ("dataerr", Class::Perm, 6, 0, "Data format error"),
    ("noinput", Class::Perm, 3, 0, "Cannot open input"),
    ("software", Class::Perm, 3, 0, "Internal software error"),
    ("oserr", Class::Temp, 3, 0, "System error"),
    ("osfile", Class::Perm, 3, 0, "Critical OS file missing"),
    ("cantcreat", Class::Perm, 3, 0, "Cannot create output file"),
    ("ioerr", Class::Temp, 3, 0, "Input/output error"),
    ("protocol", Class::Perm, 5, 0, "Remote protocol error"),
    ("config", Class::Perm, 3, 5, "Local configuration error"),
];

/// Splits `s` at the first run of blanks: (word, rest after the blanks).
fn word(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|&b| mapfile::is_blank(b))
        .unwrap_or(s.len());
    let rest = &s[end..];
    let skip = rest
        .iter()
        .position(|&b| !mapfile::is_blank(b))
        .unwrap_or(rest.len());
    (&s[..end], &rest[skip..])
}

/// A three-digit reply code, or `None`.
fn reply_code(s: &[u8]) -> Option<u16> {
    if s.len() == 3 && s.iter().all(u8::is_ascii_digit) {
        std::str::from_utf8(s).ok()?.parse().ok()
    } else {
        None
    }
}

/// The text of an error, or the default for its class.
fn text_or(text: &[u8], default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        String::from_utf8_lossy(text).into_owned()
    }
}

/// Parses what follows `error:` (A.5): `D.S.N:CODE text`,
/// `KEYWORD [CODE] [text]` or `CODE text`. A class that disagrees between
/// the enhanced code, the keyword and the reply code is refused, so that a
/// 4xx reply never carries a 5.x.x code.
pub fn parse_error(spec: &[u8]) -> Result<Reply, String> {
    let (first, text) = word(spec);
    // D.S.N:CODE text
    if let Some(colon) = first.iter().position(|&b| b == b':') {
        let (Some((c, sub, det)), Some(code)) = (
            crate::status::parse_enhanced(&first[..colon]),
            reply_code(&first[colon + 1..]),
        ) else {
            return Err(format!(
                "bad `error:D.S.N:CODE` form `{}`",
                String::from_utf8_lossy(first)
            ));
        };
        let reply = Reply::from_code(code, (sub, det), &text_or(text, "Address rejected"))?;
        if reply.class().map(Class::digit) != Some(c) {
            return Err(format!(
                "enhanced status code {c}.{sub}.{det} does not match reply code {code}"
            ));
        }
        return Ok(reply);
    }
    // CODE text
    if let Some(code) = reply_code(first) {
        return Reply::from_code(code, (0, 0), &text_or(text, "Address rejected"));
    }
    // KEYWORD [CODE] [text]
    let lower = first.to_ascii_lowercase();
    let Some(&(_, class, sub, det, default)) = KEYWORDS.iter().find(|k| k.0.as_bytes() == lower)
    else {
        return Err(format!(
            "unknown error form `error:{}` (want D.S.N:CODE, a reply code or a sysexits keyword such as nouser)",
            String::from_utf8_lossy(first)
        ));
    };
    let (maybe_code, after) = word(text);
    let (code, text) = match reply_code(maybe_code) {
        Some(code) => (code, after),
        None => (class.basic_code(), text),
    };
    let reply = Reply::from_code(code, (sub, det), &text_or(text, default))?;
    if reply.class() != Some(class) {
        return Err(format!(
            "reply code {code} does not match the class of `{}`",
            String::from_utf8_lossy(first)
        ));
    }
    Ok(reply)
}

/// Parses a right-hand side (after substitution, or a template at load).
pub fn parse_rhs(value: &[u8]) -> Result<Rhs, String> {
    if value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"error:") {
        return parse_error(&value[6..]).map(Rhs::Error);
    }
    if value.iter().any(|&b| mapfile::is_blank(b)) {
        return Err("a local name or address has no blanks".to_string());
    }
    match value.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            let (local, domain) = (&value[..at], &value[at + 1..]);
            if local.is_empty() || domain.is_empty() {
                return Err("address with an empty local part or domain".to_string());
            }
            Ok(Rhs::Address(Address::new(local, domain)))
        }
        None if value.is_empty() => Err("empty right-hand side".to_string()),
        None => Ok(Rhs::Local(value.to_vec())),
    }
}

/// Replaces `%1`..`%9` by `args` (missing ones by nothing) and `%%` by `%`;
/// any other `%` stays as written.
pub fn substitute(value: &[u8], args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match (value[i], value.get(i + 1)) {
            (b'%', Some(b'%')) => {
                out.push(b'%');
                i += 2;
            }
            (b'%', Some(&d @ b'1'..=b'9')) => {
                if let Some(arg) = args.get(usize::from(d - b'1')) {
                    out.extend_from_slice(arg);
                }
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The keys tried for `local@domain`, in order, with their `%1 %2 %3`
/// (A.5 table; the local part is split at its first `+`).
pub fn candidate_keys(local: &[u8], domain: &[u8]) -> Vec<(Vec<u8>, [Vec<u8>; 3])> {
    let domain = normalize(domain);
    let key = |l: &[u8]| {
        let mut k = l.to_vec();
        k.push(b'@');
        k.extend_from_slice(&domain);
        k
    };
    let mut keys = vec![(key(local), [local.to_vec(), Vec::new(), Vec::new()])];
    let (user, detail) = match local.iter().position(|&b| b == b'+') {
        Some(p) => (&local[..p], Some(&local[p + 1..])),
        None => (local, None),
    };
    let args = |x: &[u8]| {
        let mut plus = b"+".to_vec();
        plus.extend_from_slice(x);
        [user.to_vec(), x.to_vec(), plus]
    };
    if let Some(x) = detail {
        let with = |suffix: &[u8]| {
            let mut l = user.to_vec();
            l.extend_from_slice(suffix);
            l
        };
        if !x.is_empty() {
            keys.push((key(&with(b"++")), args(x)));
        }
        keys.push((key(&with(b"+*")), args(x)));
        keys.push((key(user), args(x)));
        if !x.is_empty() {
            keys.push((key(b"++"), args(x)));
        }
        keys.push((key(b"+*"), args(x)));
        keys.push((key(b""), args(x)));
    } else {
        keys.push((key(b""), [user.to_vec(), Vec::new(), Vec::new()]));
    }
    keys
}

impl<T: Table> VirtUserTable<T> {
    /// A virtusertable over `table` (raw right-hand sides, checked or not).
    pub fn new(table: T) -> VirtUserTable<T> {
        VirtUserTable { table }
    }

    /// Looks `local@domain` up in sendmail's order (A.5); the first hit wins.
    /// A right-hand side that no longer parses after substitution gives a
    /// `554 5.3.5` error (the load-time check makes that rare).
    pub fn lookup(&self, local: &[u8], domain: &[u8]) -> Option<Hit> {
        for (key, args) in candidate_keys(local, domain) {
            if let Some(value) = self.table.lookup(&key) {
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                let value = substitute(value, &refs);
                let rhs = parse_rhs(&value).unwrap_or_else(|_| Rhs::Error(reply::config_error()));
                return Some(Hit { key, rhs });
            }
        }
        None
    }
}

/// What load-time checks need to know about domains.
pub trait DomainCheck {
    /// Whether `domain` (normalized) is local.
    fn is_local(&self, domain: &[u8]) -> bool;
    /// Whether mail to `domain` (normalized, not local) can be sent on.
    fn can_forward(&self, domain: &[u8]) -> bool;
}

/// Parses a virtusertable file: the map syntax of A.1, then each entry's
/// key and right-hand side are checked (A.5); bad entries are reported and
/// skipped.
///
/// Errors: a key without `@` or with a bad domain, a right-hand side that
/// does not parse, an entry that maps to itself, a forward to a domain with
/// no route. Warning: a key whose domain is not local (never used).
pub fn parse(
    file: &str,
    src: &[u8],
    domains: &dyn DomainCheck,
) -> (VirtUserTable, Vec<Diagnostic>) {
    let (map, mut diags) = mapfile::parse(file, src);
    let mut table = MemTable::new();
    for e in &map.entries {
        let Some(at) = e.key.iter().rposition(|&b| b == b'@') else {
            diags.push(Diagnostic::error(
                file,
                e.key_span,
                format!("key `{}` has no `@domain`", String::from_utf8_lossy(&e.key)),
            ));
            continue;
        };
        let domain = normalize(&e.key[at + 1..]);
        let dspan = Span::new(e.key_span.start + at + 1, e.key_span.end);
        if let Some(why) = invalid_domain(&domain) {
            diags.push(Diagnostic::error(file, dspan, format!("{why} in key")));
            continue;
        }
        if !domains.is_local(&domain) {
            diags.push(
                Diagnostic::warning(
                    file,
                    dspan,
                    format!(
                        "domain `{}` is not local, so this entry is never used",
                        String::from_utf8_lossy(&domain)
                    ),
                )
                .with_note("virtusertable applies only to domains in local-host-names"),
            );
        }
        if let Some(p) = e
            .value
            .windows(2)
            .position(|w| w[0] == b'%' && (b'4'..=b'9').contains(&w[1]))
        {
            diags.push(Diagnostic::warning(
                file,
                Span::new(e.value_span.start + p, e.value_span.start + p + 2),
                "virtusertable sets only %1, %2 and %3; this one is always empty",
            ));
        }
        let rhs = match parse_rhs(&e.value) {
            Ok(rhs) => rhs,
            Err(why) => {
                diags.push(Diagnostic::error(file, e.value_span, why));
                continue;
            }
        };
        if let Rhs::Address(a) = &rhs {
            let self_map = a.local.eq_ignore_ascii_case(&e.key[..at]) && a.domain == domain;
            if self_map {
                diags.push(Diagnostic::error(
                    file,
                    e.value_span,
                    "entry maps to itself (a loop)",
                ));
                continue;
            }
            let templated = a.domain.contains(&b'%');
            if !templated && !domains.is_local(&a.domain) && !domains.can_forward(&a.domain) {
                diags.push(
                    Diagnostic::error(
                        file,
                        e.value_span,
                        format!(
                            "no route for forwarding to `{}`",
                            String::from_utf8_lossy(&a.domain)
                        ),
                    )
                    .with_note("forwards need a relay domain or a smarthost"),
                );
                continue;
            }
        }
        table.insert(&e.key, &e.value);
    }
    diags.sort_by_key(|d| d.span.start);
    (VirtUserTable::new(table), diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)], addr: &str) -> Option<(String, Rhs)> {
        let vt = VirtUserTable::new(MemTable::from_pairs(pairs.iter().copied()));
        let a = Address::parse(addr.as_bytes()).unwrap();
        vt.lookup(&a.local, &a.domain)
            .map(|h| (String::from_utf8(h.key).unwrap(), h.rhs))
    }

    fn local(s: &str) -> Rhs {
        Rhs::Local(s.as_bytes().to_vec())
    }

    fn addr(s: &str) -> Rhs {
        Rhs::Address(Address::parse(s.as_bytes()).unwrap())
    }

    #[test]
    fn key_order_is_sendmails() {
        // A.5 lookup order: u+x@d, u++@d, u+*@d, u@d, ++@d, +*@d, @d; the
        // first hit wins. Each case removes the winning key of the one before.
        let all = [
            ("u+x@d.test", "k1"),
            ("u++@d.test", "k2"),
            ("u+*@d.test", "k3"),
            ("u@d.test", "k4"),
            ("++@d.test", "k5"),
            ("+*@d.test", "k6"),
            ("@d.test", "k7"),
        ];
        for skip in 0..all.len() {
            let got = lookup(&all[skip..], "u+x@d.test");
            let want = Some((all[skip].0.to_string(), local(all[skip].1)));
            assert_eq!(got, want, "with keys from {skip}");
        }
    }

    #[test]
    fn empty_detail_skips_the_double_plus_keys() {
        // A.5 notes: `u+@d` matches u+*@d and +*@d but not u++@d / ++@d.
        let got = lookup(
            &[
                ("u++@d.test", "no"),
                ("++@d.test", "no"),
                ("+*@d.test", "yes"),
            ],
            "u+@d.test",
        );
        assert_eq!(got, Some(("+*@d.test".to_string(), local("yes"))));
        let got = lookup(&[("u++@d.test", "no"), ("u+*@d.test", "yes")], "u+@d.test");
        assert_eq!(got, Some(("u+*@d.test".to_string(), local("yes"))));
    }

    #[test]
    fn without_plus_only_full_key_and_catch_all() {
        // A.5 notes: without `+` only keys 1 and 7 are tried.
        let pairs = [
            ("+*@d.test", "no"),
            ("u+*@d.test", "no"),
            ("@d.test", "all"),
        ];
        assert_eq!(
            lookup(&pairs, "u@d.test"),
            Some(("@d.test".to_string(), local("all")))
        );
        assert_eq!(lookup(&[("+*@d.test", "no")], "u@d.test"), None);
    }

    #[test]
    fn percent_arguments() {
        // A.5 table: %1 %2 %3 per key; `%1%3@other` keeps the detail with a
        // catch-all; %% is a literal percent; the local part keeps its case.
        let cases = [
            ("Bob@d.test", "Bob@d.test", "%1-x", local("Bob-x")),
            (
                "Bob+Tag@d.test",
                "bob+tag@d.test",
                "[%1|%2|%3]",
                local("[Bob+Tag||]"),
            ),
            (
                "bob+tag@d.test",
                "bob++@d.test",
                "%1.%2.%3",
                local("bob.tag.+tag"),
            ),
            (
                "bob+tag@d.test",
                "bob@d.test",
                "%1%3@o.test",
                addr("bob+tag@o.test"),
            ),
            ("bob+tag@d.test", "@d.test", "%1@o.test", addr("bob@o.test")),
            (
                "bob+tag@d.test",
                "@d.test",
                "%1%3@o.test",
                addr("bob+tag@o.test"),
            ),
            ("bob@d.test", "@d.test", "%1%3%2@o.test", addr("bob@o.test")),
            ("bob@d.test", "@d.test", "100%%-%1", local("100%-bob")),
            ("bob@d.test", "@d.test", "x%9y", local("xy")),
        ];
        for (input, key, value, want) in cases {
            let got = lookup(&[(key, value)], input).map(|(_, rhs)| rhs);
            assert_eq!(got, Some(want), "{input} via {key} -> {value}");
        }
    }

    #[test]
    fn keys_are_case_insensitive() {
        // A.1 / A.5: keys compared case-insensitively.
        let got = lookup(&[("INFO@D.Test", "sales")], "info@d.TEST.");
        assert_eq!(got, Some(("info@d.test".to_string(), local("sales"))));
    }

    #[test]
    fn error_forms() {
        // A.5 RHS forms: D.S.N:CODE, KEYWORD [CODE] text, CODE text.
        let cases = [
            ("5.7.0:550 Address invalid", "550 5.7.0 Address invalid"),
            (
                "nouser 550 No such user here",
                "550 5.1.1 No such user here",
            ),
            ("nouser", "550 5.1.1 User unknown"),
            ("NoUser No such user", "550 5.1.1 No such user"),
            ("tempfail 451 Try later", "451 4.0.0 Try later"),
            ("tempfail", "451 4.0.0 Temporary failure"),
            ("unavailable 550 Gone", "550 5.0.0 Gone"),
            ("noperm 550 Not you", "550 5.7.1 Not you"),
            ("nohost 550 No host", "550 5.1.2 No host"),
            ("550 Go away", "550 5.0.0 Go away"),
            ("450 Later", "450 4.0.0 Later"),
            ("4.2.1:450 Mailbox busy", "450 4.2.1 Mailbox busy"),
        ];
        for (spec, want) in cases {
            let got = parse_error(spec.as_bytes()).map(|r| r.to_string());
            assert_eq!(got.as_deref(), Ok(want), "error:{spec}");
        }
    }

    #[test]
    fn bad_error_forms_are_refused() {
        // A.5: any other text after `error:` is a configuration error; a
        // class mismatch would send a 4xx reply with a 5.x.x code.
        let cases = [
            "go away",
            "5.7.0:450 mismatch",
            "4.7.0:550 mismatch",
            "tempfail 550 mismatch",
            "nouser 451 mismatch",
            "5.7:550 short",
            "250 fine",
        ];
        for spec in cases {
            assert!(parse_error(spec.as_bytes()).is_err(), "error:{spec}");
        }
    }

    #[test]
    fn rhs_forms() {
        // A.5: no `@` = local name, `@` = address, `error:` = refusal.
        assert_eq!(parse_rhs(b"bob"), Ok(local("bob")));
        assert_eq!(parse_rhs(b"bob+x"), Ok(local("bob+x")));
        assert_eq!(parse_rhs(b"bob@Other.Test."), Ok(addr("bob@other.test")));
        assert!(matches!(parse_rhs(b"ERROR:nouser"), Ok(Rhs::Error(_))));
        assert!(parse_rhs(b"@other.test").is_err());
        assert!(parse_rhs(b"bob@").is_err());
        assert!(parse_rhs(b"two words").is_err());
    }

    struct Fixed;
    impl DomainCheck for Fixed {
        fn is_local(&self, d: &[u8]) -> bool {
            d == b"d.test"
        }
        fn can_forward(&self, d: &[u8]) -> bool {
            d == b"relay.test"
        }
    }

    #[test]
    fn load_checks_report_and_skip() {
        // A.5: a self-map and an unroutable forward are load-time errors.
        let src = b"a@d.test b@d.test\nloop@d.test Loop@D.test\nfwd@d.test x@nowhere.test\nok@d.test y@relay.test\nbad@d.test error:whatever\nnodomain bob\nx@other.test bob\nt@d.test %1@%2\n";
        let (vt, diags) = parse("vt", src, &Fixed);
        let got: Vec<String> = diags.iter().map(|d| d.short(src)).collect();
        let want = [
            "vt:2:13: entry maps to itself (a loop)",
            "vt:3:12: no route for forwarding to `nowhere.test`",
            "vt:5:12: unknown error form `error:whatever` (want D.S.N:CODE, a reply code or a sysexits keyword such as nouser)",
            "vt:6:1: key `nodomain` has no `@domain`",
            "vt:7:3: domain `other.test` is not local, so this entry is never used",
        ];
        assert_eq!(got, want);
        assert!(vt.lookup(b"a", b"d.test").is_some());
        assert!(vt.lookup(b"ok", b"d.test").is_some());
        assert!(vt.lookup(b"t", b"d.test").is_some());
        assert!(vt.lookup(b"fwd", b"d.test").is_none());
        assert!(vt.lookup(b"loop", b"d.test").is_none());
    }
}
