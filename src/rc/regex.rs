//! procmail's regular-expression dialect (procmailrc(5) "Extended regular
//! expressions", spec §7, §8 and §17 traps 1–3 and 10).
//!
//! This module owns the translation of a condition's regexp text (macros
//! included) into a program, and the search of one area of bytes with
//! procmail's semantics: `^`/`$` consume a newline, virtual newlines before
//! and after the area, `^^` anchors, `\<`/`\>` consume a non-word character,
//! earliest-ending matches, the `\/` split that yields `MATCH`, and the
//! successive matches of weighted conditions. It must never copy the area,
//! allocate per byte, assume UTF-8, or do any I/O; it does not strip the
//! leading backslash of a condition (§6.7, the condition parser does) and it
//! does not assign `MATCH` (the caller does).
//!
//! # Why an own NFA simulation and not `regex-automata`
//!
//! The engine is a small Thompson NFA run as a Pike-style simulation (a list
//! of live states per input byte, no backtracking, no per-byte allocation;
//! O(area × program)). `regex-automata`'s DFAs and PikeVM cannot express
//! what procmail observably does:
//! * `^`, `$`, `\<`, `\>` *consume* a byte, and the bytes they may consume
//!   include two virtual newlines that are not in the area (the area is never
//!   copied to add them). No new match may start at the virtual final newline.
//! * `\/` is not a capture group: every live state carries the position where
//!   it passed `\/`; two paths into one state keep the earlier one; the first
//!   completed split match kills every state whose split point is later and
//!   stops new starts, and the survivors may still extend the match. Even
//!   the order in which alternatives are explored is visible (`x(\/a|b)` on
//!   `xb` sets MATCH to `b`, `x(b|\/a)` does not; checked with procmail
//!   3.23pre), so the simulation explores branches in procmail's order.
//! * the end position of a match may lie on a virtual newline, which the
//!   weighted-scoring loop (§8) needs to know.
//!
//! Leftmost-first or leftmost-longest spans cannot be bent into these
//! rules, so the automaton is our own. Speed comes from two things:
//! * skipping: while no state is alive, bytes that cannot start a match are
//!   passed over without running the automaton, with the C library's
//!   `memchr` (`Starts`) when at most three bytes can start a match, else
//!   with a byte table;
//! * a lazy DFA (`dfa.rs`) built from this very program, not from a
//!   translation: its states are the simulation's sets of live nodes, so it
//!   answers exactly where sets decide the answer (whether there is a match
//!   and where the earliest one ends), and hands over to the simulation for
//!   the `MATCH` of a pattern with `\/` once a match is known to exist.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Mutex;

mod dfa;

use dfa::{Cache, FIN_BIT, UNKNOWN};

/// What went wrong in a pattern. Offsets count bytes in the pattern as given
/// (before macro expansion).
///
/// procmail itself logs `Invalid regexp "..."` for these and then still
/// searches with what it could make of the pattern (a missing `)` is added
/// at the end; everything from an unmatched `)` on is ignored — checked with
/// procmail 3.23pre: `a)b` matches `a`, `(a` matches `a`).
/// [`Regex::new_lenient`] gives that program too.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    /// A `(` without its `)`.
    #[error("invalid regexp: unclosed `(` at byte {offset}")]
    UnclosedGroup {
        /// Byte offset of the `(`.
        offset: usize,
    },
    /// A `)` without a `(`.
    #[error("invalid regexp: unmatched `)` at byte {offset}")]
    UnmatchedClose {
        /// Byte offset of the `)`.
        offset: usize,
    },
    /// Groups nested deeper than [`MAX_NESTING`]. procmail has no such limit
    /// (its compiler recurses until the stack runs out); we refuse instead,
    /// and the lenient program then ignores the pattern from this `(` on.
    #[error("invalid regexp: groups nested more than {MAX_NESTING} deep at byte {offset}")]
    TooDeep {
        /// Byte offset of the `(` that is one too deep.
        offset: usize,
    },
}

/// The deepest nesting of groups accepted (see [`RegexError::TooDeep`]).
pub const MAX_NESTING: usize = 1000;

/// Which [`RegexError`], at an offset in the expanded pattern.
#[derive(Clone, Copy)]
enum Fault {
    Unclosed,
    Unmatched,
    Deep,
}

/// How to compile a pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Match letters case-sensitively (the `D` flag). `^FROM_DAEMON`
    /// overrides this: a pattern using it is always case-insensitive.
    pub case_sensitive: bool,
    /// The condition began with a `\` that the condition parser removed
    /// (§6.7). procmail decides whether a macro keyword is escaped by
    /// looking at the byte before it in the condition line, so a keyword at
    /// the very start of such a pattern stays literal (checked:
    /// `* \^TO_x` does not expand `^TO_`).
    pub leading_backslash: bool,
}

/// One step of the successive matching done for weighted conditions (§8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A match that ended after the point where its search began.
    Progress,
    /// A match that made no progress (it ended where its search began, or
    /// on the virtual newline before it). The caller applies §8's tail rule
    /// and stops; the iterator ends after it.
    Empty,
}

/// A compiled procmail regexp. Searching needs no `&mut`; clones share
/// nothing (the program is copied, the DFA cache starts empty), and the
/// type is `Send + Sync` (a search that finds the cache in use by another
/// thread runs the plain simulation instead of waiting).
///
/// Memory: the program, a skip table, and a DFA cache built by the first
/// search and kept (bounded: rebuilt past 2048 states). The simulation's
/// working memory is one per thread, shared by all patterns. Compile once
/// and search many times: the evaluator's cache of compiled patterns is
/// what makes the DFA pay off across the areas of a delivery.
#[derive(Debug)]
pub struct Regex {
    prog: Vec<Node>,
    entry: u32,
    fold: bool,
    has_split: bool,
    /// `skip[b]`: byte `b` (as it appears in the text) can start a match at
    /// a real position. Meaningless when `can_skip` is false.
    skip: Box<[bool; 256]>,
    can_skip: bool,
    /// Finds the next byte with `skip[b]` quickly, when that pays.
    prefilter: Option<Starts>,
    /// Whether searches may use the lazy DFA (off only to test the plain
    /// simulation against it).
    use_dfa: bool,
    /// The lazy DFA, built at the first search and kept for the next ones.
    lazy: Mutex<Option<Cache>>,
}

/// Up to three bytes that can start a match, found with the C library's
/// `memchr`. glibc picks its vectorised version through the CPU features
/// the dynamic loader already detected; the `memchr` crate would detect
/// them again with CPUID on first use, which on a virtual machine costs
/// about a tenth of a small delivery (bench/README.md).
#[derive(Clone, Debug)]
struct Starts(Vec<u8>);

impl Starts {
    /// The first position at or after `from` in `area` holding one of the
    /// bytes. With two or three bytes the area is searched a block at a
    /// time, so an early match of one byte is not paid for with a scan
    /// of the whole rest for the others.
    fn find(&self, area: &[u8], from: usize) -> Option<usize> {
        const BLOCK: usize = 4096;
        if let [b] = self.0[..] {
            return c_memchr(b, area.get(from..)?).map(|p| from + p);
        }
        let mut at = from;
        while at < area.len() {
            let end = area.len().min(at + BLOCK);
            let block = &area[at..end];
            if let Some(p) = self.0.iter().filter_map(|&b| c_memchr(b, block)).min() {
                return Some(at + p);
            }
            at = end;
        }
        None
    }
}

/// memchr(3): the position of the first `b` in `hay`.
fn c_memchr(b: u8, hay: &[u8]) -> Option<usize> {
    if hay.is_empty() {
        return None;
    }
    // SAFETY: memchr reads at most `hay.len()` bytes from a valid slice and
    // returns null or a pointer into it.
    let p = unsafe { libc::memchr(hay.as_ptr().cast(), libc::c_int::from(b), hay.len()) };
    if p.is_null() {
        None
    } else {
        Some(p as usize - hay.as_ptr() as usize)
    }
}

impl Clone for Regex {
    fn clone(&self) -> Regex {
        Regex {
            prog: self.prog.clone(),
            entry: self.entry,
            fold: self.fold,
            has_split: self.has_split,
            skip: self.skip.clone(),
            can_skip: self.can_skip,
            prefilter: self.prefilter.clone(),
            use_dfa: self.use_dfa,
            lazy: Mutex::new(None),
        }
    }
}

