//! `tower::ContextLayer` (S22): every request runs in its own fork of the context current at
//! `call`; what middleware and handlers `set` with a plain `set` never reaches another request
//! or the caller, and children spawned with `task::spawn` inherit it.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
mod common;

use common::{current_thread, multi_thread};
use contextvars::tower::{ContextLayer, ContextService};
use contextvars::{Context, ContextVar, Inherit, Scoped, task};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
static LEFT_BEHIND: ContextVar<String> = ContextVar::new("left_behind");
static NOT_INHERITED: ContextVar<&'static str> =
    ContextVar::new("not_inherited").inherit(Inherit::None);
static FORKED: ContextVar<Vec<u8>> =
    ContextVar::new("forked").inherit(Inherit::Fork(|_| Vec::new()));

const HEADER: &str = "x-request-id";

// ---------------------------------------------------------------------------------------------
// A hand-written service (no axum, no service_fn): `call` sets `REQUEST_ID` to the request's
// body synchronously and returns a named future that reads it back.

#[derive(Clone, Debug, Default)]
struct SetsInCall {
    ready_polls: Arc<AtomicUsize>,
}

/// Reads `REQUEST_ID` when polled; records what its drop sees.
#[derive(Debug)]
struct ReadVar {
    seen_on_drop: Option<Arc<std::sync::Mutex<Option<Arc<String>>>>>,
}

impl Future for ReadVar {
    type Output = Result<Option<Arc<String>>, Infallible>;
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(REQUEST_ID.get()))
    }
}

impl Drop for ReadVar {
    fn drop(&mut self) {
        if let Some(seen) = &self.seen_on_drop {
            *seen.lock().unwrap() = REQUEST_ID.get();
        }
    }
}

impl Service<http::Request<String>> for SetsInCall {
    type Response = Option<Arc<String>>;
    type Error = Infallible;
    type Future = ReadVar;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.ready_polls.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<String>) -> ReadVar {
        REQUEST_ID.set(request.into_body());
        ReadVar { seen_on_drop: None }
    }
}

fn request(body: &str) -> http::Request<String> {
    http::Request::new(body.to_owned())
}

#[test]
fn what_call_sets_synchronously_stays_in_the_request() {
    let mut ctx = Context::new().with_value(&REQUEST_ID, "caller".to_string());
    ctx.run(|| {
        let mut service = ContextLayer::new().layer(SetsInCall::default());
        let response = service.call(request("req-1"));
        assert_eq!(
            REQUEST_ID.get().as_deref().map(String::as_str),
            Some("caller")
        );
        assert_eq!(
            response
                .context()
                .get(&REQUEST_ID)
                .as_deref()
                .map(String::as_str),
            Some("req-1"),
            "the request's context holds what call set"
        );
        let seen = current_thread().block_on(response).unwrap();
        assert_eq!(seen.as_deref().map(String::as_str), Some("req-1"));
        assert_eq!(
            REQUEST_ID.get().as_deref().map(String::as_str),
            Some("caller")
        );
    });
}

#[test]
fn thread_critical_values_set_in_call_are_the_requests_own() {
    // S19, S22: the inner `call` runs as the request's task, so a thread-critical `Local` set
    // there synchronously (a `service_fn` before its future, an interceptor) is allowed in a
    // plain `tokio::spawn` task (hyper's connection task), is seen by the response future, and
    // stays out of the task that called the service (the connection, on keep-alive).
    static CONNECTION: contextvars::Local = contextvars::Local::thread_critical();
    let service = || {
        ContextService::new(service_fn(|_: http::Request<()>| {
            CONNECTION.set("conn", 7_u32);
            async { Ok::<_, Infallible>(CONNECTION.contains("conn")) }
        }))
    };
    let rt = multi_thread(2);
    let seen = rt.block_on(async move {
        let plain = tokio::spawn(async move {
            let mut service = service();
            let response = service.ready().await.unwrap().call(http::Request::new(()));
            response.await.unwrap()
        });
        let in_task = task::spawn(async move {
            let mut service = service();
            let response = service.ready().await.unwrap().call(http::Request::new(()));
            (response.await.unwrap(), CONNECTION.contains("conn"))
        });
        (plain.await.unwrap(), in_task.await.unwrap())
    });
    assert_eq!(seen, (true, (true, false)));
}

#[test]
fn nothing_leaks_to_the_caller_after_the_response_completes() {
    current_thread().block_on(async {
        REQUEST_ID.set("caller".to_string());
        let before = Context::current();
        let service = ContextLayer::new().layer(service_fn(|request: http::Request<String>| {
            REQUEST_ID.set(request.into_body());
            async {
                tokio::task::yield_now().await;
                LEFT_BEHIND.set("by the handler".to_string());
                tokio::task::yield_now().await;
                Ok::<_, Infallible>(REQUEST_ID.get())
            }
        }));
        let seen = service.oneshot(request("req-1")).await.unwrap();
        assert_eq!(seen.as_deref().map(String::as_str), Some("req-1"));
        assert_eq!(
            Context::current(),
            before,
            "the caller's context is unchanged"
        );
        assert!(LEFT_BEHIND.get().is_none());
    });
}

#[test]
fn each_request_starts_from_a_fork_of_the_context_at_call() {
    let mut ctx = Context::new()
        .with_value(&REQUEST_ID, "at call".to_string())
        .with_value(&NOT_INHERITED, "parent only")
        .with_value(&FORKED, vec![1, 2, 3]);
    ctx.run(|| {
        let mut service = ContextService::new(service_fn(|_: http::Request<String>| async {
            Ok::<_, Infallible>((REQUEST_ID.get(), NOT_INHERITED.get(), FORKED.get()))
        }));
        let response = service.call(request(""));
        REQUEST_ID.set("after call".to_string()); // too late for the request
        let (id, not_inherited, forked) = current_thread().block_on(response).unwrap();
        assert_eq!(id.as_deref().map(String::as_str), Some("at call"));
        assert_eq!(
            not_inherited, None,
            "Inherit::None is not carried into the request"
        );
        assert_eq!(
            forked.as_deref(),
            Some(&Vec::new()),
            "Inherit::Fork gives a fresh value"
        );
        assert_eq!(FORKED.get().as_deref(), Some(&vec![1, 2, 3]));
    });
}

