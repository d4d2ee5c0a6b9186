//! Per-request overhead of `tower::ContextLayer`: the same trivial service with and without the
//! layer, in the same run and group.
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

criterion_group!(benches, per_request);
criterion_main!(benches);
