//! Domain lists: `local-host-names` (sendmail class `{w}`, exact match) and
//! `relay-domains` (class `{R}`, a domain and all its subdomains).
//!
//! This module owns the file syntax and the matching rule; it never decides
//! what a match means for a recipient (that is the resolver's) and never
//! reads a file itself.

use std::collections::BTreeSet;

use crate::diag::{Diagnostic, Span};

use super::mapfile::{is_blank, lines};

/// How entries match a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// Only the listed name itself (`local-host-names`, A.2).
    Exact,
    /// The listed name and any subdomain on a label boundary
    /// (`relay-domains`, A.3: sendmail's default without
    /// `FEATURE(relay_hosts_only)`).
    Subdomains,
}

/// A set of domain names, lower-cased, without trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainList {
    names: BTreeSet<Vec<u8>>,
    matching: Matching,
}

/// `domain` in lower case with one trailing dot removed (A.2, B.4).
pub fn normalize(domain: &[u8]) -> Vec<u8> {
    let d = domain.strip_suffix(b".").unwrap_or(domain);
    d.to_ascii_lowercase()
}

/// Why `name` (already normalized) is not a host name made of LDH labels,
/// or `None` when it is one.
pub fn invalid_domain(name: &[u8]) -> Option<&'static str> {
    if name.starts_with(b"[") {
        return Some("address literals are never local or relay domains");
    }
    if name.is_empty() {
        return Some("empty domain name");
    }
    if name.len() > 255 {
        return Some("domain name longer than 255 characters");
    }
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Some("empty label in domain name");
        }
        if label.len() > 63 {
            return Some("domain label longer than 63 characters");
        }
        if !label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some("domain name has a character other than letters, digits, `-` and `.`");
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Some("domain label starts or ends with `-`");
        }
    }
    None
}

impl DomainList {
    /// An empty list.
    pub fn new(matching: Matching) -> DomainList {
        DomainList {
            names: BTreeSet::new(),
            matching,
        }
    }

    /// A list from names given in code (normalized here; invalid names are
    /// kept as given, which only makes them never match).
    pub fn from_names<N: AsRef<[u8]>>(
        matching: Matching,
        names: impl IntoIterator<Item = N>,
    ) -> DomainList {
        let mut list = DomainList::new(matching);
        for n in names {
            list.insert(n.as_ref());
        }
        list
    }

    /// Adds one name.
    pub fn insert(&mut self, name: &[u8]) {
        self.names.insert(normalize(name));
    }

    /// Whether `domain` matches an entry (case-insensitive, one trailing dot
    /// ignored). With [`Matching::Subdomains`], `a.b.relay.test` matches
    /// `relay.test` but `xrelay.test` and `relay.test.evil.test` do not (A.3).
    pub fn matches(&self, domain: &[u8]) -> bool {
        let d = normalize(domain);
        if self.names.contains(&d) {
            return true;
        }
        if self.matching == Matching::Exact {
            return false;
        }
        let mut rest = &d[..];
        while let Some(dot) = rest.iter().position(|&b| b == b'.') {
            rest = &rest[dot + 1..];
            if self.names.contains(rest) {
                return true;
            }
        }
        false
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.names.iter().map(Vec::as_slice)
    }

    /// Whether no name is listed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Parses a class file (A.2, A.3): one name per line, the first word of the
/// line; blank lines and lines starting with `#` (after blanks) are ignored.
/// Invalid names and address literals are reported and skipped; further
/// words on a line are ignored with a warning (sendmail reads only the
/// first word).
pub fn parse(file: &str, src: &[u8], matching: Matching) -> (DomainList, Vec<Diagnostic>) {
    let mut list = DomainList::new(matching);
    let mut diags = Vec::new();
    for (off, line) in lines(src) {
        let Some(start) = line.iter().position(|&b| !is_blank(b)) else {
            continue;
        };
        if line[start] == b'#' {
            continue;
        }
        let end = line[start..]
            .iter()
            .position(|&b| is_blank(b))
            .map_or(line.len(), |p| start + p);
        let span = Span::new(off + start, off + end);
        let name = normalize(&line[start..end]);
        if let Some(why) = invalid_domain(&name) {
            diags.push(Diagnostic::error(
                file,
                span,
                format!("{why}: `{}`", String::from_utf8_lossy(&line[start..end])),
            ));
            continue;
        }
        if let Some(more) = line[end..].iter().position(|&b| !is_blank(b)) {
            let more = end + more;
            if line[more] != b'#' {
                diags.push(Diagnostic::warning(
                    file,
                    Span::new(off + more, off + line.len()),
                    "only the first word of a line is read; the rest is ignored",
                ));
            }
        }
        list.insert(&name);
    }
    (list, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_host_names_match_exactly() {
        // A.2: exact, case-insensitive, one trailing dot removed; a parent
        // listed does not make a subdomain local.
        let (list, diags) = parse(
            "lhn",
            b"# ours\nExample.TEST\n\n  mail.example.test.\n",
            Matching::Exact,
        );
        assert!(diags.is_empty(), "{diags:?}");
        let cases: &[(&[u8], bool)] = &[
            (b"example.test", true),
            (b"EXAMPLE.test.", true),
            (b"mail.example.test", true),
            (b"sub.example.test", false),
            (b"xexample.test", false),
            (b"example.test..", false),
        ];
        for &(domain, want) in cases {
            let got = list.matches(domain);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(domain));
        }
    }

    #[test]
    fn relay_domains_match_subdomains_on_label_boundaries() {
        // A.3: domain or any subdomain; `xrelay.test` and
        // `relay.test.evil.test` do not match `relay.test`.
        let list = DomainList::from_names(Matching::Subdomains, ["relay.test"]);
        let cases: &[(&[u8], bool)] = &[
            (b"relay.test", true),
            (b"sub.relay.test", true),
            (b"a.b.RELAY.test.", true),
            (b"xrelay.test", false),
            (b"relay.test.evil.test", false),
            (b"test", false),
        ];
        for &(domain, want) in cases {
            let got = list.matches(domain);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(domain));
        }
    }

    #[test]
    fn bad_names_are_reported_and_skipped() {
        // A.2: address literals are never local; class files read the first word.
        let src = b"[192.0.2.1]\nbad_name.test\ngood.test extra words\nok.test # comment\n";
        let (list, diags) = parse("lhn", src, Matching::Exact);
        let got: Vec<String> = diags.iter().map(|d| d.short(src)).collect();
        let want = [
            "lhn:1:1: address literals are never local or relay domains: `[192.0.2.1]`",
            "lhn:2:1: domain name has a character other than letters, digits, `-` and `.`: `bad_name.test`",
            "lhn:3:11: only the first word of a line is read; the rest is ignored",
        ];
        assert_eq!(got, want);
        let names: Vec<&[u8]> = list.names().collect();
        assert_eq!(names, [&b"good.test"[..], b"ok.test"]);
    }
}