#[test]
fn interleaved_requests_on_one_service_never_see_each_other() {
    current_thread().block_on(async {
        let mut service =
            ContextLayer::new().layer(service_fn(|request: http::Request<String>| {
                let id = request.into_body();
                async move {
                    REQUEST_ID.set(id.clone());
                    let mut seen = Vec::new();
                    for _ in 0..10 {
                        tokio::task::yield_now().await; // the other request runs here
                        seen.push(REQUEST_ID.get().map(|v| (*v).clone()));
                    }
                    Ok::<_, Infallible>((id, seen))
                }
            }));
        let a = service.ready().await.unwrap().call(request("a"));
        let b = service.ready().await.unwrap().call(request("b"));
        let (a, b) = tokio::join!(a, b);
        for (id, seen) in [a.unwrap(), b.unwrap()] {
            assert!(
                seen.iter().all(|s| s.as_deref() == Some(id.as_str())),
                "{id}: {seen:?}"
            );
        }
        assert!(REQUEST_ID.get().is_none());
    });
}

#[test]
fn the_response_future_is_dropped_inside_the_request_context() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_on_drop = seen.clone();
    let mut service = ContextService::new(service_fn(move |request: http::Request<String>| {
        REQUEST_ID.set(request.into_body());
        std::future::ready(Ok::<_, Infallible>(ReadVar {
            seen_on_drop: Some(seen_on_drop.clone()),
        }))
    }));
    drop(service.call(request("req-1"))); // cancelled before its first poll
    assert_eq!(
        seen.lock().unwrap().as_deref().map(String::as_str),
        Some("req-1")
    );
    assert!(REQUEST_ID.get().is_none());
}

#[test]
fn the_layer_wraps_a_hand_written_service() {
    let inner = SetsInCall::default();
    let ready_polls = inner.ready_polls.clone();
    let service = ServiceBuilder::new()
        .layer(ContextLayer::new())
        .service(inner);
    let seen = current_thread()
        .block_on(service.oneshot(request("req-7")))
        .unwrap();
    assert_eq!(seen.as_deref().map(String::as_str), Some("req-7"));
    assert_eq!(ready_polls.load(Ordering::Relaxed), 1);
    assert!(REQUEST_ID.get().is_none());
}

#[test]
fn the_response_future_is_scoped_around_the_inner_future() {
    fn future_is_scoped<S, B>()
    where
        S: Service<http::Request<B>>,
        ContextService<S>: Service<http::Request<B>, Future = Scoped<S::Future>>,
    {
    }
    future_is_scoped::<SetsInCall, String>();
    future_is_scoped::<Router, axum::body::Body>();

    let mut service = ContextService::new(SetsInCall::default());
    let _no_box: Scoped<ReadVar> = service.call(request("req-1"));
}

#[test]
fn context_service_is_clone_when_the_inner_service_is() {
    fn is_clone<T: Clone>() {}
    is_clone::<ContextService<SetsInCall>>();
    is_clone::<ContextService<Router>>();
    is_clone::<ContextLayer>();

    let service = ContextService::new(SetsInCall::default());
    let mut copy = service.clone();
    let response = copy.call(request("from the clone"));
    assert!(REQUEST_ID.get().is_none());
    let seen = current_thread().block_on(response).unwrap();
    assert_eq!(seen.as_deref().map(String::as_str), Some("from the clone"));
    assert_eq!(service.get_ref().ready_polls.load(Ordering::Relaxed), 0);
}

/// Pending on its first `poll_ready`, then an error: both must come through unchanged.
#[derive(Default)]
struct NotReady {
    polls: usize,
    context_seen: Vec<Context>,
}

impl Service<http::Request<()>> for NotReady {
    type Response = ();
    type Error = &'static str;
    type Future = std::future::Ready<Result<(), &'static str>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), &'static str>> {
        self.polls += 1;
        self.context_seen.push(Context::current());
        if self.polls == 1 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(Err("overloaded"))
        }
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[test]
fn poll_ready_is_forwarded_to_the_inner_service_untouched() {
    let mut ctx = Context::new().with_value(&REQUEST_ID, "caller".to_string());
    ctx.run(|| {
        let mut service = ContextLayer::new().layer(NotReady::default());
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        assert_eq!(service.poll_ready(&mut cx), Poll::Pending);
        assert_eq!(service.poll_ready(&mut cx), Poll::Ready(Err("overloaded")));
        let inner = service.into_inner();
        assert_eq!(inner.polls, 2);
        let caller = Context::current();
        assert!(
            inner.context_seen.iter().all(|seen| *seen == caller),
            "poll_ready runs in the caller's context, not a request's"
        );
    });
}

#[test]
fn accessors_reach_the_inner_service() {
    let mut service = ContextService::new(NotReady::default());
    service.get_mut().polls = 5;
    assert_eq!(service.get_ref().polls, 5);
    assert_eq!(service.into_inner().polls, 5);
    assert!(format!("{:?}", ContextLayer::new()).contains("ContextLayer"));
}

#[test]
fn requests_called_from_plain_tokio_spawn_tasks_stay_isolated() {
    let runtime = multi_thread(4);
    runtime.block_on(async {
        let service = ContextLayer::new().layer(service_fn(|request: http::Request<String>| {
            REQUEST_ID.set(request.into_body()); // synchronous, in `call`
            async {
                let mut seen = Vec::new();
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                    seen.push(REQUEST_ID.get());
                }
                seen.push(task::spawn(async { REQUEST_ID.get() }).await.unwrap());
                Ok::<_, Infallible>(seen)
            }
        }));
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..2000 {
            let service = service.clone();
            // A plain task, as hyper's connection tasks are: the layer gives the request a
            // context of its own.
            requests.spawn(async move {
                let id = format!("req-{i}");
                let seen = service.oneshot(request(&id)).await.unwrap();
                seen.iter().filter(|s| s.as_deref() != Some(&id)).count()
            });
        }
        let mut mismatches = 0;
        while let Some(done) = requests.join_next().await {
            mismatches += done.unwrap();
        }
        assert_eq!(mismatches, 0);
    });
}

// ---------------------------------------------------------------------------------------------
// A real axum server on 127.0.0.1 with a real HTTP client.

