//! The current context of each thread: the one place that touches the thread-local, and the
//! crate's only `unsafe` code.
//!
//! Every other module reads or changes "the current context" through these functions:
//!
//! - [`get_arc`] / [`is_bound`]: one variable's value (`get`, `is_set`), through a cache of
//!   recent lookups.
//! - [`read_value`]: a look at one variable's value that runs user code (`ContextVar::with`);
//!   [`read_bound`] is the same for crate code that runs none (`Local`'s lookups).
//! - [`read`]: a short look at the whole context, with no user code inside
//!   (`Context::current`).
//! - [`modify`]: a change with no user code inside (`set`, `reset`).
//! - [`run_in`]: make a context current while a closure runs (`run`, `Scoped` polls, bridge
//!   jobs). A task [`Entry`] also swaps in the task's own storage for thread-critical values.
//!   [`enter_task`] is the same for the runtime hooks, whose guard lives from the before-poll to
//!   the after-poll hook.
//! - [`read_critical`] / [`modify_critical`]: the storage of `Local::thread_critical` (S19):
//!   the thread's own in plain code, the innermost task's inside a task entry. `run` does not
//!   change it, so a value set on a thread is seen in any context entered on that thread.
//!
//! # How the current context is found
//!
//! Entering a context stores a pointer to it in a thread-local ([`Hot`]) that is
//! const-initialized and has no destructor, so reaching it costs no lazy-initialization check;
//! leaving puts the previous pointer back. The context itself never moves: it stays where its
//! owner keeps it (the caller of `run`, a pinned `Scoped`, a bridge job's frame, a runtime
//! hook's box), and writes change it in place. A null pointer means that no context is entered
//! and the thread's own context, kept in a second thread-local with a destructor, is current.
//!
//! Lookups of one variable are cached per thread (CPython's per-variable cache, turned around:
//! a few slots keyed by variable id), valid for one *version* of the current context; entering,
//! leaving and every write start a new version. A hit is two compares.
//!
//! # Invariants (what the `SAFETY` comments rely on)
//!
//! 1. **A non-null `Hot::active` points to a live context that nothing else uses.** Only
//!    [`run_in`] and [`enter_task`] set it, to a context whose owner is borrowed (or boxed and
//!    owned) for as long as it is entered, turned into a raw pointer at once so that no
//!    reference to it is retagged while it is in use. They put the previous pointer back in
//!    LIFO order: `run_in`'s guard lives on its stack frame, and a runtime task guard leaves only
//!    when it is innermost ([`TaskGuard::is_innermost`]); one that is not is kept, or leaked at
//!    thread teardown, never freed while a pointer to it may remain.
//! 2. **No `&mut Context` and `&Context` to the current context overlap.** [`read`] and
//!    [`modify`] hand out a reference for a closure that runs no user code (the callers'
//!    contract; displaced values are dropped after the closure returns), so they never nest.
//! 3. **A value [`read_value`] hands to user code outlives the read.** The user code may write
//!    to the very context it reads. A write while a read is in progress first keeps a copy of
//!    the context (O(1): one reference count) until the outermost read ends, which keeps the map,
//!    and with it every value, alive. The write then finds the map shared and copies before
//!    changing it, so the memory the reader points into is never written. Leaving a runtime
//!    task's context (the one entry not tied to a stack frame, so it can end inside a read)
//!    keeps a copy the same way. A write never drops a value itself: what it displaces, and map
//!    representations it retires, are dropped after it lets go of the context.
//! 4. **A cached lookup is used only in the version that made it, by the variable that made
//!    it.** The current context can change only through [`enter`], [`leave`] and [`modify`],
//!    which start a new version, and the destruction of the thread's own context starts one too.
//!    The cache is keyed by variable id and only a `ContextVar<T>` with that id fills or reads
//!    its slot; ids are unique (each variable takes the next one of a global counter, once), so
//!    the pointer in a slot is to that variable's `T`.
//!
//! While the thread's thread-local storage is being destroyed, the thread's own context reads as
//! absent and writes to it are discarded; entered contexts work as usual. None of it panics.
//!
//! S21: with no context entered, a write would go to the thread's own context; inside a Tokio
//! task that context is shared by every unwrapped task on the worker, so [`modify`] refuses the
//! write there (see [`isolation`](crate::isolation)). Entered contexts pay nothing for the check.

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::marker::PhantomData;
use std::ptr;
use std::sync::Arc;

