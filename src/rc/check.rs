//! Semantic checks of a parsed rcfile (spec §4.5, §5).
//!
//! The parser keeps every recipe procmail would run; this module points out
//! the ones procmail runs differently from how they read: flags it drops
//! with a `Conflicting ...` or `Extraneous ... ignored` log line, and (via
//! a hook the regexp module fills in) regexps it cannot compile. The
//! results are [`Diagnostic`]s of the same type as syntax errors. This
//! module only reads the AST and the source; it changes nothing.

use crate::diag::{Diagnostic, Span};
use crate::rc::ast::{Action, CondKind, Item, Rcfile, Recipe};

/// Checks `rc` (parsed from `src`, shown as `file`) without regexp checks.
pub fn check(file: &str, src: &[u8], rc: &Rcfile) -> Vec<Diagnostic> {
    check_with(file, src, rc, &|_| None)
}

/// Checks `rc` and passes every literal regexp condition (not `$` ones,
/// which are only known at run time) to `regex`, which returns why it is
/// invalid, if it is; that becomes an error at the condition.
pub fn check_with(
    file: &str,
    src: &[u8],
    rc: &Rcfile,
    regex: &dyn Fn(&[u8]) -> Option<String>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    walk(file, src, &rc.items, regex, &mut out);
    out
}

fn walk(
    file: &str,
    src: &[u8],
    items: &[Item],
    regex: &dyn Fn(&[u8]) -> Option<String>,
    out: &mut Vec<Diagnostic>,
) {
    for item in items {
        if let Item::Recipe(r) = item {
            recipe(file, src, r, out);
            for c in &r.conds {
                if let Some(re) = literal_regex(&c.kind)
                    && let Some(why) = regex(re)
                {
                    out.push(
                        Diagnostic::error(file, c.span, format!("invalid regexp: {why}"))
                            .with_note(
                                "procmail logs \"Invalid regexp\" and the condition is false",
                            ),
                    );
                }
            }
            if let Action::Block(body) = &r.action {
                walk(file, src, body, regex, out);
            }
        }
    }
}

/// The regexp a condition tests, unless it is only known after expansion.
fn literal_regex(kind: &CondKind) -> Option<&[u8]> {
    match kind {
        CondKind::Regex(re) | CondKind::Literal(re) => Some(re),
        CondKind::Not(inner) | CondKind::Weighted { inner, .. } | CondKind::Var { inner, .. } => {
            literal_regex(inner)
        }
        _ => None,
    }
}

