//! The persistent map behind [`Context`](crate::Context): variable id → binding.
//!
//! Storage is a leaf: generic over the key (anything that is its numeric id, [`MapKey`]) and the
//! value, it imports nothing of the crate.
//!
//! Small contexts (the common case: a request id, a user, a deadline) are a flat array behind an
//! `Arc`, copied whole on write when shared and changed in place when not; past
//! [`SMALL_CAPACITY`] bindings the map becomes a hash array mapped trie (`imbl`), whose writes
//! copy only the path to the changed entry. Both are O(1) to clone. The threshold and the gain
//! are measured in `benches/growth.rs` (see BENCHMARKS.md).

use std::borrow::Borrow;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use imbl::GenericHashMap;
use imbl::shared_ptr::DefaultSharedPtr;

/// A key of a [`VarMap`]: a small integer id, plus whatever the user keeps beside it. It must
/// hash and compare as its id (the trie is looked up by id).
pub(crate) trait MapKey: Copy + Eq + Hash + Borrow<u64> {
    #[inline]
    fn id(&self) -> u64 {
        *self.borrow()
    }
}

/// Up to this many bindings the map is a flat array. Measured: a linear scan of 16 ids costs
/// about what a trie lookup costs, and copying 16 entries is cheaper than copying a trie node.
pub(crate) const SMALL_CAPACITY: usize = 16;

/// Variable ids are small sequential integers: hashing them is the identity, and the trie
/// consumes the low bits first, so consecutive ids spread over the root node.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this keeps the hasher total for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

type Trie<K, V> = GenericHashMap<K, V, BuildHasherDefault<IdHasher>, DefaultSharedPtr>;

#[derive(Clone)]
struct Entry<K, V> {
    key: K,
    binding: V,
}

#[derive(Clone)]
enum Repr<K, V> {
    /// `None` is the empty map, so that an empty context allocates nothing.
    Small(Option<Arc<Vec<Entry<K, V>>>>),
    /// Behind an `Arc` of its own so that a map is two words (a context is swapped in and out
    /// of the thread's slot on every `run` and poll); cloning stays one reference count.
    Large(Arc<Trie<K, V>>),
}

/// See the module docs.
#[derive(Clone)]
pub(crate) struct VarMap<K, V> {
    repr: Repr<K, V>,
}

impl<K, V> Default for VarMap<K, V> {
    fn default() -> Self {
        VarMap {
            repr: Repr::Small(None),
        }
    }
}

impl<K: MapKey, V: Clone> VarMap<K, V> {
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        match &self.repr {
            Repr::Small(Some(entries)) => entries
                .iter()
                .find(|entry| entry.key.id() == id)
                .map(|entry| &entry.binding),
            Repr::Small(None) => None,
            Repr::Large(trie) => trie.get(&id),
        }
    }

    #[inline]
    pub(crate) fn contains_key(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        match &self.repr {
            Repr::Small(entries) => entries.as_ref().map_or(0, |e| e.len()),
            Repr::Large(trie) => trie.len(),
        }
    }

    /// The value of `id`, to change in place; copies what a clone of this map shares first.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match &mut self.repr {
            Repr::Small(slot) => {
                // Look before `make_mut`, so that a miss copies nothing.
                let index = slot.as_ref()?.iter().position(|e| e.key.id() == id)?;
                Some(&mut Arc::make_mut(slot.as_mut()?)[index].binding)
            }
            Repr::Large(trie) => Arc::make_mut(trie).get_mut(&id),
        }
    }

    /// Binds `key`; returns the displaced binding.
    pub(crate) fn insert(&mut self, key: K, binding: V) -> Option<V> {
        match &mut self.repr {
            Repr::Small(slot) => {
                let entries = Arc::make_mut(slot.get_or_insert_with(Default::default));
                if let Some(entry) = entries.iter_mut().find(|e| e.key == key) {
                    return Some(std::mem::replace(&mut entry.binding, binding));
                }
                if entries.len() < SMALL_CAPACITY {
                    entries.push(Entry { key, binding });
                    return None;
                }
                self.grow().insert(key, binding)
            }
            Repr::Large(trie) => Arc::make_mut(trie).insert(key, binding),
        }
    }

    /// Unbinds `id`; returns the binding.
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        match &mut self.repr {
            Repr::Small(slot) => {
                // Look before `make_mut`, so that removing an absent key copies nothing.
                let index = slot.as_ref()?.iter().position(|e| e.key.id() == id)?;
                let entries = Arc::make_mut(slot.as_mut()?);
                Some(entries.swap_remove(index).binding)
            }
            Repr::Large(trie) => {
                // Look before `make_mut`, so that removing an absent key copies nothing.
                trie.get(&id)?;
                Arc::make_mut(trie).remove(&id)
            }
        }
    }

    /// Whether both maps are the same allocation (so certainly equal).
    #[inline]
    pub(crate) fn ptr_eq(&self, other: &VarMap<K, V>) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Small(None), Repr::Small(None)) => true,
            (Repr::Small(Some(a)), Repr::Small(Some(b))) => Arc::ptr_eq(a, b),
            (Repr::Large(a), Repr::Large(b)) => Arc::ptr_eq(a, b) || a.ptr_eq(b),
            _ => false,
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            inner: match &self.repr {
                Repr::Small(entries) => {
                    IterRepr::Small(entries.as_deref().map_or(&[][..], |e| &e[..]).iter())
                }
                Repr::Large(trie) => IterRepr::Large(trie.iter()),
            },
        }
    }

    /// Turns a full flat array into a trie.
    #[cold]
    fn grow(&mut self) -> &mut Trie<K, V> {
        let entries = match &self.repr {
            Repr::Small(Some(entries)) => entries.iter(),
            _ => [].iter(),
        };
        let trie: Trie<K, V> = entries
            .map(|entry| (entry.key, entry.binding.clone()))
            .collect();
        self.repr = Repr::Large(Arc::new(trie));
        match &mut self.repr {
            Repr::Large(trie) => Arc::make_mut(trie),
            Repr::Small(_) => unreachable!("just replaced by a trie"),
        }
    }
}

