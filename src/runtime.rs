//! Contexts for *every* task on a Tokio runtime, through Tokio's task hooks (S24).
//!
//! [`task::spawn`](crate::task::spawn) gives the tasks you spawn a fork of your context, but
//! the tasks a library spawns — hyper's connection tasks, a tower `Buffer`'s worker, a
//! `JoinSet` in a dependency — use plain `tokio::spawn` and run in their worker thread's
//! context, where S21 refuses their writes. [`propagate`] closes that gap for a whole runtime:
//! every task spawned on it, by any code, starts in a fork of its spawner's context taken at the
//! spawn call and runs in its own context on every poll, exactly as if it had been spawned with
//! `task::spawn`.
//!
//! Tokio's task hooks are an unstable Tokio API, so this module exists only when the crate is
//! built with `RUSTFLAGS="--cfg tokio_unstable"` (and the `tokio` feature, on by default).
//!
//! ```
//! use contextvars::{ContextVar, runtime};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! let rt = runtime::propagate(&mut builder).enable_all().build().unwrap();
//! rt.block_on(async {
//!     REQUEST_ID.set("req-1".to_string()); // block_on's root: the thread's own context
//!     // A plain tokio::spawn, as any library would write it:
//!     let child = tokio::spawn(async {
//!         let inherited = REQUEST_ID.get();      // a fork taken at the spawn call
//!         REQUEST_ID.set("changed".to_string()); // allowed: the task has its own context
//!         inherited
//!     });
//!     assert_eq!(child.await.unwrap().as_deref().map(String::as_str), Some("req-1"));
//!     assert_eq!(REQUEST_ID.get().as_deref().map(String::as_str), Some("req-1"));
//! });
//! ```
//!
//! # What the hooks cannot reach
//!
//! Tokio reports some work to no hook, or too late; these gaps are documented, not papered
//! over:
//!
//! - **Requests.** A context per task is not a context per request: hyper serves the requests
//!   of one HTTP/1 keep-alive connection one after the other in that connection's task, so
//!   what a middleware sets for one request, the next request on the connection reads. Serve
//!   with `tower::ContextLayer` (feature `tower`) as well, or, in a server that is not tower
//!   (poem), its [`Scoped::from_call`](crate::Scoped::from_call) middleware.
//! - **Long-lived tasks started by a request.** A library's background worker started lazily by
//!   the first request that needs it (a pool's connection task, a `tower::buffer::Buffer`
//!   worker) forks that request's context, and keeps its values for its whole life: every later
//!   request's work it does reads the first request's values. Start such tasks from an empty
//!   context when you start them yourself: `Context::new().run(|| task::spawn(worker))`.
//!   `tokio::spawn(worker.with_context(Context::new()))` hides the request's values from the
//!   worker but not from the hook, which keeps its fork of them (and their memory) until the
//!   task ends.
//! - **Plain `tokio::task::spawn_blocking`.** Tokio reports blocking jobs only when they
//!   terminate, so a plain blocking job starts in its pool thread's own (empty) context and its
//!   writes are refused by S21. [`task::spawn_blocking`](crate::task::spawn_blocking) and
//!   [`task::sync_to_async`](crate::task::sync_to_async) fork as usual.
//! - **Tasks in a `LocalSet`.** A `LocalSet` calls no hook at all: its tasks run in the context
//!   of whatever polls the `LocalSet`, and being tasks, their writes are refused (S21) unless
//!   that is a context of their own. Spawn them with
//!   [`task::spawn_local`](crate::task::spawn_local) to give each a fork.
//! - **Futures dropped at runtime shutdown.** Tasks still pending when the runtime shuts down
//!   are dropped outside the poll hooks, so their destructors run in the worker's context. A
//!   task spawned while the runtime is already shutting down leaves one small entry in the
//!   crate's task table.
//!
//! # Your own hooks
//!
//! `tokio::runtime::Builder` keeps one callback per hook, and the last one set wins: a hook you
//! set after [`propagate`] replaces the crate's (and breaks propagation), one you set before is
//! replaced. To run hooks of your own as well, install them yourself and call the crate's from
//! each: [`on_task_spawn`], [`on_before_task_poll`], [`on_after_task_poll`] and
//! [`on_task_terminate`].
//!
//! What your code reads in each hook:
//!
//! - the spawn hook runs on the spawning thread: your code reads the spawner's context on
//!   either side of the crate's call, which only records a fork;
//! - in the before-poll hook, the task's context is current only after the crate's call; in the
//!   after-poll hook, only before it. It is the task's context, not a request's: polls of a
//!   hyper connection task, inside which `tower::ContextLayer` enters each request's context,
//!   read the connection task's values;
//! - the terminate hook reads the task's context only when the task ends inside a poll (it
//!   completes or is aborted), not when Tokio drops it at shutdown. Tokio calls it for blocking
//!   jobs too (`spawn_blocking`, [`task::spawn_blocking`](crate::task::spawn_blocking), and the
//!   worker threads the runtime hands over in `block_in_place` or stops at shutdown), which
//!   never reached the spawn hook; and for a task spawned on a runtime that has shut down,
//!   before its spawn hook, so the entry that hook makes (the crate's as well as yours) stays.
//!
//! So keep per-task bookkeeping (a live-task count per tenant) under `meta.id()`: record what you
//! need in the spawn hook, and in the terminate hook remove that id if it is there and ignore ids
//! you never saw. `LocalSet` tasks call no hook at all. Tokio runs the poll hooks outside its
//! `catch_unwind`: a panic in yours unwinds out of `block_on` on a current-thread runtime, and out
//! of the worker thread on a multi-thread one: Tokio built with debug assertions aborts the
//! process; without them that worker is lost, and tasks it held may never run again (their
//! `JoinHandle`s wait forever). tokio-console's `console-subscriber` works from `tracing` spans,
//! not from these hooks, and needs nothing from this module.
//!
//! # How it works
//!
//! The spawn hook runs on the spawning thread before the task is first scheduled: it stores
//! `Context::current().fork()` under the task's id. The before-poll hook takes the task's
//! context out and makes it current; the after-poll hook puts it back. The table is split into
//! shards by task id, each behind its own lock that is held only to move a context in or out,
//! so tasks never contend on one global lock. A task's next poll may start on another worker
//! before the previous poll's after-hook ran (it was woken during its poll and stolen); its
//! entry then says "being polled", and the new poll waits for the hand-over instead of
//! starting with a stale or empty context.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, TaskMeta};
use tokio::task::Id;