use crate::context::Context;
use crate::isolation;
use crate::var::ContextVar;

/// Storage for thread-critical values (S19): a context used as a plain map, boxed so that a
/// task entry swaps one pointer, and absent until the first thread-critical `set`.
pub(crate) type Critical = Option<Box<Context>>;

/// What every read and write touches: const-initialized and without a destructor.
struct Hot {
    /// The innermost entered context; null when none is, and the thread's own is current.
    active: Cell<*mut Context>,
    /// Changes whenever the current context may change: on entering and leaving, every write,
    /// and the destruction of the thread's own context. A cached lookup of another version is
    /// stale.
    version: Cell<u64>,
    /// Recent lookups, by variable id (see [`find`]).
    cache: [Cell<Cached>; CACHE_SLOTS],
    /// [`read_value`]s in progress on the thread.
    readers: Cell<usize>,
    /// Whether `Own::kept` holds copies to drop when the outermost read ends.
    kept: Cell<bool>,
    /// Task entries not yet left: zero means the thread-critical storage in use is the thread's.
    tasks: Cell<usize>,
    /// Whether the thread-critical storage in use is `Some`: lets a task entry skip swapping two
    /// empty storages, the common case (a swap of two `None`s changes nothing, so it is exact).
    has_critical: Cell<bool>,
}

/// What the thread owns; created on first use, destroyed with the thread.
struct Own {
    context: UnsafeCell<Context>,
    /// Taken out and put back by the few functions that use it; never borrowed across user code.
    critical: Cell<Critical>,
    /// Copies of contexts written to while a [`read_value`] runs, kept until the outermost one
    /// ends (invariant 3).
    kept: RefCell<Vec<Context>>,
}

impl Drop for Own {
    fn drop(&mut self) {
        // Cached lookups may point into the thread's own context, which is about to go.
        HOT.with(Hot::changed);
    }
}

/// Slots of [`Hot::cache`]: a handful of variables is what a hot path reads.
const CACHE_SLOTS: usize = 8;

/// A cached lookup: the variable with this `id` was bound to `value` (its `T`; null if unbound)
/// in the current context as of `version`.
#[derive(Clone, Copy)]
struct Cached {
    id: u64,
    version: u64,
    value: *const (),
}

impl Cached {
    const EMPTY: Cached = Cached {
        id: 0,
        // Never current: versions start at 1.
        version: 0,
        value: ptr::null(),
    };
}

thread_local! {
    static HOT: Hot = const {
        Hot {
            active: Cell::new(ptr::null_mut()),
            version: Cell::new(1),
            cache: [const { Cell::new(Cached::EMPTY) }; CACHE_SLOTS],
            readers: Cell::new(0),
            kept: Cell::new(false),
            tasks: Cell::new(0),
            has_critical: Cell::new(false),
        }
    };
    static OWN: Own = const {
        Own {
            context: UnsafeCell::new(Context::new()),
            critical: Cell::new(None),
            kept: RefCell::new(Vec::new()),
        }
    };
}

impl Hot {
    /// The current context, or null during thread teardown when no context is entered.
    #[inline]
    fn current(&self) -> *mut Context {
        let active = self.active.get();
        if active.is_null() {
            own_context()
        } else {
            active
        }
    }

    /// The current context may have changed: cached lookups are stale.
    #[inline]
    fn changed(&self) {
        self.version.set(self.version.get().wrapping_add(1));
    }

    /// S21: a write to the current context would land in a Tokio worker's own context, shared
    /// by every task on it with no context of its own.
    #[inline]
    fn refuses_write(&self) -> bool {
        self.active.get().is_null() && isolation::in_task()
    }

    /// S21 for thread-critical storage: only a task entry gives a task storage of its own.
    #[inline]
    fn refuses_critical_write(&self) -> bool {
        self.tasks.get() == 0 && isolation::in_task()
    }
}

/// The thread's own context; null while the thread-local is being destroyed, or after.
fn own_context() -> *mut Context {
    OWN.try_with(|own| own.context.get())
        .unwrap_or(ptr::null_mut())
}

/// Runs `f` on the current context. `f` must not run user code nor drop user values.
/// `None` during thread teardown with no context entered.
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    let context = HOT.with(Hot::current);
    // SAFETY: a non-null current context is live (invariant 1), and `f` runs no code that
    // could change it (invariant 2).
    (!context.is_null()).then(|| f(unsafe { &*context }))
}

