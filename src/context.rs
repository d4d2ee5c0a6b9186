//! [`Context`]: an immutable-looking, copy-on-write map from variables to values.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::current;
use crate::id;
use crate::map::{self, MapKey, VarMap};
use crate::var::{ContextVar, StoredKey, VarKey};

/// A value as stored in a context; typed access goes through the variable's `T`.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// Map representations a write took out; see [`Context::take_retired`].
pub(crate) type Retired = Option<Box<map::Retired<StoredKey, Binding>>>;

/// The type-erased form of [`Inherit::Fork`](crate::Inherit::Fork), made once per variable.
/// Boxed inside the `Arc` so that the pointer is thin: a binding is 32 bytes instead of 40,
/// which every copy of a map moves.
pub(crate) type Forker = Arc<Box<dyn Fn(&(dyn Any + Send + Sync)) -> Value + Send + Sync>>;

/// How a bridge's write-back combines a binding whose value is a collection (a `Local`'s
/// attributes, S18): `(base, end, current)` — the value handed to the other side, the value it
/// ended with, and the caller's value now — to the caller's new value (`None`: unbind).
pub(crate) type Merge = fn(Option<&Value>, Option<&Value>, Option<&Value>) -> Option<Value>;

/// A variable's policy: what [`Context::fork`] does with its binding, and how a bridge writes
/// it back. The one representation of it, in two forms of the fork function: a variable holds
/// `Policy<fn(&T) -> T>`, set from the public [`Inherit`](crate::Inherit) (or, for `Local`,
/// `Merge`); each of its bindings holds the erased `Policy` ([`Policy::erase`]).
#[derive(Clone, Copy)]
pub(crate) enum Policy<F = Forker> {
    /// The child shares the parent's value.
    Share,
    /// The child does not see the value.
    Drop,
    /// The child gets its own value, computed from the parent's.
    Fork(F),
    /// Shared on fork like `Share`; written back by a bridge through the merge function.
    Merge(Merge),
}

impl<F> Policy<F> {
    /// The same policy with the fork function made by `forker` (only called for `Fork`).
    #[inline]
    pub(crate) fn erase(&self, forker: impl FnOnce(&F) -> Forker) -> Policy {
        match self {
            Policy::Share => Policy::Share,
            Policy::Drop => Policy::Drop,
            Policy::Fork(fork) => Policy::Fork(forker(fork)),
            Policy::Merge(merge) => Policy::Merge(*merge),
        }
    }
}

/// One variable bound in a context.
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) value: Value,
    pub(crate) policy: Policy,
}

impl Binding {
    fn is_shared_on_fork(&self) -> bool {
        matches!(self.policy, Policy::Share | Policy::Merge(_))
    }
}

/// One binding a bridge writes back: its version in the context handed to the other side
/// (`base`) and in the one the other side ended with (`end`).
pub(crate) struct Change {
    key: VarKey,
    base: Option<Binding>,
    end: Option<Binding>,
}

/// Identity of a context for [`Token`](crate::Token)s. 0 means "no token was made here yet":
/// ids are handed out on the first `set`, so copying a context costs nothing extra.
pub(crate) type ContextId = u64;

