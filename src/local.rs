//! [`Local`]: asgiref's `Local` — named attributes that are context-local in async code and
//! thread-local in sync code.

use std::any::{Any, type_name};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::context::{Context, Value, downcast_ref};
use crate::current;
use crate::error::LocalError;
use crate::var::ContextVar;

/// An attribute's value: what `Local::set` was given, behind an `Arc`, able to name its type
/// for [`LocalError::WrongType`] (through the vtable: no field per attribute).
trait AttributeValue: Any + Send + Sync {
    fn type_name(&self) -> &'static str;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Any + Send + Sync> AttributeValue for T {
    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

type Attribute = Arc<dyn AttributeValue>;

/// The attributes of one `Local` in one context (asgiref's `_CVar` holds a dict per context).
/// A handful of attributes (the usual case) are a flat array, scanned by name; past
/// [`SMALL_ATTRIBUTES`] they are a persistent hash map. Either way the value is behind the
/// context's `Arc`: changed in place when this context alone holds it, copied when shared. Names
/// are `Arc<str>`, so a copy counts references instead of allocating strings. Measured against
/// the imbl map alone in `benches/targets.rs` (BENCHMARKS.md).
#[derive(Clone, Default)]
struct Attributes(AttributesRepr);

#[derive(Clone)]
enum AttributesRepr {
    Small(Vec<(Arc<str>, Attribute)>),
    /// Names are chosen by code, not by remote input, so they are hashed with a fast
    /// non-cryptographic hasher ([`NameHasher`]) rather than SipHash.
    Large(
        imbl::GenericHashMap<
            Arc<str>,
            Attribute,
            BuildHasherDefault<NameHasher>,
            imbl::shared_ptr::DefaultSharedPtr,
        >,
    ),
}

impl Default for AttributesRepr {
    fn default() -> Self {
        AttributesRepr::Small(Vec::new())
    }
}

/// Up to this many attributes are a flat array.
const SMALL_ATTRIBUTES: usize = 16;

impl Attributes {
    fn get(&self, name: &str) -> Option<&Attribute> {
        match &self.0 {
            AttributesRepr::Small(entries) => entries
                .iter()
                .find(|(key, _)| **key == *name)
                .map(|(_, value)| value),
            AttributesRepr::Large(map) => map.get(name),
        }
    }

    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`; returns the value it displaces.
    fn insert(&mut self, name: &str, value: Attribute) -> Option<Attribute> {
        match &mut self.0 {
            AttributesRepr::Small(entries) => {
                if let Some((_, slot)) = entries.iter_mut().find(|(key, _)| **key == *name) {
                    return Some(std::mem::replace(slot, value));
                }
                if entries.len() < SMALL_ATTRIBUTES {
                    entries.push((Arc::from(name), value));
                    return None;
                }
                let mut map: imbl::GenericHashMap<_, _, _, _> = entries.drain(..).collect();
                map.insert(Arc::from(name), value);
                self.0 = AttributesRepr::Large(map);
                None
            }
            AttributesRepr::Large(map) => map.insert(Arc::from(name), value),
        }
    }

    fn remove(&mut self, name: &str) -> Option<Attribute> {
        match &mut self.0 {
            AttributesRepr::Small(entries) => {
                let index = entries.iter().position(|(key, _)| **key == *name)?;
                Some(entries.swap_remove(index).1)
            }
            AttributesRepr::Large(map) => map.remove(name),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Attribute)> + '_> {
        match &self.0 {
            AttributesRepr::Small(entries) => {
                Box::new(entries.iter().map(|(key, value)| (&**key, value)))
            }
            AttributesRepr::Large(map) => Box::new(map.iter().map(|(key, value)| (&**key, value))),
        }
    }
}

/// FxHash's mixing step (rustc's hasher): a rotate, xor and multiply per 8 bytes. Measured in
/// `benches/targets.rs`: it is what lets `Local::get` match a `HashMap` lookup.
#[derive(Default, Clone, Copy)]
struct NameHasher(u64);

impl NameHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("chunks of 8")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.mix(u64::from_le_bytes(tail));
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }
}

/// Named, typed attributes stored in the current context: Django's `asgiref.local.Local`.
///
/// Each task (each [`Context`]) sees its own attributes; a child task, thread or
/// bridge starts with the parent's attributes as of the fork, and a `set` or `remove` in a child
/// never changes the parent. [`task::sync_to_async`] and
/// [`task::async_to_sync`] carry changes back, as asgiref does (S18),
/// attribute by attribute: attributes the other side did not touch stay as the caller has them,
/// even when the caller changed others meanwhile.
/// In plain threaded code with no context entered, the current context is the thread's own, so a
/// `Local` acts as a thread local.
///
/// All of a `Local`'s attributes live in one entry of the context (one hidden
/// [`ContextVar`]), copied on write. Every method is safe to call from any number of threads
/// and tasks at once: each works on its own current context.
///
/// Unlike asgiref, values are not tied to an OS thread in async code, because Tokio moves tasks
/// between threads; [`Local::thread_critical`] is the closest equivalent.
///
/// # Examples
///
/// ```
/// use contextvars::Local;
///
/// static REQUEST: Local = Local::new();
///
/// REQUEST.set("id", "req-1".to_string());
/// REQUEST.set("user_id", 42u64);
/// assert_eq!(*REQUEST.get::<u64>("user_id").unwrap(), 42);
/// assert_eq!(REQUEST.get::<String>("id").unwrap().as_str(), "req-1");
///
/// // A thread started through this crate sees a copy; its changes stay there.
/// contextvars::thread::spawn(|| {
///     REQUEST.set("id", "changed in the thread".to_string());
/// })
/// .join()
/// .unwrap();
/// assert_eq!(REQUEST.get::<String>("id").unwrap().as_str(), "req-1");
/// ```
#[cfg_attr(
    feature = "tokio",
    doc = "[`task::sync_to_async`]: crate::task::sync_to_async\n\
           [`task::async_to_sync`]: crate::task::async_to_sync"
)]
#[cfg_attr(
    not(feature = "tokio"),
    doc = "[`task::sync_to_async`]: crate#cargo-features\n\
           [`task::async_to_sync`]: crate#cargo-features"
)]
pub struct Local {
    attributes: ContextVar<Attributes>,
    thread_critical: bool,
}