/// `var`'s value in the current context, or null if it is unbound (or during thread teardown
/// with no context entered).
///
/// The pointer is valid until the version changes (the next enter, leave or write on this
/// thread: invariant 4) and carries the provenance of the value's whole `Arc` allocation
/// (`Arc::as_ptr`, not a reference to the `T`), as `Arc::increment_strong_count` needs.
#[inline]
fn find<T: Send + Sync + 'static>(hot: &Hot, var: &ContextVar<T>) -> *const T {
    let id = var.id();
    let slot = &hot.cache[id as usize % CACHE_SLOTS];
    let cached = slot.get();
    if cached.id == id && cached.version == hot.version.get() {
        return cached.value.cast();
    }
    find_uncached(hot, id, slot)
}

#[inline(never)]
fn find_uncached<T: Any>(hot: &Hot, id: u64, slot: &Cell<Cached>) -> *const T {
    let context = hot.current();
    if context.is_null() {
        return ptr::null();
    }
    // SAFETY: a non-null current context is live (invariant 1) and is not being changed
    // (invariant 2).
    let binding = unsafe { &*context }.lookup(id);
    let value = match binding {
        Some(binding) if binding.value.is::<T>() => Arc::as_ptr(&binding.value).cast::<T>(),
        _ => ptr::null(),
    };
    slot.set(Cached {
        id,
        version: hot.version.get(),
        value: value.cast(),
    });
    value
}

/// Whether `var` is bound in the current context.
#[inline]
pub(crate) fn is_bound<T: Send + Sync + 'static>(var: &ContextVar<T>) -> bool {
    !HOT.with(|hot| find(hot, var)).is_null()
}

/// `var`'s value in the current context, if it is bound.
#[inline]
pub(crate) fn get_arc<T: Send + Sync + 'static>(var: &ContextVar<T>) -> Option<Arc<T>> {
    let value = HOT.with(|hot| find(hot, var));
    (!value.is_null()).then(|| {
        // SAFETY: `value` is `Arc::as_ptr` of a live `Arc<dyn Any>` made from an `Arc<T>` by an
        // unsized coercion (what `Arc::from_raw` requires), checked to hold a `T`, found in
        // this version (invariant 4) with nothing run since; the `Arc` made here owns the count
        // added here.
        unsafe {
            Arc::increment_strong_count(value);
            Arc::from_raw(value)
        }
    })
}

/// Runs `f` on `var`'s value in the current context, if it is bound. `f` must not run user
/// code nor drop user values (`Local`'s lookups): unlike [`read_value`], nothing is counted.
#[inline]
pub(crate) fn read_bound<T: Send + Sync + 'static, R>(
    var: &ContextVar<T>,
    f: impl FnOnce(Option<&T>) -> R,
) -> R {
    HOT.with(|hot| {
        let value = find(hot, var);
        // SAFETY: `value` is null or points to a live `T` (`find`, invariant 4), and `f` runs
        // no code that could change the context (invariant 2).
        f(unsafe { value.as_ref() })
    })
}

/// Ends a [`read_value`], also when its user code panics.
struct Reading<'a>(&'a Hot);

impl Drop for Reading<'_> {
    #[inline]
    fn drop(&mut self) {
        let readers = self.0.readers.get() - 1;
        self.0.readers.set(readers);
        if readers == 0 && self.0.kept.get() {
            release_kept(self.0);
        }
    }
}

/// Runs `f` on `var`'s value in the current context, if it is bound;
/// `f` may run any user code, including code that changes the current context.
#[inline]
pub(crate) fn read_value<T: Send + Sync + 'static, R>(
    var: &ContextVar<T>,
    f: impl FnOnce(Option<&T>) -> R,
) -> R {
    HOT.with(|hot| {
        let value = find(hot, var);
        // Counted only around `f`, with nothing opaque in between: when `f` inlines and
        // cannot write, the compiler drops the count altogether.
        hot.readers.set(hot.readers.get() + 1);
        let _reading = Reading(hot);
        // SAFETY: `value` is null or points to a live `T` (`find`, invariant 4). It outlives `f` even if
        // `f` writes to this context or leaves it (invariant 3): a write while `readers` is
        // non-zero keeps a copy of the context, and with it the value, until the outermost
        // read ends.
        f(unsafe { value.as_ref() })
    })
}

