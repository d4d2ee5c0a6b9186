//! The current context of each thread: the one place that touches the thread-local.
//!
//! Every other module reads or changes "the current context" through these functions:
//!
//! - [`read`]: a short look with no user code inside (`get`, `is_set`, `Context::current`).
//! - [`read_shared`]: a look that runs user code (`ContextVar::with`).
//! - [`modify`]: a change with no user code inside (`set`, `reset`).
//! - [`enter`] / [`run_in`]: make a [`Context`] current until the returned guard drops (`run`);
//!   a task [`Entry`] (`Scoped`, bridge jobs, the runtime hooks, which keep an owned guard
//!   between their before- and after-poll hooks) also swaps in the task's own storage for
//!   thread-critical values.
//! - [`read_critical`] / [`modify_critical`]: the storage of `Local::thread_critical` (S19):
//!   the thread's own in plain code, the innermost task's inside a task entry. `run` does not
//!   change it, so a value set on a thread is seen in any context entered on that thread.
//!
//! The thread holds its context in an `Rc`. A reader that runs user code holds a clone of that
//! `Rc` instead of a `RefCell` borrow, so the user code may `set` or `run` freely: a write then
//! finds the `Rc` shared and copies the context first (O(1) for the persistent map), leaving
//! the reader's version intact. In the common case the `Rc` is unique and nothing is copied.
//!
//! User code never runs while the `RefCell` is borrowed, and no user value is dropped while it
//! is borrowed (callers of [`modify`] return displaced values and drop them afterwards), so the
//! `borrow`/`borrow_mut` calls here cannot panic.
//!
//! While the thread's thread-local storage is being destroyed, reads see an empty context,
//! writes are discarded and [`enter`] does nothing: none of them panics.
//!
//! The slot also counts how many contexts are entered on the thread. With none entered, a
//! write goes to the thread's own context; inside a Tokio task that context is shared by every
//! unwrapped task on the worker, so [`modify`] refuses the write there (S21, see
//! [`isolation`](crate::isolation)). Entered contexts cost the check nothing but a `Cell` read.

use std::cell::{Cell, RefCell};
use std::mem;
use std::rc::Rc;

use crate::context::Context;
use crate::isolation;

/// The thread's current context. Cloning keeps the identity: it is the same context, copied
/// on write because a reader still looks at the old version.
struct Slot(Context);

impl Clone for Slot {
    fn clone(&self) -> Self {
        Slot(self.0.clone_same_identity())
    }
}

/// Storage for thread-critical values (S19): a context used as a plain map, boxed so that a
/// task entry swaps one pointer, and absent until the first thread-critical `set`.
pub(crate) type Critical = Option<Box<Context>>;

/// What the thread-local holds: the current context, the thread-critical storage in use, and
/// how many contexts and tasks are entered.
struct Current {
    slot: RefCell<Rc<Slot>>,
    /// Entered contexts ([`enter`], [`run_in`], task entries) not yet exited on this thread.
    /// Zero means the thread's own context is current.
    entered: Cell<usize>,
    /// Taken out and put back by the few functions that use it; never borrowed across user code.
    critical: Cell<Critical>,
    /// Whether `critical` is `Some`: lets a task entry skip swapping two empty storages, the
    /// common case (a swap of two `None`s changes nothing, so skipping it is exact).
    has_critical: Cell<bool>,
    /// Task entries not yet exited: zero means `critical` is the thread's own.
    tasks: Cell<usize>,
}

impl Current {
    /// S21: a write to the current context would land in a Tokio worker's own context, shared
    /// by every task on it with no context of its own.
    #[inline]
    fn refuses_write(&self) -> bool {
        self.entered.get() == 0 && isolation::in_task()
    }

    /// S21 for thread-critical storage: only a task entry gives a task storage of its own.
    #[inline]
    fn refuses_critical_write(&self) -> bool {
        self.tasks.get() == 0 && isolation::in_task()
    }
}

thread_local! {
    static CURRENT: Current = Current {
        slot: RefCell::new(Rc::new(Slot(Context::new()))),
        entered: Cell::new(0),
        critical: const { Cell::new(None) },
        has_critical: Cell::new(false),
        tasks: Cell::new(0),
    };
}

/// Runs `f` on the current context. `f` must not run user code nor drop user values.
/// `None` if the thread-local is gone (thread teardown).
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    CURRENT.try_with(|current| f(&current.slot.borrow().0)).ok()
}

