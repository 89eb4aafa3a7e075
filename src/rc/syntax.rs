//! rcfile text → [`Rcfile`] (procmailrc(5); spec §4, §5, §6, §17 trap 4).
//!
//! The only file that names pest's `Rule`: the grammar
//! (`grammar/procmailrc.pest`) owns the lexical pieces (words, quotes,
//! comments, continued lines) and this file walks the rcfile item by item
//! the way procmail's main loop reads it, turning pest pairs into the owned
//! AST with byte spans into the original text.
//!
//! `deliver` parses the rcfile once a message, and pest costs hundreds of
//! instructions a byte. So lines are matched first by `quick`, a
//! hand-written mirror of the rules involved that gives pest's very
//! pairs; only what it leaves (a quote the end of the file cuts off, a
//! backslash at the end of the file) goes to pest. The grammar stays the
//! one definition of the syntax: the tests compare the two at every
//! offset of every rcfile the project has.
//!
//! procmail never rejects an rcfile: it complains about a piece when it
//! reaches it and goes on. So [`parse`] never fails either. Each complaint
//! becomes an [`Item::Invalid`] (or, at the top level, an [`Item::Abort`]
//! when the file ends inside a recipe) placed where procmail logs it, plus
//! a [`Diagnostic`] for `postroom check`. This module never expands
//! variables, runs programs or touches files.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};

use pest::Parser as _;
use pest::iterators::Pair;

use crate::diag::{Diagnostic, Span};
use crate::rc::ast::{Action, Cond, Flags, Item, Lock, Rcfile, Recipe};
use crate::rc::cond;

mod grammar {
    //! The pest parser generated from `grammar/procmailrc.pest`; its `///`
    //! comments document each `Rule`. Private: only this file names them.

    /// The parser for the rcfile's lexical pieces.
    #[derive(pest_derive::Parser)]
    #[grammar = "../grammar/procmailrc.pest"]
    pub struct RcParser;
}

use grammar::{RcParser, Rule};

/// Parses one rcfile. `file` is the name shown in diagnostics.
///
/// Never fails: problems become [`Item::Invalid`]/[`Item::Abort`] items
/// where procmail would log them, and diagnostics. Inside a block the end
/// of the file gives an `Invalid` item rather than an `Abort` (nothing can
/// follow it anyway), so that the "Missing closing brace" item that ends
/// the outermost unclosed block is still reached when the block is entered.
pub fn parse(file: &str, src: &[u8]) -> (Rcfile, Vec<Diagnostic>) {
    parse_with(file, src, true)
}

/// [`parse`], with or without the fast path (see [`quick`]); the tests
/// parse both ways and compare.
fn parse_with(file: &str, src: &[u8], fast: bool) -> (Rcfile, Vec<Diagnostic>) {
    let mut reader = Reader {
        file,
        src,
        shadow: OnceCell::new(),
        fast,
        spare: Cell::new(Vec::new()),
        pos: 0,
        diags: Vec::new(),
    };
    let items = reader.items();
    (Rcfile { items }, reader.diags)
}

/// One pest pair with absolute offsets, in a [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tok {
    rule: Rule,
    start: usize,
    end: usize,
    /// How many pairs inside it follow it in the tree.
    inner: usize,
}

/// One match: its pairs in source order, each followed by the pairs inside
/// it (pest's own queue, flattened). One allocation however many pairs.
#[derive(Debug, PartialEq)]
struct Tree(Vec<Tok>);

impl Tree {
    fn from_pair(pair: Pair<'_, Rule>, base: usize) -> Tree {
        fn push(pair: Pair<'_, Rule>, base: usize, out: &mut Vec<Tok>) {
            let span = pair.as_span();
            let at = out.len();
            out.push(Tok {
                rule: pair.as_rule(),
                start: base + span.start(),
                end: base + span.end(),
                inner: 0,
            });
            for p in pair.into_inner() {
                push(p, base, out);
            }
            out[at].inner = out.len() - at - 1;
        }
        let mut out = Vec::new();
        push(pair, base, &mut out);
        Tree(out)
    }

    fn root(&self) -> Node<'_> {
        Node::at(&self.0)
    }
}

/// A pair of a [`Tree`] and the pairs inside it.
#[derive(Clone, Copy)]
struct Node<'t> {
    rule: Rule,
    start: usize,
    end: usize,
    /// The pairs inside it, flattened.
    inner: &'t [Tok],
}

impl<'t> Node<'t> {
    /// The pair that starts `toks`.
    fn at(toks: &'t [Tok]) -> Node<'t> {
        let t = toks[0];
        Node {
            rule: t.rule,
            start: t.start,
            end: t.end,
            inner: &toks[1..=t.inner],
        }
    }

    /// The pairs directly inside it, in source order.
    fn kids(&self) -> impl Iterator<Item = Node<'t>> + use<'t> {
        let mut rest = self.inner;
        std::iter::from_fn(move || {
            let kid = Node::at(rest.first().map(|_| rest)?);
            rest = &rest[1 + kid.inner.len()..];
            Some(kid)
        })
    }

    /// Every descendant with `rule`, in source order (not those inside
    /// one that has it).
    fn find(&self, rule: Rule, out: &mut Vec<Span>) {
        for kid in self.kids() {
            if kid.rule == rule {
                out.push(Span::new(kid.start, kid.end));
            } else {
                kid.find(rule, out);
            }
        }
    }

    fn has(&self, rule: Rule) -> bool {
        self.inner.iter().any(|t| t.rule == rule)
    }
}

/// A quote the end of the file cut off.
struct Open {
    /// Offset of the opening quote (or of the lone backslash).
    at: usize,
    /// The diagnostic's message.
    message: &'static str,
    /// What procmail does about it.
    note: &'static str,
}

/// The note for a quote left open at the end of the file.
const READS_TO_EOF: &str =
    "procmail reads the rest of the file into it and logs \"Unexpected EOL\"";

/// One word as procmail's `readparse` splits a line. Most words are one
/// `plain` piece: their texts borrow the source.
struct Word<'a> {
    span: Span,
    /// The source text with backslash-newlines removed (outside single
    /// quotes) and a missing closing quote added.
    raw: Cow<'a, [u8]>,
    /// The text with quotes and backslashes removed, `$` and backquotes
    /// left alone (used for recipe flags, which procmail reads after
    /// expansion). Only recipe headers need it: empty elsewhere for words
    /// of more than one piece.
    text: Cow<'a, [u8]>,
    /// Source offset of each byte of `text`; `None` when `text` is the
    /// source from `span.start` on.
    at: Option<Vec<usize>>,
    open: Option<Open>,
}

impl Word<'_> {
    /// The source offset of byte `j` of `text`.
    fn at(&self, j: usize) -> usize {
        self.at.as_ref().map_or(self.span.start + j, |at| at[j])
    }
}

/// A word of more than one piece, as it is put together.
struct Pieces {
    raw: Vec<u8>,
    text: Vec<u8>,
    at: Vec<usize>,
    /// Whether `text` and `at` are wanted (see [`Word::text`]).
    with_text: bool,
    open: Option<Open>,
}

/// The words of one logical line.
struct Line<'a> {
    words: Vec<Word<'a>>,
    /// Offset of the newline that ended the line (or of the end of file).
    end: usize,
}

