//! The current context of each thread: the one place that touches the thread-local.
//!
//! Every other module reads or changes "the current context" through these functions:
//!
//! - [`read`]: a short look with no user code inside (`get`, `is_set`, `Context::current`).
//! - [`read_shared`]: a look that runs user code (`ContextVar::with`).
//! - [`modify`]: a change with no user code inside (`set`, `reset`).
//! - [`enter`]: make a [`Context`] current until the returned guard drops (`run`, `Scoped`).
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

use std::borrow::BorrowMut;
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

/// What the thread-local holds: the current context and how many contexts are entered.
struct Current {
    slot: RefCell<Rc<Slot>>,
    /// Entered contexts ([`enter`], [`run_in`]) not yet exited on this thread. Zero means the
    /// thread's own context is current.
    entered: Cell<usize>,
}

thread_local! {
    static CURRENT: Current = Current {
        slot: RefCell::new(Rc::new(Slot(Context::new()))),
        entered: Cell::new(0),
    };
}

/// Runs `f` on the current context. `f` must not run user code nor drop user values.
/// `None` if the thread-local is gone (thread teardown).
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    CURRENT.try_with(|current| f(&current.slot.borrow().0)).ok()
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
        if current.entered.get() == 0 && isolation::in_task() {
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

/// Panics as [`modify`] would for a write by `call` here (S21); for writes that may turn out to
/// change nothing, such as removing a missing attribute, so that misuse is refused either way.
pub(crate) fn check_writable(call: &'static str) {
    let refused = CURRENT
        .try_with(|current| current.entered.get() == 0 && isolation::in_task())
        .unwrap_or(false);
    if refused {
        isolation::refuse_write(call);
    }
}

/// [`modify`] found no context entered inside a Tokio task.
struct Refused;

/// Runs `f` with `ctx` as the current context: [`enter`] and its guard within a single
/// thread-local access. If the thread-local is gone, `f` runs without entering `ctx`.
#[inline]
pub(crate) fn run_in<R>(ctx: &mut Context, f: impl FnOnce() -> R) -> R {
    // `f` stays here if the thread-local is gone, so it can still run (without `ctx`).
    let mut f = Some(f);
    let entered = CURRENT.try_with(|current| {
        let _entered = enter_cell(current, ctx);
        f.take().map(|f| f())
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

/// Makes `ctx` the current context until the returned guard drops; then the previous one is
/// current again and `ctx` holds everything set meanwhile. Nested guards must drop in LIFO
/// order, which their borrows of the entered contexts enforce for `run`, and poll nesting for
/// `Scoped`.
#[inline]
pub(crate) fn enter(ctx: &mut Context) -> Entered<'_> {
    let restore = CURRENT
        .try_with(|current| swap_in(current, ctx))
        .unwrap_or(Restore::Nothing);
    Entered {
        ctx,
        restore,
        cell: None,
    }
}

/// [`enter`] for a context the guard owns, for callers that cannot hold a borrow for as long
/// as the context is entered: the `runtime` module's poll hooks keep the guard in a
/// thread-local between the before- and after-poll hooks. [`Entered::exit`] gives it back.
#[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
pub(crate) fn enter_owned(mut ctx: Context) -> Entered<'static, Context> {
    let restore = CURRENT
        .try_with(|current| swap_in(current, &mut ctx))
        .unwrap_or(Restore::Nothing);
    Entered {
        ctx,
        restore,
        cell: None,
    }
}

/// [`enter`] with the thread-local already in hand; the guard reuses it on exit.
#[inline]
fn enter_cell<'a>(current: &'a Current, ctx: &'a mut Context) -> Entered<'a> {
    let restore = swap_in(current, ctx);
    Entered {
        ctx,
        restore,
        cell: Some(current),
    }
}

#[inline]
fn swap_in(current: &Current, ctx: &mut Context) -> Restore {
    current.entered.set(current.entered.get() + 1);
    let mut slot = current.slot.borrow_mut();
    match Rc::get_mut(&mut slot) {
        Some(Slot(current)) => {
            mem::swap(current, ctx);
            Restore::Swapped
        }
        None => enter_shared(&mut slot, ctx),
    }
}

/// `enter` while a reader holds the thread's slot (a `run` inside `ContextVar::with`).
#[cold]
fn enter_shared(slot: &mut Rc<Slot>, ctx: &mut Context) -> Restore {
    let entered = Rc::new(Slot(mem::take(ctx)));
    Restore::Stashed(mem::replace(slot, entered))
}

/// Guard returned by [`enter`] (borrowing the entered context) and [`enter_owned`] (owning
/// it). Its `Drop` cannot panic: the `borrow_mut` is never contended (see the module docs) and
/// the rest only moves values.
pub(crate) struct Entered<'a, C: BorrowMut<Context> = &'a mut Context> {
    ctx: C,
    restore: Restore,
    /// The thread-local, when the guard was made with it in hand (saves a lookup on exit).
    cell: Option<&'a Current>,
}

impl<C: BorrowMut<Context>> Drop for Entered<'_, C> {
    #[inline]
    fn drop(&mut self) {
        self.restore_previous();
    }
}

impl Entered<'_, Context> {
    /// Makes the previous context current again and returns the entered one, with everything
    /// set while it was entered.
    #[cfg_attr(not(all(tokio_unstable, feature = "tokio")), allow(dead_code))]
    pub(crate) fn exit(mut self) -> Context {
        self.restore_previous();
        mem::take(&mut self.ctx)
    }
}

impl<C: BorrowMut<Context>> Entered<'_, C> {
    #[inline]
    fn restore_previous(&mut self) {
        match mem::replace(&mut self.restore, Restore::Nothing) {
            Restore::Swapped => {
                let ctx = self.ctx.borrow_mut();
                let mut swap_out = |current: &Current| {
                    current.entered.set(current.entered.get() - 1);
                    match Rc::get_mut(&mut current.slot.borrow_mut()) {
                        Some(Slot(entered)) => {
                            mem::swap(entered, ctx);
                            true
                        }
                        None => false,
                    }
                };
                let swapped = match self.cell {
                    Some(cell) => Ok(swap_out(cell)),
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

    /// The slot is shared at exit although readers are strictly nested; kept for robustness:
    /// copy the entered context out and give the thread back its previous context.
    #[cold]
    fn exit_shared(&mut self) {
        let _ = CURRENT.try_with(|current| {
            let mut slot = current.slot.borrow_mut();
            let entered = slot.0.clone_same_identity();
            let previous = mem::replace(self.ctx.borrow_mut(), entered);
            *slot = Rc::new(Slot(previous));
        });
    }

    #[cold]
    fn exit_stashed(&mut self, previous: Rc<Slot>) {
        let entered = CURRENT.try_with(|current| {
            current.entered.set(current.entered.get() - 1);
            mem::replace(&mut *current.slot.borrow_mut(), previous)
        });
        if let Ok(entered) = entered {
            *self.ctx.borrow_mut() = match Rc::try_unwrap(entered) {
                Ok(Slot(ctx)) => ctx,
                Err(shared) => shared.0.clone_same_identity(),
            };
        }
    }
}