/// [`read`], with `None` for `f` if the thread-local is gone.
#[inline]
pub(crate) fn read_or_none<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
    let mut f = Some(f);
    let f_slot = &mut f;
    match CURRENT.try_with(move |current| {
        (f_slot.take().expect("called once"))(Some(&current.slot.borrow().0))
    }) {
        Ok(result) => result,
        Err(_) => (f.take().expect("not called: the thread-local is gone"))(None),
    }
}

/// Runs `f` on the current context; `f` may run any user code, including code that changes
/// the current context. `f` gets `None` if the thread-local is gone.
#[inline]
pub(crate) fn read_shared<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
    match CURRENT.try_with(|current| Rc::clone(&current.slot.borrow())) {
        Ok(slot) => f(Some(&slot.0)),
        Err(_) => f(None),
    }
}

/// Runs `f` on the current context, mutably. `f` must not run user code nor drop user values:
/// it returns what it displaced. `None` (and `f` is not called) if the thread-local is gone.
///
/// # Panics
///
/// Inside a Tokio task with no context entered on the thread (S21): `call` names the public
/// API that wrote, and `f` is not called.
// No `#[track_caller]` on the write path: passing the location costs ~5% of a `set` (measured);
// the panic names the call instead, and the backtrace shows the caller.
#[inline]
pub(crate) fn modify<R>(call: &'static str, f: impl FnOnce(&mut Context) -> R) -> Option<R> {
    let mut f = Some(f);
    let result = CURRENT.try_with(|current| {
        if current.refuses_write() {
            return Err(Refused);
        }
        let mut slot = current.slot.borrow_mut();
        let f = f.take().expect("modify calls f at most once");
        Ok(f(&mut Rc::make_mut(&mut slot).0))
    });
    // `f` is dropped here, outside the borrow, if it was not called: it may own user values.
    drop(f);
    match result {
        Ok(Ok(result)) => Some(result),
        Ok(Err(Refused)) => isolation::refuse_write(call),
        Err(_) => None,
    }
}

/// Whether [`modify`] would accept a write here (S21), without panicking.
pub(crate) fn writable() -> bool {
    CURRENT
        .try_with(|current| !current.refuses_write())
        .unwrap_or(true)
}

/// Panics as [`modify`] (or, for `thread_critical`, [`modify_critical`]) would for a write by
/// `call` here (S21); for writes that may turn out to change nothing, such as removing a
/// missing attribute, so that misuse is refused either way.
pub(crate) fn check_writable(call: &'static str, thread_critical: bool) {
    let refused = CURRENT
        .try_with(|current| match thread_critical {
            true => current.refuses_critical_write(),
            false => current.refuses_write(),
        })
        .unwrap_or(false);
    if refused {
        isolation::refuse_write(call);
    }
}

/// [`modify`] found no context entered inside a Tokio task.
struct Refused;

