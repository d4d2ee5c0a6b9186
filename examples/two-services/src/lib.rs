//! Two axum services, `edge` and `billing`: the tenant that `edge` sets in its context arrives
//! in `billing`'s context, carried by the standard W3C `baggage` header.
//!
//! - [`edge`]: reads `x-tenant`, sets [`TENANT`] with a plain `set` (behind [`ContextLayer`],
//!   so the value stays in the request), and calls billing through a hyper-util client wrapped
//!   in [`PropagateLayer`]: nobody passes the tenant to the client, the layer reads it from the
//!   caller's context and writes `baggage: tenant=…`.
//! - [`billing`]: behind `ContextLayer::new().extract(baggage())`, each request's context starts
//!   with the tenant the caller sent. The handler logs (the log format reads the tenant from the
//!   context, [`ContextFields`]), spawns a sub-task that inherits it, and echoes what it sees.
//! - [`baggage`]: the one list of variables that travel, shared by both sides.
//! - [`edge_without_propagation`], [`billing_without_propagation`]: the same two services
//!   without the propagation layers (plain [`ContextLayer`] only, no `baggage` header), for
//!   `scripts/load.sh` to compare requests/s with and without propagation.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use contextvars::ContextVar;
use contextvars::propagation::Baggage;
use contextvars::task;
use contextvars::tower::{ContextLayer, PropagateLayer, PropagateService};
use contextvars::tracing::{ContextFields, WithContextFields};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tracing::info;
use tracing_subscriber::fmt::format::{DefaultFields, Format};

/// The tenant the request is served for.
pub static TENANT: ContextVar<String> = ContextVar::new("tenant");

/// The header the outside world sends the tenant in, at the edge.
pub const TENANT_HEADER: &str = "x-tenant";

/// The variables that travel between the services, under their baggage keys.
pub fn baggage() -> Baggage {
    Baggage::new().var(&TENANT)
}

/// The client `edge` calls billing with: hyper-util's client, with [`PropagateLayer`] on top.
pub type PropagatingClient = PropagateService<Client<HttpConnector, Empty<Bytes>>>;

/// A client that sends the caller's [`baggage`] with every request.
pub fn propagating_client() -> PropagatingClient {
    let client = Client::builder(TokioExecutor::new()).build_http();
    ServiceBuilder::new()
        .layer(PropagateLayer::new(baggage()))
        .service(client)
}

#[derive(Clone)]
enum BillingClient {
    Propagating(PropagatingClient),
    Plain(Client<HttpConnector, Empty<Bytes>>),
}

#[derive(Clone)]
struct Edge {
    client: BillingClient,
    billing: Uri,
}

/// The edge service: `GET /` with `x-tenant`, answered with what billing saw.
///
/// `billing` is billing's invoice URL, e.g. `http://127.0.0.1:3001/invoice`.
pub fn edge(billing: Uri) -> Router {
    edge_with(BillingClient::Propagating(propagating_client()), billing)
}

/// [`edge`] calling billing with hyper-util's client alone: no [`PropagateLayer`], so no
/// `baggage` header. Only for measuring what propagation costs (`scripts/load.sh`).
pub fn edge_without_propagation(billing: Uri) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http();
    edge_with(BillingClient::Plain(client), billing)
}

fn edge_with(client: BillingClient, billing: Uri) -> Router {
    Router::new()
        .route("/", get(edge_handler))
        .with_state(Edge { client, billing })
        .layer(
            ServiceBuilder::new()
                .layer(ContextLayer::new()) // outermost: each request's own context
                .layer(middleware::from_fn(tenant_from_header)),
        )
}

/// Middleware: `x-tenant` becomes [`TENANT`] for the rest of the request. A plain `set`.
async fn tenant_from_header(request: Request, next: Next) -> Response {
    let tenant = request
        .headers()
        .get(TENANT_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|tenant| !tenant.is_empty());
    if let Some(tenant) = tenant {
        TENANT.set(tenant.to_owned());
    }
    next.run(request).await
}

async fn edge_handler(State(edge): State<Edge>) -> Result<String, StatusCode> {
    info!("edge: calling billing");
    let request = http_request(&edge.billing);
    // No tenant argument anywhere: `PropagateLayer` reads it from this request's context.
    let response = match edge.client {
        BillingClient::Propagating(client) => client.oneshot(request).await.ok(),
        BillingClient::Plain(client) => client.oneshot(request).await.ok(),
    }
    .ok_or(StatusCode::BAD_GATEWAY)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?
        .to_bytes();
    info!(%status, "edge: billing answered");
    let seen = TENANT
        .get()
        .map(|tenant| (*tenant).clone())
        .unwrap_or_default();
    Ok(format!(
        "edge tenant={seen}; {}",
        String::from_utf8_lossy(&body)
    ))
}

fn http_request(uri: &Uri) -> axum::http::Request<Empty<Bytes>> {
    let mut request = axum::http::Request::new(Empty::new());
    *request.uri_mut() = uri.clone();
    request
}

/// The billing service: `GET /invoice`, answered with the tenant it sees in its context.
pub fn billing() -> Router {
    Router::new()
        .route("/invoice", get(billing_handler))
        .layer(ContextLayer::new().extract(baggage()))
}

/// [`billing`] behind a plain [`ContextLayer`]: nothing extracted from `baggage`. Only for
/// measuring what propagation costs (`scripts/load.sh`).
pub fn billing_without_propagation() -> Router {
    Router::new()
        .route("/invoice", get(billing_handler))
        .layer(ContextLayer::new())
}

/// `wire` is only for the end-to-end test: the raw `baggage` header, logged next to the tenant
/// that the formatter reads from the context, so the test can check that they always agree.
fn wire(headers: &HeaderMap) -> String {
    headers
        .get("baggage")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn billing_handler(headers: HeaderMap) -> String {
    let wire = wire(&headers);
    info!(%wire, "billing: invoicing");
    tokio::time::sleep(Duration::from_millis(1 + wire.len() as u64 % 3)).await;
    let ledger = task::spawn({
        let wire = wire.clone();
        async move {
            tokio::task::yield_now().await;
            info!(%wire, "billing: ledger entry written"); // a child task: inherits the tenant
        }
    });
    ledger.await.expect("ledger task");
    let tenant = TENANT
        .get()
        .map(|tenant| (*tenant).clone())
        .unwrap_or_default();
    info!(%wire, "billing: done");
    format!("billing tenant={tenant}\n")
}

/// The log format: `tenant=…` in front of tracing's default line, read from the context.
pub fn log_format() -> WithContextFields<Format> {
    ContextFields::new()
        .var(&TENANT)
        .wrap(tracing_subscriber::fmt::format())
}

/// A subscriber builder with [`log_format`], for `main` and the tests.
pub fn subscriber()
-> tracing_subscriber::fmt::SubscriberBuilder<DefaultFields, WithContextFields<Format>> {
    tracing_subscriber::fmt().event_format(log_format())
}
