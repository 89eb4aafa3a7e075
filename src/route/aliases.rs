//! The `aliases` file and `:include:` lists (mta-semantics A.6.1, A.6.2):
//! sendmail's `readaliases` line rules and the member forms of a
//! right-hand side.
//!
//! This module owns the syntax only and turns each entry into typed
//! [`Member`]s; expansion (recursion, loops, owners, duplicates) is the
//! resolver's. It never opens a file: the loader reads `:include:` files
//! and hands their bytes to [`parse_include`].

use std::collections::HashMap;

use crate::diag::{Diagnostic, Span};
use crate::status::Reply;

use super::Address;
use super::domains::invalid_domain;
use super::mapfile::{is_blank, lines};
use super::reply;

/// One member of an alias (or of an include list), as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A local name: aliased again, else a mailbox user. May hold `+detail`.
    Name(Vec<u8>),
    /// `\name`: the mailbox `name`, never aliased again (A.6.2).
    NoAlias(Vec<u8>),
    /// `user@domain`: resolved again when the domain is local, else forwarded.
    Address(Address),
    /// `/abs/path`: append the message to that file.
    File(Vec<u8>),
    /// `|command` or `"|command args"`: the command, without the `|`.
    Pipe(Vec<u8>),
    /// `:include:path`: the path as written (the loader resolves it).
    Include(Vec<u8>),
    /// A member that could not be used; expansion reports it by DSN with
    /// this reply (A.6.5: it must not refuse the RCPT of a valid alias).
    Refused(Reply),
}

/// An [`Item`] and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// What it is.
    pub item: Item,
    /// Where it is in its file.
    pub span: Span,
}

/// One entry: `name: member, member, ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// The name, folded to lower case (A.6.1).
    pub name: Vec<u8>,
    /// The right-hand side as written, blanks around it cut (owner aliases
    /// use it to decide the envelope sender, A.6.4).
    pub value: Vec<u8>,
    /// The members in order (bad ones as [`Item::Refused`]).
    pub members: Vec<Member>,
    /// 1-based line of the name.
    pub line: usize,
}

/// The good entries of an aliases file, by lower-case name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aliases {
    map: HashMap<Vec<u8>, Alias>,
}