impl Local {
    /// Creates a `Local` whose attributes follow the context: inherited by children, carried
    /// both ways by the bridges.
    ///
    /// # Examples
    ///
    /// ```
    /// static LOCAL: contextvars::Local = contextvars::Local::new();
    /// assert!(!LOCAL.contains("anything"));
    /// ```
    pub const fn new() -> Local {
        Local {
            attributes: ContextVar::new_merged("Local", merge_attributes),
            thread_critical: false,
        }
    }

    /// Creates a `Local` whose attributes are never carried to another context: not by a fork
    /// (so not by `task::spawn*` or `thread::spawn`), not by `sync_to_async` or `async_to_sync`
    /// in either direction (S19).
    ///
    /// In plain code it is a thread local; inside a [`Scoped`](crate::Scoped) poll it belongs to
    /// that task, and moves with it if the runtime migrates the task. Use it for what must not
    /// cross threads or tasks, such as a connection that is not thread-safe to share. A
    /// `sync_to_async` call on the blocking pool is a task of its own: it starts without the
    /// values an earlier call set (see `task::sync_to_async`).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::Local;
    ///
    /// static CONNECTION: Local = Local::thread_critical();
    ///
    /// CONNECTION.set("conn", "connection of the main thread");
    /// let seen_in_child = contextvars::thread::spawn(|| CONNECTION.contains("conn"))
    ///     .join()
    ///     .unwrap();
    /// assert!(!seen_in_child);
    /// assert!(CONNECTION.contains("conn"));
    /// ```
    pub const fn thread_critical() -> Local {
        Local {
            // Only a key: the attributes live in the thread's or the task's thread-critical
            // storage, never in a context (S19).
            attributes: ContextVar::new("Local(thread_critical)"),
            thread_critical: true,
        }
    }

