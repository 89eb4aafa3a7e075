//! The rcfile's abstract syntax tree.
//!
//! Text that procmail expands at run time (assignment values, action lines,
//! `$` conditions, lockfile names) is kept raw, exactly as written after
//! continuation lines are joined; `rc::vars` expands it when the item is
//! reached, because expansion depends on variables set by earlier items.
//! Every node carries the [`Span`] of its source text so that run-time
//! complaints can point at the line.

use std::fmt;

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
    /// (`Skipped "x"`, `Closing brace unexpected`, ...).
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
    /// A regular expression in procmail's dialect.
    Regex(Vec<u8>),
    /// A regular expression that was written with a leading `\` (already
    /// dropped): a macro such as `^TO_` at its very start stays literal.
    Literal(Vec<u8>),
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
    /// No action: the conditions ended at an empty line and the next line
    /// starts a new recipe. procmail still evaluates the conditions (spec
    /// §4.6; checked with 3.23pre: `?` programs run, MATCH is set, VERBOSE
    /// shows `Match on`), then logs `Missing action` and goes on as if
    /// they had not matched.
    Missing,
}

/// The flag letters in the order [`Flags::letters`] prints them.
const FLAG_LETTERS: &[u8] = b"HBDAaEehbfcwWir";

impl Flags {
    /// Sets the flag named by `letter`; `false` when it names no flag.
    pub fn set(&mut self, letter: u8) -> bool {
        match self.slot(letter) {
            Some(slot) => {
                *slot = true;
                true
            }
            None => false,
        }
    }

    /// Whether the flag named by `letter` is set (`false` for a non-flag).
    pub fn has(&self, letter: u8) -> bool {
        let mut copy = *self;
        copy.slot(letter).is_some_and(|slot| *slot)
    }

    /// The set flags as letters, in the order `HBDAaEehbfcwWir`.
    pub fn letters(&self) -> String {
        FLAG_LETTERS
            .iter()
            .filter(|&&c| self.has(c))
            .map(|&c| char::from(c))
            .collect()
    }

    fn slot(&mut self, letter: u8) -> Option<&mut bool> {
        Some(match letter {
            b'H' => &mut self.head_search,
            b'B' => &mut self.body_search,
            b'D' => &mut self.case_sensitive,
            b'A' => &mut self.and_last,
            b'a' => &mut self.and_last_ok,
            b'E' => &mut self.else_,
            b'e' => &mut self.else_failed,
            b'h' => &mut self.pass_head,
            b'b' => &mut self.pass_body,
            b'f' => &mut self.filter,
            b'c' => &mut self.copy,
            b'w' => &mut self.wait,
            b'W' => &mut self.wait_quiet,
            b'i' => &mut self.ignore_write_error,
            b'r' => &mut self.raw,
            _ => return None,
        })
    }
}

impl Item {
    /// The span of the item's source text (a recipe's header line).
    pub fn span(&self) -> Span {
        match self {
            Item::Assign { span, .. } | Item::Invalid { span, .. } | Item::Abort { span, .. } => {
                *span
            }
            Item::Recipe(r) => r.span,
        }
    }
}

// The compact s-expression form below is what the parser's snapshot tests
// record: one item per line, recipes and blocks indented, byte strings
// quoted with `\n`, `\t`, `\"`, `\\` and `\xNN` escapes, spans as `@start..end`.