/// Iterator over a [`VarMap`]'s bindings, in no particular order.
pub(crate) struct Iter<'a, K, V> {
    inner: IterRepr<'a, K, V>,
}

enum IterRepr<'a, K, V> {
    Small(std::slice::Iter<'a, Entry<K, V>>),
    Large(imbl::hashmap::Iter<'a, K, V, DefaultSharedPtr>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            IterRepr::Small(it) => it.next().map(|e| (&e.key, &e.binding)),
            IterRepr::Large(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            IterRepr::Small(it) => it.size_hint(),
            IterRepr::Large(it) => it.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that is its id, as the map requires.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    struct Id(u64);

    impl Borrow<u64> for Id {
        fn borrow(&self) -> &u64 {
            &self.0
        }
    }

    impl MapKey for Id {}

    #[test]
    fn behaves_like_a_map_across_the_small_to_large_threshold() {
        let keys: Vec<Id> = (0..(3 * SMALL_CAPACITY as u64))
            .map(|i| Id(i * 7 + 1))
            .collect();
        let mut map: VarMap<Id, Arc<u64>> = VarMap::default();
        let mut model = std::collections::HashMap::new();
        for round in 0..3u64 {
            for (i, key) in keys.iter().enumerate() {
                let n = round * 1000 + i as u64;
                let old = map.insert(*key, Arc::new(n));
                assert_eq!(old.map(|b| *b), model.insert(key.0, n));
                let snapshot = map.clone();
                if i % 3 == 0 {
                    let removed = map.remove(key.0).map(|b| *b);
                    assert_eq!(removed, model.remove(&key.0));
                    assert_eq!(snapshot.get(key.0).map(|b| **b), Some(n));
                }
                assert_eq!(map.len(), model.len());
                for key in &keys {
                    assert_eq!(map.get(key.0).map(|b| **b), model.get(&key.0).copied());
                }
                assert_eq!(map.iter().count(), model.len());
            }
        }
        assert!(matches!(map.repr, Repr::Large(_)));
    }

    #[test]
    fn removing_an_absent_key_does_not_copy_a_shared_array() {
        let mut map: VarMap<Id, u64> = VarMap::default();
        map.insert(Id(1), 1);
        let snapshot = map.clone();
        assert!(map.remove(1_000_000).is_none());
        assert!(map.ptr_eq(&snapshot));
    }

    #[test]
    fn empty_maps_are_equal_and_allocate_nothing() {
        let empty: VarMap<Id, u64> = VarMap::default();
        assert!(empty.ptr_eq(&VarMap::default()));
        assert!(matches!(empty.repr, Repr::Small(None)));
    }
}