/// What procmail made of a recipe header `:N flags : lockfile`.
struct Header {
    nrcond: Option<i64>,
    flags: Flags,
    lock: Option<Lock>,
    /// Leftover text procmail logs as `Skipped "..."`.
    skipped: Option<String>,
}

/// How deep blocks may nest (see `Reader::items`).
pub const MAX_DEPTH: usize = 1000;

/// A recipe whose action is a block still being read.
struct Pending {
    flags: Flags,
    bad_flags: Vec<String>,
    lock: Option<Lock>,
    conds: Vec<Cond>,
    span: Span,
    /// Offset of the block's `{`.
    brace: usize,
}

/// The items of the file or of one open block.
struct Frame {
    items: Vec<Item>,
    /// The recipe the block belongs to (`None` for the file itself).
    pending: Option<Pending>,
}

/// What the action line turned out to be.
enum Parsed {
    Action(Action),
    /// `{` and a blank: a block starts; its items follow as items.
    Block(usize),
    /// The end of the file.
    Eof,
}

/// Ends the innermost open block: its recipe joins the enclosing items.
fn close(stack: &mut Vec<Frame>) {
    let frame = stack.pop().expect("a block is open");
    let p = frame.pending.expect("a block has its recipe");
    let parent = stack.last_mut().expect("the file's frame stays");
    parent.items.push(Item::Recipe(Recipe {
        flags: p.flags,
        bad_flags: p.bad_flags,
        lock: p.lock,
        conds: p.conds,
        action: Action::Block(frame.items),
        span: p.span,
    }));
}