use crate::context::Context;
use crate::current::{self, OwnedTask, TaskGuard};

/// Makes every task spawned on runtimes built from `builder` run in its own context (S24): a
/// fork of its spawner's context, taken at the spawn call, entered on every poll and for the
/// future's drop when it completes or is aborted, and taken off the worker after each poll.
///
/// Installs all four of Tokio's task hooks (`on_task_spawn`, `on_before_task_poll`,
/// `on_after_task_poll`, `on_task_terminate`), replacing any set before; see the
/// [module docs](self) for composing with hooks of your own and for what Tokio does not
/// report. The root future of `block_on` is not a task and keeps the calling thread's context.
///
/// # Examples
///
/// A library's `JoinSet` sees the request's values, and its tasks' writes stay their own:
///
/// ```
/// use contextvars::{ContextVar, runtime};
///
/// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
///
/// let rt = runtime::propagate(&mut tokio::runtime::Builder::new_current_thread())
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     TENANT.set("acme");
///     let mut jobs = tokio::task::JoinSet::new();
///     for n in 0..3 {
///         jobs.spawn(async move {
///             let tenant = TENANT.get().map(|t| *t);
///             TENANT.set("someone else"); // this task's own context only
///             (n, tenant)
///         });
///     }
///     while let Some(done) = jobs.join_next().await {
///         assert_eq!(done.unwrap().1, Some("acme"));
///     }
///     assert_eq!(TENANT.get().as_deref(), Some(&"acme"));
/// });
/// ```
pub fn propagate(builder: &mut Builder) -> &mut Builder {
    builder
        .on_task_spawn(on_task_spawn)
        .on_before_task_poll(on_before_task_poll)
        .on_after_task_poll(on_after_task_poll)
        .on_task_terminate(on_task_terminate)
}

/// The spawn hook of [`propagate`]: records a fork of the current context (the spawner's) for
/// the new task. Call it from your own `on_task_spawn` hook to keep propagation.
///
/// # Panics
///
/// Propagates a panic of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the
/// fork, from the code that spawned the task.
///
/// # Examples
///
/// ```
/// use contextvars::runtime;
/// use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
///
/// static SPAWNED: AtomicUsize = AtomicUsize::new(0);
///
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// runtime::propagate(&mut builder).on_task_spawn(|meta| {
///     runtime::on_task_spawn(meta); // keep the crate's hook...
///     SPAWNED.fetch_add(1, Relaxed); // ...and count spawns too
/// });
/// builder.build().unwrap().block_on(async { tokio::spawn(async {}).await.unwrap() });
/// assert_eq!(SPAWNED.load(Relaxed), 1);
/// ```
pub fn on_task_spawn(meta: &TaskMeta<'_>) {
    // Forking may run user code (`Inherit::Fork`): done before taking the shard's lock.
    let context = Context::current_fork();
    let task = Box::new(OwnedTask {
        context,
        critical: None,
    });
    let displaced = lock(meta.id()).insert(meta.id(), TaskState::Idle(task));
    drop(displaced);
}

