//! Quoting and `$VAR` expansion of rcfile text, as procmail does it itself.
//!
//! This module owns procmail's sh-like word reader (procmailrc(5)
//! "Environment variable expansion", spec §4.2–§4.4): single and double
//! quotes, backslashes, `$NAME` and `${NAME:-word}` forms, the special
//! parameters, `"$@"`, backquotes and word splitting, plus two small rules
//! that read variable values: §9's booleans and §12's "does this command
//! need a shell". Everything here is a pure function over raw bytes.
//!
//! It must never do I/O: variable lookup, running a backquoted command and
//! logging all go through the [`Env`] trait, which the evaluator implements.
//! It never assumes UTF-8 and never consults `IFS`, `~` or glob patterns
//! (procmail does none of them).
//!
//! Three reading modes mirror the three ways procmail reads text:
//! * [`expand_value`]: an assignment value; one word, reading stops at the
//!   first unquoted blank, expansions are never split (spec §17 trap 4).
//! * [`expand_words`] / [`expand_folders`]: an action line or a command;
//!   unquoted expansion results are split on blank, tab and newline.
//! * [`expand_dquoted`] / [`expand_spaced`]: `$` conditions, size
//!   conditions and command-line assignments; unquoted blanks collapse to
//!   one space and expansions are not split.

use std::borrow::Cow;

/// What expansion may ask of the outside world. The evaluator implements it.
pub trait Env {
    /// A variable's value; None = unset. Names include the specials "$", "?", "=", "_", "-", "#", "0".."9".
    ///
    /// `"_"` is the current rcfile (`$_`), `"-"` is `$LASTFOLDER`, `"$"`
    /// the pid, `"?"` the last exit status, `"="` the last score and `"#"`
    /// the number of positional parameters. `"0"` is procmail's `argv[0]`;
    /// `"1"`..`"9"` must be None beyond the last positional parameter.
    fn get(&self, name: &[u8]) -> Option<Cow<'_, [u8]>>;
    /// The positional parameters $1.. for "$@".
    fn positional(&self) -> Vec<Vec<u8>>;
    /// Run a backquoted command (text as written between the backquotes, after procmail's own unescaping) and return its raw stdout.
    ///
    /// The implementation decides how to run it with [`prepare_command`]
    /// (spec §4.4: shell only when `$SHELLMETAS` or `test` demand it) and
    /// feeds it the whole message. Trailing newlines are removed here, not
    /// by the implementation.
    fn backquote(&mut self, cmd: &[u8]) -> Vec<u8>;
    /// Log a diagnostic (procmail's text without "procmail: ", e.g. `Bad substitution of "x"`).
    ///
    /// The text carries no trailing newline.
    fn log(&mut self, text: &str);
}

/// How a command is to be started (spec §12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run `$SHELL $SHELLFLAGS text`, the text exactly as written
    /// (unexpanded: the shell expands variables from the environment).
    Shell(Vec<u8>),
    /// Exec directly: the words after procmail's own expansion and
    /// splitting, `"$@"` already replaced by the positional parameters.
    Argv(Vec<Vec<u8>>),
}

/// Expands an assignment value (`NAME=value`, spec §4.2).
///
/// Quotes are removed; reading stops at the first unquoted blank, tab or
/// newline, or at a `#` that starts the word (a comment). Unquoted
/// expansions are not word-split and backquote output is kept whole with
/// all trailing newlines removed. `"$@"` expands to nothing here.
pub fn expand_value(raw: &[u8], env: &mut dyn Env) -> Vec<u8> {
    let mut r = Reader::new(raw, env, Mode::Value, Got::Nothing);
    r.run();
    r.out.into_text()
}

/// Where procmail's reading of an assignment value ends (spec §4.2): the
/// index of the first unquoted blank, tab or newline, or of a `#` that
/// starts the word (the rest of that line is a comment), else `raw.len()`.
///
/// For the parser, which must cut the value before any variable is known.
/// procmail decides while expanding, so this assumes every variable unset
/// and runs no backquote. Only a `${NAME:-}`/`${NAME+}`-style empty
/// alternative depends on the value (checked: `A=${UNSET:-} b` sets A to
/// `b`, `A=${X:-} b` with X set sets `hello` and unsets `b`); for such text
/// this answer is the unset case.
pub fn value_extent(raw: &[u8]) -> usize {
    let mut env = NullEnv;
    let mut r = Reader::new(raw, &mut env, Mode::Value, Got::Nothing);
    r.run();
    if r.stopped { r.pos - 1 } else { raw.len() }
}

/// Every variable unset, no output from programs, no logs.
struct NullEnv;