/// Middleware, Django-style: a plain `set`, no `scope`.
async fn set_request_id(request: Request, next: Next) -> Response {
    let id = request.headers()[HEADER].to_str().unwrap().to_owned();
    REQUEST_ID.set(id);
    let mut response = next.run(request).await;
    // After the handler, still this request's id.
    let id = REQUEST_ID.get().map(|id| (*id).clone()).unwrap_or_default();
    response
        .headers_mut()
        .insert(HEADER, HeaderValue::from_str(&id).unwrap());
    response
}

/// Reads the id several times across awaits and from a spawned child; the body lists them all.
async fn echo_id() -> String {
    let mut seen = vec![REQUEST_ID.get()];
    tokio::task::yield_now().await;
    seen.push(REQUEST_ID.get());
    tokio::time::sleep(Duration::from_millis(1)).await;
    seen.push(REQUEST_ID.get());
    let child = task::spawn(async {
        tokio::task::yield_now().await;
        REQUEST_ID.get()
    });
    seen.push(child.await.unwrap());
    seen.push(REQUEST_ID.get());
    seen.iter()
        .map(|id| id.as_deref().map_or("<unset>", String::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

async fn leave_a_value() -> &'static str {
    LEFT_BEHIND.set(REQUEST_ID.get().unwrap().to_string());
    "left"
}

async fn read_left_value() -> String {
    LEFT_BEHIND
        .get()
        .map_or("<unset>".to_string(), |v| (*v).clone())
}

fn app() -> Router {
    Router::new()
        .route("/", get(echo_id))
        .route("/leave", get(leave_a_value))
        .route("/read", get(read_left_value))
        .layer(middleware::from_fn(set_request_id))
        .layer(ContextLayer::new())
}

/// Serves `app()` on a free loopback port; the URL and the server task.
async fn serve() -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app()).await });
    (url, server)
}

fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn axum_server_keeps_every_concurrent_request_in_its_own_context() {
    const REQUESTS: usize = 500;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (url, server) = serve().await;
        let client = client().build().unwrap();
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..REQUESTS {
            let (client, url) = (client.clone(), url.clone());
            requests.spawn(async move {
                let id = format!("req-{i:04}");
                let response = client
                    .get(format!("{url}/"))
                    .header(HEADER, &id)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let echoed = response.headers()[HEADER].to_str().unwrap().to_owned();
                let body = response.text().await.unwrap();
                let seen: Vec<&str> = body.split(',').collect();
                assert_eq!(seen.len(), 5, "{body}");
                let mismatches = seen.iter().filter(|s| **s != id).count();
                mismatches + usize::from(echoed != id)
            });
        }
        let mut mismatches = 0;
        while let Some(done) = requests.join_next().await {
            mismatches += done.expect("request task");
        }
        server.abort();
        assert_eq!(
            mismatches, 0,
            "reads that saw another request's id (or none)"
        );
    })
    .await
    .expect("the test finishes within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_set_by_one_request_is_not_seen_by_the_next_on_the_same_connection() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (url, server) = serve().await;
        // One keep-alive connection, reused for every request.
        let client = client().pool_max_idle_per_host(1).build().unwrap();
        for i in 0..50 {
            let id = format!("req-{i}");
            let left = client.get(format!("{url}/leave")).header(HEADER, &id);
            assert_eq!(left.send().await.unwrap().text().await.unwrap(), "left");
            let read = client.get(format!("{url}/read")).header(HEADER, &id);
            assert_eq!(read.send().await.unwrap().text().await.unwrap(), "<unset>");
        }
        server.abort();
    })
    .await
    .expect("the test finishes within its time limit");
}

// ---------------------------------------------------------------------------------------------
// Across services (S25, feature `opentelemetry`): `ContextLayer::extract` seeds each request's
// context from its `baggage` header; `PropagateLayer` writes the caller's values into outgoing
// requests.

#[cfg(feature = "opentelemetry")]
mod across_services {
    use super::*;
    use contextvars::propagation::Baggage;
    use contextvars::tower::{PropagateLayer, PropagateService};

    static TENANT: ContextVar<String> = ContextVar::new("tenant");
    static ATTEMPT: ContextVar<u32> = ContextVar::new("attempt");

    fn baggage() -> Baggage {
        Baggage::new().var(&TENANT).var(&ATTEMPT)
    }

    fn with_baggage(value: &str) -> http::Request<String> {
        http::Request::builder()
            .header("baggage", value)
            .body(String::new())
            .unwrap()
    }

    /// A server whose handler answers with what its context holds, after a few awaits.
    fn server() -> impl Service<
        http::Request<String>,
        Response = (Option<Arc<String>>, Option<Arc<String>>),
        Error = Infallible,
        Future: Send,
    > + Clone {
        ServiceBuilder::new()
            .layer(ContextLayer::new().extract(baggage()))
            .service(service_fn(|_: http::Request<String>| async {
                tokio::task::yield_now().await;
                let child = task::spawn(async { TENANT.get() }).await.unwrap();
                ATTEMPT.set(99); // a plain set, in the request's own context
                Ok::<_, Infallible>((TENANT.get(), child))
            }))
    }

    #[test]
    fn extract_seeds_each_request_from_its_own_headers() {
        let runtime = multi_thread(4);
        runtime.block_on(async {
            let mut requests = tokio::task::JoinSet::new();
            for i in 0..200 {
                let server = server();
                requests.spawn(async move {
                    let tenant = format!("t-{i}");
                    let header = format!("tenant={tenant},attempt={i}");
                    let (seen, child) = server.oneshot(with_baggage(&header)).await.unwrap();
                    assert_eq!(seen.as_deref(), Some(&tenant));
                    assert_eq!(child.as_deref(), Some(&tenant), "children inherit it");
                });
            }
            while let Some(done) = requests.join_next().await {
                done.unwrap();
            }
        });
        assert!(TENANT.get().is_none());
    }

