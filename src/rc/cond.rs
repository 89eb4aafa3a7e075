//! One condition line, taken apart (procmailrc(5) "Conditions"; spec §6).
//!
//! [`parse`] is a pure function of the text after the `*`: the parser calls
//! it for every condition line, and the evaluator calls it again on the
//! expansion of a `$` condition. It never expands, matches or runs
//! anything, and it never fails: text that is nothing else is a regexp.

use crate::rc::ast::CondKind;

/// Takes apart one condition (the text after `*` and its blanks, trailing
/// blanks already stripped, continued lines still holding their
/// backslash-newline as procmail's `getlline` keeps them).
///
/// The first character decides, as in procmail's `conditions()`:
/// `!` negates the rest (repeatable, blanks after it skipped); `$` expands
/// the rest later ([`CondKind::Expand`]); a weight `w^x` (two strtod-style
/// numbers with optional blanks around `^`) weights the rest; `NAME ??`
/// tests the rest against a variable or area; `?` runs a program; `<`/`>`
/// compare sizes; a leading `\` is dropped and the rest is a regexp taken
/// literally; anything else is a regexp. Leading blanks are skipped, which
/// is what procmail does to the result of a `$` expansion.
pub fn parse(text: &[u8]) -> CondKind {
    let t = skip_blanks(text);
    match t.first() {
        Some(b'!') => CondKind::Not(Box::new(parse(&t[1..]))),
        // §6 step 2: the rest is expanded as if inside double quotes, after
        // procmail's `squeeze` joined continued lines.
        Some(b'$') => CondKind::Expand(squeeze(&t[1..])),
        Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b',') => match weight(t) {
            Some((weight, exponent, rest)) => CondKind::Weighted {
                weight,
                exponent,
                inner: Box::new(parse(rest)),
            },
            None => CondKind::Regex(squeeze(t)),
        },
        Some(&c) if is_name_start(c) => {
            let end = t.iter().position(|&b| !is_name_char(b)).unwrap_or(t.len());
            let after = skip_blanks(&t[end..]);
            if after.starts_with(b"??") {
                CondKind::Var {
                    name: String::from_utf8_lossy(&t[..end]).into_owned(),
                    inner: Box::new(parse(&after[2..])),
                }
            } else {
                CondKind::Regex(squeeze(t))
            }
        }
        // §6 step 7 / §17 trap 1: the backslash goes, the rest is a regexp
        // even when it starts with `!`, `<`, `^` or `\`.
        Some(b'\\') => CondKind::Literal(squeeze(&t[1..])),
        Some(b'?') => CondKind::Program(t[1..].to_vec()),
        Some(b'<') => CondKind::Less(t[1..].to_vec()),
        Some(b'>') => CondKind::Greater(t[1..].to_vec()),
        _ => CondKind::Regex(squeeze(t)),
    }
}

/// procmail's `squeeze`: drops each backslash-newline pair and the blanks
/// at the start of the line after it (spec §4.6: `^Subject:\` + ` Dinner`
/// is `^Subject:Dinner`). A newline that is not escaped stays, and the
/// blanks after it go too (only a line holding a lone `\` makes one).
pub fn squeeze(text: &[u8]) -> Vec<u8> {
    // Without a newline there is nothing to squeeze (the common case).
    if !text.contains(&b'\n') {
        return text.to_vec();
    }
    let mut out = Vec::with_capacity(text.len());
    // 0 = ordinary, 1 = after a backslash, 2 = at the start of a line.
    let mut state = 0;
    for &b in text {
        match b {
            b'\n' => {
                if state == 1 {
                    out.pop();
                } else {
                    out.push(b);
                }
                state = 2;
            }
            b'\\' => {
                out.push(b);
                state = 1;
            }
            b' ' | b'\t' if state == 2 => {}
            _ => {
                out.push(b);
                state = 0;
            }
        }
    }
    out
}

/// `w^x` at the start of `t`: the weight, the exponent and the text after
/// the exponent and its blanks; `None` when `t` does not start with one.
fn weight(t: &[u8]) -> Option<(f64, f64, &[u8])> {
    let (w, used) = stod(t)?;
    let rest = skip_blanks(&t[used..]);
    let rest = rest.strip_prefix(b"^")?;
    let (x, used) = stod(rest)?;
    Some((w, x, skip_blanks(&rest[used..])))
}

