//! The `mailertable` (mta-semantics A.8): how mail for a non-local domain
//! leaves, by SMTP to a named host, to a local user, or not at all (an
//! error), and the `smart_host` fallback for domains the table does not
//! name.
//!
//! This module owns the key order (`a.b.example`, `.b.example`,
//! `.example`, `.`), the right-hand-side forms and the host syntax
//! (`[host]:port`) that `postroom.conf`'s `smart_host` shares. It never
//! opens a file (it gets the bytes) and never touches the network: a host
//! stays a name here and is resolved by the SMTP client when it connects.
//!
//! We do no MX lookups at all (there is no DNS resolver in the crate): in
//! sendmail `[host]` means "the host itself, no MX lookup" and a bare
//! `host` means "look up its MX records". Here both go to the host's own
//! addresses through getaddrinfo (`/etc/hosts`, then DNS A/AAAA records,
//! as the system is set up) when the client connects. The difference is
//! kept in [`Route::Smtp`]'s `mx` so that a later MX resolver can honour it.

use std::collections::HashMap;

use crate::diag::Diagnostic;
use crate::status::Reply;

use super::domains::{invalid_domain, normalize};
use super::mapfile;
use super::virtusertable::parse_error;

/// The SMTP port, used when a host names none.
pub const DEFAULT_PORT: u16 = 25;

/// Where mail for one domain goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send it by SMTP to `host`.
    Smtp {
        /// The host name or IP address, without brackets.
        host: String,
        /// The TCP port.
        port: u16,
        /// Whether sendmail would look up MX records (the host was written
        /// without brackets); we never do, see the module documentation.
        mx: bool,
        /// Whether to greet with EHLO (`esmtp:` and `relay:`) or only HELO
        /// (`smtp:`).
        esmtp: bool,
    },
    /// Deliver it to this local user (`local:user`); `None` for `local:`
    /// alone, which keeps the recipient's own local part.
    Local(Option<Vec<u8>>),
    /// Refuse it with this reply (`error:`).
    Error(Reply),
}

/// A host as written in a mailertable right-hand side or in `smart_host`:
/// `[host]`, `[host]:port`, `host` or `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// The host name (lower case) or IP address, without brackets; an
    /// IPv6 address loses sendmail's `IPv6:` tag.
    pub host: String,
    /// The port, [`DEFAULT_PORT`] when none is written.
    pub port: u16,
    /// Whether the host was written without brackets (sendmail: look up
    /// MX records).
    pub mx: bool,
}

impl HostSpec {
    /// The route that sends by ESMTP to this host (used for `smart_host`).
    pub fn esmtp_route(&self) -> Route {
        Route::Smtp {
            host: self.host.clone(),
            port: self.port,
            mx: self.mx,
            esmtp: true,
        }
    }
}

/// Parses the host syntax shared by mailertable and `smart_host`:
/// `[name]`, `[192.0.2.1]`, `[IPv6:2001:db8::1]` or `[2001:db8::1]`, each
/// with an optional `:port`, or a bare `name` with an optional `:port`.
/// The error is a lowercase reason.
pub fn parse_host(s: &[u8]) -> Result<HostSpec, String> {
    let text = std::str::from_utf8(s).map_err(|_| "host is not ASCII".to_string())?;
    let (host, port, mx) = if let Some(inner) = text.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| format!("`{text}` has `[` without `]`"))?;
        let host = &inner[..close];
        let rest = &inner[close + 1..];
        let port = match rest {
            "" => None,
            _ => Some(
                rest.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected `{rest}` after `]`"))?,
            ),
        };
        let host = host
            .strip_prefix("IPv6:")
            .or_else(|| host.strip_prefix("ipv6:"))
            .unwrap_or(host);
        (host, port, false)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p), true),
            None => (text, None, true),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("bad port `{p}` (want 1 to 65535)")),
        },
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        if mx {
            return Err(format!(
                "IP address `{host}` must be written in brackets, `[{host}]`"
            ));
        }
        return Ok(HostSpec {
            host: host.to_string(),
            port,
            mx,
        });
    }
    let name = normalize(host.as_bytes());
    if let Some(why) = invalid_domain(&name) {
        return Err(format!("bad host `{host}`: {why}"));
    }
    Ok(HostSpec {
        host: String::from_utf8(name).expect("ascii"),
        port,
        mx,
    })
}