    /// Sets attribute `name` to `value` in the current context, replacing any previous value
    /// of any type.
    ///
    /// # Panics
    ///
    /// Inside a Tokio task that has no context of its own (see [`ContextVar::set`], S21). For
    /// a [`thread_critical`](Local::thread_critical) `Local` a [`run`](Context::run) or a
    /// [`sync_scope`](ContextVar::sync_scope) in such a task is not enough: only a task entry
    /// (`task::spawn`, a [`Scoped`](crate::Scoped) future, `tower::ContextLayer`,
    /// `runtime::propagate`, a call of [`Context::wrap`] or [`Context::bind`]) gives the task
    /// storage of its own for it.
    ///
    /// # Examples
    ///
    /// ```
    /// static LOCAL: contextvars::Local = contextvars::Local::new();
    /// LOCAL.set("retries", 3u8);
    /// LOCAL.set("retries", "three"); // another type is fine
    /// assert_eq!(*LOCAL.get::<&str>("retries").unwrap(), "three");
    /// ```
    pub fn set<T: Send + Sync + 'static>(&self, name: &str, value: T) {
        let value: Attribute = Arc::new(value);
        let displaced = self.update("Local::set", |attributes| attributes.insert(name, value));
        // The old value drops here, after the write has let go of the context.
        drop(displaced);
    }

    /// Returns attribute `name` of the current context.
    ///
    /// # Errors
    ///
    /// - [`LocalError::Missing`] if `name` is not set;
    /// - [`LocalError::WrongType`] if it holds another type than `T` (nothing changes).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Local, LocalError};
    ///
    /// static LOCAL: Local = Local::new();
    /// LOCAL.set("user", "alice".to_string());
    /// assert_eq!(LOCAL.get::<String>("user").unwrap().as_str(), "alice");
    /// assert!(matches!(LOCAL.get::<u32>("user"), Err(LocalError::WrongType { .. })));
    /// assert!(matches!(LOCAL.get::<String>("nobody"), Err(LocalError::Missing { .. })));
    /// ```
    pub fn get<T: Send + Sync + 'static>(&self, name: &str) -> Result<Arc<T>, LocalError> {
        let value = self
            .with_attributes(|attributes| attributes.and_then(|a| a.get(name)).cloned())
            .ok_or_else(|| LocalError::Missing {
                name: name.to_owned(),
            })?;
        // Named before the `Arc` becomes a `dyn Any`, which cannot name it.
        let found = AttributeValue::type_name(&*value);
        AttributeValue::into_any(value)
            .downcast::<T>()
            .map_err(|_| LocalError::WrongType {
                name: name.to_owned(),
                expected: type_name::<T>(),
                found,
            })
    }

    /// Attribute `name` if it is set and is a `T`; unlike [`get`](Local::get), allocates
    /// nothing when it is not (the `tracing` formatter reads it on every event).
    #[cfg(feature = "tracing")]
    pub(crate) fn get_if<T: Send + Sync + 'static>(&self, name: &str) -> Option<Arc<T>> {
        let value = self.with_attributes(|a| a.and_then(|a| a.get(name)).cloned())?;
        AttributeValue::into_any(value).downcast::<T>().ok()
    }

    /// Removes attribute `name` from the current context (Python's `del local.name`).
    ///
    /// # Panics
    ///
    /// Inside a Tokio task that has no context of its own (see [`ContextVar::set`], S21),
    /// whether or not `name` is set; for a [`thread_critical`](Local::thread_critical) `Local`,
    /// also inside a `run` or `sync_scope` in such a task (see [`Local::set`]).
    ///
    /// # Errors
    ///
    /// [`LocalError::Missing`] if `name` is not set.
    ///
    /// # Examples
    ///
    /// ```
    /// static LOCAL: contextvars::Local = contextvars::Local::new();
    /// LOCAL.set("tmp", 1);
    /// LOCAL.remove("tmp").unwrap();
    /// assert!(!LOCAL.contains("tmp"));
    /// assert!(LOCAL.remove("tmp").is_err());
    /// ```
    pub fn remove(&self, name: &str) -> Result<(), LocalError> {
        current::check_writable("Local::remove", self.thread_critical);
        if !self.contains(name) {
            return Err(LocalError::Missing {
                name: name.to_owned(),
            });
        }
        drop(self.update("Local::remove", |attributes| attributes.remove(name)));
        Ok(())
    }

    /// Whether attribute `name` is set in the current context.
    ///
    /// # Examples
    ///
    /// ```
    /// static LOCAL: contextvars::Local = contextvars::Local::new();
    /// assert!(!LOCAL.contains("x"));
    /// LOCAL.set("x", ());
    /// assert!(LOCAL.contains("x"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.with_attributes(|attributes| attributes.is_some_and(|a| a.contains_key(name)))
    }

    /// Runs `f` on the current attributes: the current context's, or for a thread-critical
    /// `Local` the thread's or task's own (S19). `f` must not run user code.
    fn with_attributes<R>(&self, f: impl FnOnce(Option<&Attributes>) -> R) -> R {
        if self.thread_critical {
            let id = self.attributes.id();
            current::read_critical(|storage| {
                f(storage
                    .and_then(|storage| storage.lookup(id))
                    .map(|binding| downcast_ref::<Attributes>(&binding.value)))
            })
        } else {
            // Through the per-thread lookup cache; `f` runs no user code.
            current::read_bound(&self.attributes, f)
        }
    }

    /// Runs `f` on the current attributes, in place when this context alone holds them (no
    /// copy of the map, no new `Arc`); `call` names the API in the S21 panic. What `f` returns
    /// and the displaced map are dropped by the caller, after the write has let go of the context.
    /// `None` during thread teardown, when there is no storage left to change.
    fn update<R>(&self, call: &'static str, f: impl FnOnce(&mut Attributes) -> R) -> Option<R> {
        let update = |storage: &mut Context| storage.update(&self.attributes, f);
        let (result, displaced) = if self.thread_critical {
            current::modify_critical(call, update)
        } else {
            current::modify(call, update)
        }
        .unzip();
        drop(displaced);
        result
    }
}

