//! S21, no silent sharing: refusing writes that would land in a Tokio worker's own context.
//!
//! A Tokio task that no [`Scoped`](crate::Scoped), `run` or `runtime::propagate` gives a
//! context of its own runs in its worker thread's context, which every other such task on that
//! worker shares — the `thread_local!` bug. Reading there is harmless (it sees what the thread
//! has); writing would leak into the next request. [`current::modify`](crate::current) asks
//! [`in_task`] only when no context is entered, so entered contexts pay nothing for the rule.
//!
//! `tokio::task::try_id()` tells a task apart from the root future of `block_on` (not a task:
//! writes there stay allowed, as in plain code) and from plain threads. Without the `tokio`
//! feature the crate cannot see tasks, and nothing is refused.
//!
//! This module imports nothing of the crate.

/// Whether the calling thread is inside a Tokio task's poll (or a plain `spawn_blocking` job).
#[inline]
pub(crate) fn in_task() -> bool {
    #[cfg(feature = "tokio")]
    {
        tokio::task::try_id().is_some()
    }
    #[cfg(not(feature = "tokio"))]
    {
        false
    }
}

/// The S21 panic. `call` names the public API that tried to write.
#[cold]
#[inline(never)]
pub(crate) fn refuse_write(call: &'static str) -> ! {
    panic!(
        "contextvars: `{call}` inside a Tokio task that has no context of its own (S21): the \
         write would land in the worker thread's context, which every unwrapped task on that \
         thread shares. Give the task its own context:\n\
         - a server (axum, tonic, hyper): serve requests through \
         `contextvars::tower::ContextLayer`, outside every middleware that writes (the first \
         layer of a `ServiceBuilder` or of tonic's `Server::builder()`, the last `.layer` call \
         in axum); a value per connection (the peer's address) goes in a middleware of the \
         connection's own service, below `ContextLayer`, not in the accept loop or connection \
         task (an HTTP/2 request is served in a task of its own);\n\
         - a server that is not tower (actix-web, poem): in your outermost middleware (actix-web: \
         the last `.wrap` call, a `wrap_fn` closure or your `Service::call`; poem: the last \
         `.with` call, your `Endpoint::call`), return \
         `contextvars::Scoped::from_call(contextvars::Context::new(), || service.call(request))` \
         and `set` inside that closure or below it;\n\
         - a task you spawn: spawn it with `contextvars::task::spawn` (or `spawn_local` for \
         `actix_web::rt::spawn`, `spawn_blocking` for `web::block`), or wrap its future with \
         `.with_current_context()` (from `contextvars::FutureExt`: opentelemetry's trait has a \
         method of that name);\n\
         - work taken out of the request (a job sent through a channel to a worker, axum's \
         `WebSocketUpgrade::on_upgrade` callback, a streamed body or response stream): take \
         `let ctx = contextvars::Context::current().fork();` in the handler, send it with the \
         job, and run the future with `.with_context(ctx)` (a stream: \
         `Scoped::new(ctx, stream)`); `.with_current_context()` in the worker or the callback \
         forks the worker's context, not the request's;\n\
         - every task of a runtime: build it with `contextvars::runtime::propagate` (needs \
         `RUSTFLAGS=\"--cfg tokio_unstable\"`; not `LocalSet` tasks, so not actix-web's; a \
         server still needs `ContextLayer` or its `from_call` middleware, since the requests of \
         one connection share its task).\n\
         If none of these applies, check that one version of contextvars is linked \
         (`cargo tree -d` lists crates linked twice). RUST_BACKTRACE=1 shows the call that wrote."
    )
}