    #[test]
    fn extract_applies_on_top_of_the_fork_taken_at_call() {
        let service = ContextLayer::new().extract(baggage()).layer(service_fn(
            |_: http::Request<String>| async {
                Ok::<_, Infallible>((TENANT.get(), REQUEST_ID.get(), ATTEMPT.get()))
            },
        ));
        let mut caller = Context::new()
            .with_value(&REQUEST_ID, "from-caller".to_string())
            .with_value(&TENANT, "caller-tenant".to_string());
        caller.run(|| {
            let (tenant, id, attempt) = current_thread()
                .block_on(
                    service
                        .clone()
                        .oneshot(with_baggage("tenant=sent,attempt=bad")),
                )
                .unwrap();
            assert_eq!(tenant.as_deref().map(String::as_str), Some("sent"));
            assert_eq!(id.as_deref().map(String::as_str), Some("from-caller"));
            assert_eq!(attempt, None, "a bad member is skipped");
            // No header: the fork as it was.
            let (tenant, _, _) = current_thread()
                .block_on(service.clone().oneshot(request("")))
                .unwrap();
            assert_eq!(tenant.as_deref().map(String::as_str), Some("caller-tenant"));
            assert_eq!(
                TENANT.get().as_deref().map(String::as_str),
                Some("caller-tenant")
            );
        });
    }

    #[test]
    fn a_plain_context_layer_reads_no_headers() {
        let service = ContextLayer::new().layer(service_fn(|_: http::Request<String>| async {
            Ok::<_, Infallible>(TENANT.get())
        }));
        let seen = current_thread()
            .block_on(service.oneshot(with_baggage("tenant=sent")))
            .unwrap();
        assert_eq!(seen, None);
    }

    #[test]
    fn propagate_layer_injects_the_callers_values_at_call() {
        let mut client = PropagateLayer::new(baggage()).layer(service_fn(
            |request: http::Request<String>| async move {
                Ok::<_, Infallible>(request.headers().get("baggage").cloned())
            },
        ));
        let mut outgoing = with_baggage("vendor=v%25;p,tenant=stale");
        outgoing
            .headers_mut()
            .append("baggage", "other=1".parse().unwrap());
        let future = TENANT.sync_scope("acme".into(), || {
            ATTEMPT.sync_scope(2, || client.call(outgoing))
        });
        // Read at `call`: what the caller does afterwards does not matter.
        TENANT.set("later".into());
        let sent = current_thread().block_on(future).unwrap().unwrap();
        let sent: Vec<&str> = sent.to_str().unwrap().split(',').collect();
        assert_eq!(
            sent[..2],
            ["vendor=v%25;p", "other=1"],
            "foreign members first, kept"
        );
        let mut ours = sent[2..].to_vec();
        ours.sort_unstable();
        assert_eq!(
            ours,
            ["attempt=2", "tenant=acme"],
            "the stale member replaced"
        );
        assert!(ATTEMPT.get().is_none());
    }

    /// The placement the `PropagateLayer` docs ask for: outside a `Buffer`, each request
    /// carries its caller's values; below one, `call` runs in the buffer's worker task and
    /// sends nothing.
    #[test]
    fn propagate_layer_goes_outside_a_buffer() {
        async fn echo_baggage(
            request: http::Request<String>,
        ) -> Result<Option<String>, Infallible> {
            let baggage = request.headers().get("baggage");
            Ok(baggage.map(|v| v.to_str().unwrap().to_owned()))
        }
        let runtime = multi_thread(2);
        runtime.block_on(async {
            let outside = ServiceBuilder::new()
                .layer(PropagateLayer::new(baggage()))
                .buffer(64)
                .service(service_fn(echo_baggage));
            let inside = ServiceBuilder::new()
                .buffer(64)
                .layer(PropagateLayer::new(baggage()))
                .service(service_fn(echo_baggage));
            let callers: Vec<_> = (0..64)
                .map(|i| {
                    let (outside, inside) = (outside.clone(), inside.clone());
                    task::spawn(async move {
                        TENANT.set(format!("t{i}"));
                        let outside = outside.oneshot(request("")).await.unwrap();
                        let inside = inside.oneshot(request("")).await.unwrap();
                        (i, outside, inside)
                    })
                })
                .collect();
            for caller in callers {
                let (i, outside, inside) = caller.await.unwrap();
                assert_eq!(outside, Some(format!("tenant=t{i}")));
                assert_eq!(inside, None, "below the buffer: the worker's empty context");
            }
        });
    }

    #[test]
    fn propagate_then_extract_carries_values_across_a_hop() {
        let server = server();
        let client = PropagateService::new(
            service_fn(move |request: http::Request<String>| server.clone().oneshot(request)),
            baggage(),
        );
        let (seen, child) = current_thread().block_on(async {
            TENANT
                .scope("acme, inc.".into(), client.oneshot(request("")))
                .await
                .unwrap()
        });
        assert_eq!(seen.as_deref().map(String::as_str), Some("acme, inc."));
        assert_eq!(child.as_deref().map(String::as_str), Some("acme, inc."));
    }

    #[test]
    fn propagate_service_forwards_poll_ready_untouched() {
        let mut client = PropagateLayer::new(baggage()).layer(NotReady::default());
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        assert_eq!(client.poll_ready(&mut cx), Poll::Pending);
        assert_eq!(client.poll_ready(&mut cx), Poll::Ready(Err("overloaded")));
        assert_eq!(client.into_inner().polls, 2);
    }

    #[test]
    fn propagate_service_is_clone_and_debug() {
        let client = PropagateService::new(
            service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(()) }),
            baggage(),
        );
        let _copy = client.clone();
        assert!(format!("{client:?}").contains("tenant"));
        let layer = PropagateLayer::new(baggage());
        assert!(format!("{layer:?}").contains("tenant"));
        assert!(format!("{:?}", ContextLayer::new().extract(baggage())).contains("tenant"));
    }
}

/// Serves `service` with hyper's HTTP/1 `serve_connection`, each connection in a plain
/// `tokio::spawn` task, the tower service adapted with hyper-util's `TowerToHyperService`.
fn serve_http1<S, B>(listener: tokio::net::TcpListener, service: S) -> tokio::task::JoinHandle<()>
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Sends `requests` concurrent requests, each with its own `x-id`, and counts the responses
/// whose body is not that id.
async fn bodies_not_echoing_their_id(
    client: reqwest::Client,
    address: std::net::SocketAddr,
    requests: usize,
) -> usize {
    let requests: Vec<_> = (0..requests)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let response = client
                    .get(format!("http://{address}/"))
                    .header("x-id", format!("req-{n}"))
                    .send()
                    .await
                    .unwrap();
                response.text().await.unwrap() != format!("req-{n}")
            })
        })
        .collect();
    let mut wrong = 0;
    for request in requests {
        wrong += usize::from(request.await.unwrap());
    }
    wrong
}

