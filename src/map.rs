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

/// The capacity a flat array starts with: room for the few variables a request sets.
const FIRST_CAPACITY: usize = 4;

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

/// Up to this many changed bindings sit in a [`Layer`] over a shared map; one more flattens the
/// layer into a map of its own.
pub(crate) const LAYER_CAPACITY: usize = 2;

/// A shared map with at least this many bindings gets a [`Layer`] on write instead of a full
/// copy; below it, copying the flat array is as cheap. Measured in `benches/targets.rs`.
pub(crate) const LAYER_THRESHOLD: usize = 6;

/// A few changes over a shared map: what a write after a copy makes (`copy_context(); set`,
/// a `scope`, a spawned task's first `set`). The base stays shared with the copy, so the write
/// costs one reference count and the changed bindings, whatever the size of the map.
#[derive(Clone)]
struct Layer<K, V> {
    /// Never itself layered.
    base: Repr<K, V>,
    /// `Some((key, None))` where a binding of `base` is removed. Keys are distinct.
    top: [Option<(K, Option<V>)>; LAYER_CAPACITY],
    len: usize,
}

#[derive(Clone)]
enum Repr<K, V> {
    /// `None` is the empty map, so that an empty context allocates nothing.
    Small(Option<Arc<Vec<Entry<K, V>>>>),
    /// Behind an `Arc` of its own so that a map is two words (a context is swapped in and out
    /// of the thread's slot on every `run` and poll); cloning stays one reference count.
    Large(Arc<Trie<K, V>>),
    Layered(Arc<Layer<K, V>>),
}

/// See the module docs.
pub(crate) struct VarMap<K, V> {
    repr: Repr<K, V>,
    /// Representations a write replaced (flattened layers), until [`VarMap::take_retired`]. They
    /// may hold the last references to bindings the layer shadowed, so dropping them can run a
    /// value's `Drop`: a write inside the thread's current context must not do that while it
    /// holds the context, so it takes them out and drops them after.
    retired: Option<Box<Retired<K, V>>>,
}

/// A map's flat array, emptied, for another map's first binding to reuse instead of allocating
/// one ([`VarMap::take_spare`], [`VarMap::insert_into_spare`]).
pub(crate) struct Spare<K, V>(Arc<Vec<Entry<K, V>>>);

/// Representations taken out of a [`VarMap`] by a write; dropping this drops them.
pub(crate) struct Retired<K, V>(Vec<Repr<K, V>>);

impl<K, V> VarMap<K, V> {
    /// The empty map; allocates nothing.
    pub(crate) const fn new() -> Self {
        VarMap {
            repr: Repr::Small(None),
            retired: None,
        }
    }

    /// Empties the map and returns its flat array for reuse, when no copy shares it and it has
    /// the first capacity (a map that grew keeps its allocation to itself). The bindings are
    /// dropped here, in order, as dropping the map would.
    #[inline]
    pub(crate) fn take_spare(&mut self) -> Option<Spare<K, V>> {
        let Repr::Small(Some(shared)) = &mut self.repr else {
            return None;
        };
        // Plain reads first: a shared array (a spawned task's fork) or one of another capacity
        // (a copy made on write has its length as capacity, rarely 4) skips `get_mut`'s atomic
        // compare-exchange, which costs a drop ~10 ns.
        if Arc::strong_count(shared) != 1 || shared.capacity() != FIRST_CAPACITY {
            return None;
        }
        let entries = Arc::get_mut(shared)?;
        entries.clear();
        match std::mem::replace(&mut self.repr, Repr::Small(None)) {
            Repr::Small(Some(entries)) => Some(Spare(entries)),
            _ => unreachable!("matched above"),
        }
    }

    /// Whether the map is empty and has allocated nothing: its first binding will allocate,
    /// unless it goes into a [`Spare`].
    #[inline]
    pub(crate) fn is_unallocated(&self) -> bool {
        matches!(self.repr, Repr::Small(None))
    }

