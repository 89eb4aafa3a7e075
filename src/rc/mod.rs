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

/// Every diagnostic for one rcfile: syntax errors, then semantic checks
/// (flags, regexes). This is what `postroom check` prints.
pub fn check_source(file: &str, src: &[u8]) -> Vec<Diagnostic> {
    let (rc, mut diags) = syntax::parse(file, src);
    diags.extend(check::check(file, src, &rc));
    diags
}