/// A mapping from [`ContextVar`]s to values: the state one task, thread or request sees.
///
/// Each thread has a *current* context; [`ContextVar::get`] and [`ContextVar::set`] read and
/// write it. [`Context::run`] makes another context current for the length of a closure, and
/// [`Scoped`](crate::Scoped) does the same for every poll of a future.
///
/// Copying a context ([`Clone`], [`Context::current`]) is O(1) whatever its size: the map is
/// persistent and shared between copies (a flat array up to 16 bindings, a hash array mapped
/// trie above). So is [`Context::fork`] when no bound variable has an
/// [`Inherit`](crate::Inherit) policy other than `Share`. The first two writes to a shared
/// map of 6 or more bindings go into a small layer over it, O(1) at any size; the third copies
/// the flat array (at most 18 bindings) or, for a trie, the paths to the changed bindings.
/// Copies are *shallow*: values are shared `Arc`s (see [`Inherit`](crate::Inherit) for the
/// per-variable alternative).
///
/// A clone is a new context for [`ContextVar::reset`]: a token made in one is refused in the
/// other with [`ResetError::WrongContext`](crate::ResetError::WrongContext).
///
/// Two contexts compare equal when they bind the same variables to the same `Arc`
/// allocations.
///
/// # Examples
///
/// ```
/// use contextvars::{Context, ContextVar};
///
/// static USER: ContextVar<String> = ContextVar::new("user");
///
/// USER.set("alice".to_string());
/// let mut snapshot = Context::current();
/// snapshot.run(|| {
///     assert_eq!(USER.get().as_deref().map(String::as_str), Some("alice"));
///     USER.set("bob".to_string());
/// });
/// // The snapshot kept bob; the thread's own context still has alice.
/// assert_eq!(snapshot.get(&USER).as_deref().map(String::as_str), Some("bob"));
/// assert_eq!(USER.get().as_deref().map(String::as_str), Some("alice"));
/// ```
///
/// # Cycles (S26)
///
/// Values are reference-counted, not garbage-collected: a value that holds a `Context` in which
/// it is itself bound is an `Arc` cycle, and neither is ever dropped (Python's GC would collect
/// it). Hold a [`Weak`](std::sync::Weak) to the value instead, or take the value out of the
/// context (unbind it) before the context goes:
///
/// ```
/// use contextvars::{Context, ContextVar};
/// use std::sync::{Arc, Mutex, Weak};
///
/// /// A job that remembers the context it runs in, to spawn follow-ups in it.
/// struct Job {
///     home: Mutex<Option<Context>>,
/// }
/// static JOB: ContextVar<Job> = ContextVar::new("job");
///
/// let ctx = Context::new().with_value(&JOB, Job { home: Mutex::new(None) });
/// let job: Weak<Job> = Arc::downgrade(&ctx.get(&JOB).unwrap());
/// // A cycle: the job holds the context that holds the job.
/// *job.upgrade().unwrap().home.lock().unwrap() = Some(ctx.clone());
/// drop(ctx);
/// assert!(job.upgrade().is_some(), "leaked: the cycle keeps both alive");
///
/// // The way out: break the cycle before letting go (or store a `Weak` in the first place).
/// let home = job.upgrade().unwrap().home.lock().unwrap().take();
/// drop(home);
/// assert!(job.upgrade().is_none(), "collected");
/// ```
pub struct Context {
    map: VarMap<StoredKey, Binding>,
    id: ContextId,
    /// How many bindings a fork does not share as they are (`Drop` and `Fork` policies): when
    /// 0, `fork` is a plain clone.
    special: usize,
}

impl Context {
    /// Creates an empty context.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = contextvars::Context::new();
    /// assert!(ctx.is_empty());
    /// ```
    #[inline]
    pub const fn new() -> Context {
        Context {
            map: VarMap::new(),
            id: 0,
            special: 0,
        }
    }

    /// Returns a copy of the current thread's (or task's) context (S7).
    ///
    /// O(1) and shallow: later `set`s on either side are not seen by the other. Same as
    /// [`copy_context`]. Inherit policies are *not* applied: use [`Context::fork`] on the
    /// result to make a child's context.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static N: ContextVar<u32> = ContextVar::new("n");
    /// N.set(1);
    /// let snapshot = Context::current();
    /// N.set(2);
    /// assert_eq!(snapshot.get(&N).as_deref(), Some(&1));
    /// ```
    #[inline]
    pub fn current() -> Context {
        current::read(Context::clone).unwrap_or_default()
    }

    /// Returns a copy of this context for a child task or thread (S20).
    ///
    /// This is [`Clone`] plus each variable's [`Inherit`](crate::Inherit) policy: `Share` keeps
    /// the same `Arc`, `Fork(f)` binds `f(&value)`, `None` leaves the variable unbound in the
    /// child. When no bound variable has a policy other than `Share`, this costs the same as
    /// `clone`; otherwise it walks the bindings once.
    ///
    /// # Panics
    ///
    /// Propagates a panic of an `Inherit::Fork` function.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, Inherit};
    ///
    /// static SCRATCH: ContextVar<Vec<u8>> =
    ///     ContextVar::new("scratch").inherit(Inherit::Fork(|_| Vec::new()));
    ///
    /// let parent = Context::new().with_value(&SCRATCH, vec![1, 2, 3]);
    /// let child = parent.fork();
    /// assert_eq!(child.get(&SCRATCH).as_deref(), Some(&Vec::new()));
    /// assert_eq!(parent.get(&SCRATCH).as_deref(), Some(&vec![1, 2, 3]));
    /// ```
    #[must_use = "`fork` returns a new context and leaves `self` unchanged"]
    pub fn fork(&self) -> Context {
        let mut child = self.clone();
        if self.special != 0 {
            child.apply_fork_policies(self);
        }
        child
    }

