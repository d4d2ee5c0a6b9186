//! Threads: starting one in a copy of the caller's context ([`spawn`]), and making a thread
//! that runs another executor's tasks refuse writes to its own context
//! ([`refuse_own_context_writes`]).
//!
//! ```
//! use contextvars::ContextVar;
//!
//! static USER: ContextVar<&'static str> = ContextVar::new("user");
//!
//! USER.set("alice");
//! let seen = contextvars::thread::spawn(|| USER.get()).join().unwrap();
//! assert_eq!(seen.as_deref(), Some(&"alice"));
//! let seen = std::thread::spawn(|| USER.get()).join().unwrap();
//! assert_eq!(seen, None); // a plain thread starts empty (S6)
//! ```

use crate::context::Context;
use crate::isolation;

/// Spawns an OS thread that runs `f` in a fork of the caller's current context (S15, S20).
///
/// The fork is taken at the call, like `asyncio.create_task`: later changes in the parent are
/// not seen by the thread, and what the thread sets is not seen by the parent. A thread started
/// with [`std::thread::spawn`] starts with an empty context instead (S6).
///
/// To configure the thread (name, stack size), bind the closure yourself:
/// `std::thread::Builder::new().spawn(Context::current().fork().bind(f))`. The same works for
/// scoped threads, whose closures may borrow ([`Context::bind`] needs no `'static`):
///
/// ```
/// use contextvars::{Context, ContextVar};
///
/// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
///
/// TENANT.set("acme");
/// let rows = vec![1, 2, 3];
/// let seen = std::thread::scope(|s| {
///     s.spawn(Context::current().fork().bind(|| format!("{}:{}", TENANT.value(), rows.len())))
///         .join()
///         .unwrap()
/// });
/// assert_eq!(seen, "acme:3");
/// ```
///
/// # Panics
///
/// Panics if the OS fails to create a thread, like [`std::thread::spawn`]. Propagates a panic
/// of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at the call.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
///
/// REQUEST_ID.set(7);
/// let handle = contextvars::thread::spawn(|| {
///     let inherited = REQUEST_ID.get();
///     REQUEST_ID.set(8); // stays in the thread
///     inherited
/// });
/// assert_eq!(handle.join().unwrap().as_deref(), Some(&7));
/// assert_eq!(REQUEST_ID.get().as_deref(), Some(&7));
///
/// // A plain std thread starts empty.
/// assert!(std::thread::spawn(|| REQUEST_ID.get()).join().unwrap().is_none());
/// ```
pub fn spawn<F, R>(f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    std::thread::spawn(Context::current_fork().bind(f))
}

/// Refuses, from now on, the writes on the calling thread that no context was entered for:
/// S21 for executors that are not Tokio.
///
/// In a Tokio task with no context of its own a write panics (S21): it would land in the
/// worker thread's context, which every unwrapped task on that worker reads. The crate tells a
/// Tokio task apart; a task of smol, async-executor or `futures::executor` it cannot, so there
/// such a write lands in the thread's context silently (see
/// [other executors](crate#smol-async-executor-and-other-executors)). Call this at the start of
/// each thread that runs an executor, or a pool's jobs, and such a write panics instead, with
/// a message naming the fix. Writes inside a [`Context::run`], a [`Scoped`](crate::Scoped)
/// (`with_context`, `with_current_context`, `Scoped::from_call`) or a [`Context::bind`]
/// closure are the work's own and go on as before; reads are never refused. As in a Tokio
/// task, a [`thread_critical`](crate::Local::thread_critical) `Local` needs a `Scoped` or a
/// `bind` for its writes: a `run` keeps the thread's storage (S19).
///
/// It lasts as long as the thread, its thread-local destructors included (a write refused in
/// one aborts the process, as any panic there does); threads it spawns do not inherit it. Code
/// at the top of the thread, outside any `run`, cannot write either. An executor whose threads
/// you do not start (smol's global `smol::spawn`, the `blocking` pool behind `unblock`) has no
/// place to call it.
///
/// # Panics
///
/// Never itself. Afterwards, [`ContextVar::set`](crate::ContextVar::set) and the other writes
/// panic on this thread when no context is entered, as in a Tokio task (S21).
///
/// # Examples
///
/// ```
/// use contextvars::{Context, ContextVar, FutureExt};
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
///
/// let executor_thread = std::thread::spawn(|| {
///     contextvars::thread::refuse_own_context_writes();
///     // A task that nothing gave a context: refused, not shared with the next one.
///     let unwrapped = std::panic::catch_unwind(|| {
///         futures::executor::block_on(async { drop(REQUEST_ID.set(1)) })
///     });
///     assert!(unwrapped.is_err());
///     // A task in a context of its own writes there.
///     let seen = futures::executor::block_on(
///         async {
///             let _token = REQUEST_ID.set(2);
///             REQUEST_ID.get()
///         }
///         .with_context(Context::new()),
///     );
///     assert_eq!(seen.as_deref(), Some(&2));
///     assert!(REQUEST_ID.get().is_none()); // nothing reached the thread
/// });
/// executor_thread.join().unwrap();
/// ```
pub fn refuse_own_context_writes() {
    isolation::refuse_own_context_writes();
}
