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

use std::any::Any;
use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll, Waker};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::current;
use crate::scoped::Scoped;

/// Spawns `fut` on the current Tokio runtime in a fork of the caller's context:
/// `asyncio.create_task`.
///
/// The child keeps its fork, and the values in it, until it ends, whether its handle is
/// awaited, dropped or given up on by a `timeout`: a child that outlives its request still
/// reads that request's values, and keeps them alive.
///
/// Only this crate's context is forked. `tracing`'s current span is not carried (Tokio never
/// carries it), and so neither is the OpenTelemetry context that `tracing-opentelemetry`
/// derives from it: an outgoing call made in the child sends this crate's baggage members but
/// no `traceparent` and none of the OpenTelemetry `Baggage`, so the callee starts a new trace.
/// Carry the span too: `task::spawn(fut.in_current_span())` (`tracing::Instrument`), and
/// `opentelemetry::context::FutureExt::with_current_context(fut)` if the child reads
/// `opentelemetry::Context::current()`.
///
/// # Panics
///
/// Panics if called outside a Tokio runtime, like [`tokio::spawn`]. Propagates a panic of an
/// [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at the call.
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
    // A task of its own wherever its runtime is driven (S19).
    tokio::spawn(Scoped::new_task(Context::current_fork(), fut))
}

/// Spawns `!Send` `fut` on the current [`LocalSet`](tokio::task::LocalSet) in a fork of the
/// caller's context.
///
/// # Panics
///
/// Panics if called outside a `LocalSet`, like [`tokio::task::spawn_local`]. Propagates a
/// panic of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at the
/// call.
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
    // A task of its own wherever its `LocalSet` is driven (S19).
    tokio::task::spawn_local(Scoped::new_task(Context::current_fork(), fut))
}

/// Runs `f` on Tokio's blocking pool in a fork of the caller's context.
///
/// The pool thread's own context is untouched before and after the job, and `f` may `set`
/// (a plain `tokio::task::spawn_blocking` closure starts in the pool thread's own, empty
/// context, and a `set` there is refused, S21). Inside `f`, [`async_to_sync`] runs futures on
/// this runtime.
///
/// # Panics
///
/// Panics if called outside a Tokio runtime, like [`tokio::task::spawn_blocking`]. Propagates a
/// panic of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at the
/// call.
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
    let context = Context::current_fork();
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let _bridge = Bridge::enter(Some(handle));
        // A task of its own: fresh thread-critical storage, nothing left on the pool thread.
        let mut context = context;
        current::run_as_task(&mut context, f)
    })
}