/// The program: `next` fields are node indices.
#[derive(Clone, Debug)]
enum Node {
    /// One byte (already lowercased when folding).
    Byte { byte: u8, next: u32 },
    /// A bracket expression or the `\<`/`\>` class.
    Class { set: ByteSet, next: u32 },
    /// `.`: anything but a newline.
    Dot { next: u32 },
    /// Epsilon fork; `first` is explored before `second`.
    Split { first: u32, second: u32 },
    /// Epsilon.
    Jump { next: u32 },
    /// `\/`: remember the position.
    Bom { next: u32 },
    /// `^^` not at the end: consumes the virtual newline before the area.
    BoText { next: u32 },
    /// `^^` at the end: the end of the area (after the area's last byte).
    EoText { next: u32 },
    /// The match is complete.
    Fin,
}

const FIN: u32 = 0;
const HOLE: u32 = u32::MAX;

/// A set of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] >> (b & 63) & 1 == 1
    }
    fn set(&mut self, b: u8, on: bool) {
        let w = &mut self.0[usize::from(b >> 6)];
        if on {
            *w |= 1 << (b & 63);
        } else {
            *w &= !(1 << (b & 63));
        }
    }
    fn toggle(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] ^= 1 << (b & 63);
    }
}

// ---------------------------------------------------------------------------
// Macros

/// The macro keywords in the order procmail tries them, with their
/// replacements (procmailrc(5) "MISCELLANEOUS", spec §7). The `\t` in the
/// two FROM macros is a real tab, as in procmail.
const MACROS: [(&[u8], &[u8]); 4] = [
    (
        b"^FROM_DAEMON",
        b"(^(Mailing-List:|Precedence:.*(junk|bulk|list)|To: Multiple recipients of |(((Resent-)?(From|Sender)|X-Envelope-From):|>?From )([^>]*[^(.%@a-z0-9])?(Post(ma?(st(e?r)?|n)|office)|(send)?Mail(er)?|daemon|m(mdf|ajordomo)|n?uucp|LIST(SERV|proc)|NETSERV|o(wner|ps)|r(e(quest|sponse)|oot)|b(ounce|bs\\.smtp)|echo|mirror|s(erv(ices?|er)|mtp(error)?|ystem)|A(dmin(istrator)?|MMGR|utoanswer))(([^).!:a-z0-9][-_a-z0-9]*)?[%@>\t ][^<)]*(\\(.*\\).*)?)?$([^>]|$)))",
    ),
    (
        b"^TO_",
        b"(^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently(-Resent)?)-To):(.*[^-a-zA-Z0-9_.])?)",
    ),
    (
        b"^TO",
        b"(^((Original-)?(Resent-)?(To|Cc|Bcc)|(X-Envelope|Apparently(-Resent)?)-To):(.*[^a-zA-Z])?)",
    ),
    (
        b"^FROM_MAILER",
        b"(^(((Resent-)?(From|Sender)|X-Envelope-From):|>?From )([^>]*[^(.%@a-z0-9])?(Post(ma(st(er)?|n)|office)|(send)?Mail(er)?|daemon|mmdf|n?uucp|ops|r(esponse|oot)|(bbs\\.)?smtp(error)?|s(erv(ices?|er)|ystem)|A(dmin(istrator)?|MMGR))(([^).!:a-z0-9][-_a-z0-9]*)?[%@>\t ][^<)]*(\\(.*\\).*)?)?$([^>]|$))",
    ),
];

/// One macro replacement: `at..at+new_len` in the expanded text replaced
/// `old_len` bytes of the text before it.
struct Replacement {
    at: usize,
    new_len: usize,
    old_len: usize,
}

/// Expands the macros textually, as procmail does before compiling
/// (spec §7 "Macros"): the keywords are tried in order; the first
/// occurrence of a keyword is replaced unless the byte before it is a
/// backslash, and then the search starts over with the first keyword. An
/// escaped first occurrence makes procmail give up on that keyword, even if
/// a later occurrence is not escaped (a quirk of its `strstr` loop, kept).
/// Returns the text, whether `^FROM_DAEMON` was used, and the replacements
/// in the order made.
fn expand_macros(pat: &[u8], leading_backslash: bool) -> (Vec<u8>, bool, Vec<Replacement>) {
    let mut text = pat.to_vec();
    let mut daemon = false;
    let mut reps = Vec::new();
    // Every keyword starts with `^`: look only where one is.
    let mut carets = Vec::new();
    'again: loop {
        carets.clear();
        carets.extend(positions(b'^', &text));
        if carets.is_empty() {
            return (text, daemon, reps);
        }
        for (i, (key, subst)) in MACROS.iter().enumerate() {
            let Some(&at) = carets.iter().find(|&&at| text[at..].starts_with(key)) else {
                continue;
            };
            let escaped = if at == 0 {
                leading_backslash
            } else {
                text[at - 1] == b'\\'
            };
            if escaped {
                continue;
            }
            text.splice(at..at + key.len(), subst.iter().copied());
            reps.push(Replacement {
                at,
                new_len: subst.len(),
                old_len: key.len(),
            });
            daemon |= i == 0;
            continue 'again;
        }
        return (text, daemon, reps);
    }
}

fn positions(byte: u8, hay: &[u8]) -> impl Iterator<Item = usize> + '_ {
    hay.iter()
        .enumerate()
        .filter_map(move |(i, &b)| (b == byte).then_some(i))
}

/// Maps an offset in the expanded text back to the pattern as written.
fn original_offset(mut off: usize, reps: &[Replacement]) -> usize {
    for r in reps.iter().rev() {
        if off >= r.at + r.new_len {
            off = off - r.new_len + r.old_len;
        } else if off >= r.at {
            off = r.at;
        }
    }
    off
}

// ---------------------------------------------------------------------------
// Parsing

enum Atom {
    Byte(u8),
    Class(ByteSet),
    Dot,
    Anchor,
    Split,
    /// The alternatives `Tree::alts[range]`.
    Group(Range<u32>),
}

struct Piece {
    atom: Atom,
    op: Option<u8>,
}

/// The parsed pattern, flat: an alternative is a range of `pieces`, a group
/// a range of `alts` (a handful of allocations per pattern, not a few per
/// group).
struct Tree {
    pieces: Vec<Piece>,
    alts: Vec<Range<u32>>,
}