/// A bridge's write-back of a `Local` (S18): the caller's attributes now, with each attribute
/// the other side set, changed or removed (by `Arc` identity, against what it was handed)
/// applied on top; attributes it did not touch stay as the caller has them.
fn merge_attributes(
    base: Option<&Value>,
    end: Option<&Value>,
    current: Option<&Value>,
) -> Option<Value> {
    fn attributes(value: Option<&Value>) -> Option<&Attributes> {
        value.map(downcast_ref::<Attributes>)
    }
    let empty = Attributes::default();
    let base = attributes(base).unwrap_or(&empty);
    let end = attributes(end).unwrap_or(&empty);
    let mut merged = attributes(current).cloned().unwrap_or_default();
    for (name, value) in end.iter() {
        if base.get(name).is_none_or(|old| !Arc::ptr_eq(old, value)) {
            merged.insert(name, value.clone());
        }
    }
    for (name, _) in base.iter() {
        if !end.contains_key(name) {
            merged.remove(name);
        }
    }
    Some(Arc::new(merged))
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

impl fmt::Debug for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self.with_attributes(|a| {
            a.map(|a| a.iter().map(|(name, _)| name.to_owned()).collect())
                .unwrap_or_default()
        });
        names.sort();
        f.debug_struct("Local")
            .field("thread_critical", &self.thread_critical)
            .field("attributes", &names)
            .finish()
    }
}