/// `ContextLayer` with hyper alone: each connection served with hyper's own
/// `serve_connection` in a plain `tokio::spawn`, the tower service adapted with hyper-util's
/// `TowerToHyperService`, a handler that does a plain `set` and echoes what it reads back.
#[test]
fn a_bare_hyper_server_gives_every_request_its_own_context() {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};

    static HYPER_ID: ContextVar<String> = ContextVar::new("hyper_id");

    let rt = multi_thread(2);
    let mismatches = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let handler = service_fn(|request: http::Request<Incoming>| async move {
            let id = request.headers()["x-id"].to_str().unwrap().to_owned();
            HYPER_ID.set(id); // Django-style: the request's own context
            tokio::task::yield_now().await;
            let seen = task::spawn(async { HYPER_ID.get_cloned() }).await.unwrap();
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                seen.unwrap_or_default(),
            ))))
        });
        let service = ContextLayer::new().layer(handler);
        let server = serve_http1(listener, service);
        let mismatches = bodies_not_echoing_their_id(reqwest::Client::new(), address, 200).await;
        server.abort();
        mismatches
    });
    assert_eq!(mismatches, 0);
}

/// The shape of a warp service (the `tower` module docs: warp takes no tower layer in
/// `warp::serve`): `warp::service(filter)` builds the filter chain's future in `call` (where
/// `warp::trace` writes "processing request"), the filter that sets runs at the chain's first
/// poll, and `warp::log::custom`'s callback runs when the reply is ready. Served through
/// `ContextLayer` with hyper over keep-alive connections: every line written after the filter
/// that sets carries the request's own value, and the line written at `call` carries none.
#[test]
fn a_warp_shaped_service() {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use std::sync::Mutex;

    static WARP_ID: ContextVar<String> = ContextVar::new("warp_id");
    // (the request's id, what the line read)
    static AT_CALL: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());
    static LOGGED: Mutex<Vec<(String, Option<String>)>> = Mutex::new(Vec::new());

    let rt = multi_thread(2);
    let bodies_wrong = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let filter_chain = service_fn(|request: http::Request<Incoming>| {
            AT_CALL.lock().unwrap().push(WARP_ID.get_cloned()); // `warp::trace`'s first line
            let id = request.headers()["x-id"].to_str().unwrap().to_owned();
            async move {
                WARP_ID.set(id.clone()); // the filter at the front of the chain
                tokio::task::yield_now().await;
                let child = task::spawn(async { WARP_ID.get_cloned() }).await.unwrap();
                let log = WARP_ID.get_cloned(); // `warp::log::custom`, the reply ready
                LOGGED.lock().unwrap().push((id, log));
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                    child.unwrap_or_default(),
                ))))
            }
        });
        let service = ContextLayer::new().layer(filter_chain);
        let server = serve_http1(listener, service);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(8) // keep-alive: many requests per connection
            .build()
            .unwrap();
        let wrong = bodies_not_echoing_their_id(client, address, 300).await;
        server.abort();
        wrong
    });
    assert_eq!(bodies_wrong, 0);
    let at_call = AT_CALL.lock().unwrap();
    assert_eq!(at_call.len(), 300);
    assert!(
        at_call.iter().all(Option::is_none),
        "set only once the chain runs"
    );
    let logged = LOGGED.lock().unwrap();
    assert_eq!(logged.len(), 300);
    for (id, log) in logged.iter() {
        assert_eq!(
            log.as_ref(),
            Some(id),
            "the reply's log line carries its own request's id"
        );
    }
}

/// A value per connection with hyper alone (the `tower` module docs, "What the request sees"):
/// set in the connection's task, it reaches HTTP/1 requests but no HTTP/2 request, because
/// hyper runs each HTTP/2 stream in a task of its own (`TokioExecutor`: a plain `tokio::spawn`)
/// and `TowerToHyperService` calls the service there; set by a middleware of the connection's
/// own service, below `ContextLayer`, it reaches every request of both.
#[test]
fn a_value_per_connection_reaches_http2_requests_only_from_the_connections_service() {
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    static CONN_ID: ContextVar<u64> = ContextVar::new("conn_id");

    /// Serves one connection; `CONN_ID` is set in its service (`in_service`) or in its task.
    async fn serve_one(listener: tokio::net::TcpListener, http2: bool, in_service: bool, id: u64) {
        let (stream, _) = listener.accept().await.unwrap();
        let handler = service_fn(|_: http::Request<Incoming>| async {
            tokio::task::yield_now().await;
            let seen = CONN_ID.get().map_or("none".to_owned(), |id| id.to_string());
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(seen))))
        });
        let service = ServiceBuilder::new()
            .layer(ContextLayer::new())
            .map_request(move |request: http::Request<Incoming>| {
                if in_service {
                    CONN_ID.set(id);
                }
                request
            })
            .service(handler);
        let service = TowerToHyperService::new(service);
        let io = TokioIo::new(stream);
        // The connection's task has a context of its own (`task::spawn`), so the set is allowed.
        task::spawn(async move {
            if !in_service {
                CONN_ID.set(id);
            }
            let _ = match http2 {
                true => {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                }
                false => {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                }
            };
        })
        .await
        .unwrap();
    }

    /// Sends 20 requests over one connection (HTTP/2: all at once) and returns the bodies.
    async fn fetch(address: std::net::SocketAddr, http2: bool) -> Vec<String> {
        let io = TokioIo::new(tokio::net::TcpStream::connect(address).await.unwrap());
        let request = || http::Request::new(Empty::<Bytes>::new());
        let mut responses = Vec::new();
        if http2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let sends: Vec<_> = (0..20)
                .map(|_| tokio::spawn(sender.clone().send_request(request())))
                .collect();
            for send in sends {
                responses.push(send.await.unwrap().unwrap());
            }
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            for _ in 0..20 {
                sender.ready().await.unwrap();
                responses.push(sender.send_request(request()).await.unwrap());
            }
        }
        let mut bodies = Vec::new();
        for response in responses {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            bodies.push(String::from_utf8(body.to_vec()).unwrap());
        }
        bodies
    }

    let rt = multi_thread(2);
    let seen = rt.block_on(async {
        let test = async {
            let mut seen = Vec::new();
            for (id, http2, in_service) in [
                (1, false, false),
                (2, true, false),
                (3, false, true),
                (4, true, true),
            ] {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let address = listener.local_addr().unwrap();
                let server = tokio::spawn(serve_one(listener, http2, in_service, id));
                let mut bodies = fetch(address, http2).await;
                bodies.dedup();
                seen.push(bodies);
                server.abort();
            }
            seen
        };
        tokio::time::timeout(Duration::from_secs(60), test).await
    });
    let seen = seen.expect("the test finishes within its time limit");
    assert_eq!(seen, [["1"], ["none"], ["3"], ["4"]]);
}