    #[cold]
    fn apply_fork_policies(&mut self, parent: &Context) {
        for (key, binding) in parent.map.iter() {
            match &binding.policy {
                Policy::Share | Policy::Merge(_) => {}
                Policy::Drop => {
                    self.remove(key.id());
                }
                Policy::Fork(fork) => {
                    let value = fork(&*binding.value);
                    let policy = binding.policy.clone();
                    self.insert(key.0, Binding { value, policy });
                }
            }
        }
    }

    /// Runs `f` with this context as the current one (S9).
    ///
    /// What `f` sets stays in `self` afterwards, and the previously current context is current
    /// again when `run` returns — also when `f` panics, in which case `self` keeps what `f` set
    /// before the panic. Because `run` takes `&mut self`, a context cannot be entered twice at
    /// once. Nested `run`s restore in LIFO order (S11).
    ///
    /// # Thread teardown
    ///
    /// Called from a thread-local's destructor while the thread's thread-local storage is being
    /// destroyed, `run` works as anywhere else: `f` runs in `self`, and what it sets stays in
    /// `self`. What is gone by then is the thread's *own* context (the one current when no
    /// context is entered, kept in a thread-local with a destructor because it owns its
    /// values): outside any entered context, reads see no values and writes are discarded. A
    /// destructor that needs the thread's values should read them into locals before teardown.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static STEP: ContextVar<&'static str> = ContextVar::new("step");
    ///
    /// let mut ctx = Context::new();
    /// let seen = ctx.run(|| {
    ///     STEP.set("inside");
    ///     STEP.get()
    /// });
    /// assert_eq!(seen.as_deref(), Some(&"inside"));
    /// assert_eq!(ctx.get(&STEP).as_deref(), Some(&"inside"));
    /// assert!(STEP.get().is_none()); // the thread's own context is untouched
    /// ```
    ///
    /// Entering a context that is already entered does not compile (Python raises
    /// `RuntimeError`); inside `run`, read the entered context with [`Context::current`]:
    ///
    /// ```compile_fail
    /// let mut ctx = contextvars::Context::new();
    /// ctx.run(|| ctx.run(|| ())); // error: `ctx` is already borrowed
    /// ```
    #[inline]
    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        current::run_in(self, f)
    }

    /// Returns the value bound to `var` in this context (S10).
    ///
    /// Unlike [`ContextVar::get`], the variable's default is never returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    ///
    /// let ctx = Context::new();
    /// assert_eq!(ctx.get(&RETRIES), None);
    /// assert_eq!(ctx.with_value(&RETRIES, 5).get(&RETRIES).as_deref(), Some(&5));
    /// ```
    #[inline]
    pub fn get<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<Arc<T>> {
        self.lookup(var.id())
            .map(|binding| downcast_arc(binding.value.clone()))
    }

    /// Whether `var` is bound in this context (S10); defaults do not count.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static FLAG: ContextVar<bool> = ContextVar::with_default("flag", || true);
    /// assert!(!Context::new().contains(&FLAG));
    /// assert!(Context::new().with_value(&FLAG, false).contains(&FLAG));
    /// ```
    #[inline]
    pub fn contains<T: Send + Sync + 'static>(&self, var: &ContextVar<T>) -> bool {
        self.lookup(var.id()).is_some()
    }

    /// The number of variables bound in this context.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static A: ContextVar<u8> = ContextVar::new("a");
    /// static B: ContextVar<u8> = ContextVar::new("b");
    /// let ctx = Context::new().with_value(&A, 1).with_value(&B, 2);
    /// assert_eq!(ctx.len(), 2);
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no variable is bound in this context.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(contextvars::Context::new().is_empty());
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Iterates over the bindings of this context, in no particular order.
    ///
    /// Each item is the variable's [`VarKey`] and its value as `dyn Any` (the `T` itself, not
    /// the `Arc`): use `downcast_ref::<T>()` to read it.
    ///
    /// A [`Local`](crate::Local)'s attributes are one binding of a hidden variable named
    /// `Local` (S18), counted by [`len`](Context::len) too; its value is of a type you cannot
    /// name, so skip it by name. A thread-critical `Local` keeps nothing in the context (S19).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, Local};
    ///
    /// static USER: ContextVar<String> = ContextVar::new("user");
    /// let ctx = Context::new().with_value(&USER, "alice".to_string());
    /// for (key, value) in ctx.iter() {
    ///     assert_eq!(key.name(), "user");
    ///     assert_eq!(value.downcast_ref::<String>().unwrap(), "alice");
    /// }
    ///
    /// static REQUEST: Local = Local::new();
    /// static CONNECTION: Local = Local::thread_critical();
    /// let mut ctx = ctx;
    /// ctx.run(|| {
    ///     REQUEST.set("id", 7u32);
    ///     REQUEST.set("user", "alice");
    ///     CONNECTION.set("conn", ());
    /// });
    /// let mut names: Vec<_> = ctx.iter().map(|(key, _)| key.name()).collect();
    /// names.sort();
    /// assert_eq!(names, ["Local", "user"]);
    /// assert_eq!(ctx.len(), 2);
    /// ```
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            inner: self.map.iter(),
        }
    }

    /// Returns a copy of this context in which `var` is bound to `value`.
    ///
    /// `self` is unchanged. Handy to build the context of a request before entering it.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    ///
    /// let mut ctx = Context::new().with_value(&REQUEST_ID, 42);
    /// ctx.run(|| assert_eq!(REQUEST_ID.get().as_deref(), Some(&42)));
    /// ```
    #[must_use = "`with_value` returns a new context and leaves `self` unchanged"]
    pub fn with_value<T: Send + Sync + 'static>(&self, var: &ContextVar<T>, value: T) -> Context {
        let mut ctx = self.clone();
        ctx.insert(var.key(), var.binding(Arc::new(value)));
        ctx
    }

    /// Wraps `f` so that it runs inside this context when called, as a task of its own.
    ///
    /// The returned closure is `Send` when `f` is, so it can be handed to a thread pool or
    /// `std::thread::Builder::spawn`. Like a call of [`wrap`](Context::wrap), it is a task of its
    /// own wherever it runs: a thread-critical [`Local`](crate::Local) starts empty in it and what
    /// it sets there is dropped when `f` returns, so a pool thread keeps nothing for the next
    /// job (S19), and such writes are allowed in a plain `tokio::task::spawn_blocking` job (S21).
    /// [`run`](Context::run) instead keeps the thread's thread-critical values.
    ///
    /// # Panics
    ///
    /// The returned closure propagates a panic of `f`.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static JOB: ContextVar<u32> = ContextVar::new("job");
    ///
    /// let task = Context::new().with_value(&JOB, 7).bind(|| *JOB.get().unwrap());
    /// let handle = std::thread::Builder::new().name("worker".into()).spawn(task).unwrap();
    /// assert_eq!(handle.join().unwrap(), 7);
    /// ```
    pub fn bind<R>(self, f: impl FnOnce() -> R) -> impl FnOnce() -> R {
        let mut ctx = self;
        move || current::run_as_task(&mut ctx, f)
    }

    /// Wraps an `Fn` so that each call runs in its own fork of this context, as if each call
    /// were a task of its own (S23).
    ///
    /// What one call sets is seen by no other call, not by the caller, and not by the thread that
    /// ran it afterwards. Values of a thread-critical [`Local`](crate::Local) too: each call starts
    /// with none and drops what it set when it returns (S19). This is the way to carry a request's
    /// values into rayon (`par_iter().map(ctx.wrap(f))`), a thread pool, or a callback registered
    /// with a library. The returned closure is `Send` and `Sync` when `f` is, and `Clone`; clones
    /// share nothing but the captured context.
    ///
    /// # Panics
    ///
    /// Each call propagates a panic of `f`, and of an [`Inherit::Fork`](crate::Inherit::Fork)
    /// function run by that call's fork.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
    /// static ITEM: ContextVar<u32> = ContextVar::new("item");
    ///
    /// TENANT.set("acme");
    /// let job = Context::current().wrap(|n: u32| {
    ///     assert!(ITEM.get().is_none()); // no earlier call leaks into this one
    ///     ITEM.set(n);
    ///     format!("{}:{}", TENANT.get().unwrap(), n)
    /// });
    /// let workers: Vec<_> = (0..4)
    ///     .map(|n| {
    ///         let job = job.clone();
    ///         std::thread::spawn(move || (job(n), job(n + 10)))
    ///     })
    ///     .collect();
    /// for (n, worker) in workers.into_iter().enumerate() {
    ///     assert_eq!(worker.join().unwrap(), (format!("acme:{n}"), format!("acme:{}", n + 10)));
    /// }
    /// assert!(ITEM.get().is_none()); // nor into the caller
    /// ```
    pub fn wrap<A, R>(self, f: impl Fn(A) -> R + Clone) -> impl Fn(A) -> R + Clone {
        // Each call is a task of its own (S23): thread-critical values too (S19) start empty
        // and end with the call.
        move |arg| current::run_as_task(&mut self.fork(), || f(arg))
    }

    // ----- crate-internal access, used by `var`, `current` and the async modules -----

    /// `Context::current().fork()` with one copy instead of two.
    pub(crate) fn current_fork() -> Context {
        let mut ctx = Context::current();
        if ctx.special != 0 {
            let parent = ctx.clone();
            ctx.apply_fork_policies(&parent);
        }
        ctx
    }

    /// The bindings that differ between `base` and `self`, by `Arc` identity, each with its
    /// version in `base` and in `self` (`None`: not bound there). What a bridge writes back
    /// (S16, S17).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the bridges live in `task`
    pub(crate) fn changes_since(&self, base: &Context) -> Vec<Change> {
        if self.map.ptr_eq(&base.map) {
            return Vec::new();
        }
        let mut changes: Vec<_> = self
            .map
            .iter()
            .filter_map(|(key, binding)| {
                let old = base.map.get(key.id());
                let changed = old.is_none_or(|old| !Arc::ptr_eq(&old.value, &binding.value));
                changed.then(|| Change {
                    key: key.0,
                    base: old.cloned(),
                    end: Some(binding.clone()),
                })
            })
            .collect();
        changes.extend(
            base.map
                .iter()
                .filter(|(key, _)| !self.map.contains_key(key.id()))
                .map(|(key, binding)| Change {
                    key: key.0,
                    base: Some(binding.clone()),
                    end: None,
                }),
        );
        changes
    }

    /// Applies [`Context::changes_since`] output: a plain binding is set or removed as the
    /// other side left it; a `Merge` binding is merged with this context's current value
    /// (S18). Returns the displaced bindings for the caller to drop outside any borrow.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the bridges live in `task`
    pub(crate) fn apply_changes(&mut self, changes: Vec<Change>) -> Vec<Binding> {
        let mut displaced = Vec::with_capacity(changes.len());
        for Change { key, base, end } in changes {
            let merge = [&end, &base]
                .into_iter()
                .flatten()
                .find_map(|b| match b.policy {
                    Policy::Merge(merge) => Some(merge),
                    _ => None,
                });
            let new = match merge {
                Some(merge) => merge(
                    base.as_ref().map(|b| &b.value),
                    end.as_ref().map(|b| &b.value),
                    self.lookup(key.id()).map(|b| &b.value),
                )
                .map(|value| Binding {
                    value,
                    policy: Policy::Merge(merge),
                }),
                None => end,
            };
            let old = match new {
                Some(binding) => self.insert(key, binding),
                None => self.remove(key.id()),
            };
            displaced.extend(old);
        }
        displaced
    }

    #[inline]
    pub(crate) fn lookup(&self, id: u64) -> Option<&Binding> {
        self.map.get(id)
    }

    /// Binds `key`, returning the displaced binding so that the caller drops it outside any
    /// borrow of the thread's state (a value's `Drop` may use this crate).
    #[inline]
    pub(crate) fn insert(&mut self, key: VarKey, binding: Binding) -> Option<Binding> {
        if self.map.is_unallocated() {
            self.insert_first(key, binding);
            return None;
        }
        let special = !binding.is_shared_on_fork();
        let old = self.map.insert(StoredKey(key), binding);
        self.special += usize::from(special);
        if let Some(old) = &old {
            self.special -= usize::from(!old.is_shared_on_fork());
        }
        old
    }

    /// [`insert`](Context::insert) into a context that has allocated nothing yet: into an array
    /// a dropped context left on this thread (see [`spare`]), if there is one. Out of line, so
    /// that `insert` stays small enough to inline into `set`'s path.
    #[inline(never)]
    fn insert_first(&mut self, key: VarKey, binding: Binding) {
        self.special += usize::from(!binding.is_shared_on_fork());
        match spare::take() {
            Some(spare) => self.map.insert_into_spare(spare, StoredKey(key), binding),
            None => drop(self.map.insert(StoredKey(key), binding)),
        }
    }

    /// Runs `f` on this context's value of `var`: in place when no other context (or reader)
    /// holds it, else on a copy that replaces it, so copies never see the change (S4); a
    /// missing value starts as `T::default()`. Returns what `f` returned and the displaced
    /// value, for the caller to drop outside any borrow.
    pub(crate) fn update<T, R>(
        &mut self,
        var: &ContextVar<T>,
        f: impl FnOnce(&mut T) -> R,
    ) -> (R, Option<Value>)
    where
        T: Clone + Default + Send + Sync + 'static,
    {
        let Some(binding) = self.map.get_mut(var.id()) else {
            let mut value = T::default();
            let result = f(&mut value);
            let displaced = self.insert(var.key(), var.binding(Arc::new(value)));
            return (result, displaced.map(|binding| binding.value));
        };
        if let Some(value) = Arc::get_mut(&mut binding.value) {
            return (f(downcast_mut::<T>(value)), None);
        }
        let mut value = downcast_ref::<T>(&binding.value).clone();
        let result = f(&mut value);
        let displaced = std::mem::replace(&mut binding.value, Arc::new(value));
        (result, Some(displaced))
    }

    /// Binds `key` to `value` and returns the value it replaces. `policy` makes the binding's
    /// policy when a binding is added; rebinding in place keeps the one there, which is the
    /// same (every binding of a variable has the variable's policy). This is `set`'s path: it
    /// moves the value alone, not a whole binding.
    #[inline]
    pub(crate) fn replace_value(
        &mut self,
        key: VarKey,
        value: Value,
        policy: impl FnOnce() -> Policy,
    ) -> Option<Value> {
        if let Some(binding) = self.map.get_mut_unshared(key.id()) {
            return Some(std::mem::replace(&mut binding.value, value));
        }
        if self.map.is_unallocated() {
            // A context's first binding (a request's `set`): nothing to look up.
            self.insert_first(
                key,
                Binding {
                    value,
                    policy: policy(),
                },
            );
            return None;
        }
        self.replace_value_slow(key, value, policy)
    }

    /// [`replace_value`](Context::replace_value) where the binding is not in an unshared flat
    /// array. In a layer with room for it (the write after a copy: `copy_context(); set`, a
    /// spawned task's `set`) the layer is copied if shared and the value swapped in place,
    /// which moves less than inserting a whole binding: `copy_context` + `set` at 10 vars went
    /// from 0.80 to 0.49 of OpenTelemetry's (BENCHMARKS.md). Everything else (a new key, a
    /// shared flat array, a trie, a layer that must flatten) goes through
    /// [`insert`](Context::insert) with a binding made from `policy`.
    #[inline(never)]
    fn replace_value_slow(
        &mut self,
        key: VarKey,
        value: Value,
        policy: impl FnOnce() -> Policy,
    ) -> Option<Value> {
        if let Some(binding) = self.map.get_mut_in_layer(key.id()) {
            return Some(std::mem::replace(&mut binding.value, value));
        }
        let policy = policy();
        self.insert(key, Binding { value, policy })
            .map(|old| old.value)
    }

    /// Unbinds `id`, returning the binding for the caller to drop (see [`Context::insert`]).
    pub(crate) fn remove(&mut self, id: u64) -> Option<Binding> {
        let old = self.map.remove(id);
        if let Some(old) = &old {
            self.special -= usize::from(!old.is_shared_on_fork());
        }
        old
    }

    /// The address of this context's map storage (see `VarMap::identity`).
    #[inline]
    pub(crate) fn map_identity(&self) -> *const () {
        self.map.identity()
    }

    /// What writes to this context replaced and may hold the last references to user values
    /// (see `map::VarMap`'s `retired`): [`current::modify`] drops it after the write.
    #[inline]
    pub(crate) fn take_retired(&mut self) -> Retired {
        self.map.take_retired()
    }

    /// The id tokens made in this context carry; assigned on first use.
    #[inline]
    pub(crate) fn token_id(&mut self) -> ContextId {
        if self.id == 0 {
            self.id = id::fresh_context_id();
        }
        self.id
    }

    /// Whether a token made with `id` belongs to this context.
    #[inline]
    pub(crate) fn is_token_context(&self, id: ContextId) -> bool {
        id != 0 && id == self.id
    }
}

