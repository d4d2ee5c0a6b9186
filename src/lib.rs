//! Context variables for async and threaded Rust: per-request state that follows your code
//! across `.await`s, spawned tasks and threads — Python's [`contextvars`] for Rust.
//!
//! A web service sets a request id in its middleware; the logger, the database layer and every
//! task spawned for that request read it, and no other request ever sees it. `thread_local!`
//! gets this wrong under async (many tasks share a thread), and `tokio::task_local!` can be
//! neither set in place nor inherited by spawned tasks. A [`ContextVar`] does both.
//!
//! ```
//! use contextvars::ContextVar;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! fn log(msg: &str) {
//!     REQUEST_ID.with(|id| println!("[{}] {msg}", id.map_or("-", String::as_str)));
//! }
//!
//! REQUEST_ID.sync_scope("req-42".to_string(), || {
//!     log("handling"); // [req-42] handling
//!     contextvars::thread::spawn(|| log("in a worker")).join().unwrap(); // [req-42] ...
//! });
//! log("done"); // [-] done
//! ```
//!
//! # The model
//!
//! - A [`Context`] maps variables to values. Each thread has a *current* context;
//!   [`ContextVar::get`], [`with`](ContextVar::with) and [`set`](ContextVar::set) use it.
//! - Copying a context ([`copy_context`], `clone`, [`Context::fork`]) is O(1) whatever its size:
//!   the map is persistent and shares structure between copies. A copy is independent: a `set`
//!   on one side is not seen by the other.
//! - [`Context::run`] makes a context current for the length of a closure; what the closure
//!   sets stays in that context. [`ContextVar::sync_scope`] runs a closure in a copy with one
//!   variable set; nothing leaks out.
//! - [`ContextVar::set`] returns a [`Token`]; [`ContextVar::reset`] undoes the `set` with it,
//!   in the context that made it.
//! - [`thread::spawn`] starts a thread in a fork of the caller's context. Threads started any
//!   other way start empty.
//! - A [`Scoped`] future enters its own context on every poll; [`task::spawn`] and friends give
//!   every child task a fork of the caller's context, taken at the call.
//!
//! # Patterns
//!
//! Set a value for a block and undo it afterwards, even on early return — use `sync_scope`:
//!
//! ```
//! # use contextvars::ContextVar;
//! static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
//! let rows = TENANT.sync_scope("acme", || format!("SELECT … WHERE tenant = '{}'", TENANT.get().unwrap()));
//! assert!(rows.ends_with("'acme'"));
//! assert!(TENANT.get().is_none());
//! ```
//!
//! Or `set` and `reset` by hand, as in Python:
//!
//! ```
//! # use contextvars::ContextVar;
//! static DEPTH: ContextVar<u32> = ContextVar::with_default("depth", || 0);
//! let token = DEPTH.set(*DEPTH.get().unwrap() + 1);
//! assert_eq!(DEPTH.get().as_deref(), Some(&1));
//! DEPTH.reset(token).unwrap();
//! assert_eq!(DEPTH.get().as_deref(), Some(&0));
//! ```
//!
//! Hand work to a thread pool with the caller's context — [`Context::bind`]:
//!
//! ```
//! # use contextvars::{Context, ContextVar};
//! static USER: ContextVar<&'static str> = ContextVar::new("user");
//! USER.set("alice");
//! let job = Context::current().fork().bind(|| USER.get());
//! let seen = std::thread::spawn(job).join().unwrap();
//! assert_eq!(seen.as_deref(), Some(&"alice"));
//! ```
//!
//! # Async code
//!
//! A future runs in a context when it is wrapped in a [`Scoped`]: the context is entered for
//! every poll (and for the drop of the future), so what the future sets stays with it across
//! `.await`s, even when a multi-thread runtime moves it between threads, and no other task sees
//! it (S12).
//!
//! ```
//! use contextvars::{ContextVar, task};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! async fn handle(id: String) -> Option<String> {
//!     REQUEST_ID.set(id);                       // in this task's own context
//!     tokio::task::yield_now().await;           // other requests run here meanwhile
//!     let db = task::spawn_blocking(|| REQUEST_ID.get()); // children inherit a copy
//!     db.await.unwrap().map(|id| (*id).clone())
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let a = task::spawn(handle("a".into()));
//! let b = task::spawn(handle("b".into()));
//! assert_eq!(a.await.unwrap().as_deref(), Some("a"));
//! assert_eq!(b.await.unwrap().as_deref(), Some("b"));
//! # });
//! ```
//!
//! Which tool when:
//!
//! - [`task::spawn`], [`task::spawn_local`], [`task::spawn_blocking`] (feature `tokio`): spawn
//!   with a fork of the caller's context, like `asyncio.create_task`. Use them instead of
//!   `tokio::spawn` wherever the child should see the request's values.
//! - [`FutureExt::with_current_context`]: the same for a future you hand to something else
//!   (another executor, `tokio::spawn`, a `JoinSet`, a `select!` arm you want isolated).
//! - [`FutureExt::with_context`] / [`Context::scope`]: run a future in a context you built, e.g.
//!   with [`Context::with_value`] in a middleware.
//! - [`ContextVar::scope`]: run a future with one variable set, like `task_local!`'s `scope`.
//! - [`task::sync_to_async`] and [`task::async_to_sync`]: asgiref's bridges between sync and
//!   async code; what the other side sets comes back to the caller (S16, S17).
//!
//! # Isolation by default
//!
//! Every request, every task must have a context of its own, or one request's `set` is
//! another's `get`. A future that is not inside a [`Scoped`] runs in whatever context its
//! thread has (S13): spawned with a plain `tokio::spawn`, that is the worker thread's own
//! context, which every such task on that worker shares — the `thread_local!` bug. So the crate
//! refuses to write there: [`ContextVar::set`], [`set_arc`](ContextVar::set_arc),
//! [`reset`](ContextVar::reset), [`Local::set`] and [`Local::remove`] inside a Tokio task with
//! no context entered panic with a message that names the call and the fixes (S21). Reads are
//! never refused, and the root future of `block_on` / `#[tokio::main]` is not a task: writes
//! there go to the calling thread's context, as in plain code.
//!
//! The ways to give work a context of its own, from the widest:
//!
//! - **A whole runtime**: `runtime::propagate(&mut builder)` (with
//!   `RUSTFLAGS="--cfg tokio_unstable"`) gives *every* task on the runtime — plain
//!   `tokio::spawn`, `JoinSet`, hyper's connection tasks, any library's — a fork of its
//!   spawner's context, through Tokio's task hooks.
//! - **Every request of a service**: `tower::ContextLayer` (feature `tower`) runs each request
//!   in its own fork, so middleware and handlers can simply `set` (Django-style).
//! - **A task**: [`task::spawn`], [`task::spawn_local`], [`task::spawn_blocking`].
//! - **A future** handed to anything else: [`FutureExt::with_current_context`].
//! - **A callback or a pool job**: [`Context::wrap`] (an `Fn`, each call in its own fork) and
//!   [`Context::bind`] (an `FnOnce`).
//!
//! ## `JoinSet`
//!
//! `JoinSet::spawn` is a plain `tokio::spawn`: wrap each future.
//!
//! ```
//! use contextvars::{ContextVar, FutureExt};
//!
//! static REQUEST_ID: ContextVar<u32> = ContextVar::new("request_id");
//! static SHARD: ContextVar<u32> = ContextVar::new("shard");
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! REQUEST_ID.set(7);
//! let mut jobs = tokio::task::JoinSet::new();
//! for shard in 0..4 {
//!     jobs.spawn(async move {
//!         SHARD.set(shard);                             // this job's own context
//!         tokio::task::yield_now().await;
//!         (*REQUEST_ID.get().unwrap(), *SHARD.get().unwrap())
//!     }.with_current_context());                        // a fork, taken now
//! }
//! let mut done = jobs.join_all().await;
//! done.sort();
//! assert_eq!(done, [(7, 0), (7, 1), (7, 2), (7, 3)]);
//! assert!(SHARD.get().is_none());
//! # });
//! ```
//!
//! ## `join!` and `select!`: `asyncio.gather` and its kin
//!
//! The futures of one `join!` or `select!` run in the *same* task, and so in one context:
//! unwrapped, what one branch sets the others see. Give each branch its own with
//! `.with_current_context()`:
//!
//! ```
//! use contextvars::{ContextVar, FutureExt};
//!
//! static STEP: ContextVar<&'static str> = ContextVar::new("step");
//!
//! async fn universe(name: &'static str) -> &'static str {
//!     STEP.set(name);
//!     tokio::task::yield_now().await; // the other branches run here
//!     *STEP.get().unwrap()
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let seen = tokio::join!(
//!     universe("a").with_current_context(),
//!     universe("b").with_current_context(),
//!     universe("c").with_current_context(),
//! );
//! assert_eq!(seen, ("a", "b", "c"));
//!
//! let first = tokio::select! {
//!     step = universe("fast").with_current_context() => step,
//!     _ = tokio::time::sleep(std::time::Duration::from_secs(5)).with_current_context() => "timeout",
//! };
//! assert_eq!(first, "fast");
//! assert!(STEP.get().is_none()); // no branch leaked into the caller
//! # });
//! ```
//!
//! ## `join_all` and `FuturesUnordered`
//!
//! The same for the `futures` crate's combinators: wrap each future as it goes in.
//!
//! ```
//! use contextvars::{ContextVar, FutureExt};
//! use futures::stream::{FuturesUnordered, StreamExt};
//!
//! static ITEM: ContextVar<u32> = ContextVar::new("item");
//!
//! async fn fetch(n: u32) -> u32 {
//!     ITEM.set(n);
//!     tokio::task::yield_now().await;
//!     *ITEM.get().unwrap() * 10
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let all = futures::future::join_all((1..=3).map(|n| fetch(n).with_current_context())).await;
//! assert_eq!(all, [10, 20, 30]);
//!
//! let mut unordered: FuturesUnordered<_> =
//!     (1..=3).map(|n| fetch(n).with_current_context()).collect();
//! let mut sum = 0;
//! while let Some(v) = unordered.next().await {
//!     sum += v;
//! }
//! assert_eq!(sum, 60);
//! # });
//! ```
//!
//! ## rayon and thread pools
//!
//! Pool threads have contexts of their own, empty unless given one. [`Context::wrap`] turns an
//! `Fn` into one that runs each call in its own fork of the captured context (S23): the request's
//! values are there, and what a call sets stays in that call — not in the next item, not on the
//! pool thread.
//!
//! ```
//! use contextvars::{Context, ContextVar};
//! use rayon::prelude::*;
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//! static ROW: ContextVar<u32> = ContextVar::new("row");
//!
//! TENANT.set("acme".to_string());
//! let rows: Vec<String> = (0..100u32)
//!     .into_par_iter()
//!     .map(Context::current().wrap(|row: u32| {
//!         assert!(ROW.get().is_none()); // nothing left by another item
//!         ROW.set(row);
//!         format!("{}/{}", TENANT.get().unwrap(), ROW.get().unwrap())
//!     }))
//!     .collect();
//! assert_eq!(rows[42], "acme/42");
//! ```
//!
//! For a single job on a pool, `Context::current().fork().bind(job)` does the same for an
//! `FnOnce`; [`task::spawn_blocking`] for Tokio's blocking pool.
//!
//! **Compared with `tokio::task_local!`.** A task-local is only set through `scope`, for one
//! future, and a spawned task does not inherit it. A `ContextVar` can be `set` anywhere inside
//! the task, is inherited by every child spawned through this crate, and also works in sync
//! code, threads and other executors. Both enter their value on every poll.
//!
//! # Named attributes: `Local`
//!
//! [`Local`] is Django's `asgiref.local.Local`: named, typed attributes in one object, context
//! local in async code and thread local in plain threads, carried across the bridges. Code ported
//! from Python (django-log-request-id keeps the request id in one) maps one to one:
//!
//! ```
//! use contextvars::Local;
//!
//! static REQUEST: Local = Local::new();
//!
//! REQUEST.set("request_id", "req-7".to_string());
//! assert_eq!(REQUEST.get::<String>("request_id").unwrap().as_str(), "req-7");
//! assert!(REQUEST.get::<u32>("request_id").is_err()); // wrong type: LocalError::WrongType
//! REQUEST.remove("request_id").unwrap();
//! ```
//!
//! [`Local::thread_critical`] keeps values that must not leave their thread or task (never
//! inherited, never bridged).
//!
//! # Logging with `tracing`
//!
//! With the `tracing` feature, [`tracing::ContextFields`](crate::tracing) puts chosen
//! variables in front of every line a `tracing_subscriber::fmt` subscriber writes, so a
//! request id set in a middleware appears on every log line of that request, in every task
//! it spawns.
//!
//! # Compared with the alternatives
//!
//! | | `thread_local!` | `tokio::task_local!` | `contextvars` |
//! |---|---|---|---|
//! | correct when tasks share a thread | no | yes | yes |
//! | set in place (`set`/`reset`) | yes | no (only `scope`) | yes |
//! | inherited by spawned tasks/threads | no | no | yes, copied at spawn |
//! | survives `.await` on a work-stealing runtime | no | yes | yes |
//! | snapshot / run in another context | no | no | O(1) `copy_context` + `run` |
//! | works with no runtime | yes | `sync_scope` only | yes |
//! | per-variable inheritance policy | — | — | [`Inherit`] |
//!
//! # The shallow-copy pitfall
//!
//! Copies are shallow (S8): values are shared `Arc`s. A value with interior mutability — a
//! `Mutex`, an atomic — mutated through one context is seen through every copy, and so is a
//! mutable *default*, which is one object for the whole program:
//!
//! ```
//! use contextvars::{ContextVar, Inherit};
//! use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
//!
//! static COUNTER: ContextVar<AtomicU32> = ContextVar::with_default("counter", || AtomicU32::new(0));
//!
//! let workers: Vec<_> = (0..3)
//!     .map(|_| contextvars::thread::spawn(|| COUNTER.with(|c| c.unwrap().fetch_add(1, Relaxed))))
//!     .collect();
//! for w in workers { w.join().unwrap(); }
//! assert_eq!(COUNTER.with(|c| c.unwrap().load(Relaxed)), 3); // everybody shared the default
//! ```
//!
//! Two fixes: *bind* a fresh value where the work starts (`COUNTER.set(AtomicU32::new(0))` in
//! each worker), or give the variable an [`Inherit::Fork`] policy so that each child gets its own
//! copy of a bound value:
//!
//! ```
//! use contextvars::{ContextVar, Inherit};
//! use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
//!
//! static COUNTER: ContextVar<AtomicU32> =
//!     ContextVar::new("counter").inherit(Inherit::Fork(|_| AtomicU32::new(0)));
//!
//! COUNTER.set(AtomicU32::new(0)); // bound, so the policy applies to children
//! let workers: Vec<_> = (0..3)
//!     .map(|_| contextvars::thread::spawn(|| COUNTER.with(|c| c.unwrap().fetch_add(1, Relaxed) + 1)))
//!     .collect();
//! for w in workers { assert_eq!(w.join().unwrap(), 1); } // each counted alone
//! assert_eq!(COUNTER.with(|c| c.unwrap().load(Relaxed)), 0);
//! ```
//!
//! # Semantics
//!
//! The numbered rules (S1…S20) that the tests check are in the repository's `API.md`
//! contract; each public item's docs say which rules it follows.
//!
//! [`contextvars`]: https://docs.python.org/3/library/contextvars.html
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod context;
mod current;
mod error;
mod id;
mod isolation;
mod local;
mod map;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod propagation;
#[cfg(all(tokio_unstable, feature = "tokio"))]
#[cfg_attr(docsrs, doc(cfg(all(tokio_unstable, feature = "tokio"))))]
pub mod runtime;
mod scoped;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod task;
pub mod thread;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;
mod var;

pub use context::{Context, Iter, copy_context};
pub use error::{LocalError, ResetError};
pub use local::Local;
pub use scoped::{FutureExt, Scoped};
pub use var::{ContextVar, Inherit, Token, VarKey};
