//! An axum service whose every log line carries the id of the request that produced it — what
//! django-log-request-id does with `asgiref.local.Local`, done with a `ContextVar`.
//!
//! - [`app`]: the routes behind [`ContextLayer`], which gives every request a context of its
//!   own, so the middleware can simply `set` the id, as Django middleware does.
//! - [`request_id`] middleware: takes a well-formed `x-request-id` from the request or makes
//!   one, sets `REQUEST_ID` for the rest of the request, and echoes the id in the response.
//! - [`handler`]: awaits, fans out to a sub-task (`task::spawn`) and a blocking "database"
//!   call (`task::spawn_blocking`), and logs through `tracing` at every step. Nobody passes
//!   the id around: the log formatter reads it from the context.
//! - [`log_format`]: the `tracing_subscriber` formatter that writes `request_id=…` first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use contextvars::ContextVar;
use contextvars::task;
use contextvars::tower::ContextLayer;
use contextvars::tracing::{ContextFields, WithContextFields};
use tower::ServiceBuilder;
use tracing::info;
use tracing_subscriber::fmt::format::{DefaultFields, Format};

/// The id of the request being served.
pub static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

/// The request header that carries the id, in and out.
pub const HEADER: &str = "x-request-id";

/// The application: the route behind [`ContextLayer`] and the request-id middleware, so that
/// every request has a context of its own.
///
/// `ContextLayer` comes first in the `ServiceBuilder`, so it is the outermost layer: each
/// request's context exists before the middleware sets the id in it. Both go in one
/// `Router::layer` call, as axum recommends: axum boxes each call's service per request.
pub fn app() -> Router {
    route().layer(
        ServiceBuilder::new()
            .layer(ContextLayer::new())
            .layer(middleware::from_fn(request_id)),
    )
}

/// The route behind the request-id middleware, *without* [`ContextLayer`]: serving this alone
/// is the misuse the crate refuses (its `tests/without_layer.rs` shows the panic).
pub fn routes() -> Router {
    route().layer(middleware::from_fn(request_id))
}

fn route() -> Router {
    Router::new().route("/", get(handler))
}

/// The log format: `request_id=…` in front of tracing's default line.
pub fn log_format() -> WithContextFields<Format> {
    ContextFields::new()
        .var(&REQUEST_ID)
        .wrap(tracing_subscriber::fmt::format())
}

/// A subscriber builder with [`log_format`], for `main` and the tests.
pub fn subscriber()
-> tracing_subscriber::fmt::SubscriberBuilder<DefaultFields, WithContextFields<Format>> {
    tracing_subscriber::fmt().event_format(log_format())
}

/// Middleware: the request's id (from the header if it is well formed, or a new one) is set
/// for the rest of the request, and echoed in the response.
///
/// A plain `set`: [`ContextLayer`] (see [`app`]) has given the request a context of its own.
/// hyper serves each connection in a plain `tokio::spawn`ed task, so without the layer this
/// `set` would land in the worker thread's context; the crate refuses it with a panic instead
/// (S21).
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = incoming_id(request.headers()).unwrap_or_else(new_id);
    REQUEST_ID.set(id.clone());
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The client's id, if it is one we can log as it is: 1 to 200 characters from
/// `A–Z a–z 0–9 + / = - _ . :` (Heroku's router accepts a like set). Anything else (spaces,
/// control or non-ASCII bytes, an empty or overlong value) is replaced by a new id, so that a
/// client cannot write text of its choosing into the log lines: `request_id=a truth=b` would
/// otherwise read as two fields.
fn incoming_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get(HEADER)?.to_str().ok()?.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+/=-_.:".contains(c);
    (!id.is_empty() && id.len() <= 200 && id.chars().all(allowed)).then(|| id.to_owned())
}

fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "gen-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `truth` is only for the end-to-end test: the id the request really carries, logged next to
/// the one the formatter reads from the context, so the test can prove they always agree.
fn truth(headers: &HeaderMap) -> String {
    incoming_id(headers).unwrap_or_default()
}

/// The handler: logs, awaits, fans out, logs again. It never sees the id as an argument.
pub async fn handler(headers: HeaderMap) -> String {
    let truth = truth(&headers);
    info!(%truth, "handler: start");
    tokio::time::sleep(Duration::from_millis(1 + truth.len() as u64 % 5)).await;

    let t = truth.clone();
    let enrich = task::spawn(async move {
        tokio::task::yield_now().await;
        info!(truth = %t, "sub-task: enriched the user profile");
    });
    let t = truth.clone();
    let query = task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1));
        info!(truth = %t, "db: SELECT * FROM orders");
        3
    });
    enrich.await.expect("sub-task");
    let rows = query.await.expect("db call");

    info!(%truth, rows, "handler: done");
    let id = REQUEST_ID.get().map(|id| (*id).clone()).unwrap_or_default();
    format!("served {id} with {rows} rows\n")
}
