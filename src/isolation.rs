//! S21, no silent sharing: refusing writes that would land in a Tokio worker's own context, or
//! in the own context of a thread that asked for it.
//!
//! A Tokio task that no [`Scoped`](crate::Scoped), `run` or `runtime::propagate` gives a
//! context of its own runs in its worker thread's context, which every other such task on that
//! worker shares — the `thread_local!` bug. Reading there is harmless (it sees what the thread
//! has); writing would leak into the next request. [`current::modify`](crate::current) asks
//! [`refuses_unowned_writes`] only when no context is entered, so entered contexts pay nothing
//! for the rule.
//!
//! `tokio::task::try_id()` tells a task apart from the root future of `block_on` (not a task:
//! writes there stay allowed, as in plain code) and from plain threads. Without the `tokio`
//! feature the crate cannot see tasks. Other executors' tasks it cannot see at all: there a
//! thread opts in with [`refuse_own_context_writes`], and on it every write by work with no
//! context of its own is refused as in a Tokio task.
//!
//! This module imports nothing of the crate.

use std::cell::Cell;

thread_local! {
    /// Set by [`refuse_own_context_writes`]: this thread polls tasks that Tokio does not know.
    static REFUSES_OWN_CONTEXT_WRITES: Cell<bool> = const { Cell::new(false) };
}

/// From now on, writes on the calling thread by work with no context of its own are refused
/// (S21): with no context entered, or a thread-critical write with no task entry.
pub(crate) fn refuse_own_context_writes() {
    // During the thread's teardown there is nothing left to protect.
    let _ = REFUSES_OWN_CONTEXT_WRITES.try_with(|refuses| refuses.set(true));
}

/// Whether a write by work with no context of its own is refused here: inside a Tokio task's
/// poll (or a plain `spawn_blocking` job), or on a thread that asked for it.
#[inline]
pub(crate) fn refuses_unowned_writes() -> bool {
    in_tokio_task() || refuses_on_this_thread()
}

#[inline]
fn in_tokio_task() -> bool {
    #[cfg(feature = "tokio")]
    {
        tokio::task::try_id().is_some()
    }
    #[cfg(not(feature = "tokio"))]
    {
        false
    }
}

#[inline]
fn refuses_on_this_thread() -> bool {
    REFUSES_OWN_CONTEXT_WRITES
        .try_with(Cell::get)
        .unwrap_or(false)
}

/// The S21 panic. `call` names the public API that tried to write.
#[cold]
#[inline(never)]
pub(crate) fn refuse_write(call: &'static str) -> ! {
    if !in_tokio_task() {
        refuse_write_on_thread(call);
    }
    panic!(
        "contextvars: `{call}` inside a Tokio task that has no context of its own (S21): the \
         write would land in the worker thread's context, which every unwrapped task on that \
         thread shares. Give the task its own context:\n\
         - a server (axum, tonic, hyper, warp): serve requests through \
         `contextvars::tower::ContextLayer`, outside every middleware that writes (the first \
         layer of a `ServiceBuilder` or of tonic's `Server::builder()`, the last `.layer` call \
         in axum; `warp::serve` takes no layer: wrap `warp::service(filter)` and serve it with \
         hyper-util); a value per connection (the peer's address) goes in a middleware of the \
         connection's own service, below `ContextLayer`, not in the accept loop or connection \
         task (an HTTP/2 request is served in a task of its own);\n\
         - a server that is not tower (actix-web, poem, salvo, Rocket): in your outermost \
         middleware (actix-web: the last `.wrap` call, a `wrap_fn` closure or your \
         `Service::call`; poem: the last `.with` call, your `Endpoint::call`), return \
         `contextvars::Scoped::from_call(contextvars::Context::new(), || service.call(request))` \
         and `set` inside that closure or below it (salvo: a `Handler` registered with the \
         first `Service::hoop` call awaits `Scoped::from_call(Context::new(), || \
         ctrl.call_next(req, depot, res))`; `ContextLayer` through salvo's `TowerLayerCompat` \
         isolates nothing; Rocket: a `Handler` around each `Route`'s `handler` that awaits \
         `Scoped::from_call(Context::new(), || inner.handle(req, data))` (fairings run outside \
         it), or `runtime::propagate`, below);\n\
         - a task you spawn: spawn it with `contextvars::task::spawn` (or `spawn_local` for \
         `actix_web::rt::spawn`, `spawn_blocking` for `web::block`), or wrap its future with \
         `.with_current_context()` (from `contextvars::FutureExt`: opentelemetry's trait has a \
         method of that name); a task a library spawns for you (a Leptos `Resource` or \
         `OnceResource`, a DataLoader): wrap the future you hand it, or give the library \
         `contextvars::task::spawn` as its spawner (see the guide's \"Libraries that take a \
         spawner\");\n\
         - work taken out of the request (a job sent through a channel to a worker, axum's \
         `WebSocketUpgrade::on_upgrade` callback, a streamed body or response stream): take \
         `let ctx = contextvars::Context::current().fork();` in the handler, send it with the \
         job, and run the future with `.with_context(ctx)` (a stream: \
         `Scoped::new(ctx, stream)`); `.with_current_context()` in the worker or the callback \
         forks the worker's context, not the request's;\n\
         - every task of a runtime: build it with `contextvars::runtime::propagate` (needs \
         `RUSTFLAGS=\"--cfg tokio_unstable\"`; not `LocalSet` tasks, so not actix-web's; a \
         server still needs `ContextLayer` or its `from_call` middleware, since the requests of \
         one connection share its task; not Rocket, which spawns a task per request).\n\
         If none of these applies, check that one version of contextvars is linked \
         (`cargo tree -d` lists crates linked twice). RUST_BACKTRACE=1 shows the call that wrote."
    )
}

/// The S21 panic on a thread that refuses writes to its own context, outside any Tokio task:
/// another executor's task or blocking job that nothing gave a context of its own.
#[cold]
#[inline(never)]
fn refuse_write_on_thread(call: &'static str) -> ! {
    panic!(
        "contextvars: `{call}` in work that has no context of its own, on a thread that \
         refuses writes to its own context (`contextvars::thread::refuse_own_context_writes`, \
         S21): the write would land in the thread's context, which every task or job this \
         thread runs unwrapped shares. Give the work its own context:\n\
         - a connection or request: run its future with \
         `.with_context(contextvars::Context::new())`, or \
         `contextvars::Scoped::from_call(contextvars::Context::current().fork(), \
         || handle(request))` and `set` inside that closure or below it;\n\
         - a task you spawn (`smol::spawn`, `Executor::spawn`): wrap its future with \
         `.with_current_context()` (from `contextvars::FutureExt`) before you spawn it;\n\
         - a blocking job (`smol::unblock`) or a pool job: \
         `contextvars::Context::current().fork().bind(job)`; a closure rayon calls per item: \
         `contextvars::Context::current().wrap(f)`;\n\
         - a thread-critical `Local` (S19): a `Context::run` keeps the thread's storage; enter \
         the work's context with `bind` or `.with_context(…)` instead.\n\
         See the guide's section \"smol, async-executor and other executors\". \
         RUST_BACKTRACE=1 shows the call that wrote."
    )
}