struct Parser<'a> {
    pat: &'a [u8],
    pos: usize,
    fold: bool,
    error: Option<(usize, Fault)>, // offset in the expanded text
    depth: usize,
    has_split: bool,
    tree: Tree,
    /// Pieces of the sequences being parsed (inner ones on top).
    piece_stack: Vec<Piece>,
    /// Alternatives of the groups being parsed (inner ones on top).
    alt_stack: Vec<Range<u32>>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.pat.get(self.pos).copied()
    }

    /// Alternatives up to the end of the group (`open` = offset of its `(`)
    /// or of the pattern. A top-level `)` ends the pattern: procmail ignores
    /// the rest.
    fn alternatives(&mut self, open: Option<usize>) -> Range<u32> {
        let base = self.alt_stack.len();
        let first = self.sequence();
        self.alt_stack.push(first);
        loop {
            match self.peek() {
                Some(b'|') => {
                    self.pos += 1;
                    let alt = self.sequence();
                    self.alt_stack.push(alt);
                }
                Some(b')') => {
                    if open.is_none() {
                        self.error.get_or_insert((self.pos, Fault::Unmatched));
                    }
                    self.pos += 1;
                    break;
                }
                _ => {
                    if let Some(at) = open {
                        self.error.get_or_insert((at, Fault::Unclosed));
                    }
                    break;
                }
            }
        }
        let start = self.tree.alts.len() as u32;
        self.tree.alts.extend(self.alt_stack.drain(base..));
        start..self.tree.alts.len() as u32
    }

    fn sequence(&mut self) -> Range<u32> {
        let base = self.piece_stack.len();
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let atom = self.atom();
            // One postfix operator per atom; a second one is an ordinary
            // character (checked: `a**` matches `aa*`, not `aaa`).
            let op = match self.peek() {
                Some(o @ (b'*' | b'+' | b'?')) => {
                    self.pos += 1;
                    Some(o)
                }
                _ => None,
            };
            self.piece_stack.push(Piece { atom, op });
        }
        let start = self.tree.pieces.len() as u32;
        self.tree.pieces.extend(self.piece_stack.drain(base..));
        start..self.tree.pieces.len() as u32
    }

    fn atom(&mut self) -> Atom {
        let c = self.pat[self.pos];
        self.pos += 1;
        match c {
            b'(' if self.depth == MAX_NESTING => {
                self.error.get_or_insert((self.pos - 1, Fault::Deep));
                self.pos = self.pat.len();
                let at = self.tree.pieces.len() as u32;
                self.tree.alts.push(at..at);
                Atom::Group(self.tree.alts.len() as u32 - 1..self.tree.alts.len() as u32)
            }
            b'(' => {
                self.depth += 1;
                let alts = self.alternatives(Some(self.pos - 1));
                self.depth -= 1;
                Atom::Group(alts)
            }
            b'[' => Atom::Class(self.class()),
            b'.' => Atom::Dot,
            b'^' if self.peek() == Some(b'^') => {
                self.pos += 1;
                Atom::Anchor
            }
            b'^' | b'$' => Atom::Byte(b'\n'),
            b'\\' => match self.peek() {
                // A backslash at the very end is literal.
                None => Atom::Byte(b'\\'),
                Some(e) => {
                    self.pos += 1;
                    match e {
                        b'/' => {
                            self.has_split = true;
                            Atom::Split
                        }
                        b'<' | b'>' => {
                            // Everything but [A-Za-z0-9_], newline included.
                            let mut set = ByteSet([!0; 4]);
                            for b in (b'a'..=b'z').chain(b'A'..=b'Z').chain(b'0'..=b'9') {
                                set.set(b, false);
                            }
                            set.set(b'_', false);
                            Atom::Class(set)
                        }
                        _ => Atom::Byte(self.lit(e)),
                    }
                }
            },
            _ => Atom::Byte(self.lit(c)),
        }
    }

    fn lit(&self, c: u8) -> u8 {
        if self.fold { c.to_ascii_lowercase() } else { c }
    }

    /// A bracket expression, after its `[`. No escapes and no POSIX classes
    /// inside; `]` or `-` first is literal, `-` last is literal; a range
    /// marks the bytes strictly between its ends plus the end itself, so a
    /// reversed range `z-a` is the two bytes `z` and `a` (checked); the
    /// expression may run to the end of the pattern without `]` (checked:
    /// `[abc` matches `b`). `[^...]` never matches a newline.
    fn class(&mut self) -> ByteSet {
        let negate = self.peek() == Some(b'^');
        let mut set = if negate {
            self.pos += 1;
            let mut s = ByteSet([!0; 4]);
            s.toggle(b'\n');
            s
        } else {
            ByteSet::default()
        };
        let on = !negate;
        let fold = self.fold;
        let mark = |set: &mut ByteSet, b: u8| {
            set.set(b, on);
            if fold && b.is_ascii_alphabetic() {
                set.set(b ^ 0x20, on);
            }
        };
        let mut prev: u8 = 0;
        if let Some(c @ (b']' | b'-')) = self.peek() {
            self.pos += 1;
            set.toggle(c);
            prev = c;
        }
        loop {
            let Some(c) = self.peek() else { return set };
            self.pos += 1;
            match c {
                b']' => return set,
                b'-' if !matches!(self.peek(), None | Some(b']')) => {
                    let end = self.pat[self.pos];
                    self.pos += 1;
                    let mut b = u16::from(prev) + 1;
                    while b < u16::from(end) {
                        mark(&mut set, b as u8);
                        b += 1;
                    }
                    mark(&mut set, end);
                    prev = end;
                }
                _ => {
                    mark(&mut set, c);
                    prev = c;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Compiling

struct Compiler<'t> {
    prog: Vec<Node>,
    tree: &'t Tree,
}

impl<'t> Compiler<'t> {
    fn push(&mut self, n: Node) -> u32 {
        self.prog.push(n);
        (self.prog.len() - 1) as u32
    }

    /// procmail's layout: each alternative but the last is a fork whose first
    /// branch is that alternative; an empty alternative that is not last is a
    /// fork whose first branch is the remaining alternatives.
    ///
    /// `cont` is where a match goes on; `phys` is the code procmail lays out
    /// right after this part. The two differ only for `\/`, which procmail
    /// continues with the code that physically follows it: a `\/` ending a
    /// non-last alternative runs on into the next alternatives (checked:
    /// `b\/|\A^` does not match `Axbb`, it needs `ba` + newline).
    fn alternatives(&mut self, alts: Range<u32>, cont: u32, phys: u32) -> u32 {
        let tree: &'t Tree = self.tree;
        let alts = &tree.alts[alts.start as usize..alts.end as usize];
        let (last, init) = alts.split_last().expect("at least one alternative");
        let pieces = |r: &Range<u32>| &tree.pieces[r.start as usize..r.end as usize];
        let (last, init) = (pieces(last), init);
        let mut rest = if last.is_empty() {
            self.push(Node::Jump { next: cont })
        } else {
            self.sequence(last, cont, phys)
        };
        for alt in init.iter().rev() {
            let alt = pieces(alt);
            rest = if alt.is_empty() {
                self.push(Node::Split {
                    first: rest,
                    second: cont,
                })
            } else {
                let a = self.sequence(alt, cont, rest);
                self.push(Node::Split {
                    first: a,
                    second: rest,
                })
            };
        }
        rest
    }

    fn sequence(&mut self, pieces: &'t [Piece], cont: u32, phys: u32) -> u32 {
        let mut next = None;
        for p in pieces.iter().rev() {
            let (c, ph) = next.map_or((cont, phys), |n| (n, n));
            next = Some(self.piece(p, c, ph));
        }
        next.unwrap_or(cont)
    }

    fn piece(&mut self, p: &'t Piece, cont: u32, phys: u32) -> u32 {
        match p.op {
            None => self.atom(&p.atom, cont, phys),
            Some(b'*') => {
                let s = self.push(Node::Split {
                    first: HOLE,
                    second: cont,
                });
                let body = self.atom(&p.atom, s, phys);
                self.prog[s as usize] = Node::Split {
                    first: body,
                    second: cont,
                };
                s
            }
            // `x+`: after x, procmail tries what follows before another x.
            Some(b'+') => {
                let s = self.push(Node::Split {
                    first: cont,
                    second: HOLE,
                });
                let body = self.atom(&p.atom, s, s);
                self.prog[s as usize] = Node::Split {
                    first: cont,
                    second: body,
                };
                body
            }
            Some(_) => {
                let body = self.atom(&p.atom, cont, phys);
                self.push(Node::Split {
                    first: body,
                    second: cont,
                })
            }
        }
    }

    fn atom(&mut self, a: &'t Atom, cont: u32, phys: u32) -> u32 {
        match a {
            Atom::Byte(b) => self.push(Node::Byte {
                byte: *b,
                next: cont,
            }),
            Atom::Class(set) => self.push(Node::Class {
                set: *set,
                next: cont,
            }),
            Atom::Dot => self.push(Node::Dot { next: cont }),
            // `^^` is the end anchor exactly when nothing but the end of the
            // pattern follows it (procmailrc(5) "^^"; spec §7).
            Atom::Anchor if cont == FIN => self.push(Node::EoText { next: cont }),
            Atom::Anchor => self.push(Node::BoText { next: cont }),
            Atom::Split => self.push(Node::Bom { next: phys }),
            Atom::Group(alts) => self.alternatives(alts.clone(), cont, phys),
        }
    }
}

impl Regex {
    /// Compiles `pattern` (macros expanded), case-insensitive unless
    /// `case_sensitive` (the `D` flag).
    pub fn new(pattern: &[u8], case_sensitive: bool) -> Result<Regex, RegexError> {
        Regex::with_options(
            pattern,
            Options {
                case_sensitive,
                leading_backslash: false,
            },
        )
    }

    /// Compiles `pattern` with `opts`; any [`RegexError`] is returned.
    pub fn with_options(pattern: &[u8], opts: Options) -> Result<Regex, RegexError> {
        match Regex::new_lenient(pattern, opts) {
            (re, None) => Ok(re),
            (_, Some(e)) => Err(e),
        }
    }

    /// Compiles `pattern` the way procmail does even when it is invalid:
    /// the error (which the caller logs as `Invalid regexp "..."`) comes
    /// with the program procmail then searches with anyway (checked with
    /// procmail 3.23pre: the condition `a(b` is reported and still matches
    /// `ab`).
    pub fn new_lenient(pattern: &[u8], opts: Options) -> (Regex, Option<RegexError>) {
        // procmail's pattern is a C string: a NUL ends it (checked: the
        // condition `x<NUL>y` matches `xz`).
        let pattern = pattern.split(|&b| b == 0).next().unwrap_or_default();
        let (text, daemon, reps) = expand_macros(pattern, opts.leading_backslash);
        // `^FROM_DAEMON` forces case-insensitivity (procmailrc(5), spec §5).
        let fold = daemon || !opts.case_sensitive;
        let mut p = Parser {
            pat: &text,
            pos: 0,
            fold,
            error: None,
            depth: 0,
            has_split: false,
            // At most one piece per pattern byte.
            tree: Tree {
                pieces: Vec::with_capacity(text.len()),
                alts: Vec::with_capacity(16),
            },
            piece_stack: Vec::with_capacity(text.len()),
            alt_stack: Vec::with_capacity(16),
        };
        let alts = p.alternatives(None);
        let error = p.error.map(|(at, fault)| {
            let offset = original_offset(at, &reps);
            match fault {
                Fault::Unclosed => RegexError::UnclosedGroup { offset },
                Fault::Unmatched => RegexError::UnmatchedClose { offset },
                Fault::Deep => RegexError::TooDeep { offset },
            }
        });
        // About one node per pattern byte; more only with many operators.
        let mut prog = Vec::with_capacity(text.len() + 8);
        prog.push(Node::Fin);
        let mut c = Compiler {
            prog,
            tree: &p.tree,
        };
        let entry = c.alternatives(alts, FIN, FIN);
        let mut re = Regex {
            prog: c.prog,
            entry,
            fold,
            has_split: p.has_split,
            skip: Box::new([false; 256]),
            can_skip: false,
            prefilter: None,
            use_dfa: true,
            lazy: Mutex::new(None),
        };
        re.compute_skip();
        (re, error)
    }

    /// Fills the table of bytes that can start a match at a real position.
    fn compute_skip(&mut self) {
        let mut first = ByteSet::default();
        let mut seen = vec![false; self.prog.len()];
        let mut stack = vec![self.entry];
        let mut can_skip = true;
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n as usize], true) {
                continue;
            }
            match &self.prog[n as usize] {
                Node::Byte { byte, .. } => first.set(*byte, true),
                Node::Class { set, .. } => {
                    for w in 0..4 {
                        first.0[w] |= set.0[w];
                    }
                }
                Node::Dot { .. } => {
                    let newline = first.contains(b'\n');
                    first = ByteSet([!0; 4]);
                    first.set(b'\n', newline);
                }
                Node::Split {
                    first: a,
                    second: b,
                } => {
                    stack.push(*a);
                    stack.push(*b);
                }
                Node::Jump { next } | Node::Bom { next } => stack.push(*next),
                // Only alive at the virtual newlines, never at a real byte.
                Node::BoText { .. } | Node::EoText { .. } => {}
                Node::Fin => can_skip = false,
            }
        }
        // skip[b] = first.contains(fold(b)): an uppercase letter goes with
        // its lowercase one when folding.
        let mut set = first;
        if self.fold {
            for b in b'A'..=b'Z' {
                set.set(b, first.contains(b | 0x20));
            }
        }
        let mut starts = Vec::new();
        for (w, &word) in set.0.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.skip[b] = true;
                if starts.len() < 4 {
                    starts.push(b as u8);
                }
            }
        }
        self.can_skip = can_skip;
        self.prefilter = match starts.len() {
            // memchr: reliably faster than the table.
            1..=3 if can_skip => Some(Starts(starts)),
            _ => None,
        };
    }

    /// While no thread is alive: the first position at or after `i` (and
    /// before `l`) where a match can start, `None` when there is none.
    #[inline]
    fn next_start(&self, area: &[u8], i: usize, l: usize) -> Option<usize> {
        if let Some(pre) = &self.prefilter {
            return pre.find(&area[..l], i);
        }
        if !self.can_skip {
            return Some(i);
        }
        (i..l).find(|&j| self.skip[usize::from(area[j])])
    }

    fn fold_byte(&self, b: u8) -> u8 {
        if self.fold { b.to_ascii_lowercase() } else { b }
    }

    /// Whether the pattern contains `\/`.
    pub fn has_match_split(&self) -> bool {
        self.has_split
    }

    /// Whether the pattern matches somewhere in `area` (a plain condition).
    pub fn is_match(&self, area: &[u8]) -> bool {
        !matches!(self.search(area, 0), Outcome::NoMatch)
    }

    /// The earliest-ending match in `area`. `None`: no match.
    /// `Some(None)`: a match that did not pass through `\/` (always so when
    /// the pattern has none). `Some(Some(range))`: `MATCH` = `area[range]`;
    /// the split point is the earliest possible, the right part then as long
    /// as possible, and never beyond the area (spec §7 `\/`).
    pub fn find_match(&self, area: &[u8]) -> Option<Option<Range<usize>>> {
        match self.search(area, 0) {
            Outcome::NoMatch => None,
            Outcome::Plain { .. } => Some(None),
            Outcome::Split { range, .. } => Some(Some(range)),
        }
    }

    /// Successive matches for weighted conditions (spec §8): each search
    /// resumes where the previous match ended; the iterator ends after an
    /// [`Step::Empty`], when no match is left, or after a match that used
    /// the virtual newline at the end of the area.
    pub fn matches<'a>(&'a self, area: &'a [u8]) -> Matches<'a> {
        Matches {
            re: self,
            area,
            at: 0,
            remaining: area.len() as isize,
            done: false,
            split: None,
        }
    }
}

