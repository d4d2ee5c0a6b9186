//! The persistent map behind [`Context`](crate::Context): variable id → binding.
//!
//! Small contexts (the common case: a request id, a user, a deadline) are a flat array behind an
//! `Arc`, copied whole on write when shared and changed in place when not; past
//! [`SMALL_CAPACITY`] bindings the map becomes a hash array mapped trie (`imbl`), whose writes
//! copy only the path to the changed entry. Both are O(1) to clone. The threshold and the gain
//! are measured in `benches/growth.rs` (see BENCHMARKS.md).

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use imbl::GenericHashMap;
use imbl::shared_ptr::DefaultSharedPtr;

use crate::context::Binding;
use crate::var::VarKey;

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

type Trie = GenericHashMap<VarKey, Binding, BuildHasherDefault<IdHasher>, DefaultSharedPtr>;

#[derive(Clone)]
struct Entry {
    key: VarKey,
    binding: Binding,
}

#[derive(Clone)]
enum Repr {
    /// `None` is the empty map, so that an empty context allocates nothing.
    Small(Option<Arc<Vec<Entry>>>),
    Large(Trie),
}

/// See the module docs.
#[derive(Clone)]
pub(crate) struct VarMap {
    repr: Repr,
}

impl Default for VarMap {
    fn default() -> Self {
        VarMap {
            repr: Repr::Small(None),
        }
    }
}

impl VarMap {
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&Binding> {
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

    /// Binds `key`; returns the displaced binding.
    pub(crate) fn insert(&mut self, key: VarKey, binding: Binding) -> Option<Binding> {
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
            Repr::Large(trie) => trie.insert(key, binding),
        }
    }

    /// Unbinds `id`; returns the binding.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Binding> {
        match &mut self.repr {
            Repr::Small(slot) => {
                // Look before `make_mut`, so that removing an absent key copies nothing.
                let index = slot.as_ref()?.iter().position(|e| e.key.id() == id)?;
                let entries = Arc::make_mut(slot.as_mut()?);
                Some(entries.swap_remove(index).binding)
            }
            Repr::Large(trie) => trie.remove(&id),
        }
    }

    /// Whether both maps are the same allocation (so certainly equal).
    #[inline]
    pub(crate) fn ptr_eq(&self, other: &VarMap) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Small(None), Repr::Small(None)) => true,
            (Repr::Small(Some(a)), Repr::Small(Some(b))) => Arc::ptr_eq(a, b),
            (Repr::Large(a), Repr::Large(b)) => a.ptr_eq(b),
            _ => false,
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_> {
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
    fn grow(&mut self) -> &mut Trie {
        let entries = match &self.repr {
            Repr::Small(Some(entries)) => entries.iter(),
            _ => [].iter(),
        };
        let trie: Trie = entries
            .map(|entry| (entry.key, entry.binding.clone()))
            .collect();
        self.repr = Repr::Large(trie);
        match &mut self.repr {
            Repr::Large(trie) => trie,
            Repr::Small(_) => unreachable!("just replaced by a trie"),
        }
    }
}

/// Iterator over a [`VarMap`]'s bindings, in no particular order.
pub(crate) struct Iter<'a> {
    inner: IterRepr<'a>,
}

enum IterRepr<'a> {
    Small(std::slice::Iter<'a, Entry>),
    Large(imbl::hashmap::Iter<'a, VarKey, Binding, DefaultSharedPtr>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a VarKey, &'a Binding);

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
    use crate::context::Policy;
    use crate::var::ContextVar;

    fn binding(n: u64) -> Binding {
        Binding {
            value: Arc::new(n),
            policy: Policy::Share,
        }
    }

    fn value(b: &Binding) -> u64 {
        *b.value.downcast_ref::<u64>().unwrap()
    }

    #[test]
    fn behaves_like_a_map_across_the_small_to_large_threshold() {
        let vars: Vec<ContextVar<u64>> = (0..(3 * SMALL_CAPACITY))
            .map(|_| ContextVar::new("m"))
            .collect();
        let mut map = VarMap::default();
        let mut model = std::collections::HashMap::new();
        for round in 0..3u64 {
            for (i, var) in vars.iter().enumerate() {
                let n = round * 1000 + i as u64;
                let old = map.insert(var.key(), binding(n));
                assert_eq!(old.map(|b| value(&b)), model.insert(var.key().id(), n));
                let snapshot = map.clone();
                if i % 3 == 0 {
                    let removed = map.remove(var.key().id()).map(|b| value(&b));
                    assert_eq!(removed, model.remove(&var.key().id()));
                    assert_eq!(snapshot.get(var.key().id()).map(value), Some(n));
                }
                assert_eq!(map.len(), model.len());
                for var in &vars {
                    let id = var.key().id();
                    assert_eq!(map.get(id).map(value), model.get(&id).copied());
                }
                assert_eq!(map.iter().count(), model.len());
            }
        }
        assert!(matches!(map.repr, Repr::Large(_)));
    }

    #[test]
    fn removing_an_absent_key_does_not_copy_a_shared_array() {
        let var = ContextVar::<u64>::new("x");
        let mut map = VarMap::default();
        map.insert(var.key(), binding(1));
        let snapshot = map.clone();
        assert!(map.remove(var.key().id() + 1_000_000).is_none());
        assert!(map.ptr_eq(&snapshot));
    }

    #[test]
    fn empty_maps_are_equal_and_allocate_nothing() {
        assert!(VarMap::default().ptr_eq(&VarMap::default()));
        assert!(matches!(VarMap::default().repr, Repr::Small(None)));
    }
}