/// A write is about to change `context` while a [`read_value`] runs: keep what it reads.
#[cold]
#[inline(never)]
fn keep_for_reader(hot: &Hot, context: *const Context) {
    // SAFETY: `context` is the live current context (invariant 1), read before the caller
    // makes a `&mut` to it.
    let mut copy = Some(unsafe { &*context }.clone());
    let kept = OWN.try_with(|own| own.kept.borrow_mut().extend(copy.take()));
    match kept {
        Ok(()) => hot.kept.set(true),
        // Thread teardown: nowhere to keep it until the read ends, so it is never dropped.
        Err(_) => std::mem::forget(copy),
    }
}

/// The outermost [`read_value`] ended: drop what was kept for it.
#[cold]
#[inline(never)]
fn release_kept(hot: &Hot) {
    hot.kept.set(false);
    // Taken out first: dropping the copies may run user code that reads or writes.
    let kept = OWN.try_with(|own| std::mem::take(&mut *own.kept.borrow_mut()));
    drop(kept);
}

/// Runs `f` on the current context, mutably. `f` must not run user code nor drop user values:
/// it returns what it displaced. `None` (and `f` is not called) during thread teardown with no
/// context entered.
///
/// # Panics
///
/// Inside a Tokio task with no context entered on the thread (S21): `call` names the public
/// API that wrote, and `f` is not called.
// No `#[track_caller]` on the write path: passing the location costs ~5% of a `set` (measured);
// the panic names the call instead, and the backtrace shows the caller.
#[inline]
pub(crate) fn modify<R>(call: &'static str, f: impl FnOnce(&mut Context) -> R) -> Option<R> {
    HOT.with(|hot| {
        if hot.refuses_write() {
            isolation::refuse_write(call);
        }
        let context = hot.current();
        if context.is_null() {
            return None;
        }
        hot.changed();
        if hot.readers.get() != 0 {
            keep_for_reader(hot, context);
        }
        // SAFETY: the current context is live (invariant 1) and no other reference to it is in
        // use (invariant 2; a reader's values are kept elsewhere, invariant 3).
        let context = unsafe { &mut *context };
        let result = f(context);
        let retired = context.take_retired();
        // Dropped with the `&mut` no longer in use: it may run a value's `Drop`, which may use
        // the current context.
        drop(retired);
        Some(result)
    })
}

/// Whether [`modify`] would accept a write here (S21), without panicking.
pub(crate) fn writable() -> bool {
    !HOT.with(Hot::refuses_write)
}

/// Panics as [`modify`] (or, for `thread_critical`, [`modify_critical`]) would for a write by
/// `call` here (S21); for writes that may turn out to change nothing, such as removing a
/// missing attribute, so that misuse is refused either way.
pub(crate) fn check_writable(call: &'static str, thread_critical: bool) {
    let refused = HOT.with(|hot| match thread_critical {
        true => hot.refuses_critical_write(),
        false => hot.refuses_write(),
    });
    if refused {
        isolation::refuse_write(call);
    }
}

/// Runs `f` on the thread-critical storage in use (S19); `None` if there is none yet. `f` must
/// not run user code nor drop user values.
pub(crate) fn read_critical<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
    let mut f = Some(f);
    let read = OWN.try_with(|own| {
        let critical = own.critical.take();
        let result = (f.take().expect("read_critical calls f once"))(critical.as_deref());
        own.critical.set(critical);
        result
    });
    match (read, f) {
        (Ok(result), _) => result,
        (Err(_), Some(f)) => f(None),
        (Err(_), None) => unreachable!("f is taken only when the thread-local is there"),
    }
}

/// Runs `f` on the thread-critical storage in use, mutably, creating it if needed. `f` must
/// not run user code nor drop user values: it returns what it displaced. `None` (and `f` is
/// not called) if the thread-local is gone.
///
/// # Panics
///
/// Inside a Tokio task with no task entry on the thread (S21): the storage would be the
/// worker thread's, shared by every task on it. A `run` does not count: it does not change
/// the storage.
pub(crate) fn modify_critical<R>(
    call: &'static str,
    f: impl FnOnce(&mut Context) -> R,
) -> Option<R> {
    if HOT.with(Hot::refuses_critical_write) {
        isolation::refuse_write(call);
    }
    OWN.try_with(|own| {
        let mut critical = own.critical.take();
        let storage = critical.get_or_insert_with(Box::default);
        let result = f(storage);
        let retired = storage.take_retired();
        own.critical.set(critical);
        HOT.with(|hot| hot.has_critical.set(true));
        (result, retired)
    })
    .ok()
    // What the write retired drops once the storage is back in place.
    .map(|(result, _retired)| result)
}