/// Runs blocking `f` from async code in a fork of the caller's context, taken at the call;
/// when `f` returns, what it changed is written back into the caller's context (S16).
///
/// Exactly the bindings that differ (by `Arc` identity) between the fork handed to `f` and
/// `f`'s context at the end are applied — set, changed or removed — as if `f` had run inline
/// (asgiref's copy-in/copy-out). Bindings `f` did not touch stay as the caller has them, and
/// what the fork itself changed by [`Inherit`](crate::Inherit) policy is not written back.
/// A [`Local`](crate::Local)'s attributes are merged one by one (S18).
///
/// Where `f` runs: on Tokio's blocking pool — except when this future is polled by an
/// [`async_to_sync`] call, as part of the future it drives for sync code. Then `f` runs on
/// that sync code's thread, which is blocked waiting anyway (asgiref's thread-sensitive mode),
/// so nested bridges (`sync_to_async` → `async_to_sync` → `sync_to_async` → …) never need a
/// second pool thread and never deadlock, however small the pool (S17). While `f` runs there,
/// the futures of that `async_to_sync` call wait; tasks they spawned go on.
///
/// A task that the driven future *spawns* is polled by its runtime, not by the
/// `async_to_sync` call. On the private runtime of a plain thread that is the same thread, so a
/// `sync_to_async` awaited in that task runs there too. On a runtime with worker threads (the
/// call was made on a thread that entered it, or from one of its blocking jobs) it runs on the
/// blocking pool; if the pool's only thread is the one blocked in `async_to_sync` waiting for
/// that task, it waits forever: await the `sync_to_async` in the driven future itself, or give
/// the pool more than one thread (Tokio's default is 512).
///
/// Each call that runs on the pool is a task of its own: its thread-critical
/// [`Local`](crate::Local) values (S19) start empty and end with it. A connection kept in one
/// is not seen by the next call (asgiref runs a request's thread-sensitive calls on one thread,
/// so Django's connection is); keep what calls must share in a plain `Local` or `ContextVar`,
/// which the write-back carries, or make the calls inside one `async_to_sync`, where they run
/// on its thread.
///
/// # Panics
///
/// If `f` panics, what it set before the panic is written back, then the panic resumes in the
/// caller. Panics if polled outside a Tokio runtime (when `f` would go to the pool), if the
/// runtime shuts down before `f` ran, or if the write-back has changes to apply and the caller
/// is a Tokio task with no context of its own (S21); when `f` panicked, such changes are dropped
/// and `f`'s panic is the one that resumes. A panic of an
/// [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at the call,
/// propagates from the call.
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
pub fn sync_to_async<F, R>(f: F) -> impl Future<Output = R> + Send + 'static
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // The fork is taken at the call (S15); where `f` runs is decided at the first poll, by
    // the thread that polls: `async_to_sync(sync_to_async(f))` creates this future before
    // `async_to_sync` starts accepting jobs.
    let handed = Context::current_fork();
    async move {
        let sync_thread = SyncThread::current();
        let base = handed.clone();
        let (end, outcome) = match sync_thread {
            // On the sync thread, as its own code: its thread-critical values are seen (S19).
            Some(thread) => {
                thread
                    .run(move || {
                        let mut ctx = handed;
                        let outcome = catch_unwind(AssertUnwindSafe(|| ctx.run(f)));
                        (ctx, outcome)
                    })
                    .await
            }
            None => {
                let handle = Handle::try_current().unwrap_or_else(|_| {
                    panic!(
                        "contextvars::task::sync_to_async polled outside a Tokio runtime: f \
                         runs on a runtime's blocking pool, so await it inside one (or call f \
                         directly: this is sync code already)"
                    )
                });
                let pooled = tokio::task::spawn_blocking(move || {
                    let _bridge = Bridge::enter(Some(handle));
                    // A task of its own on the pool thread: fresh thread-critical storage.
                    let mut context = handed;
                    let outcome =
                        catch_unwind(AssertUnwindSafe(|| current::run_as_task(&mut context, f)));
                    (context, outcome)
                });
                match pooled.await {
                    Ok(done) => done,
                    Err(err) if err.is_panic() => resume_unwind(err.into_panic()),
                    Err(_) => {
                        panic!(
                            "contextvars::task::sync_to_async: the runtime shut down before f ran"
                        )
                    }
                }
            }
        };
        write_back(&base, &end, "task::sync_to_async", outcome.is_err());
        match outcome {
            Ok(value) => value,
            Err(panic) => resume_unwind(panic),
        }
    }
}