#[test]
#[cfg(feature = "futures")]
fn a_streamed_body_sees_the_request_only_when_wrapped() {
    // S22 covers `call` and the response future. A body stream is polled by the server after
    // that future has finished, outside the request's context; `Scoped` over the stream (with
    // the `futures` feature) gives it a fork of the request's context.
    async fn streamed(wrap: bool) -> axum::body::Body {
        let chunk = futures::stream::once(async {
            let id = REQUEST_ID
                .get()
                .map_or("none".to_owned(), |id| (*id).clone());
            Ok::<_, Infallible>(id)
        });
        match wrap {
            true => axum::body::Body::from_stream(Scoped::new(Context::current().fork(), chunk)),
            false => axum::body::Body::from_stream(chunk),
        }
    }
    async fn set_id(request: Request, next: Next) -> Response {
        REQUEST_ID.set(request.uri().path().trim_start_matches('/').to_owned());
        next.run(request).await
    }
    let app = Router::new()
        .route("/wrapped", get(|| streamed(true)))
        .route("/plain", get(|| streamed(false)))
        .layer(
            ServiceBuilder::new()
                .layer(ContextLayer::new())
                .layer(middleware::from_fn(set_id)),
        );
    let bodies = current_thread().block_on(async {
        let mut bodies = Vec::new();
        for path in ["/wrapped", "/plain"] {
            let request = Request::builder().uri(path).body(axum::body::Body::empty());
            let response = app.clone().oneshot(request.unwrap()).await.unwrap();
            // The response future is done: the body is read as a server reads it, afterwards.
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            bodies.push(String::from_utf8(body.to_vec()).unwrap());
        }
        bodies
    });
    assert_eq!(bodies, ["wrapped", "none"]);
}

/// The client side of the same (the `tower` module docs, "Streamed bodies"): hyper's HTTP/2
/// client, under tonic's `Channel` too, polls a streamed request body (a client-streaming
/// call's messages) in the connection's task, then, once the body is not ready, in a task of
/// its own (`proto::h2::client`'s `poll_pipe`), never in the caller's: the stream reads none of
/// the caller's values unless it is wrapped. The unwrapped case records hyper's behaviour.
#[test]
fn a_streamed_request_body_sees_the_caller_only_when_wrapped() {
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::{Bytes, Incoming};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let rt = multi_thread(2);
    let echoed = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let echo = hyper::service::service_fn(|request: http::Request<Incoming>| async {
                let body = request.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(body)))
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), echo)
                .await;
        });
        let io = TokioIo::new(tokio::net::TcpStream::connect(address).await.unwrap());
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(connection);
        let echoed = task::spawn(async move {
            REQUEST_ID.set("caller".to_owned());
            let mut echoed = Vec::new();
            for wrap in [true, false] {
                // Each message reads the variable when the client polls it.
                let messages = futures::stream::iter(0..3).map(|_| {
                    let id = REQUEST_ID.get_cloned().unwrap_or_else(|| "none".to_owned());
                    Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(id + ";")))
                });
                let body = StreamBody::new(messages);
                let response = match wrap {
                    true => {
                        let body = Scoped::new(Context::current().fork(), body);
                        sender
                            .clone()
                            .send_request(http::Request::new(BodyExt::boxed(body)))
                            .await
                    }
                    false => {
                        sender
                            .clone()
                            .send_request(http::Request::new(BodyExt::boxed(body)))
                            .await
                    }
                };
                let body = response.unwrap().into_body().collect().await.unwrap();
                echoed.push(String::from_utf8(body.to_bytes().to_vec()).unwrap());
            }
            echoed
        });
        let echoed = tokio::time::timeout(Duration::from_secs(60), echoed).await;
        server.abort();
        echoed
            .expect("the test finishes within its time limit")
            .unwrap()
    });
    assert_eq!(echoed, ["caller;caller;caller;", "none;none;none;"]);
}

#[test]
fn a_scoped_body_polls_in_its_context_and_keeps_size_hint_and_trailers() {
    use futures::StreamExt;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    // Frames read the variable as they are polled; the last frame is trailers.
    let frames = futures::stream::iter(0..2).map(|n| {
        let frame = match n {
            0 => http_body::Frame::data(axum::body::Bytes::from(
                REQUEST_ID.get_cloned().unwrap_or_default(),
            )),
            _ => {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("x-done", http::HeaderValue::from_static("yes"));
                http_body::Frame::trailers(trailers)
            }
        };
        Ok::<_, Infallible>(frame)
    });
    let ctx = Context::new().with_value(&REQUEST_ID, "req-1".to_owned());
    let body = Scoped::new(ctx.clone(), http_body_util::StreamBody::new(frames));
    let collected = current_thread().block_on(BodyExt::collect(body)).unwrap();
    assert_eq!(collected.trailers().unwrap()["x-done"], "yes");
    assert_eq!(collected.to_bytes(), "req-1");
    assert!(REQUEST_ID.get().is_none()); // nothing leaked to the caller

    // `size_hint` and `is_end_stream` run in the context too.
    struct ReadsTheId;
    impl http_body::Body for ReadsTheId {
        type Data = axum::body::Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Infallible>>> {
            Poll::Ready(None)
        }
        fn is_end_stream(&self) -> bool {
            REQUEST_ID.get().is_none()
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(
                REQUEST_ID.with(|id| id.map_or(0, |id| id.len() as u64)),
            )
        }
    }
    let scoped = Scoped::new(ctx, ReadsTheId);
    assert_eq!(scoped.size_hint().exact(), Some(5)); // "req-1"
    assert!(!scoped.is_end_stream());
    assert_eq!(ReadsTheId.size_hint().exact(), Some(0)); // outside the context: no id
    assert!(ReadsTheId.is_end_stream());
}

