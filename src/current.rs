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
//! - [`Entered`]: the one guard that makes a context current. [`run_in`] keeps one on its frame
//!   while a closure runs (`run`, `Scoped` polls, bridge jobs) and it leaves when it drops;
//!   [`enter_task`] hands one to the runtime hooks, which keep it from the before-poll to the
//!   after-poll hook and leave by [`Entered::exit`] or drop, only as the innermost entered
//!   context (otherwise the task stays entered, or is leaked, never freed). A task [`Entry`]
//!   also makes the task's own storage for thread-critical values the one in use.
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
//! 1. **A non-null `Hot::active` points to a live context that nothing else uses**, and a
//!    non-null `Hot::critical` to a task's live thread-critical storage. Only an
//!    [`Entered`] guard sets them, to an entry whose owner is borrowed (or boxed and owned) for
//!    as long as it is entered, turned into a raw pointer at once so that no reference to it is
//!    retagged while it is in use. Guards put the previous pointer back in LIFO order: a
//!    borrowed entry's guard lives on [`run_in`]'s stack frame, and an owned entry's leaves only
//!    when it is innermost; one that is not is kept, or leaked, never freed while a pointer to
//!    it may remain.
//! 2. **No `&mut Context` and `&Context` to the current context overlap.** [`read`] and
//!    [`modify`] (and [`read_critical`] and [`modify_critical`], for the thread-critical
//!    storage) hand out a reference for a closure that runs no user code (the callers'
//!    contract; displaced values are dropped after the closure returns), so they never nest.
//! 3. **A value [`read_value`] hands to user code outlives the read.** The user code may write
//!    to the very context it reads. A write while a read is in progress first keeps a copy of
//!    the context (O(1): one reference count) until the outermost read ends, which keeps the map,
//!    and with it every value, alive. The write then finds the map shared and copies before
//!    changing it, so the memory the reader points into is never written. A write keeps no
//!    copy when the map storage it changes is the one a previous write left current with no
//!    read started since ([`Fresh`]): no read in progress points into it, and everything one
//!    may point into is kept, so shared, so copied before any change. (Else a loop of writes
//!    inside one read would keep a copy, and every value it replaced, per write.) Leaving a
//!    runtime task's context (the one entry not tied to a stack frame, so it can end inside a
//!    read) keeps a copy the same way. A write never drops a value itself: what it displaces,
//!    and map representations it retires, are dropped after it lets go of the context.
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
//! write there (see [`isolation`]). Entered contexts pay nothing for the check.

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::marker::PhantomData;
use std::ptr;
use std::sync::Arc;

use crate::context::Context;
use crate::isolation;
use crate::var::ContextVar;

/// Storage for thread-critical values (S19): a context used as a plain map, absent until the
/// first thread-critical `set`, and boxed so that a task that never uses it carries one word.
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
    /// [`read_value`]s started on the thread (wrapping): a read that starts makes [`Fresh`]
    /// stale.
    reads: Cell<u64>,
    /// Whether `Own::kept` holds copies to drop when the outermost read ends.
    kept: Cell<bool>,
    /// The map storage a write left current while reads were in progress (invariant 3).
    fresh: Cell<Fresh>,
    /// The thread-critical storage of the innermost task entry that has one of its own (the
    /// outermost task entry, or a forced one); null when no task is entered, and the thread's
    /// own storage is in use.
    critical: Cell<*mut Critical>,
}

/// What the thread owns; created on first use, destroyed with the thread.
struct Own {
    context: UnsafeCell<Context>,
    /// The thread's thread-critical storage, in use when no task is entered. Taken out and put
    /// back by the two functions that use it; never borrowed across user code.
    critical: Cell<Critical>,
    /// Copies of contexts written to while a [`read_value`] runs, kept until the outermost one
    /// ends (invariant 3).
    kept: RefCell<Vec<Context>>,
}