    /// Binds `key` in an [unallocated](VarMap::is_unallocated) map, into `spare`'s array.
    pub(crate) fn insert_into_spare(&mut self, mut spare: Spare<K, V>, key: K, binding: V) {
        debug_assert!(
            self.is_unallocated(),
            "a spare array is only for a first binding"
        );
        match Arc::get_mut(&mut spare.0) {
            Some(entries) => entries.push(Entry { key, binding }),
            None => unreachable!("a spare array is never shared"),
        }
        self.repr = Repr::Small(Some(spare.0));
    }

    /// What writes replaced since the last call (see the `retired` field), to drop later.
    #[inline]
    pub(crate) fn take_retired(&mut self) -> Option<Box<Retired<K, V>>> {
        self.retired.take()
    }
}

impl<K: Clone, V: Clone> Clone for VarMap<K, V> {
    /// The copy shares the representation; what this map retired stays with it.
    #[inline]
    fn clone(&self) -> Self {
        VarMap {
            repr: self.repr.clone(),
            retired: None,
        }
    }
}

impl<K, V> Default for VarMap<K, V> {
    fn default() -> Self {
        VarMap::new()
    }
}

impl<K: MapKey, V: Clone> Repr<K, V> {
    #[inline]
    fn get(&self, id: u64) -> Option<&V> {
        match self {
            Repr::Small(Some(entries)) => entries
                .iter()
                .find(|entry| entry.key.id() == id)
                .map(|entry| &entry.binding),
            Repr::Small(None) => None,
            Repr::Large(trie) => trie.get(&id),
            Repr::Layered(layer) => match layer.top_get(id) {
                Some(top) => top.as_ref(),
                None => layer.base.get(id),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Repr::Small(entries) => entries.as_ref().map_or(0, |e| e.len()),
            Repr::Large(trie) => trie.len(),
            Repr::Layered(layer) => layer.len,
        }
    }

    /// Whether this map is shared with a copy and large enough that a write should add a layer
    /// over it rather than copy it. Only a heuristic (a count read without synchronization):
    /// the write itself still copies on write if it has to.
    #[inline]
    fn layer_on_write(&self) -> bool {
        match self {
            Repr::Small(Some(entries)) => {
                Arc::strong_count(entries) > 1 && entries.len() >= LAYER_THRESHOLD
            }
            Repr::Small(None) => false,
            Repr::Large(trie) => Arc::strong_count(trie) > 1,
            Repr::Layered(_) => false,
        }
    }

    /// Replaces `self` with a layer over it holding no changes yet.
    #[cold]
    fn add_layer(&mut self) -> &mut Layer<K, V> {
        let len = self.len();
        let base = std::mem::replace(self, Repr::Small(None));
        *self = Repr::Layered(Arc::new(Layer {
            base,
            top: Default::default(),
            len,
        }));
        match self {
            Repr::Layered(layer) => Arc::make_mut(layer),
            _ => unreachable!("just layered"),
        }
    }
}

impl<K: MapKey, V: Clone> Layer<K, V> {
    /// The change to `id` in the top, if any (`Some(None)`: removed).
    #[inline]
    fn top_get(&self, id: u64) -> Option<&Option<V>> {
        self.top
            .iter()
            .flatten()
            .find(|(key, _)| key.id() == id)
            .map(|(_, binding)| binding)
    }

    fn top_slot(&mut self, id: u64) -> Option<&mut Option<V>> {
        self.top
            .iter_mut()
            .flatten()
            .find(|(key, _)| key.id() == id)
            .map(|(_, binding)| binding)
    }