#[test]
fn mapping_every_response_onto_a_scoped_body_covers_unwrapped_streams() {
    // The "Streamed bodies" recipe: one `map_response` right inside `ContextLayer` instead of
    // a `Scoped` in every handler; the size hint (content-length) of a plain body survives.
    async fn scope_body(response: Response) -> Response {
        let context = Context::current();
        response.map(|body| axum::body::Body::new(Scoped::new(context, body)))
    }
    async fn set_id(request: Request, next: Next) -> Response {
        REQUEST_ID.set(request.uri().path().trim_start_matches('/').to_owned());
        next.run(request).await
    }
    async fn streamed() -> axum::body::Body {
        axum::body::Body::from_stream(futures::stream::once(async {
            Ok::<_, Infallible>(REQUEST_ID.get_cloned().unwrap_or("none".to_owned()))
        }))
    }
    let app = Router::new()
        .route("/stream", get(streamed))
        .route("/plain", get(|| async { "plain" }))
        .layer(
            ServiceBuilder::new()
                .layer(ContextLayer::new())
                .layer(middleware::map_response(scope_body))
                .layer(middleware::from_fn(set_id)),
        );
    let (bodies, hints) = current_thread().block_on(async {
        let (mut bodies, mut hints) = (Vec::new(), Vec::new());
        for path in ["/stream", "/plain"] {
            let request = Request::builder().uri(path).body(axum::body::Body::empty());
            let response = app.clone().oneshot(request.unwrap()).await.unwrap();
            hints.push(http_body::Body::size_hint(response.body()).exact());
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            bodies.push(String::from_utf8(body.to_vec()).unwrap());
        }
        (bodies, hints)
    });
    assert_eq!(bodies, ["stream", "plain"]);
    assert_eq!(hints, [None, Some(5)]);
}

// ---------------------------------------------------------------------------------------------
// WebSockets: axum runs the `on_upgrade` callback in a plain `tokio::spawn`ed task.

/// Answers each message with the ids the session reads: its own, then a `task::spawn` child's.
async fn ws_session(mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    while let Some(Ok(Message::Text(_))) = socket.recv().await {
        let child = task::spawn(async { REQUEST_ID.get() });
        let seen = [REQUEST_ID.get(), child.await.unwrap()]
            .map(|id| id.map_or("<unset>".to_owned(), |id| (*id).clone()))
            .join(",");
        if socket.send(Message::Text(seen.into())).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_session_keeps_the_requests_values_only_when_handed_its_context() {
    use axum::extract::ws::WebSocketUpgrade;
    use contextvars::FutureExt;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    const SESSIONS: usize = 100;
    const MESSAGES: usize = 3;
    tokio::time::timeout(Duration::from_secs(120), async {
        let app = Router::new()
            // The documented way: the request's context, taken in the handler.
            .route(
                "/handed",
                get(|ws: WebSocketUpgrade| async move {
                    let ctx = Context::current().fork();
                    ws.on_upgrade(move |socket| ws_session(socket).with_context(ctx))
                }),
            )
            // What users write first.
            .route(
                "/plain",
                get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(ws_session) }),
            )
            .layer(middleware::from_fn(set_request_id))
            .layer(ContextLayer::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let mut sessions = tokio::task::JoinSet::new();
        for i in 0..SESSIONS {
            sessions.spawn(async move {
                let id = format!("ws-{i:03}");
                let path = if i % 2 == 0 { "handed" } else { "plain" };
                let mut request = format!("ws://{address}/{path}")
                    .into_client_request()
                    .unwrap();
                request
                    .headers_mut()
                    .insert(HEADER, HeaderValue::from_str(&id).unwrap());
                let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
                let mut replies = Vec::new();
                for _ in 0..MESSAGES {
                    socket.send(Message::text("which request?")).await.unwrap();
                    let reply = socket.next().await.unwrap().unwrap();
                    replies.push(reply.into_text().unwrap().to_string());
                }
                (path, id, replies)
            });
        }
        let (mut handed, mut plain) = (0, 0);
        while let Some(done) = sessions.join_next().await {
            let (path, id, replies) = done.expect("session task");
            let expected = match path {
                "handed" => format!("{id},{id}"),
                _ => "<unset>,<unset>".to_owned(), // the request's values are not there
            };
            for reply in replies {
                assert_eq!(reply, expected, "{path} session of {id}");
                *(if path == "handed" {
                    &mut handed
                } else {
                    &mut plain
                }) += 1;
            }
        }
        server.abort();
        assert_eq!(
            (handed, plain),
            (SESSIONS / 2 * MESSAGES, SESSIONS / 2 * MESSAGES)
        );
    })
    .await
    .expect("the test finishes within its time limit");
}

/// A `set` in a plain upgrade callback is refused (S21): the session ends, and the client sees
/// the connection reset without a closing handshake (the `tower` module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_in_a_plain_upgrade_callback_ends_the_session_with_a_reset() {
    use axum::extract::ws::WebSocketUpgrade;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Error, Message, error::ProtocolError};

    tokio::time::timeout(Duration::from_secs(60), async {
        let app = Router::new()
            .route(
                "/ws",
                get(|ws: WebSocketUpgrade| async move {
                    ws.on_upgrade(|mut socket| async move {
                        let _ = socket.recv().await;
                        REQUEST_ID.set("in the callback".to_owned()); // refused: panics
                        let _ = socket.send("survived".into()).await;
                    })
                }),
            )
            .layer(ContextLayer::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
            .await
            .unwrap();
        socket.send(Message::text("hi")).await.unwrap();
        let next = socket.next().await;
        server.abort();
        assert!(
            matches!(
                next,
                Some(Err(Error::Protocol(
                    ProtocolError::ResetWithoutClosingHandshake
                )))
            ),
            "the client saw {next:?}"
        );
    })
    .await
    .expect("the test finishes within its time limit");
}