/// The iterator of [`Regex::matches`].
#[derive(Debug)]
pub struct Matches<'a> {
    re: &'a Regex,
    area: &'a [u8],
    at: usize,
    remaining: isize,
    done: bool,
    split: Option<Range<usize>>,
}

impl Matches<'_> {
    /// The `MATCH` range of the step last returned, when it passed through
    /// `\/` (procmail assigns `MATCH` on every such step).
    pub fn split(&self) -> Option<Range<usize>> {
        self.split.clone()
    }
}

impl Iterator for Matches<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        if self.done || self.remaining < 0 {
            return None;
        }
        let (end, split) = match self.re.search(self.area, self.at) {
            Outcome::NoMatch => {
                self.done = true;
                return None;
            }
            Outcome::Plain { end } => (end, None),
            Outcome::Split { end, range } => (end, Some(range)),
        };
        self.split = split;
        let at = self.at as isize;
        if end <= at {
            self.done = true;
            return Some(Step::Empty);
        }
        self.remaining -= end - at;
        // `end` may lie one or two past the area (virtual newlines); then
        // `remaining` is negative and the loop ends, as in procmail.
        self.at = (end as usize).min(self.area.len());
        Some(Step::Progress)
    }
}

// ---------------------------------------------------------------------------
// Searching