/// Parses one right-hand side, `mailer:rest` (A.8): `esmtp:`, `relay:`
/// and `smtp:` with a host, `local:` with an optional user, `error:` with
/// the virtusertable's error forms ([`parse_error`]). The mailer name is
/// case-insensitive. The error is a lowercase reason.
pub fn parse_rhs(value: &[u8]) -> Result<Route, String> {
    let Some(colon) = value.iter().position(|&b| b == b':') else {
        return Err(format!(
            "`{}` has no `mailer:` (want esmtp:, smtp:, relay:, local: or error:)",
            String::from_utf8_lossy(value)
        ));
    };
    let (mailer, rest) = (value[..colon].to_ascii_lowercase(), &value[colon + 1..]);
    match mailer.as_slice() {
        b"esmtp" | b"relay" | b"smtp" => {
            if rest.contains(&b'@') {
                return Err("`mailer:user@host` is not supported (only a host)".to_string());
            }
            let h = parse_host(rest)?;
            Ok(Route::Smtp {
                host: h.host,
                port: h.port,
                mx: h.mx,
                esmtp: mailer != b"smtp",
            })
        }
        b"local" => {
            if rest.iter().any(|&b| mapfile::is_blank(b) || b == b'@') {
                return Err(format!(
                    "bad local user `{}`",
                    String::from_utf8_lossy(rest)
                ));
            }
            Ok(Route::Local((!rest.is_empty()).then(|| rest.to_vec())))
        }
        b"error" => parse_error(rest).map(Route::Error),
        other => Err(format!(
            "unknown mailer `{}` (want esmtp, smtp, relay, local or error)",
            String::from_utf8_lossy(other)
        )),
    }
}

/// The keys tried for `domain`, most specific first (A.8): the domain
/// itself, then each parent with a leading dot, then `.`.
pub fn candidate_keys(domain: &[u8]) -> Vec<Vec<u8>> {
    let d = normalize(domain);
    let mut keys = vec![d.clone()];
    let mut rest = &d[..];
    while let Some(dot) = rest.iter().position(|&b| b == b'.') {
        keys.push(rest[dot..].to_vec());
        rest = &rest[dot + 1..];
    }
    keys.push(b".".to_vec());
    keys
}

/// A loaded mailertable: normalized keys to parsed routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailerTable {
    routes: HashMap<Vec<u8>, Route>,
}

impl MailerTable {
    /// An empty table.
    pub fn new() -> MailerTable {
        MailerTable::default()
    }

    /// Adds `key` (a domain, `.parent` or `.`) → `route` unless the key is
    /// present (first wins, A.1); returns whether it was added.
    pub fn insert(&mut self, key: &[u8], route: Route) -> bool {
        let key = normalize_key(key);
        if self.routes.contains_key(&key) {
            return false;
        }
        self.routes.insert(key, route);
        true
    }