/// Runs `fut` to completion from sync code, in a fork of the thread's current context; what
/// the future changed is written back into the calling thread's context, as in
/// [`sync_to_async`] (S17).
///
/// It works wherever Tokio allows blocking, on the runtime that can drive `fut` from there:
///
/// - in a job of [`spawn_blocking`] or [`sync_to_async`]: that job's runtime (for a
///   current-thread runtime, timers and IO then make progress only while its `block_on` runs,
///   as it does while the caller awaits the job);
/// - on a thread that entered a multi-thread runtime (`let _guard = rt.enter();`), or inside
///   [`tokio::task::block_in_place`](https://docs.rs/tokio/1/tokio/task/fn.block_in_place.html):
///   that runtime;
/// - anywhere else — a plain thread, or one that entered a current-thread runtime, whose
///   `Handle::block_on` could not drive its timers and IO — a private current-thread runtime
///   kept per thread (created on first use).
///
/// While `fut` runs, [`sync_to_async`] calls made by it run their sync code on this thread,
/// which is waiting anyway: nested bridges never wait for a second pool thread (S17).
///
/// The private runtime runs only while an `async_to_sync` call on its thread drives it. Tasks
/// `fut` spawns there and leaves running when it completes stay on it, paused, and go on while
/// a later call on the thread drives it: that is how a connection's driver task spawned in one
/// call (`tokio::spawn(connection)`) serves the next, and timers and IO objects made in one
/// call work in the next. Meanwhile they keep their values; they are dropped with the thread.
/// asgiref's fresh event loop cancels such tasks instead: await or
/// [`abort`](tokio::task::JoinHandle::abort) those you do not mean to keep. On the other
/// runtimes (the first two cases) they go on as that runtime runs its tasks.
///
/// # Panics
///
/// - Called where blocking is not allowed — directly inside a task's poll or inside a
///   `block_on` — panics with a message naming `async_to_sync`, rather than deadlocking.
///   Tokio's own refusal ("Cannot start a runtime from within a runtime"), which is how the
///   crate learns of it, reaches the panic hook first, so the log shows both messages.
/// - If `fut` panics, what it set before the panic is written back, then the panic resumes.
/// - If the write-back has changes to apply and the caller is a Tokio task with no context of
///   its own (a plain `tokio::task::spawn_blocking` job, S21); when `fut` panicked, such
///   changes are dropped and `fut`'s panic is the one that resumes.
/// - If the private runtime cannot be created (the OS refuses its resources), or if called from
///   a thread-local destructor while the thread is being torn down.
/// - A panic of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at
///   the call, propagates.
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
///
/// From a thread that entered a multi-thread runtime, the way sync code reaches async code:
///
/// ```
/// use contextvars::task;
///
/// let rt = tokio::runtime::Runtime::new().unwrap();
/// let _entered = rt.enter();
/// let answer = task::async_to_sync(async {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await; // the runtime's timers
///     task::sync_to_async(|| 42).await // runs on this very thread
/// });
/// assert_eq!(answer, 42);
/// ```
#[track_caller]
pub fn async_to_sync<F: Future>(fut: F) -> F::Output {
    let driver = Driver::choose();
    let handed = Context::current_fork();
    let base = handed.clone();
    let mut scoped = pin!(Scoped::new_task(handed, fut));
    let sync_thread = Arc::new(SyncThread::default());
    let mut started = false;
    let outcome = {
        let _accepting = SyncThread::enter(Some(sync_thread.clone()));
        catch_unwind(AssertUnwindSafe(|| {
            loop {
                let step = driver.block_on(poll_fn(|cx| {
                    started = true;
                    sync_thread.poll_step(cx, scoped.as_mut())
                }));
                match step {
                    Step::Done(output) => break output,
                    Step::Job(job) => {
                        // The job runs outside `block_on`, as sync code on this thread: it may
                        // call `async_to_sync` again, on the same runtime.
                        let _bridge = Bridge::enter(driver.handle());
                        let _not_accepting = SyncThread::enter(None);
                        job();
                    }
                }
            }
        }))
    };
    if let Err(panic) = &outcome {
        if !started && is_nested_runtime_refusal(&**panic) {
            blocking_not_allowed();
        }
    }
    sync_thread.finish();
    write_back(
        &base,
        scoped.context(),
        "task::async_to_sync",
        outcome.is_err(),
    );
    match outcome {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

#[cold]
#[track_caller]
fn blocking_not_allowed() -> ! {
    panic!(
        "contextvars::task::async_to_sync called where blocking is not allowed (directly inside \
         an async task's poll or a block_on): it would block a thread the runtime needs. Await \
         the future instead, or reach sync code through contextvars::task::sync_to_async, \
         contextvars::task::spawn_blocking or tokio::task::block_in_place."
    )
}

/// Whether `panic` is Tokio refusing to start a runtime inside another: the only public way
/// to learn that blocking is not allowed here (inside a task's poll or a `block_on`), as
/// opposed to a thread that merely entered a runtime, or `block_in_place`.
fn is_nested_runtime_refusal(panic: &(dyn Any + Send)) -> bool {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("");
    message.contains("Cannot start a runtime from within a runtime")
}

/// What drives an [`async_to_sync`] future.
enum Driver {
    /// A multi-thread runtime (its workers drive timers and IO), or the runtime of the
    /// enclosing bridge job (whose caller keeps it driven).
    Handle(Handle),
    /// This thread's private current-thread runtime.
    Private,
}

impl Driver {
    fn choose() -> Driver {
        if let Some(handle) = Bridge::current() {
            return Driver::Handle(handle);
        }
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                Driver::Handle(handle)
            }
            _ => Driver::Private,
        }
    }

    fn handle(&self) -> Option<Handle> {
        match self {
            Driver::Handle(handle) => Some(handle.clone()),
            Driver::Private => None,
        }
    }

    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match self {
            Driver::Handle(handle) => handle.block_on(fut),
            Driver::Private => private_runtime_block_on(fut),
        }
    }
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
///
/// After a panic of the bridged code (`panicked`), changes that S21 would refuse are dropped
/// instead: the caller gets the code's own panic, which says what went wrong, not the refusal.
fn write_back(base: &Context, end: &Context, call: &'static str, panicked: bool) {
    let changes = end.changes_since(base);
    if changes.is_empty() || (panicked && current::refuses_write()) {
        return;
    }
    // Displaced values drop here, after the write has let go of the context.
    drop(current::modify(call, move |ctx| ctx.apply_changes(changes)));
}

