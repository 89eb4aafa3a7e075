//! Mailing lists: aliases that postroom.conf names with `list = ADDRESS
//! [description]` (mta-semantics E). Their copies get the RFC 2369 and
//! RFC 2919 header fields and `Precedence: list`.
//!
//! Owns the `list` setting's syntax ([`ListSpec::parse`]), the fields a
//! list's copies carry ([`List`], built once when the tables load) and
//! which fields of an incoming message a list replaces
//! ([`List::replaces`]). The owner- sender rewrite and the `-request`
//! fallback belong to the alias expansion in `route`; adding the fields
//! to a copy belongs to the queue runner.
//!
//! Never reads files or looks at a message's body.

use crate::diag::Span;

/// The file the `list` settings are in, for diagnostics.
pub const SETTINGS_FILE: &str = "postroom.conf";

/// One `list = ADDRESS [description]` line of postroom.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListSpec {
    /// The alias name (the address's local part, lower case).
    pub name: Vec<u8>,
    /// The domain posts go to (lower case).
    pub domain: Vec<u8>,
    /// Free text for `List-Id:` (may be empty).
    pub description: String,
    /// Where it was written in postroom.conf.
    pub span: Span,
}

impl ListSpec {
    /// Parses the value of a `list` setting: an address `name@domain`,
    /// then, after blanks, an optional description of printable ASCII.
    pub fn parse(value: &str, span: Span) -> Result<ListSpec, String> {
        let (address, description) = match value.split_once([' ', '\t']) {
            Some((a, d)) => (a, d.trim()),
            None => (value, ""),
        };
        let Some((name, domain)) = address.rsplit_once('@') else {
            return Err(format!(
                "`{address}` is not an address (want `name@domain`)"
            ));
        };
        let atom = |s: &str| {
            !s.is_empty()
                && !s.starts_with(['.', '-'])
                && !s.ends_with('.')
                && !s.contains("..")
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        };
        if !atom(name) || name.contains('+') {
            return Err(format!(
                "`{name}` is not a list name (letters, digits, `.`, `_` and `-`)"
            ));
        }
        if !atom(domain) || domain.contains(['+', '_']) {
            return Err(format!("`{domain}` is not a domain name"));
        }
        if let Some(c) = description.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(format!(
                "the description may only hold printable ASCII, not {c:?}"
            ));
        }
        Ok(ListSpec {
            name: name.to_ascii_lowercase().into_bytes(),
            domain: domain.to_ascii_lowercase().into_bytes(),
            description: description.to_string(),
            span,
        })
    }
}

/// A list as its copies show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    /// The alias name.
    pub name: Vec<u8>,
    /// The RFC 2919 list identifier, `name.domain`.
    pub id: Vec<u8>,
    /// The header fields every copy carries, each ending in LF.
    pub fields: Vec<u8>,
}

impl List {
    /// The list of `spec`. `request` and `owner` say whether
    /// `NAME-request` and `owner-NAME` reach someone (then `List-Help:`,
    /// `List-Subscribe:`, `List-Unsubscribe:` and `List-Owner:` point to
    /// them).
    pub fn new(spec: &ListSpec, request: bool, owner: bool) -> List {
        let name = String::from_utf8_lossy(&spec.name);
        let domain = String::from_utf8_lossy(&spec.domain);
        let id = format!("{name}.{domain}");
        let mut f = String::from("List-Id: ");
        if !spec.description.is_empty() {
            f.push_str(&crate::message::phrase(&spec.description));
            f.push(' ');
        }
        f.push_str(&format!("<{id}>\n"));
        f.push_str(&format!("List-Post: <mailto:{name}@{domain}>\n"));
        if request {
            for (field, word) in [
                ("List-Help", "help"),
                ("List-Subscribe", "subscribe"),
                ("List-Unsubscribe", "unsubscribe"),
            ] {
                f.push_str(&format!(
                    "{field}: <mailto:{name}-request@{domain}?subject={word}>\n"
                ));
            }
        }
        if owner {
            f.push_str(&format!("List-Owner: <mailto:owner-{name}@{domain}>\n"));
        }
        f.push_str("Precedence: list\n");
        List {
            name: spec.name.clone(),
            id: id.into_bytes(),
            fields: f.into_bytes(),
        }
    }

    /// Whether a copy through a list drops the incoming field `name` (any
    /// case): every `List-*` field and `Precedence:`, as list managers
    /// replace them, so a post carries this list's fields and no other's.
    pub fn replaces(name: &[u8]) -> bool {
        (name.len() > 5 && name[..5].eq_ignore_ascii_case(b"list-"))
            || name.eq_ignore_ascii_case(b"precedence")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: &str) -> Result<ListSpec, String> {
        ListSpec::parse(v, Span::new(0, 0))
    }

    #[test]
    fn the_setting_is_an_address_then_a_description() {
        let s = spec("Team@Example.TEST  The example team ").unwrap();
        assert_eq!(s.name, b"team");
        assert_eq!(s.domain, b"example.test");
        assert_eq!(s.description, "The example team");
        let s = spec("ops@example.test").unwrap();
        assert_eq!(s.description, "");
        for bad in [
            "team",
            "@example.test",
            "team@",
            "te am@x.test",
            "a+b@x.test",
            "team@x..test",
            ".team@x.test",
            "team@x_y.test",
            "team@x.test caf\u{e9}",
        ] {
            assert!(spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_follow_rfc_2369_and_2919() {
        let s = spec("team@example.test The example team").unwrap();
        let l = List::new(&s, true, true);
        assert_eq!(l.id, b"team.example.test");
        assert_eq!(
            String::from_utf8_lossy(&l.fields),
            "List-Id: The example team <team.example.test>\n\
             List-Post: <mailto:team@example.test>\n\
             List-Help: <mailto:team-request@example.test?subject=help>\n\
             List-Subscribe: <mailto:team-request@example.test?subject=subscribe>\n\
             List-Unsubscribe: <mailto:team-request@example.test?subject=unsubscribe>\n\
             List-Owner: <mailto:owner-team@example.test>\n\
             Precedence: list\n"
        );
        // Without -request and owner, and a description with specials.
        let s = spec("ops@example.test Ops (24/7): \"on call\"").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&List::new(&s, false, false).fields),
            "List-Id: \"Ops (24/7): \\\"on call\\\"\" <ops.example.test>\n\
             List-Post: <mailto:ops@example.test>\n\
             Precedence: list\n"
        );
    }

    #[test]
    fn list_fields_and_precedence_are_replaced() {
        for (name, yes) in [
            (&b"List-Id"[..], true),
            (b"list-unsubscribe", true),
            (b"LIST-ARCHIVE", true),
            (b"Precedence", true),
            (b"List", false),
            (b"List-", false),
            (b"Listing", false),
            (b"Subject", false),
        ] {
            assert_eq!(
                List::replaces(name),
                yes,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }
}