/// Runs `f` on the thread-critical storage in use (S19); `None` if there is none yet. `f` must
/// not run user code nor drop user values.
pub(crate) fn read_critical<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
    let mut f = Some(f);
    let read = CURRENT.try_with(|current| {
        let critical = current.critical.take();
        let result = (f.take().expect("read_critical calls f once"))(critical.as_deref());
        current.critical.set(critical);
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
    let mut f = Some(f);
    let result = CURRENT.try_with(|current| {
        if current.refuses_critical_write() {
            return Err(Refused);
        }
        let mut critical = current.critical.take();
        let storage = critical.get_or_insert_with(Box::default);
        let result = (f.take().expect("modify_critical calls f once"))(storage);
        current.critical.set(critical);
        current.has_critical.set(true);
        Ok(result)
    });
    drop(f);
    match result {
        Ok(Ok(result)) => Some(result),
        Ok(Err(Refused)) => isolation::refuse_write(call),
        Err(_) => None,
    }
}

/// Runs `f` with `ctx` as the current context: [`enter`] and its guard within a single
/// thread-local access. If the thread-local is gone, `f` runs without entering `ctx`.
#[inline]
pub(crate) fn run_in<E: Entry, R>(entry: E, f: impl FnOnce() -> R) -> R {
    // `f` stays here if the thread-local is gone, so it can still run (without `ctx`).
    let mut f = Some(f);
    let f_slot = &mut f;
    let entered = CURRENT.try_with(move |current| {
        let _entered = enter_cell(current, entry);
        f_slot.take().map(|f| f())
    });
    match (entered, f) {
        (Ok(Some(result)), _) => result,
        (_, Some(f)) => f(),
        (_, None) => unreachable!("f is taken only by the closure, which then returns Some"),
    }
}

/// How [`Entered`] puts the previous context back.
enum Restore {
    /// The entered context was swapped into the thread's slot in place; swap it back.
    Swapped,
    /// The slot was shared by a reader, so the entered context got a slot of its own; this is
    /// the previous slot.
    Stashed(Rc<Slot>),
    /// The thread-local is gone: nothing was entered.
    Nothing,
}

/// What a guard enters: a context, and for a task also its thread-critical storage.
pub(crate) trait Entry {
    fn context(&mut self) -> &mut Context;
    /// The task's own thread-critical storage, swapped in with the context; `None` for a plain
    /// `run`, which keeps the thread's (S19).
    fn critical(&mut self) -> Option<&mut Critical>;
    /// Whether the entry is a task of its own even inside another task entry (a bridge job,
    /// a runtime hook's task, `async_to_sync`'s future), rather than a part of the enclosing
    /// task (a `scope`, a `join!` branch).
    fn forces_own_storage(&self) -> bool {
        false
    }
}

impl Entry for &mut Context {
    #[inline]
    fn context(&mut self) -> &mut Context {
        self
    }

    #[inline]
    fn critical(&mut self) -> Option<&mut Critical> {
        None
    }
}

/// A task's context and thread-critical storage, borrowed (`Scoped`, pool jobs).
pub(crate) struct TaskEntry<'a> {
    pub(crate) context: &'a mut Context,
    pub(crate) critical: &'a mut Critical,
    /// A task of its own even when entered inside another (see [`Entry::forces_own_storage`]).
    pub(crate) own: bool,
}

impl Entry for TaskEntry<'_> {
    #[inline]
    fn context(&mut self) -> &mut Context {
        self.context
    }

    #[inline]
    fn critical(&mut self) -> Option<&mut Critical> {
        Some(self.critical)
    }

    #[inline]
    fn forces_own_storage(&self) -> bool {
        self.own
    }
}

/// A task's context and thread-critical storage, owned (bridge jobs, the runtime hooks).
#[derive(Default)]
pub(crate) struct OwnedTask {
    pub(crate) context: Context,
    pub(crate) critical: Critical,
}

impl Entry for OwnedTask {
    #[inline]
    fn context(&mut self) -> &mut Context {
        &mut self.context
    }

    #[inline]
    fn critical(&mut self) -> Option<&mut Critical> {
        Some(&mut self.critical)
    }

    fn forces_own_storage(&self) -> bool {
        true
    }
}

/// Makes `entry`'s context current until the returned guard drops (a task entry also swaps in
/// its thread-critical storage); then the previous one is current again and the entry holds
/// everything set meanwhile. Nested guards must drop in LIFO order, which their borrows of the
/// entered contexts enforce for `run`, and poll nesting for `Scoped`.
#[inline]
pub(crate) fn enter<'a, E: Entry>(mut entry: E) -> Entered<'a, E> {
    let (restore, own_storage) = CURRENT
        .try_with(|current| swap_in(current, &mut entry))
        .unwrap_or((Restore::Nothing, false));
    Entered {
        entry,
        restore,
        own_storage,
        cell: None,
    }
}

/// [`enter`] with the thread-local already in hand; the guard reuses it on exit.
#[inline]
fn enter_cell<E: Entry>(current: &Current, mut entry: E) -> Entered<'_, E> {
    let (restore, own_storage) = swap_in(current, &mut entry);
    Entered {
        entry,
        restore,
        own_storage,
        cell: Some(current),
    }
}

#[inline]
fn swap_in<E: Entry>(current: &Current, entry: &mut E) -> (Restore, bool) {
    current.entered.set(current.entered.get() + 1);
    let forced = entry.forces_own_storage();
    let mut own_storage = false;
    if let Some(critical) = entry.critical() {
        // The outermost task entry on the thread is the task; one inside it (a `scope`, a
        // `join!` branch) shares the task's storage, unless it is a task of its own.
        own_storage = forced || current.tasks.get() == 0;
        current.tasks.set(current.tasks.get() + 1);
        if own_storage {
            swap_critical(current, critical);
        }
    }
    let ctx = entry.context();
    let mut slot = current.slot.borrow_mut();
    let restore = match Rc::get_mut(&mut slot) {
        Some(Slot(current)) => {
            mem::swap(current, ctx);
            Restore::Swapped
        }
        None => enter_shared(&mut slot, ctx),
    };
    (restore, own_storage)
}

