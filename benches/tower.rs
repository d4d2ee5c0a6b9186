//! Per-request overhead of `tower::ContextLayer`: the same trivial service with and without the
//! layer, in the same run and group; and the work one request of `scripts/load.sh`'s hello-world
//! servers does around its handler (`examples/load-servers`), both ways, without the HTTP.
//!
//! `cargo bench --bench tower --features tower` (see BENCHMARKS.md for the figures).

use std::convert::Infallible;
use std::hint::black_box;

use contextvars::ContextVar;
use contextvars::tower::ContextLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::{Layer, ServiceExt, service_fn};

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
static REQUEST_ID_STRING: ContextVar<String> = ContextVar::new("request_id");

fn per_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tower: one request (trivial service_fn, oneshot)");

    // The service does nothing but return its request's body. `ServiceFn` of a capture-less
    // closure is `Copy`; the layered services are cloned, which copies the same bytes.
    let bare =
        service_fn(|request: Request<u64>| async move { Ok::<_, Infallible>(request.into_body()) });
    group.bench_function("baseline: no layer", |b| {
        b.to_async(&rt)
            .iter(|| bare.oneshot(Request::new(black_box(1))))
    });

    let layered = ContextLayer::new().layer(bare);
    group.bench_function("ContextLayer", |b| {
        b.to_async(&rt)
            .iter(|| layered.clone().oneshot(Request::new(black_box(1))))
    });

    // What a request-id middleware adds on top: one `set` in the request's own context.
    let sets = ContextLayer::new().layer(service_fn(|request: Request<u64>| async move {
        REQUEST_ID.set(request.into_body());
        Ok::<_, Infallible>(())
    }));
    group.bench_function("ContextLayer + one set in the request", |b| {
        b.to_async(&rt)
            .iter(|| sets.clone().oneshot(Request::new(black_box(1))))
    });
    group.finish();
}

/// `examples/load-servers` without axum and the socket: what `plain` and `contextvars` do per
/// request besides HTTP, so that their difference is the crate's cost in a request of the load
/// test (`scripts/load.sh`), measured without the load generator's noise. Both make the request
/// id, build the response and spawn one child task; `contextvars` adds `ContextLayer`, the `set`,
/// 5 `get`s and spawns with `task::spawn`. A current-thread runtime, so that the child runs on
/// the request's thread as it does on the servers' one worker (a multi-thread runtime driven by
/// `block_on` would time the wake-up of another thread instead).
fn load_server_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("the load test's request, without HTTP");

    let plain = service_fn(|request: Request<u64>| async move {
        black_box(request.into_body().to_string());
        let child = tokio::spawn(async { black_box(1_usize) });
        let k = child.await.expect("child task");
        Ok::<_, Infallible>(format!("hello, world {k}\n"))
    });
    group.bench_function("plain", |b| {
        b.to_async(&rt)
            .iter(|| plain.oneshot(Request::new(black_box(1))))
    });

    let contextvars = ContextLayer::new().layer(service_fn(|request: Request<u64>| async move {
        REQUEST_ID_STRING.set(request.into_body().to_string());
        for _ in 0..5 {
            black_box(REQUEST_ID_STRING.get());
        }
        let child = contextvars::task::spawn(async { black_box(1_usize) });
        let k = child.await.expect("child task");
        Ok::<_, Infallible>(format!("hello, world {k}\n"))
    }));
    group.bench_function("contextvars", |b| {
        b.to_async(&rt)
            .iter(|| contextvars.clone().oneshot(Request::new(black_box(1))))
    });
    group.finish();
}

criterion_group!(benches, per_request, load_server_request);
criterion_main!(benches);