struct Reader<'a> {
    file: &'a str,
    src: &'a [u8],
    /// What pest reads: `src` with every byte >= 0x80 turned into DEL
    /// (pest reads `&str`; mail is bytes). Same length, so offsets carry
    /// over, and no rule gives DEL a meaning. Made the first time pest
    /// runs, which for most rcfiles is never.
    shadow: OnceCell<String>,
    /// Whether [`quick`] may answer before pest.
    fast: bool,
    /// Storage for [`quick`]'s next tree (see [`Reader::recycle`]).
    spare: Cell<Vec<Tok>>,
    pos: usize,
    diags: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    /// Matches `rule` at offset `at`: what [`quick`] says, else pest.
    /// Give the tree back with [`Reader::recycle`] when done with it.
    fn run(&self, rule: Rule, at: usize) -> Option<Tree> {
        if self.fast {
            match quick(self.src, rule, at, self.spare.take()) {
                Ok(found) => return found,
                Err(spare) => self.spare.set(spare),
            }
        }
        self.run_pest(rule, at)
    }

    /// Keeps a tree's storage for the next match (one allocation for the
    /// whole file rather than one a line).
    fn recycle(&self, tree: Tree) {
        self.spare.set(tree.0);
    }

    /// Matches `rule` at offset `at` with pest.
    ///
    /// pest indexes the lines of all the input it is given, so giving it
    /// the rest of the file each time would make parsing quadratic. It gets
    /// a window of two lines instead, doubled while the match reaches the
    /// window's end (only there can the rest of the file change it).
    /// No match is final: of the rules used here only `name` can fail,
    /// and whether it matches depends on its first byte.
    fn run_pest(&self, rule: Rule, at: usize) -> Option<Tree> {
        let shadow = self.shadow.get_or_init(|| {
            let ascii = self.src.iter().map(|&b| b.min(0x7f)).collect();
            String::from_utf8(ascii).expect("bytes below 0x80 are UTF-8")
        });
        let rest = &shadow[at..];
        let line_end = |from: usize| rest[from..].find('\n').map_or(rest.len(), |n| from + n + 1);
        let mut window = line_end(line_end(0));
        loop {
            let found = RcParser::parse(rule, &rest[..window])
                .ok()
                .and_then(|mut pairs| pairs.next())
                .map(|p| Tree::from_pair(p, at));
            match found {
                Some(tree) if tree.root().end == at + window && window < rest.len() => {
                    window = (window * 2).min(rest.len());
                }
                found => return found,
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn error(&mut self, span: Span, message: impl Into<String>, note: impl Into<String>) {
        let d = Diagnostic::error(self.file, span, message).with_note(note);
        self.diags.push(d);
    }

    fn warning(&mut self, span: Span, message: impl Into<String>, note: impl Into<String>) {
        let d = Diagnostic::warning(self.file, span, message).with_note(note);
        self.diags.push(d);
    }

    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Moves past the next newline (or to the end of the file).
    fn skip_line(&mut self) {
        match self.src[self.pos..].iter().position(|&b| b == b'\n') {
            Some(n) => self.pos += n + 1,
            None => self.pos = self.src.len(),
        }
    }

    /// Blank lines, indentation and comment lines between items (procmail's
    /// `commint` loop).
    fn skip_to_item(&mut self) {
        loop {
            while let Some(b' ' | b'\t' | b'\n') = self.peek() {
                self.pos += 1;
            }
            if self.peek() != Some(b'#') {
                return;
            }
            self.skip_line();
        }
    }

    /// The end of a variable name starting at `at`, if one does.
    fn name_end(&self, at: usize) -> Option<usize> {
        if self.fast {
            return quick_name(self.src, at);
        }
        self.run(Rule::name, at).map(|t| t.root().end)
    }

    /// Whether only blanks stand between the start of its line and `at`.
    fn first_on_line(&self, at: usize) -> bool {
        self.src[..at]
            .iter()
            .rev()
            .take_while(|&&b| b != b'\n')
            .all(|&b| b == b' ' || b == b'\t')
    }

    /// Source bytes as text for a log line (lossy, control characters kept).
    fn lossy(&self, from: usize, to: usize) -> String {
        String::from_utf8_lossy(&self.src[from..to]).into_owned()
    }

    /// Source bytes `from..to` without the ranges in `cut` (sorted).
    fn bytes_without(&self, from: usize, to: usize, cut: &[Span]) -> Vec<u8> {
        let mut out = Vec::with_capacity(to - from);
        let mut p = from;
        for c in cut {
            out.extend_from_slice(&self.src[p..c.start]);
            p = c.end;
        }
        out.extend_from_slice(&self.src[p..to]);
        out
    }

    /// Source bytes of `node` without its backslash-newlines.
    fn joined(&self, node: &Node) -> Vec<u8> {
        let mut cut = Vec::new();
        node.find(Rule::continuation, &mut cut);
        self.bytes_without(node.start, node.end, &cut)
    }

    // ---- the item loop -------------------------------------------------

    /// All items of the file. Blocks are kept on an explicit stack rather
    /// than by recursion, so that deep nesting cannot overflow the stack
    /// while parsing; [`MAX_DEPTH`] bounds the tree for its later walks.
    fn items(&mut self) -> Vec<Item> {
        let mut stack = vec![Frame {
            items: Vec::new(),
            pending: None,
        }];
        loop {
            self.skip_to_item();
            let depth = stack.len() - 1;
            let too_deep = stack.len() > MAX_DEPTH;
            let top = stack.last_mut().expect("the file's frame stays");
            let Some(b) = self.peek() else {
                break;
            };
            match b {
                b':' => {
                    let Some(pending) = self.recipe(&mut top.items, depth) else {
                        continue;
                    };
                    if too_deep {
                        // Deviation: procmail nests without limit, but a
                        // tree this deep would overflow the stack when it
                        // is dropped or walked. Stop reading here, as if
                        // the file ended (so DEFAULT still gets the mail).
                        let at = Span::new(pending.brace, pending.brace + 1);
                        top.items.push(Item::Invalid {
                            log: "Nesting too deep".into(),
                            span: at,
                        });
                        self.error(
                            at,
                            format!("blocks nested more than {MAX_DEPTH} deep"),
                            "postroom stops reading the rcfile here",
                        );
                        self.pos = self.src.len();
                        continue;
                    }
                    stack.push(Frame {
                        items: Vec::new(),
                        pending: Some(pending),
                    });
                }
                b'}' => {
                    let span = Span::new(self.pos, self.pos + 1);
                    self.pos += 1;
                    if depth > 0 {
                        close(&mut stack);
                        continue;
                    }
                    // procmailrc(5): braces must balance; procmail logs
                    // this and ignores the brace (spec §4.7, checked).
                    top.items.push(Item::Invalid {
                        log: "Closing brace unexpected".into(),
                        span,
                    });
                    self.error(
                        span,
                        "unexpected closing brace",
                        "no block is open here; procmail logs \"Closing brace unexpected\" and ignores it",
                    );
                }
                _ => self.assignment(&mut top.items),
            }
        }
        // The end of the file inside blocks.
        while stack.len() > 1 {
            let outermost = stack.len() == 2;
            let frame = stack.last_mut().expect("checked above");
            let brace = frame.pending.as_ref().map_or(0, |p| p.brace);
            self.error(
                Span::new(brace, brace + 1),
                "unclosed block",
                "the file ends inside this block; procmail logs \"Missing closing brace\" if it entered it",
            );
            if outermost {
                // One message however many blocks are open, and only when
                // the outermost was entered (procmail's `poprc`).
                let end = self.src.len();
                frame.items.push(Item::Invalid {
                    log: "Missing closing brace".into(),
                    span: Span::new(end, end),
                });
            }
            close(&mut stack);
        }
        stack.pop().map(|f| f.items).unwrap_or_default()
    }

    /// `NAME=value`, a bare `NAME` (unset), or junk (spec §4.1, §4.2).
    fn assignment(&mut self, items: &mut Vec<Item>) {
        let start = self.pos;
        let end = self.name_end(start);
        // procmail's `gobenv`: a name counts only when a blank, a newline
        // or `=` follows it (not the end of the file).
        let follows = end.and_then(|e| self.src.get(e).copied());
        match (end, follows) {
            (Some(e), Some(b' ' | b'\t' | b'\n' | b'=')) => {
                let name = self.lossy(start, e);
                self.pos = e;
                self.skip_blanks();
                if self.peek() != Some(b'=') {
                    let span = Span::new(start, e);
                    if !self.first_on_line(start) {
                        self.warning(
                            span,
                            format!("`{name}` unsets the variable `{name}`"),
                            "an assignment's value ends at the first unquoted blank and the rest of the line is read as more items; quote the value to keep blanks",
                        );
                    }
                    items.push(Item::Assign {
                        name,
                        value: None,
                        span,
                    });
                    return;
                }
                self.pos += 1;
                let after_eq = self.pos;
                let tree = self
                    .run(Rule::assign_value, after_eq)
                    .expect("assign_value matches anywhere");
                let node = tree.root();
                self.pos = node.end;
                let word = node
                    .kids()
                    .find(|k| k.rule == Rule::word)
                    .map(|k| self.word(&k, false));
                self.recycle(tree);
                let (value, end) = match word {
                    Some(w) => {
                        if let Some(open) = &w.open {
                            self.unexpected_eol(items, open);
                        }
                        (w.raw.into_owned(), w.span.end)
                    }
                    None => (Vec::new(), after_eq),
                };
                items.push(Item::Assign {
                    name,
                    value: Some(value),
                    span: Span::new(start, end),
                });
            }
            (Some(e), _) => {
                // `foo-bar`: procmail skips `foo`, then reads `-bar ...`
                // as the next item (checked: `Skipped "foo"`, `Skipped "-bar baz"`).
                self.pos = e;
                self.junk(items, start, e);
            }
            (None, _) => {
                // Not a name: procmail skips the rest of the line.
                self.skip_line();
                let end = if self.src[..self.pos].ends_with(b"\n") {
                    self.pos - 1
                } else {
                    self.pos
                };
                self.junk(items, start, end);
            }
        }
    }

    fn junk(&mut self, items: &mut Vec<Item>, start: usize, end: usize) {
        let span = Span::new(start, end);
        let text = self.lossy(start, end);
        let t = shown(&text);
        let note = if self.first_on_line(start) {
            format!("procmail logs \"Skipped \\\"{t}\\\"\" and goes on")
        } else {
            format!(
                "procmail logs \"Skipped \\\"{t}\\\"\" and goes on; an assignment's value ends at the first unquoted blank, quote it to keep blanks"
            )
        };
        items.push(Item::Invalid {
            log: format!("Skipped \"{text}\""),
            span,
        });
        self.error(
            span,
            format!("`{t}` is neither an assignment nor a recipe"),
            note,
        );
    }

    /// procmail reads an unterminated quote up to the end of the file, logs
    /// "Unexpected EOL" and goes on with what it read (checked: the
    /// assignment or delivery still happens), so the item is kept and this
    /// `Invalid` goes before it.
    fn unexpected_eol(&mut self, items: &mut Vec<Item>, open: &Open) {
        let span = Span::new(open.at, open.at + 1);
        items.push(Item::Invalid {
            log: "Unexpected EOL".into(),
            span,
        });
        self.error(span, open.message, open.note);
    }

    /// The end of the file where procmail wanted more: an `Abort` at the
    /// top level, an `Invalid` inside a block (see [`parse`]).
    fn cut_off(&self, depth: usize, log: &str, span: Span) -> Item {
        let log = log.to_string();
        if depth == 0 {
            Item::Abort { log, span }
        } else {
            Item::Invalid { log, span }
        }
    }

    // ---- words ---------------------------------------------------------

    /// The words of the line at `self.pos` (procmail's `readparse` with
    /// argument splitting), moving past its newline. `with_text`: see
    /// [`Word::text`].
    fn line(&mut self, with_text: bool) -> Line<'a> {
        let tree = self
            .run(Rule::line_words, self.pos)
            .expect("line_words matches anywhere");
        let node = tree.root();
        self.pos = node.end;
        let end = if self.src[..node.end].ends_with(b"\n") {
            node.end - 1
        } else {
            node.end
        };
        let words = node
            .kids()
            .filter(|k| k.rule == Rule::word)
            .map(|k| self.word(&k, with_text))
            .collect();
        self.recycle(tree);
        Line { words, end }
    }

    /// Reports the first unterminated quote of `line`, if any.
    fn line_eol(&mut self, items: &mut Vec<Item>, line: &Line) {
        if let Some(open) = line.words.iter().find_map(|w| w.open.as_ref()) {
            self.unexpected_eol(items, open);
        }
    }

    /// Words `from..` the end of `line` as raw text: the source with
    /// backslash-newlines removed, the comment and trailing blanks dropped.
    fn line_raw(&self, from: usize, line: &Line) -> Vec<u8> {
        let mut out = Vec::with_capacity(line.end.saturating_sub(from));
        let mut p = from;
        for w in &line.words {
            out.extend(
                self.src[p..w.span.start]
                    .iter()
                    .filter(|&&b| b == b' ' || b == b'\t'),
            );
            out.extend_from_slice(&w.raw);
            p = w.span.end;
        }
        out
    }

    /// The word `node`; `with_text`: see [`Word::text`].
    fn word(&mut self, node: &Node, with_text: bool) -> Word<'a> {
        let span = Span::new(node.start, node.end);
        let mut kids = node.kids();
        if let (Some(k), None) = (kids.next(), kids.next())
            && k.rule == Rule::plain
        {
            let src: &'a [u8] = self.src;
            let text = &src[node.start..node.end];
            return Word {
                span,
                raw: Cow::Borrowed(text),
                text: Cow::Borrowed(text),
                at: None,
                open: None,
            };
        }
        let len = node.end - node.start;
        let mut w = Pieces {
            raw: Vec::with_capacity(len + 2),
            text: Vec::with_capacity(if with_text { len } else { 0 }),
            at: Vec::with_capacity(if with_text { len } else { 0 }),
            with_text,
            open: None,
        };
        for piece in node.kids() {
            self.piece(&piece, &mut w);
        }
        Word {
            span,
            raw: Cow::Owned(w.raw),
            text: Cow::Owned(w.text),
            at: Some(w.at),
            open: w.open,
        }
    }

    fn push_text(&self, w: &mut Pieces, from: usize, to: usize) {
        if w.with_text {
            w.text.extend_from_slice(&self.src[from..to]);
            w.at.extend(from..to);
        }
    }

    /// Adds `node`'s source to `w.text`, without its backslash-newlines.
    fn push_joined(&self, w: &mut Pieces, node: &Node) {
        let mut cut = Vec::new();
        node.find(Rule::continuation, &mut cut);
        let mut p = node.start;
        for c in cut {
            self.push_text(w, p, c.start);
            p = c.end;
        }
        self.push_text(w, p, node.end);
    }

    fn piece(&mut self, k: &Node, w: &mut Pieces) {
        match k.rule {
            Rule::plain => {
                w.raw.extend_from_slice(&self.src[k.start..k.end]);
                self.push_text(w, k.start, k.end);
            }
            Rule::escape => {
                w.raw.extend_from_slice(&self.src[k.start..k.end]);
                self.push_text(w, k.start + 1, k.end);
            }
            Rule::dangling => {
                // procmail drops it (checked: `A=foo\` at the end of the
                // file assigns `foo` after "Unexpected EOL").
                w.open.get_or_insert(Open {
                    at: k.start,
                    message: "backslash at the end of the file",
                    note: "procmail drops it and logs \"Unexpected EOL\"",
                });
            }
            Rule::squote => {
                w.raw.extend_from_slice(&self.src[k.start..k.end]);
                if let Some(t) = k.kids().find(|t| t.rule == Rule::squote_text) {
                    self.push_text(w, t.start, t.end);
                }
                if k.has(Rule::unterminated) {
                    w.raw.push(b'\'');
                    w.open.get_or_insert(Open {
                        at: k.start,
                        message: "unterminated single quote",
                        note: READS_TO_EOF,
                    });
                }
            }
            Rule::dquote => {
                // A backslash at the end of the file goes, as outside
                // quotes, so that the added closing quote is not escaped.
                let mut cut = Vec::new();
                k.find(Rule::continuation, &mut cut);
                k.find(Rule::dangling, &mut cut);
                cut.sort_by_key(|c| c.start);
                w.raw.extend(self.bytes_without(k.start, k.end, &cut));
                for part in k.kids() {
                    match part.rule {
                        Rule::dq_escape => {
                            // procmailrc(5) quoting: inside double quotes a
                            // backslash escapes only `"`, `\`, `$` and `` ` ``.
                            let c = self.src[part.start + 1];
                            let from = if b"\"\\$`".contains(&c) {
                                part.start + 1
                            } else {
                                part.start
                            };
                            self.push_text(w, from, part.end);
                        }
                        Rule::continuation | Rule::unterminated | Rule::dangling => {}
                        _ => self.push_joined(w, &part),
                    }
                }
                if k.has(Rule::unterminated) {
                    let in_alt = k
                        .kids()
                        .any(|p| p.rule == Rule::dq_alt && p.has(Rule::unterminated));
                    w.raw.extend_from_slice(if in_alt { b"}\"" } else { b"\"" });
                    w.open.get_or_insert(Open {
                        at: k.start,
                        message: "unterminated double quote",
                        note: READS_TO_EOF,
                    });
                }
            }
            Rule::bquote => {
                if k.has(Rule::unterminated) {
                    // procmail says nothing: the command runs to the end of
                    // the file (checked: no log line).
                    self.warning(
                        Span::new(k.start, k.start + 1),
                        "unterminated backquote",
                        "procmail runs everything up to the end of the file as the command",
                    );
                }
                w.raw.extend(self.joined(k));
                self.push_joined(w, k);
            }
            _ => {}
        }
    }

    /// The logical line at `self.pos` as procmail's `getlline` returns it:
    /// a backslash-newline stays in the text, except that a line holding
    /// only a backslash gives just the newline (spec §4.6). Moves past the
    /// final newline and returns the text and its span.
    fn logical_line(&mut self) -> (Cow<'a, [u8]>, Span) {
        let tree = self
            .run(Rule::logical_line, self.pos)
            .expect("logical_line matches anywhere");
        let node = tree.root();
        self.pos = node.end;
        let src: &'a [u8] = self.src;
        let found = match node.kids().next().filter(|k| k.rule == Rule::line_text) {
            // No continued line: the text is the source.
            Some(k) => (
                Cow::Borrowed(&src[k.start..k.end]),
                Span::new(k.start, k.end),
            ),
            None => {
                let mut out = Vec::with_capacity(node.end - node.start);
                let mut last = node.start;
                for part in node.kids() {
                    let text = &src[part.start..part.end];
                    match part.rule {
                        Rule::cont_line => {
                            if text != b"\\" {
                                out.extend_from_slice(text);
                            }
                            out.push(b'\n');
                        }
                        _ => out.extend_from_slice(text),
                    }
                    last = part.end;
                }
                (Cow::Owned(out), Span::new(node.start, last))
            }
        };
        self.recycle(tree);
        found
    }

    // ---- recipes -------------------------------------------------------

    /// A recipe from its `:` on (spec §4.5, §4.6). Pushes the recipe, or
    /// what procmail logs instead of running it; returns the recipe when
    /// its action opens a block, whose items come next.
    fn recipe(&mut self, items: &mut Vec<Item>, depth: usize) -> Option<Pending> {
        loop {
            let colon = self.pos;
            self.pos += 1;
            let line = self.line(true);
            let span = Span::new(colon, line.end);
            self.line_eol(items, &line);
            let head = self.header(&line.words);
            let skipped_item = head.skipped.as_ref().map(|text| Item::Invalid {
                log: format!("Skipped \"{text}\""),
                span,
            });
            // procmail's `conditions()`: without a number, one old-style
            // condition line unless the recipe chains (A, a, E, e).
            let nrcond = match head.nrcond {
                Some(n) if n >= 0 => n,
                _ => {
                    let f = &head.flags;
                    i64::from(!(f.and_last || f.and_last_ok || f.else_ || f.else_failed))
                }
            };
            let (conds, missing) = self.conditions(nrcond);
            if missing {
                // An empty line, then `:`: procmail evaluates the conditions,
                // logs "Missing action" and starts over with the new recipe
                // (spec §4.6, checked); the evaluator does both.
                items.push(Item::Recipe(Recipe {
                    flags: head.flags,
                    bad_flags: head.skipped.into_iter().collect(),
                    lock: head.lock,
                    conds,
                    action: Action::Missing,
                    span,
                }));
                self.error(
                    span,
                    "missing action",
                    "an empty line ended the conditions and a new recipe starts; procmail logs \"Missing action\"",
                );
                continue;
            }
            self.skip_blanks();
            let bad_flags = head.skipped.into_iter().collect();
            match self.action(items) {
                Parsed::Action(action) => items.push(Item::Recipe(Recipe {
                    flags: head.flags,
                    bad_flags,
                    lock: head.lock,
                    conds,
                    action,
                    span,
                })),
                Parsed::Block(brace) => {
                    return Some(Pending {
                        flags: head.flags,
                        bad_flags,
                        lock: head.lock,
                        conds,
                        span,
                        brace,
                    });
                }
                Parsed::Eof => {
                    items.extend(skipped_item);
                    items.push(self.cut_off(depth, "Incomplete recipe", span));
                    self.error(
                        span,
                        "incomplete recipe",
                        "the file ends before the action; procmail logs \"Incomplete recipe\"",
                    );
                }
            }
            return None;
        }
    }

    /// `N flags : lockfile` after the `:`, as procmail's main loop reads
    /// the words of the header line.
    fn header(&mut self, words: &[Word]) -> Header {
        let mut head = Header {
            nrcond: None,
            flags: Flags::default(),
            lock: None,
            skipped: None,
        };
        let mut first = 0;
        if let Some(w) = words.first() {
            // strtol: an optional sign and digits.
            let t = &w.text;
            let sign = usize::from(matches!(t.first(), Some(b'-' | b'+')));
            let digits = t[sign..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 {
                let n = t[sign..sign + digits].iter().fold(0_i64, |n, &d| {
                    n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
                });
                head.nrcond = Some(if t[0] == b'-' { -n } else { n });
                first = sign + digits;
            }
        }
        let joined_from = |k: usize| -> String {
            let parts: Vec<String> = words[k.min(words.len())..]
                .iter()
                .map(|w| String::from_utf8_lossy(&w.text).into_owned())
                .collect();
            parts.join(" ")
        };
        for (k, w) in words.iter().enumerate() {
            let mut j = if k == 0 { first } else { 0 };
            while j < w.text.len() {
                let c = w.text[j];
                if c == b' ' || c == b'\t' || head.flags.set(c) {
                    j += 1;
                    continue;
                }
                if c == b':' {
                    // The lockfile is the rest of this word or, if the `:`
                    // ends it, the next word; what follows is skipped.
                    let next = if j + 1 < w.text.len() {
                        let from = w.at(j + 1);
                        head.lock = Some(Lock::Named(self.src[from..w.span.end].to_vec()));
                        k + 1
                    } else if let Some(name) = words.get(k + 1) {
                        head.lock = Some(Lock::Named(name.raw.to_vec()));
                        k + 2
                    } else {
                        head.lock = Some(Lock::Implicit);
                        k + 1
                    };
                    let rest = joined_from(next);
                    if let Some(at) = words.get(next).map(|w| w.span.start) {
                        self.error(
                            Span::new(at, words[words.len() - 1].span.end),
                            format!("extra text after the lockfile: `{}`", shown(&rest)),
                            format!(
                                "procmail logs \"Skipped \\\"{}\\\"\" and ignores it",
                                shown(&rest)
                            ),
                        );
                        head.skipped = Some(rest);
                    }
                    return head;
                }
                // procmailrc(5) "Flags": anything else ends the flags; the
                // rest of the header is logged as skipped and the recipe
                // runs with the flags before it (checked: `Skipped "Zq B"`).
                let mut rest = String::from_utf8_lossy(&w.text[j..]).into_owned();
                let more = joined_from(k + 1);
                if !more.is_empty() {
                    rest.push(' ');
                    rest.push_str(&more);
                }
                let at = w.at(j);
                let letter: String = c.escape_ascii().map(char::from).collect();
                let mut d = Diagnostic::error(
                    self.file,
                    Span::new(at, at + 1),
                    format!("unknown flag `{letter}`"),
                )
                .with_note(format!(
                    "procmail logs \"Skipped \\\"{}\\\"\" and runs the recipe with the flags before it",
                    shown(&rest)
                ));
                if c == b'\r' {
                    d = d.with_note("the rcfile has DOS line ends: procmail reads each CR as text");
                }
                if c == b'{' {
                    d = d.with_note("a block's `{` must start the line after the conditions");
                }
                if c == b'$' || c == b'`' {
                    d = d.with_note(
                        "procmail expands the header at run time; postroom reads the flags as written",
                    );
                }
                self.diags.push(d);
                head.skipped = Some(rest);
                return head;
            }
        }
        head
    }

    /// Condition lines (procmail's `conditions()`): `nrcond` lines that
    /// need no `*` (old style `:N`), then any `*` lines, with comment lines
    /// and empty lines between them. The flag is set when an empty line is
    /// followed by a `:` ("Missing action"); `self.pos` is then at that `:`.
    fn conditions(&mut self, mut nrcond: i64) -> (Vec<Cond>, bool) {
        let mut conds = Vec::new();
        let mut skipped_empty = false;
        loop {
            self.skip_blanks();
            nrcond -= 1;
            if self.peek() == Some(b'*') {
                self.pos += 1;
            } else if nrcond < 0 {
                match self.peek() {
                    Some(b'#') => {
                        self.skip_line();
                        continue;
                    }
                    Some(b'\n') => {
                        self.pos += 1;
                        skipped_empty = true;
                        continue;
                    }
                    Some(b':') if skipped_empty => return (conds, true),
                    _ => return (conds, false),
                }
            }
            self.skip_blanks();
            let (line, span) = self.logical_line();
            // procmail strips trailing blanks before looking at a condition.
            let mut text: &[u8] = &line;
            while let [rest @ .., b' ' | b'\t'] = text {
                text = rest;
            }
            conds.push(Cond {
                kind: cond::parse(text),
                span,
            });
        }
    }

    /// The action line at `self.pos` (spec §4.6 table).
    fn action(&mut self, items: &mut Vec<Item>) -> Parsed {
        let a = self.pos;
        let Some(first) = self.peek() else {
            return Parsed::Eof;
        };
        match first {
            b'!' => {
                self.pos += 1;
                let line = self.line(false);
                self.line_eol(items, &line);
                return Parsed::Action(Action::Forward(self.line_raw(a + 1, &line)));
            }
            b'|' => {
                self.pos += 1;
                return Parsed::Action(Action::Pipe(self.logical_line().0.into_owned()));
            }
            _ => {}
        }
        // `NAME=|cmd` captures; `NAME=` followed by anything else is a
        // folder whose name starts with `NAME=` (procmail's `gobenv` path).
        if let Some(e) = self.name_end(a)
            && matches!(self.src.get(e), Some(b' ' | b'\t' | b'\n' | b'='))
        {
            let name = self.lossy(a, e);
            let mut p = e;
            while let Some(b' ' | b'\t') = self.src.get(p) {
                p += 1;
            }
            if self.src.get(p) == Some(&b'=') {
                p += 1;
                while let Some(b' ' | b'\t') = self.src.get(p) {
                    p += 1;
                }
                match self.src.get(p) {
                    Some(b'|') => {
                        self.pos = p + 1;
                        let cmd = self.logical_line().0.into_owned();
                        return Parsed::Action(Action::Capture { name, cmd });
                    }
                    Some(b'!') => {
                        // `NAME=! args` captures what the forwarding command
                        // prints; it is the command procmail would run for
                        // `! args` (`$SENDMAIL` one word, flags split).
                        self.pos = p + 1;
                        let line = self.line(false);
                        self.line_eol(items, &line);
                        let mut cmd = b"\"$SENDMAIL\" $SENDMAILFLAGS".to_vec();
                        cmd.extend(self.line_raw(p + 1, &line));
                        return Parsed::Action(Action::Capture { name, cmd });
                    }
                    _ => {}
                }
            }
        }
        // `{` then a blank or newline opens a block; `{foo}` is a folder.
        if first == b'{' && matches!(self.src.get(a + 1), Some(b' ' | b'\t' | b'\n')) {
            self.pos = a + 2;
            return Parsed::Block(a);
        }
        let line = self.line(false);
        self.line_eol(items, &line);
        Parsed::Action(Action::Folder(self.line_raw(a, &line)))
    }
}

/// `text` with control characters escaped, for diagnostics.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

// ---- the fast path ---------------------------------------------------

/// What pest answers for `name`, `line_words`, `assign_value` or
/// `logical_line` at `at`, worked out by hand, except where the end of the
/// file cuts off a quote or follows a backslash: for those (and for other
/// rules) it gives `toks` back as the error and pest decides.
///
/// pest costs some hundreds of instructions a byte (and its first call
/// 120 K more for its stack guard), and `deliver` parses the rcfile once a
/// message. This mirrors the grammar rule for rule and gives the same
/// [`Tree`]s; the tests check it against pest at every offset of every
/// rcfile the project has and of mutants. The grammar stays the
/// definition: change a rule used here and `quick` must follow.
///
/// The tree is built in `toks` (cleared first).
fn quick(src: &[u8], rule: Rule, at: usize, mut toks: Vec<Tok>) -> Result<Option<Tree>, Vec<Tok>> {
    fn tok(rule: Rule, start: usize, end: usize) -> Tok {
        Tok {
            rule,
            start,
            end,
            inner: 0,
        }
    }
    fn line_end(src: &[u8], p: usize) -> usize {
        src[p..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(src.len(), |n| p + n)
    }
    // A backslash at `q`: a `continuation` before a newline, else `rule`
    // (an escape) with the byte after it; `None` at the end of the file
    // (`dangling` or an open quote: pest decides). Returns its end.
    fn backslash(src: &[u8], toks: &mut Vec<Tok>, q: usize, rule: Rule) -> Option<usize> {
        let rule = match src.get(q + 1)? {
            b'\n' => Rule::continuation,
            _ => rule,
        };
        toks.push(tok(rule, q, q + 2));
        Some(q + 2)
    }
    // `gap?` at `p`: blanks and continuations. Returns its end.
    fn gap(src: &[u8], toks: &mut Vec<Tok>, mut p: usize) -> usize {
        loop {
            match src.get(p) {
                Some(b' ' | b'\t') => p += 1,
                Some(b'\\') if src.get(p + 1) == Some(&b'\n') => {
                    toks.push(tok(Rule::continuation, p, p + 2));
                    p += 2;
                }
                _ => return p,
            }
        }
    }
    // `"\n" | EOI` at `p` (a newline or the end of the file), or a blank
    // where one byte is all that can be there: the end of the match. EOI
    // is a pair of its own.
    fn newline(src: &[u8], toks: &mut Vec<Tok>, p: usize) -> usize {
        if p == src.len() {
            toks.push(tok(Rule::EOI, p, p));
            p
        } else {
            p + 1
        }
    }
    // `comment` at `p` and the end of its line.
    fn comment(src: &[u8], toks: &mut Vec<Tok>, p: usize) -> usize {
        let end = line_end(src, p);
        toks.push(tok(Rule::comment, p, end));
        newline(src, toks, end)
    }
    // Closes the pair at `toks[at]` at `end` around the pairs after it.
    fn close(toks: &mut [Tok], at: usize, end: usize) {
        toks[at].end = end;
        toks[at].inner = toks.len() - at - 1;
    }
    // From `q` to the first unescaped `close` (consumed) or `stop` (not
    // consumed), a backslash and the byte after it making an `escaped`;
    // `None` at the end of the file. Returns the end.
    fn until(
        src: &[u8],
        toks: &mut Vec<Tok>,
        mut q: usize,
        ends: (u8, u8),
        escaped: Rule,
    ) -> Option<usize> {
        loop {
            match *src.get(q)? {
                b'\\' => q = backslash(src, toks, q, escaped)?,
                c if c == ends.0 => return Some(q + 1),
                c if c == ends.1 => return Some(q),
                _ => q += 1,
            }
        }
    }
    // `dquote` at `p`, closed before the end of the file. Returns its end.
    fn dquote(src: &[u8], toks: &mut Vec<Tok>, p: usize) -> Option<usize> {
        let at = toks.len();
        toks.push(tok(Rule::dquote, p, p));
        let braced = |q: usize| src.get(q) == Some(&b'$') && src.get(q + 1) == Some(&b'{');
        let mut q = p + 1;
        loop {
            match src.get(q) {
                None => return None,
                Some(b'"') => break,
                Some(b'\\') => q = backslash(src, toks, q, Rule::dq_escape)?,
                Some(b'`') => {
                    // A backquote ends at a double quote too (left to
                    // close the `dquote`).
                    let bq = toks.len();
                    toks.push(tok(Rule::bquote_in_dq, q, q));
                    let end = until(src, toks, q + 1, (b'`', b'"'), Rule::bq_escape)?;
                    close(toks, bq, end);
                    q = end;
                }
                Some(_) if braced(q) => {
                    // `${NAME:-word}` (`dq_alt`, in which a `"` is text),
                    // or else `dq_text`'s lone `${`.
                    let alt = quick_name(src, q + 2).and_then(|name| {
                        let r = name + usize::from(src.get(name) == Some(&b':'));
                        matches!(src.get(r), Some(b'-' | b'+')).then_some((name, r + 1))
                    });
                    let Some((name, from)) = alt else {
                        toks.push(tok(Rule::dq_text, q, q + 2));
                        q += 2;
                        continue;
                    };
                    let alt = toks.len();
                    toks.push(tok(Rule::dq_alt, q, q));
                    toks.push(tok(Rule::name, q + 2, name));
                    let end = until(src, toks, from, (b'}', b'}'), Rule::dq_escape)?;
                    close(toks, alt, end);
                    q = end;
                }
                Some(_) => {
                    let mut end = q;
                    while end < src.len() && !b"\"\\`".contains(&src[end]) && !braced(end) {
                        end += 1;
                    }
                    toks.push(tok(Rule::dq_text, q, end));
                    q = end;
                }
            }
        }
        close(toks, at, q + 1);
        Some(q + 1)
    }
    // `bquote` at `p`, closed before the end of the file. Returns its end.
    fn bquote(src: &[u8], toks: &mut Vec<Tok>, p: usize) -> Option<usize> {
        let at = toks.len();
        toks.push(tok(Rule::bquote, p, p));
        let end = until(src, toks, p + 1, (b'`', b'`'), Rule::bq_escape)?;
        close(toks, at, end);
        Some(end)
    }
    // `squote` at `p`, closed before the end of the file (backslashes mean
    // nothing inside). Returns its end.
    fn squote(src: &[u8], toks: &mut Vec<Tok>, p: usize) -> Option<usize> {
        let end = p + 1 + src[p + 1..].iter().position(|&b| b == b'\'')?;
        toks.push(Tok {
            inner: 1,
            ..tok(Rule::squote, p, end + 1)
        });
        toks.push(tok(Rule::squote_text, p + 1, end));
        Some(end + 1)
    }
    // A `word` at `p` (not a blank, a newline, a continuation or the end
    // of the file); `None` if it holds what `quick` leaves to pest.
    // Returns its end.
    fn word(src: &[u8], toks: &mut Vec<Tok>, p: usize) -> Option<usize> {
        let at = toks.len();
        toks.push(tok(Rule::word, p, p));
        let mut q = p;
        loop {
            q = match src.get(q) {
                None | Some(b' ' | b'\t' | b'\n') => break,
                Some(b'\'') => squote(src, toks, q)?,
                Some(b'`') => bquote(src, toks, q)?,
                Some(b'"') => dquote(src, toks, q)?,
                Some(b'\\') => backslash(src, toks, q, Rule::escape)?,
                Some(_) => {
                    let end = src[q..]
                        .iter()
                        .position(|b| {
                            matches!(b, b' ' | b'\t' | b'\n' | b'\'' | b'"' | b'`' | b'\\')
                        })
                        .map_or(src.len(), |n| q + n);
                    toks.push(tok(Rule::plain, q, end));
                    end
                }
            };
        }
        close(toks, at, q);
        Some(q)
    }

    if rule == Rule::name {
        return Ok(quick_name(src, at).map(|end| {
            toks.clear();
            toks.push(tok(rule, at, end));
            Tree(toks)
        }));
    }
    toks.clear();
    toks.push(tok(rule, at, at));
    let end = match rule {
        Rule::logical_line => {
            let mut p = at;
            loop {
                let end = line_end(src, p);
                if end < src.len() && end > p && src[end - 1] == b'\\' {
                    toks.push(tok(Rule::cont_line, p, end));
                    p = end + 1;
                    continue;
                }
                toks.push(tok(Rule::line_text, p, end));
                break newline(src, &mut toks, end);
            }
        }
        Rule::line_words => {
            let mut p = at;
            loop {
                p = gap(src, &mut toks, p);
                match src.get(p) {
                    None | Some(b'\n') => break newline(src, &mut toks, p),
                    Some(b'#') => break comment(src, &mut toks, p),
                    Some(_) => match word(src, &mut toks, p) {
                        Some(end) => p = end,
                        None => return Err(toks),
                    },
                }
            }
        }
        Rule::assign_value => {
            let p = gap(src, &mut toks, at);
            match src.get(p) {
                None | Some(b'\n') => newline(src, &mut toks, p),
                Some(b'#') => comment(src, &mut toks, p),
                Some(_) => match word(src, &mut toks, p) {
                    Some(end) => newline(src, &mut toks, end),
                    None => return Err(toks),
                },
            }
        }
        _ => return Err(toks),
    };
    toks[0].end = end;
    toks[0].inner = toks.len() - 1;
    Ok(Some(Tree(toks)))
}

/// The end of the `name` at `at`, if one starts there: [`quick`] for
/// `name`, without building a [`Tree`].
fn quick_name(src: &[u8], at: usize) -> Option<usize> {
    let is_start = |b: &u8| b.is_ascii_alphabetic() || *b == b'_';
    let is_char = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    src.get(at)
        .is_some_and(is_start)
        .then(|| at + src[at..].iter().take_while(|b| is_char(b)).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::ast::CondKind;

    fn one(src: &str) -> Item {
        let (rc, _) = parse("rc", src.as_bytes());
        assert_eq!(rc.items.len(), 1, "{rc}");
        rc.items.into_iter().next().unwrap()
    }

    fn assign(name: &str, value: Option<&str>, start: usize, end: usize) -> Item {
        Item::Assign {
            name: name.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            span: Span::new(start, end),
        }
    }

    // Checked with procmail: `A=hello world` logs `Assigning "A=hello"`
    // then `Assigning "world"` (an unset).
    #[test]
    fn value_ends_at_the_first_blank() {
        let (rc, diags) = parse("rc", b"A=hello world\n");
        let want = vec![
            assign("A", Some("hello"), 0, 7),
            assign("world", None, 8, 13),
        ];
        assert_eq!(rc.items, want);
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("unsets"));
    }

    #[test]
    fn quoted_values_keep_their_quotes_and_lose_continuations() {
        assert_eq!(one("A = \"a b\"c\n"), assign("A", Some("\"a b\"c"), 0, 10));
        assert_eq!(one("A=x\\\ny\n"), assign("A", Some("xy"), 0, 6));
        assert_eq!(one("A='x\\\ny'\n"), assign("A", Some("'x\\\ny'"), 0, 8));
        assert_eq!(one("A=\n"), assign("A", Some(""), 0, 2));
        assert_eq!(one("A= # c\n"), assign("A", Some(""), 0, 2));
        assert_eq!(one("P=abc#x\n"), assign("P", Some("abc#x"), 0, 7));
    }

    // Checked: `A="q\` at the end of the file logs "Unexpected EOL" and
    // assigns `q`.
    #[test]
    fn backslash_at_the_end_inside_double_quotes() {
        let (rc, _) = parse("rc", b"A=\"q\\");
        let want = vec![
            Item::Invalid {
                log: "Unexpected EOL".into(),
                span: Span::new(2, 3),
            },
            assign("A", Some("\"q\""), 0, 5),
        ];
        assert_eq!(rc.items, want);
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let (rc, _) = parse("rc", b"A=caf\xe9\n:0\n* \xe9t\xe9\nx\xff\n");
        let Item::Assign { value, .. } = &rc.items[0] else {
            panic!("{rc}")
        };
        assert_eq!(value.as_deref(), Some(&b"caf\xe9"[..]));
        let Item::Recipe(r) = &rc.items[1] else {
            panic!("{rc}")
        };
        assert_eq!(r.conds[0].kind, CondKind::Regex(b"\xe9t\xe9".to_vec()));
        assert_eq!(r.action, Action::Folder(b"x\xff".to_vec()));
    }

    #[test]
    fn header_flags_lock_and_skipped_text() {
        let Item::Recipe(r) = one(":0 Hc Z: lock\nx\n") else {
            panic!()
        };
        assert!(r.flags.head_search && r.flags.copy);
        assert_eq!(r.bad_flags, vec!["Z: lock".to_string()]);
        assert_eq!(r.lock, None);
        let Item::Recipe(r) = one(":0:a b c\nx\n") else {
            panic!()
        };
        assert_eq!(r.lock, Some(Lock::Named(b"a".to_vec())));
        assert_eq!(r.bad_flags, vec!["b c".to_string()]);
        let Item::Recipe(r) = one(":0 : # comment\nx\n") else {
            panic!()
        };
        assert_eq!(r.lock, Some(Lock::Implicit));
        assert!(r.bad_flags.is_empty());
    }

    // A long file parses in linear time, and deep nesting is cut off
    // before the tree gets too deep to drop.
    #[test]
    fn long_and_deep_files() {
        let src = "A=1\n:0\n* x\n{\n}\n".repeat(20_000);
        let started = std::time::Instant::now();
        let (rc, _) = parse("rc", src.as_bytes());
        assert_eq!(rc.items.len(), 40_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));

        let src = ":0\n{\n".repeat(MAX_DEPTH + 5);
        let (rc, diags) = parse("rc", src.as_bytes());
        let mut depth = 0;
        let mut items = &rc.items;
        while let Some(Item::Recipe(Recipe {
            action: Action::Block(inner),
            ..
        })) = items.first()
        {
            depth += 1;
            items = inner;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert!(matches!(&items[..], [Item::Invalid { log, .. }] if log == "Nesting too deep"));
        assert!(diags.iter().any(|d| d.message.contains("nested more than")));
    }

    /// A little of everything the grammar knows, in one rcfile.
    const EVERY_CONSTRUCT: &[u8] =
        b":0 Bc: l # c\n* ^a\\\n b\n* ! 1^1 x\n{ A=\"q\\\"${X:-\"y\"}`z\"`\" `x\\` 'y\\\n'\n \
        :2\n\n\n | c\\\n\\\nd\n V=|e\n W=! f\n}\n}\n:0\n{foo}\n-x y\\\n\xe9\r\nB=\\";

    /// Quotes of every shape `quick` knows, and some it leaves to pest.
    const QUOTING: &[u8] = b"A=\"${HOME}/x\" \"${X:-y} z\" \"${X-y}\"\nB=\"${X+y}\" \"${X:+y}\"\n\
        C=\"${1:-y}\" \"${:-y}\" \"$${X:-y}\" \"${X:y}\" \"a${\"b \"${\"\n\
        D='x\ny' '' \"\" 'a\\'b `date` `a\\`b` a'b'\"c\"`d`e\n\
        :0 \"B\":'l'\n\"x y\"\n:0\n! \"a b\" 'c'\n:0\n`f` \"$X\"y # c\n\
        E=\"a\nb\" F=\"\xe9\"\nG=\"`x`\" \"a`b\" \"`x\\\"y`\" \"`a\\\nb`\"\n\
        I=\"${X:-a\"b}\" \"${X:-a}b}\" \"${X:-{\\}}\" \"${X+\\\ny}\" \"${X:-\n\
        J=`a\\\nb\\`c` \"a\\\nb\\$c\" x\\\ny\\ \\\n z\nH='\n";

    /// Every rcfile of the project: the fixtures and the benchmark's.
    fn corpus() -> Vec<(String, Vec<u8>)> {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut files = Vec::new();
        for dir in ["tests/fixtures/rc/ok", "tests/fixtures/rc/errors", "bench"] {
            for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".rc") || name == "procmailrc" {
                    files.push((format!("{dir}/{name}"), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        assert!(files.len() > 40, "the rcfile corpus is missing");
        files
    }

    /// `src` with a few bytes replaced, inserted or removed, chosen from
    /// the bytes that mean something to the grammar.
    fn mutate(src: &[u8], seed: &mut u32) -> Vec<u8> {
        let alphabet = b":*{}|!=\"'`\\\n \t#$^a0_\r\xe9";
        let mut s = src.to_vec();
        for _ in 0..3 {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 17;
            *seed ^= *seed << 5;
            let at = *seed as usize % (s.len() + 1);
            let b = alphabet[(*seed >> 8) as usize % alphabet.len()];
            match (*seed >> 16) % 3 {
                0 if at < s.len() => s[at] = b,
                1 if at < s.len() => {
                    s.remove(at);
                }
                _ => s.insert(at, b),
            }
        }
        s
    }

    /// The fast path gives pest's very nodes wherever it answers: every
    /// rule it knows, at every offset of every rcfile and of mutants.
    #[test]
    fn quick_agrees_with_pest() {
        let rules = [
            Rule::name,
            Rule::line_words,
            Rule::assign_value,
            Rule::logical_line,
        ];
        let mut inputs: Vec<Vec<u8>> = corpus().into_iter().map(|(_, src)| src).collect();
        inputs.push(EVERY_CONSTRUCT.to_vec());
        inputs.push(QUOTING.to_vec());
        let mut seed = 0x9e37_79b9_u32;
        for k in 0..inputs.len() * 4 {
            let m = mutate(&inputs[k % inputs.len()], &mut seed);
            inputs.push(m);
        }
        let (mut answered, mut declined) = (0, 0);
        for src in &inputs {
            let reader = Reader {
                file: "rc",
                src,
                shadow: OnceCell::new(),
                fast: false,
                spare: Cell::new(Vec::new()),
                pos: 0,
                diags: Vec::new(),
            };
            for at in 0..=src.len() {
                for rule in rules {
                    let Ok(got) = quick(src, rule, at, Vec::new()) else {
                        declined += 1;
                        continue;
                    };
                    answered += 1;
                    let want = reader.run_pest(rule, at);
                    let near = &src[at.saturating_sub(20)..(at + 40).min(src.len())];
                    assert_eq!(
                        got,
                        want,
                        "{rule:?} at {at}, near {:?}",
                        near.escape_ascii().to_string()
                    );
                }
            }
        }
        // Both paths were exercised.
        assert!(
            answered > 100_000 && declined > 2_000,
            "{answered} {declined}"
        );
    }

    /// Whole files parse to the same items and diagnostics with and
    /// without the fast path.
    #[test]
    fn fast_path_gives_the_same_ast() {
        let same = |name: &str, src: &[u8]| {
            let want = parse_with(name, src, false);
            let got = parse_with(name, src, true);
            assert_eq!(got, want, "{name}: {:?}", src.escape_ascii().to_string());
        };
        for sample in [EVERY_CONSTRUCT, QUOTING] {
            for k in 0..=sample.len() {
                same("cut", &sample[..k]);
                same("cut", &sample[k..]);
            }
        }
        let mut seed = 0x2545_f491_u32;
        for (name, src) in corpus() {
            let crlf: Vec<u8> = src
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![b]
                    }
                })
                .collect();
            same(&name, &crlf);
            same(&name, &src);
            for _ in 0..50 {
                same(&name, &mutate(&src, &mut seed));
            }
        }
    }

    // Every construct, cut at every byte and mutated: the parser must not
    // panic (its `expect`s claim that the rules used match anywhere).
    #[test]
    fn never_panics() {
        let src = EVERY_CONSTRUCT;
        for n in 0..=src.len() {
            let _ = parse("rc", &src[..n]);
            let _ = parse("rc", &src[n..]);
        }
        let mut seed = 0x2545_f491_u32;
        let alphabet = b":*{}|!=\"'`\\\n \t#$^a0";
        for _ in 0..2000 {
            let mut s = src.to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % s.len();
                s[at] = alphabet[(seed >> 8) as usize % alphabet.len()];
            }
            let _ = parse("rc", &s);
        }
    }
}