/// `enter` while a reader holds the thread's slot (a `run` inside `ContextVar::with`).
#[cold]
fn enter_shared(slot: &mut Rc<Slot>, ctx: &mut Context) -> Restore {
    let entered = Rc::new(Slot(mem::take(ctx)));
    Restore::Stashed(mem::replace(slot, entered))
}

/// Exchanges the thread's thread-critical storage in use with a task's, unless both are empty.
#[inline]
fn swap_critical(current: &Current, critical: &mut Critical) {
    if critical.is_some() || current.has_critical.get() {
        current.has_critical.set(critical.is_some());
        current.critical.swap(Cell::from_mut(critical));
    }
}

/// Guard returned by [`enter`]. Its `Drop` cannot panic:
/// the `borrow_mut`s are never contended (see the module docs) and the rest only moves values.
pub(crate) struct Entered<'a, E: Entry> {
    entry: E,
    restore: Restore,
    /// Whether the entry's thread-critical storage was swapped in (to swap back on exit).
    own_storage: bool,
    /// The thread-local, when the guard was made with it in hand (saves a lookup on exit).
    cell: Option<&'a Current>,
}

impl<E: Entry> Drop for Entered<'_, E> {
    #[inline]
    fn drop(&mut self) {
        self.restore_previous();
    }
}

impl Entered<'_, OwnedTask> {
    /// Makes the previous context (and storage) current again and returns the task, with
    /// everything set while it was entered.
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    pub(crate) fn exit(mut self) -> OwnedTask {
        self.restore_previous();
        mem::take(&mut self.entry)
    }
}

impl<E: Entry> Entered<'_, E> {
    #[inline]
    fn restore_previous(&mut self) {
        let own_storage = self.own_storage;
        match mem::replace(&mut self.restore, Restore::Nothing) {
            Restore::Swapped => {
                let entry = &mut self.entry;
                let mut swap_out = |current: &Current| {
                    current.entered.set(current.entered.get() - 1);
                    if let Some(critical) = entry.critical() {
                        current.tasks.set(current.tasks.get() - 1);
                        if own_storage {
                            swap_critical(current, critical);
                        }
                    }
                    match Rc::get_mut(&mut current.slot.borrow_mut()) {
                        Some(Slot(entered)) => {
                            mem::swap(entered, entry.context());
                            true
                        }
                        None => false,
                    }
                };
                let swapped = match self.cell {
                    Some(current) => Ok(swap_out(current)),
                    None => CURRENT.try_with(swap_out),
                };
                if swapped == Ok(false) {
                    self.exit_shared();
                }
            }
            Restore::Stashed(previous) => self.exit_stashed(previous),
            Restore::Nothing => {}
        }
    }

    #[cold]
    fn exit_stashed(&mut self, previous: Rc<Slot>) {
        let own_storage = self.own_storage;
        let entry = &mut self.entry;
        let entered = CURRENT.try_with(|current| {
            current.entered.set(current.entered.get() - 1);
            if let Some(critical) = entry.critical() {
                current.tasks.set(current.tasks.get() - 1);
                if own_storage {
                    swap_critical(current, critical);
                }
            }
            mem::replace(&mut *current.slot.borrow_mut(), previous)
        });
        if let Ok(entered) = entered {
            *entry.context() = match Rc::try_unwrap(entered) {
                Ok(Slot(ctx)) => ctx,
                Err(shared) => shared.0.clone_same_identity(),
            };
        }
    }

    /// The slot is shared at exit although readers are strictly nested; kept for robustness:
    /// copy the entered context out and give the thread back its previous context.
    #[cold]
    fn exit_shared(&mut self) {
        let ctx = self.entry.context();
        let _ = CURRENT.try_with(|current| {
            let mut slot = current.slot.borrow_mut();
            let entered = slot.0.clone_same_identity();
            let previous = mem::replace(ctx, entered);
            *slot = Rc::new(Slot(previous));
        });
    }
}
