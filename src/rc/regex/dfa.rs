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

use super::{ByteSet, Node, Regex, Thread};

/// A transition not computed yet.
pub(super) const UNKNOWN: u32 = u32::MAX;
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
    pub(super) reps: Vec<u8>,
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
        let mut reps = vec![0u8];
        let mut from = 0usize;
        for (w, &word) in cut.0.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let c = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if c == 255 {
                    break;
                }
                map[from..=c].fill((reps.len() - 1) as u8);
                from = c + 1;
                reps.push(from as u8);
            }
        }
        map[from..].fill((reps.len() - 1) as u8);
        if fold {
            for b in b'A'..=b'Z' {
                map[usize::from(b)] = map[usize::from(b | 0x20)];
            }
        }
        Classes { map, reps }
    }
}

/// The states built so far and their transitions.
#[derive(Debug)]
pub(super) struct Cache {
    /// The byte classes of the program.
    pub(super) classes: Classes,
    ncls: usize,
    /// `trans[state * ncls + class]`: the next state, or [`UNKNOWN`].
    pub(super) trans: Vec<u32>,
    /// `fin[state]`: a `Real` step from this state completes a match (the
    /// end of the pattern is in the closure of the state and a new start).
    pub(super) fin: Vec<bool>,
    /// The live nodes of each state (sorted), flat, and where each starts.
    nodes: Vec<u32>,
    nodes_at: Vec<u32>,
    /// The consuming nodes of each state's `Real` closure (sorted), flat.
    cons: Vec<u32>,
    cons_at: Vec<u32>,
    /// Open-addressing index of the states by node set: 1 + state id, 0
    /// for a free slot; its length is a power of two, over twice the
    /// number of states.
    index: Vec<u32>,
    /// Closure working memory: `seen[node] == generation` once visited.
    seen: Vec<u32>,
    generation: u32,
    stack: Vec<u32>,
    buf: Vec<u32>,
}

impl Cache {
    pub(super) fn new(re: &Regex) -> Cache {
        let classes = Classes::new(&re.prog, re.fold);
        // Sized for the dozen states a header search typically builds, so
        // that a one-shot search does not spend its time reallocating.
        const STATES: usize = 16;
        let ncls = classes.reps.len();
        let nodes = re.prog.len();
        let mut at = Vec::with_capacity(STATES + 1);
        at.push(0);
        let mut c = Cache {
            ncls,
            classes,
            trans: Vec::with_capacity(STATES * ncls),
            fin: Vec::with_capacity(STATES),
            nodes: Vec::with_capacity(STATES * 4),
            nodes_at: at.clone(),
            cons: Vec::with_capacity(STATES * 8),
            cons_at: at,
            index: vec![0; 2 * STATES],
            seen: vec![0; nodes],
            generation: 0,
            stack: Vec::with_capacity(nodes.min(64)),
            buf: Vec::with_capacity(16),
        };
        c.add(re, &[]);
        c
    }

    /// Forgets every state but [`EMPTY`].
    fn clear(&mut self, re: &Regex) {
        self.trans.clear();
        self.fin.clear();
        self.nodes.clear();
        self.nodes_at.truncate(1);
        self.cons.clear();
        self.cons_at.truncate(1);
        self.index.iter_mut().for_each(|v| *v = 0);
        self.add(re, &[]);
    }

    pub(super) fn ncls(&self) -> usize {
        self.ncls
    }

    /// The state for the live threads in `next` (their `\/` positions are
    /// dropped: callers use this only where none is set); empties `next` and
    /// its marks.
    pub(super) fn state_of_threads(
        &mut self,
        re: &Regex,
        next: &mut Vec<Thread>,
        marks: &mut [u32],
    ) -> u32 {
        let mut set = std::mem::take(&mut self.buf);
        set.clear();
        for t in next.drain(..) {
            marks[t.node as usize] = 0;
            set.push(t.node);
        }
        set.sort_unstable();
        set.dedup();
        let id = self.intern(re, &set);
        self.buf = set;
        id
    }

    /// Puts the live nodes of `state` back as threads (none past `\/`).
    pub(super) fn threads_of_state(
        &self,
        state: u32,
        pend: isize,
        next: &mut Vec<Thread>,
        marks: &mut [u32],
    ) {
        let s = state as usize;
        for &node in &self.nodes[self.nodes_at[s] as usize..self.nodes_at[s + 1] as usize] {
            next.push(Thread { node, start: pend });
            marks[node as usize] = next.len() as u32;
        }
    }