/// `route_layer(ContextLayer)`, or the layer on a nested `Router`, goes inside every layer of the
/// outer router's `.layer` calls (module docs, "Where the layer goes"): a middleware there that
/// sets a variable is refused (S21); on the outer router, above the same middleware, it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_layer_and_nested_layer_sit_inside_the_outer_layers() {
    let request = || {
        Request::builder()
            .uri("/api/x")
            .header(HEADER, "req-1")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let route_layer = Router::new()
        .route("/api/x", get(echo_id))
        .route_layer(ContextLayer::new())
        .layer(middleware::from_fn(set_request_id));
    let nested = Router::new()
        .nest(
            "/api",
            Router::new()
                .route("/x", get(echo_id))
                .layer(ContextLayer::new()),
        )
        .layer(middleware::from_fn(set_request_id));
    for app in [route_layer, nested] {
        // In a task of its own, as a server runs it (`block_on`'s future is not a task).
        let served = tokio::spawn(app.oneshot(request())).await;
        let panic = served
            .expect_err("the middleware's set is refused")
            .into_panic();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("(S21)"), "{message}");
    }
    let outer = Router::new()
        .nest("/api", Router::new().route("/x", get(echo_id)))
        .layer(
            ServiceBuilder::new()
                .layer(ContextLayer::new())
                .layer(middleware::from_fn(set_request_id)),
        );
    let response = tokio::spawn(outer.oneshot(request()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.headers()[HEADER], "req-1");
}

/// lambda_runtime's `run_concurrent`: worker tasks started with a plain `tokio::spawn`, each
/// taking the next event and calling the service, one after the other. Without the layer a
/// `set` is refused (S21); with it, an event without a tenant reads none, not the previous
/// event's on the same worker.
#[test]
fn a_lambda_shaped_worker_loop() {
    static TENANT: ContextVar<String> = ContextVar::new("lambda_tenant");

    async fn handler(event: http::Request<String>) -> Result<Option<String>, Infallible> {
        if !event.body().is_empty() {
            TENANT.set(event.body().clone());
        }
        tokio::task::yield_now().await;
        Ok(TENANT.get_cloned())
    }

    async fn workers<S>(service: S) -> Vec<std::thread::Result<Vec<(String, Option<String>)>>>
    where
        S: Service<http::Request<String>, Response = Option<String>, Error = Infallible>,
        S: Clone + Send + 'static,
        S::Future: Send,
    {
        let events: Vec<String> = (0..200)
            .map(|i| {
                if i % 3 == 0 {
                    String::new()
                } else {
                    format!("t{i}")
                }
            })
            .collect();
        let queue = Arc::new(std::sync::Mutex::new(events));
        let mut handles = Vec::new();
        for _ in 0..4 {
            let (queue, mut service) = (queue.clone(), service.clone());
            handles.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let Some(event) = queue.lock().unwrap().pop() else {
                        return seen;
                    };
                    let ready = service.ready().await.unwrap();
                    seen.push((event.clone(), ready.call(request(&event)).await.unwrap()));
                }
            }));
        }
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.map_err(|e| e.into_panic()));
        }
        results
    }

    let rt = multi_thread(2);
    let layered = rt.block_on(workers(ContextLayer::new().layer(service_fn(handler))));
    let mut served = 0;
    for (event, seen) in layered.into_iter().flat_map(Result::unwrap) {
        assert_eq!(seen, Some(event).filter(|tenant| !tenant.is_empty()));
        served += 1;
    }
    assert_eq!(served, 200);
    let bare = rt.block_on(workers(service_fn(handler)));
    for worker in bare {
        let panic = worker.unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("(S21)"), "{message}");
    }
}

/// The shape of a Leptos SSR page under `ContextLayer` (the guide's "Leptos" paragraph),
/// served over HTTP: the shell renders in the handler; a resource is polled once inline and
/// then in a task its executor spawns (`any_spawner`'s `init_tokio`: plain `tokio::spawn`);
/// the `Suspense` fragment is rendered as the server polls the streamed body. With a spawner
/// that is `task::spawn` and the body mapped onto a `Scoped` right inside `ContextLayer`, every
/// part reads the request's id; with neither, only the shell and the inline poll do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leptos_shaped_streamed_page_reads_the_request_with_a_scoped_spawner_and_body() {
    type Spawn = fn(Pin<Box<dyn Future<Output = ()> + Send>>);
    fn id() -> String {
        REQUEST_ID.get_cloned().unwrap_or_else(|| "none".into())
    }
    async fn page(spawn: Spawn) -> axum::body::Body {
        use futures::{FutureExt, StreamExt};
        let shell = id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut resource = Box::pin(async move {
            let before = id();
            // Pending on the inline poll, always: a 1 ms sleep could be over by then, and the
            // resource would finish inline, never reaching the spawner.
            tokio::task::yield_now().await;
            drop(tx.send(format!("{before}/{}", id())));
        });
        if resource.as_mut().now_or_never().is_none() {
            spawn(resource);
        }
        let fragment = async move {
            let resource = rx.await.unwrap();
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(format!(" {resource} {}", id()))
        };
        let chunks = futures::stream::iter([Ok::<_, Infallible>(shell)])
            .chain(futures::stream::once(fragment));
        axum::body::Body::from_stream(chunks)
    }
    async fn scope_body(response: Response) -> Response {
        let context = Context::current();
        response.map(|body| axum::body::Body::new(Scoped::new(context, body)))
    }
    let plain: Spawn = |f| drop(tokio::spawn(f));
    let scoped: Spawn = |f| drop(task::spawn(f));
    let app = Router::new()
        .route("/plain", get(move || page(plain)))
        .route("/scoped", get(move || page(scoped)))
        .layer(middleware::from_fn(set_request_id));
    let apps = [
        ("/plain", app.clone().layer(ContextLayer::new())),
        (
            "/scoped",
            app.layer(middleware::map_response(scope_body))
                .layer(ContextLayer::new()),
        ),
    ];
    let client = client().build().unwrap();
    let mut seen = Vec::new();
    for (path, app) in apps {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..50 {
            let (client, url) = (client.clone(), url.clone());
            requests.spawn(async move {
                let id = format!("req-{i:02}");
                let response = client.get(url).header(HEADER, &id).send().await.unwrap();
                let body = response.text().await.unwrap();
                body.replace(&id, "ID")
            });
        }
        let mut bodies: Vec<String> = requests.join_all().await;
        bodies.dedup();
        server.abort();
        seen.push(bodies);
    }
    assert_eq!(seen[0], ["ID ID/none none"]); // shell, resource before/after its wait, fragment
    assert_eq!(seen[1], ["ID ID/ID ID"]);
}
