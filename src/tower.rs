//! A context of its own for every request of a tower service: axum, tonic, hyper (S22).
//!
//! [`ContextLayer`] wraps a service so that each request runs in its own fork of the context
//! that is current when the request arrives. The inner service's `call` and every poll of its
//! response future run in that context, so the middleware and handlers below the layer can
//! `set` variables Django-style — a plain [`set`](crate::ContextVar::set), no `scope` — and
//! nothing they set reaches another request or the server. Tasks spawned with
//! [`task::spawn`] inherit the request's values.
//!
//! ```
//! use axum::Router;
//! use axum::extract::Request;
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//! use axum::routing::get;
//! use contextvars::ContextVar;
//! use contextvars::tower::ContextLayer;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! /// Middleware: the request's id, set for the rest of the request.
//! async fn request_id(request: Request, next: Next) -> Response {
//!     let id = request
//!         .headers()
//!         .get("x-request-id")
//!         .and_then(|value| value.to_str().ok())
//!         .unwrap_or("-")
//!         .to_owned();
//!     REQUEST_ID.set(id); // lands in this request's own context
//!     next.run(request).await
//! }
//!
//! async fn handler() -> String {
//!     tokio::task::yield_now().await; // other requests run here meanwhile
//!     let audit = contextvars::task::spawn(async { REQUEST_ID.get() }); // inherits the id
//!     format!("served {}", audit.await.unwrap().unwrap())
//! }
//!
//! let app = Router::new().route("/", get(handler)).layer(
//!     tower::ServiceBuilder::new()
//!         .layer(ContextLayer::new()) // first, so outermost: it runs before `request_id`
//!         .layer(middleware::from_fn(request_id)),
//! );
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // Serve it with `axum::serve(listener, app).await`; here, one request without a network:
//! use tower::ServiceExt;
//! let request = Request::builder()
//!     .header("x-request-id", "req-1")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//! assert_eq!(body, "served req-1");
//! assert!(REQUEST_ID.get().is_none()); // nothing reached the caller
//! # });
//! ```
//!
//! Called like this, in a test's body (the root future, not a task), a router without the layer
//! passes too: its writes go to the test's context. See [testing](crate#testing).
//!
//! # Where the layer goes
//!
//! Outside every middleware that sets a variable. With tower's `ServiceBuilder`, as above, the
//! *first* layer is the outer one; with axum's `.layer(a).layer(b)`, `b` is the outer one.
//!
//! Put it first, outside tower-http's layers too: a layer outside it runs outside the
//! request's context, so what it logs carries none of the request's values — `TraceLayer`'s
//! `on_response` and `on_failure` lines, and what `CatchPanicLayer`'s handler logs. Layers
//! inside it see what a middleware set once that middleware has run: for
//! `TraceLayer`'s `on_request` line to carry a request id too, put the middleware that sets it
//! above `TraceLayer` (after `SetRequestIdLayer`, if that makes the id). `TraceLayer`'s
//! `on_body_chunk` and `on_eos` run as the server polls the body, outside the request's context
//! (see [streamed bodies](#streamed-bodies)).
//!
//! `SetRequestIdLayer` keeps the client's `x-request-id` or makes one, and puts it in the
//! request's header and a `RequestId` extension; a middleware *below* it copies it into a
//! variable (above it, there is no extension yet, and the header only when the client sent one):
//!
//! ```
//! use axum::extract::Request;
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//! use axum::routing::get;
//! use contextvars::ContextVar;
//! use contextvars::tower::ContextLayer;
//! use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer};
//! use tower_http::request_id::{RequestId, SetRequestIdLayer};
//! use tower_http::trace::TraceLayer;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//! # static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
//!
//! async fn copy_request_id(request: Request, next: Next) -> Response {
//!     if let Some(id) = request.extensions().get::<RequestId>() {
//!         REQUEST_ID.set(id.header_value().to_str().unwrap_or("-").to_owned());
//!     }
//!     next.run(request).await
//! }
//!
//! let trace = TraceLayer::new_for_http().on_response(
//!     |_: &Response<_>, _: std::time::Duration, _: &tracing::Span| {
//!         // a `tracing::info!` here carries the id (ContextFields)
//!         # LOGGED.lock().unwrap().push(REQUEST_ID.get_cloned().unwrap_or_default());
//!     },
//! );
//! let app = axum::Router::new()
//!     .route("/", get(|| async { REQUEST_ID.get_cloned().unwrap_or_default() }))
//!     .layer(
//!         tower::ServiceBuilder::new()
//!             .layer(ContextLayer::new())
//!             .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
//!             .layer(middleware::from_fn(copy_request_id)) // below SetRequestIdLayer
//!             .layer(trace) // its callbacks read the id
//!             .layer(PropagateRequestIdLayer::x_request_id()),
//!     );
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! # use tower::ServiceExt;
//! let response = app.oneshot(Request::new(axum::body::Body::empty())).await.unwrap();
//! let made = response.headers()["x-request-id"].to_str().unwrap().to_owned(); // a new UUID
//! let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//! assert_eq!(body, made);
//! # assert_eq!(*LOGGED.lock().unwrap(), [made]);
//! # });
//! ```
//!
//! `Router::route_layer`, and `.layer` on a `Router` that you `nest`, put the layer inside every
//! layer of the outer router: tower-http's layers there run outside the request's context, and
//! a middleware there that sets a variable is refused (S21).
//!
//! In axum, prefer one `Router::layer` call for `ContextLayer` and your middleware, as above,
//! to a call of its own (`.layer(middleware::from_fn(request_id)).layer(ContextLayer::new())`
//! works the same). axum boxes the service of every `Router::layer` call, and clones it and
//! boxes its future on every request. Measured on the repository's load-test server (an axum
//! hello-world called in process, BENCHMARKS.md), a call of its own for `ContextLayer` costs
//! 1,400–1,700 instructions per request, more than all the crate's own work for the request
//! (1,030–1,120). This holds for any middleware: axum's docs recommend
//! `ServiceBuilder` for several layers (`tower` in your dependencies).
//!
//! The layer works on any `tower_service::Service<http::Request<B>>`: an axum `Router`, a hyper
//! service wrapped with hyper-util's `TowerToHyperService`, or a tonic server:
//!
//! - for every service of the server, `Server::builder().layer(ContextLayer::new())`; the first
//!   `.layer` of `Server::builder()` is the outer one, so put it before an interceptor layer
//!   that sets variables;
//! - for one service, `ContextLayer::new().named_layer(MyServer::new(svc))` (tonic's
//!   `tonic::service::LayerExt`): `add_service` needs tonic's `NamedService`, which a
//!   `ServiceBuilder`'s `ContextService` does not implement.
//!
//! The crate's tests do not build tonic; this wiring was checked with tonic 0.14 (240 and 1,000
//! concurrent calls over one HTTP/2 connection, every log line of two services its own).
//!
//! warp's `warp::serve` takes no tower layer, and a warp filter cannot wrap the future of the
//! filters after it. Wrap the filter as a service,
//! `ContextLayer::new().layer(warp::service(routes))`, and serve that with hyper-util's
//! `auto::Builder` (`serve_connection_with_upgrades`, for `warp::ws`) in a task per
//! connection, as in [what the request sees](#what-the-request-sees). Set the variables in a
//! filter at the front of the chain, `warp::header("x-request-id").map(|id: String| {
//! REQUEST_ID.set(id); }).untuple_one().and(routes)` (the `;` drops the `Token`: `untuple_one`
//! takes `()`): the whole chain is polled in the request's context, and
//! `warp::log::custom`'s callback runs there once the reply is ready.
//! `warp::trace` writes its "processing request" line when the chain starts, before any filter
//! has run; for that line to carry the values, put it inside the filter that sets:
//! `set.and(routes.with(warp::trace(..)))`. Under `warp::serve`, a handler's future wrapped
//! with `.with_context(Context::new())` (setting inside it) is isolated, but the `log::custom`
//! and `trace` lines are written outside it, without its values. The crate's tests do not
//! build warp (`a_warp_shaped_service` in `tests/tower.rs` models it); this wiring was checked
//! with warp 0.4.3 (10,000 requests from 600 at a time, HTTP/1 keep-alive and HTTP/2, and
//! WebSocket sessions: every log line its own).
//!
//! A server that is not tower but takes tower layers through a bridge of its own does not get
//! a context per request from `ContextLayer`: poem's `compat` hands layers its own request
//! type, not `http::Request` (it does not compile); salvo's `TowerLayerCompat` compiles, but
//! runs the hoops and handler after the layer outside the layer's future (their `set` is
//! refused). See
//! [servers that are not tower](crate#actix-web-and-other-servers-that-are-not-tower).
//!
//! AWS Lambda: `lambda_runtime::run` (and `lambda_http::run`) fetches one invocation at a time
//! and calls the handler in the future that awaits `run`, usually the root future of
//! `#[tokio::main]`, which is not a task. A handler's `set` there is not refused (S21): it
//! lands in the main thread's context and stays, so the next invocation reads whatever this
//! one set and it does not set again (a tenant from a header the next event lacks). With
//! `run_concurrent` (feature `concurrency-tokio`) and `AWS_LAMBDA_MAX_CONCURRENCY` above 1,
//! the invocations run in plain `tokio::spawn` worker tasks: the `set` is refused and the
//! invocation ends in a `Lambda panicked` error. `lambda_http` takes a tower service of
//! `http::Request`s: pass
//! `ServiceBuilder::new().layer(ContextLayer::new()).service(service_fn(handler))` to `run` or
//! `run_concurrent`. `lambda_runtime`'s own events are not `http::Request`s: pass
//! `service_fn(|event| handler(event).with_context(Context::new()))`. Neither
//! `Context::new().run(|| handler(event))` (it only makes the future; its body runs when
//! polled, outside) nor `runtime::propagate` (a worker task serves its invocations one after
//! the other, like a keep-alive connection) gives an invocation a context of its own.
//! lambda_runtime's own lines (`user handler panicked`) are written outside it. The crate's
//! tests do not build lambda_runtime; this wiring was checked with lambda_http 1.3 and
//! lambda_runtime 1.5 against a local Runtime API. The shape, without Lambda:
//!
//! ```
//! use contextvars::{Context, ContextVar, FutureExt};
//! use contextvars::tower::ContextLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//!
//! async fn handler(event: http::Request<()>) -> Result<Option<String>, std::io::Error> {
//!     if let Some(tenant) = event.headers().get("x-tenant-id") {
//!         TENANT.set(tenant.to_str().unwrap().to_owned());
//!     }
//!     Ok(TENANT.get_cloned())
//! }
//!
//! /// What `lambda_runtime::run` does: the next event, then the service, in the caller's future.
//! async fn run<S>(mut service: S) -> Vec<Option<String>>
//! where
//!     S: Service<http::Request<()>, Response = Option<String>, Error = std::io::Error>,
//! {
//!     let mut seen = Vec::new();
//!     for tenant in ["acme", ""] {
//!         let event = http::Request::builder();
//!         let event = if tenant.is_empty() { event } else { event.header("x-tenant-id", tenant) };
//!         let service = service.ready().await.unwrap();
//!         seen.push(service.call(event.body(()).unwrap()).await.unwrap());
//!     }
//!     seen
//! }
//!
//! let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
//! let layered = ServiceBuilder::new().layer(ContextLayer::new()).service_fn(handler);
//! assert_eq!(rt.block_on(run(layered)), [Some("acme".into()), None]);
//! let scoped = tower::service_fn(|event| handler(event).with_context(Context::new()));
//! assert_eq!(rt.block_on(run(scoped)), [Some("acme".into()), None]);
//! // Without either: the second invocation reads the first one's tenant.
//! let bare = tower::service_fn(handler);
//! assert_eq!(rt.block_on(run(bare)), [Some("acme".into()), Some("acme".into())]);
//! ```
//!
//! # Without the layer
//!
//! hyper serves each connection in a task started with a plain `tokio::spawn`, which has no
//! context of its own (S13). A `set` there would write into the worker thread's context, where
//! every other connection on that thread would see it — the `thread_local!` bug. The crate
//! refuses such writes with a panic that names the call and this layer (S21); the layer is the
//! fix. The server logs the panic; the client sees the connection or stream reset (hyper
//! drops the request: an HTTP/1 client gets no response, a gRPC client `Cancelled`, "h2
//! protocol error"), or, under tower-http's `CatchPanicLayer`, that layer's 500 response.
//!
//! Under `runtime::propagate` (with `--cfg tokio_unstable`) the connection's task has a context
//! of its own, so a missing layer is no longer refused: what one request sets, the next request
//! on the same keep-alive connection reads. Serve with this layer there too.
//!
//! # What the request sees
//!
//! The request's context is [`Context::current().fork()`](Context::fork) taken at `call`: in a
//! server, the context of the task that calls the service (usually empty), with each variable's
//! [`Inherit`](crate::Inherit) policy applied. Over HTTP/1 that is the connection's task. Over
//! HTTP/2, hyper runs each stream in a task of its own, spawned with the server's executor
//! (hyper-util's `TokioExecutor`: a plain `tokio::spawn`), and hyper-util's
//! `TowerToHyperService` (axum's `serve` uses it) calls the service in that task. `poll_ready`
//! is not part of any request and is forwarded to the inner service untouched, outside the
//! request's context.
//!
//! So a value per connection (the peer's address, a TLS client's name) set in the connection's
//! task reaches its HTTP/1 requests but none of its HTTP/2 requests, and one set in the accept
//! loop before `tokio::spawn` reaches no request (on a current-thread runtime, every request
//! reads the value of the latest connection). With hyper alone, build the service for each
//! connection and set the value in a middleware below `ContextLayer`; every request of the
//! connection, HTTP/1 or HTTP/2, gets it in its own context:
//!
//! ```no_run
//! use contextvars::ContextVar;
//! use contextvars::tower::ContextLayer;
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//!
//! static PEER: ContextVar<std::net::SocketAddr> = ContextVar::new("peer");
//!
//! # async fn serve(listener: tokio::net::TcpListener) {
//! loop {
//!     let (stream, peer) = listener.accept().await.unwrap();
//!     let service = tower::ServiceBuilder::new()
//!         .layer(ContextLayer::new())
//!         .map_request(move |request: http::Request<hyper::body::Incoming>| {
//!             PEER.set(peer); // in this request's context
//!             request
//!         })
//!         .service(tower::service_fn(|_| async {
//!             Ok::<_, std::convert::Infallible>(http::Response::new(format!("{:?}", PEER.get())))
//!         }));
//!     tokio::spawn(async move {
//!         // hyper-util's `auto::Builder` (HTTP/1 and HTTP/2) takes the same service
//!         let connection = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
//!         let _ = connection.await;
//!     });
//! }
//! # }
//! ```
//!
//! So what `main` sets before it serves reaches requests only by accident: on a current-thread
//! runtime the connection tasks run on `main`'s thread, in its context, and every request sees
//! the value; on a multi-thread runtime none does (under `runtime::propagate` every one does:
//! the server's tasks fork `main`'s context). Give process-wide settings a `static` (or
//! `ContextVar::with_default`), and set per-request values in a middleware.
//!
//! # Streamed bodies
//!
//! The server polls a streamed response body (`Body::from_stream`, server-sent events, the
//! stream a tonic server-streaming or bidirectional handler returns) after the response future
//! has finished, so outside the request's context: the stream reads no request values, and a
//! `set` in it is refused (S21). Give the stream a fork of the request's context when the
//! handler makes it: `Body::from_stream(Scoped::new(Context::current().fork(), stream))`, or in
//! tonic `Response::new(Box::pin(Scoped::new(Context::current().fork(), stream)))`. `Scoped` is
//! a `Stream` with this crate's `futures` feature (without it, the error is that
//! `Scoped<…>: Stream` is not satisfied). A stream fed by a task (`task::spawn` producing into a
//! channel) needs nothing more: the task has the request's values.
//!
//! A client does the same with a streamed request body: hyper's client (under tonic's `Channel`
//! and reqwest) polls it in the connection's task (over HTTP/2, then in a task of its own once
//! it is not ready), not in the caller's. So the messages of a tonic client-streaming or
//! bidirectional call read none of the caller's values, and a `set` there is refused. Wrap the
//! stream in the caller:
//! `client.upload(Scoped::new(Context::current().fork(), messages))`.
//!
//! `Scoped` carries this crate's context, not `tracing`'s current span: the lines a wrapped
//! stream logs carry the request's variables but none of its spans (so, with
//! `tracing-opentelemetry`, no trace id). A stream fed by
//! `task::spawn(producer.in_current_span())` (`tracing::Instrument`) carries both.
//!
//! To cover every body of a service at once — a stream a handler did not wrap, and what the
//! layers between do as the body is polled, such as tower-http `TraceLayer`'s `on_body_chunk`
//! and `on_eos` — map each response onto a body that polls in the request's context, right
//! inside `ContextLayer`. A `Scoped` is an `http_body::Body` with the `tower` feature; it keeps
//! the body's size hint (so `content-length`) and trailers:
//!
//! ```
//! use axum::body::Body;
//! use axum::extract::Request;
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//! use axum::routing::get;
//! use contextvars::tower::ContextLayer;
//! use contextvars::{Context, ContextVar, Scoped};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! async fn scope_body(response: Response) -> Response {
//!     let context = Context::current(); // the request's, with what the layers below set
//!     response.map(|body| Body::new(Scoped::new(context, body)))
//! }
//!
//! async fn request_id(request: Request, next: Next) -> Response {
//!     REQUEST_ID.set("req-1".to_owned());
//!     next.run(request).await
//! }
//!
//! async fn events() -> Body {
//!     // Not wrapped: read as the server polls the body.
//!     Body::from_stream(futures::stream::once(async {
//!         Ok::<_, std::convert::Infallible>(REQUEST_ID.get_cloned().unwrap_or_default())
//!     }))
//! }
//!
//! let app = axum::Router::new().route("/", get(events)).layer(
//!     tower::ServiceBuilder::new()
//!         .layer(ContextLayer::new())
//!         .layer(middleware::map_response(scope_body)) // right inside the context layer
//!         .layer(middleware::from_fn(request_id)),
//! );
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use tower::ServiceExt;
//! let response = app.oneshot(Request::new(Body::empty())).await.unwrap();
//! let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//! assert_eq!(body, "req-1"); // polled after the response future, in the request's context
//! # });
//! ```
//!
//! # WebSockets and other upgrades
//!
//! axum's `WebSocketUpgrade::on_upgrade` spawns a task of its own with a plain `tokio::spawn`,
//! in the handler (warp's `Ws::on_upgrade`: as its reply becomes the response), and runs the
//! callback in it once the connection is upgraded: outside the request's context, like
//! anything that awaits `hyper::upgrade::on` in a plain task. There
//! the session reads none of the request's values (its log lines carry no `request_id`), and a
//! `set` is refused (S21), which kills the session (the client sees the connection reset
//! without a closing handshake). Wrapping the callback's future with `.with_current_context()`
//! *inside* the callback silences the panic but forks the worker's empty context, not the
//! request's. Take the request's context in the handler and hand it over (under
//! `runtime::propagate`, the plain task already gets a fork of the request's context, taken
//! at the spawn; handing it over does no harm there):
//!
//! ```
//! use axum::extract::ws::{WebSocket, WebSocketUpgrade};
//! use axum::response::Response;
//! use contextvars::{Context, ContextVar, FutureExt};
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! async fn ws_handler(ws: WebSocketUpgrade) -> Response {
//!     let ctx = Context::current().fork(); // the request's values, taken in the handler
//!     ws.on_upgrade(move |socket| session(socket).with_context(ctx))
//! }
//!
//! async fn session(mut socket: WebSocket) {
//!     let id = REQUEST_ID.get_cloned(); // the request's id, for the whole session
//!     while let Some(Ok(_message)) = socket.recv().await {
//!         // ... log lines here carry `id`
//!     }
//!     # drop(id);
//! }
//! # let _app: axum::Router = axum::Router::new().route("/ws", axum::routing::get(ws_handler));
//! ```
//!
//! Tasks that the session spawns (a reader and a writer over `socket.split()`, as in axum's
//! docs) need [`task::spawn`] rather than `tokio::spawn`.
//!
//! # Across services
//!
//! With the `opentelemetry` feature, `ContextLayer::new().extract(baggage)` also sets, in each
//! request's context, the variables that the caller sent in its W3C `baggage` header, and
//! `PropagateLayer` wraps a client (hyper-util, tonic, any tower stack) so that every outgoing
//! request carries the caller's values (S25). See the `propagation` module for the format, the
//! limits and what happens to bad input.
//!
//! [`ContextLayer`]: ContextLayer
//! [`task::spawn`]: crate::task::spawn

use std::task::{Context as TaskContext, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::context::Context;
#[cfg(feature = "opentelemetry")]
use crate::propagation::Baggage;
use crate::scoped::Scoped;

/// A [`Layer`] that runs every request in its own context; see the [module docs](self).
///
/// It makes a [`ContextService`] around the service it wraps. The layer is a tiny `Clone`
/// configuration value, so it can be shared across routes and servers.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
/// use contextvars::tower::ContextLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// static USER: ContextVar<String> = ContextVar::new("user");
///
/// let service = ServiceBuilder::new()
///     .layer(ContextLayer::new()) // first in a ServiceBuilder = outermost
///     .service(service_fn(|request: http::Request<&'static str>| async move {
///         USER.set(request.into_body().to_owned()); // the request's own context
///         tokio::task::yield_now().await;
///         Ok::<_, std::convert::Infallible>(USER.get())
///     }));
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let seen = service.oneshot(http::Request::new("alice")).await.unwrap();
/// assert_eq!(seen.as_deref().map(String::as_str), Some("alice"));
/// assert!(USER.get().is_none()); // nothing leaked to the caller
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct ContextLayer {
    #[cfg(feature = "opentelemetry")]
    baggage: Option<Baggage>,
}

impl ContextLayer {
    /// A layer that gives every request its own fork of the context current at `call`.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::tower::ContextLayer;
    /// use tower::Layer;
    ///
    /// let service = ContextLayer::new().layer(tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>("ok")
    /// }));
    /// # drop(service);
    /// ```
    pub fn new() -> Self {
        ContextLayer::default()
    }

    /// Seeds each request's context from its `baggage` header: the variables named in
    /// `baggage` that the caller sent are set in the request's fork before the inner service
    /// is called (S25).
    ///
    /// The fork is taken at `call` as usual, then [`Baggage::extract_headers`]'s rules apply
    /// on top of it: only the named variables are read, bad members are skipped one by one,
    /// and nothing a request sends reaches another request. Pair it with [`PropagateLayer`]
    /// (or [`Baggage::inject_headers`]) in the calling service.
    ///
    /// The caller chooses every value it sends. At an edge that takes requests from clients,
    /// name here only what a client may choose (a `Baggage` with fewer variables than the
    /// `PropagateLayer`'s, or use `ContextLayer::new()`), and set the tenant or user from what
    /// the edge authenticates; see [trust](crate::propagation#bad-input).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    /// use contextvars::tower::ContextLayer;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    ///
    /// let service = ServiceBuilder::new()
    ///     .layer(ContextLayer::new().extract(Baggage::new().var(&TENANT)))
    ///     .service(service_fn(|_: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(TENANT.get())
    ///     }));
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let request = http::Request::builder().header("baggage", "tenant=acme").body(()).unwrap();
    /// let seen = service.oneshot(request).await.unwrap();
    /// assert_eq!(seen.as_deref().map(String::as_str), Some("acme"));
    /// assert!(TENANT.get().is_none()); // the caller's context is untouched
    /// # });
    /// ```
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    pub fn extract(self, baggage: Baggage) -> Self {
        ContextLayer {
            baggage: Some(baggage),
        }
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> ContextService<S> {
        ContextService {
            inner,
            #[cfg(feature = "opentelemetry")]
            baggage: self.baggage.clone(),
        }
    }
}

/// A service that runs every request in its own context (S22); made by [`ContextLayer`].
///
/// For each request, [`call`](Service::call) takes a fork of the current context, runs the
/// inner service's `call` in it (so what a middleware sets before returning its future is
/// isolated too), and returns the inner future wrapped in a [`Scoped`] with that context: no
/// boxing, and the response future keeps a nameable type. It is `Clone` when the inner service
/// is, and forwards `poll_ready` untouched.
///
/// # Panics
///
/// `call` propagates a panic of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by
/// the request's fork.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
/// use contextvars::tower::ContextService;
/// use tower::{Service, ServiceExt};
///
/// static STEP: ContextVar<&'static str> = ContextVar::new("step");
///
/// let mut service = ContextService::new(tower::service_fn(|_: http::Request<()>| {
///     STEP.set("called"); // synchronously in `call`: still the request's own context
///     async { Ok::<_, std::convert::Infallible>(STEP.get()) }
/// }));
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let response = service.ready().await.unwrap().call(http::Request::new(()));
/// assert!(STEP.get().is_none()); // the caller's context is untouched
/// assert_eq!(response.await.unwrap().as_deref(), Some(&"called"));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ContextService<S> {
    inner: S,
    /// What [`ContextLayer::extract`] seeds each request's context with.
    #[cfg(feature = "opentelemetry")]
    baggage: Option<Baggage>,
}

impl<S> ContextService<S> {
    /// Wraps `inner` so that each of its requests runs in its own context.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::tower::ContextService;
    ///
    /// let service = ContextService::new(tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(())
    /// }));
    /// # drop(service);
    /// ```
    pub fn new(inner: S) -> Self {
        ContextService {
            inner,
            #[cfg(feature = "opentelemetry")]
            baggage: None,
        }
    }

    /// Borrows the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::tower::ContextService;
    ///
    /// let service = ContextService::new(5);
    /// assert_eq!(*service.get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Mutably borrows the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::tower::ContextService;
    ///
    /// let mut service = ContextService::new(5);
    /// *service.get_mut() += 1;
    /// assert_eq!(*service.get_ref(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::tower::ContextService;
    ///
    /// assert_eq!(ContextService::new(5).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for ContextService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: http::Request<B>) -> Scoped<S::Future> {
        // `current_fork` is `Context::current().fork()` without an extra clone.
        let context = Context::current_fork();
        #[cfg(feature = "opentelemetry")]
        let context = match &self.baggage {
            Some(baggage) => baggage.extract_headers_onto(context, request.headers()),
            None => context,
        };
        // The inner `call` runs as the request's task: what it sets synchronously, thread-critical
        // values included, is the request's (S19, S22).
        Scoped::from_call(context, || self.inner.call(request))
    }
}

/// A [`Layer`] for clients: injects the caller's propagated variables into every outgoing
/// request's `baggage` header (S25).
///
/// Wrap a tower client with it — hyper-util's legacy `Client`, a tonic `Channel`, any
/// `Service<http::Request<B>>` — and each request carries the variables named in the
/// [`Baggage`] that are bound in the context current at `call`, the caller's. Members of the
/// header that are not ours are kept, and a stale member of ours is replaced (see
/// [`Baggage::inject_headers`]). The receiving service reads them with
/// [`ContextLayer::extract`], declared with the same `static` variables (two statics of the
/// same name are two variables, S1).
///
/// Put it *outermost* in a client stack, before `buffer` or any other layer that hands the
/// request to another task: `PropagateService::call` reads the
/// context of the task that calls it. Below a `Buffer` it runs in the buffer's worker task,
/// so every request goes out with no baggage, silently; under `runtime::propagate` the worker
/// keeps a fork of the context of whoever created the client, and if that was a request
/// (a client made lazily by the first request that needs it) every later request carries
/// *that* request's values. In a `ServiceBuilder` the first layer is the outer one:
/// `ServiceBuilder::new().layer(PropagateLayer::new(baggage)).buffer(1024).service(channel)`.
///
/// A call made from a plain `tokio::spawn` task reads that task's context, usually empty, and
/// sends no baggage, with no warning: spawn such work with [`task::spawn`](crate::task::spawn) (a bidirectional
/// gRPC handler's sender task, say). For a tonic client, wrap the `Channel`:
/// `MyClient::new(ServiceBuilder::new().layer(PropagateLayer::new(baggage)).service(channel))`.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
/// use contextvars::propagation::Baggage;
/// use contextvars::tower::PropagateLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// static TENANT: ContextVar<String> = ContextVar::new("tenant");
///
/// // A stand-in for an HTTP client: it answers with the header it was sent.
/// let client = ServiceBuilder::new()
///     .layer(PropagateLayer::new(Baggage::new().var(&TENANT)))
///     .service(service_fn(|request: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(request.headers()["baggage"].clone())
///     }));
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let sent = TENANT.scope("acme".into(), client.oneshot(http::Request::new(()))).await;
/// assert_eq!(sent.unwrap(), "tenant=acme");
/// # });
/// ```
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
#[derive(Clone, Debug)]
pub struct PropagateLayer {
    baggage: Baggage,
}

#[cfg(feature = "opentelemetry")]
impl PropagateLayer {
    /// A layer that injects the variables named in `baggage` into every outgoing request.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::propagation::Baggage;
    /// use contextvars::tower::PropagateLayer;
    /// use tower::Layer;
    ///
    /// static TENANT: ContextVar<String> = ContextVar::new("tenant");
    ///
    /// let layer = PropagateLayer::new(Baggage::new().var(&TENANT));
    /// let client = layer.layer(tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(())
    /// }));
    /// # drop(client);
    /// ```
    pub fn new(baggage: Baggage) -> Self {
        PropagateLayer { baggage }
    }
}

#[cfg(feature = "opentelemetry")]
impl<S> Layer<S> for PropagateLayer {
    type Service = PropagateService<S>;

    fn layer(&self, inner: S) -> PropagateService<S> {
        PropagateService::new(inner, self.baggage.clone())
    }
}

/// A client service that injects the caller's propagated variables into each outgoing
/// request; made by [`PropagateLayer`].
///
/// [`call`](Service::call) reads the current context (the caller's), writes the `baggage`
/// header, and returns the inner service's future unchanged: no wrapper, no boxing. It is
/// `Clone` when the inner service is, and forwards `poll_ready` untouched.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
/// use contextvars::propagation::Baggage;
/// use contextvars::tower::PropagateService;
/// use tower::{Service, ServiceExt};
///
/// static TENANT: ContextVar<String> = ContextVar::new("tenant");
///
/// let mut client = PropagateService::new(
///     tower::service_fn(|request: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(request.headers().get("baggage").cloned())
///     }),
///     Baggage::new().var(&TENANT),
/// );
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let unset = client.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(unset, None); // nothing bound, nothing sent
/// let future = TENANT.sync_scope("acme".into(), || client.call(http::Request::new(())));
/// assert_eq!(future.await.unwrap().unwrap(), "tenant=acme");
/// # });
/// ```
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
#[derive(Clone, Debug)]
pub struct PropagateService<S> {
    inner: S,
    baggage: Baggage,
}

#[cfg(feature = "opentelemetry")]
impl<S> PropagateService<S> {
    /// Wraps the client `inner` so that each request carries the variables named in `baggage`.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::propagation::Baggage;
    /// use contextvars::tower::PropagateService;
    ///
    /// let client = PropagateService::new(5, Baggage::new());
    /// assert_eq!(*client.get_ref(), 5);
    /// ```
    pub fn new(inner: S, baggage: Baggage) -> Self {
        PropagateService { inner, baggage }
    }

    /// Borrows the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::propagation::Baggage;
    /// use contextvars::tower::PropagateService;
    ///
    /// assert_eq!(*PropagateService::new(5, Baggage::new()).get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Mutably borrows the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::propagation::Baggage;
    /// use contextvars::tower::PropagateService;
    ///
    /// let mut client = PropagateService::new(5, Baggage::new());
    /// *client.get_mut() += 1;
    /// assert_eq!(*client.get_ref(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::propagation::Baggage;
    /// use contextvars::tower::PropagateService;
    ///
    /// assert_eq!(PropagateService::new(5, Baggage::new()).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

#[cfg(feature = "opentelemetry")]
impl<S, B> Service<http::Request<B>> for PropagateService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        self.baggage.inject_headers(request.headers_mut());
        self.inner.call(request)
    }
}