/// The span of flag `letter` in the recipe's header, or the header.
fn flag_span(src: &[u8], r: &Recipe, letter: u8) -> Span {
    let end = r.span.end.min(src.len());
    let start = r.span.start.min(end);
    // Skip the `:` and the condition count, then find the letter.
    let head = &src[start..end];
    let skip = 1 + head[1.min(head.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    head.iter()
        .enumerate()
        .skip(skip)
        .take_while(|&(_, &b)| b != b':')
        .find(|&(_, &b)| b == letter)
        .map_or(r.span, |(i, _)| Span::new(start + i, start + i + 1))
}

fn recipe(file: &str, src: &[u8], r: &Recipe, out: &mut Vec<Diagnostic>) {
    // §4.6: without an empty line before it, a `:0` right after the
    // conditions is read as the action: a folder named `:0` (checked).
    if let Action::Folder(name) = &r.action
        && name.starts_with(b":")
    {
        out.push(
            Diagnostic::warning(file, r.span, "the action is a folder whose name starts with `:`")
                .with_note("a recipe needs an action line before the next recipe; procmail delivers to a file named like the next header"),
        );
    }
    // The same with `}`: after an empty line the conditions are over and
    // the brace is the action, a folder named `}` (checked).
    if let Action::Folder(name) = &r.action
        && name.as_slice() == b"}"
    {
        out.push(
            Diagnostic::warning(file, r.span, "the action is a folder named `}`")
                .with_note("the block this brace was meant to close stays open"),
        );
    }
    for fl in flag_logs(r) {
        let span = if fl.flag == b':' {
            r.span
        } else {
            flag_span(src, r, fl.flag)
        };
        out.push(
            Diagnostic::warning(file, span, fl.message)
                .with_note(format!("procmail logs \"{}\"", fl.log)),
        );
    }
}

/// A line procmail logs about a recipe's flags (spec §4.5, §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagLog {
    /// procmail's text without the `procmail: ` prefix, e.g.
    /// `Extraneous filter-flag ignored`.
    pub log: &'static str,
    /// `false`: logged whenever procmail reads the recipe, also when its
    /// conditions fail or it sits in a block being skipped. `true`: only
    /// when the conditions matched and the action runs.
    pub only_when_run: bool,
    /// The flag it is about (`:` for the local lockfile).
    pub flag: u8,
    /// The diagnostic's message.
    pub message: String,
}

/// What procmail logs about `r`'s flags, in the order it logs them: the
/// `e` conflicts (when it tests the conditions), then the flags the action
/// cannot use. The evaluator writes these; [`check`] turns them into
/// warnings. (Checked against procmail 3.23pre, also inside a skipped
/// block.)
pub fn flag_logs(r: &Recipe) -> Vec<FlagLog> {
    let f = &r.flags;
    let mut out = Vec::new();
    let mut push = |flag: u8, log: &'static str, only_when_run: bool, message: String| {
        out.push(FlagLog {
            log,
            only_when_run,
            flag,
            message,
        });
    };
    // `e` wins over `E` and `a` (procmail's `conditions()`).
    if f.else_failed && f.else_ {
        push(
            b'E',
            "Conflicting else-if-flag suppressed",
            false,
            "flag `E` conflicts with `e` and is ignored".into(),
        );
    }
    if f.else_failed && f.and_last_ok {
        push(
            b'a',
            "Conflicting also-if-succeeded-flag suppressed",
            false,
            "flag `a` conflicts with `e` and is ignored".into(),
        );
    }
    let kind = match &r.action {
        Action::Folder(_) => "a folder",
        Action::Block(_) => "a block",
        Action::Capture { .. } => "a capture",
        Action::Pipe(_) | Action::Forward(_) => "a program",
        // procmail reads no action, so it says nothing about the flags
        // an action would use (checked: `:0 fcbhiwr:` then an empty line
        // and `:0` logs only `Missing action`).
        Action::Missing => return out,
    };
    // Folders, blocks and captures share procmail's branch that drops `f`.
    if f.filter && !matches!(r.action, Action::Pipe(_) | Action::Forward(_)) {
        push(
            b'f',
            "Extraneous filter-flag ignored",
            false,
            format!("flag `f` has no effect on {kind}"),
        );
    }
    if let Action::Block(_) = r.action {
        if r.lock.is_some() && !f.copy {
            push(
                b':',
                "Extraneous locallockfile ignored",
                false,
                "a local lockfile has no effect on a block without `c`".into(),
            );
        }
        let useless = [
            (f.pass_body, b'b', "Extraneous deliver-body flag ignored"),
            (f.pass_head, b'h', "Extraneous deliver-head flag ignored"),
            (
                f.ignore_write_error,
                b'i',
                "Extraneous ignore-write-error flag ignored",
            ),
            (f.raw, b'r', "Extraneous raw-mode flag ignored"),
        ];
        for (set, letter, log) in useless {
            if set {
                push(
                    letter,
                    log,
                    false,
                    format!("flag `{}` has no effect on a block", char::from(letter)),
                );
            }
        }
    }
    // `c` on a filter or a capture: only logged when the program is about
    // to run; a bare `|` (stdout) takes another path and says nothing.
    let bare_pipe =
        matches!(&r.action, Action::Pipe(cmd) if cmd.iter().all(|b| b.is_ascii_whitespace()));
    let copy_useless = match &r.action {
        Action::Capture { .. } => true,
        Action::Pipe(_) | Action::Forward(_) => f.filter && !bare_pipe,
        _ => false,
    };
    if f.copy && copy_useless {
        let what = if f.filter { "a filter" } else { kind };
        push(
            b'c',
            "Extraneous copy-flag ignored",
            true,
            format!("flag `c` has no effect on {what}"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::syntax;

    fn messages(src: &str) -> Vec<String> {
        let (rc, _) = syntax::parse("rc", src.as_bytes());
        check("rc", src.as_bytes(), &rc)
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    // Each case was run through procmail 3.23pre; the comment gives the
    // log line it wrote (the `e`/`E` texts are from the source, [s]).
    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (":0\nx\n", vec![]),
            // Extraneous filter-flag ignored
            (":0 f\nx\n", vec!["flag `f` has no effect on a folder"]),
            (":0 f\n| sed s/a/b/\n", vec![]),
            // Extraneous copy-flag ignored
            (
                ":0 fc\n| sed s/a/b/\n",
                vec!["flag `c` has no effect on a filter"],
            ),
            (
                ":0 c\nV=| echo\n",
                vec!["flag `c` has no effect on a capture"],
            ),
            // deliver-body, deliver-head, ignore-write-error, raw-mode
            (
                ":0 hbirc:\n{\n}\n",
                vec![
                    "flag `b` has no effect on a block",
                    "flag `h` has no effect on a block",
                    "flag `i` has no effect on a block",
                    "flag `r` has no effect on a block",
                ],
            ),
            (
                ":0:\n{\n}\n",
                vec!["a local lockfile has no effect on a block without `c`"],
            ),
            (
                ":0 eEa\nx\n",
                vec![
                    "flag `E` conflicts with `e` and is ignored",
                    "flag `a` conflicts with `e` and is ignored",
                ],
            ),
        ];
        for (src, want) in cases {
            let got = messages(src);
            assert_eq!(got, want, "rcfile {src:?}");
        }
    }

    // The order and timing seen in procmail's log for the same recipes.
    #[test]
    fn flag_logs_order_and_timing() {
        let src = b":0 fc:\n* x\nV=| echo\n";
        let (rc, _) = syntax::parse("rc", src);
        let Item::Recipe(r) = &rc.items[0] else {
            panic!("{rc}")
        };
        let got: Vec<_> = flag_logs(r)
            .into_iter()
            .map(|l| (l.log, l.only_when_run))
            .collect();
        let want = vec![
            ("Extraneous filter-flag ignored", false),
            ("Extraneous copy-flag ignored", true),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn flag_spans_point_at_the_letter() {
        let src = b":0 B f\nx\n";
        let (rc, _) = syntax::parse("rc", src);
        let got = check("rc", src, &rc);
        assert_eq!(got[0].span, Span::new(5, 6));
    }

    #[test]
    fn regex_hook_sees_literal_regexps_only() {
        let src = b":0\n* ! 1^1 H ?? bad(\n* $ bad(\n{\n:0\n* (ok\nx\n}\n";
        let (rc, _) = syntax::parse("rc", src);
        let got = check_with("rc", src, &rc, &|re| {
            (re.iter().filter(|&&b| b == b'(').count() != re.iter().filter(|&&b| b == b')').count())
                .then(|| {
                    format!(
                        "unbalanced parenthesis in `{}`",
                        String::from_utf8_lossy(re)
                    )
                })
        });
        let got: Vec<_> = got.iter().map(|d| d.short(src)).collect();
        let want = vec![
            "rc:2:3: invalid regexp: unbalanced parenthesis in `bad(`",
            "rc:6:3: invalid regexp: unbalanced parenthesis in `(ok`",
        ];
        assert_eq!(got, want);
    }
}