/// procmail's `stod`: blanks, an optional sign, digits, and a fraction after
/// `.` or `,` (C locale or not); at least one digit. Returns the value and
/// the number of bytes used.
fn stod(s: &[u8]) -> Option<(f64, usize)> {
    let mut i = s.len() - skip_blanks(s).len();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut acc = 0.0_f64;
    let mut any = false;
    while let Some(d @ b'0'..=b'9') = s.get(i) {
        acc = acc * 10.0 + f64::from(d - b'0');
        any = true;
        i += 1;
    }
    if let Some(b'.' | b',') = s.get(i) {
        i += 1;
        let mut frac = 1.0_f64;
        while let Some(d @ b'0'..=b'9') = s.get(i) {
            frac /= 10.0;
            acc += frac * f64::from(d - b'0');
            any = true;
            i += 1;
        }
    }
    any.then_some((if negative { -acc } else { acc }, i))
}

fn skip_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use CondKind::*;

    fn re(s: &str) -> CondKind {
        Regex(s.as_bytes().to_vec())
    }

    fn lit(s: &str) -> CondKind {
        Literal(s.as_bytes().to_vec())
    }

    fn w(weight: f64, exponent: f64, inner: CondKind) -> CondKind {
        Weighted {
            weight,
            exponent,
            inner: Box::new(inner),
        }
    }

    fn not(inner: CondKind) -> CondKind {
        Not(Box::new(inner))
    }

    fn var(name: &str, inner: CondKind) -> CondKind {
        Var {
            name: name.into(),
            inner: Box::new(inner),
        }
    }

    // Each form was run through the real procmail 3.23pre with VERBOSE=on;
    // the log's `Match on`/`Score:` lines show how it read the text.
    #[test]
    fn table() {
        let cases: Vec<(&str, CondKind)> = vec![
            ("^Subject: hi", re("^Subject: hi")),
            ("! ^Subject", not(re("^Subject"))),
            ("!! x", not(not(re("x")))),
            ("! ! x", not(not(re("x")))),
            ("$ ${VAR}x", Expand(b" ${VAR}x".to_vec())),
            ("1^0 x", w(1.0, 0.0, re("x"))),
            ("-1.5 ^ 2 ^Subject", w(-1.5, 2.0, re("^Subject"))),
            ("2^1 ! ^Nomatch", w(2.0, 1.0, not(re("^Nomatch")))),
            ("+.5^,5 x", w(0.5, 0.5, re("x"))),
            ("1,5^1 x", w(1.5, 1.0, re("x"))),
            // Not a weight: a regexp starting with a digit or a sign.
            ("1 foo", re("1 foo")),
            ("1^ foo", re("1^ foo")),
            ("-foo", re("-foo")),
            (".*", re(".*")),
            ("B ?? line", var("B", re("line"))),
            ("SUBJ??^$", var("SUBJ", re("^$"))),
            ("HB ?? ! x", var("HB", not(re("x")))),
            ("Subject: x", re("Subject: x")),
            ("? test -f x", Program(b" test -f x".to_vec())),
            ("< 100000", Less(b" 100000".to_vec())),
            (">$LIMIT", Greater(b"$LIMIT".to_vec())),
            // §6 step 7: the backslash is removed, the rest is literal.
            ("\\!foo", lit("!foo")),
            ("\\<cat", lit("<cat")),
            ("\\^Subject", lit("^Subject")),
            ("\\\\<w", lit("\\<w")),
            ("", re("")),
            ("   ^x", re("^x")),
        ];
        for (text, want) in cases {
            let got = parse(text.as_bytes());
            assert_eq!(got, want, "condition {text:?}");
        }
    }

    // Checked: `* ^Subject: Dinner\` + `   tonight` logs
    // `No match on "^Subject: Dinnertonight"`.
    #[test]
    fn continuation_is_squeezed_in_regexps() {
        let got = parse(b"^Subject: Dinner\\\n   tonight");
        assert_eq!(got, re("^Subject: Dinnertonight"));
        let got = parse(b"$ ^a\\\n  $b");
        assert_eq!(got, Expand(b" ^a$b".to_vec()));
    }

    #[test]
    fn programs_keep_their_continuations() {
        let got = parse(b"? a \\\n  b");
        assert_eq!(got, Program(b" a \\\n  b".to_vec()));
    }

    #[test]
    fn squeeze_keeps_a_bare_newline_and_drops_the_indent_after_it() {
        assert_eq!(squeeze(b"a\n  b"), b"a\nb");
        assert_eq!(squeeze(b"a\\\\\nb"), b"a\\b");
        assert_eq!(squeeze(b"a \\ b"), b"a \\ b");
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        assert_eq!(parse(b"caf\xe9"), Regex(b"caf\xe9".to_vec()));
    }
}
