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
//! The guide below goes from the model to the details: [the model](#the-model),
//! [reading and writing](#reading-and-writing), [async code](#async-code),
//! [isolation by default](#isolation-by-default), [testing](#testing),
//! [`Local`](#named-attributes-local),
//! [logging](#logging-with-tracing), [comparison](#compared-with-the-alternatives),
//! [the shallow-copy pitfall](#the-shallow-copy-pitfall),
//! [porting from Python](#porting-from-python-and-asgiref) and
//! [from `task_local!`](#porting-from-task_local), [cargo features](#cargo-features),
//! [MSRV and semver](#msrv-and-semver-policy), [how it works inside](#how-it-works-inside),
//! and the numbered rules the tests check: [**Semantics**](#semantics).
//!
//! Serving HTTP: with axum, tonic, hyper or AWS Lambda (`lambda_runtime`), start at the
//! [`tower`] module (one context per request, a complete axum service); with actix-web, poem,
//! salvo, Rocket or another server that is not tower, at
//! [its section](#actix-web-and-other-servers-that-are-not-tower); across services, at
//! [`propagation`]; log lines, at [`tracing`]. A worker that runs jobs sent through a channel:
//! [channels and job queues](#channels-and-job-queues). Server-side rendering with Leptos:
//! [its paragraph](#leptos-server-side-rendering).
//!
//! # The model
//!
//! - A [`Context`] maps variables to values. Each thread has a *current* context;
//!   [`ContextVar::get`], [`with`](ContextVar::with) and [`set`](ContextVar::set) use it.
//! - Copying a context ([`copy_context`], `clone`) is O(1) whatever its size: the map is
//!   persistent and shares structure between copies. So is [`Context::fork`] unless a bound
//!   variable has an [`Inherit`] policy other than `Share` (then it walks the bindings once). A
//!   copy is independent: a `set` on one side is not seen by the other. It is also shallow:
//!   values are shared `Arc`s (see [the shallow-copy pitfall](#the-shallow-copy-pitfall)).
//! - [`Context::run`] makes a context current for the length of a closure; what the closure
//!   sets stays in that context. [`ContextVar::sync_scope`] runs a closure in a copy with one
//!   variable set; nothing leaks out.
//! - [`ContextVar::set`] returns a [`Token`]; [`ContextVar::reset`] undoes the `set` with it,
//!   in the context that made it. [`ContextVar::set_guarded`] does both: the `set` is undone
//!   when its [`SetGuard`] drops.
//! - [`thread::spawn`] starts a thread in a fork of the caller's context. Threads started any
//!   other way start empty.
//! - A [`Scoped`] future enters its own context on every poll; [`task::spawn`] and friends give
//!   every child task a fork of the caller's context, taken at the call.
//!
//! # Reading and writing
//!
//! | to | call | returns |
//! |---|---|---|
//! | share the value | [`get`](ContextVar::get) | `Option<Arc<T>>`: the value, else the default, else `None` |
//! | borrow it | [`with`](ContextVar::with) | what your closure returns, given `Option<&T>` |
//! | clone it | [`get_cloned`](ContextVar::get_cloned) | `Option<T>` |
//! | count on the default | [`value`](ContextVar::value) | `Arc<T>`; panics if neither set nor defaulted |
//! | set it | [`set`](ContextVar::set), [`set_arc`](ContextVar::set_arc) | a [`Token`] for [`reset`](ContextVar::reset) |
//! | set it for a block | [`set_guarded`](ContextVar::set_guarded) | a [`SetGuard`] that resets on drop |
//! | run with a value | [`sync_scope`](ContextVar::sync_scope), [`scope`](ContextVar::scope) | the closure's or future's output |
//!
//! ```
//! use contextvars::ContextVar;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//! static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
//!
//! assert_eq!(REQUEST_ID.get_cloned().unwrap_or_default(), ""); // not set
//! assert_eq!(*RETRIES.value(), 3);                               // the default, no Option
//!
//! fn handle(id: &str) -> Result<u32, std::num::ParseIntError> {
//!     let _id = REQUEST_ID.set_guarded(id.to_string()); // Python 3.14: `with var.set(v):`
//!     let _retries = RETRIES.set_guarded(1);
//!     let n = "seven".parse()?;                         // early return: both are reset
//!     Ok(n)
//! }
//! assert!(handle("req-1").is_err());
//! assert!(REQUEST_ID.get().is_none());
//! assert!(!RETRIES.is_set());
//! ```
//!
//! A block with a value and nothing leaking out afterwards — `sync_scope`:
//!
//! ```
//! # use contextvars::ContextVar;
//! static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
//! let rows = TENANT.sync_scope("acme", || format!("SELECT … WHERE tenant = '{}'", TENANT.value()));
//! assert!(rows.ends_with("'acme'"));
//! assert!(TENANT.get().is_none());
//! ```
//!
//! Or `set` and `reset` by hand, as in Python:
//!
//! ```
//! # use contextvars::ContextVar;
//! static DEPTH: ContextVar<u32> = ContextVar::with_default("depth", || 0);
//! let token = DEPTH.set(*DEPTH.value() + 1);
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
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{ContextVar, task};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! async fn handle(id: String) -> Option<String> {
//!     REQUEST_ID.set(id);                       // in this task's own context
//!     tokio::task::yield_now().await;           // other requests run here meanwhile
//!     let db = task::spawn_blocking(|| REQUEST_ID.get_cloned()); // children inherit a copy
//!     db.await.unwrap()
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let a = task::spawn(handle("a".into()));
//! let b = task::spawn(handle("b".into()));
//! assert_eq!(a.await.unwrap().as_deref(), Some("a"));
//! assert_eq!(b.await.unwrap().as_deref(), Some("b"));
//! # });
//! # }
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
//! - [`ContextVar::scope`]: run a future with one variable set, like `task_local!`'s `scope`
//!   (but nest scopes through an `async` block: see [porting from
//!   `task_local!`](#porting-from-task_local)).
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
//! [`set_guarded`](ContextVar::set_guarded), [`reset`](ContextVar::reset), [`Local::set`] and
//! [`Local::remove`] inside a Tokio task with no context entered panic with a message that
//! names the call and the fixes (S21). Reads are never refused, and the root future of
//! `block_on` / `#[tokio::main]` is not a task: writes there go to the calling thread's
//! context, as in plain code. So a loop there that handles one message after another (a queue
//! consumer in `main`, AWS Lambda's `run`: see the [`tower`] module) is not refused, and each
//! message reads what the one before set: run each in a context of its own,
//! `handle(msg).with_context(Context::new())`. Only Tokio tasks are told apart: on smol and
//! other executors nothing is refused unless the executor's threads ask for it with
//! [`thread::refuse_own_context_writes`] (see
//! [other executors](#smol-async-executor-and-other-executors)).
//!
//! The ways to give work a context of its own, from the widest:
//!
//! - **A whole runtime**: `runtime::propagate(&mut builder)` (with
//!   `RUSTFLAGS="--cfg tokio_unstable"`) gives *every* task on the runtime — plain
//!   `tokio::spawn`, `JoinSet`, hyper's connection tasks, any library's — a fork of its
//!   spawner's context, through Tokio's task hooks. A task, not a request: the requests that
//!   one keep-alive connection carries are served in that connection's task, one after the
//!   other, so what one sets the next would read. A server still needs `ContextLayer` (or,
//!   not tower, its `from_call` middleware), unless it serves each request in a task of its
//!   own, as Rocket does (see [Rocket](#actix-web-and-other-servers-that-are-not-tower)).
//! - **Every request of a service**: `tower::ContextLayer` (feature `tower`) runs each request
//!   in its own fork, so middleware and handlers can simply `set` (Django-style). A server
//!   that is not tower (actix-web, poem, salvo): a middleware of yours that returns
//!   [`Scoped::from_call`]; Rocket: a wrapper around each route's handler (see [servers that
//!   are not tower](#actix-web-and-other-servers-that-are-not-tower)).
//! - **A task**: [`task::spawn`], [`task::spawn_local`], [`task::spawn_blocking`].
//! - **A future** handed to anything else: [`FutureExt::with_current_context`].
//! - **Work taken out of the request** (a job sent through a channel, axum's
//!   `WebSocketUpgrade::on_upgrade` callback, a streamed response body): take
//!   `let ctx = Context::current().fork();` in the handler, send it with the job, and run the
//!   work with `.with_context(ctx)` (a stream: `Scoped::new(ctx, stream)`).
//!   `.with_current_context()` in the worker or the callback forks the worker's context, not
//!   the request's. See [channels and job queues](#channels-and-job-queues) and the [`tower`]
//!   module.
//! - **A callback or a pool job**: [`Context::wrap`] (an `Fn`, each call in its own fork) and
//!   [`Context::bind`] (an `FnOnce`).
//!
//! **A runtime driven inside an entered context** (a current-thread runtime's `block_on` in a
//! blocking job, in `block_in_place` or in [`Context::run`], a `LocalSet` inside a [`Scoped`])
//! polls its plain `tokio::spawn` / `spawn_local` tasks inside that context, on the same
//! thread: they read and write it as the code around them would, and S21 does not refuse them,
//! since a context is entered. (A multi-thread runtime's `Handle::block_on` polls only its root
//! future there; the tasks it spawns run on its workers.) Spawn them with [`task::spawn`] /
//! [`task::spawn_local`] (each then has a context of its own), or build that runtime with
//! `runtime::propagate`.
//!
//! **Test on a multi-thread runtime**, and call a service from a task: see [testing](#testing).
//!
//! ## `JoinSet`
//!
//! `JoinSet::spawn` is a plain `tokio::spawn`: wrap each future. (A job that another task sent
//! through a channel: see [channels and job queues](#channels-and-job-queues).)
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
//! ## Channels and job queues
//!
//! A message sent through a channel carries no context: the worker that receives it runs in its
//! own. Take the context where the job is made, send it with the job, and run the job in it
//! with [`with_context`](FutureExt::with_context). `.with_current_context()` or
//! [`task::spawn`] in the worker (or a plain `JoinSet::spawn` on a runtime built with
//! `runtime::propagate`) would fork the *worker's* context: the job would read none of its
//! producer's values, and nothing would panic, since a context is entered.
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{Context, ContextVar, FutureExt, task};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//! static ATTEMPT: ContextVar<u32> = ContextVar::new("attempt");
//!
//! async fn send_email(to: u32) -> String {
//!     ATTEMPT.set(1); // the job's own context: allowed, seen by no other job
//!     tokio::task::yield_now().await;
//!     format!("{} to {to} #{}", REQUEST_ID.value(), ATTEMPT.value())
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Context)>(16);
//! for producer in 0..2 {
//!     let tx = tx.clone();
//!     task::spawn(async move {
//!         for n in 0..2 {
//!             REQUEST_ID.set(format!("req-{producer}-{n}"));
//!             // At enqueue: a fork of the producer's context as it is now.
//!             tx.send((n, Context::current().fork())).await.unwrap();
//!         }
//!     });
//! }
//! drop(tx);
//!
//! let mut jobs = tokio::task::JoinSet::new();
//! while let Some((to, ctx)) = rx.recv().await {
//!     jobs.spawn(send_email(to).with_context(ctx)); // the producer's context, not the worker's
//! }
//! let mut done = jobs.join_all().await;
//! done.sort();
//! assert_eq!(done, ["req-0-0 to 0 #1", "req-0-1 to 1 #1", "req-1-0 to 0 #1", "req-1-1 to 1 #1"]);
//! # });
//! # }
//! ```
//!
//! Without a runtime (`std::sync::mpsc`, crossbeam-channel, worker threads of your own) the
//! same holds: a worker thread has its own context, empty unless given one, and what a job
//! `set`s there without a context of its own stays on the thread for its next jobs. Send
//! `Context::current().fork().bind(job)` ([`Context::bind`]): the job then reads its
//! producer's values, and what it sets ends with it.
//!
//! ```
//! use contextvars::{Context, ContextVar};
//! use std::sync::mpsc;
//!
//! static REQUEST_ID: ContextVar<u32> = ContextVar::new("request_id");
//! static ATTEMPT: ContextVar<u32> = ContextVar::new("attempt");
//!
//! let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() -> String + Send>>();
//! let worker = std::thread::spawn(move || rx.iter().map(|job| job()).collect::<Vec<_>>());
//! for id in 0..3 {
//!     REQUEST_ID.set(id); // the producer's context
//!     let job = Context::current().fork().bind(|| {
//!         let retry = ATTEMPT.get().is_some(); // nothing left by the previous job
//!         ATTEMPT.set(1);
//!         format!("req-{} retry={retry}", REQUEST_ID.value())
//!     });
//!     tx.send(Box::new(job)).unwrap();
//! }
//! drop(tx);
//! let done = worker.join().unwrap();
//! assert_eq!(done, ["req-0 retry=false", "req-1 retry=false", "req-2 retry=false"]);
//! ```
//!
//! ## `join!` and `select!`: `asyncio.gather` and its kin
//!
//! The futures of one `join!` or `select!` run in the *same* task, and so in one context:
//! unwrapped, what one branch sets the others see. Give each branch its own with
//! `.with_current_context()`. That is a [fork](Context::fork), as for a spawned task: a
//! variable declared [`Inherit::None`] is not in the branches, and an [`Inherit::Fork`] one gets
//! its fork function's value. To give a branch the caller's values as they are, wrap it with
//! `Context::current().scope(fut)` (a plain copy):
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
//! A `select!` loser is dropped where it stopped. Wrapped, its context goes with it; unwrapped,
//! what it set before that point stays in the caller's context, even a value it meant to
//! `reset` with a [`Token`] (a [`SetGuard`] resets in the drop).
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
//! ## Libraries that take a spawner: DataLoaders, GraphQL
//!
//! A library that takes a spawn function (async-graphql's `DataLoader::new(loader, spawner)`)
//! runs its work in whatever task that function starts. Pass [`task::spawn`]: the task gets a
//! fork of the context current at the spawn call (as does `tokio::spawn` on a runtime built
//! with `runtime::propagate`). Plain `tokio::spawn` runs it in the worker's own context:
//! reads there find nothing, writes panic (S21). A batching loader calls the spawner from the
//! `load` that opens a batch; later loads join that batch, so the batch runs in the context
//! of the request that opened it. Create the loader per request, or, for
//! one loader shared by all requests, put what the load depends on in the key
//! (`Loader<(Tenant, Id)>`, the tenant read where `load_one` is called): a shared loader's
//! batches and cache hold keys from many requests.
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{task, Context, ContextVar, FutureExt};
//! use std::{future::Future, pin::Pin, sync::{Arc, Mutex}};
//! use tokio::sync::oneshot;
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//!
//! type Batch = Arc<Mutex<Vec<(u32, oneshot::Sender<String>)>>>;
//! /// The shape of a batching loader: the first `load` of a batch hands it to the spawner.
//! struct Loader<S> { spawner: S, batch: Batch }
//! impl<S: Fn(Pin<Box<dyn Future<Output = ()> + Send>>)> Loader<S> {
//!     async fn load(&self, id: u32) -> String {
//!         let (tx, rx) = oneshot::channel();
//!         let opens = { let mut b = self.batch.lock().unwrap(); b.push((id, tx)); b.len() == 1 };
//!         if opens {
//!             let batch = self.batch.clone();
//!             (self.spawner)(Box::pin(async move {
//!                 tokio::task::yield_now().await; // the batch window
//!                 let schema = TENANT.get_cloned().unwrap_or_default(); // picks the schema
//!                 for (id, tx) in batch.lock().unwrap().drain(..) {
//!                     let _ = tx.send(format!("{schema}.{id}"));
//!                 }
//!             }));
//!         }
//!         rx.await.unwrap()
//!     }
//! }
//! fn tenant(t: &str) -> Context { Context::new().with_value(&TENANT, t.to_string()) }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let wrapped = Loader { spawner: |f| drop(task::spawn(f)), batch: Batch::default() };
//! let one_request = async { tokio::join!(wrapped.load(1), wrapped.load(2)) };
//! let got = one_request.with_context(tenant("acme")).await;
//! assert_eq!(got, ("acme.1".to_string(), "acme.2".to_string()));
//!
//! let plain = Loader { spawner: |f| drop(tokio::spawn(f)), batch: Batch::default() };
//! assert_eq!(plain.load(1).with_context(tenant("acme")).await, ".1"); // no tenant
//!
//! // One loader for two requests: globex's key is loaded in acme's batch, from acme's schema.
//! let (a, g) = tokio::join!(
//!     wrapped.load(1).with_context(tenant("acme")),
//!     wrapped.load(2).with_context(tenant("globex")),
//! );
//! assert_eq!((a.as_str(), g.as_str()), ("acme.1", "acme.2"));
//! # });
//! # }
//! ```
//!
//! async-graphql resolves the fields of one query in the request's task, polled together as
//! in `join!`: a resolver that `set`s changes what its siblings read. Set per request values
//! in a middleware under `tower::ContextLayer`; a value for one resolver's own work goes in
//! [`ContextVar::scope`]. Its `GraphQLSubscription` service calls `on_upgrade` itself, so the
//! subscription streams run in the upgrade task and read none of the request's values: serve
//! the WebSocket from a handler instead, `let ctx = Context::current().fork();` then
//! `ws.on_upgrade(move |s| GraphQLWebSocket::new(s, schema, protocol).serve().with_context(ctx))`.
//!
//! ### Leptos (server-side rendering)
//!
//! `leptos_axum` spawns through `any_spawner::Executor`, whose `init_tokio` spawns with plain
//! `tokio::spawn`. Under `tower::ContextLayer` (an axum layer), the component bodies, the
//! `additional_context` closure and `#[server]` functions run in the request's task and read
//! its values. The rest does not:
//!
//! - A `Resource`'s future is polled once inline, in the component, then in a task of its own:
//!   what it reads before its first `.await` that waits is the request's, what it reads after
//!   that is nothing, and a `set` there panics (S21), so the resource never loads and the page
//!   never finishes. A `OnceResource`'s future runs wholly in such a task. Wrap each future
//!   in the fetcher, `Resource::new(src, |s| fetch(s).with_current_context())`,
//!   `OnceResource::new(fut.with_current_context())`; or, in `main` before the routes are
//!   built, `Executor::init_custom_executor` with an executor whose `spawn` is
//!   [`task::spawn`] (and `spawn_local`, [`task::spawn_local`]); leptos_axum's own
//!   `init_tokio` call then leaves it in place. `runtime::propagate` does the same for every
//!   task. Only the wrap gives the future a context of its own from its first poll: without
//!   it, a `set` before the first wait lands in the request's context and the rest of the page
//!   reads it.
//! - With out-of-order and in-order streaming (`SsrMode::OutOfOrder`, the default, and
//!   `InOrder`), what a `Suspense` renders once its resources load (its children, `Suspend`
//!   futures) runs as the server polls the response body, after the handler has returned: map
//!   each response onto a `Scoped` body right inside `ContextLayer` (see [`tower`], streamed
//!   bodies). `SsrMode::Async` renders the whole page in the handler.
//!
//! Leptos's `provide_context` / `use_context` follow its reactive owner into all of these, but
//! exist only inside the render and the server functions: use them for what components share,
//! and a [`ContextVar`] for what code outside Leptos reads (log lines, a database layer, a tower
//! middleware, a task spawned with [`task::spawn`]). The shape of a resource, modelled without
//! Leptos:
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{task, Context, ContextVar, FutureExt as _};
//! use futures::FutureExt as _; // now_or_never
//! use std::{future::Future, pin::Pin};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! type Spawn = fn(Pin<Box<dyn Future<Output = ()> + Send>>);
//! /// Like Leptos's `Resource::new`: one poll inline, the rest in a task the executor spawns.
//! fn resource<F>(spawn: Spawn, fut: F) -> tokio::sync::oneshot::Receiver<F::Output>
//! where
//!     F: Future + Send + 'static,
//!     F::Output: Send,
//! {
//!     let (tx, rx) = tokio::sync::oneshot::channel();
//!     let mut fut = Box::pin(async move { drop(tx.send(fut.await)) });
//!     if fut.as_mut().now_or_never().is_none() {
//!         spawn(fut);
//!     }
//!     rx
//! }
//! async fn fetch() -> (Option<String>, Option<String>) {
//!     let before = REQUEST_ID.get_cloned(); // the first poll: inline, in the component
//!     tokio::task::yield_now().await;
//!     (before, REQUEST_ID.get_cloned()) // polled in the spawned task
//! }
//! let some = |s: &str| Some(s.to_string());
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let request = Context::new().with_value(&REQUEST_ID, "req-1".to_string());
//! let init_tokio: Spawn = |f| drop(tokio::spawn(f));
//! let custom: Spawn = |f| drop(task::spawn(f));
//!
//! let page = async { resource(init_tokio, fetch()).await.unwrap() };
//! assert_eq!(page.with_context(request.clone()).await, (some("req-1"), None));
//! let page = async { resource(custom, fetch()).await.unwrap() };
//! assert_eq!(page.with_context(request.clone()).await, (some("req-1"), some("req-1")));
//! let page = async { resource(init_tokio, fetch().with_current_context()).await.unwrap() };
//! assert_eq!(page.with_context(request).await, (some("req-1"), some("req-1")));
//! # });
//! # }
//! ```
//!
//! ## Connection pools and their hooks (sqlx)
//!
//! A pool runs its hooks where it chooses, and a pooled connection outlives the request that
//! opened it. In sqlx 0.8, `before_acquire`, and `after_connect` for a connection an `acquire`
//! opens, run inside the caller's `acquire` future: they read the request's values.
//! `after_connect` for a connection opened to keep `min_connections`, and `after_release`
//! (which dropping a `PoolConnection` hands to a plain `tokio::spawn`), run in tasks the pool
//! spawns: they read nothing, and a `set` there panics (S21). On a runtime built with
//! `runtime::propagate` they read a fork of the context that spawned them: for the
//! `min_connections` upkeep, that of the code that created the pool (a request, if one did),
//! for as long as the pool lives.
//!
//! So a hook must not pick a connection's tenant from a variable: a connection set up once
//! for the request that opened it (`after_connect` attaching the tenant's database, `SET
//! search_path`) is then handed to every other tenant's requests. Key the pool on the tenant
//! (one pool per tenant, looked up from `TENANT` in your API function), or read the tenant
//! in your API function and set the connection up for it on every acquire:
//!
//! ```
//! use contextvars::{Context, ContextVar, FutureExt};
//! use std::sync::Mutex;
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//!
//! /// The shape of a pool: `after_connect` runs when a connection is opened, not when reused.
//! #[derive(Default)]
//! struct Pool { idle: Mutex<Vec<Conn>> }
//! struct Conn { schema: Option<String> }
//! impl Pool {
//!     async fn acquire(&self, after_connect: fn(&mut Conn)) -> Conn {
//!         let idle = self.idle.lock().unwrap().pop();
//!         idle.unwrap_or_else(|| { let mut c = Conn { schema: None }; after_connect(&mut c); c })
//!     }
//!     fn release(&self, conn: Conn) { self.idle.lock().unwrap().push(conn) }
//! }
//! fn tenant(t: &str) -> Context { Context::new().with_value(&TENANT, t.to_string()) }
//!
//! /// Wrong: the schema is the tenant of the request that opened the connection.
//! async fn query_hook(pool: &Pool) -> Option<String> {
//!     let conn = pool.acquire(|c| c.schema = TENANT.get_cloned()).await;
//!     let schema = conn.schema.clone();
//!     pool.release(conn);
//!     schema
//! }
//! /// Right: the tenant is read here and the connection set up for it on each acquire.
//! async fn query(pool: &Pool) -> Option<String> {
//!     let tenant = TENANT.get_cloned().expect("a tenant");
//!     let mut conn = pool.acquire(|_| {}).await;
//!     if conn.schema.as_ref() != Some(&tenant) {
//!         conn.schema = Some(tenant); // DETACH / ATTACH, SET search_path
//!     }
//!     let schema = conn.schema.clone();
//!     pool.release(conn);
//!     schema
//! }
//!
//! # #[cfg(feature = "tokio")] { // `tokio::spawn` below
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let pool = Pool::default();
//! assert_eq!(query_hook(&pool).with_context(tenant("acme")).await.unwrap(), "acme");
//! assert_eq!(query_hook(&pool).with_context(tenant("globex")).await.unwrap(), "acme");
//! assert_eq!(query(&pool).with_context(tenant("globex")).await.unwrap(), "globex");
//! assert_eq!(query(&pool).with_context(tenant("acme")).await.unwrap(), "acme");
//!
//! // A hook the pool runs in a task of its own (`after_release`) reads nothing.
//! let in_pool_task = async { tokio::spawn(async { TENANT.get_cloned() }).await.unwrap() };
//! assert_eq!(in_pool_task.with_context(tenant("acme")).await, None);
//! # });
//! # }
//! ```
//!
//! A `fetch` stream returned as a response body is polled after the handler returns: pick
//! its pool in the handler, or wrap the stream (see [`tower`]'s streamed bodies). A
//! transaction, and a stream consumed in the handler, run in the request's context.
//!
//! ## rayon and thread pools
//!
//! Pool threads have contexts of their own, empty unless given one. [`Context::wrap`] turns an
//! `Fn` into one that runs each call in its own fork of the captured context (S23): the request's
//! values are there, and what a call sets stays in that call — not in the next item, not on the
//! pool thread.
//!
//! Wrap every closure you hand to the pool, nested ones included. A pool thread that waits
//! inside a call (on a nested `par_iter` or `rayon::join`) runs other jobs meanwhile, possibly
//! another request's; a wrapped job enters its own context, but an unwrapped one runs in the
//! context of the call it interrupted, reading and writing that call's values.
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
//! A job handed to the pool unwrapped writes into its pool thread's context, silently. To have
//! that write panic instead (S21, with the fixes in the message), build the pool with
//! `rayon::ThreadPoolBuilder::new().start_handler(|_|
//! contextvars::thread::refuse_own_context_writes())` ([`thread::refuse_own_context_writes`]).
//! It catches a job that runs at the top of a pool thread; one run while another job waits
//! inside it is in that job's context, and is not caught.
//!
//! ## smol, async-executor and other executors
//!
//! The S21 check sees only Tokio tasks (an executor driven inside one is checked as that task).
//! On smol, async-executor, async-std or `futures::executor` nothing is refused by default,
//! with the `tokio` feature or without: a future spawned unwrapped (`smol::spawn(fut)`,
//! `ex.spawn(fut)`) runs in its executor thread's own context, and what it `set`s lands there,
//! where every unwrapped task polled on that thread later reads it, after the task has ended
//! too. A blocking job (`smol::unblock(f)`) runs in its pool thread's context the same way: it
//! reads none of the request's values, and what it sets, the thread's next job reads. Give
//! each piece of work a context of its own:
//!
//! - each connection: `ex.spawn(serve(stream).with_context(Context::new()))`;
//! - each request on it: `Scoped::from_call(Context::current().fork(), || { REQUEST_ID.set(id);
//!   handle(req) }).await` ([`Scoped::from_call`]), so that the `set` is the request's own. A
//!   `set` made before wrapping (`REQUEST_ID.set(id); handle(req).with_current_context()` in an
//!   unwrapped task) goes to the thread's context, and the fork may take another request's
//!   value from there;
//! - each child: `ex.spawn(child.with_current_context())`; each blocking job:
//!   `unblock(Context::current().fork().bind(f))` ([`Context::bind`]); each `join!` or
//!   `select!` branch that sets: `.with_current_context()`, as [above](#join-and-select-asynciogather-and-its-kin).
//!
//! To have a missed wrap panic instead of leaking, start each thread that runs your executor
//! with [`thread::refuse_own_context_writes`]: on that thread a write with no context entered
//! panics as in a Tokio task (S21), with a message naming these fixes, and the wrapped work
//! above runs unchanged. It needs threads you start (`std::thread::spawn(|| {
//! thread::refuse_own_context_writes(); block_on(ex.run(shutdown)) })`, or a
//! `futures::executor::ThreadPoolBuilder::after_start` hook); smol's global executor and the
//! `blocking` pool behind `unblock` start their own.
//!
//! With `futures::executor` standing in for smol:
//!
//! ```
//! use contextvars::{Context, ContextVar, FutureExt, Scoped};
//! use futures::executor::{LocalPool, LocalSpawner};
//! use futures::task::LocalSpawnExt;
//! # async fn yield_now() { // what smol's `future::yield_now` does
//! #     let mut done = false;
//! #     futures::future::poll_fn(|cx| if std::mem::replace(&mut done, true) {
//! #         std::task::Poll::Ready(())
//! #     } else {
//! #         cx.waker().wake_by_ref();
//! #         std::task::Poll::Pending
//! #     }).await
//! # }
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! async fn handle(ex: LocalSpawner) -> String {
//!     yield_now().await; // the other connection's requests run here
//!     let child = async { REQUEST_ID.get_cloned().unwrap() }.with_current_context();
//!     let child = ex.spawn_local_with_handle(child).unwrap(); // ex.spawn(child)
//!     let job = Context::current().fork().bind(|| REQUEST_ID.get_cloned().unwrap());
//!     let job = std::thread::spawn(job).join().unwrap(); // unblock(job)
//!     format!("{} {} {job}", REQUEST_ID.value(), child.await)
//! }
//!
//! let mut pool = LocalPool::new();
//! let ex = pool.spawner();
//! let (tx, rx) = std::sync::mpsc::channel();
//! for conn in 0..2 {
//!     let (ex2, tx) = (ex.clone(), tx.clone());
//!     let serve = async move {
//!         for n in 0..2 {
//!             let id = format!("c{conn}-r{n}");
//!             let resp = Scoped::from_call(Context::current().fork(), || {
//!                 REQUEST_ID.set(id.clone()); // the request's own context
//!                 handle(ex2.clone())
//!             });
//!             tx.send((id, resp.await)).unwrap();
//!         }
//!     };
//!     ex.spawn_local(serve.with_context(Context::new())).unwrap();
//! }
//! // Unwrapped, by mistake: not refused; the value lands in the thread's own context.
//! ex.spawn_local(async { drop(REQUEST_ID.set("leaked".into())) }).unwrap();
//! pool.run();
//! drop(tx);
//! for (id, resp) in rx {
//!     assert_eq!(resp, format!("{id} {id} {id}")); // no request saw "leaked" or another's id
//! }
//! assert_eq!(REQUEST_ID.get_cloned().as_deref(), Some("leaked")); // the thread keeps it
//! ```
//!
//! ## In a library
//!
//! A library that reads ambient values runs wherever its users call it, so:
//!
//! - Spawn with [`task::spawn`] / [`task::spawn_blocking`] (or `.with_current_context()`), not
//!   plain `tokio::spawn`: the child then reads the caller's values, and may write.
//! - Start a background task meant to outlive the request that happens to start it (a
//!   connection driver, a batching worker) from an empty context:
//!   `Context::new().run(|| task::spawn(worker))`. It then reads no request's values and holds
//!   none. `tokio::spawn(worker.with_context(Context::new()))` hides them too, but on a runtime
//!   built with `runtime::propagate` the task still keeps the fork its spawn hook took of the
//!   request that started it, values and their memory, for as long as the task lives.
//! - Work such a task does for a request (a query a pool's manager runs): take
//!   `Context::current().fork()` in your API function, send it with the job, and run the job
//!   with `.with_context(ctx)` ([channels and job queues](#channels-and-job-queues)). A
//!   [`task::spawn`] inside the long-lived task forks *its* context, not the request's.
//! - Start such a task on a runtime you hold (`Handle::spawn`) if it may be created inside
//!   [`task::async_to_sync`] on a plain thread: there `tokio::spawn` and [`task::spawn`] use that
//!   thread's private runtime, which runs the task only while the thread is in an
//!   `async_to_sync` call (S17), so other threads' requests wait on it.
//! - A tower layer of yours that `set`s per request can bundle the crate's: return
//!   `tower::ContextLayer::new().layer(your_service)` (a `ContextService`) from your
//!   `Layer::layer`, so users cannot put the two in the wrong order.
//! - Ask for a version of this crate that Cargo can unify with your users' (`cargo tree -d`
//!   lists every crate linked twice, and who pulls each copy in; `cargo tree -i contextvars`
//!   refuses with "is ambiguous" when there are two): two linked versions have two current
//!   contexts, and a value set through one is not seen through the other.
//! - Keep the `tokio` feature if your code runs in Tokio tasks. With `default-features = false`
//!   your crate still works, but the S21 check exists only when some crate in the build enables
//!   `tokio`: your own tests (`cargo test -p your-crate`) then let a write in a plain
//!   `tokio::spawn` land in the worker's shared context, where your users' builds, with `tokio`
//!   on, panic.
//!
//! ## actix-web and other servers that are not tower
//!
//! `tower::ContextLayer` is a tower layer; actix-web is not tower, and this crate does not
//! depend on it. An actix-web worker is a current-thread runtime that serves each connection
//! in a plain `spawn_local` task of a `LocalSet`, with no context of its own: without a
//! middleware, a handler's `set` is refused (S21), and the panic drops the connection (the
//! client gets no response; the worker goes on serving). `runtime::propagate` does not help
//! there: a `LocalSet` calls no task hooks.
//!
//! Write the middleware yourself: in a `wrap_fn` closure, or in the `call` of your
//! `Transform`'s service (`type Future = Scoped<S::Future>`), return
//! `Scoped::from_call(Context::new(), || { REQUEST_ID.set(id); service.call(request) })`
//! (the id read from the request's headers before). Each request then runs in a context of
//! its own, and the handler, the code it calls and the middleware inside this one can simply
//! `set` (Django-style); a keep-alive connection's next request starts empty again. Register
//! it with the *last* `.wrap` call of the `App` (the outermost), outside every middleware that
//! sets or logs request values: `tracing_actix_web::TracingLogger` logs its error line on its
//! way out, so it goes inside (an earlier `.wrap`). Its span has a field named `request_id` of
//! its own: a variable of that name shown by [`tracing::ContextFields`] puts two `request_id=`
//! on one text line. Then, inside the request:
//!
//! - `actix_web::rt::spawn` is a plain `tokio::task::spawn_local`: the child reads none of the
//!   request's values, and its `set` is refused. Use [`task::spawn_local`], or wrap the future
//!   with `.with_current_context()`.
//! - `web::block(f)` runs `f` in a plain `spawn_blocking` job, likewise: use
//!   `web::block(Context::current().fork().bind(f))` ([`Context::bind`]), or
//!   [`task::spawn_blocking`].
//! - A streamed response (`HttpResponse::Ok().streaming(stream)`) is polled after the
//!   middleware's future has finished, outside the request's context: pass
//!   `Scoped::new(Context::current().fork(), stream)` (feature `futures`). For every body at
//!   once, map the `ServiceResponse`'s body in the middleware onto a `MessageBody` of yours
//!   whose `poll_next` polls the inner body inside [`Context::run`] on the request's context:
//!   take [`Context::current`] in an `async` block inside the `from_call` closure, after
//!   awaiting the inner service's future.
//! - `#[actix_web::test]` with `test::call_service` polls the app in the test's root future,
//!   which is not a task: there a handler's `set` without the middleware is *not* refused, goes
//!   to the test thread's context and is seen by the next call. Test the service as it is
//!   served (`HttpServer` and a real client), or with the middleware in the tested `App`.
//!
//! The same holds for any server whose middleware calls an inner service and returns its
//! future. [`Scoped::from_call`] shows the pattern on a `LocalSet` without actix-web. In poem,
//! which serves each connection in a plain `tokio::spawn` task (without the middleware, a
//! handler's `set` is refused and the client gets no response, or a 500 under `CatchPanic`):
//!
//! - The middleware is the `call` of the `Endpoint` your `Middleware` returns,
//!   `Scoped::from_call(Context::new(), || { REQUEST_ID.set(id); self.inner.call(req) })`,
//!   registered with the last `.with` call (the outermost). In a closure middleware (poem's
//!   `around`), set inside the future and wrap it:
//!   `async move { REQUEST_ID.set(id); ep.call(req).await }.with_context(Context::new())`.
//! - poem's bridge for tower layers (`TowerLayerCompatExt::compat`) hands the layer a
//!   `poem::Request`, not an `http::Request`: `.with(ContextLayer::new().compat())` does not
//!   compile (E0277, `Service<poem::Request>` is not implemented for `ContextService<…>`).
//! - As with axum (see the [`tower`] module): a plain `tokio::spawn` child reads none of the
//!   request's values; an `SSE` or streamed body is polled after the middleware's future, and
//!   `WebSocket::on_upgrade` runs its callback in a task of its own, both outside the
//!   request's context. Take `let ctx = Context::current().fork();` in the handler and pass
//!   `SSE::new(Scoped::new(ctx, stream))` (feature `futures`), or run the callback's future
//!   `.with_context(ctx)`. For every body at once (feature `tower`: `Scoped` is an
//!   `http_body::Body`), in an `Endpoint` inside the one that calls `from_call`, after awaiting
//!   the inner one: `let body: BoxBody = resp.take_body().into();` then
//!   `resp.set_body(Body::from(BoxBody::new(Scoped::new(Context::current(), body))))`, with
//!   `BoxBody` http-body-util's `combinators::BoxBody<Bytes, io::Error>`.
//! - `runtime::propagate` gives poem's connection tasks a context of their own: a handler's
//!   `set` without the middleware is no longer refused, and what one request sets, the next
//!   request on the same keep-alive connection reads. Keep the middleware.
//! - poem's `TestClient` calls the endpoint in the test's own future, as `test::call_service`
//!   does above.
//!
//! In salvo, which also serves each connection in a plain `tokio::spawn` task (without the
//! middleware, a handler's `set` is refused and the client gets no response):
//!
//! - The middleware is a `Handler` registered with the first `Service::hoop` call. A hoop
//!   does not return the inner call's future but awaits `ctrl.call_next(req, depot, res)`, so
//!   its `handle` awaits `Scoped::from_call(Context::new(), || { REQUEST_ID.set(id);
//!   ctrl.call_next(req, depot, res) })` (or `async { … }.with_context(Context::new())`): the
//!   hoops after it and the handler run inside. A `Router`'s hoops run only for a path it
//!   matches (not for a 404), and after the hoops of the routers around it, so put it on the
//!   `Service`.
//! - `ContextLayer::new().compat()` (salvo's `TowerLayerCompat`) compiles but isolates
//!   nothing: salvo runs the hoops and handler after it beside the layer's future, not inside
//!   it, so their `set` is refused and they read none of the request's values.
//! - The `Catcher` runs after every hoop has returned, outside the request's context, and so
//!   does salvo's `Logger` line (a response observer): both read none of the request's
//!   values. For the catcher, keep the context in the `Depot` at the end of the `from_call`
//!   future (`depot.insert_typed(Context::current())`, in an `async` block after awaiting
//!   `call_next`) and run a catcher hoop's `ctrl.call_next(req, depot, res)` with
//!   `.with_context(ctx)`. Log the response from a hoop of yours added after the context hoop.
//!
//! Rocket (0.5) serves each request in a plain `tokio::spawn` task of its own and has no
//! middleware around the handler: a fairing's `on_request` runs before routing, its
//! `on_response` after the handler. Without a context, a `set` in a fairing is refused and the
//! panic ends the connection (over HTTP/2, resets the request's stream): the client gets no
//! response. In a request guard or handler, Rocket turns it into a 500.
//!
//! - Wrap each route's handler: for every `Route` of `routes![…]`,
//!   `route.handler = Box::new(WithContext(route.handler.clone()))`, where the `handle` of your
//!   `#[derive(Clone)] struct WithContext(Box<dyn Handler>)` (Rocket's `Handler` needs
//!   `Clone`) awaits
//!   `Scoped::from_call(Context::new(), || self.0.handle(req, data))`. Request guards and the
//!   handler then `set` in the request's own context (a route that forwards leaves its values
//!   behind: the next route starts empty).
//! - The fairings, the catchers and a streamed body (polled after the handler has returned)
//!   run outside that future and read none of the request's values. To share one context with
//!   them, carry it in `Request::local_cache` as a `Mutex<Context>`: `on_request` builds it
//!   (`ctx.run(|| REQUEST_ID.set(id))`, no bare `set`), the wrapper runs
//!   `Scoped::from_call(ctx.clone(), …)` and stores `Context::current()` back after awaiting
//!   the inner handler, `on_response` logs inside `ctx.run(…)`, and a catcher's `Handler`
//!   wrapped the same way runs in it. Pass a streamed body
//!   `Scoped::new(Context::current().fork(), stream)` (feature `futures`).
//! - Or serve on a runtime built with `runtime::propagate` (needs
//!   `RUSTFLAGS="--cfg tokio_unstable"`; not `#[launch]`, `#[rocket::main]` or
//!   `rocket::execute`, which build their own: `rt.block_on(rocket.launch())`). Each request's task then starts in a fork of
//!   its connection task's context, which nothing writes: a plain `set` in `on_request` is the
//!   request's own, and the guards, the handler, the catchers, `on_response` and a streamed body
//!   all read it, with no wrapper.
//!
//! # Testing
//!
//! Each `#[test]` runs on a thread of its own (libtest starts one per test, with
//! `--test-threads=1` too; nextest, a process per test), and a new thread starts with an empty
//! context: a `set` at the top of a test reaches no other test, whatever the order. Cases run
//! one after another on one thread — a loop, a proptest — share it: what one case sets, the
//! next reads. Run each case in a fresh context, [`Context::run`] or, async,
//! `.with_context(Context::new())`:
//!
//! ```
//! use contextvars::{Context, ContextVar};
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//!
//! fn table(name: &str) -> String {
//!     format!("{}_{name}", TENANT.get_cloned().unwrap_or_else(|| "public".into()))
//! }
//!
//! for (tenant, expected) in [(Some("acme"), "acme_users"), (None, "public_users")] {
//!     let got = Context::new().run(|| {
//!         if let Some(tenant) = tenant {
//!             TENANT.set(tenant.to_owned()); // a bare `set` here: the second case gets acme_users
//!         }
//!         table("users")
//!     });
//!     assert_eq!(got, expected);
//! }
//! ```
//!
//! The body of a `#[tokio::test]` is the root future of `block_on`, not a task: it may `set`
//! (in the test thread's context), and so may a service it calls. A router that lacks
//! [`tower::ContextLayer`], called with `oneshot` in the test body, passes the test: its
//! middleware writes into the test's context, and each request reads what the one before left
//! there. A server calls it from a task, where that write panics (S21). Call it from a plain
//! `tokio::spawn` task in the test too (a [`task::spawn`] child has a context of its own, where
//! the missing layer goes unnoticed as well), and check that nothing reached the test's
//! context. What the test itself sets reaches such a request only on a current-thread runtime
//! (`ContextLayer` forks the context current at `call`): send it in the request, as a client
//! would.
//!
//! ```
//! # #[cfg(feature = "tower")] { // `ContextLayer` needs the `tower` feature
//! use axum::{Router, body::Body, extract::Request, middleware::{self, Next}};
//! use axum::{response::Response, routing::get};
//! use contextvars::{ContextVar, tower::ContextLayer};
//! use tower::ServiceExt;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! async fn request_id(request: Request, next: Next) -> Response {
//!     REQUEST_ID.set(request.uri().path().to_owned());
//!     next.run(request).await
//! }
//! let routes = Router::new()
//!     .route("/{id}", get(|| async { REQUEST_ID.get_cloned().unwrap() }))
//!     .layer(middleware::from_fn(request_id));
//! let req = |path: &str| Request::get(path).body(Body::empty()).unwrap();
//!
//! // In a `#[tokio::test]`:
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // Without the layer: no panic in the test body, and the value stays in the test.
//! routes.clone().oneshot(req("/a")).await.unwrap();
//! assert_eq!(REQUEST_ID.get_cloned().as_deref(), Some("/a"));
//! // From a task, as a server calls it: the S21 panic names `ContextLayer`.
//! assert!(tokio::spawn(routes.clone().oneshot(req("/b"))).await.unwrap_err().is_panic());
//!
//! let app = routes.layer(ContextLayer::new());
//! let response = tokio::spawn(app.oneshot(req("/c"))).await.unwrap().unwrap();
//! let body = axum::body::to_bytes(response.into_body(), 64).await.unwrap();
//! assert_eq!(body, "/c");
//! # });
//! # }
//! ```
//!
//! On a current-thread runtime (`#[tokio::test]`'s default, and the only one `start_paused`
//! allows) a plain `tokio::spawn` task, and a plain `spawn_local` task of a `LocalSet`, run on
//! the test's thread with no context of their own: they *read* the test's values, as a child
//! would, and their writes are refused. On a multi-thread runtime a plain `tokio::spawn` task
//! runs on a worker and reads nothing. A test of code that spawns with plain `tokio::spawn` can
//! pass on one and fail on the other: `#[tokio::test(flavor = "multi_thread")]` spawns as a
//! server does.
//!
//! Log lines: `tracing::subscriber::set_default` and `with_default` cover the calling thread
//! only, so in a multi-thread test what tasks on the workers log goes to the global subscriber
//! (or nowhere). One global subscriber that writes into a buffer gets the lines of all the tests
//! that run at once, interleaved; with [`tracing::ContextFields`] each line carries its
//! request's values, so a test picks its own lines by the request ids it sent (a line logged
//! outside any request carries none).
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
//! With the `tracing` feature, [`tracing::ContextFields`] adds chosen variables to every line a
//! `tracing_subscriber::fmt` subscriber writes — `request_id=req-1` in front of a text line, a
//! top-level `"request_id":"req-1"` member in a JSON line — so a request id set in a middleware
//! appears on every log line of that request, in every task it spawns. Types that are not
//! `Display` are shown through `Debug` or a formatting function of yours. OpenTelemetry log
//! records, spans and metrics get the values another way, shown in the [`tracing`] module.
//!
//! # Compared with the alternatives
//!
//! | | `thread_local!` | `tokio::task_local!` | `opentelemetry::Context` | Python `contextvars` | this crate |
//! |---|---|---|---|---|---|
//! | correct when tasks share a thread | no | yes | if every future is wrapped | yes | yes |
//! | set in place | yes | no (only `scope`) | `attach()` guard, `!Send` | `set` / `reset` | `set` / `reset`, [`set_guarded`](ContextVar::set_guarded) |
//! | inherited by spawned tasks | no | no | no: wrap each future | tasks yes, threads by default no | yes, a copy taken at spawn |
//! | snapshot, run in another context | no | no | `Context::current()` + `attach` | `copy_context()` + `run` | [`copy_context`] + [`Context::run`] |
//! | cost of a copy | — | — | O(1); adding a value copies the map | O(1) (a trie) | O(1); the first two `set`s after it cost O(1) at any size, later ones copy the flat array once (≤ 18 entries) or one trie path each |
//! | keys | one per `static` | one per `static` | one value per Rust type | one per `ContextVar` | one per [`ContextVar`] |
//! | works with no runtime | yes | `sync_scope` only | yes | yes | yes |
//! | per-variable inheritance policy | — | — | — | — | [`Inherit`] |
//! | across processes | — | — | propagators | — | W3C Baggage (`propagation`) |
//!
//! `opentelemetry::Context` is the closest Rust relative: an immutable map keyed by type, made
//! current with a guard that must stay on its thread, and carried into futures by wrapping each
//! one. This crate's `propagation` module uses opentelemetry's Baggage propagator for the wire,
//! so both can live in one service. Figures against each alternative are in
//! [BENCHMARKS.md](https://github.com/contextvars-rs/contextvars/blob/main/BENCHMARKS.md).
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
//! # Porting from Python and asgiref
//!
//! | Python | this crate |
//! |---|---|
//! | `var = ContextVar("name")`, `ContextVar("name", default=3)` | `static VAR: ContextVar<T> = ContextVar::new("name")`, [`ContextVar::with_default`] |
//! | `var.get()` / `var.get(None)` | [`ContextVar::value`] / [`ContextVar::get`] (or [`get_cloned`](ContextVar::get_cloned), [`with`](ContextVar::with)) |
//! | `token = var.set(v)`; `var.reset(token)` | [`ContextVar::set`], [`ContextVar::reset`] |
//! | `with var.set(v):` (3.14) | `let _guard = VAR.set_guarded(v);` ([`SetGuard`]) |
//! | `copy_context()`, `ctx.run(f)`, `ctx[var]` | [`copy_context`], [`Context::run`], [`Context::get`] |
//! | `asyncio.create_task(coro)` | [`task::spawn`] |
//! | `asyncio.create_task(coro, context=ctx)` | `tokio::spawn(fut.with_context(ctx))` ([`FutureExt::with_context`]) |
//! | `asyncio.gather(a(), b())` | `tokio::join!(a().with_current_context(), b().with_current_context())` |
//! | `async with asyncio.TaskGroup() as tg: tg.create_task(c)` | a `JoinSet` of `.with_current_context()` futures, or [`task::spawn`] handles |
//! | `asyncio.to_thread(f)` | [`task::spawn_blocking`] |
//! | `loop.run_in_executor(pool, f)` | `pool.execute(Context::current().fork().bind(f))` ([`Context::bind`]) |
//! | `loop.call_soon(cb, context=ctx)` | `move \|\| ctx.run(cb)` on the same thread; `ctx.bind(cb)`, or [`Context::wrap`] for a callback called many times, to run it as a task of its own (no thread-critical values) |
//! | `threading.Thread(target=f)` | `std::thread::spawn` (starts empty, as in Python) or [`thread::spawn`] (a copy) |
//! | asgiref `sync_to_async(f)` / `@sync_to_async` | [`task::sync_to_async`]`(f).await` |
//! | asgiref `async_to_sync(coro)` / `@async_to_sync` | [`task::async_to_sync`]`(fut)` |
//! | asgiref `Local()`, `Local(thread_critical=True)` | [`Local::new`], [`Local::thread_critical`] |
//! | asgiref `sync_to_async(f, thread_sensitive=True)` (the default): a request's calls share one thread | no switch per call: each call made outside [`task::async_to_sync`] runs on any pool thread. Run the request's async code in one `sync_to_async(\|\| async_to_sync(fut))` (asgiref's `ThreadSensitiveContext`): its calls then run on that one thread ([below](#one-thread-for-a-requests-sync-calls)) |
//!
//! `asyncio.gather` and `TaskGroup` run each coroutine as a task, in a copy of the caller's
//! context. The same with Tokio:
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{ContextVar, FutureExt, task};
//!
//! static USER: ContextVar<String> = ContextVar::new("user");
//!
//! async fn fetch(part: &'static str) -> String {
//!     USER.set(format!("{}:{part}", USER.value())); // stays in this branch, like a task's copy
//!     tokio::task::yield_now().await;
//!     USER.get_cloned().unwrap()
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! USER.set("alice".to_string());
//!
//! // asyncio.gather(fetch("a"), fetch("b"))
//! let (a, b) = tokio::join!(fetch("a").with_current_context(), fetch("b").with_current_context());
//! assert_eq!((a.as_str(), b.as_str()), ("alice:a", "alice:b"));
//!
//! // async with asyncio.TaskGroup() as tg: tg.create_task(fetch("c")); ...
//! let mut group = tokio::task::JoinSet::new();
//! group.spawn(fetch("c").with_current_context());
//! group.spawn(fetch("d").with_current_context());
//! let mut all = group.join_all().await;
//! all.sort();
//! assert_eq!(all, ["alice:c", "alice:d"]);
//!
//! // asyncio.create_task(fetch("e")), and create_task(..., context=ctx)
//! let e = task::spawn(fetch("e"));
//! let ctx = contextvars::Context::new().with_value(&USER, "bob".to_string());
//! let f = tokio::spawn(fetch("f").with_context(ctx));
//! assert_eq!(e.await.unwrap(), "alice:e");
//! assert_eq!(f.await.unwrap(), "bob:f");
//!
//! assert_eq!(*USER.value(), "alice"); // no branch wrote into the caller
//! # });
//! # }
//! ```
//!
//! Executors and callbacks: Python's `run_in_executor` does *not* copy the context (only
//! `asyncio.to_thread` does); here a job carries the context you bind to it, and a callback
//! given `context=` runs in it:
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{Context, ContextVar, task};
//!
//! static TRACE: ContextVar<&'static str> = ContextVar::new("trace");
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! TRACE.set("t-1");
//!
//! // asyncio.to_thread(f)
//! let seen = task::spawn_blocking(|| TRACE.get_cloned()).await.unwrap();
//! assert_eq!(seen, Some("t-1"));
//!
//! // loop.run_in_executor(pool, f), with the context carried explicitly
//! let job = Context::current().fork().bind(|| TRACE.get_cloned());
//! let seen = std::thread::spawn(job).join().unwrap();
//! assert_eq!(seen, Some("t-1"));
//!
//! // loop.call_soon(cb, context=ctx): a callback that runs in ctx, each call in its own fork
//! let ctx = Context::new().with_value(&TRACE, "t-2");
//! let callback = ctx.wrap(|n: u32| format!("{}#{n}", TRACE.value()));
//! assert_eq!(callback(1), "t-2#1");
//! assert_eq!(callback(2), "t-2#2");
//! # });
//! # }
//! ```
//!
//! asgiref's decorators wrap a function; in Rust, wrap the call. What the other side sets comes
//! back, as in asgiref:
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{ContextVar, Local, task};
//!
//! static REQUEST: Local = Local::new();           // asgiref.local.Local()
//! static USER: ContextVar<String> = ContextVar::new("user");
//!
//! // @sync_to_async
//! // def load_user(): ...
//! async fn load_user() -> usize {
//!     task::sync_to_async(|| {
//!         USER.set("alice".to_string());           // the ORM call, in a blocking thread
//!         REQUEST.set("queries", 1usize);
//!         *REQUEST.get::<usize>("queries").unwrap()
//!     })
//!     .await
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! assert_eq!(load_user().await, 1);
//! assert_eq!(*USER.value(), "alice");             // written back, like asgiref
//! assert_eq!(*REQUEST.get::<usize>("queries").unwrap(), 1);
//! # });
//!
//! // async_to_sync(coro)() from plain sync code
//! let user = task::async_to_sync(async {
//!     USER.set("bob".to_string());
//!     tokio::task::yield_now().await;
//!     USER.get_cloned()
//! });
//! assert_eq!(user.as_deref(), Some("bob"));
//! assert_eq!(*USER.value(), "bob");
//! # }
//! ```
//!
//! ## One thread for a request's sync calls
//!
//! Django's ORM keeps its connection per thread, and asgiref runs all thread-sensitive
//! `sync_to_async` calls of a request on one thread. Here each [`task::sync_to_async`] call on
//! the blocking pool is a task of its own, on whichever pool thread is free, and starts without
//! the thread-critical values an earlier call set. To get asgiref's behaviour, drive the
//! request's async code from one pool thread with `async_to_sync`: every `sync_to_async` it
//! awaits then runs on that thread (S17), as asgiref's `ThreadSensitiveContext` does:
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{Local, task};
//!
//! static CONNECTION: Local = Local::thread_critical(); // the ORM's per-thread connection
//!
//! async fn view() -> bool {
//!     let first = task::sync_to_async(|| {
//!         CONNECTION.set("conn", "opened by the first query");
//!         std::thread::current().id()
//!     })
//!     .await;
//!     let (second, reused) =
//!         task::sync_to_async(|| (std::thread::current().id(), CONNECTION.contains("conn"))).await;
//!     first == second && reused
//! }
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! // In a handler: one pool thread for the whole view, like ThreadSensitiveContext.
//! let shared = task::sync_to_async(|| task::async_to_sync(view())).await;
//! assert!(shared);
//! # });
//! # }
//! ```
//!
//! The view holds that pool thread until it ends, as asgiref's thread does (Tokio's pool grows
//! to 512 threads by default). While a `sync_to_async` call runs there, the view's other futures
//! wait; tasks it spawns run on the runtime, not on that thread, and a `sync_to_async` awaited
//! in one of them goes to the pool.
//!
//! Two more differences a port meets. Values set before the server starts, in `main` or
//! `#[tokio::main]` before `axum::serve`, do not reliably reach requests: Python's
//! `asyncio.run` copies the main thread's context into every task, but a server's connection
//! tasks are plain `tokio::spawn`s (S13), which on a multi-thread runtime run in their worker
//! thread's empty context (the [`tower`] module docs give every case). Keep
//! process-wide settings in statics or [`ContextVar::with_default`], or build the runtime with
//! `runtime::propagate` (S24). And asgiref (3.13) hides a `Local`'s attributes from a thread
//! that only inherits a copy of the context (`asyncio.to_thread`, an executor job run with
//! `ctx.run`); here every fork carries them (S18): [`task::spawn_blocking`], [`thread::spawn`]
//! and [`Context::wrap`] jobs see them.
//!
//! What does not carry over: a Python `ContextVar` can be created anywhere and compared by
//! identity; here declare them as `static`s (one created at run time works too, S1). Python
//! collects reference cycles; here a value that holds a context it is bound in is never dropped
//! (S26).
//!
//! # Porting from task_local
//!
//! ```
//! # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
//! use contextvars::{ContextVar, task};
//!
//! // tokio::task_local! { static REQUEST_ID: String; }
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // REQUEST_ID.scope(id, fut).await — the same call
//! let len = REQUEST_ID
//!     .scope("req-1".to_string(), async {
//!         // REQUEST_ID.with(|id| ..) — here the closure gets an Option<&String>
//!         let len = REQUEST_ID.with(|id| id.map_or(0, String::len));
//!         // REQUEST_ID.get() (T: Clone, panics when unset) — `get_cloned()` returns an Option
//!         assert_eq!(REQUEST_ID.get_cloned().as_deref(), Some("req-1"));
//!         // tokio::spawn does not carry a task-local; task::spawn carries a copy
//!         let child = task::spawn(async { REQUEST_ID.get_cloned() });
//!         assert_eq!(child.await.unwrap().as_deref(), Some("req-1"));
//!         len
//!     })
//!     .await;
//! assert_eq!(len, 5);
//!
//! // REQUEST_ID.sync_scope(v, f) — the same call
//! REQUEST_ID.sync_scope("req-2".to_string(), || assert_eq!(*REQUEST_ID.value(), "req-2"));
//! # });
//! # }
//! ```
//!
//! Beyond `task_local!`: `set` works anywhere inside a task that has a context of its own
//! (`task::spawn`, `.with_current_context()`, `tower::ContextLayer`, `runtime::propagate`: see
//! [isolation by default](#isolation-by-default)), and `try_with` becomes
//! [`with`](ContextVar::with) or [`get`](ContextVar::get): a missing value is `None`, never an
//! error. Like `task_local!`'s `scope`, a [`Scoped`] enters its context on every poll.
//!
//! One difference: a `scope` takes its copy of the current context when it is *called*, not
//! when it is first polled (S14), and a [`Scoped`] makes its whole context current, so nested
//! scopes written as arguments do not compose as `task_local!`'s do. In
//! `A.scope(a, B.scope(b, fut))`, Rust builds `B.scope(b, fut)` first, from a context without
//! `a`, and `fut` sees `B` but not `A`. Nest through an `async` block, so that the inner scope
//! is made inside the outer one:
//!
//! ```
//! use contextvars::ContextVar;
//!
//! static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
//! static REQUEST_ID: ContextVar<&'static str> = ContextVar::new("request_id");
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let read = || (TENANT.get().map(|v| *v), REQUEST_ID.get().map(|v| *v));
//!
//! // task_local!'s shape: the inner scope is made before TENANT is set, so TENANT is lost.
//! let lost = TENANT.scope("acme", REQUEST_ID.scope("req-1", async { read() })).await;
//! assert_eq!(lost, (None, Some("req-1")));
//!
//! // Made inside the outer scope: both are there.
//! let both = TENANT.scope("acme", async { REQUEST_ID.scope("req-1", async { read() }).await }).await;
//! assert_eq!(both, (Some("acme"), Some("req-1")));
//! # });
//! ```
//!
//! The same goes for a [`.with_current_context()`](FutureExt::with_current_context) or a
//! `Context::current().scope(..)` written in the arguments of a `scope`: it copies the context
//! current where it is written, before the outer scope runs.
//!
//! # Cargo features
//!
//! The core — [`ContextVar`], [`Context`], [`Scoped`], [`Local`], [`thread`] — needs no runtime
//! and depends only on `imbl` (the persistent map) and `pin-project-lite`.
//!
//! | feature | adds | dependencies |
//! |---|---|---|
//! | `tokio` (default) | the [`task`] module: `spawn`, `spawn_local`, `spawn_blocking`, `sync_to_async`, `async_to_sync`; and the S21 check, which needs Tokio to tell a task apart | `tokio` (`rt`, `sync`) |
//! | `futures` | `Stream` and `Sink` for [`Scoped`] (each `poll_next` / `poll_*` inside its context) | `futures-core`, `futures-sink` |
//! | `tracing` | the [`tracing`] module: [`tracing::ContextFields`] for `tracing_subscriber::fmt`, text and JSON; and reports of skipped baggage members | `tracing`, `tracing-subscriber` (`fmt`, `std`, `registry`; enable its `json` feature yourself for JSON lines) |
//! | `tower` | the [`tower`] module: [`tower::ContextLayer`], a context per request for axum, tonic and hyper; turns on `tokio`, for the S21 check | `tower-layer`, `tower-service`, `http`, `http-body` (`Body` for [`Scoped`]) |
//! | `opentelemetry` | the [`propagation`] module: [`propagation::Baggage`], chosen vars across processes as W3C Baggage; [`propagation::Baggage::propagator`] for opentelemetry's composite propagator; with `tower` also [`tower::PropagateLayer`] and [`tower::ContextLayer::extract`] | `opentelemetry` and `opentelemetry_sdk` 0.33 (its `BaggagePropagator`), `percent-encoding`, `http` |
//!
//! With `RUSTFLAGS="--cfg tokio_unstable"` (and the `tokio` feature) the `runtime` module also
//! exists: [`runtime::propagate`] gives every task of a runtime a context of its own through
//! Tokio's unstable task hooks (S24). It adds no dependency; it needs the flag because Tokio's
//! hooks do.
//!
//! # MSRV and semver policy
//!
//! The minimum supported Rust version is **1.85** (edition 2024, `rust-version` in
//! `Cargo.toml`; CI checks the crate with it, with all features and with none, and with
//! `--cfg tokio_unstable`); raising it is done only in a release that bumps the version's first
//! non-zero number (0.1 → 0.2), like any breaking change. The semantics below are part of the
//! API: a change to a numbered rule is a breaking change.
//!
//! opentelemetry's `Injector` and `Extractor` traits appear in [`propagation::Baggage`]'s
//! signatures, so they are public API of this crate: the `opentelemetry` feature follows
//! opentelemetry's releases (today its 0.33 line), and moving to a new opentelemetry line is a
//! breaking release of this crate. So is moving to a new line of the other crates whose types
//! or traits appear in the API: tokio 1 (`JoinHandle`, the runtime `Builder`), http 1 and
//! http-body 1, tower-layer and tower-service 0.3, futures-core and futures-sink 0.3,
//! tracing-subscriber 0.3 (`FormatEvent`).
//!
//! # How it works inside
//!
//! - **The map.** A [`Context`] is an `Arc` around a persistent map from variable id to binding
//!   (the value as an `Arc<dyn Any + Send + Sync>`, plus the variable's [`Inherit`] policy). Up to
//!   16 bindings it is a flat array, scanned linearly, changed in place when not shared; beyond 16
//!   it is a hash array mapped trie (`imbl`) whose writes copy only the path to the changed entry.
//!   A write to a map of six or more bindings that a copy shares adds a small *layer* of changes
//!   over it instead of copying it (`copy_context(); set` costs the same at 10 or 10,000 bindings);
//!   a third change flattens the layer: over a trie, by writing its changes into a copy of the trie
//!   that shares its nodes (a path each), over an array by copying it. Copying a context clones one
//!   `Arc`. When a context goes that alone holds an array of the first capacity (room for 4
//!   bindings), its bindings are dropped and the array is kept (up to 8 per thread) for the
//!   thread's next new context: a request's context allocates only its values.
//! - **Ids.** Each [`ContextVar`] takes an id from a global counter on first use (never reused,
//!   S1); each context has an id that tokens check (S5), taken on its first `set` from a block
//!   of ids its thread reserves 1,024 at a time, so that threads do not contend on a counter.
//! - **The current context.** A thread-local holds a pointer to the context entered on the
//!   thread ([`Context::run`], a [`Scoped`] poll, a bridge job), or none, when the thread's own
//!   context is current. Entering stores the pointer and a guard puts the previous one back when
//!   it drops, on return and on panic (S9, S11): one guard type, for `run`, `Scoped`, the bridges
//!   and the runtime hooks. The context itself stays where its owner keeps it, and writes change
//!   it in place. This is the crate's one module with `unsafe` code; its invariants are written
//!   down in it and checked by Miri in CI.
//! - **Reads.** Each thread caches its last lookups of a few variables, valid until the current
//!   context next changes (an enter, a leave or a write), as CPython caches per variable; a
//!   `set` caches the value it binds, so a read after it hits. A
//!   reader that runs user code ([`ContextVar::with`]) may see that code `set` the very
//!   variable it reads: the write then keeps a copy of the old map until the read ends.
//! - **The S21 check.** Only a write with no context entered on the thread asks Tokio whether it
//!   runs inside a task (`tokio::task::try_id()`); inside any entered context it costs nothing.
//! - **Costs** (2-core CI machine, rough orders): a read is 2–4 ns, about a `task_local!`
//!   read; a copy is ~4 ns at any size; entering a context ~1.5 ns, about a `thread_local!`
//!   swap, and a [`Scoped`] poll under 1 ns; a `set` allocates its `Arc` and, with its
//!   `reset`, costs ~36 ns, ~50 ns with a copy alive from 10 variables up (~80 ns at 1, where
//!   the whole array is copied); a new context with its first `set` and its drop ~44 ns
//!   (in a request, the `set` alone ~32 ns); a `task::spawn` ~20–35 ns over `tokio::spawn`;
//!   [`tower::ContextLayer`] ~30 ns per request. Every figure, with its command and its
//!   baseline (`thread_local!`, `task_local!`, `opentelemetry::Context`), is in
//!   [BENCHMARKS.md](https://github.com/contextvars-rs/contextvars/blob/main/BENCHMARKS.md).
//!
//! # Semantics
//!
//! The numbered rules below are the contract the tests check; item docs and tests cite them as
//! (S1)…(S26).
//!
//! - <a id="s1"></a>**S1 — identity.** Each [`ContextVar`] is a distinct key, even with the same
//!   name and type as another. Declare variables as `static`s; one created at run time also works
//!   and is never confused with another, because ids are never reused. Equality and hashing of
//!   [`ContextVar`] and [`VarKey`] are by identity.
//! - <a id="s2"></a>**S2 — reading.** [`ContextVar::get`] returns the value in the current context;
//!   else the variable's default ([`ContextVar::with_default`]), created once on first use and
//!   shared like a Python default object; else `None`. [`get_cloned`](ContextVar::get_cloned) and
//!   [`value`](ContextVar::value) read the same value.
//! - <a id="s3"></a>**S3 — borrowing.** [`ContextVar::with`] gives its closure a borrow of the value
//!   `get` would return, with no `Arc` clone. The closure may call any API of the crate (`set`,
//!   `run`, …) without panic or deadlock, and keeps seeing the value it was given.
//! - <a id="s4"></a>**S4 — writing.** [`ContextVar::set`] (and [`set_arc`](ContextVar::set_arc),
//!   [`set_guarded`](ContextVar::set_guarded)) changes the current context only; every earlier copy
//!   keeps its value. It returns a [`Token`] holding the previous value (`None` if the variable
//!   was not set; a default does not count as set).
//! - <a id="s5"></a>**S5 — resetting.** [`ContextVar::reset`] restores the value the token
//!   recorded — removes the variable if it was not set — whatever was set in between. It consumes
//!   the token, so a token cannot be used twice (Python's `RuntimeError` becomes a compile error).
//!   [`ResetError::WrongVar`]: the token came from another variable. [`ResetError::WrongContext`]:
//!   it was made in another context than the current one, and a copy (`clone`, [`copy_context`],
//!   [`Context::fork`]) counts as another context. When both are wrong, `WrongVar` wins (Python's
//!   order). A failed reset drops the token and changes nothing; so does a [`SetGuard`] dropped in
//!   another context.
//! - <a id="s6"></a>**S6 — threads start empty.** Each OS thread starts with an empty context,
//!   except threads started by [`thread::spawn`].
//! - <a id="s7"></a>**S7 — copies.** [`Context::current`] / [`copy_context`] is O(1) and shallow:
//!   later `set`s on either side are not seen by the other.
//! - <a id="s8"></a>**S8 — shallow.** Values are shared `Arc`s: a value with interior mutability
//!   mutated through one context is seen through every copy — the pitfall Python users meet with a
//!   mutable default. See [the shallow-copy pitfall](#the-shallow-copy-pitfall), and
//!   [`Inherit::Fork`] for the per-variable fix.
//! - <a id="s9"></a>**S9 — running in a context.** [`Context::run`] runs its closure with that
//!   context current; what the closure sets stays in the context afterwards, and the previous
//!   current context is back after `run` — also when the closure panics, and then the context
//!   keeps what was set before the panic (as in Python). `run` takes `&mut self`, so entering one
//!   context twice at once does not compile (Python's `RuntimeError`).
//! - <a id="s10"></a>**S10 — a context's own bindings.** [`Context::get`], [`Context::contains`],
//!   [`Context::len`] and [`Context::iter`] see only values set in that context, never defaults.
//! - <a id="s11"></a>**S11 — nesting.** Nested [`Context::run`]s and nested [`Scoped`] polls
//!   restore correctly, in LIFO order.
//! - <a id="s12"></a>**S12 — futures.** A [`Scoped`] makes its context current for every poll of
//!   the inner future and for its drop; what the future sets stays in the `Scoped`'s context across
//!   `.await`s and is invisible to other tasks, even on a multi-thread runtime with work stealing.
//!   [`FutureExt::with_context`] and [`FutureExt::with_current_context`] make one.
//! - <a id="s13"></a>**S13 — unwrapped futures.** A future that is not inside a [`Scoped`] runs in
//!   whatever context its thread has. [`task::spawn`], [`FutureExt::with_current_context`],
//!   [`tower::ContextLayer`] and [`runtime::propagate`] give it its own. In a Tokio task,
//!   writes there are refused (S21), so nothing is shared silently; on other executors they are
//!   not, unless the thread called [`thread::refuse_own_context_writes`]
//!   ([other executors](#smol-async-executor-and-other-executors)).
//! - <a id="s14"></a>**S14 — scopes.** [`ContextVar::scope`] and [`ContextVar::sync_scope`] run with a
//!   copy of the current context, taken at the call, in which the variable is set; nothing leaks
//!   out afterwards.
//! - <a id="s15"></a>**S15 — spawning.** [`task::spawn`], [`task::spawn_local`],
//!   [`task::spawn_blocking`] and [`thread::spawn`] take the fork at the call, like
//!   `asyncio.create_task`: later changes in the parent are not seen by the child, and the child's
//!   are not seen by the parent.
//! - <a id="s16"></a>**S16 — `sync_to_async`.** [`task::sync_to_async`] runs its closure on the
//!   blocking pool in a fork of the caller's context. When it returns, the caller's context
//!   receives exactly the bindings that differ (by `Arc` identity) between that fork and the
//!   closure's context at the end — set, changed or removed — as if the closure had run inline
//!   (asgiref's copy-in/copy-out). What the fork itself changed by policy (S20) is not written
//!   back, and bindings the closure did not touch stay as the caller has them. If the closure
//!   panics, what it set before the panic is written back too, then the panic resumes in the
//!   caller. The pool thread is never left with a dirty context.
//! - <a id="s17"></a>**S17 — `async_to_sync`.** [`task::async_to_sync`] runs a future to completion
//!   from sync code, in a fork of the thread's current context (S20's policies apply) — on the
//!   runtime of the enclosing `sync_to_async` or `spawn_blocking` if any, else on a private runtime
//!   kept per thread — and its changes come back as in S16. It works wherever Tokio allows
//!   blocking: a plain thread, a thread that only entered a runtime, inside `block_in_place`, a
//!   blocking job of this crate. Where blocking is not allowed (directly inside a task's poll or a
//!   `block_on`) it panics with a message naming `async_to_sync`, never deadlocks. Nested bridges
//!   never deadlock, however small the blocking pool: sync code reached through `async_to_sync` →
//!   `sync_to_async` runs on the thread already blocked in `async_to_sync` (asgiref's
//!   thread-sensitive rule). This holds for `sync_to_async` awaited by the driven future; in
//!   tasks it spawns it holds only on the private runtime, which polls them on that thread (on a
//!   runtime with workers they run on the pool; see [`task::sync_to_async`]). Tasks the future
//!   leaves running on the private runtime pause until the thread's next call drives it (asgiref
//!   cancels them). If the closure (S16) or the future panics and the write-back would be
//!   refused (S21), the write-back is dropped and their own panic resumes.
//! - <a id="s18"></a>**S18 — `Local`.** A [`Local`] keeps its attributes in the current context as
//!   one copy-on-write map (one hidden variable per `Local`): each task sees its own; children see
//!   the parent's attributes at fork time; `set` or `remove` in a child never changes the parent;
//!   the bridges (S16, S17) carry them both ways, attribute by attribute, so attributes the other
//!   side did not touch stay as the caller has them. Values are not tied to an OS thread, since
//!   Tokio moves tasks between threads. All methods are thread-safe; `get` of a missing name or of
//!   the wrong type is a [`LocalError`].
//! - <a id="s19"></a>**S19 — thread-critical `Local`.** Values of a [`Local::thread_critical`] are
//!   never carried by a fork, a bridge or [`thread::spawn`]. In plain code they belong to the
//!   thread (any context entered on it with `run` sees them); inside a [`Scoped`] poll they belong
//!   to that task, and move with it. The task is the outermost `Scoped` on the thread (a future
//!   spawned with `tokio::spawn(fut.with_current_context())`) — a `scope` or a `join!` branch
//!   inside it shares the task's values — and each task of [`task::spawn`] or
//!   [`task::spawn_local`] (even when its executor is driven inside another task: a runtime in
//!   `block_in_place`, a `LocalSet` in a `Scoped`), each request of `tower::ContextLayer` and
//!   each [`Scoped::from_call`] (its `call` included), each future `async_to_sync` drives, each
//!   blocking job, each call of [`Context::wrap`] and each closure of [`Context::bind`] (so each
//!   thread of [`thread::spawn`]) is a task of its own. A thread-critical write inside a Tokio
//!   task with no task of its own is refused (S21), also inside `run`, which gives no storage
//!   of its own.
//! - <a id="s20"></a>**S20 — forking.** [`Context::fork`] is `clone` plus each variable's
//!   [`Inherit`] policy: [`Inherit::Share`] keeps the `Arc`, [`Inherit::Fork`] stores a new value
//!   computed from the old, [`Inherit::None`] drops it. With no such variables a fork costs what a
//!   clone costs. Policies apply to bound values only: a default is never bound (S10), so it stays
//!   one shared object (S2) — bind a fresh value, or bind before spawning with `Inherit::Fork`.
//! - <a id="s21"></a>**S21 — no silent sharing.** A write ([`ContextVar::set`],
//!   [`set_arc`](ContextVar::set_arc), [`set_guarded`](ContextVar::set_guarded),
//!   [`reset`](ContextVar::reset), [`Local::set`], [`Local::remove`]) inside a Tokio task while no
//!   context is entered on the thread — the task is not inside a [`Scoped`], a `run`, a
//!   `sync_scope`, or a runtime with [`runtime::propagate`] — would land in the worker thread's
//!   context, which every unwrapped task on that thread shares. It panics instead, with a message
//!   that names the call and the fixes. The root future of `block_on` / `#[tokio::main]` is not a
//!   task: writes there are allowed, as in plain code. Reads are never refused. The rule covers
//!   thread-critical `Local`s, plain `tokio::task::spawn_blocking` closures, and a bridge's
//!   write-back into an unwrapped task; a `reset` there panics before any token check. The
//!   check needs the `tokio` feature (on by default): in a build where no crate enables it,
//!   nothing is refused; and it sees only Tokio tasks: on smol, async-executor or
//!   `futures::executor` nothing is refused, in any build, except on a thread that called
//!   [`thread::refuse_own_context_writes`], where every write with no context entered is. See
//!   [isolation by default](#isolation-by-default) and
//!   [other executors](#smol-async-executor-and-other-executors).
//! - <a id="s22"></a>**S22 — one context per request.** Behind [`tower::ContextLayer`], each
//!   request's `call` and its whole response future run in their own fork of the context current
//!   at `call`, as a task of its own (S19): what the handler and the middleware below the layer
//!   `set` stays in that request and never reaches another, and children spawned with
//!   [`task::spawn`] inherit it. A response body that the server polls after the response
//!   future has finished (a stream) runs outside it: `Scoped::new(Context::current().fork(),
//!   stream)` (feature `futures`) gives the stream a fork of the request's context. The service
//!   is `Clone` when the inner one is, and adds no boxing (its future is a [`Scoped`]).
//! - <a id="s23"></a>**S23 — callbacks and pools.** [`Context::wrap`] makes an `Fn` that runs each
//!   call in its own fork of the captured context, as if each call were a task: what one call sets
//!   is seen by no other call, by the caller, or by the pool thread afterwards; thread-critical
//!   values (S19) too, which start empty in each call. [`Context::bind`] does the same for an
//!   `FnOnce`, in the context it is given (no fork). `JoinSet`, `join!`, `select!`,
//!   `join_all` and `FuturesUnordered` get one context per future with `.with_current_context()`
//!   on each (examples: [`JoinSet`](#joinset),
//!   [`join!`](#join-and-select-asynciogather-and-its-kin),
//!   [`join_all`](#join_all-and-futuresunordered)).
//! - <a id="s24"></a>**S24 — a whole runtime.** With [`runtime::propagate`] (`--cfg
//!   tokio_unstable`), tasks spawned by any code on that runtime get a fork of the spawner's context
//!   taken at the spawn call, their own context on every poll and for their drop, and leave
//!   nothing on the worker; `block_on`'s root future keeps the calling thread's context. A task
//!   is not a request: the requests of one HTTP/1 connection share its task, so a server still
//!   needs `ContextLayer`. What Tokio's hooks do not report is not covered: plain
//!   `spawn_blocking` jobs (they start empty and their writes are refused by S21;
//!   [`task::spawn_blocking`] forks as usual), tasks in a `LocalSet`, and futures Tokio drops at
//!   runtime shutdown outside the poll hooks. A task whose next poll starts on another worker
//!   before the previous poll's after-hook ran is handed over without a race.
//! - <a id="s25"></a>**S25 — across processes.** [`propagation::Baggage`] carries chosen variables
//!   between processes as W3C Baggage members, written and read by opentelemetry's
//!   `BaggagePropagator`. The crate percent-encodes each value itself, so any string round-trips
//!   exactly except leading and trailing whitespace, which the format trims. Writing into
//!   `http::HeaderMap`s (`inject_headers`, [`tower::PropagateLayer`]) keeps members that are not
//!   ours and replaces stale ones of ours; `inject` into an opentelemetry `Injector` writes only
//!   ours. Opentelemetry's limits apply (8,192 bytes, 64 members): an oversized header is cut at
//!   member boundaries, never mid-value. Bad input — a malformed header, a bad escape, invalid
//!   UTF-8, a value that does not parse with `FromStr` — is skipped member by member (a skipped
//!   member of ours is reported through `tracing` with that feature): never a panic, never a
//!   garbled value. Only the variables named in the `Baggage` are read: the list is the trust
//!   boundary. Our members go out in the order they were named, after the members kept.
//!   [`tower::ContextLayer::extract`] seeds each request's context from its headers.
//! - <a id="s26"></a>**S26 — cycles.** A value that holds a [`Context`] in which it is itself bound
//!   is an `Arc` cycle and is never dropped (Python's garbage collector would collect it). Hold a
//!   `Weak` instead, or take the value out before the context goes.
//!
//! [`contextvars`]: https://docs.python.org/3/library/contextvars.html
// The guide links to items that exist only with some features; without them, these link
// definitions point to the "Cargo features" section, so the docs build in every configuration.
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`task`]: #cargo-features\n[`task::spawn`]: #cargo-features\n\
           [`task::spawn_local`]: #cargo-features\n[`task::spawn_blocking`]: #cargo-features\n\
           [`task::sync_to_async`]: #cargo-features\n[`task::async_to_sync`]: #cargo-features"
)]
#![cfg_attr(
    not(feature = "tracing"),
    doc = "[`tracing`]: #cargo-features\n[`tracing::ContextFields`]: #cargo-features"
)]
#![cfg_attr(
    not(feature = "tower"),
    doc = "[`tower`]: #cargo-features\n[`tower::ContextLayer`]: #cargo-features"
)]
#![cfg_attr(
    not(feature = "opentelemetry"),
    doc = "[`propagation`]: #cargo-features\n[`propagation::Baggage`]: #cargo-features\n\
           [`propagation::Baggage::propagator`]: #cargo-features"
)]
#![cfg_attr(
    not(all(feature = "tower", feature = "opentelemetry")),
    doc = "[`tower::PropagateLayer`]: #cargo-features\n\
           [`tower::ContextLayer::extract`]: #cargo-features"
)]
#![cfg_attr(
    not(all(tokio_unstable, feature = "tokio")),
    doc = "[`runtime::propagate`]: #cargo-features"
)]
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod context;
#[allow(unsafe_code)] // the crate's only `unsafe`: see the module's invariants
mod current;
mod error;
mod guard;
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
pub use guard::SetGuard;
pub use local::Local;
pub use scoped::{FutureExt, Scoped};
pub use var::{ContextVar, Inherit, Token, VarKey};

/// A result of these calls that is dropped is a bug (the context they return is their only
/// effect), so each is `#[must_use]`; every block below must fail to compile. (The closures of
/// `bind` and `wrap` are `impl Fn*`, which the compiler already warns about.)
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// static V: contextvars::ContextVar<u32> = contextvars::ContextVar::new("v");
/// contextvars::Context::new().with_value(&V, 1);
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// contextvars::Context::new().fork();
/// ```
#[cfg(doctest)]
struct MustUse;

/// As [`MustUse`], for [`propagation::Baggage`]'s extracts.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// contextvars::propagation::Baggage::new().extract_headers(&http::HeaderMap::new());
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let carrier = std::collections::HashMap::<String, String>::new();
/// contextvars::propagation::Baggage::new().extract(&carrier);
/// ```
#[cfg(all(doctest, feature = "opentelemetry"))]
struct MustUseBaggage;