/// The before-poll hook of [`propagate`]: makes the task's context current for its poll. Call
/// it from your own `on_before_task_poll` hook, with [`on_after_task_poll`] from your own
/// `on_after_task_poll`, to keep propagation.
///
/// # Panics
///
/// If the task's previous poll never reached [`on_after_task_poll`] within 5 seconds (hooks
/// installed by hand that call this one but not that one): waiting longer would hang the
/// worker.
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, runtime};
///
/// static USER: ContextVar<&'static str> = ContextVar::new("user");
///
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// runtime::propagate(&mut builder)
///     .on_before_task_poll(|meta| {
///         runtime::on_before_task_poll(meta);
///         // your own bookkeeping here sees the task's context
///     })
///     .on_after_task_poll(|meta| runtime::on_after_task_poll(meta));
/// builder.build().unwrap().block_on(async {
///     USER.set("alice");
///     let seen = tokio::spawn(async { USER.get() }).await.unwrap();
///     assert_eq!(seen.as_deref(), Some(&"alice"));
/// });
/// ```
pub fn on_before_task_poll(meta: &TaskMeta<'_>) {
    let id = meta.id();
    let task = take_for_poll(id);
    let entered = current::enter_task(task);
    // If the thread-local is gone the worker is being torn down; the context drops with it.
    let _ = POLLING.try_with(|polling| polling.0.borrow_mut().push((id, entered)));
}

/// The after-poll hook of [`propagate`]: takes the task's context off the worker and keeps it
/// for the next poll. See [`on_before_task_poll`].
///
/// # Examples
///
/// ```
/// use contextvars::runtime;
///
/// let mut builder = tokio::runtime::Builder::new_multi_thread();
/// runtime::propagate(&mut builder).on_after_task_poll(|meta| {
///     runtime::on_after_task_poll(meta);
///     // your own bookkeeping here sees the worker's context again
/// });
/// builder.build().unwrap().block_on(async { tokio::spawn(async {}).await.unwrap() });
/// ```
pub fn on_after_task_poll(meta: &TaskMeta<'_>) {
    let id = meta.id();
    let popped = POLLING
        .try_with(|polling| {
            let mut polling = polling.0.borrow_mut();
            // Polls on one thread nest (a runtime driven inside another's task): LIFO. A task
            // that is not the innermost entered context (hooks called by hand inside a `run`)
            // stays entered rather than leave a context current that is no longer there.
            if polling.last().is_none_or(|(top, _)| *top != id) {
                return None;
            }
            let (top, entered) = polling.pop()?;
            match entered.exit() {
                Ok(task) => Some(task),
                Err(entered) => {
                    polling.push((top, entered));
                    None
                }
            }
        })
        .ok()
        .flatten();
    let Some(task) = popped else { return };
    let mut shard = lock(id);
    let replaced = match shard.get_mut(&id) {
        // Normally `Polling`; the replaced state drops after the lock, as it may hold values.
        Some(state) => mem::replace(state, TaskState::Idle(task)),
        // The task completed during this poll and its terminate hook removed the entry.
        None => TaskState::Idle(task),
    };
    drop(shard);
    if let TaskState::Idle(finished) = replaced {
        drop_finished(finished);
    }
}

/// Drops a finished task's context and thread-critical storage, whose values' `Drop` may run
/// user code, away from every context that lives on: inside a task entry of its own (a value's
/// `Drop` that writes changes nothing that stays, as in the task itself; not the worker's nor
/// a `block_on` root's context), with a panic caught once the panic hook has reported it.
/// Tokio runs the after-poll hook outside its `catch_unwind`: a panic there would abort the
/// process (Tokio built with debug assertions) or lose the multi-thread worker, or leave a
/// current-thread runtime's `block_on`.
fn drop_finished(task: Box<OwnedTask>) {
    let dropped = catch_unwind(AssertUnwindSafe(|| {
        // What those `Drop`s write goes into this empty context, dropped in turn once the
        // entry is left: only a value written there whose own `Drop` writes reaches the
        // thread's current context.
        current::run_as_task(&mut Context::new(), move || drop(task));
    }));
    // The payload, if any: reported by the panic hook already.
    drop(dropped);
}

