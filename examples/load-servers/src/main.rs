//! `load-servers MODE PORT`: an axum hello-world on 127.0.0.1:PORT with one Tokio worker
//! thread, for `scripts/load.sh` to load with `wrk`.
//!
//! `load-servers in-process MODE REQUESTS [CONNECTIONS]`: the same app called REQUESTS times
//! with `oneshot` on the same runtime (one worker thread), no network, by CONNECTIONS tasks
//! (default 1) that each call it in turn, as a server's connections do, so that that many
//! requests are in flight at once, as under `wrk -cN`; prints the time per request. Under
//! callgrind, run at two values of REQUESTS, it gives the instructions per request
//! (BENCHMARKS.md).
//!
//! - `plain`: a middleware that passes the request through (after making the request id, so
//!   both servers do that work), a handler that builds a short string and spawns one child with
//!   `tokio::spawn` and awaits it. No contextvars.
//! - `contextvars`: the same server behind `ContextLayer`; the middleware `set`s `REQUEST_ID`
//!   (from `x-request-id`, or a counter), the handler reads it 5 times and spawns its child with
//!   `contextvars::task::spawn`. `ContextLayer` and the middleware are one `ServiceBuilder`
//!   stack added with one `Router::layer` call, as the plain server's middleware is.
//! - `contextvars-two-layers`: the same, with `ContextLayer` added by a second `Router::layer`
//!   call. axum boxes every `Router::layer` call's service and clones it, and boxes its future,
//!   on every request: this server shows what that costs next to the crate's own work.
//! - `plain-busy`: `plain` with extra CPU work per request (a spin on the clock in the
//!   handler, [`BUSY`]), no contextvars: what that much CPU per request costs in requests/s,
//!   to set against the `contextvars` server's figures.
//! - `task-local`: the `contextvars` server's work done with `tokio::task_local!` instead, no
//!   contextvars: the middleware scopes the request id as an `Arc<String>`, the handler clones
//!   that `Arc` 5 times (what `ContextVar::get` returns) and scopes its child with a clone of
//!   it: about the least a request-scoped value that a child task inherits can cost, done with
//!   Tokio's own primitive (which cannot be set in place and is not inherited by itself).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use contextvars::ContextVar;
use contextvars::tower::ContextLayer;
use tower::ServiceBuilder;

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static COUNTER: AtomicU64 = AtomicU64::new(0);

tokio::task_local! {
    /// The `task-local` server's request id.
    static TASK_LOCAL_REQUEST_ID: Arc<String>;
}

/// How long `plain-busy` spins per request. With the clock reads around the spin it adds
/// ~140 ns per request in process, about what the crate adds to the `contextvars` server's
/// (BENCHMARKS.md).
const BUSY: std::time::Duration = std::time::Duration::from_nanos(100);

const USAGE: &str = "usage: load-servers MODE PORT\n       \
                     load-servers in-process MODE REQUESTS [CONNECTIONS]\n\
                     MODE: plain, plain-busy, contextvars, contextvars-two-layers or task-local";

/// The request's id: `x-request-id`, or the next value of a counter.
fn request_id(request: &Request) -> String {
    match request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
    {
        Some(id) => id.to_owned(),
        None => COUNTER.fetch_add(1, Ordering::Relaxed).to_string(),
    }
}

async fn plain_middleware(request: Request, next: Next) -> Response {
    black_box(request_id(&request));
    next.run(request).await
}

async fn plain_handler() -> String {
    let child = tokio::spawn(async { black_box(1_usize) });
    let k = child.await.expect("child task");
    format!("hello, world {k}\n")
}

async fn busy_handler() -> String {
    let start = std::time::Instant::now();
    while start.elapsed() < BUSY {
        std::hint::spin_loop();
    }
    plain_handler().await
}

async fn contextvars_middleware(request: Request, next: Next) -> Response {
    REQUEST_ID.set(request_id(&request));
    next.run(request).await
}

async fn contextvars_handler() -> String {
    for _ in 0..5 {
        black_box(REQUEST_ID.get());
    }
    let child = contextvars::task::spawn(async { black_box(1_usize) });
    let k = child.await.expect("child task");
    format!("hello, world {k}\n")
}

async fn task_local_middleware(request: Request, next: Next) -> Response {
    let id = Arc::new(request_id(&request));
    TASK_LOCAL_REQUEST_ID.scope(id, next.run(request)).await
}

async fn task_local_handler() -> String {
    for _ in 0..5 {
        black_box(TASK_LOCAL_REQUEST_ID.with(Arc::clone));
    }
    let id = TASK_LOCAL_REQUEST_ID.with(Arc::clone);
    let child = tokio::spawn(TASK_LOCAL_REQUEST_ID.scope(id, async { black_box(1_usize) }));
    let k = child.await.expect("child task");
    format!("hello, world {k}\n")
}

fn app(mode: &str) -> Option<Router> {
    match mode {
        "plain" => Some(
            Router::new()
                .route("/", get(plain_handler))
                .layer(middleware::from_fn(plain_middleware)),
        ),
        "plain-busy" => Some(
            Router::new()
                .route("/", get(busy_handler))
                .layer(middleware::from_fn(plain_middleware)),
        ),
        "contextvars" => Some(
            Router::new().route("/", get(contextvars_handler)).layer(
                ServiceBuilder::new()
                    .layer(ContextLayer::new()) // first in a ServiceBuilder = outermost
                    .layer(middleware::from_fn(contextvars_middleware)),
            ),
        ),
        "task-local" => Some(
            Router::new()
                .route("/", get(task_local_handler))
                .layer(middleware::from_fn(task_local_middleware)),
        ),
        "contextvars-two-layers" => Some(
            Router::new()
                .route("/", get(contextvars_handler))
                .layer(middleware::from_fn(contextvars_middleware))
                .layer(ContextLayer::new()),
        ),
        _ => None,
    }
}

fn main() -> std::io::Result<()> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, USAGE);
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or_else(invalid)?;
    if mode == "in-process" {
        let app = args.next().as_deref().and_then(app).ok_or_else(invalid)?;
        let requests: u32 = args
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(invalid)?;
        let connections: u32 = match args.next() {
            None => 1,
            Some(n) => n.parse().ok().filter(|&n| n > 0).ok_or_else(invalid)?,
        };
        return in_process(app, requests, connections);
    }
    let app = app(&mode).ok_or_else(invalid)?;
    let port: u16 = args
        .next()
        .and_then(|port| port.parse().ok())
        .ok_or_else(invalid)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
            println!("listening on http://{}/", listener.local_addr()?);
            axum::serve(listener, app).await
        })
}

/// Calls `app` `requests` times as a server would (a clone per request, an `x-request-id`
/// header), without the network, from `connections` tasks that each send their share of the
/// requests one after another, and prints the time per request.
fn in_process(app: Router, requests: u32, connections: u32) -> std::io::Result<()> {
    use tower::ServiceExt;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    let start = std::time::Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for connection in 0..connections {
            let app = app.clone();
            tasks.spawn(async move {
                // Request numbers connection, connection + connections, ...: `requests` in all.
                for n in (connection..requests).step_by(connections as usize) {
                    let request = Request::builder()
                        .header("x-request-id", n)
                        .body(axum::body::Body::empty())
                        .expect("a valid request");
                    let response = app.clone().oneshot(request).await.expect("infallible");
                    assert!(response.status().is_success(), "{}", response.status());
                    black_box(response);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a connection task");
        }
    });
    let per_request = start.elapsed().as_nanos() as f64 / f64::from(requests.max(1));
    println!("{per_request:.1} ns per request");
    Ok(())
}
