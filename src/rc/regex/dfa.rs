//! A lazily built DFA over the [`Regex`] program, for the bytes inside the
//! area (the `Real` steps of the simulation).
//!
//! This module owns the byte classes of a program and the cache of DFA
//! states. A state is exactly the *set* of live consuming nodes of the Pike
//! simulation; a transition is exactly one simulation step restricted to
//! sets, so nothing is translated and nothing can drift from the NFA. That
//! is sound only where the simulation's answer depends on sets alone, which
//! is so until the first completed match (the thread order and the `\/`
//! positions decide *which* split match wins, never *whether* and *where*
//! the first match ends; see [`Regex::search`]). It must never be used past
//! the first match of a pattern with `\/`, never for the virtual newlines
//! (the callers run those steps with the simulation itself), and never grow
//! without bound (the cache is dropped and rebuilt past [`MAX_STATES`]).

use super::{ByteSet, Node, Regex, Scratch, Thread};

/// A transition not computed yet (it has [`FIN_BIT`] set, so the scan
/// loop tests one bit for both rare cases).
pub(super) const UNKNOWN: u32 = u32::MAX;
/// In a transition: the state it leads to completes a match at the next
/// `Real` step ([`Info::fin`]). The rest of the entry is the target's row.
pub(super) const FIN_BIT: u32 = 1 << 31;
/// The state with no live node; always state 0.
pub(super) const EMPTY: u32 = 0;
/// More states than this and the cache is emptied and built again, so that
/// a hostile pattern on a big area costs time, never memory (about
/// `MAX_STATES × (classes + nodes) × 4` bytes at most). The unit tests use
/// a tiny bound so that every differential test also runs through rebuilds.
pub(super) const MAX_STATES: usize = if cfg!(test) { 24 } else { 2048 };

/// Byte equivalence classes: two bytes of the area in one class are treated
/// alike by every node of the program (after case folding).
#[derive(Clone, Debug)]
pub(super) struct Classes {
    /// `map[b]`: the class of area byte `b`.
    pub(super) map: [u8; 256],
    /// `reps[k]`: a byte of class `k` as the program tests it (folded).
    pub(super) reps: [u8; 256],
    /// The number of classes.
    pub(super) len: usize,
}

impl Classes {
    /// Classes from the boundaries of every test in the program: a boundary
    /// at `c` separates `c` from `c + 1`.
    pub(super) fn new(prog: &[Node], fold: bool) -> Classes {
        let mut cut = ByteSet::default();
        let single = |cut: &mut ByteSet, b: u8| {
            cut.set(b, true);
            if b > 0 {
                cut.set(b - 1, true);
            }
        };
        for n in prog {
            match n {
                Node::Byte { byte, .. } => single(&mut cut, *byte),
                Node::Dot { .. } => single(&mut cut, b'\n'),
                Node::Class { set, .. } => {
                    // bit c of set ^ (set >> 1): c and c + 1 differ.
                    for w in 0..4 {
                        let hi = if w < 3 { set.0[w + 1] << 63 } else { 0 };
                        cut.0[w] |= set.0[w] ^ ((set.0[w] >> 1) | hi);
                    }
                }
                _ => {}
            }
        }
        // Class k is the k-th run of bytes between cuts; `reps[k]` is its
        // first byte. An area byte takes the class of its folded value
        // (with folding, the runs of uppercase letters are never used).
        let mut map = [0u8; 256];
        let mut reps = [0u8; 256];
        let mut len = 1;
        let mut from = 0usize;
        for (w, &word) in cut.0.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let c = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if c == 255 {
                    break;
                }
                map[from..=c].fill((len - 1) as u8);
                from = c + 1;
                reps[len] = from as u8;
                len += 1;
            }
        }
        map[from..].fill((len - 1) as u8);
        if fold {
            for b in b'A'..=b'Z' {
                map[usize::from(b)] = map[usize::from(b | 0x20)];
            }
        }
        Classes { map, reps, len }
    }
}

/// The states built so far and their transitions.
#[derive(Debug)]
pub(super) struct Cache {
    /// The byte classes of the program.
    pub(super) classes: Classes,
    ncls: usize,
    /// `trans[state * ncls + class]`: the next state's row (its id times
    /// `ncls`), with [`FIN_BIT`] when it completes a match; or [`UNKNOWN`].
    /// Rows stay below `FIN_BIT`: `MAX_STATES × 256` is far smaller.
    pub(super) trans: Vec<u32>,
    /// What each state is.
    pub(super) info: Vec<Info>,
    /// The live nodes of each state (sorted), flat.
    nodes: Vec<u32>,
    /// The consuming nodes of each state's `Real` closure (sorted), flat.
    cons: Vec<u32>,
    /// Open-addressing index of the states by node set: 1 + state id, 0
    /// for a free slot; its length is a power of two, over twice the
    /// number of states.
    index: Vec<u32>,
}