/// The terminate hook of [`propagate`]: forgets the task's context. Call it from your own
/// `on_task_terminate` hook to keep propagation (else each task's context is kept forever).
///
/// # Examples
///
/// ```
/// use contextvars::runtime;
///
/// let mut builder = tokio::runtime::Builder::new_current_thread();
/// runtime::propagate(&mut builder).on_task_terminate(|meta| {
///     runtime::on_task_terminate(meta);
///     // your own bookkeeping
/// });
/// builder.build().unwrap().block_on(async { tokio::spawn(async {}).await.unwrap() });
/// ```
pub fn on_task_terminate(meta: &TaskMeta<'_>) {
    let removed = lock(meta.id()).remove(&meta.id());
    // A task dropped between polls, with its runtime (an aborted task is cancelled inside a
    // poll, and its context goes in the after-poll hook): its context goes here.
    if let Some(TaskState::Idle(task)) = removed {
        drop_finished(task);
    }
}

/// A task's entry in the table.
enum TaskState {
    /// Between polls: the context (and thread-critical storage) to enter for the next one.
    Idle(Box<OwnedTask>),
    /// Its context is entered on some worker, which puts it back in its after-poll hook.
    Polling,
}

/// The task's context for a poll, marking the entry as being polled. Waits while another
/// worker has not yet run the previous poll's after-hook.
fn take_for_poll(id: Id) -> Box<OwnedTask> {
    let mut waiting_since = None;
    loop {
        let mut shard = lock(id);
        match shard.get_mut(&id) {
            Some(state @ TaskState::Idle(_)) => match mem::replace(state, TaskState::Polling) {
                TaskState::Idle(task) => return task,
                TaskState::Polling => unreachable!("matched Idle above"),
            },
            Some(TaskState::Polling) => {
                // The previous poll returned on another worker a moment ago; its after-hook
                // is the next thing that worker does. Let it run.
                drop(shard);
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > HAND_OVER_LIMIT {
                    hand_over_never_came(id);
                }
                std::thread::yield_now();
            }
            None => {
                // Spawned before the hooks saw it (or on a runtime torn down meanwhile):
                // it starts empty, like a thread.
                shard.insert(id, TaskState::Polling);
                return Box::default();
            }
        }
    }
}

/// Far longer than a worker takes from the end of a poll to its after-poll hook.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(5);

/// A task's previous poll never reached [`on_after_task_poll`]: hooks installed by hand without
/// it. Waiting would hang the worker.
#[cold]
fn hand_over_never_came(id: Id) -> ! {
    panic!(
        "contextvars::runtime: task {id}'s previous poll never ended: a runtime hook that calls \
         contextvars::runtime::on_before_task_poll must also call on_after_task_poll"
    )
}

/// Tasks entered by the before-poll hook on this thread, innermost last.
struct Polling(RefCell<Vec<(Id, TaskGuard)>>);

impl Drop for Polling {
    /// Leaves what is still entered at thread teardown innermost first, as polls would.
    fn drop(&mut self) {
        let polling = self.0.get_mut();
        while let Some(entered) = polling.pop() {
            drop(entered);
        }
    }
}

thread_local! {
    static POLLING: Polling = const { Polling(RefCell::new(Vec::new())) };
}

const SHARDS: usize = 64;

type Table = HashMap<Id, TaskState, BuildHasherDefault<IdHasher>>;

/// One shard of the task table, on a cache line of its own so that workers locking
/// neighbouring shards do not slow each other down.
#[repr(align(128))]
struct Shard(Mutex<Table>);

static TASKS: [Shard; SHARDS] =
    [const { Shard(Mutex::new(HashMap::with_hasher(BuildHasherDefault::new()))) }; SHARDS];

/// The shard of `id`, locked. No user code runs and no user value drops while it is held, so
/// a poisoned lock (impossible in practice) still holds a consistent table.
fn lock(id: Id) -> MutexGuard<'static, Table> {
    let mut hasher = IdHasher::default();
    std::hash::Hash::hash(&id, &mut hasher);
    // Middle bits: hashbrown takes its tags from the top bits and buckets from the bottom ones.
    let shard = (hasher.finish() >> 32) as usize % SHARDS;
    TASKS[shard]
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Task ids are sequential numbers: a multiplicative hash spreads them over shards and
/// buckets at a fraction of SipHash's cost.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
