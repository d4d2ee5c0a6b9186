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
//! **Unwrapped futures (S13).** A future that is not inside a `Scoped` runs in whatever context
//! its thread has. Spawned with a plain `tokio::spawn`, its `set` writes into the worker thread's
//! own context, where the next plain task on that thread will see it. The root future of a
//! `block_on` shares the calling thread's context. Spawn through [`task::spawn`] or wrap with
//! [`FutureExt::with_current_context`] to give each task its own.
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
mod local;
mod map;
mod scoped;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod task;
pub mod thread;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;
mod var;

pub use context::{Context, Iter, copy_context};
pub use error::{LocalError, ResetError};
pub use local::Local;
pub use scoped::{FutureExt, Scoped};
pub use var::{ContextVar, Inherit, Token, VarKey};