    /// Records `binding` for `key` in the top (`None`: removed), if there is room; returns the
    /// binding it displaces (from the top, else the base), or gives `binding` back.
    fn put(&mut self, key: K, binding: Option<V>) -> Result<Option<V>, Option<V>> {
        let adds = binding.is_some();
        if let Some(slot) = self.top_slot(key.id()) {
            let old = std::mem::replace(slot, binding);
            self.len = self.len + usize::from(adds) - usize::from(old.is_some());
            return Ok(old);
        }
        let in_base = self.base.get(key.id()).is_some();
        if !adds && !in_base {
            return Ok(None);
        }
        let Some(free) = self.top.iter_mut().find(|slot| slot.is_none()) else {
            return Err(binding);
        };
        *free = Some((key, binding));
        self.len = self.len + usize::from(adds) - usize::from(in_base);
        Ok(match in_base {
            true => self.base.get(key.id()).cloned(),
            false => None,
        })
    }
}

impl<K: MapKey, V: Clone> VarMap<K, V> {
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        self.repr.get(id)
    }

    #[inline]
    pub(crate) fn contains_key(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.repr.len()
    }

    /// The value of `id`, to change in place; copies what a clone of this map shares first.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        // A flat map no copy shares, the common case: one scan, no copy.
        let unshared_flat = match &mut self.repr {
            Repr::Small(Some(entries)) => Arc::get_mut(entries).is_some(),
            _ => false,
        };
        if unshared_flat {
            return self.get_mut_unshared(id);
        }
        // Look first, so that a missing key copies nothing.
        self.get(id)?;
        if let Repr::Layered(layer) = &self.repr {
            if !layer.fits(id) {
                // Only in the base, and no room to copy it up.
                self.flatten();
            }
        }
        // A trie is changed in place through a layer too: imbl's own `get_mut` fails Miri's
        // Stacked Borrows check (imbl 7.0.2, `hamt.rs:238`), and `.ci/run` runs this under Miri.
        if matches!(self.repr, Repr::Large(_)) || self.repr.layer_on_write() {
            self.repr.add_layer();
        }
        match &mut self.repr {
            Repr::Small(slot) => {
                let index = slot.as_ref()?.iter().position(|e| e.key.id() == id)?;
                Some(&mut Arc::make_mut(slot.as_mut()?)[index].binding)
            }
            Repr::Large(_) => unreachable!("layered above"),
            // There is room: flattened above otherwise.
            Repr::Layered(layer) => Arc::make_mut(layer).binding_mut(id),
        }
    }

    /// Binds `key`; returns the displaced binding.
    #[inline]
    pub(crate) fn insert(&mut self, key: K, binding: V) -> Option<V> {
        // The common write, inline: rebinding a key of a flat array no copy shares.
        if let Some(entry) = self.get_mut_unshared(key.id()) {
            return Some(std::mem::replace(entry, binding));
        }
        self.insert_slow(key, binding)
    }

    /// The binding of `id` in a layer, to change in place there: the layer is copied first if
    /// a copy of the map shares it, and the binding copied up from the base if only the base
    /// has it. `None` unless the map is a layer that has `id` and room for it in its top, so
    /// that this never flattens: a write that would is left to [`insert`](VarMap::insert),
    /// which flattens once into a map that later writes change in place.
    pub(crate) fn get_mut_in_layer(&mut self, id: u64) -> Option<&mut V> {
        match &mut self.repr {
            Repr::Layered(layer) if layer.fits(id) => Arc::make_mut(layer).binding_mut(id),
            _ => None,
        }
    }

    /// The binding of `id` when it can be changed in place for free: the map is a flat array
    /// that no copy shares. `None` in every other case (a missing key, a shared map, a trie or
    /// a layer), where [`insert`](VarMap::insert) or [`get_mut`](VarMap::get_mut) copy first.
    #[inline]
    pub(crate) fn get_mut_unshared(&mut self, id: u64) -> Option<&mut V> {
        match &mut self.repr {
            Repr::Small(Some(entries)) => Arc::get_mut(entries)?
                .iter_mut()
                .find(|entry| entry.key.id() == id)
                .map(|entry| &mut entry.binding),
            _ => None,
        }
    }

    /// Every other case of [`insert`](VarMap::insert): a shared or empty map, a new key, a trie
    /// or a layer. Out of line, so that the common case inlines small.
    #[inline(never)]
    fn insert_slow(&mut self, key: K, binding: V) -> Option<V> {
        if self.repr.layer_on_write() {
            self.repr.add_layer();
        }
        match &mut self.repr {
            Repr::Small(None) => {
                // The first binding of a context: allocate the array at its first size at once
                // (what the first `push` into an empty `Vec` would grow it to, without the
                // growth path).
                let mut entries = Vec::with_capacity(FIRST_CAPACITY);
                entries.push(Entry { key, binding });
                self.repr = Repr::Small(Some(Arc::new(entries)));
                None
            }
            Repr::Small(Some(slot)) => {
                let entries = Arc::make_mut(slot);
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
            Repr::Layered(layer) => match Arc::make_mut(layer).put(key, Some(binding)) {
                Ok(old) => old,
                Err(binding) => {
                    self.flatten();
                    self.insert_slow(key, binding.expect("an insert puts Some"))
                }
            },
        }
    }

    /// Unbinds `id`; returns the binding.
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        // Look first, so that removing an absent key copies nothing.
        self.get(id)?;
        if self.repr.layer_on_write() {
            self.repr.add_layer();
        }
        match &mut self.repr {
            Repr::Small(slot) => {
                let index = slot.as_ref()?.iter().position(|e| e.key.id() == id)?;
                let entries = Arc::make_mut(slot.as_mut()?);
                Some(entries.swap_remove(index).binding)
            }
            Repr::Large(trie) => Arc::make_mut(trie).remove(&id),
            Repr::Layered(layer) => {
                let layer = Arc::make_mut(layer);
                let key = match layer.top.iter().flatten().find(|(key, _)| key.id() == id) {
                    Some((key, _)) => *key,
                    None => layer.base_key(id)?,
                };
                match layer.put(key, None) {
                    Ok(old) => old,
                    Err(_) => {
                        self.flatten();
                        self.remove(id)
                    }
                }
            }
        }
    }

    /// The address of the map's storage (null when nothing is allocated): a write that changes
    /// storage another map shares makes new storage first, so storage keeps its address only
    /// while no copy shares it.
    #[inline]
    pub(crate) fn identity(&self) -> *const () {
        match &self.repr {
            Repr::Small(None) => std::ptr::null(),
            Repr::Small(Some(entries)) => Arc::as_ptr(entries).cast(),
            Repr::Large(trie) => Arc::as_ptr(trie).cast(),
            Repr::Layered(layer) => Arc::as_ptr(layer).cast(),
        }
    }

    /// Whether both maps are the same allocation (so certainly equal).
    #[inline]
    pub(crate) fn ptr_eq(&self, other: &VarMap<K, V>) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Small(None), Repr::Small(None)) => true,
            (Repr::Small(Some(a)), Repr::Small(Some(b))) => Arc::ptr_eq(a, b),
            (Repr::Large(a), Repr::Large(b)) => Arc::ptr_eq(a, b) || a.ptr_eq(b),
            (Repr::Layered(a), Repr::Layered(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            inner: match &self.repr {
                Repr::Layered(layer) => IterRepr::Layered {
                    top: layer.top.iter(),
                    base: BaseIter::of(&layer.base),
                    layer,
                },
                base => IterRepr::Base(BaseIter::of(base)),
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
            _ => unreachable!("just replaced by a trie"),
        }
    }

    /// Turns a layer with a full top into a map of its own.
    ///
    /// Over a trie the layer's changes are written into a copy of it that shares its nodes
    /// (imbl's clone is O(1), each change copies one path): O(log n), so that every third write
    /// after a copy stays O(log n) too. Over an array (at most 18 bindings) it copies them.
    #[cold]
    fn flatten(&mut self) {
        debug_assert!(
            matches!(self.repr, Repr::Layered(_)),
            "only a layer flattens"
        );
        let flat = match &self.repr {
            Repr::Layered(layer) if layer.len > SMALL_CAPACITY => match &layer.base {
                Repr::Large(base) => {
                    let mut trie = Trie::clone(base);
                    for (key, change) in layer.top.iter().flatten() {
                        match change {
                            Some(binding) => drop(trie.insert(*key, binding.clone())),
                            None => drop(trie.remove(&key.id())),
                        }
                    }
                    Repr::Large(Arc::new(trie))
                }
                // A flat base: at most `SMALL_CAPACITY` + `LAYER_CAPACITY` bindings to collect.
                _ => Repr::Large(Arc::new(
                    self.iter().map(|(k, v)| (*k, v.clone())).collect(),
                )),
            },
            _ => Repr::Small(Some(Arc::new(
                self.iter()
                    .map(|(key, binding)| Entry {
                        key: *key,
                        binding: binding.clone(),
                    })
                    .collect(),
            ))),
        };
        // Not dropped here: see `retired`.
        let layered = std::mem::replace(&mut self.repr, flat);
        self.retired
            .get_or_insert_with(|| Box::new(Retired(Vec::new())))
            .0
            .push(layered);
    }
}