/// Result of one search. Positions are relative to the area; the virtual
/// newline before the area is at `from - 1` (so -1 at the area start).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NoMatch,
    /// A match that did not pass `\/`; `end` is one past its last byte and
    /// may count the virtual newlines.
    Plain {
        end: isize,
    },
    /// A `\/` match: `range` is MATCH; `end` is the match end procmail
    /// reports (clipped to the area's end).
    Split {
        end: isize,
        range: Range<usize>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Thread {
    /// A consuming node; the thread continues at its `next`.
    node: u32,
    /// Where it passed `\/`; `pend` (= area length + 1) when it did not.
    start: isize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The virtual newline before the search; `bot`: the search starts at
    /// the area's start, so `^^` may consume it.
    Begin {
        bot: bool,
    },
    Real,
    /// The virtual newline after the area: `^^` at the end acts as a match.
    EndA,
    /// One past it: only completed matches count.
    EndB,
}

/// Per-search working memory, reused so that nothing is allocated per byte
/// (nor per match in a weighted loop).
#[derive(Debug)]
struct Scratch {
    cur: Vec<Thread>,
    next: Vec<Thread>,
    /// `marks[node]`: 1 + index in `next`, 0 when absent.
    marks: Vec<u32>,
    /// Per-closure visit marks of forks: (generation, start).
    visits: Vec<(u32, isize)>,
    generation: u32,
    stack: Vec<u32>,
    /// A node set being built by the DFA.
    set: Vec<u32>,
}

thread_local! {
    /// The simulation's working memory, shared by every search on the
    /// thread (each [`Regex`] usually runs once or twice per delivery, so
    /// memory of its own would mostly be allocated and freed).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new(0));
}

impl Scratch {
    fn new(nodes: usize) -> Scratch {
        Scratch {
            cur: Vec::with_capacity(8),
            next: Vec::with_capacity(8),
            marks: vec![0; nodes],
            visits: vec![(0, 0); nodes],
            generation: 0,
            stack: Vec::with_capacity(8),
            set: Vec::with_capacity(16),
        }
    }

    /// Makes room for a program of `nodes` nodes. Entries left by another
    /// program are harmless: marks are cleared by every search, and visits
    /// carry an older generation.
    fn fit(&mut self, nodes: usize) {
        if self.marks.len() < nodes {
            self.marks.resize(nodes, 0);
            self.visits.resize(nodes, (0, 0));
        }
    }
}

impl Scratch {
    /// Forgets all fork visits.
    fn new_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.visits.iter_mut().for_each(|v| *v = (0, 0));
            self.generation = 1;
        }
    }
}

struct Search<'s> {
    sc: &'s mut Scratch,
    pend: isize,
    eom: Option<isize>,
    bom: isize,
}

enum Flow {
    Continue,
    Plain(isize),
}