/// What a guard enters, as raw pointers (see invariant 1): a context, and for a task also its
/// thread-critical storage.
pub(crate) struct RawEntry {
    context: *mut Context,
    /// Null for a plain `run`, which keeps the thread's storage (S19).
    critical: *mut Critical,
    /// A task of its own even inside another task entry (a bridge job, a runtime hook's task,
    /// `async_to_sync`'s future), rather than a part of the enclosing task (a `scope`, a
    /// `join!` branch).
    forced_own_storage: bool,
}

/// Something [`run_in`] can enter: borrowed for `'a`, for as long as it is entered.
pub(crate) trait Entry<'a> {
    /// Whether the entry can carry thread-critical storage: known at compile time, so that a
    /// plain `run` compiles to the pointer swap alone.
    const TASK: bool;
    fn into_raw(self) -> RawEntry;
}

impl<'a> Entry<'a> for &'a mut Context {
    const TASK: bool = false;

    #[inline]
    fn into_raw(self) -> RawEntry {
        RawEntry {
            context: self,
            critical: ptr::null_mut(),
            forced_own_storage: false,
        }
    }
}

/// A task's context and thread-critical storage, borrowed (`Scoped`, bridge jobs).
pub(crate) struct TaskEntry<'a> {
    pub(crate) context: &'a mut Context,
    pub(crate) critical: &'a mut Critical,
    /// A task of its own even when entered inside another (see [`RawEntry`]).
    pub(crate) own: bool,
}

impl<'a> Entry<'a> for TaskEntry<'a> {
    const TASK: bool = true;

    #[inline]
    fn into_raw(self) -> RawEntry {
        RawEntry {
            context: self.context,
            critical: self.critical,
            forced_own_storage: self.own,
        }
    }
}

/// What entering replaced, to put back on leaving.
struct Previous {
    context: *mut Context,
    /// Whether the entry's thread-critical storage was swapped in (to swap back on leaving).
    own_storage: bool,
}

/// Makes `entry` current: its context, and for a task entry its thread-critical storage when
/// the entry is a task of its own (the outermost task entry on the thread, or a forced one).
#[inline]
fn enter(hot: &Hot, entry: &RawEntry, task: bool) -> Previous {
    let mut own_storage = false;
    if task && !entry.critical.is_null() {
        own_storage = entry.forced_own_storage || hot.tasks.get() == 0;
        hot.tasks.set(hot.tasks.get() + 1);
        if own_storage {
            swap_critical(hot, entry.critical);
        }
    }
    hot.changed();
    Previous {
        context: hot.active.replace(entry.context),
        own_storage,
    }
}

/// Undoes [`enter`].
#[inline]
fn leave(hot: &Hot, entry: &RawEntry, previous: &Previous, task: bool) {
    hot.active.set(previous.context);
    hot.changed();
    if task && !entry.critical.is_null() {
        hot.tasks.set(hot.tasks.get() - 1);
        if previous.own_storage {
            swap_critical(hot, entry.critical);
        }
    }
}

/// Exchanges the thread-critical storage in use with a task's, unless both are empty.
#[inline]
fn swap_critical(hot: &Hot, critical: *mut Critical) {
    // SAFETY: `critical` comes from an `Entry` borrowed (or boxed) for as long as it is entered
    // (invariant 1), and nothing else uses it meanwhile: only `enter` and `leave` touch it.
    let critical = unsafe { &mut *critical };
    if critical.is_some() || hot.has_critical.get() {
        swap_critical_storage(hot, critical);
    }
}

/// Out of line: most tasks never use thread-critical values, and keeping this out of `enter`
/// and `leave` lets a `run` or a poll inline whole.
#[cold]
#[inline(never)]
fn swap_critical_storage(hot: &Hot, critical: &mut Critical) {
    // During thread teardown there is no storage to swap with; the task keeps its own.
    let _ = OWN.try_with(|own| {
        hot.has_critical.set(critical.is_some());
        own.critical.swap(Cell::from_mut(critical));
    });
}

