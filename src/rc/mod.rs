//! The recipe language of `~/.procmailrc`.
//!
//! rcfile text is parsed (`syntax`, the only user of pest) into an owned
//! AST with spans (`ast`), checked (`check`), and evaluated against a
//! message (`eval`). Evaluation does no I/O of its own: it reaches files,
//! programs and the clock only through the [`eval::Effects`] trait, which
//! `deliver` implements. `rc` never opens a file and never starts a process.

pub mod ast;
pub mod check;
pub mod cond;
pub mod eval;
pub mod regex;
pub mod syntax;
pub mod vars;

use crate::diag::Diagnostic;
use ast::{Action, CondKind, Item};

/// Every diagnostic for one rcfile: syntax errors, semantic checks, then
/// regular expressions that do not compile. This is what `postroom check`
/// prints.
pub fn check_source(file: &str, src: &[u8]) -> Vec<Diagnostic> {
    let (rc, mut diags) = syntax::parse(file, src);
    diags.extend(check::check(file, src, &rc));
    check_regexes(file, &rc.items, &mut diags);
    diags.sort_by_key(|d| d.span.start);
    diags
}

/// Reports the conditions whose regex procmail would refuse (`Invalid regexp`).
fn check_regexes(file: &str, items: &[Item], out: &mut Vec<Diagnostic>) {
    for item in items {
        let Item::Recipe(r) = item else { continue };
        for c in &r.conds {
            let mut kind = &c.kind;
            loop {
                kind = match kind {
                    CondKind::Not(k) => k,
                    CondKind::Weighted { inner, .. } | CondKind::Var { inner, .. } => inner,
                    _ => break,
                };
            }
            let (pat, literal) = match kind {
                CondKind::Regex(p) => (p, false),
                CondKind::Literal(p) => (p, true),
                _ => continue,
            };
            let opts = regex::Options {
                case_sensitive: r.flags.case_sensitive,
                leading_backslash: literal,
            };
            if let (_, Some(e)) = regex::Regex::new_lenient(pat, opts) {
                out.push(Diagnostic::error(
                    file,
                    c.span,
                    format!("invalid regular expression: {e}"),
                ));
            }
        }
        if let Action::Block(inner) = &r.action {
            check_regexes(file, inner, out);
        }
    }
}