impl Regex {
    /// Searches `area` from `from`. The answer is always the simulation's
    /// ([`Regex::search_nfa`]); the lazy DFA gives it faster where it can
    /// ([`Regex::search_dfa`]).
    fn search(&self, area: &[u8], from: usize) -> Outcome {
        let run = |sc: &mut Scratch| {
            sc.fit(self.prog.len());
            // A cache in use by another thread (or poisoned) is not waited
            // for: the simulation alone gives the same answer.
            if self.use_dfa
                && let Ok(mut guard) = self.lazy.try_lock()
            {
                let cache = guard.get_or_insert_with(|| Cache::new(self, sc));
                if let Some(out) = self.search_dfa(area, from, cache, sc) {
                    return out;
                }
            }
            self.search_nfa(area, from, sc)
        };
        SCRATCH
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut sc) => run(&mut sc),
                Err(_) => run(&mut Scratch::new(0)),
            })
            .unwrap_or_else(|_| run(&mut Scratch::new(0)))
    }

    /// The search with the lazy DFA for the bytes of the area and the
    /// simulation for the virtual newlines around them.
    ///
    /// Until the first match completes, the simulation's live threads
    /// differ from one another only in order and `\/` positions, which
    /// decide nothing before then: whether a match exists and where the
    /// earliest one ends depend on the *set* of live nodes alone, and that
    /// set is the DFA state. So without `\/` this is the answer; with `\/`
    /// it answers only "no match" (the common case) and returns `None` as
    /// soon as a match exists, for the simulation to find its `MATCH`.
    fn search_dfa(
        &self,
        area: &[u8],
        from: usize,
        cache: &mut Cache,
        scratch: &mut Scratch,
    ) -> Option<Outcome> {
        let l = area.len();
        let split = self.has_split;
        let found = |end: isize| (!split).then_some(Outcome::Plain { end });
        scratch.cur.clear();
        scratch.next.clear();
        scratch.marks.iter_mut().for_each(|m| *m = 0);
        let pend = l as isize + 1;
        let mut s = Search {
            sc: scratch,
            pend,
            eom: None,
            bom: 0,
        };
        // The virtual newline before the search, exactly as in search_nfa.
        let mut end_a = l as isize;
        let begin = if from == 0 || area[from - 1] == b'\n' {
            Some((from as isize - 1, from == 0))
        } else if from == l {
            end_a = l as isize + 1;
            Some((l as isize, false))
        } else {
            None
        };
        if let Some((pos, bot)) = begin {
            if let Flow::Plain(e) = self.step(&mut s, pos, b'\n', Phase::Begin { bot }) {
                return found(e);
            }
            if s.eom.is_some() {
                return None;
            }
        }
        let state = cache.state_of_threads(self, s.sc);
        let ncls = cache.ncls();
        let mut i = from;
        // A state completes a match at the `Real` step after it is entered
        // (the transition into it carries FIN_BIT), if there is one.
        if i < l && cache.info[state as usize].fin {
            return found(i as isize);
        }
        // The current state's row in `trans`; row 0 is the empty state.
        let mut row = state as usize * ncls;
        while i < l {
            if row == 0 {
                // No live thread: skip what cannot start a match.
                match self.next_start(area, i, l) {
                    Some(at) => i = at,
                    None => break,
                }
            }
            let k = usize::from(cache.classes.map[usize::from(area[i])]);
            let mut t = cache.trans[row + k];
            i += 1;
            if t & FIN_BIT != 0 {
                if t == UNKNOWN {
                    t = cache.compute(self, (row / ncls) as u32, k, s.sc);
                }
                if t & FIN_BIT != 0 && i < l {
                    return found(i as isize);
                }
                t &= !FIN_BIT;
            }
            row = t as usize;
        }
        cache.threads_of_state((row / ncls) as u32, pend, s.sc);
        for (pos, phase) in [(end_a, Phase::EndA), (end_a + 1, Phase::EndB)] {
            if s.sc.next.is_empty() {
                break;
            }
            if let Flow::Plain(e) = self.step(&mut s, pos, b'\n', phase) {
                return found(e);
            }
            if s.eom.is_some() {
                return None;
            }
        }
        Some(Outcome::NoMatch)
    }

    /// The Pike simulation: the reference for every answer.
    fn search_nfa(&self, area: &[u8], from: usize, sc: &mut Scratch) -> Outcome {
        let l = area.len();
        sc.cur.clear();
        sc.next.clear();
        sc.marks.iter_mut().for_each(|m| *m = 0);
        let mut s = Search {
            sc,
            pend: l as isize + 1,
            eom: None,
            bom: 0,
        };
        // The virtual newline before the search: at the area start or after
        // a newline; a search of nothing that does not follow a newline gets
        // one at its own position instead (spec §7, checked on weighted
        // loops).
        let mut end_a = l as isize;
        if from == 0 || area[from - 1] == b'\n' {
            if let Flow::Plain(e) = self.step(
                &mut s,
                from as isize - 1,
                b'\n',
                Phase::Begin { bot: from == 0 },
            ) {
                return Outcome::Plain { end: e };
            }
        } else if from == l {
            end_a = l as isize + 1;
            if let Flow::Plain(e) =
                self.step(&mut s, l as isize, b'\n', Phase::Begin { bot: false })
            {
                return Outcome::Plain { end: e };
            }
        }
        let mut i = from;
        while i < l {
            if s.sc.next.is_empty() {
                if s.eom.is_some() {
                    break;
                }
                match self.next_start(area, i, l) {
                    Some(at) => i = at,
                    None => break,
                }
            }
            let c = self.fold_byte(area[i]);
            if let Flow::Plain(e) = self.step(&mut s, i as isize, c, Phase::Real) {
                return Outcome::Plain { end: e };
            }
            i += 1;
        }
        for (pos, phase) in [(end_a, Phase::EndA), (end_a + 1, Phase::EndB)] {
            if s.sc.next.is_empty() {
                break;
            }
            if let Flow::Plain(e) = self.step(&mut s, pos, b'\n', phase) {
                return Outcome::Plain { end: e };
            }
        }
        match s.eom {
            None => Outcome::NoMatch,
            Some(eom) => {
                let eom = eom.min(l as isize);
                let bom = s.bom.max(0) as usize;
                let end = (eom.max(0) as usize).max(bom);
                Outcome::Split {
                    end: eom,
                    range: bom..end,
                }
            }
        }
    }

    /// One input position: start a new thread (unless a split match was
    /// found or this is past the area), then continue the live threads, the
    /// latest pushed first, as procmail does.
    fn step(&self, s: &mut Search<'_>, pos: isize, c: u8, phase: Phase) -> Flow {
        std::mem::swap(&mut s.sc.cur, &mut s.sc.next);
        s.sc.next.clear();
        for t in &s.sc.cur {
            s.sc.marks[t.node as usize] = 0;
        }
        if !self.has_split {
            s.sc.new_generation();
        }
        if s.eom.is_none()
            && matches!(phase, Phase::Begin { .. } | Phase::Real)
            && let Flow::Plain(e) = self.closure(s, self.entry, s.pend, pos, c, phase)
        {
            return Flow::Plain(e);
        }
        while let Some(t) = s.sc.cur.pop() {
            let next = self.next_of(t.node);
            if let Flow::Plain(e) = self.closure(s, next, t.start, pos, c, phase) {
                return Flow::Plain(e);
            }
        }
        Flow::Continue
    }

    fn next_of(&self, n: u32) -> u32 {
        match &self.prog[n as usize] {
            Node::Byte { next, .. }
            | Node::Class { next, .. }
            | Node::Dot { next }
            | Node::BoText { next }
            | Node::EoText { next } => *next,
            _ => unreachable!("only consuming nodes are live"),
        }
    }

    /// Explores the epsilon closure of `node` depth-first (first branch
    /// first), testing byte `c` at `pos`. `start` is shared by the whole walk
    /// and set by `\/`: like procmail, a branch explored after a `\/` on an
    /// earlier branch inherits its position.
    fn closure(
        &self,
        s: &mut Search<'_>,
        node: u32,
        mut start: isize,
        pos: isize,
        c: u8,
        phase: Phase,
    ) -> Flow {
        // Without `\/` every thread has the same (absent) split point, so
        // one walk per step covers them all, as in a plain Pike VM.
        if self.has_split {
            s.sc.new_generation();
        }
        let generation = s.sc.generation;
        s.sc.stack.clear();
        let mut n = node;
        loop {
            let consumed = match &self.prog[n as usize] {
                Node::Split { first, second } => {
                    // Forks may sit on epsilon cycles (`(a*)*`); a fork is
                    // walked again only with an earlier `\/` position.
                    let v = &mut s.sc.visits[n as usize];
                    if v.0 == generation && v.1 <= start {
                        None
                    } else {
                        *v = (generation, start);
                        s.sc.stack.push(*second);
                        n = *first;
                        continue;
                    }
                }
                Node::Jump { next } => {
                    n = *next;
                    continue;
                }
                Node::Bom { next } => {
                    if s.eom.is_none() {
                        start = pos;
                    }
                    n = *next;
                    continue;
                }
                Node::Byte { byte, .. } => (*byte == c).then_some(n),
                Node::Class { set, .. } => set.contains(c).then_some(n),
                Node::Dot { .. } => (c != b'\n').then_some(n),
                Node::BoText { .. } => (phase == Phase::Begin { bot: true }).then_some(n),
                Node::EoText { .. } if phase == Phase::EndA => {
                    if let Flow::Plain(e) = self.fin(s, start, pos) {
                        return Flow::Plain(e);
                    }
                    None
                }
                Node::EoText { .. } => (phase == Phase::Begin { bot: true }).then_some(n),
                Node::Fin => {
                    if let Flow::Plain(e) = self.fin(s, start, pos) {
                        return Flow::Plain(e);
                    }
                    None
                }
            };
            if let Some(node) = consumed
                && phase != Phase::EndB
            {
                let m = s.sc.marks[node as usize];
                if m == 0 {
                    s.sc.next.push(Thread { node, start });
                    s.sc.marks[node as usize] = s.sc.next.len() as u32;
                } else {
                    let t = &mut s.sc.next[m as usize - 1];
                    t.start = t.start.min(start);
                }
            }
            match s.sc.stack.pop() {
                Some(b) => n = b,
                None => return Flow::Continue,
            }
        }
    }

    /// A thread reached the end of the pattern at `pos`. Without a `\/`
    /// position this is the earliest-ending match: done. With one, remember
    /// it, drop every thread whose split point is later, start no new ones,
    /// and let the survivors extend the match.
    fn fin(&self, s: &mut Search<'_>, start: isize, pos: isize) -> Flow {
        if start >= s.pend {
            return Flow::Plain(pos);
        }
        s.bom = start;
        s.eom = Some(pos);
        s.sc.cur.retain(|t| t.start <= start);
        let before = s.sc.next.len();
        s.sc.next.retain(|t| t.start <= start);
        if s.sc.next.len() != before {
            s.sc.marks.iter_mut().for_each(|m| *m = 0);
            for (i, t) in s.sc.next.iter().enumerate() {
                s.sc.marks[t.node as usize] = i as u32 + 1;
            }
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain condition sees: no match, a match, or a match with MATCH.
    #[derive(Debug, PartialEq)]
    enum Want {
        No,
        Yes,
        Match(&'static str),
    }
    use Want::*;

    fn got(re: &Regex, area: &[u8]) -> Want {
        match re.find_match(area) {
            None => No,
            Some(None) => Yes,
            Some(Some(r)) => {
                let s = String::from_utf8(area[r].to_vec()).unwrap();
                Match(Box::leak(s.into_boxed_str()))
            }
        }
    }

    /// Every `want` was checked against procmail 3.23pre (Debian 3.22-27)
    /// with `:0 B` (`D B` when case-sensitive), the area as the body, and
    /// `LOG="[$MATCH]"` in the block.
    #[test]
    fn body_conditions_match_procmail() {
        let table: &[(&str, bool, &str, Want)] = &[
            // literals, case, escapes, braces, POSIX classes
            ("a+", false, "xaaa", Yes),
            ("ABC", false, "xabcx", Yes),
            ("ABC", true, "abc", No),
            ("[A-Z]", true, "abc", No),
            ("[A-Z]", false, "abc", Yes),
            ("\\n", false, "n", Yes),
            ("a{2}", false, "aa", No),
            ("a{2}", false, "a{2}", Yes),
            ("[[:alpha:]]", false, "a", No),
            ("[[:alpha:]]", false, ":]", Yes),
            ("[z-a]", false, "b", No),
            ("[z-a]", false, "a", Yes),
            ("[abc", false, "xbz", Yes),
            // a second postfix operator and a leading one are literal
            ("a**", false, "aaa", No),
            ("a**", false, "aa*", Yes),
            ("*a", false, "*a", Yes),
            ("*a", false, "a", No),
            // ^ and $ consume newlines; virtual newlines around the area
            ("()$", false, "abc", Yes),
            ("x*$", false, "abc", Yes),
            ("c$", false, "abc", Yes),
            ("first$line", false, "first\nline", Yes),
            ("Priya$^^", false, "Priya\n", Yes),
            ("Priya^^", false, "Priya\n", No),
            ("Priya$^^", false, "Priya", No),
            ("^^", false, "abc", Yes),
            ("()^^abc", false, "abc", Yes),
            ("x^^abc", false, "xabc", No),
            // \< and \> consume one non-word byte, virtual newlines count
            ("()\\<Word", false, "Word", Yes),
            ("here\\>", false, "here", Yes),
            ("x\\<", false, "x", Yes),
            // \/ and MATCH
            ("()\\/closures$", false, "closures\n", Match("closures\n")),
            (
                "^From:.*\\/[a-z]+@[a-z.]+",
                false,
                "From: Bob <bob@x.org>, alice@example.com",
                Match("bob@x.org"),
            ),
            (
                "^Subject: *\\/[^ ].*",
                false,
                "Subject:   hi there",
                Match("hi there"),
            ),
            (
                "^Subject:\\/.*",
                false,
                "Subject:   hi there",
                Match("   hi there"),
            ),
            (
                "^Subject:.*\\/[a-z]+",
                false,
                "Subject:  Hello World",
                Match("Hello"),
            ),
            ("x\\/", false, "x\n", Match("")),
            ("x\\/$", false, "x\nyy", Match("\n")),
            ("x\\/$$y", false, "x\n\nyy", Match("\n\ny")),
            ("c\\/$", false, "abc", Match("")),
            ("c\\/$", false, "abc\n", Match("\n")),
            ("()\\/$", false, "abc\n", Match("")),
            ("()\\/", false, "abc", Match("")),
            ("abc\\/", false, "abc", Match("")),
            ("a\\/b*", false, "abbbc", Match("bbb")),
            ("a*\\/b*", false, "aabbc", Match("")),
            ("a+\\/a*", false, "aaa", Match("aa")),
            (".*\\/a", false, "xaya", Match("a")),
            ("(a|ab)\\/c*", false, "abcc", Match("")),
            ("x\\/.*$^^", false, "x1\n2\n", No),
            ("a\\/b|c", false, "c", Yes),
            // procmail's branch order is visible through \/
            ("x(\\/a|b)", false, "xb", Match("b")),
            ("x(b|\\/a)", false, "xb", Yes),
            // a \/ ending an alternative runs on into the next ones
            ("b\\/|\\A^", false, "Axbb", No),
            ("b\\/|\\A^", false, "xba\n", Match("a\n")),
        ];
        for (pat, cs, area, want) in table {
            let re = Regex::new(pat.as_bytes(), *cs).unwrap();
            assert_eq!(
                got(&re, area.as_bytes()),
                *want,
                "pattern {pat:?} on {area:?}"
            );
            assert_eq!(
                re.is_match(area.as_bytes()),
                *want != No,
                "is_match {pat:?} on {area:?}"
            );
        }
    }

    /// Header areas as procmail searches them (the separating empty line
    /// included), checked with procmail 3.23pre and a `:0` (`:0 D`) recipe.
    #[test]
    fn header_macros_match_procmail() {
        let table: &[(&str, bool, bool, &str, Want)] = &[
            ("^TO_smith@x", false, false, "To: jo.smith@x\n", No),
            ("^TO_smith@x", false, false, "To: Jo <smith@x>\n", Yes),
            ("^TO_smith@x", false, false, "Cc: a, smith@x\n", Yes),
            ("^TOusers", false, false, "To: mylist-users@x\n", Yes),
            ("^TO_users", false, false, "To: mylist-users@x\n", No),
            (
                "^FROM_MAILER",
                false,
                false,
                "From: root@host (Cron Daemon)\n",
                Yes,
            ),
            ("^FROM_DAEMON", false, false, "Precedence: bulk\n", Yes),
            // ^FROM_DAEMON stays case-insensitive under D, ^TO_ does not
            ("^FROM_DAEMON", true, false, "precedence: BULK\n", Yes),
            ("^TO_smith", true, false, "to: smith@x\n", No),
            // `* \^TO_smith`: the condition's backslash keeps it literal
            ("^TO_smith", false, true, "To: smith@x\n", No),
            ("(\\^TO_smith)", false, false, "XTO_smith\n", No),
            // an escaped first occurrence stops the expansion of that macro
            ("x|\\^TO_a|^TO_b", false, false, "To: b\n", No),
            ("^TO_a|^TO_b", false, false, "To: b\n", Yes),
            ("ascii$$^^", false, false, "X-Foo: ascii\n", Yes),
            ("ascii$^^", false, false, "X-Foo: ascii\n", No),
        ];
        for (pat, cs, bs, fields, want) in table {
            let area = format!("From: z@y\n{fields}\n");
            let opts = Options {
                case_sensitive: *cs,
                leading_backslash: *bs,
            };
            let re = Regex::with_options(pat.as_bytes(), opts).unwrap();
            assert_eq!(
                got(&re, area.as_bytes()),
                *want,
                "pattern {pat:?} on {area:?}"
            );
        }
        // Continuation lines are joined by the caller (spec §3); MATCH spans them.
        let re = Regex::new(b"^X-Foo:\\/.*", false).unwrap();
        assert_eq!(got(&re, b"X-Foo: one,  two\n\n"), Match(" one,  two"));
    }

    /// Weighted counts, checked with procmail 3.23pre as `* 1^1 pattern`
    /// then `LOG="$="` (the count is the number of steps; a final Empty
    /// step means procmail's tail rule applies).
    #[test]
    fn weighted_steps_match_procmail() {
        use Step::{Empty as E, Progress as P};
        let table: &[(&str, &str, &[Step])] = &[
            ("a+", "aaa", &[P, P, P]),
            ("[a-z]+", "ab cd", &[P, P, P, P]),
            ("^.*$", "l1\nl2\nl3\n", &[P, P, P, P]),
            ("^.*$", "l1\nl2\nl3", &[P, P, P]),
            ("x*", "abc", &[E]), // 1^1 -> 2147483647, 1^0.5 -> 2
            ("a\\/b", "abab", &[P, P]),
            ("a\\/", "aaa", &[P, P, P]),
            ("o", "foo boo", &[P, P, P, P]),
            ("^", "abc", &[E]),
        ];
        for (pat, area, want) in table {
            let re = Regex::new(pat.as_bytes(), false).unwrap();
            let got: Vec<Step> = re.matches(area.as_bytes()).collect();
            assert_eq!(&got, want, "pattern {pat:?} on {area:?}");
        }
    }

    #[test]
    fn weighted_split_reports_each_match() {
        let re = Regex::new(b"a\\/b", false).unwrap();
        let area = b"ab.ab";
        let mut it = re.matches(area);
        let mut got = Vec::new();
        while let Some(step) = it.next() {
            got.push((step, it.split()));
        }
        assert_eq!(
            got,
            vec![(Step::Progress, Some(1..2)), (Step::Progress, Some(4..5))]
        );
    }

    /// procmail logs `Invalid regexp` and still searches with what it made
    /// of the pattern (checked: `a)b` matches `a`, `(a` matches `a`, `a(b`
    /// needs `ab`).
    #[test]
    fn invalid_patterns_report_and_recover_like_procmail() {
        let table: &[(&str, RegexError, &str, bool)] = &[
            ("a)b", RegexError::UnmatchedClose { offset: 1 }, "a", true),
            ("a)b", RegexError::UnmatchedClose { offset: 1 }, "xb", false),
            ("(a", RegexError::UnclosedGroup { offset: 0 }, "a", true),
            ("a(b", RegexError::UnclosedGroup { offset: 1 }, "a", false),
            ("a(b", RegexError::UnclosedGroup { offset: 1 }, "ab", true),
            ("a(b|c", RegexError::UnclosedGroup { offset: 1 }, "ac", true),
            ("((a)", RegexError::UnclosedGroup { offset: 0 }, "a", true),
            // offsets count in the pattern as written, before macro expansion
            (
                "^TO_x)",
                RegexError::UnmatchedClose { offset: 5 },
                "To: x\n",
                true,
            ),
        ];
        for (pat, want_err, area, want_match) in table {
            assert_eq!(
                Regex::new(pat.as_bytes(), false).unwrap_err(),
                *want_err,
                "{pat:?}"
            );
            let (re, err) = Regex::new_lenient(pat.as_bytes(), Options::default());
            assert_eq!(err.as_ref(), Some(want_err));
            assert_eq!(
                re.is_match(area.as_bytes()),
                *want_match,
                "{pat:?} on {area:?}"
            );
        }
        let msg = RegexError::UnclosedGroup { offset: 3 }.to_string();
        assert_eq!(msg, "invalid regexp: unclosed `(` at byte 3");
    }

    #[test]
    fn absurd_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        let re = Regex::new(deep.as_bytes(), false).unwrap();
        assert!(re.is_match(b"xax"));
        let deeper = format!("x{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        let want = RegexError::TooDeep {
            offset: 1 + MAX_NESTING,
        };
        assert_eq!(Regex::new(deeper.as_bytes(), false).unwrap_err(), want);
    }

    /// Skipping bytes that cannot start a match must never lose one: every
    /// search gives the same answer with the skip table switched off.
    #[test]
    fn skip_table_loses_no_match() {
        let patterns = [
            "abc", "$y|.z", "x*y", "[^a]b", "\\<is", "a\\/b+", "^^x", "b$^^", "(ab|c)+d",
        ];
        let areas = [
            "", "abc", "xxabcx", "q\n\ny", "aaab", "this is", "xbb", "ab", "cabd\n", "\nb",
        ];
        for pat in patterns {
            let re = Regex::new(pat.as_bytes(), false).unwrap();
            let mut slow = re.clone();
            slow.can_skip = false;
            slow.prefilter = None;
            slow.use_dfa = false;
            for area in areas {
                let area = area.as_bytes();
                assert_eq!(
                    re.find_match(area),
                    slow.find_match(area),
                    "{pat:?} on {area:?}"
                );
                let want: Vec<Step> = slow.matches(area).collect();
                assert_eq!(
                    re.matches(area).collect::<Vec<_>>(),
                    want,
                    "{pat:?} on {area:?}"
                );
            }
        }
        let re = Regex::new(b"$y|.z", false).unwrap();
        assert!(re.can_skip && re.skip[usize::from(b'\n')] && re.skip[usize::from(b'a')]);
        let re = Regex::new(b"abc", false).unwrap();
        assert!(re.skip[usize::from(b'A')] && !re.skip[usize::from(b'b')]);
        let re = Regex::new(b"abc", true).unwrap();
        assert!(!re.skip[usize::from(b'A')]);
        assert!(!Regex::new(b"x*", false).unwrap().can_skip);
        assert!(Regex::new(b"needle", false).unwrap().prefilter.is_some());
    }

    #[test]
    fn starts_find_the_first_of_their_bytes_across_blocks() {
        let mut area = vec![b'.'; 10_000];
        for (at, b) in [(5000, b'b'), (4095, b'c'), (9000, b'a'), (4096, b'a')] {
            area[at] = b;
        }
        let naive =
            |bytes: &[u8], from: usize| (from..area.len()).find(|&i| bytes.contains(&area[i]));
        for bytes in [&b"a"[..], b"b", b"ab", b"ba", b"abc", b"cb", b"xyz", b"x"] {
            let s = Starts(bytes.to_vec());
            for from in [0, 1, 4095, 4096, 4097, 5000, 5001, 9000, 9001, 9999, 10_000] {
                assert_eq!(
                    s.find(&area, from),
                    naive(bytes, from),
                    "{bytes:?} from {from}"
                );
            }
        }
        assert_eq!(Starts(b"a".to_vec()).find(b"", 0), None);
    }

    /// A small fixed-seed generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    /// The lazy DFA must give the simulation's answer to every question:
    /// random patterns over the dialect's alphabet (anchors, `^^`, `\<`,
    /// `\>`, `\/`, classes, groups, operators, unbalanced parentheses,
    /// macros) against random small areas with newlines, both cases, every
    /// entry point (`is_match`, `find_match`, weighted `matches`).
    #[test]
    fn dfa_agrees_with_simulation_on_random_patterns() {
        const PIECES: &[&str] = &[
            "a", "b", "A", "x", "_", " ", ".", "^", "$", "^^", "\\<", "\\>", "(", ")", "|", "*",
            "+", "?", "[ab]", "[^a]", "[a-", "[^", "]", "-", "\\/", "\\", "\\.", "(a|b)", "()",
            "^TO_", "a*", ".*", "\n",
        ];
        const AREA: &[u8] = b"abAxB_ .\n\n";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut used_dfa = 0;
        for round in 0..4000 {
            let mut pat = String::new();
            for _ in 0..1 + rng.below(7) {
                pat.push_str(PIECES[rng.below(PIECES.len())]);
            }
            let opts = Options {
                case_sensitive: round % 3 == 0,
                leading_backslash: round % 7 == 0,
            };
            let (fast, _) = Regex::new_lenient(pat.as_bytes(), opts);
            let mut slow = fast.clone();
            slow.use_dfa = false;
            for _ in 0..6 {
                let area: Vec<u8> = (0..rng.below(13))
                    .map(|_| AREA[rng.below(AREA.len())])
                    .collect();
                let ctx = format!("{pat:?} {opts:?} on {:?}", String::from_utf8_lossy(&area));
                assert_eq!(fast.find_match(&area), slow.find_match(&area), "{ctx}");
                assert_eq!(fast.is_match(&area), slow.is_match(&area), "{ctx}");
                let steps = |re: &Regex| {
                    let mut it = re.matches(&area);
                    let mut got = Vec::new();
                    while let Some(step) = it.next() {
                        got.push((step, it.split()));
                    }
                    got
                };
                assert_eq!(steps(&fast), steps(&slow), "{ctx}");
            }
            let states = fast
                .lazy
                .lock()
                .unwrap()
                .as_ref()
                .map_or(0, |c| c.info.len());
            used_dfa += usize::from(states > 1);
        }
        // The comparison means something only if the DFA really ran.
        assert!(
            used_dfa > 2000,
            "the DFA built states for {used_dfa} patterns"
        );
    }

    /// The same on longer areas (up to 2 KB of a small alphabet), where a
    /// search walks through many DFA states, and with the big macros.
    #[test]
    fn dfa_agrees_with_simulation_on_long_areas() {
        const PIECES: &[&str] = &[
            "a",
            "b",
            ".",
            "^",
            "$",
            "^^",
            "\\<",
            "\\>",
            "(",
            ")",
            "|",
            "*",
            "+",
            "?",
            "[ab]",
            "[^a]",
            "\\/",
            "(a|b)",
            ".*",
            "a*",
            "b+",
            "^FROM_DAEMON",
            "^FROM_MAILER",
            "^TO",
        ];
        const AREA: &[u8] = b"aabbb  \n:-@";
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..300 {
            let mut pat = String::new();
            for _ in 0..1 + rng.below(10) {
                pat.push_str(PIECES[rng.below(PIECES.len())]);
            }
            let (fast, _) = Regex::new_lenient(pat.as_bytes(), Options::default());
            let mut slow = fast.clone();
            slow.use_dfa = false;
            let len = rng.below(2048);
            let area: Vec<u8> = (0..len).map(|_| AREA[rng.below(AREA.len())]).collect();
            let ctx = format!("round {round}: {pat:?} on {len} bytes");
            assert_eq!(fast.find_match(&area), slow.find_match(&area), "{ctx}");
            let fast_steps: Vec<Step> = fast.matches(&area).take(50).collect();
            let slow_steps: Vec<Step> = slow.matches(&area).take(50).collect();
            assert_eq!(fast_steps, slow_steps, "{ctx}");
        }
    }

    /// One `Regex` searched from several threads at once: whoever finds the
    /// DFA cache busy runs the simulation, and every answer is the same.
    #[test]
    fn shared_regex_answers_alike_on_every_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Regex>();
        let re = Regex::new(b"^Subject:.*\\<(budget|invoice)\\>", false).unwrap();
        let mut area = b"From: a@b\nSubject: the INVOICE for may\n".repeat(50);
        area.extend_from_slice(b"X: y\n");
        let want = (re.is_match(&area), re.matches(&area).count());
        assert_eq!(want, (true, 50));
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|_| (re.is_match(&area), re.matches(&area).count()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                assert!(h.join().unwrap().iter().all(|got| *got == want));
            }
        });
    }

    #[test]
    fn valid_oddities_compile() {
        for pat in [
            "", "()", "|", "(|a)", "a||b", "(a*)*", "()*", "[", "[]", "\\", "a\\/\\/b", "^^^^",
        ] {
            assert!(Regex::new(pat.as_bytes(), false).is_ok(), "{pat:?}");
        }
        assert!(Regex::new(b"", false).unwrap().is_match(b""));
        assert!(Regex::new(b"(a*)*b", false).unwrap().is_match(b"aab"));
        assert!(Regex::new(b"a\\", false).unwrap().is_match(b"a\\"));
        assert!(Regex::new(b"a\\/b", false).unwrap().has_match_split());
        let re = Regex::new(b"x\0y", false).unwrap();
        assert!(re.is_match(b"xz") && !re.is_match(b"yz"));
        assert!(!Regex::new(b"a\\\\/b", false).unwrap().has_match_split());
    }

    #[test]
    fn non_ascii_bytes_are_plain_bytes() {
        let re = Regex::new(b"caf\xe9", false).unwrap();
        assert!(re.is_match(b"un caf\xe9"));
        assert!(!re.is_match(b"un caf\xc9")); // folding is ASCII only
        let re = Regex::new(b"[^a]", false).unwrap();
        assert_eq!(re.find_match(b"\xff"), Some(None));
        assert_eq!(re.find_match(b"\n"), None); // [^...] never takes a newline
    }

    #[test]
    fn big_area_without_match() {
        let area = vec![b'x'; 20 << 20];
        let re = Regex::new(b"needle", false).unwrap();
        assert!(!re.is_match(&area));
        let re = Regex::new(b"^x*y$", false).unwrap();
        assert!(!re.is_match(&area));
        let re = Regex::new(b"x\\/x*", false).unwrap();
        assert_eq!(re.find_match(&area), Some(Some(1..area.len())));
    }
}