/// Runs `f` with `entry` current, then makes the previous context current again; the entry
/// holds everything set meanwhile.
#[inline]
pub(crate) fn run_in<'a, E: Entry<'a>, R>(entry: E, f: impl FnOnce() -> R) -> R {
    /// Leaves on drop, also when `f` panics.
    struct Entered<'h, 'a, E: Entry<'a>> {
        hot: &'h Hot,
        entry: RawEntry,
        previous: Previous,
        kind: PhantomData<fn(E) -> &'a ()>,
    }

    impl<'a, E: Entry<'a>> Drop for Entered<'_, 'a, E> {
        #[inline]
        fn drop(&mut self) {
            // Unconditionally: this guard is on the stack, so every context entered after it
            // by another `run_in` has been left already, and a runtime task guard entered after
            // it and not left is never left later (`TaskGuard::is_innermost`).
            leave(self.hot, &self.entry, &self.previous, E::TASK);
        }
    }

    let entry = entry.into_raw();
    HOT.with(|hot| {
        let previous = enter(hot, &entry, E::TASK);
        let _entered = Entered::<E> {
            hot,
            entry,
            previous,
            kind: PhantomData,
        };
        f()
    })
}

/// Runs `f` with `context` current as a task of its own (a bridge's job on a pool thread):
/// fresh thread-critical storage, dropped when `f` returns, so nothing is left on the thread.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn run_as_task<R>(context: &mut Context, f: impl FnOnce() -> R) -> R {
    let mut critical = None;
    let entry = TaskEntry {
        context,
        critical: &mut critical,
        own: true,
    };
    run_in(entry, f)
}

/// A task's context and thread-critical storage, owned (the runtime hooks).
#[derive(Default)]
pub(crate) struct OwnedTask {
    pub(crate) context: Context,
    pub(crate) critical: Critical,
}

/// Makes a task current until [`TaskGuard::exit`]: the runtime hooks enter in the before-poll
/// hook and leave in the after-poll hook, keeping the guard in between.
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) fn enter_task(task: Box<OwnedTask>) -> TaskGuard {
    let task = Box::into_raw(task);
    // SAFETY: `task` is a valid box, now owned by the guard until `exit` or drop rebuild it.
    let entry = unsafe {
        RawEntry {
            context: &raw mut (*task).context,
            critical: &raw mut (*task).critical,
            forced_own_storage: true,
        }
    };
    let previous = HOT.with(|hot| enter(hot, &entry, true));
    TaskGuard {
        task,
        entry,
        previous,
        _not_send: PhantomData,
    }
}

/// Guard of [`enter_task`].
pub(crate) struct TaskGuard {
    /// The boxed task, owned: rebuilt into a `Box` by `exit` or `drop`.
    task: *mut OwnedTask,
    entry: RawEntry,
    previous: Previous,
    /// Entered on this thread, so left on it.
    _not_send: PhantomData<*mut ()>,
}

#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
impl TaskGuard {
    /// Whether the task is the innermost entered context, so that it may be left. It is not
    /// when hooks called by hand run in another entered context (inside a `run`, or before the
    /// after-poll hook of a task entered later).
    pub(crate) fn is_innermost(&self) -> bool {
        HOT.with(|hot| hot.active.get() == self.entry.context)
    }

    /// Leaves the task and gives it back with everything set while it was entered; `None` (and
    /// the guard is kept) if it is not the innermost entered context, which leaving would make
    /// dangle.
    pub(crate) fn exit(self) -> Result<Box<OwnedTask>, TaskGuard> {
        if !self.is_innermost() {
            return Err(self);
        }
        HOT.with(|hot| self.leave(hot));
        let task = self.task;
        std::mem::forget(self);
        // SAFETY: from `Box::into_raw` in `enter_task`; the guard, its only owner, is forgotten,
        // and the task is no longer entered, so no pointer to it remains in use.
        Ok(unsafe { Box::from_raw(task) })
    }
}

impl TaskGuard {
    /// Leaves the task, which its owner may then change or drop: unlike a `run_in` frame, this
    /// can happen inside a `ContextVar::with` reading the task's context (hooks called by hand
    /// from one), so a read in progress keeps a copy first (invariant 3).
    fn leave(&self, hot: &Hot) {
        if hot.readers.get() != 0 {
            keep_for_reader(hot, self.entry.context);
        }
        leave(hot, &self.entry, &self.previous, true);
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.is_innermost() {
            HOT.with(|hot| self.leave(hot));
            // SAFETY: as in `exit`: the guard is the only owner and the task is left.
            drop(unsafe { Box::from_raw(self.task) });
        }
        // Otherwise a context entered later is current and may lead back to this task when it
        // is left: the task is leaked rather than freed (only reachable through hooks called by
        // hand in the wrong place).
    }
}