/// Writes `bytes` as a quoted, escaped string.
fn write_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &b in bytes {
        match b {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\t' => f.write_str("\\t")?,
            0x20..=0x7e => write!(f, "{}", char::from(b))?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_str("\"")
}

fn write_span(f: &mut fmt::Formatter<'_>, span: Span) -> fmt::Result {
    write!(f, "@{}..{}", span.start, span.end)
}

fn write_items(f: &mut fmt::Formatter<'_>, items: &[Item], indent: usize) -> fmt::Result {
    for item in items {
        write!(f, "\n{:indent$}", "")?;
        write_item(f, item, indent)?;
    }
    Ok(())
}

fn write_item(f: &mut fmt::Formatter<'_>, item: &Item, indent: usize) -> fmt::Result {
    match item {
        Item::Assign { name, value, span } => {
            match value {
                Some(v) => {
                    write!(f, "(assign {name} ")?;
                    write_bytes(f, v)?;
                }
                None => write!(f, "(unset {name}")?,
            }
            f.write_str(" ")?;
            write_span(f, *span)?;
            f.write_str(")")
        }
        Item::Invalid { log, span } | Item::Abort { log, span } => {
            let kind = if matches!(item, Item::Invalid { .. }) {
                "invalid"
            } else {
                "abort"
            };
            write!(f, "({kind} ")?;
            write_bytes(f, log.as_bytes())?;
            f.write_str(" ")?;
            write_span(f, *span)?;
            f.write_str(")")
        }
        Item::Recipe(r) => write_recipe(f, r, indent),
    }
}

fn write_recipe(f: &mut fmt::Formatter<'_>, r: &Recipe, indent: usize) -> fmt::Result {
    f.write_str("(recipe ")?;
    write_span(f, r.span)?;
    let letters = r.flags.letters();
    if !letters.is_empty() {
        write!(f, " (flags {letters})")?;
    }
    match &r.lock {
        None => {}
        Some(Lock::Implicit) => f.write_str(" (lock)")?,
        Some(Lock::Named(name)) => {
            f.write_str(" (lock ")?;
            write_bytes(f, name)?;
            f.write_str(")")?;
        }
    }
    for bad in &r.bad_flags {
        f.write_str(" (skipped ")?;
        write_bytes(f, bad.as_bytes())?;
        f.write_str(")")?;
    }
    let inner = indent + 2;
    for cond in &r.conds {
        write!(f, "\n{:inner$}{cond}", "")?;
    }
    write!(f, "\n{:inner$}", "")?;
    match &r.action {
        Action::Block(items) => {
            f.write_str("(block")?;
            write_items(f, items, inner + 2)?;
            f.write_str(")")?;
        }
        other => write!(f, "{other}")?,
    }
    f.write_str(")")
}

impl fmt::Display for Rcfile {
    /// One top-level item per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            write_item(f, item, 0)?;
            f.write_str("\n")?;
        }
        Ok(())
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_item(f, self, 0)
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(cond ")?;
        write_span(f, self.span)?;
        write!(f, " {})", self.kind)
    }
}

impl fmt::Display for CondKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, text) = match self {
            CondKind::Not(inner) => return write!(f, "(not {inner})"),
            CondKind::Weighted {
                weight,
                exponent,
                inner,
            } => return write!(f, "(weight {weight} {exponent} {inner})"),
            CondKind::Var { name, inner } => return write!(f, "(var {name} {inner})"),
            CondKind::Expand(t) => ("expand", t),
            CondKind::Program(t) => ("program", t),
            CondKind::Less(t) => ("less", t),
            CondKind::Greater(t) => ("greater", t),
            CondKind::Regex(t) => ("regex", t),
            CondKind::Literal(t) => ("literal", t),
        };
        write!(f, "({tag} ")?;
        write_bytes(f, text)?;
        f.write_str(")")
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, text) = match self {
            Action::Folder(t) => ("folder", t),
            Action::Pipe(t) => ("pipe", t),
            Action::Forward(t) => ("forward", t),
            Action::Capture { name, cmd } => {
                write!(f, "(capture {name} ")?;
                write_bytes(f, cmd)?;
                return f.write_str(")");
            }
            Action::Block(items) => {
                f.write_str("(block")?;
                write_items(f, items, 2)?;
                return f.write_str(")");
            }
            Action::Missing => return f.write_str("(missing)"),
        };
        write!(f, "({tag} ")?;
        write_bytes(f, text)?;
        f.write_str(")")
    }
}
