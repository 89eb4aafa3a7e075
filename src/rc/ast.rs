//! The rcfile's abstract syntax tree.
//!
//! Text that procmail expands at run time (assignment values, action lines,
//! `$` conditions, lockfile names) is kept raw, exactly as written after
//! continuation lines are joined; `rc::vars` expands it when the item is
//! reached, because expansion depends on variables set by earlier items.
//! Every node carries the [`Span`] of its source text so that run-time
//! complaints can point at the line.

use crate::diag::Span;

/// A parsed rcfile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rcfile {
    /// The items in file order.
    pub items: Vec<Item>,
}

/// One top-level or block-level item.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `NAME=value` (value raw, to be expanded) or a lone `NAME` (value `None`: unset).
    Assign {
        /// The variable name.
        name: String,
        /// The raw value text, quotes included; `None` unsets the variable.
        value: Option<Vec<u8>>,
        /// The whole assignment.
        span: Span,
    },
    /// A recipe.
    Recipe(Recipe),
    /// Something procmail complains about when it reaches it and then skips
    /// (`Skipped "x"`, `Closing brace unexpected`, `Missing action`, ...).
    /// `log` is procmail's text without the `procmail: ` prefix.
    Invalid {
        /// The log text, e.g. `Skipped "-odq"`.
        log: String,
        /// Where.
        span: Span,
    },
    /// The rest of the file cannot be read as procmail reads it (an
    /// unterminated quote, a recipe cut off by the end of the file): when
    /// reached, log `log` and end this rcfile.
    Abort {
        /// The log text, e.g. `Incomplete recipe`.
        log: String,
        /// Where.
        span: Span,
    },
}

/// The recipe flags (procmailrc(5) "Flags").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Flags {
    pub head_search: bool,        // H
    pub body_search: bool,        // B
    pub case_sensitive: bool,     // D
    pub and_last: bool,           // A
    pub and_last_ok: bool,        // a
    pub else_: bool,              // E
    pub else_failed: bool,        // e
    pub pass_head: bool,          // h
    pub pass_body: bool,          // b
    pub filter: bool,             // f
    pub copy: bool,               // c
    pub wait: bool,               // w
    pub wait_quiet: bool,         // W
    pub ignore_write_error: bool, // i
    pub raw: bool,                // r
}

/// `:` after the flags: which local lockfile to hold during the action.
#[derive(Clone, Debug, PartialEq)]
pub enum Lock {
    /// `:0 :` derive the name from the action (§11).
    Implicit,
    /// `:0 : name`, the raw name to expand.
    Named(Vec<u8>),
}

/// One `:0` recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Flags as written (`H`/`B`/`h`/`b` defaults are applied by the evaluator).
    pub flags: Flags,
    /// Flag text that is not a flag, for `Skipped "..."` when reached.
    pub bad_flags: Vec<String>,
    /// The local lockfile, if any.
    pub lock: Option<Lock>,
    /// Conditions in order.
    pub conds: Vec<Cond>,
    /// The action line or block.
    pub action: Action,
    /// The `:0 ...` header line.
    pub span: Span,
}

/// A condition line after the `*` (or one of the N lines of `:N`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    /// The parsed condition.
    pub kind: CondKind,
    /// Its text.
    pub span: Span,
}

/// What a condition tests. Parsed by [`crate::rc::cond::parse`], also at run
/// time after a `$` condition is expanded.
#[derive(Clone, Debug, PartialEq)]
pub enum CondKind {
    /// `!` negation of the rest.
    Not(Box<CondKind>),
    /// `$rest`: expand `rest` as in double quotes, then parse again.
    Expand(Vec<u8>),
    /// `w^x rest`: a weighted condition.
    Weighted {
        /// The weight `w`.
        weight: f64,
        /// The exponent `x`.
        exponent: f64,
        /// What is tested.
        inner: Box<CondKind>,
    },
    /// `NAME ?? rest`: test `rest` against a variable or `H`/`B`/`HB` area.
    Var {
        /// The variable name (or `H`, `B`, `HB`, `BH`).
        name: String,
        /// What is tested.
        inner: Box<CondKind>,
    },
    /// `? command`: true when the program exits 0.
    Program(Vec<u8>),
    /// `< N`: the search area is shorter than N bytes. Raw text, expanded.
    Less(Vec<u8>),
    /// `> N`: the search area is longer than N bytes. Raw text, expanded.
    Greater(Vec<u8>),
    /// A regular expression in procmail's dialect (a leading `\` already dropped).
    Regex(Vec<u8>),
}

/// The action of a recipe.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// One or more folder names (raw; expanded and split at run time).
    Folder(Vec<u8>),
    /// `| command` (raw text after `|`, leading blank kept); empty means stdout.
    Pipe(Vec<u8>),
    /// `! args` (raw text after `!`).
    Forward(Vec<u8>),
    /// `NAME=| command`: capture the program's output into NAME.
    Capture {
        /// The variable.
        name: String,
        /// Raw command text after `|`.
        cmd: Vec<u8>,
    },
    /// `{ items }`.
    Block(Vec<Item>),
}