impl Drop for Context {
    // A map this context alone holds is emptied here and its array kept for the thread's next
    // new context to reuse (see the `spare` module below).
    #[inline]
    fn drop(&mut self) {
        if let Some(spare) = self.map.take_spare() {
            spare::give(spare);
        }
    }
}

/// Flat arrays of dropped contexts, kept per thread for the next contexts' first bindings.
///
/// Each request's context allocates its map on its first `set` and frees it when the request
/// ends: reusing the array saves an allocation and a free of two blocks per request
/// (BENCHMARKS.md).
mod spare {
    use std::cell::RefCell;

    use super::Binding;
    use crate::map::Spare;
    use crate::var::StoredKey;

    /// At most this many arrays are kept per thread (each about 260 bytes).
    const MAX_SPARES: usize = 8;

    std::thread_local! {
        static SPARES: RefCell<Vec<Spare<StoredKey, Binding>>> = const { RefCell::new(Vec::new()) };
    }

    /// A kept array, if the thread has one (none while its thread-locals are being destroyed).
    #[inline]
    pub(super) fn take() -> Option<Spare<StoredKey, Binding>> {
        SPARES
            .try_with(|spares| spares.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten()
    }

    /// Keeps `spare` for [`take`], unless the thread keeps enough already.
    #[inline]
    pub(super) fn give(spare: Spare<StoredKey, Binding>) {
        let _ = SPARES.try_with(|spares| {
            if let Ok(mut spares) = spares.try_borrow_mut() {
                if spares.len() < MAX_SPARES {
                    spares.push(spare);
                }
            }
        });
    }
}

impl Clone for Context {
    /// Python's `ctx.copy()`: O(1), shallow, and a *new* context for tokens (S5, S7).
    #[inline]
    fn clone(&self) -> Self {
        Context {
            map: self.map.clone(),
            id: 0,
            special: self.special,
        }
    }
}

impl Default for Context {
    #[inline]
    fn default() -> Self {
        Context::new()
    }
}

impl PartialEq for Context {
    /// Equal when the same variables are bound to the same `Arc` allocations.
    fn eq(&self, other: &Self) -> bool {
        self.map.ptr_eq(&other.map)
            || (self.len() == other.len()
                && self.map.iter().all(|(key, binding)| {
                    other
                        .map
                        .get(key.id())
                        .is_some_and(|theirs| Arc::ptr_eq(&binding.value, &theirs.value))
                }))
    }
}

impl Eq for Context {}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Names<'a>(&'a Context);
        impl fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(key, _)| key.name()))
                    .finish()
            }
        }
        f.debug_struct("Context")
            .field("vars", &Names(self))
            .finish()
    }
}

