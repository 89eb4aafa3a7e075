//! The table backend: a key → value lookup with case-insensitive keys, and
//! its in-memory twin.
//!
//! Lookup logic (virtusertable key order, alias expansion) is written against
//! the [`Table`] trait, so a test can hand it a [`MemTable`] built in code and
//! another backend (a database, a reloadable file) can be added without
//! touching that logic (OpenSMTPD's table backends). A table never reads a
//! file or the network itself: whoever builds it does.

use std::collections::HashMap;

/// A read-only map from keys to values, keys compared ASCII
/// case-insensitively (mta-semantics A.1: keys are folded to lower case
/// when the map is built and when it is queried; values never are).
pub trait Table {
    /// The value stored for `key`, if any.
    fn lookup(&self, key: &[u8]) -> Option<&[u8]>;
}

/// A [`Table`] held in memory; the first insert of a key wins, as makemap
/// keeps the first of duplicate keys (A.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemTable {
    map: HashMap<Vec<u8>, Vec<u8>>,
}

impl MemTable {
    /// An empty table.
    pub fn new() -> MemTable {
        MemTable::default()
    }

    /// Adds `key` → `value` unless the key (in any case) is present;
    /// returns whether it was added.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> bool {
        let key = key.to_ascii_lowercase();
        if self.map.contains_key(&key) {
            return false;
        }
        self.map.insert(key, value.to_vec());
        true
    }

    /// A table from pairs (first wins).
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> MemTable {
        let mut t = MemTable::new();
        for (k, v) in pairs {
            t.insert(k.as_ref(), v.as_ref());
        }
        t
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Table for MemTable {
    fn lookup(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_values_do_not() {
        // mta-semantics A.1: keys folded both ways, values kept as written.
        let t = MemTable::from_pairs([("Bob@Example.TEST", "Robert")]);
        assert_eq!(t.lookup(b"bob@example.test"), Some(&b"Robert"[..]));
        assert_eq!(t.lookup(b"BOB@EXAMPLE.TEST"), Some(&b"Robert"[..]));
        assert_eq!(t.lookup(b"bob@other.test"), None);
    }

    #[test]
    fn first_insert_wins() {
        // A.1: makemap keeps the first of duplicate keys.
        let mut t = MemTable::new();
        assert!(t.insert(b"k", b"first"));
        assert!(!t.insert(b"K", b"second"));
        assert_eq!(t.lookup(b"k"), Some(&b"first"[..]));
        assert_eq!(t.len(), 1);
    }
}