impl Drop for Own {
    fn drop(&mut self) {
        // Cached lookups may point into the thread's own context, which is about to go. (If
        // `HOT` is gone too, as on targets without native thread-locals, nothing can use them.)
        let _ = HOT.try_with(Hot::changed);
    }
}

/// What a write left current while reads were in progress: `context`'s map storage was
/// `map` when `reads` reads had started. While all three still hold, no read in progress can
/// point into that storage (invariant 3), and a write needs to keep no copy for them.
#[derive(Clone, Copy)]
struct Fresh {
    context: *const Context,
    map: *const (),
    reads: u64,
}

impl Fresh {
    /// Matches no current context: those are never null.
    const NONE: Fresh = Fresh {
        context: ptr::null(),
        map: ptr::null(),
        reads: 0,
    };
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
            reads: Cell::new(0),
            kept: Cell::new(false),
            fresh: Cell::new(Fresh::NONE),
            critical: Cell::new(ptr::null_mut()),
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

/// `HOT.with`, through `try_with`: `LocalKey::with` is not `#[inline]` while `try_with` is,
/// so a `with` call may stay out of line (with its thread-local access through a function
/// pointer) depending on which codegen unit its copy lands in; `try_with` is inlined into the
/// caller. Measured on `ContextVar::with`: 55 instructions through `with`, 32 through this.
#[inline(always)]
fn with_hot<R>(f: impl FnOnce(&Hot) -> R) -> R {
    match HOT.try_with(f) {
        Ok(result) => result,
        // With native thread-locals a `const` one without a destructor is never destroyed. On
        // targets where std keeps thread-locals under OS keys it is, last, at thread exit: this
        // panics there as `LocalKey::with` would.
        Err(_) => {
            unreachable!("contextvars: the current-context thread-local is already destroyed")
        }
    }
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

    /// The cache slot of the variable with this id.
    #[inline]
    fn slot(&self, id: u64) -> &Cell<Cached> {
        &self.cache[id as usize % CACHE_SLOTS]
    }

    /// Caches that the variable with this id is bound to `value` (null: unbound) in the
    /// current version (invariant 4).
    #[inline]
    fn remember(&self, id: u64, value: *const ()) {
        self.slot(id).set(Cached {
            id,
            version: self.version.get(),
            value,
        });
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
        self.active.get().is_null() && isolation::refuses_unowned_writes()
    }

    /// S21 for thread-critical storage: only a task entry gives a task storage of its own.
    #[inline]
    fn refuses_critical_write(&self) -> bool {
        self.critical.get().is_null() && isolation::refuses_unowned_writes()
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
    let context = with_hot(Hot::current);
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
    let cached = hot.slot(id).get();
    if cached.id == id && cached.version == hot.version.get() {
        return cached.value.cast();
    }
    find_uncached(hot, id)
}

#[inline(never)]
fn find_uncached<T: Any>(hot: &Hot, id: u64) -> *const T {
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
    hot.remember(id, value.cast());
    value
}

/// Whether `var` is bound in the current context.
#[inline]
pub(crate) fn is_bound<T: Send + Sync + 'static>(var: &ContextVar<T>) -> bool {
    !with_hot(|hot| find(hot, var)).is_null()
}

/// `var`'s value in the current context, if it is bound.
#[inline]
pub(crate) fn get_arc<T: Send + Sync + 'static>(var: &ContextVar<T>) -> Option<Arc<T>> {
    let value = with_hot(|hot| find(hot, var));
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
    with_hot(|hot| {
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
    with_hot(|hot| {
        let value = find(hot, var);
        hot.reads.set(hot.reads.get().wrapping_add(1));
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

/// A write inside a read is done: every storage a read in progress may point into is kept
/// (just now, or earlier and still held), so what is current now is new since, or is kept
/// itself and so is copied before any change.
#[cold]
#[inline(never)]
fn record_fresh(hot: &Hot, context: &Context) {
    hot.fresh.set(Fresh {
        context,
        map: context.map_identity(),
        reads: hot.reads.get(),
    });
}

/// Whether `context`'s map storage is the one an earlier write left current, with no read
/// started since (see [`Fresh`]).
#[inline]
fn is_fresh(hot: &Hot, context: *const Context) -> bool {
    let fresh = hot.fresh.get();
    // SAFETY: `context` is the live current context (invariant 1), read before the caller
    // makes a `&mut` to it.
    fresh.context == context
        && fresh.reads == hot.reads.get()
        && fresh.map == unsafe { &*context }.map_identity()
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
    modify_then(call, f, |_| ())
}

/// [`modify`] for a write that binds `var` to the `Arc` whose [`Arc::as_ptr`] is `value`
/// (`set`; `f` must bind it): the lookup is cached too, so the next read of `var` hits the
/// cache instead of searching the map for what was just written.
///
/// # Panics
///
/// As [`modify`].
#[inline]
pub(crate) fn modify_binding<T: Send + Sync + 'static, R>(
    call: &'static str,
    var: &ContextVar<T>,
    value: *const T,
    f: impl FnOnce(&mut Context) -> R,
) -> Option<R> {
    // Invariant 4: made in the version the write started, for the value it bound under `var`'s
    // id. Whatever runs later and changes the context starts a new version.
    modify_then(call, f, |hot| hot.remember(var.id(), value.cast()))
}

/// Whether [`modify`] would refuse a write here (S21), without panicking: for a bridge whose
/// closure panicked, so that its own panic, not the refusal, reaches the caller.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the bridges live in `task`
pub(crate) fn refuses_write() -> bool {
    with_hot(Hot::refuses_write)
}

/// [`modify`], with `then` run after `f`, before anything the write displaced is dropped.
#[inline]
fn modify_then<R>(
    call: &'static str,
    f: impl FnOnce(&mut Context) -> R,
    then: impl FnOnce(&Hot),
) -> Option<R> {
    with_hot(|hot| {
        if hot.refuses_write() {
            isolation::refuse_write(call);
        }
        let context = hot.current();
        if context.is_null() {
            return None;
        }
        hot.changed();
        if hot.readers.get() != 0 && !is_fresh(hot, context) {
            keep_for_reader(hot, context);
        }
        // SAFETY: the current context is live (invariant 1) and no other reference to it is in
        // use (invariant 2; a reader's values are kept elsewhere, invariant 3).
        let context = unsafe { &mut *context };
        let result = f(context);
        if hot.readers.get() != 0 {
            record_fresh(hot, context);
        }
        then(hot);
        let retired = context.take_retired();
        // Dropped with the `&mut` no longer in use: it may run a value's `Drop`, which may use
        // the current context.
        drop(retired);
        Some(result)
    })
}

/// Whether [`modify`] would accept a write here (S21), without panicking.
pub(crate) fn writable() -> bool {
    !with_hot(Hot::refuses_write)
}

/// Panics as [`modify`] (or, for `thread_critical`, [`modify_critical`]) would for a write by
/// `call` here (S21); for writes that may turn out to change nothing, such as removing a
/// missing attribute, so that misuse is refused either way.
pub(crate) fn check_writable(call: &'static str, thread_critical: bool) {
    let refused = with_hot(|hot| match thread_critical {
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
    let task = with_hot(|hot| hot.critical.get());
    if !task.is_null() {
        // SAFETY: a non-null `Hot::critical` points to a live storage that nothing else uses
        // (invariant 1), and `f` runs no code that could change it (invariant 2).
        return f(unsafe { &*task }.as_deref());
    }
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
    let task = with_hot(|hot| {
        if hot.refuses_critical_write() {
            isolation::refuse_write(call);
        }
        hot.critical.get()
    });
    let write = |critical: &mut Critical| {
        let storage = critical.get_or_insert_with(Box::default);
        let result = f(storage);
        (result, storage.take_retired())
    };
    let written = match task.is_null() {
        // SAFETY: as in `read_critical`; the `&mut` ends with `write`, before what the write
        // retired is dropped.
        false => Some(write(unsafe { &mut *task })),
        true => OWN
            .try_with(|own| {
                let mut critical = own.critical.take();
                let written = write(&mut critical);
                own.critical.set(critical);
                written
            })
            .ok(),
    };
    // What the write retired drops once the storage is no longer borrowed.
    written.map(|(result, _retired)| result)
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
    /// The box an owned entry came from ([`Entry::OWNED`]); null for a borrowed one.
    task: *mut OwnedTask,
}

/// Something an [`Entered`] guard can enter.
pub(crate) trait Entry {
    /// Whether the entry can carry thread-critical storage: known at compile time, so that a
    /// plain `run` compiles to the pointer swap alone.
    const TASK: bool;
    /// Whether the guard owns the entry (a runtime task's box, entered from one hook to the
    /// next) rather than borrowing it for a [`run_in`] frame.
    const OWNED: bool;
    fn into_raw(self) -> RawEntry;
}

impl Entry for &mut Context {
    const TASK: bool = false;
    const OWNED: bool = false;

    #[inline]
    fn into_raw(self) -> RawEntry {
        RawEntry {
            context: self,
            critical: ptr::null_mut(),
            forced_own_storage: false,
            task: ptr::null_mut(),
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

impl Entry for TaskEntry<'_> {
    const TASK: bool = true;
    const OWNED: bool = false;

    #[inline]
    fn into_raw(self) -> RawEntry {
        RawEntry {
            context: self.context,
            critical: self.critical,
            forced_own_storage: self.own,
            task: ptr::null_mut(),
        }
    }
}

/// A task's context and thread-critical storage, owned (the runtime hooks).
#[derive(Default)]
pub(crate) struct OwnedTask {
    pub(crate) context: Context,
    pub(crate) critical: Critical,
}

impl Entry for Box<OwnedTask> {
    const TASK: bool = true;
    const OWNED: bool = true;

    fn into_raw(self) -> RawEntry {
        let task = Box::into_raw(self);
        // SAFETY: `task` is a valid box, now owned by the guard until it rebuilds the box.
        unsafe {
            RawEntry {
                context: &raw mut (*task).context,
                critical: &raw mut (*task).critical,
                forced_own_storage: true,
                task,
            }
        }
    }
}

/// What entering replaced, to put back on leaving.
struct Previous {
    context: *mut Context,
    /// The thread-critical storage in use before, if the entry put its own in its place.
    critical: Option<*mut Critical>,
}

/// Makes `entry` current: its context, and for a task entry its thread-critical storage when
/// the entry is a task of its own (the outermost task entry on the thread, or a forced one).
#[inline]
fn enter(hot: &Hot, entry: &RawEntry, task: bool) -> Previous {
    let mut critical = None;
    // A task entry always has a storage: only a plain `run`'s (`TASK` false) is null.
    if task && (entry.forced_own_storage || hot.critical.get().is_null()) {
        debug_assert!(!entry.critical.is_null(), "a task entry without storage");
        critical = Some(hot.critical.replace(entry.critical));
    }
    hot.changed();
    Previous {
        context: hot.active.replace(entry.context),
        critical,
    }
}

/// Undoes [`enter`].
#[inline]
fn leave(hot: &Hot, previous: &Previous, task: bool) {
    hot.active.set(previous.context);
    hot.changed();
    if task {
        if let Some(critical) = previous.critical {
            hot.critical.set(critical);
        }
    }
}

/// An entered context, current until the guard drops: the one way in. Made only in this
/// module, by [`run_in`] (on its stack frame, for a borrowed entry: `run`, `Scoped` polls, the
/// bridges' jobs) and [`enter_task`] (for a runtime task's box, kept by the hooks from the
/// before-poll to the after-poll hook).
pub(crate) struct Entered<E: Entry> {
    entry: RawEntry,
    previous: Previous,
    /// Entered on this thread, so left on it.
    kind: PhantomData<(E, *mut ())>,
}

/// The runtime hooks' guard.
pub(crate) type TaskGuard = Entered<Box<OwnedTask>>;

impl<E: Entry> Entered<E> {
    /// Private: a guard of a borrowed entry must drop before the borrow ends, never be
    /// forgotten, so only `run_in` makes one, and keeps it on its frame.
    #[inline]
    fn new(hot: &Hot, entry: E) -> Self {
        let entry = entry.into_raw();
        let previous = enter(hot, &entry, E::TASK);
        Entered {
            entry,
            previous,
            kind: PhantomData,
        }
    }

    /// Leaves, if this guard may; returns whether it did. An owned entry may leave only as the
    /// innermost entered context: it is not when hooks called by hand run in another entered
    /// context (inside a `run`, or before the after-poll hook of a task entered later), and
    /// leaving then would let the later entry put back a pointer to a freed task.
    #[inline]
    fn leave(&self, hot: &Hot) -> bool {
        if E::OWNED {
            if hot.active.get() != self.entry.context {
                return false;
            }
            // Unlike a `run_in` frame, leaving an owned entry can happen inside a
            // `ContextVar::with` reading its context (hooks called by hand from one), and its
            // owner may then change or drop it: a read in progress keeps a copy (invariant 3).
            if hot.readers.get() != 0 {
                keep_for_reader(hot, self.entry.context);
            }
        }
        // A borrowed entry leaves unconditionally: its guard is on `run_in`'s stack, so every
        // borrowed entry made after it has been left already, and an owned one entered after it
        // and not left is never left later (it is not innermost then).
        leave(hot, &self.previous, E::TASK);
        true
    }
}

impl TaskGuard {
    /// Leaves the task and gives it back with everything set while it was entered; the guard
    /// back (still entered) if it is not the innermost entered context, which leaving would
    /// make dangle.
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    pub(crate) fn exit(self) -> Result<Box<OwnedTask>, TaskGuard> {
        if !with_hot(|hot| self.leave(hot)) {
            return Err(self);
        }
        let task = self.entry.task;
        std::mem::forget(self);
        // SAFETY: from `Box::into_raw` in `into_raw`; the guard, its only owner, is forgotten,
        // and the task is no longer entered, so no pointer to it remains in use.
        Ok(unsafe { Box::from_raw(task) })
    }
}

impl<E: Entry> Drop for Entered<E> {
    #[inline]
    fn drop(&mut self) {
        let left = with_hot(|hot| self.leave(hot));
        if E::OWNED && left {
            // SAFETY: as in `exit`: the guard is the only owner and the task is left.
            drop(unsafe { Box::from_raw(self.entry.task) });
        }
        // An owned entry not left: a context entered later is current and may lead back to it
        // when it is left, so the task is leaked rather than freed (only reachable through
        // hooks called by hand in the wrong place).
    }
}

/// Runs `f` with `entry` current, then makes the previous context current again; the entry
/// holds everything set meanwhile.
#[inline]
pub(crate) fn run_in<E: Entry, R>(entry: E, f: impl FnOnce() -> R) -> R {
    // Leaves on drop, also when `f` panics.
    let _entered = with_hot(|hot| Entered::new(hot, entry));
    f()
}

/// Runs `f` with `context` current as a task of its own (a bridge's job on a pool thread, a
/// call of `Context::wrap`): fresh thread-critical storage, dropped when `f` returns, so
/// nothing is left on the thread.
pub(crate) fn run_as_task<R>(context: &mut Context, f: impl FnOnce() -> R) -> R {
    let mut critical = None;
    let entry = TaskEntry {
        context,
        critical: &mut critical,
        own: true,
    };
    run_in(entry, f)
}

/// Makes a runtime task current until its guard's [`exit`](Entered::exit) (or drop): the
/// runtime hooks enter in the before-poll hook and leave in the after-poll hook, keeping the
/// guard in between.
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) fn enter_task(task: Box<OwnedTask>) -> TaskGuard {
    with_hot(|hot| Entered::new(hot, task))
}