/// Iterator over the bindings of a [`Context`], returned by [`Context::iter`].
///
/// # Examples
///
/// ```
/// use contextvars::{Context, ContextVar};
///
/// static A: ContextVar<u8> = ContextVar::new("a");
/// let ctx = Context::new().with_value(&A, 1);
/// let names: Vec<_> = ctx.iter().map(|(key, _)| key.name()).collect();
/// assert_eq!(names, ["a"]);
/// ```
pub struct Iter<'a> {
    inner: map::Iter<'a, StoredKey, Binding>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (VarKey, &'a (dyn Any + Send + Sync));

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|(key, binding)| (key.0, &*binding.value))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a> IntoIterator for &'a Context {
    type Item = (VarKey, &'a (dyn Any + Send + Sync));
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Returns a copy of the current context: Python's `contextvars.copy_context()`.
///
/// Same as [`Context::current`].
///
/// # Examples
///
/// ```
/// use contextvars::{copy_context, ContextVar};
///
/// static NAME: ContextVar<&'static str> = ContextVar::new("name");
/// NAME.set("before");
/// let mut snapshot = copy_context();
/// snapshot.run(|| NAME.set("inside the copy"));
/// assert_eq!(NAME.get().as_deref(), Some(&"before"));
/// ```
#[inline]
pub fn copy_context() -> Context {
    Context::current()
}

/// Recovers the typed `Arc` from a stored value.
#[inline]
pub(crate) fn downcast_arc<T: Send + Sync + 'static>(value: Value) -> Arc<T> {
    // Cannot fail: bindings are keyed by the variable's unique id and only that
    // `ContextVar<T>` stores values under it, always of type `T`.
    value
        .downcast::<T>()
        .unwrap_or_else(|_| unreachable!("a ContextVar's binding always holds its own type"))
}

