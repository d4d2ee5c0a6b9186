//! Tokio tasks that start in a copy of the caller's context, and the sync/async bridges.
//!
//! Every function here takes a [fork](Context::fork) of the caller's current context at the
//! call, like `asyncio.create_task` (S15): later changes in the parent are not seen by the
//! child, and what the child sets is not seen by the parent.
//!
//! The bridges [`sync_to_async`] and [`async_to_sync`] are asgiref's: the other side runs in a
//! fork of the caller's context, and what it changed is copied back into the caller's context
//! when it returns, as if it had run inline (S16, S17).
//!
//! # Examples
//!
//! ```
//! use contextvars::{ContextVar, task};
//!
//! static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
//!
//! #[tokio::main]
//! async fn main() {
//!     REQUEST_ID.set(7);
//!     let child = task::spawn(async { REQUEST_ID.get() });
//!     let blocking = task::spawn_blocking(|| REQUEST_ID.get());
//!     assert_eq!(child.await.unwrap().as_deref(), Some(&7));
//!     assert_eq!(blocking.await.unwrap().as_deref(), Some(&7));
//! }
//! ```

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::current;
use crate::scoped::{FutureExt, Scoped};

/// Spawns `fut` on the current Tokio runtime in a fork of the caller's context:
/// `asyncio.create_task`.
///
/// # Panics
///
/// Panics if called outside a Tokio runtime, like [`tokio::spawn`].
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, task};
///
/// static USER: ContextVar<&'static str> = ContextVar::new("user");
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// USER.set("alice");
/// let child = task::spawn(async {
///     USER.set("bob"); // only in the child
///     USER.get()
/// });
/// USER.set("carol"); // after the fork: the child does not see it
/// assert_eq!(child.await.unwrap().as_deref(), Some(&"bob"));
/// assert_eq!(USER.get().as_deref(), Some(&"carol"));
/// # });
/// ```
#[track_caller]
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.with_current_context())
}

/// Spawns `!Send` `fut` on the current [`LocalSet`](tokio::task::LocalSet) in a fork of the
/// caller's context.
///
/// # Panics
///
/// Panics if called outside a `LocalSet`, like [`tokio::task::spawn_local`].
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, task};
/// use std::rc::Rc;
///
/// static V: ContextVar<u8> = ContextVar::new("v");
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let local = tokio::task::LocalSet::new();
/// local.block_on(&rt, async {
///     V.set(1);
///     let not_send = Rc::new(());
///     let child = task::spawn_local(async move {
///         let _keep = not_send;
///         V.get()
///     });
///     assert_eq!(child.await.unwrap().as_deref(), Some(&1));
/// });
/// ```
#[track_caller]
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(fut.with_current_context())
}

/// Runs `f` on Tokio's blocking pool in a fork of the caller's context.
///
/// The pool thread's own context is untouched before and after the job (a plain
/// `tokio::task::spawn_blocking` closure that calls `set` would leave the value on the pool
/// thread for the next job). Inside `f`, [`async_to_sync`] runs futures on this runtime.
///
/// # Panics
///
/// Panics if called outside a Tokio runtime, like [`tokio::task::spawn_blocking`].
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, task};
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
///
/// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
/// REQUEST_ID.set(3);
/// let row = task::spawn_blocking(|| format!("row for request {}", REQUEST_ID.get().unwrap()));
/// assert_eq!(row.await.unwrap(), "row for request 3");
/// # });
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let job = Context::current_fork().bind(f);
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let _bridge = Bridge::enter(Some(handle));
        job()
    })
}