impl Env for NullEnv {
    fn get(&self, _name: &[u8]) -> Option<Cow<'_, [u8]>> {
        None
    }
    fn positional(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn backquote(&mut self, _cmd: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn log(&mut self, _text: &str) {}
}

/// Expands an action line or a command into words (spec §4.3).
///
/// Unquoted expansion results (variables, `$_`, `$-`, positional
/// parameters, backquote output) are split on blank, tab and newline;
/// `"$@"` becomes the positional parameters as separate words. procmail
/// does that only for a word that ends right where `"$@"` stands
/// (`"$@"`, `x"$@"`: the whole word is replaced; `"$@"y` keeps `y` only)
/// and only when there is at least one parameter (none: the word stays, so
/// a lone `"$@"` is one empty word) — checked against procmail 3.23pre.
///
/// The result is never empty: text without any word gives one empty word,
/// as in procmail (a bare `|` action is recognised that way).
pub fn expand_words(raw: &[u8], env: &mut dyn Env) -> Vec<Vec<u8>> {
    let (words, marker) = read_words(raw, env);
    let args = match marker {
        Some(_) => env.positional(),
        None => Vec::new(),
    };
    substitute_all_args(words, marker, args)
}

/// Expands a folder action line into folder names (spec §4.6, §10.5).
///
/// The same as [`expand_words`] except that procmail does not substitute
/// `"$@"` in folder lines: there it expands to nothing (`f1"$@"` is `f1`,
/// a lone `"$@"` is the empty name) — checked against procmail 3.23pre.
pub fn expand_folders(raw: &[u8], env: &mut dyn Env) -> Vec<Vec<u8>> {
    read_words(raw, env).0
}

/// Expands the text of a `$` condition as if it stood inside double quotes
/// (spec §6 step 2).
///
/// procmail replaces the `$` by a `"` and reads the rest, so a `"` in the
/// text closes the quote and what follows is read unquoted, with blanks
/// collapsed to one space and nothing split (`$ ${X}" 'y'"` with X=`a` is
/// `a y`). The result is not trimmed: the caller skips leading blanks
/// before parsing it again as a condition, as procmail does.
pub fn expand_dquoted(raw: &[u8], env: &mut dyn Env) -> Vec<u8> {
    let mut r = Reader::new(raw, env, Mode::Spaced, Got::Double);
    r.run();
    r.out.into_text()
}

/// Expands text the way procmail reads size conditions (`< $LIMIT`, spec
/// §6 step 6) and `VAR=value` command-line arguments (spec §1.3).
///
/// Quotes are removed, unquoted runs of blanks become one space (a
/// trailing blank is kept), expansions are not split, and reading stops at
/// an unquoted newline or a `#` that starts a word.
pub fn expand_spaced(raw: &[u8], env: &mut dyn Env) -> Vec<u8> {
    let mut r = Reader::new(raw, env, Mode::Spaced, Got::Nothing);
    r.run();
    r.out.into_text()
}

/// Decides how procmail starts a command: pipes, `?` conditions, backquotes
/// and TRAP (spec §12, procmail(1) "SHELLMETAS").
///
/// Any byte of `shellmetas` in the unexpanded text means the shell. Else
/// the text is expanded and split here ([`expand_words`]); if the first
/// word is then exactly `test` the shell is used after all (with the
/// unexpanded text), because procmail cannot exec the shell builtin. Note
/// that the expansion, with its backquotes and logs, happens even then, as
/// in procmail.
pub fn prepare_command(cmd: &[u8], shellmetas: &[u8], env: &mut dyn Env) -> Command {
    if has_meta(cmd, shellmetas) {
        return Command::Shell(cmd.to_vec());
    }
    let (words, marker) = read_words(cmd, env);
    if words.first().is_some_and(|w| w == b"test") {
        return Command::Shell(cmd.to_vec());
    }
    let args = match marker {
        Some(_) => env.positional(),
        None => Vec::new(),
    };
    Command::Argv(substitute_all_args(words, marker, args))
}

/// Tells from the unexpanded text whether procmail would use the shell
/// (spec §12): any `shellmetas` byte, or a first word `test`.
///
/// This looks at the first word as written; a first word that only
/// expands to `test` (`$T`, `"test"`) needs [`prepare_command`].
pub fn needs_shell(cmd: &[u8], shellmetas: &[u8]) -> bool {
    if has_meta(cmd, shellmetas) {
        return true;
    }
    let start = cmd
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(cmd.len());
    let rest = &cmd[start..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\n'))
        .unwrap_or(rest.len());
    &rest[..end] == b"test"
}

/// Splits a value on blanks, tabs and newlines, as procmail splits
/// unquoted expansions and `$SENDMAILFLAGS` (spec §4.3, §10.6); `IFS` plays
/// no part. Empty pieces are dropped.
pub fn split_blanks(value: &[u8]) -> Vec<Vec<u8>> {
    value
        .split(|b| matches!(b, b' ' | b'\t' | b'\n'))
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The value of `$\NAME`: `()` followed by `value` with each of
/// `( | ) * ? + . ^ $ [ \` escaped by a backslash (spec §4.3).
///
/// The leading `()` keeps a value starting with `\<`-like text from being
/// read as a condition prefix; blanks are not escaped and the result is
/// never split. Checked against procmail: `$\B` with B=`a.b` is `()a\.b`.
pub fn regex_escape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.extend_from_slice(b"()");
    for &b in value {
        if b"(|)*?+.^$[\\".contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Reads a boolean variable value the procmail way (spec §9): true when
/// [`parse_num`] gives non-zero, `old` when the value says nothing.
pub fn parse_bool(value: &[u8], old: bool) -> bool {
    parse_num(value, i64::from(old)) != 0
}

/// Reads a numeric or boolean variable value the procmail way (spec §9).
///
/// A leading decimal number (after white space, with an optional sign, as
/// strtol(3) reads it; out of range saturates) is the value. Otherwise,
/// after blanks and tabs, a word starting (case-insensitively) with `a`
/// is 2 ("all", for LOGABSTRACT), one starting with `on`, `y`, `t` or `e`
/// is 1, one starting with `off`, `n`, `f` or `d` is 0, and anything else
/// leaves `old` (so `EXITCODE=foo` keeps the old value).
pub fn parse_num(value: &[u8], old: i64) -> i64 {
    if let Some(n) = strtol(value) {
        return n;
    }
    let start = value
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let word = value[start..].to_ascii_lowercase();
    if word.starts_with(b"a") {
        2
    } else if ["on", "y", "t", "e"]
        .iter()
        .any(|p| word.starts_with(p.as_bytes()))
    {
        1
    } else if ["off", "n", "f", "d"]
        .iter()
        .any(|p| word.starts_with(p.as_bytes()))
    {
        0
    } else {
        old
    }
}

/// strtol(3) in base 10: None when no digit was read. (formail parses
/// its numbers the same way.)
pub(crate) fn strtol(value: &[u8]) -> Option<i64> {
    let mut i = value
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .unwrap_or(value.len());
    let negative = match value.get(i) {
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
    let digits = value[i..].iter().take_while(|b| b.is_ascii_digit());
    let mut n: i64 = 0;
    let mut any = false;
    for &d in digits {
        any = true;
        let d = i64::from(d - b'0');
        n = if negative {
            n.saturating_mul(10).saturating_sub(d)
        } else {
            n.saturating_mul(10).saturating_add(d)
        };
    }
    any.then_some(n)
}

fn has_meta(cmd: &[u8], shellmetas: &[u8]) -> bool {
    cmd.iter().any(|b| shellmetas.contains(b))
}

/// Reads `raw` as procmail reads action lines; also returns where `"$@"`
/// stood (word index and that word's length then), if it did.
fn read_words(raw: &[u8], env: &mut dyn Env) -> (Vec<Vec<u8>>, Option<(usize, usize)>) {
    let mut r = Reader::new(raw, env, Mode::Words, Got::Nothing);
    r.run();
    let marker = r.all_args;
    let mut words = match r.out {
        Out::Words(w) => w,
        Out::Text(t) => vec![t],
    };
    // A trailing separator opened a word that never got a byte.
    if r.got == Got::Skipping && words.len() > 1 {
        words.pop();
    }
    (words, marker)
}

/// Replaces the word that ends where `"$@"` stood by `args` (procmail's
/// pipes.c does this when it builds argv; see [`expand_words`]).
fn substitute_all_args(
    mut words: Vec<Vec<u8>>,
    marker: Option<(usize, usize)>,
    args: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    if let Some((index, len)) = marker
        && !args.is_empty()
        && words.get(index).is_some_and(|w| w.len() == len)
    {
        words.splice(index..=index, args);
    }
    words
}

/// Which of procmail's three readers (readparse's `sarg`) is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Action lines: words, unquoted expansions split.
    Words,
    /// Assignment values: one word, nothing split.
    Value,
    /// `$`/size conditions: blanks collapse to one space, nothing split.
    Spaced,
}

/// The reader's state; the order matters (procmail compares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Got {
    /// Nothing read yet.
    Nothing,
    /// Between words.
    Skipping,
    /// Inside an unquoted word.
    Normal,
    /// Inside `"..."`.
    Double,
    /// Inside `'...'`.
    Single,
}

/// The output: words (the last one open) or one text.
#[derive(Clone, Debug)]
enum Out {
    Words(Vec<Vec<u8>>),
    Text(Vec<u8>),
}

impl Out {
    fn current(&mut self) -> &mut Vec<u8> {
        match self {
            Out::Words(w) => w.last_mut().expect("the word list is never empty"),
            Out::Text(t) => t,
        }
    }

    fn into_text(self) -> Vec<u8> {
        match self {
            Out::Words(w) => w.concat(),
            Out::Text(t) => t,
        }
    }
}

/// An alternative word of `${NAME:-word}` that is being skipped because the
/// variable decides: what to restore and substitute at its closing brace.
struct Skip {
    /// The brace level the closing `}` brings back.
    level: usize,
    /// The output as it was before the word.
    out: Out,
    /// The state as it was before the word.
    got: Got,
    /// The variable's value, substituted at the closing brace.
    value: Vec<u8>,
}

/// Whether an expansion result may be word-split.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Variables, positional parameters, `$_`, `$-`, backquotes.
    Yes,
    /// `$$`, `$?`, `$#`, `$=`, `$\NAME`: always one piece.
    No,
}

/// One run of procmail's reader over one text.
struct Reader<'a, 'e> {
    raw: &'a [u8],
    pos: usize,
    env: &'e mut dyn Env,
    mode: Mode,
    got: Got,
    out: Out,
    /// Open `${...:-` levels.
    bracelev: usize,
    /// The brace level when the current `"` was opened.
    qbracelev: usize,
    skip: Option<Skip>,
    all_args: Option<(usize, usize)>,
    /// Reading stopped at a blank, newline or comment (not at the end).
    stopped: bool,
}

impl<'a, 'e> Reader<'a, 'e> {
    fn new(raw: &'a [u8], env: &'e mut dyn Env, mode: Mode, got: Got) -> Self {
        let out = match mode {
            Mode::Words => Out::Words(vec![Vec::new()]),
            Mode::Value | Mode::Spaced => Out::Text(Vec::new()),
        };
        Reader {
            raw,
            pos: 0,
            env,
            mode,
            got,
            out,
            bracelev: 0,
            qbracelev: 0,
            skip: None,
            all_args: None,
            stopped: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.raw.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn run(&mut self) {
        while let Some(c) = self.next() {
            if self.step(c).is_break() {
                break;
            }
        }
    }

    /// Handles one character; Break ends the text.
    fn step(&mut self, c: u8) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        match c {
            b'\\' if self.got != Got::Single => match self.next() {
                Some(d) => self.backslash(d),
                // procmail logs "Unexpected EOL" here; the parser has
                // already reported a file that ends this way.
                None => return Break(()),
            },
            b'`' if self.got != Got::Single => self.backquote(),
            b'"' => match self.got {
                // A `"` inside a `${...}` opened within the quotes is literal.
                Got::Double if self.qbracelev < self.bracelev => self.literal(c),
                Got::Double => self.got = Got::Normal,
                Got::Single => self.literal(c),
                _ => {
                    self.qbracelev = self.bracelev;
                    self.got = Got::Double;
                }
            },
            b'\'' => match self.got {
                Got::Double => self.literal(c),
                Got::Single => self.got = Got::Normal,
                _ => self.got = Got::Single,
            },
            b'}' if self.closes_brace() => self.close_brace(),
            // `#` starting a word is a comment to the end of the line
            // (spec §4.1); the text ends there.
            b'#' if self.got <= Got::Skipping => {
                self.stopped = true;
                return Break(());
            }
            b'$' if self.got != Got::Single => return self.dollar(),
            b' ' | b'\t' => match self.got {
                Got::Normal if self.mode == Mode::Value => {
                    self.stopped = true;
                    return Break(());
                }
                Got::Normal => {
                    self.got = Got::Skipping;
                    self.separate();
                }
                Got::Nothing | Got::Skipping => {}
                Got::Double | Got::Single => self.literal(c),
            },
            b'\n' if self.got <= Got::Normal => {
                self.stopped = true;
                return Break(());
            }
            _ => self.literal(c),
        }
        Continue(())
    }

    /// Appends a byte that is part of a word.
    fn literal(&mut self, c: u8) {
        self.out.current().push(c);
        if self.got <= Got::Skipping {
            self.got = Got::Normal;
        }
    }

    /// Ends the current word.
    fn separate(&mut self) {
        match &mut self.out {
            Out::Words(w) => w.push(Vec::new()),
            Out::Text(t) => t.push(b' '),
        }
    }

    fn closes_brace(&self) -> bool {
        (self.got <= Got::Normal && self.bracelev > 0)
            || (self.got == Got::Double && self.bracelev > self.qbracelev)
    }

    /// The `}` of a `${NAME:-word}`: at the end of a skipped word, throw
    /// the word away and substitute the variable instead.
    fn close_brace(&mut self) {
        self.bracelev -= 1;
        if self.skip.as_ref().is_some_and(|s| s.level == self.bracelev) {
            let skip = self.skip.take().expect("checked above");
            self.out = skip.out;
            self.got = skip.got;
            self.emit(&skip.value, Split::Yes);
        }
    }

    /// The character after a backslash (outside single quotes).
    fn backslash(&mut self, d: u8) {
        match d {
            b'\n' => {}
            // `\#` is a literal `#` at the start of a word; elsewhere both
            // characters stay (checked: `a\#b` stays `a\#b`).
            b'#' if self.got > Got::Skipping => self.escaped_pair(d),
            // In double quotes these are not special: keep the backslash.
            b' ' | b'\t' | b'\'' | b'#' if self.got == Got::Double => self.escaped_pair(d),
            b' ' | b'\t' | b'\'' | b'#' | b'"' | b'\\' | b'$' | b'`' => self.literal(d),
            b'}' if self.closes_brace() => self.literal(d),
            _ if self.got > Got::Normal => self.escaped_pair(d),
            _ => self.literal(d),
        }
    }

    fn escaped_pair(&mut self, d: u8) {
        self.out.current().push(b'\\');
        self.literal(d);
    }

    /// A backquoted command: read it, run it (unless skipping), substitute.
    fn backquote(&mut self) {
        let mut cmd = Vec::new();
        loop {
            match self.next() {
                None | Some(b'`') => break,
                // A `"` ends a backquote opened inside double quotes
                // (a missing closing backquote). procmail 3.23pre then
                // stays inside the double quotes: checked,
                // B="a`cmd"b c" sets B to `ab c`.
                Some(b'"') if self.got == Got::Double => break,
                Some(b'\\') => match self.next() {
                    None => break,
                    Some(b'\n') => {}
                    Some(b'"') if self.got == Got::Double => cmd.push(b'"'),
                    Some(e @ (b'\\' | b'$' | b'`')) => cmd.push(e),
                    Some(e) => cmd.extend_from_slice(&[b'\\', e]),
                },
                Some(c) => cmd.push(c),
            }
        }
        let output = if self.skip.is_some() {
            Vec::new()
        } else {
            let mut output = self.env.backquote(&cmd);
            // procmail keeps values as C strings.
            if let Some(nul) = output.iter().position(|&b| b == 0) {
                output.truncate(nul);
            }
            while output.last() == Some(&b'\n') {
                output.pop();
            }
            output
        };
        if self.got == Got::Double {
            self.out.current().extend_from_slice(&output);
        } else {
            self.emit(&output, Split::Yes);
        }
    }

    /// Adds an expansion result: split into words when unquoted in an
    /// action line, else copied whole.
    fn emit(&mut self, value: &[u8], split: Split) {
        if split == Split::Yes && self.mode == Mode::Words && self.got != Got::Double {
            for &b in value {
                if matches!(b, b' ' | b'\t' | b'\n') {
                    if self.got > Got::Skipping {
                        self.separate();
                        self.got = Got::Skipping;
                    }
                } else {
                    self.out.current().push(b);
                    self.got = Got::Normal;
                }
            }
        } else {
            self.out.current().extend_from_slice(value);
            if self.got <= Got::Skipping {
                self.got = Got::Normal;
            }
        }
    }

    /// A variable's value as procmail's expansion sees it: unset while a
    /// `${...}` word is skipped; a name starting with a digit is the
    /// positional parameter of that one digit.
    fn lookup(&self, name: &[u8]) -> Option<Vec<u8>> {
        if self.skip.is_some() || name.is_empty() {
            return None;
        }
        let name = if name[0].is_ascii_digit() {
            &name[..1]
        } else {
            name
        };
        self.env.get(name).map(Cow::into_owned)
    }

    fn special(&self, name: &[u8]) -> Vec<u8> {
        self.env.get(name).map(Cow::into_owned).unwrap_or_default()
    }

    fn read_name(&mut self) -> Vec<u8> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        self.raw[start..self.pos].to_vec()
    }

    fn bad_substitution(&mut self, name: &[u8]) {
        let text = format!("Bad substitution of \"{}\"", String::from_utf8_lossy(name));
        self.env.log(&text);
    }

    /// After a `$` (outside single quotes).
    fn dollar(&mut self) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        let Some(d) = self.peek() else {
            self.literal(b'$');
            return Break(());
        };
        match d {
            b'@' => {
                self.pos += 1;
                if self.got == Got::Double {
                    if self.skip.is_none()
                        && let Out::Words(w) = &self.out
                    {
                        self.all_args = Some((w.len() - 1, w[w.len() - 1].len()));
                    }
                } else {
                    // Unquoted `$@` is just `@` (checked: A=$@ gives `@`).
                    self.literal(b'@');
                }
            }
            b'{' => {
                self.pos += 1;
                self.braced();
            }
            b'$' | b'?' | b'#' | b'=' => {
                self.pos += 1;
                let value = self.special(&[d]);
                self.emit(&value, Split::No);
            }
            b'_' | b'-' => {
                self.pos += 1;
                let value = self.special(&[d]);
                self.emit(&value, Split::Yes);
            }
            b'0'..=b'9' => {
                self.pos += 1;
                let value = self.lookup(&[d]).unwrap_or_default();
                self.emit(&value, Split::Yes);
            }
            b'\\' => {
                self.pos += 1;
                if self.peek().is_some_and(is_name_byte) {
                    let name = self.read_name();
                    let value = self.lookup(&name).unwrap_or_default();
                    let escaped = regex_escape(&value);
                    self.emit(&escaped, Split::No);
                } else {
                    // `$\x`: a `$`, then `\x` read as usual.
                    self.literal(b'$');
                    match self.next() {
                        Some(e) => self.backslash(e),
                        None => return Break(()),
                    }
                }
            }
            _ if is_name_byte(d) => {
                let name = self.read_name();
                let value = self.lookup(&name).unwrap_or_default();
                self.emit(&value, Split::Yes);
            }
            // `$` before anything else is literal; the next character is
            // read as usual.
            _ => self.literal(b'$'),
        }
        Continue(())
    }

    /// After `${`.
    fn braced(&mut self) {
        let name = self.read_name();
        let after = self.next();
        // `${10}`: only single-digit positional parameters (spec §4.3).
        if name.len() > 1 && name[0].is_ascii_digit() {
            self.bad_substitution(&name);
            return;
        }
        let value = self.lookup(&name);
        let set_nonempty = value.as_ref().is_some_and(|v| !v.is_empty());
        // Some(true): the word is used; Some(false): the variable is.
        let use_word = match after {
            Some(b'}') => {
                self.emit(&value.unwrap_or_default(), Split::Yes);
                return;
            }
            Some(b':') => match self.next() {
                Some(b'-') => !set_nonempty,
                Some(b'+') => set_nonempty,
                _ => {
                    self.bad_substitution(&name);
                    return;
                }
            },
            Some(b'-') => value.is_none(),
            Some(b'+') => value.is_some(),
            // `${#}` and the like: log, and the rest stays literal
            // (checked: `${#}args` gives `}args`).
            _ => {
                self.bad_substitution(&name);
                return;
            }
        };
        if !use_word && self.skip.is_none() {
            // The word is read (for its brace level and quotes) and then
            // thrown away; `${X:+w}` with X empty substitutes nothing.
            let value = if after == Some(b':') && !set_nonempty {
                Vec::new()
            } else {
                value.unwrap_or_default()
            };
            self.skip = Some(Skip {
                level: self.bracelev,
                out: self.out.clone(),
                got: self.got,
                value,
            });
        }
        self.bracelev += 1;
    }
}

/// procmail's `alphanum`: ASCII letters, digits and `_`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An in-memory [`Env`]: variables, positional parameters, canned
    /// backquote output, and a record of what was run and logged.
    #[derive(Default)]
    struct MapEnv {
        vars: HashMap<Vec<u8>, Vec<u8>>,
        args: Vec<Vec<u8>>,
        bq: HashMap<Vec<u8>, Vec<u8>>,
        ran: Vec<Vec<u8>>,
        logs: Vec<String>,
    }

    impl MapEnv {
        fn new() -> Self {
            let mut env = MapEnv::default();
            for (k, v) in [
                ("X", "hello"),
                ("E", ""),
                ("S", "a  b\tc"),
                ("SP", " lead trail "),
                ("D", "a.b"),
                ("T", "test"),
                ("$", "4242"),
                ("?", "-15"),
                ("=", "7"),
                ("#", "2"),
                ("_", "./rc"),
                ("-", "/tmp/f1 /tmp/f2"),
                ("0", "procmail"),
            ] {
                env.vars.insert(k.into(), v.into());
            }
            env.args = vec![b"A1".to_vec(), b"B 2".to_vec()];
            env.vars.insert(b"1".to_vec(), b"A1".to_vec());
            env.vars.insert(b"2".to_vec(), b"B 2".to_vec());
            env.bq
                .insert(b"bq".to_vec(), b"line1  x\nline2\n\n\n".to_vec());
            env.bq.insert(b"empty".to_vec(), Vec::new());
            env
        }
    }

    impl Env for MapEnv {
        fn get(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
            self.vars.get(name).map(|v| Cow::Borrowed(v.as_slice()))
        }
        fn positional(&self) -> Vec<Vec<u8>> {
            self.args.clone()
        }
        fn backquote(&mut self, cmd: &[u8]) -> Vec<u8> {
            self.ran.push(cmd.to_vec());
            self.bq.get(cmd).cloned().unwrap_or_default()
        }
        fn log(&mut self, text: &str) {
            self.logs.push(text.to_string());
        }
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }

    fn got_words(raw: &str, env: &mut MapEnv) -> Vec<String> {
        expand_words(raw.as_bytes(), env)
            .iter()
            .map(|w| s(w))
            .collect()
    }

    // Every `want` in the tables below was checked against procmail
    // 3.23pre (Debian) with rcfiles of `NAME=value` + `LOG="[$NAME]"`
    // lines, and actions `| args ...` whose script logs its argv.

    #[test]
    fn assignment_values() {
        let table: &[(&str, &str)] = &[
            ("hello", "hello"),
            ("$X", "hello"),
            ("${X}x", "hellox"),
            ("'a\\b'\"c\\d\"\\e\\'f", "a\\bc\\de'f"),
            ("'$X'", "$X"),
            ("\"$X\"", "hello"),
            // Trap 4: the value is one word; reading stops at a blank...
            ("hello world", "hello"),
            ("\"hello world\"", "hello world"),
            // ...but expansions inside it are never split.
            ("vars-$S", "vars-a  b\tc"),
            ("$SP", " lead trail "),
            ("`bq`", "line1  x\nline2"),
            ("\"`bq`\"", "line1  x\nline2"),
            (" #x", ""),
            ("abc#x", "abc#x"),
            ("a\\#b", "a\\#b"),
            ("\\#b", "#b"),
            ("\"x\\#y\\n\\$\\\"\\\\\\`\"", "x\\#y\\n$\"\\`"),
            ("a\\ b", "a b"),
            ("\"a\\ b\"", "a\\ b"),
            ("a}b\\}c\"\\}\"", "a}b}c\\}"),
            ("\"\\\nx\"'\\\ny'", "x\\\ny"),
            ("x$", "x$"),
            ("$", "$"),
            ("$@", "@"),
            ("\"$@\"", ""),
            ("$.x", "$.x"),
            ("$\\E$\\UNSET$\\.x\"$\\.x\"", "()()$.x$\\.x"),
            ("$\\X.$\\S", "()hello.()a  b\tc"),
            ("$\\D", "()a\\.b"),
            ("$UNSET", ""),
            ("$$$?$=$#", "4242-1572"),
            ("$_$-", "./rc/tmp/f1 /tmp/f2"),
            ("$0$1$2$3", "procmailA1B 2"),
            ("$1x", "A1x"),
            // Trap 4 again: a blank ends the value even inside `${...}`;
            // procmail then reads ` b}` as further items.
            ("${UNSET:-a b}", "a"),
            // Where the value ends can depend on a variable (checked).
            ("${UNSET:-} b", "b"),
            ("${X:-} c", "hello"),
            ("\"\" d", ""),
            ("$\\1$\\0x${X:-\"$@\"}", "()A1()procmailhello"),
        ];
        assert_values(table);
    }

    /// Each assignment value expands to its `want`, logging nothing.
    fn assert_values(table: &[(&str, &str)]) {
        for &(raw, want) in table {
            let mut env = MapEnv::new();
            let got = expand_value(raw.as_bytes(), &mut env);
            assert_eq!(s(&got), want, "raw {raw:?}");
            assert!(env.logs.is_empty(), "raw {raw:?} logged {:?}", env.logs);
        }
    }

    #[test]
    fn value_extents() {
        let table: &[(&str, usize)] = &[
            ("hello", 5),
            ("hello world", 5),
            ("\"a b\" c", 5),
            ("'a b'x y", 6),
            ("a\\ b c", 4),
            (" #x", 1),
            ("abc#x y", 5),
            ("${UNSET:-a b}", 10),
            ("${UNSET:-} b", 12),
            ("\"a\nb\"\nc", 5),
            ("`cmd a b` c", 9),
            ("\"open", 5),
            ("", 0),
        ];
        for &(raw, want) in table {
            assert_eq!(value_extent(raw.as_bytes()), want, "raw {raw:?}");
        }
    }

    #[test]
    fn braced_forms() {
        let table: &[(&str, &str)] = &[
            (
                "${X:-w}${E:-w}${UNSET:-w}${X-w}${E-w}${UNSET-w}",
                "hellowwhellow",
            ),
            ("${X:+w}${E:+w}${UNSET:+w}${X+w}${E+w}${UNSET+w}", "www"),
            ("${UNSET:-$X}", "hello"),
            ("${UNSET:-${E:-${X}}}", "hello"),
            ("${X:-$UNSET}", "hello"),
            (
                "${UNSET:-a\\}b}${UNSET:-\"a\\}b\"}\"${UNSET:-a\\}b}\"",
                "a}ba\\}ba}b",
            ),
            ("\"${UNSET:-\"q\"}\"", "\"q\""),
            ("${UNSET:-\"a b\"}", "a b"),
            ("${}", ""),
            ("${1}${0}", "A1procmail"),
        ];
        assert_values(table);
    }

    #[test]
    fn bad_substitutions_log_and_leave_the_rest() {
        // Checked: `${#}args` logs `Bad substitution of ""` and gives `}args`;
        // `${10}` and `${1x}` swallow their closing brace.
        let table: &[(&str, &str, &str)] = &[
            ("${#}args", "}args", "Bad substitution of \"\""),
            ("${10}x", "x", "Bad substitution of \"10\""),
            ("${1x}y", "y", "Bad substitution of \"1x\""),
            ("${X:x}y", "}y", "Bad substitution of \"X\""),
            ("${X", "", "Bad substitution of \"X\""),
        ];
        for &(raw, want, log) in table {
            let mut env = MapEnv::new();
            let got = expand_value(raw.as_bytes(), &mut env);
            assert_eq!(s(&got), want, "raw {raw:?}");
            assert_eq!(env.logs, vec![log.to_string()], "raw {raw:?}");
        }
    }

    #[test]
    fn skipped_alternative_runs_no_backquote() {
        // Checked: only `run` was executed.
        let mut env = MapEnv::new();
        let got = expand_value(b"${X:-`skipped`}${E:-`run`}", &mut env);
        assert_eq!(s(&got), "hello");
        assert_eq!(env.ran, vec![b"run".to_vec()]);
    }

    #[test]
    fn action_words() {
        let table: &[(&str, &[&str])] = &[
            // Trap 4: in action lines, unquoted expansions are split.
            (
                "args a$S \"b$S\" 'c $X' \\$X d\\ e \\\"q\\\" \"\\n\\t\\$\"",
                &[
                    "args", "aa", "b", "c", "ba  b\tc", "c $X", "$X", "d e", "\"q\"", "\\n\\t$",
                ],
            ),
            ("args $SP x", &["args", "lead", "trail", "x"]),
            ("args x$SP", &["args", "x", "lead", "trail"]),
            (
                "args `bq` \"`bq`\"",
                &["args", "line1", "x", "line2", "line1  x\nline2"],
            ),
            (
                "args ${X:-a b} ${E:-a b} ${UNSET:-\"a b\"} \"${E:-\"q\"}\" ${X:+$S}",
                &["args", "hello", "a", "b", "a b", "\"q\"", "a", "b", "c"],
            ),
            ("args $E \"\" $E$E '' w$E", &["args", "", "", "w"]),
            ("args $E", &["args"]),
            ("args $2", &["args", "B", "2"]),
            ("args ${10} ${1x} $1x", &["args", "A1x"]),
            (
                "$$ $# $= $_ $-",
                &["4242", "2", "7", "./rc", "/tmp/f1", "/tmp/f2"],
            ),
            ("a #comment", &["a"]),
            ("", &[""]),
            ("  ", &[""]),
            ("$E", &[""]),
            ("a ", &["a"]),
            ("args `empty` x`empty`y $3 \"`empty`\"", &["args", "xy", ""]),
            (
                "args ${X:-a b}c ${UNSET:-a b}c",
                &["args", "helloc", "a", "bc"],
            ),
            (
                "args $- \"$-\"",
                &["args", "/tmp/f1", "/tmp/f2", "/tmp/f1 /tmp/f2"],
            ),
        ];
        for &(raw, want) in table {
            let mut env = MapEnv::new();
            let got = got_words(raw, &mut env);
            assert_eq!(got, words(want), "raw {raw:?}");
        }
    }

    #[test]
    fn dollar_at() {
        // Checked with `procmail -m rc A1 "B 2"` and with no arguments.
        let table: &[(&str, &[&str], &[&str])] = &[
            ("args \"$@\"", &["args", "A1", "B 2"], &["args", ""]),
            ("args x\"$@\"", &["args", "A1", "B 2"], &["args", "x"]),
            ("args x\"$@\"y", &["args", "xy"], &["args", "xy"]),
            ("args \"$@\"y", &["args", "y"], &["args", "y"]),
            (
                "args \"$@\" z",
                &["args", "A1", "B 2", "z"],
                &["args", "", "z"],
            ),
            ("args $@", &["args", "@"], &["args", "@"]),
            // Only the word read in full marks "$@"; a skipped one does not.
            (
                "args ${X:+\"$@\"} ${UNSET:+\"$@\"}",
                &["args", "A1", "B 2"],
                &["args", ""],
            ),
            ("args ${X:-\"$@\"}", &["args", "hello"], &["args", "hello"]),
        ];
        for &(raw, with_args, without) in table {
            let mut env = MapEnv::new();
            assert_eq!(got_words(raw, &mut env), words(with_args), "raw {raw:?}");
            env.args.clear();
            assert_eq!(got_words(raw, &mut env), words(without), "raw {raw:?}");
        }
    }

    #[test]
    fn folders_ignore_dollar_at() {
        // Checked: folder `f1"$@"` delivers to f1, `"$@"` to "".
        let mut env = MapEnv::new();
        let got = expand_folders(b"f1\"$@\"", &mut env);
        assert_eq!(got, vec![b"f1".to_vec()]);
        let got = expand_folders(b"\"$@\"", &mut env);
        assert_eq!(got, vec![Vec::<u8>::new()]);
        let got = expand_folders(b"a/. b $S", &mut env);
        assert_eq!(
            got,
            vec![
                b"a/.".to_vec(),
                b"b".to_vec(),
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec()
            ]
        );
    }

    #[test]
    fn backquote_unescaping() {
        // Checked: `A=\`args \"a\" 'b c' \\x \$X \q $X\`` runs
        // args ["a"] [b c] [x] [hello] [q] [hello], i.e. the command text
        // below after procmail's second reading.
        let table: &[(&str, &str)] = &[
            (
                "`args \\\"a\\\" 'b c' \\\\x \\$X \\q $X`",
                "args \\\"a\\\" 'b c' \\x $X \\q $X",
            ),
            (
                "\"`args \\\"a\\\" \\\\x \\$X \\q`\"",
                "args \"a\" \\x $X \\q",
            ),
            ("`a\\\nb`", "ab"),
            // A `"` ends a backquote inside double quotes...
            ("\"a`cmd\"b c\"", "cmd"),
            // ...but not outside.
            ("`cmd\"x\"`", "cmd\"x\""),
        ];
        for &(raw, want) in table {
            let mut env = MapEnv::new();
            expand_value(raw.as_bytes(), &mut env);
            assert_eq!(env.ran, vec![want.as_bytes().to_vec()], "raw {raw:?}");
        }
        // Checked: B="a`args 1"b c" sets B to `ab c` (the quote stays open).
        let mut env = MapEnv::new();
        assert_eq!(s(&expand_value(b"\"a`cmd\"b c\"", &mut env)), "ab c");
    }

    #[test]
    fn dquoted_conditions() {
        // Checked with VERBOSE=on: procmail logs the expanded condition.
        let table: &[(&str, &str)] = &[
            (
                " ${X}\" 'y'  $S\"  \\z 'q  r' \\\"",
                " hello y a  b\tc  \\z 'q  r' \"",
            ),
            (" a`bq`b", " aline1  x\nline2b"),
            (" \"$@\"<$#>$\\X", " @<2>()hello"),
            (" ${X:-\"in\"} ${E:-\"in\"}", " hello \"in\""),
            (" #foo", " #foo"),
            (" \" #foo", "  "),
            (" x\\\n  y", " x  y"),
        ];
        for &(raw, want) in table {
            let mut env = MapEnv::new();
            let got = expand_dquoted(raw.as_bytes(), &mut env);
            assert_eq!(s(&got), want, "raw {raw:?}");
        }
    }

    #[test]
    fn spaced_size_conditions() {
        // Checked: `* < $S 100 $E` logs `Skipped "a  b\tc 100 "`.
        let mut env = MapEnv::new();
        let got = expand_spaced(b"< $S 100 $E", &mut env);
        assert_eq!(s(&got), "< a  b\tc 100 ");
        let got = expand_spaced(b"<   $X  #x", &mut env);
        assert_eq!(s(&got), "< hello ");
    }

    #[test]
    fn shell_decision() {
        let metas = b"&|<>~;?*[";
        let table: &[(&str, bool)] = &[
            ("/bin/cat", false),
            (" cat > f", true),
            ("echo $?", true),
            ("test -f x", true),
            (" test", true),
            ("testx -f", false),
            ("cat `date`", false),
        ];
        for &(cmd, want) in table {
            assert_eq!(needs_shell(cmd.as_bytes(), metas), want, "cmd {cmd:?}");
        }
        assert!(!needs_shell(b"cat > f", b""));
    }

    #[test]
    fn prepare_command_expands_or_defers() {
        let metas = b"&|<>~;?*[";
        let mut env = MapEnv::new();
        let table: &[(&str, Command)] = &[
            (
                " args $S \"$@\"",
                Command::Argv(vec![
                    b"args".to_vec(),
                    b"a".to_vec(),
                    b"b".to_vec(),
                    b"c".to_vec(),
                    b"A1".to_vec(),
                    b"B 2".to_vec(),
                ]),
            ),
            (" cat >> $X", Command::Shell(b" cat >> $X".to_vec())),
            // A first word that expands to `test` goes to the shell too
            // (checked: `\`$T -n x\`` with T=test runs the shell's test).
            ("$T -n x", Command::Shell(b"$T -n x".to_vec())),
            ("\"test\" 1", Command::Shell(b"\"test\" 1".to_vec())),
        ];
        for (cmd, want) in table {
            let got = prepare_command(cmd.as_bytes(), metas, &mut env);
            assert_eq!(&got, want, "cmd {cmd:?}");
        }
    }

    #[test]
    fn blank_splitting() {
        let got = split_blanks(b" -oi\t-odq\n\n x\x0b ");
        assert_eq!(
            got,
            vec![b"-oi".to_vec(), b"-odq".to_vec(), b"x\x0b".to_vec()]
        );
        assert!(split_blanks(b"  ").is_empty());
    }

    #[test]
    fn escaping_for_regexps() {
        let table: &[(&[u8], &[u8])] = &[
            (b"a.b", b"()a\\.b"),
            (b"", b"()"),
            (
                b"(|)*?+.^$[\\]{} x",
                b"()\\(\\|\\)\\*\\?\\+\\.\\^\\$\\[\\\\]{} x",
            ),
        ];
        for &(value, want) in table {
            assert_eq!(regex_escape(value), want);
        }
    }

    #[test]
    fn booleans_and_numbers() {
        // Checked through EXITCODE (with DEFAULT=/dev/null): foo -> 0,
        // yes -> 1, all -> 2, " 12abc" -> 12, On -> 1, off -> 0, +7 -> 7,
        // and maybe / x keep the old value (EXITCODE unused, exit 0).
        let table: &[(&str, i64, i64)] = &[
            ("0", 1, 0),
            ("1", 0, 1),
            ("-3", 0, -3),
            (" 12abc", 0, 12),
            ("+7", 0, 7),
            ("yes", 0, 1),
            ("True", 0, 1),
            ("on", 0, 1),
            ("e", 0, 1),
            ("off", 1, 0),
            ("No", 1, 0),
            ("false", 1, 0),
            ("delete", 1, 0),
            ("all", 0, 2),
            ("  \tAll", 0, 2),
            ("o", 5, 5),
            ("foo", 0, 0),
            ("bar", 9, 9),
            ("", 4, 4),
            ("-", 4, 4),
            ("99999999999999999999999", 0, i64::MAX),
        ];
        for &(value, old, want) in table {
            assert_eq!(parse_num(value.as_bytes(), old), want, "value {value:?}");
        }
        assert!(parse_bool(b"yes", false));
        assert!(!parse_bool(b"off", true));
        assert!(parse_bool(b"maybe", true));
        assert!(!parse_bool(b"maybe", false));
    }

    /// Cases for the differential test: no backquotes, `$$` or `$_`
    /// (those differ between runs), no shell metacharacters in `WORDS`.
    const VALUES: &[&str] = &[
        "hello",
        "$X${X}x'$X'\"$X\"",
        "'a\\b'\"c\\d\"\\e\\'f",
        "hello world",
        "vars-$S",
        "$SP",
        "abc#x",
        " #x",
        "a\\#b",
        "\\#b",
        "\"x\\#y\\n\\$\\\"\\\\\\`\"",
        "a\\ b\"a\\ b\"",
        "a}b\\}c\"\\}\"",
        "\"\\\nx\"'\\\ny'",
        "x$",
        "$@\"$@\"$.x$\\.x\"$\\.x\"",
        "$\\E$\\UNSET$\\X.$\\S$\\D",
        "$?$=$#$-$0$1$2$3$1x$\\1$\\0x",
        "${X:-w}${E:-w}${UNSET:-w}${X-w}${E-w}${UNSET-w}",
        "${X:+w}${E:+w}${UNSET:+w}${X+w}${E+w}${UNSET+w}",
        "${UNSET:-${E:-${X}}}${X:-$UNSET}${}${1}${0}",
        "${UNSET:-a\\}b}${UNSET:-\"a\\}b\"}\"${UNSET:-a\\}b}\"",
        "\"${UNSET:-\"q\"}\"${UNSET:-\"a b\"}",
        "${#}args",
        "${10}x${1x}y",
        "${X:x}y",
        "${UNSET:-} b",
        "${X:-} c",
        "\"\" d",
    ];

    const WORDS: &[&str] = &[
        "a$S \"b$S\" 'c $X' \\$X d\\ e \\\"q\\\" \"\\n\\t\\$\"",
        "$SP x x$SP",
        "${X:-a b} ${E:-a b} ${UNSET:-\"a b\"} \"${E:-\"q\"}\" ${X:+$S}",
        "$E \"\" $E$E '' w$E",
        "$E",
        "$2 ${10} ${1x} $1x $# $= $0",
        "\"$@\"",
        "x\"$@\"",
        "x\"$@\"y",
        "\"$@\"y",
        "\"$@\" z $@",
        "${X:+\"$@\"} ${UNSET:+\"$@\"}",
        "${X:-a b}c ${UNSET:-a b}c",
        "a #comment",
    ];

    /// `$` conditions (the text after the `$`); none may expand to text
    /// that starts with a condition prefix (`!`, `?`, `<`, a weight).
    const DQUOTED: &[&str] = &[
        " ${X}\" 'y'  $S\"  \\z 'q  r' \\\"",
        " \"$@\"<$#>$\\X",
        " ${X:-\"in\"} ${E:-\"in\"}",
        " #foo",
        " \" #foo",
        " $S$SP'x'",
        " 'a  b' \"c  d\"",
        "x$ $1 \"$1\" $2",
    ];

    /// Runs the real procmail (when installed) over `VALUES` and `WORDS`
    /// and compares every result with ours.
    #[test]
    fn differential_against_procmail() {
        let procmail = std::path::Path::new("/usr/bin/procmail");
        if !procmail.exists() {
            eprintln!("skipped: no /usr/bin/procmail");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let args = d.join("args");
        let out = d.join("out");
        std::fs::write(
            &args,
            format!(
                "#!/bin/sh\nfor a; do printf '%s\\036' \"$a\"; done >> '{}'\nprintf '\\037' >> '{}'\n",
                out.display(),
                out.display()
            ),
        )
        .expect("write args script");
        std::fs::set_permissions(&args, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod args script");
        let mut rc = format!(
            "LOGFILE={}/log\nX=hello\nE=\nS=\"a  b\tc\"\nSP=\" lead trail \"\nD=a.b\n",
            d.display()
        );
        for v in VALUES {
            rc.push_str(&format!("V=\nV={v}\nLOG=\"[[$V]]\n\"\n"));
        }
        rc.push_str("VERBOSE=on\n");
        for c in DQUOTED {
            rc.push_str(&format!(":0\n* ${c}\n{{ }}\n"));
        }
        rc.push_str("VERBOSE=off\n");
        for w in WORDS {
            rc.push_str(&format!(":0 wc\n| {} {w}\n", args.display()));
        }
        std::fs::write(d.join("rc"), &rc).expect("write rcfile");
        let status = std::process::Command::new(procmail)
            .current_dir(d)
            .args(["-m", "./rc", "A1", "B 2"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(b"From: a@b\nSubject: hi\n\nbody\n")?;
                child.wait()
            })
            .expect("run procmail");
        assert!(status.code().is_some(), "procmail killed");

        let mut env = MapEnv::new();
        for k in ["$", "_", "-"] {
            env.vars.remove(k.as_bytes());
        }
        env.vars.insert(b"?".to_vec(), b"0".to_vec());
        env.vars.insert(b"=".to_vec(), b"0".to_vec());
        env.vars
            .insert(b"0".to_vec(), b"/usr/bin/procmail".to_vec());

        let log = std::fs::read(d.join("log")).expect("read log");
        let mut rest = log.as_slice();
        let mut procmail_values = Vec::new();
        while let Some(start) = rest.windows(2).position(|w| w == b"[[") {
            let after = &rest[start + 2..];
            let end = after
                .windows(3)
                .position(|w| w == b"]]\n")
                .expect("log value end");
            procmail_values.push(after[..end].to_vec());
            rest = &after[end + 3..];
        }
        assert_eq!(procmail_values.len(), VALUES.len(), "log: {}", s(&log));
        for (raw, want) in VALUES.iter().zip(&procmail_values) {
            let got = expand_value(raw.as_bytes(), &mut env);
            assert_eq!(s(&got), s(want), "value {raw:?}");
        }

        let want_logs: Vec<String> = s(&log)
            .lines()
            .filter_map(|l| l.strip_prefix("procmail: Bad substitution"))
            .map(|l| format!("Bad substitution{l}"))
            .collect();

        let mut conds = Vec::new();
        let mut rest = log.as_slice();
        while let Some(start) = rest.windows(9).position(|w| w == b"atch on \"") {
            let after = &rest[start + 9..];
            let end = after
                .windows(2)
                .position(|w| w == b"\"\n")
                .expect("log condition end");
            conds.push(after[..end].to_vec());
            rest = &after[end + 2..];
        }
        assert_eq!(conds.len(), DQUOTED.len(), "log: {}", s(&log));
        for (raw, want) in DQUOTED.iter().zip(&conds) {
            let got = expand_dquoted(raw.as_bytes(), &mut env);
            let start = got
                .iter()
                .position(|&b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(got.len());
            assert_eq!(s(&got[start..]), s(want), "condition {raw:?}");
        }

        let argv = std::fs::read(&out).expect("read argv record");
        let calls: Vec<&[u8]> = argv.split(|&b| b == 0o37).collect();
        assert_eq!(calls.len(), WORDS.len() + 1, "argv: {}", s(&argv));
        for (raw, call) in WORDS.iter().zip(calls) {
            let want: Vec<String> = call
                .split(|&b| b == 0o36)
                .map(s)
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, init)| init.to_vec())
                .unwrap_or_default();
            let got = got_words(&format!("args {raw}"), &mut env);
            assert_eq!(got[1..].to_vec(), want, "words {raw:?}");
        }
        assert_eq!(env.logs, want_logs);
        assert!(!want_logs.is_empty());
    }
}