/// One DFA state.
#[derive(Clone, Copy, Debug)]
pub(super) struct Info {
    /// Its live nodes: `nodes[nodes.0..nodes.1]`.
    nodes: (u32, u32),
    /// The consuming nodes of its closure: `cons[cons.0..cons.1]`.
    cons: (u32, u32),
    /// A `Real` step from this state completes a match (the end of the
    /// pattern is in the closure of the state and a new start).
    pub(super) fin: bool,
}

impl Cache {
    /// An empty cache for `re`; `sc` lends working memory.
    pub(super) fn new(re: &Regex, sc: &mut Scratch) -> Cache {
        let classes = Classes::new(&re.prog, re.fold);
        // Sized for the dozen states a header search typically builds, so
        // that a one-shot search does not spend its time reallocating.
        const STATES: usize = 16;
        let ncls = classes.len;
        let mut c = Cache {
            ncls,
            classes,
            trans: Vec::with_capacity(STATES * ncls),
            info: Vec::with_capacity(STATES),
            nodes: Vec::with_capacity(STATES * 4),
            cons: Vec::with_capacity(STATES * 8),
            index: vec![0; 2 * STATES],
        };
        c.add(re, &[], sc);
        c
    }

    /// Forgets every state but [`EMPTY`].
    fn clear(&mut self, re: &Regex, sc: &mut Scratch) {
        self.trans.clear();
        self.info.clear();
        self.nodes.clear();
        self.cons.clear();
        self.index.iter_mut().for_each(|v| *v = 0);
        self.add(re, &[], sc);
    }

    pub(super) fn ncls(&self) -> usize {
        self.ncls
    }

    /// The state for the live threads in `sc.next` (their `\/` positions
    /// are dropped: callers use this only where none is set); empties
    /// `sc.next` and its marks.
    pub(super) fn state_of_threads(&mut self, re: &Regex, sc: &mut Scratch) -> u32 {
        let mut set = std::mem::take(&mut sc.set);
        set.clear();
        for t in sc.next.drain(..) {
            sc.marks[t.node as usize] = 0;
            set.push(t.node);
        }
        set.sort_unstable();
        set.dedup();
        let id = match self.find(&set) {
            Some(id) => id,
            None => self.add(re, &set, sc),
        };
        sc.set = set;
        id
    }

    /// Puts the live nodes of `state` back as threads in `sc.next` (none
    /// past `\/`).
    pub(super) fn threads_of_state(&self, state: u32, pend: isize, sc: &mut Scratch) {
        for &node in self.nodes_of(state) {
            sc.next.push(Thread { node, start: pend });
            sc.marks[node as usize] = sc.next.len() as u32;
        }
    }

    /// A transition entry leading to state `id`.
    fn entry(&self, id: u32) -> u32 {
        let fin = if self.info[id as usize].fin {
            FIN_BIT
        } else {
            0
        };
        (id * self.ncls as u32) | fin
    }

    /// The transition of `state` on byte class `k`, computed and stored;
    /// returns the entry (see [`Cache::trans`]).
    pub(super) fn compute(&mut self, re: &Regex, state: u32, k: usize, sc: &mut Scratch) -> u32 {
        let s = state as usize;
        let c = self.classes.reps[k];
        let mut set = std::mem::take(&mut sc.set);
        set.clear();
        let (from, to) = self.info[s].cons;
        for &n in &self.cons[from as usize..to as usize] {
            if accepts(&re.prog[n as usize], c) {
                set.push(n);
            }
        }
        let next = if set.is_empty() {
            EMPTY
        } else if let Some(id) = self.find(&set) {
            id
        } else if self.info.len() >= MAX_STATES {
            // The transition is not stored: `state` is gone.
            self.clear(re, sc);
            let id = self.add(re, &set, sc);
            sc.set = set;
            return self.entry(id);
        } else {
            self.add(re, &set, sc)
        };
        sc.set = set;
        let entry = self.entry(next);
        self.trans[s * self.ncls + k] = entry;
        entry
    }

    fn nodes_of(&self, id: u32) -> &[u32] {
        let (from, to) = self.info[id as usize].nodes;
        &self.nodes[from as usize..to as usize]
    }