impl<K: MapKey, V: Clone> Layer<K, V> {
    /// Whether `id` is bound here and its binding can be changed in the top: it is there
    /// already, or only in the base with a free slot to copy it up into.
    #[inline]
    fn fits(&self, id: u64) -> bool {
        match self.top_get(id) {
            Some(change) => change.is_some(),
            None => self.base.get(id).is_some() && self.top.iter().any(Option::is_none),
        }
    }

    /// The binding of `id` in the top, copied up from the base first if only the base has it;
    /// `None` if it is unbound or does not [`fit`](Layer::fits).
    #[inline(always)]
    fn binding_mut(&mut self, id: u64) -> Option<&mut V> {
        if self.top_get(id).is_none() {
            let key = self.base_key(id)?;
            let value = self.base.get(id).cloned();
            drop(self.put(key, value).ok()?);
        }
        self.top_slot(id)?.as_mut()
    }

    /// The key under which the base binds `id`.
    fn base_key(&self, id: u64) -> Option<K> {
        match &self.base {
            Repr::Small(Some(entries)) => entries.iter().find(|e| e.key.id() == id).map(|e| e.key),
            Repr::Large(trie) => trie.get_key_value(&id).map(|(key, _)| *key),
            _ => None,
        }
    }
}

/// Iterator over a [`VarMap`]'s bindings, in no particular order.
pub(crate) struct Iter<'a, K, V> {
    inner: IterRepr<'a, K, V>,
}