/// Runs blocking `f` on Tokio's blocking pool from async code, in a fork of the caller's
/// context; when `f` returns, what it changed is written back into the caller's context (S16).
///
/// Exactly the bindings that differ (by `Arc` identity) between the fork handed to `f` and
/// `f`'s context at the end are applied — set, changed or removed — as if `f` had run inline
/// (asgiref's copy-in/copy-out). Bindings `f` did not touch stay as the caller has them, and
/// what the fork itself changed by [`Inherit`](crate::Inherit) policy is not written back.
///
/// # Panics
///
/// If `f` panics, what it set before the panic is written back, then the panic resumes in the
/// caller. Panics if polled outside a Tokio runtime, or if the runtime shuts down before `f`
/// ran.
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, task};
///
/// static USER: ContextVar<String> = ContextVar::new("user");
///
/// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
/// let user = task::sync_to_async(|| {
///     // a blocking lookup, then a `set` as sync code would do it
///     USER.set("alice".to_string());
///     USER.get()
/// })
/// .await;
/// assert_eq!(user.as_deref().map(String::as_str), Some("alice"));
/// assert_eq!(USER.get().as_deref().map(String::as_str), Some("alice")); // written back
/// # });
/// ```
pub async fn sync_to_async<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let handed = Context::current_fork();
    let base = handed.clone();
    let handle = Handle::current();
    let job = tokio::task::spawn_blocking(move || {
        let _bridge = Bridge::enter(Some(handle));
        let mut ctx = handed;
        let outcome = catch_unwind(AssertUnwindSafe(|| ctx.run(f)));
        (ctx, outcome)
    });
    let (end, outcome) = match job.await {
        Ok(done) => done,
        Err(err) if err.is_panic() => resume_unwind(err.into_panic()),
        Err(_) => panic!("contextvars::task::sync_to_async: the runtime shut down before f ran"),
    };
    write_back(&base, &end, "task::sync_to_async");
    match outcome {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// Runs `fut` to completion from sync code, in a fork of the thread's current context; what
/// the future changed is written back into the calling thread's context, as in
/// [`sync_to_async`] (S17).
///
/// The future runs on the runtime of the enclosing [`sync_to_async`] or [`spawn_blocking`] if
/// there is one, else on a private current-thread runtime kept per thread (created on first
/// use).
///
/// # Panics
///
/// - Called where blocking is not allowed — inside a task, inside a `block_on`, or on a
///   blocking-pool thread not started by this module (use [`spawn_blocking`] or
///   [`sync_to_async`] to reach sync code): panics with a message naming `async_to_sync`,
///   rather than risking a deadlock.
/// - If `fut` panics, what it set before the panic is written back, then the panic resumes.
/// - If the private runtime cannot be created (the OS refuses its resources), or if called from
///   a thread-local destructor while the thread is being torn down.
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, task};
///
/// static STEP: ContextVar<&'static str> = ContextVar::new("step");
///
/// // Plain sync code, no runtime around: a private one is used.
/// let n = task::async_to_sync(async {
///     tokio::task::yield_now().await;
///     STEP.set("async part done");
///     1
/// });
/// assert_eq!(n, 1);
/// assert_eq!(STEP.get().as_deref(), Some(&"async part done")); // written back
/// ```
#[track_caller]
pub fn async_to_sync<F: Future>(fut: F) -> F::Output {
    let bridge = Bridge::current();
    if bridge.is_none() && Handle::try_current().is_ok() {
        blocking_not_allowed();
    }
    let handed = Context::current_fork();
    let base = handed.clone();
    let mut scoped = pin!(Scoped::new(handed, fut));
    let outcome = {
        // While the future runs on this thread, a nested `async_to_sync` must see that blocking
        // is not allowed here: it would block the very runtime that polls it.
        let _no_bridge = Bridge::enter(None);
        catch_unwind(AssertUnwindSafe(|| match &bridge {
            Some(handle) => handle.block_on(scoped.as_mut()),
            None => private_runtime_block_on(scoped.as_mut()),
        }))
    };
    write_back(&base, scoped.context(), "task::async_to_sync");
    match outcome {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

#[cold]
#[track_caller]
fn blocking_not_allowed() -> ! {
    panic!(
        "contextvars::task::async_to_sync called where blocking is not allowed (inside an async \
         task, a block_on, or a blocking-pool thread not started by contextvars): it would block \
         a thread the runtime needs. Await the future instead, or move the sync code into \
         contextvars::task::sync_to_async or contextvars::task::spawn_blocking."
    )
}

fn private_runtime_block_on<F: Future>(fut: F) -> F::Output {
    thread_local! {
        static PRIVATE_RUNTIME: OnceCell<Runtime> = const { OnceCell::new() };
    }
    let blocked_on = PRIVATE_RUNTIME.try_with(|runtime| {
        runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("contextvars::task::async_to_sync: failed to build a Tokio runtime")
            })
            .block_on(fut)
    });
    blocked_on.unwrap_or_else(|_| {
        panic!("contextvars::task::async_to_sync called during thread teardown")
    })
}

/// Applies to the current context what changed from `base` to `end` (S16, S17); `call` names
/// the bridge in the S21 panic if there are changes and no context to receive them.
fn write_back(base: &Context, end: &Context, call: &'static str) {
    let changes = end.changes_since(base);
    if changes.is_empty() {
        return;
    }
    // Displaced values drop here, outside the thread-local borrow.
    drop(current::modify(call, move |ctx| ctx.apply_changes(changes)));
}

/// The runtime that `async_to_sync` may block on from this thread: set for the duration of a
/// job started by [`spawn_blocking`] or [`sync_to_async`], cleared while a future is blocked on.
struct Bridge {
    previous: Option<Handle>,
}

thread_local! {
    static BRIDGE: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

impl Bridge {
    fn enter(handle: Option<Handle>) -> Bridge {
        let previous = BRIDGE
            .try_with(|bridge| bridge.replace(handle))
            .ok()
            .flatten();
        Bridge { previous }
    }

    fn current() -> Option<Handle> {
        BRIDGE
            .try_with(|bridge| bridge.borrow().clone())
            .ok()
            .flatten()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = BRIDGE.try_with(|bridge| bridge.replace(previous));
    }
}