/// Borrows the typed value from a stored value (see [`downcast_arc`]).
#[inline]
pub(crate) fn downcast_mut<T: Send + Sync + 'static>(
    value: &mut (dyn Any + Send + Sync),
) -> &mut T {
    value
        .downcast_mut::<T>()
        .unwrap_or_else(|| unreachable!("a ContextVar's binding always holds its own type"))
}

pub(crate) fn downcast_ref<T: Send + Sync + 'static>(value: &Value) -> &T {
    // Cannot fail, for the reason given in `downcast_arc`.
    value
        .downcast_ref::<T>()
        .unwrap_or_else(|| unreachable!("a ContextVar's binding always holds its own type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: ContextVar<u32> = ContextVar::new("a");
    static B: ContextVar<u32> = ContextVar::new("b");
    static C: ContextVar<u32> = ContextVar::new("c");

    #[test]
    fn changes_since_reports_set_changed_and_removed_by_identity() {
        let base = Context::new().with_value(&A, 1).with_value(&B, 2);
        let mut end = base.with_value(&C, 3); // set
        end = end.with_value(&A, 1); // changed: equal value, new Arc
        drop(end.remove(B.id())); // removed
        let mut changes = end.changes_since(&base);
        changes.sort_by_key(|change| change.key.name());
        let summary: Vec<_> = changes
            .iter()
            .map(|change| (change.key.name(), change.end.is_some()))
            .collect();
        assert_eq!(summary, [("a", true), ("b", false), ("c", true)]);

        // Applying them to a context that also has its own, untouched binding.
        static D: ContextVar<u32> = ContextVar::new("d");
        let mut target = base.with_value(&D, 4);
        drop(target.apply_changes(changes));
        assert!(Arc::ptr_eq(&target.get(&A).unwrap(), &end.get(&A).unwrap()));
        assert!(!target.contains(&B));
        assert_eq!(target.get(&C).as_deref(), Some(&3));
        assert_eq!(target.get(&D).as_deref(), Some(&4));
    }

    #[test]
    fn copies_and_forks_without_policies_share_the_map_at_every_size() {
        // S7 and S20: a copy is O(1), whatever the size. Flat arrays (up to 16 bindings) and
        // tries past them are shared, not copied; so is a fork when no variable has a policy.
        for n in [1, 16, 17, 300] {
            let vars: Vec<ContextVar<usize>> = (0..n).map(|_| ContextVar::new("v")).collect();
            let mut ctx = Context::new();
            for (i, var) in vars.iter().enumerate() {
                ctx = ctx.with_value(var, i);
            }
            assert!(ctx.clone().map.ptr_eq(&ctx.map), "clone at {n}");
            assert!(ctx.fork().map.ptr_eq(&ctx.map), "fork at {n}");
            let current = ctx.clone().run(Context::current);
            assert!(current.map.ptr_eq(&ctx.map), "Context::current at {n}");
        }
    }

    #[test]
    fn a_binding_is_four_words() {
        // Every copy of a flat map moves its bindings: keep them small.
        assert_eq!(std::mem::size_of::<Binding>(), 32);
    }

    #[test]
    fn changes_since_an_identical_map_is_empty() {
        let base = Context::new().with_value(&A, 1);
        assert!(base.clone().changes_since(&base).is_empty());
        assert!(Context::new().changes_since(&Context::new()).is_empty());
    }
}