enum BaseIter<'a, K, V> {
    Small(std::slice::Iter<'a, Entry<K, V>>),
    Large(imbl::hashmap::Iter<'a, K, V, DefaultSharedPtr>),
}

impl<'a, K: MapKey, V> BaseIter<'a, K, V> {
    fn of(repr: &'a Repr<K, V>) -> Self {
        match repr {
            Repr::Small(entries) => {
                BaseIter::Small(entries.as_deref().map_or(&[][..], |e| &e[..]).iter())
            }
            Repr::Large(trie) => BaseIter::Large(trie.iter()),
            Repr::Layered(_) => unreachable!("a layer's base is never layered"),
        }
    }
}

impl<'a, K, V> Iterator for BaseIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            BaseIter::Small(it) => it.next().map(|e| (&e.key, &e.binding)),
            BaseIter::Large(it) => it.next(),
        }
    }
}

enum IterRepr<'a, K, V> {
    Base(BaseIter<'a, K, V>),
    /// The top's bindings, then the base's that the top does not change.
    Layered {
        top: std::slice::Iter<'a, Option<(K, Option<V>)>>,
        base: BaseIter<'a, K, V>,
        layer: &'a Layer<K, V>,
    },
}

impl<'a, K: MapKey, V: Clone> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            IterRepr::Base(it) => it.next(),
            IterRepr::Layered { top, base, layer } => {
                for (key, binding) in top.flatten() {
                    if let Some(binding) = binding {
                        return Some((key, binding));
                    }
                }
                base.find(|(key, _)| layer.top_get(key.id()).is_none())
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            IterRepr::Base(BaseIter::Small(it)) => it.size_hint(),
            IterRepr::Base(BaseIter::Large(it)) => it.size_hint(),
            IterRepr::Layered { .. } => (0, None),
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
    fn only_an_unshared_array_of_the_first_capacity_is_taken_for_reuse_and_it_comes_empty() {
        let value = Arc::new(7_u64);
        let mut map: VarMap<Id, Arc<u64>> = VarMap::new();
        assert!(map.take_spare().is_none(), "nothing allocated");
        map.insert(Id(1), value.clone());
        map.insert(Id(2), value.clone());

        let copy = map.clone();
        assert!(map.take_spare().is_none(), "shared with a copy");
        drop(copy);

        let spare = map.take_spare().expect("unshared, first capacity");
        assert!(map.is_unallocated());
        assert_eq!(Arc::strong_count(&value), 1, "its bindings were dropped");

        let mut reused: VarMap<Id, Arc<u64>> = VarMap::new();
        reused.insert_into_spare(spare, Id(3), Arc::new(3));
        assert_eq!(reused.len(), 1, "nothing of the old map came along");
        assert_eq!(reused.get(3).map(|b| **b), Some(3));
        assert!(reused.get(1).is_none() && reused.get(2).is_none());
        reused.insert(Id(4), Arc::new(4)); // and it grows as any flat array
        assert_eq!(reused.len(), 2);

        let mut grown: VarMap<Id, Arc<u64>> = VarMap::new();
        for id in 0..=FIRST_CAPACITY as u64 {
            grown.insert(Id(id), Arc::new(id));
        }
        assert!(grown.take_spare().is_none(), "grew past the first capacity");
        assert_eq!(grown.len(), FIRST_CAPACITY + 1, "and is left as it was");
    }

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
        // Past the small capacity: a trie, or a layer over one.
        match &map.repr {
            Repr::Large(_) => {}
            Repr::Layered(layer) => assert!(matches!(layer.base, Repr::Large(_))),
            Repr::Small(_) => panic!("still a flat array"),
        }
    }

    /// Random writes with copies kept alive: every copy must keep reading what the map held
    /// when it was taken, across small arrays, layers, flattening and tries.
    #[test]
    fn copies_are_unaffected_by_later_writes_at_every_size() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for key_space in [4u64, 12, 40] {
            let mut map: VarMap<Id, Arc<u64>> = VarMap::default();
            let mut model = std::collections::BTreeMap::new();
            let mut copies = Vec::new();
            // Miri runs this too (`.ci/run`), a hundred times slower.
            let steps = if cfg!(miri) { 50 } else { 600 };
            for step in 0..steps {
                let key = next() % key_space;
                match next() % 8 {
                    0 => {
                        assert_eq!(map.remove(key).map(|b| *b), model.remove(&key));
                    }
                    1 => {
                        if let Some(value) = map.get_mut(key) {
                            *Arc::make_mut(value) += 1;
                            *model.get_mut(&key).expect("in the model too") += 1;
                        } else {
                            assert!(!model.contains_key(&key));
                        }
                    }
                    _ => {
                        let old = map.insert(Id(key), Arc::new(step));
                        assert_eq!(old.map(|b| *b), model.insert(key, step));
                    }
                }
                if next() % 3 == 0 {
                    copies.push((map.clone(), model.clone()));
                }
                assert_eq!(map.len(), model.len());
                let mut seen: Vec<(u64, u64)> = map.iter().map(|(k, v)| (k.0, **v)).collect();
                seen.sort_unstable();
                assert_eq!(
                    seen,
                    model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
                );
            }
            for (copy, model) in &copies {
                assert_eq!(copy.len(), model.len());
                for key in 0..key_space {
                    assert_eq!(copy.get(key).map(|b| **b), model.get(&key).copied());
                }
            }
        }
    }

    /// A map past the flat array's capacity (a trie) binding each key to itself, and a copy.
    fn trie_and_copy() -> (VarMap<Id, u64>, VarMap<Id, u64>) {
        let mut map = VarMap::default();
        for key in 0..(2 * SMALL_CAPACITY as u64) {
            map.insert(Id(key), key);
        }
        let copy = map.clone();
        (map, copy)
    }

    #[test]
    fn a_write_over_a_shared_map_adds_a_layer_and_shares_the_base() {
        let (mut map, copy) = trie_and_copy();
        map.insert(Id(3), 30);
        assert!(matches!(&map.repr, Repr::Layered(layer) if layer.base.len() == copy.len()));
        assert_eq!(map.get(3), Some(&30));
        assert_eq!(copy.get(3), Some(&3));
        // A full top flattens into a map of its own.
        for key in 100..(100 + LAYER_CAPACITY as u64 + 1) {
            map.insert(Id(key), key);
        }
        assert!(matches!(map.repr, Repr::Large(_)));
        assert_eq!(map.len(), copy.len() + LAYER_CAPACITY + 1);
    }

    /// A value that counts its clones on this thread.
    struct Counted(u64);

    std::thread_local! {
        static CLONES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.with(|clones| clones.set(clones.get() + 1));
            Counted(self.0)
        }
    }

    #[test]
    fn flattening_a_layer_over_a_trie_copies_paths_not_every_binding() {
        // Under Miri, a smaller trie: still deeper than one node.
        let n: u64 = if cfg!(miri) { 1_024 } else { 10_000 };
        let mut map: VarMap<Id, Counted> = VarMap::default();
        for key in 0..n {
            map.insert(Id(key), Counted(key));
        }
        let copy = map.clone();
        let before = CLONES.with(|clones| clones.get());
        map.insert(Id(1), Counted(10)); // a layer over the shared trie
        assert_eq!(map.remove(2).map(|old| old.0), Some(2)); // its second change
        map.insert(Id(n), Counted(n)); // a third: the layer flattens
        let clones = CLONES.with(|clones| clones.get()) - before;
        assert!(matches!(map.repr, Repr::Large(_)));
        // Copying the changed paths clones a few nodes' worth of bindings; rebuilding the trie
        // would clone all n.
        assert!(clones < n as usize / 4, "{clones} clones for {n} bindings");
        assert_eq!(map.len(), n as usize);
        assert_eq!(map.get(1).map(|v| v.0), Some(10));
        assert!(map.get(2).is_none());
        assert_eq!(map.get(n).map(|v| v.0), Some(n));
        assert_eq!(map.get(n / 2).map(|v| v.0), Some(n / 2));
        assert_eq!(map.iter().count(), n as usize);
        let untouched = [1, 2, n].map(|key| copy.get(key).map(|v| v.0));
        assert_eq!(untouched, [Some(1), Some(2), None], "the copy is unchanged");
        assert_eq!(copy.len(), n as usize);
    }

    #[test]
    fn get_mut_in_layer_changes_only_a_layer_with_room_and_never_flattens() {
        let (mut map, copy) = trie_and_copy();
        assert!(map.get_mut_in_layer(1).is_none(), "not a layer yet");
        map.insert(Id(1), 10); // a write over the shared trie: a layer
        *map.get_mut_in_layer(1).expect("in the top") = 11;
        *map.get_mut_in_layer(2)
            .expect("copied up from the base: there is room") = 20;
        // A full top: flattening is left to `insert`, which then writes in place. Flattening
        // here, then layering the flat trie again, made every second write copy the map.
        assert!(map.get_mut_in_layer(3).is_none());
        assert!(map.get_mut_in_layer(1_000).is_none(), "absent");
        assert!(matches!(map.repr, Repr::Layered(_)));
        assert_eq!(map.get(1), Some(&11));
        assert_eq!(map.get(2), Some(&20));
        assert_eq!(map.get(3), Some(&3));
        assert_eq!((copy.get(1), copy.get(2)), (Some(&1), Some(&2)));
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