    /// The state whose node set is `set`, if it exists.
    fn find(&self, set: &[u32]) -> Option<u32> {
        let mask = self.index.len() - 1;
        let mut i = hash(set) & mask;
        loop {
            match self.index[i] {
                0 => return None,
                v if self.nodes_of(v - 1) == set => return Some(v - 1),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn index_insert(&mut self, id: u32) {
        let mask = self.index.len() - 1;
        let mut i = hash(self.nodes_of(id)) & mask;
        while self.index[i] != 0 {
            i = (i + 1) & mask;
        }
        self.index[i] = id + 1;
    }

    /// Adds a state for `set` (sorted, not yet a state).
    fn add(&mut self, re: &Regex, set: &[u32], sc: &mut Scratch) -> u32 {
        let id = self.info.len() as u32;
        // The closure of a `Real` step: a new start at the entry (no match
        // is known yet, so the simulation always starts one) and the
        // successors of the live nodes. Every epsilon node is walked once,
        // the set semantics of the simulation's marks and fork visits. The
        // walk borrows the simulation's visit marks under a generation of
        // its own (every simulation step starts a new one).
        sc.new_generation();
        let g = sc.generation;
        sc.stack.clear();
        sc.stack.push(re.entry);
        for &n in set {
            sc.stack.push(re.next_of(n));
        }
        let cons_from = self.cons.len();
        let mut fin = false;
        while let Some(n) = sc.stack.pop() {
            let v = &mut sc.visits[n as usize];
            if v.0 == g {
                continue;
            }
            *v = (g, 0);
            match &re.prog[n as usize] {
                Node::Split { first, second } => {
                    sc.stack.push(*second);
                    sc.stack.push(*first);
                }
                Node::Jump { next } | Node::Bom { next } => sc.stack.push(*next),
                Node::Fin => fin = true,
                Node::Byte { .. } | Node::Class { .. } | Node::Dot { .. } => self.cons.push(n),
                // `^^` takes only a virtual newline, never a real byte.
                Node::BoText { .. } | Node::EoText { .. } => {}
            }
        }
        self.cons[cons_from..].sort_unstable();
        let nodes_from = self.nodes.len();
        self.nodes.extend_from_slice(set);
        self.info.push(Info {
            nodes: (nodes_from as u32, self.nodes.len() as u32),
            cons: (cons_from as u32, self.cons.len() as u32),
            fin,
        });
        self.trans.resize(self.trans.len() + self.ncls, UNKNOWN);
        if self.info.len() * 2 > self.index.len() {
            self.index = vec![0; self.index.len() * 2];
            for s in 0..self.info.len() as u32 {
                self.index_insert(s);
            }
        } else {
            self.index_insert(id);
        }
        id
    }
}

/// A quick multiplicative hash of a node set (no need to resist attack:
/// the sets come from the program, and a bad spread costs time only).
fn hash(set: &[u32]) -> usize {
    let mut h: u64 = set.len() as u64;
    for &n in set {
        h = (h.rotate_left(5) ^ u64::from(n)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    (h >> 32) as usize
}

/// Whether consuming node `n` takes the (folded) byte `c` at a real position.
fn accepts(n: &Node, c: u8) -> bool {
    match n {
        Node::Byte { byte, .. } => *byte == c,
        Node::Class { set, .. } => set.contains(c),
        Node::Dot { .. } => c != b'\n',
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Step;
    use super::*;

    /// Bytes in one class must be alike for every node of the program.
    #[test]
    fn classes_never_merge_bytes_a_node_tells_apart() {
        for (pat, cs) in [
            ("abc", true),
            ("abc", false),
            ("[^a-z]x.", false),
            ("\\<w\\>", true),
            ("^TO_x", false),
            ("[\u{1}-\u{2}]\u{ff}", true),
        ] {
            let re = Regex::new(pat.as_bytes(), cs).unwrap();
            let classes = Classes::new(&re.prog, re.fold);
            for a in 0..=255u8 {
                for b in 0..=255u8 {
                    if classes.map[usize::from(a)] != classes.map[usize::from(b)] {
                        continue;
                    }
                    let (fa, fb) = (re.fold_byte(a), re.fold_byte(b));
                    let rep = classes.reps[usize::from(classes.map[usize::from(a)])];
                    for n in &re.prog {
                        assert_eq!(accepts(n, fa), accepts(n, fb), "{pat:?}: {a} vs {b}");
                        // The representative the DFA tests stands for them.
                        assert_eq!(accepts(n, fa), accepts(n, rep), "{pat:?}: {a} vs {rep}");
                    }
                }
            }
        }
        // Few classes for a literal: its letters, the rest between them.
        let re = Regex::new(b"ab", true).unwrap();
        assert_eq!(Classes::new(&re.prog, re.fold).len, 4);
    }

    #[test]
    fn cache_is_rebuilt_past_its_bound() {
        // `(a|b)*a(a|b)^12`-style blow-up: 2^n states on random a/b text.
        let pat = format!("a{}x", "[ab]".repeat(14));
        let re = Regex::new(pat.as_bytes(), true).unwrap();
        let mut seed = 1u32;
        let area: Vec<u8> = (0..200_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                if seed & 1 == 0 { b'a' } else { b'b' }
            })
            .collect();
        assert!(!re.is_match(&area));
        {
            let g = re.lazy.lock().unwrap();
            let states = g.as_ref().unwrap().info.len();
            assert!(states <= MAX_STATES, "{states} states");
        }
        // Answers stay the simulation's across the rebuilds: a match at the
        // very end, found after the cache was emptied many times.
        let mut slow = re.clone();
        slow.use_dfa = false;
        let mut area = area;
        area.extend_from_slice(b"a");
        area.extend(std::iter::repeat_n(b'b', 14));
        area.push(b'x');
        let want = slow.find_match(&area);
        assert_eq!(want, Some(None));
        assert_eq!(re.find_match(&area), want);
        let steps: Vec<Step> = re.matches(&area).collect();
        assert_eq!(steps, slow.matches(&area).collect::<Vec<_>>());
    }
}