impl Aliases {
    /// The entry for `name` (compared in lower case).
    pub fn get(&self, name: &[u8]) -> Option<&Alias> {
        self.map.get(&name.to_ascii_lowercase())
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Alias> {
        self.map.values()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds or replaces an entry (for tests and other backends).
    pub fn insert(&mut self, alias: Alias) {
        self.map.insert(alias.name.clone(), alias);
    }
}

/// A logical line: joined text and the source offset of every byte.
#[derive(Default)]
struct Logical {
    text: Vec<u8>,
    offs: Vec<usize>,
}

impl Logical {
    fn push(&mut self, off: usize, line: &[u8]) {
        self.text.extend_from_slice(line);
        self.offs.extend((0..line.len()).map(|i| off + i));
    }

    fn pop(&mut self) {
        self.text.pop();
        self.offs.pop();
    }

    /// The source span of `start..end` of the text.
    fn span(&self, start: usize, end: usize) -> Span {
        match (
            self.offs.get(start),
            end.checked_sub(1).and_then(|e| self.offs.get(e)),
        ) {
            (Some(&s), Some(&e)) if end > start => Span::new(s, e + 1),
            (Some(&s), _) => Span::new(s, s),
            _ => {
                let last = self.offs.last().map_or(0, |&o| o + 1);
                Span::new(last, last)
            }
        }
    }
}

/// `s[start..end]` with blanks cut at both ends, as a range.
fn trim_range(s: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_blank(s[start]) {
        start += 1;
    }
    while end > start && is_blank(s[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// The ranges of the comma-separated items of `s[start..end]`; commas inside
/// double quotes or angle brackets do not split (A.6.2).
fn split_items(s: &[u8], start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, 0usize, false);
    let mut item_start = start;
    for i in start..end {
        let b = s[i];
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle += 1,
            b'>' if !quoted => angle = angle.saturating_sub(1),
            b',' if !quoted && angle == 0 => {
                out.push(trim_range(s, item_start, i));
                item_start = i + 1;
            }
            _ => {}
        }
    }
    out.push(trim_range(s, item_start, end));
    out.retain(|(a, b)| a < b);
    out
}

/// The contents of a `"..."` string starting at `s[0]`, with `\x` unescaped,
/// and the rest after the closing quote.
fn unquote(s: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' if i + 1 < s.len() => {
                out.push(s[i + 1]);
                i += 2;
            }
            b'"' => return Ok((out, &s[i + 1..])),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err("unterminated quoted string".to_string())
}

/// Whether `b` may appear in an unquoted local name.
fn name_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f && !b"\"(),:;<>[]\\".contains(&b)
}

/// Parses one member (A.6.2 table). Quoted text is unquoted first, so
/// `"|cmd args"` is a pipe and `"a name"` a local name with a blank.
pub fn parse_item(raw: &[u8]) -> Result<Item, String> {
    let mut s: Vec<u8> = raw.to_vec();
    let mut quoted = false;
    if s.first() == Some(&b'"') {
        let (inner, rest) = unquote(&s)?;
        if rest.is_empty() {
            s = inner;
            quoted = true;
        } else if rest.first() == Some(&b'@') {
            let domain = &rest[1..];
            check_domain(domain)?;
            if inner.is_empty() {
                return Err("empty local part".to_string());
            }
            return Ok(Item::Address(Address::new(&inner, domain)));
        } else {
            return Err("text after a quoted string".to_string());
        }
    } else if !s.starts_with(b"|")
        && !s.starts_with(b"\\|")
        && !s.starts_with(b"/")
        && let (Some(lt), Some(gt)) = (
            s.iter().position(|&b| b == b'<'),
            s.iter().rposition(|&b| b == b'>'),
        )
    {
        // `Phrase <addr>`: the address inside the brackets counts.
        if gt < lt {
            return Err("unbalanced `<` and `>`".to_string());
        }
        s = s[lt + 1..gt].to_vec();
    }
    if let Some(cmd) = s.strip_prefix(b"|").or_else(|| s.strip_prefix(b"\\|")) {
        let cmd = trim(cmd);
        if cmd.is_empty() {
            return Err("empty program after `|`".to_string());
        }
        return Ok(Item::Pipe(cmd.to_vec()));
    }
    if s.first() == Some(&b'/') {
        return Ok(Item::File(s));
    }
    if s.len() >= 9 && s[..9].eq_ignore_ascii_case(b":include:") {
        let path = trim(&s[9..]);
        if path.is_empty() {
            return Err("empty file name after `:include:`".to_string());
        }
        return Ok(Item::Include(path.to_vec()));
    }
    let (no_alias, s) = match s.strip_prefix(b"\\") {
        Some(rest) => (true, rest.to_vec()),
        None => (false, s),
    };
    if s.is_empty() {
        return Err("empty address".to_string());
    }
    if let Some(at) = s.iter().rposition(|&b| b == b'@') {
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.is_empty() || !local.iter().all(|&b| name_byte(b) && b != b'@') {
            return Err("bad local part".to_string());
        }
        check_domain(domain)?;
        return Ok(Item::Address(Address::new(local, domain)));
    }
    if !quoted && !s.iter().all(|&b| name_byte(b)) {
        return Err(format!(
            "bad character in name `{}`",
            String::from_utf8_lossy(&s)
        ));
    }
    Ok(if no_alias {
        Item::NoAlias(s)
    } else {
        Item::Name(s)
    })
}

fn check_domain(domain: &[u8]) -> Result<(), String> {
    match invalid_domain(&super::domains::normalize(domain)) {
        Some(why) => Err(why.to_string()),
        None => Ok(()),
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let (a, b) = trim_range(s, 0, s.len());
    &s[a..b]
}

/// Parses the comma-separated members in `text[start..end]`, reporting bad
/// ones and keeping them as [`Item::Refused`].
fn members(
    file: &str,
    l: &Logical,
    start: usize,
    end: usize,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Member> {
    split_items(&l.text, start, end)
        .into_iter()
        .map(|(a, b)| {
            let span = l.span(a, b);
            let item = match parse_item(&l.text[a..b]) {
                Ok(item) => item,
                Err(why) => {
                    diags.push(Diagnostic::error(file, span, format!("bad member: {why}")));
                    Item::Refused(reply::bad_member())
                }
            };
            Member { item, span }
        })
        .collect()
}

/// Parses an aliases file (A.6.1). Every bad line is reported; good entries
/// load.
///
/// - `#` in the first column and empty lines are comments.
/// - A line ending in `\` is joined with the next (both removed, nothing
///   inserted); a line starting with a blank continues the entry above.
/// - An indented line whose first non-blank is `#` is a comment (Postfix;
///   sendmail would add its text to the entry) and gets a warning.
/// - An indented line after a comment line belongs to no entry (sendmail
///   swallows it with the comment): it is dropped with a warning; after a
///   blank line or at the top it is an error.
/// - The name runs to the first `:`; it may be quoted, must not have
///   `@domain`, and is folded to lower case. A later duplicate wins with a
///   warning (sendmail "duplicate alias name").
pub fn parse(file: &str, src: &[u8]) -> (Aliases, Vec<Diagnostic>) {
    let phys: Vec<(usize, &[u8])> = lines(src).collect();
    let mut aliases = Aliases::default();
    let mut diags = Vec::new();
    let mut first_line: HashMap<Vec<u8>, usize> = HashMap::new();
    let (mut skipping, mut after_comment) = (false, false);
    let mut i = 0;
    while i < phys.len() {
        let lineno = i + 1;
        let mut l = Logical::default();
        l.push(phys[i].0, phys[i].1);
        i += 1;
        while l.text.last() == Some(&b'\\') && i < phys.len() {
            l.pop();
            l.push(phys[i].0, phys[i].1);
            i += 1;
        }
        match l.text.first() {
            None => {
                (skipping, after_comment) = (false, false);
                continue;
            }
            Some(b'#') => {
                (skipping, after_comment) = (false, true);
                continue;
            }
            Some(&b) if is_blank(b) => {
                let Some(col) = l.text.iter().position(|&b| !is_blank(b)) else {
                    continue;
                };
                if !skipping {
                    let span = l.span(col, l.text.len());
                    diags.push(if after_comment {
                        Diagnostic::warning(file, span, "indented line after a comment line belongs to no entry and is ignored")
                            .with_note("sendmail reads it as part of the comment; indent it under the entry or remove the comment")
                    } else {
                        Diagnostic::error(file, span, "continuation line does not follow an entry")
                    });
                }
                skipping = true;
                continue;
            }
            Some(_) => (skipping, after_comment) = (false, false),
        }
        while i < phys.len() && phys[i].1.first().is_some_and(|&b| is_blank(b)) {
            let (off, line) = phys[i];
            i += 1;
            let col = line
                .iter()
                .position(|&b| !is_blank(b))
                .unwrap_or(line.len());
            if line.get(col) == Some(&b'#') {
                diags.push(
                    Diagnostic::warning(file, Span::new(off + col, off + line.len()), "indented comment line inside an entry is ignored")
                        .with_note("sendmail would add this text to the entry as members; Postfix ignores it, and so do we"),
                );
                continue;
            }
            l.push(off, line);
        }
        entry(file, &l, lineno, &mut aliases, &mut first_line, &mut diags);
    }
    (aliases, diags)
}

/// Parses one logical entry line into `aliases`.
fn entry(
    file: &str,
    l: &Logical,
    lineno: usize,
    aliases: &mut Aliases,
    first_line: &mut HashMap<Vec<u8>, usize>,
    diags: &mut Vec<Diagnostic>,
) {
    let text = &l.text;
    let Some(colon) = text.iter().position(|&b| b == b':') else {
        let end = text.iter().position(|&b| is_blank(b)).unwrap_or(text.len());
        diags.push(Diagnostic::error(
            file,
            l.span(0, end),
            "missing colon after the alias name",
        ));
        return;
    };
    let (a, b) = trim_range(text, 0, colon);
    let name_span = l.span(a, b);
    let raw = &text[a..b];
    let name = if raw.first() == Some(&b'"') {
        match unquote(raw) {
            Ok((inner, [])) => inner,
            Ok((_, rest)) if rest.first() == Some(&b'@') => {
                diags.push(Diagnostic::error(
                    file,
                    name_span,
                    "cannot alias non-local names",
                ));
                return;
            }
            _ => {
                diags.push(Diagnostic::error(file, name_span, "illegal alias name"));
                return;
            }
        }
    } else if raw.contains(&b'@') {
        diags.push(Diagnostic::error(
            file,
            name_span,
            "cannot alias non-local names",
        ));
        return;
    } else if raw.is_empty() || !raw.iter().all(|&b| name_byte(b)) {
        diags.push(Diagnostic::error(file, name_span, "illegal alias name"));
        return;
    } else {
        raw.to_vec()
    };
    if name.is_empty() {
        diags.push(Diagnostic::error(file, name_span, "illegal alias name"));
        return;
    }
    let name = name.to_ascii_lowercase();
    let (vs, ve) = trim_range(text, colon + 1, text.len());
    if vs == ve {
        diags.push(Diagnostic::error(
            file,
            name_span,
            format!(
                "missing value for alias `{}`",
                String::from_utf8_lossy(&name)
            ),
        ));
        return;
    }
    let members = members(file, l, vs, ve, diags);
    if let Some(first) = first_line.get(&name) {
        diags.push(
            Diagnostic::warning(
                file,
                name_span,
                format!(
                    "duplicate alias `{}`, the later entry wins",
                    String::from_utf8_lossy(&name)
                ),
            )
            .with_note(format!("first defined on line {first}")),
        );
    }
    first_line.insert(name.clone(), lineno);
    aliases.insert(Alias {
        name,
        value: text[vs..ve].to_vec(),
        members,
        line: lineno,
    });
}

/// Parses an `:include:` list (A.6.2): members as in a right-hand side, one
/// or more per line, `#` comment lines and blank lines ignored.
///
/// Unless `allow_files_and_programs`, file and program members are refused
/// (A.6.2: include files list addresses only by default, as Postfix) with
/// an error here and a `550 5.7.1` for that member at delivery.
pub fn parse_include(
    file: &str,
    src: &[u8],
    allow_files_and_programs: bool,
) -> (Vec<Member>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    for (off, line) in lines(src) {
        let (a, b) = trim_range(line, 0, line.len());
        if a == b || line[a] == b'#' {
            continue;
        }
        let mut l = Logical::default();
        l.push(off, line);
        for mut m in members(file, &l, a, b, &mut diags) {
            if !allow_files_and_programs && matches!(m.item, Item::File(_) | Item::Pipe(_)) {
                diags.push(
                    Diagnostic::error(
                        file,
                        m.span,
                        "file and program members are not allowed in an include file",
                    )
                    .with_note("list this include file as trusted (`trusted_include = PATH` in postroom.conf) to allow them"),
                );
                m.item = Item::Refused(reply::not_allowed_here());
            }
            out.push(m);
        }
    }
    (out, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(src: &str, name: &str) -> Vec<Item> {
        let (a, _) = parse("aliases", src.as_bytes());
        a.get(name.as_bytes())
            .unwrap_or_else(|| panic!("no alias {name}"))
            .members
            .iter()
            .map(|m| m.item.clone())
            .collect()
    }

    fn name(s: &str) -> Item {
        Item::Name(s.as_bytes().to_vec())
    }

    fn diags(src: &str) -> Vec<String> {
        let (_, d) = parse("aliases", src.as_bytes());
        d.iter().map(|d| d.short(src.as_bytes())).collect()
    }

    #[test]
    fn member_forms() {
        // A.6.2 table: name, \name, user@domain, /file, |prog, "|prog args",
        // :include:, quoted names; commas inside quotes do not split.
        let src = "all: bob, \\carol, \"|/bin/sort < /dev/null > /tmp/x\", dave@Other.Test, /var/log/all.mbox, |/bin/true, \"|/usr/bin/prog a, b\", :include:lists/all, \"a name\", \\|/bin/cat, Eve <eve@x.test>\n";
        let got = items(src, "all");
        let want = vec![
            name("bob"),
            Item::NoAlias(b"carol".to_vec()),
            Item::Pipe(b"/bin/sort < /dev/null > /tmp/x".to_vec()),
            Item::Address(Address::new(b"dave", b"other.test")),
            Item::File(b"/var/log/all.mbox".to_vec()),
            Item::Pipe(b"/bin/true".to_vec()),
            Item::Pipe(b"/usr/bin/prog a, b".to_vec()),
            Item::Include(b"lists/all".to_vec()),
            name("a name"),
            Item::Pipe(b"/bin/cat".to_vec()),
            Item::Address(Address::new(b"eve", b"x.test")),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn unquoted_pipe_keeps_its_redirections() {
        // A.6.2: `|command` is the whole item; `<` `>` are not an address.
        let got = items("p: |/bin/sort < /dev/null > /tmp/x, bob\n", "p");
        assert_eq!(
            got,
            [
                Item::Pipe(b"/bin/sort < /dev/null > /tmp/x".to_vec()),
                name("bob")
            ]
        );
    }

    #[test]
    fn continuation_lines() {
        // A.6.1: a leading blank continues the entry (newline dropped, blank
        // kept); a trailing backslash joins with nothing inserted.
        let src = "team: alice,\n  bob,\n\tcarol\nglued: a,\\\nb\nword: ab\\\ncd\n";
        assert_eq!(
            items(src, "team"),
            [name("alice"), name("bob"), name("carol")]
        );
        assert_eq!(items(src, "glued"), [name("a"), name("b")]);
        assert_eq!(items(src, "word"), [name("abcd")]);
        assert!(diags(src).is_empty());
    }

    #[test]
    fn indented_line_after_comment_is_swallowed() {
        // A.6.1: in `team: alice,` / `# bob left` / `  carol`, carol is not a
        // member (sendmail); we warn.
        let src = "team: alice,\n# bob left\n  carol\n";
        assert_eq!(items(src, "team"), [name("alice")]);
        assert_eq!(
            diags(src),
            ["aliases:3:3: indented line after a comment line belongs to no entry and is ignored"]
        );
    }

    #[test]
    fn indented_comment_is_a_comment() {
        // A.6.1: indented `#` line = comment (Postfix, checked there [v]),
        // with a warning; later indented lines still continue the entry.
        let src = "indented: a,\n   # b, c\n   d\n";
        assert_eq!(items(src, "indented"), [name("a"), name("d")]);
        assert_eq!(
            diags(src),
            ["aliases:2:4: indented comment line inside an entry is ignored"]
        );
    }

    #[test]
    fn names_fold_case_and_later_duplicate_wins() {
        // A.6.1: LHS folded to lower case; duplicate: warn, later wins.
        let src = "Mixed: a\nPostMaster: root\nmixed: b\n";
        assert_eq!(items(src, "MIXED"), [name("b")]);
        assert_eq!(items(src, "postmaster"), [name("root")]);
        assert_eq!(
            diags(src),
            ["aliases:3:1: duplicate alias `mixed`, the later entry wins"]
        );
    }

    #[test]
    fn hash_inside_a_line_is_not_a_comment() {
        // A.6.1: `#` elsewhere than the first column is not a comment.
        assert_eq!(items("x: a#b\n", "x"), [name("a#b")]);
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_loads() {
        // A.6.1: missing colon, empty RHS, non-local LHS, stray continuation.
        let src =
            "  stray\nnocolon here\nempty:\nbob@x.test: a\n\"quoted name\": ok\ngood: a, b@, c\n";
        let want = [
            "aliases:1:3: continuation line does not follow an entry",
            "aliases:2:1: missing colon after the alias name",
            "aliases:3:1: missing value for alias `empty`",
            "aliases:4:1: cannot alias non-local names",
            "aliases:6:10: bad member: empty domain name",
        ];
        assert_eq!(diags(src), want);
        assert_eq!(items(src, "quoted name"), [name("ok")]);
        let got = items(src, "good");
        assert_eq!(
            got,
            [name("a"), Item::Refused(reply::bad_member()), name("c")]
        );
    }

    #[test]
    fn include_lists() {
        // A.6.2: one or more per line, `#` comments; files and programs
        // refused unless the include file is trusted (Postfix default).
        let src = b"# members\nalice, bob\n\ncarol@x.test\n|/bin/prog\n/tmp/file\n";
        let (got, d) = parse_include("list", src, false);
        let got: Vec<Item> = got.into_iter().map(|m| m.item).collect();
        let want = vec![
            name("alice"),
            name("bob"),
            Item::Address(Address::new(b"carol", b"x.test")),
            Item::Refused(reply::not_allowed_here()),
            Item::Refused(reply::not_allowed_here()),
        ];
        assert_eq!(got, want);
        assert_eq!(d.len(), 2);
        let (got, d) = parse_include("list", src, true);
        assert!(d.is_empty());
        assert_eq!(got[3].item, Item::Pipe(b"/bin/prog".to_vec()));
    }
}