/// A unit of sync code that a nested [`sync_to_async`] hands to the thread blocked in
/// [`async_to_sync`].
type Job = Box<dyn FnOnce() + Send>;

/// One step of an [`async_to_sync`] loop.
enum Step<T> {
    Done(T),
    Job(Job),
}

/// The thread blocked in an [`async_to_sync`] call, accepting sync jobs from the futures it
/// drives (asgiref's `CurrentThreadExecutor`).
#[derive(Default)]
struct SyncThread {
    jobs: Mutex<VecDeque<Job>>,
    /// The `block_on` to wake when a job arrives.
    waker: Mutex<Option<Waker>>,
}

thread_local! {
    /// The [`SyncThread`] of the innermost `async_to_sync` on this thread, while its future is
    /// being driven; `None` while one of its jobs runs.
    static ACCEPTING: RefCell<Option<Arc<SyncThread>>> = const { RefCell::new(None) };
}

impl SyncThread {
    fn current() -> Option<Arc<SyncThread>> {
        ACCEPTING
            .try_with(|accepting| accepting.borrow().clone())
            .ok()
            .flatten()
    }

    /// Makes `thread` the one nested `sync_to_async` calls on this thread hand their jobs to,
    /// until the guard drops.
    fn enter(thread: Option<Arc<SyncThread>>) -> impl Drop {
        struct Restore(Option<Arc<SyncThread>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                let _ = ACCEPTING.try_with(|accepting| accepting.replace(previous));
            }
        }
        Restore(
            ACCEPTING
                .try_with(|accepting| accepting.replace(thread))
                .ok()
                .flatten(),
        )
    }

    /// Hands `job` to this thread and waits for its result.
    async fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> R {
        let (done, result) = tokio::sync::oneshot::channel();
        self.push(Box::new(move || {
            // Skipped if the caller is gone (its future was dropped).
            if !done.is_closed() {
                let _ = done.send(job());
            }
        }));
        result.await.unwrap_or_else(|_| {
            panic!(
                "contextvars::task::sync_to_async: the async_to_sync call that was to run f \
                 returned first"
            )
        })
    }

    fn push(&self, job: Job) {
        lock(&self.jobs).push_back(job);
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }

    /// A queued job if there is one, else a poll of `fut`.
    fn poll_step<F: Future>(
        &self,
        cx: &mut TaskContext<'_>,
        fut: Pin<&mut F>,
    ) -> Poll<Step<F::Output>> {
        // The waker first, so that a job pushed after the check below still wakes us.
        *lock(&self.waker) = Some(cx.waker().clone());
        if let Some(job) = lock(&self.jobs).pop_front() {
            return Poll::Ready(Step::Job(job));
        }
        fut.poll(cx).map(Step::Done)
    }

    /// The future is done: runs the jobs still queued whose callers still wait (a
    /// `sync_to_async` future sent elsewhere before it completed).
    fn finish(&self) {
        loop {
            let Some(job) = lock(&self.jobs).pop_front() else {
                return;
            };
            let _not_accepting = SyncThread::enter(None);
            job();
        }
    }
}

/// Locks a mutex that guards no invariant a panic could break.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The runtime that `async_to_sync` blocks on from this thread: set for the duration of a job
/// started by [`spawn_blocking`] or [`sync_to_async`], or run by an `async_to_sync` loop.
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