    /// The route for `domain` (any case, trailing dot ignored): the first
    /// of [`candidate_keys`] in the table.
    pub fn route_for(&self, domain: &[u8]) -> Option<&Route> {
        candidate_keys(domain)
            .iter()
            .find_map(|k| self.routes.get(k))
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// A key in lower case without a trailing dot, `.` kept as it is.
fn normalize_key(key: &[u8]) -> Vec<u8> {
    if key == b"." {
        b".".to_vec()
    } else {
        normalize(key)
    }
}

/// Why a key is not a domain, `.parent` or `.`, or `None`.
fn invalid_key(key: &[u8]) -> Option<&'static str> {
    if key == b"." {
        return None;
    }
    invalid_domain(key.strip_prefix(b".").unwrap_or(key))
}

/// Parses a mailertable file (A.1 syntax, then A.8 keys and values); every
/// bad line is a diagnostic and is skipped, the rest loads.
pub fn parse(file: &str, src: &[u8]) -> (MailerTable, Vec<Diagnostic>) {
    parse_with(file, src, &|_| false)
}

/// [`parse`], and a warning for each key that `is_local` says is a local
/// domain: the table is not consulted for those (A.8).
pub fn parse_with(
    file: &str,
    src: &[u8],
    is_local: &dyn Fn(&[u8]) -> bool,
) -> (MailerTable, Vec<Diagnostic>) {
    let (map, mut diags) = mapfile::parse(file, src);
    let mut table = MailerTable::new();
    for e in &map.entries {
        let key = normalize_key(&e.key);
        if let Some(why) = invalid_key(&key) {
            diags.push(
                Diagnostic::error(file, e.key_span, format!("{why} in key"))
                    .with_note("keys are a domain, `.parent.domain` or `.`"),
            );
            continue;
        }
        if is_local(&key) {
            diags.push(
                Diagnostic::warning(
                    file,
                    e.key_span,
                    format!(
                        "domain `{}` is local, so this entry is never used",
                        String::from_utf8_lossy(&key)
                    ),
                )
                .with_note("mailertable routes only mail for remote domains"),
            );
        }
        match parse_rhs(&e.value) {
            Ok(route) => {
                table.insert(&key, route);
            }
            Err(why) => diags.push(Diagnostic::error(file, e.value_span, why)),
        }
    }
    diags.sort_by_key(|d| d.span.start);
    (table, diags)
}

/// `554 5.4.4` for a remote domain with no route (we do no MX lookups).
pub fn no_route(domain: &[u8]) -> Reply {
    Reply::perm(
        554,
        (4, 4),
        &format!(
            "no route to {}: no mailertable entry and no smart_host",
            String::from_utf8_lossy(domain)
        ),
    )
}

/// Where mail for the non-local `domain` goes: its mailertable entry, else
/// the smart host, else a permanent `5.4.4` "no route" error. An `error:`
/// entry is returned as its reply, so `Ok` is always [`Route::Smtp`] or
/// [`Route::Local`].
pub fn outbound_route(
    domain: &[u8],
    table: &MailerTable,
    smart_host: Option<&HostSpec>,
) -> Result<Route, Reply> {
    match (table.route_for(domain), smart_host) {
        (Some(Route::Error(reply)), _) => Err(reply.clone()),
        (Some(route), _) => Ok(route.clone()),
        (None, Some(h)) => Ok(h.esmtp_route()),
        (None, None) => Err(no_route(&normalize(domain))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(host: &str, port: u16, mx: bool, esmtp: bool) -> Route {
        Route::Smtp {
            host: host.to_string(),
            port,
            mx,
            esmtp,
        }
    }

    #[test]
    fn lookup_order_is_most_specific_first() {
        // A.8: a.b.example, .b.example, .example, `.`; each case drops the
        // key that won the one before.
        let all = [
            ("a.b.example", "esmtp:[one]"),
            (".b.example", "esmtp:[two]"),
            (".example", "esmtp:[three]"),
            (".", "esmtp:[four]"),
        ];
        let want = ["one", "two", "three", "four"];
        for skip in 0..all.len() {
            let mut t = MailerTable::new();
            for (k, v) in &all[skip..] {
                t.insert(k.as_bytes(), parse_rhs(v.as_bytes()).unwrap());
            }
            let got = t.route_for(b"A.B.Example.");
            assert_eq!(got, Some(&smtp(want[skip], 25, false, true)), "skip {skip}");
        }
    }

    #[test]
    fn dot_keys_match_subdomains_only() {
        // `.example` is any subdomain, not example itself; `example` is
        // that domain only; `xexample` matches neither.
        let mut t = MailerTable::new();
        t.insert(b".example", parse_rhs(b"esmtp:[sub]").unwrap());
        assert!(t.route_for(b"example").is_none());
        assert!(t.route_for(b"xexample").is_none());
        assert!(t.route_for(b"x.example").is_some());
        let mut t = MailerTable::new();
        t.insert(b"Example.", parse_rhs(b"esmtp:[one]").unwrap());
        assert!(t.route_for(b"example").is_some());
        assert!(t.route_for(b"x.example").is_none());
        assert_eq!(
            candidate_keys(b"a.b.c"),
            ["a.b.c", ".b.c", ".c", "."].map(|s| s.as_bytes().to_vec())
        );
    }

    #[test]
    fn host_forms() {
        // (written, host, port, mx)
        let cases = [
            ("[mail.example.test]", "mail.example.test", 25, false),
            ("[Mail.Example.TEST.]:587", "mail.example.test", 587, false),
            ("mail.example.test", "mail.example.test", 25, true),
            ("mail.example.test:2525", "mail.example.test", 2525, true),
            ("[192.0.2.1]", "192.0.2.1", 25, false),
            ("[192.0.2.1]:26", "192.0.2.1", 26, false),
            ("[IPv6:2001:db8::1]:27", "2001:db8::1", 27, false),
            ("[::1]", "::1", 25, false),
        ];
        for (written, host, port, mx) in cases {
            let got = parse_host(written.as_bytes());
            let want = HostSpec {
                host: host.to_string(),
                port,
                mx,
            };
            assert_eq!(got, Ok(want), "{written}");
        }
        let bad = [
            ("[mail", "`[mail` has `[` without `]`"),
            ("[a.test]x", "unexpected `x` after `]`"),
            ("[a.test]:0", "bad port `0` (want 1 to 65535)"),
            ("a.test:http", "bad port `http` (want 1 to 65535)"),
            (
                "[a..test]",
                "bad host `a..test`: empty label in domain name",
            ),
            (
                "192.0.2.1",
                "IP address `192.0.2.1` must be written in brackets, `[192.0.2.1]`",
            ),
            ("", "bad host ``: empty domain name"),
        ];
        for (written, want) in bad {
            assert_eq!(
                parse_host(written.as_bytes()),
                Err(want.to_string()),
                "{written}"
            );
        }
    }

    #[test]
    fn rhs_forms() {
        let cases = [
            ("esmtp:[mx.test]:2525", smtp("mx.test", 2525, false, true)),
            ("ESMTP:mx.test", smtp("mx.test", 25, true, true)),
            ("relay:[mx.test]", smtp("mx.test", 25, false, true)),
            ("smtp:[mx.test]", smtp("mx.test", 25, false, false)),
            ("local:bob", Route::Local(Some(b"bob".to_vec()))),
            ("local:", Route::Local(None)),
        ];
        for (written, want) in cases {
            assert_eq!(parse_rhs(written.as_bytes()), Ok(want), "{written}");
        }
    }

    #[test]
    fn error_forms_reuse_the_virtusertable_parser() {
        // A.8: `error:CODE text` and `error:D.S.N:CODE text`.
        let cases = [
            ("error:550 No such domain", "550 5.0.0 No such domain"),
            ("error:5.1.2:550 Host gone", "550 5.1.2 Host gone"),
            ("error:4.4.1:451 Try later", "451 4.4.1 Try later"),
            ("error:nohost", "550 5.1.2 Host unknown"),
        ];
        for (written, want) in cases {
            let got = parse_rhs(written.as_bytes()).map(|r| match r {
                Route::Error(reply) => reply.to_string(),
                other => format!("{other:?}"),
            });
            assert_eq!(got.as_deref(), Ok(want), "{written}");
        }
        // A class mismatch would send a 4xx with a 5.x.x code.
        assert!(parse_rhs(b"error:5.1.2:451 mismatch").is_err());
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let src = b"good.test esmtp:[a.test]\nbad..test esmtp:[b.test]\nx.test uucp:host\ny.test esmtp:[c.test]:99999\nz.test\n.ok.test smtp:d.test\n";
        let (t, diags) = parse("mailertable", src);
        let got: Vec<String> = diags.iter().map(|d| d.short(src)).collect();
        let want = [
            "mailertable:2:1: empty label in domain name in key",
            "mailertable:3:8: unknown mailer `uucp` (want esmtp, smtp, relay, local or error)",
            "mailertable:4:8: bad port `99999` (want 1 to 65535)",
            "mailertable:5:1: missing value for key `z.test`",
        ];
        assert_eq!(got, want);
        assert_eq!(t.len(), 2);
        assert!(t.route_for(b"w.ok.test").is_some());
    }

    #[test]
    fn outbound_route_falls_back_to_the_smart_host() {
        let mut t = MailerTable::new();
        t.insert(b"relay.test", parse_rhs(b"esmtp:[primary.test]").unwrap());
        t.insert(b"gone.test", parse_rhs(b"error:5.1.2:550 Gone").unwrap());
        let smart = parse_host(b"[mail.isp.test]:587").unwrap();
        let got = outbound_route(b"relay.test", &t, Some(&smart));
        assert_eq!(got, Ok(smtp("primary.test", 25, false, true)));
        let got = outbound_route(b"other.test", &t, Some(&smart));
        assert_eq!(got, Ok(smtp("mail.isp.test", 587, false, true)));
        let got = outbound_route(b"gone.test", &t, Some(&smart)).map_err(|r| r.to_string());
        assert_eq!(got, Err("550 5.1.2 Gone".to_string()));
        let got = outbound_route(b"Other.Test.", &t, None).map_err(|r| r.to_string());
        assert_eq!(
            got,
            Err("554 5.4.4 no route to other.test: no mailertable entry and no smart_host".into())
        );
    }
}