    /// The transition of `state` on byte class `k`, computed and stored.
    pub(super) fn compute(&mut self, re: &Regex, state: u32, k: usize) -> u32 {
        let s = state as usize;
        let c = self.classes.reps[k];
        let mut set = std::mem::take(&mut self.buf);
        set.clear();
        set.extend(
            self.cons[self.cons_at[s] as usize..self.cons_at[s + 1] as usize]
                .iter()
                .copied()
                .filter(|&n| accepts(&re.prog[n as usize], c)),
        );
        let next = if set.is_empty() {
            EMPTY
        } else if let Some(id) = self.find(&set) {
            id
        } else if self.fin.len() >= MAX_STATES {
            // The transition is not stored: `state` is gone.
            self.clear(re);
            let id = self.add(re, &set);
            self.buf = set;
            return id;
        } else {
            self.add(re, &set)
        };
        self.buf = set;
        self.trans[s * self.ncls + k] = next;
        next
    }

    fn intern(&mut self, re: &Regex, set: &[u32]) -> u32 {
        match self.find(set) {
            Some(id) => id,
            None => self.add(re, set),
        }
    }

    fn nodes_of(&self, id: u32) -> &[u32] {
        let s = id as usize;
        &self.nodes[self.nodes_at[s] as usize..self.nodes_at[s + 1] as usize]
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

    fn index_insert(&mut self, set: &[u32], id: u32) {
        let mask = self.index.len() - 1;
        let mut i = hash(set) & mask;
        while self.index[i] != 0 {
            i = (i + 1) & mask;
        }
        self.index[i] = id + 1;
    }

    /// Adds a state for `set` (sorted, not yet a state).
    fn add(&mut self, re: &Regex, set: &[u32]) -> u32 {
        let id = self.fin.len() as u32;
        // The closure of a `Real` step: a new start at the entry (no match
        // is known yet, so the simulation always starts one) and the
        // successors of the live nodes. Every epsilon node is walked once,
        // the set semantics of the simulation's marks and fork visits.
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.seen.iter_mut().for_each(|v| *v = 0);
            self.generation = 1;
        }
        let g = self.generation;
        self.stack.clear();
        self.stack.push(re.entry);
        self.stack.extend(set.iter().map(|&n| re.next_of(n)));
        let cons_from = self.cons.len();
        let mut fin = false;
        while let Some(n) = self.stack.pop() {
            if std::mem::replace(&mut self.seen[n as usize], g) == g {
                continue;
            }
            match &re.prog[n as usize] {
                Node::Split { first, second } => {
                    self.stack.push(*second);
                    self.stack.push(*first);
                }
                Node::Jump { next } | Node::Bom { next } => self.stack.push(*next),
                Node::Fin => fin = true,
                Node::Byte { .. } | Node::Class { .. } | Node::Dot { .. } => self.cons.push(n),
                // `^^` takes only a virtual newline, never a real byte.
                Node::BoText { .. } | Node::EoText { .. } => {}
            }
        }
        self.cons[cons_from..].sort_unstable();
        self.cons_at.push(self.cons.len() as u32);
        self.nodes.extend_from_slice(set);
        self.nodes_at.push(self.nodes.len() as u32);
        self.fin.push(fin);
        self.trans.resize(self.trans.len() + self.ncls, UNKNOWN);
        if self.fin.len() * 2 > self.index.len() {
            self.index = vec![0; self.index.len() * 2];
            for s in 0..self.fin.len() as u32 {
                let h = hash(self.nodes_of(s));
                let mask = self.index.len() - 1;
                let mut i = h & mask;
                while self.index[i] != 0 {
                    i = (i + 1) & mask;
                }
                self.index[i] = s + 1;
            }
        } else {
            self.index_insert(set, id);
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
                    for n in &re.prog {
                        assert_eq!(accepts(n, fa), accepts(n, fb), "{pat:?}: {a} vs {b}");
                    }
                }
            }
        }
        // Few classes for a literal: its letters, the rest between them.
        let re = Regex::new(b"ab", true).unwrap();
        assert_eq!(Classes::new(&re.prog, re.fold).reps.len(), 4);
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
            let states = g.as_ref().unwrap().fin.len();
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
