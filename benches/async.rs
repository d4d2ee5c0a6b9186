//! Future wrappers and task spawning, next to tokio's and OpenTelemetry's in the same run.
//!
//! `cargo bench --bench async` (see BENCHMARKS.md for the figures and the exact command).

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context as TaskContext, Poll, Waker};

use contextvars::{Context, ContextVar};
use criterion::{Criterion, criterion_group, criterion_main};

/// A future that is always pending and does nothing: what is measured is the wrapper.
struct Pending;

impl Future for Pending {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        Poll::Pending
    }
}

tokio::task_local! {
    static TASK_LOCAL: u64;
}

static VAR: ContextVar<u64> = ContextVar::new("var");

#[derive(Debug)]
struct OtelValue(#[allow(dead_code)] u64);

fn poll_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll (always-pending future)");
    let mut cx = TaskContext::from_waker(Waker::noop());

    let mut bare = pin!(Pending);
    group.bench_function("baseline: bare future", |b| {
        b.iter(|| bare.as_mut().poll(&mut cx))
    });

    let mut task_local = pin!(TASK_LOCAL.scope(1, Pending));
    group.bench_function("tokio task_local TaskLocalFuture", |b| {
        b.iter(|| task_local.as_mut().poll(&mut cx))
    });

    let otel_cx = opentelemetry::Context::new().with_value(OtelValue(1));
    let mut otel = pin!(opentelemetry::context::FutureExt::with_context(
        Pending, otel_cx
    ));
    group.bench_function("opentelemetry WithContext", |b| {
        b.iter(|| otel.as_mut().poll(&mut cx))
    });

    let mut scoped = pin!(contextvars::FutureExt::with_context(
        Pending,
        Context::new().with_value(&VAR, 1)
    ));
    group.bench_function("contextvars Scoped", |b| {
        b.iter(|| scoped.as_mut().poll(&mut cx))
    });
    group.finish();
}

fn spawn_join(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("spawn + join (current-thread runtime)");
    group.bench_function("baseline: tokio::spawn", |b| {
        b.to_async(&rt)
            .iter(|| async { tokio::spawn(async { 1 }).await.unwrap() })
    });
    // The 10 vars are set in the bench thread's own context, which `block_on` polls in.
    let vars: &'static [ContextVar<u64>] =
        Box::leak((0..10).map(|_| ContextVar::new("v")).collect());
    for (i, var) in vars.iter().enumerate() {
        var.set(i as u64);
    }
    group.bench_function("contextvars::task::spawn (10 vars set)", |b| {
        b.to_async(&rt)
            .iter(|| async { contextvars::task::spawn(async { 1 }).await.unwrap() })
    });
    group.finish();
}

fn bridges(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("bridge round trip (multi-thread runtime, 10 vars set)");
    group.bench_function("baseline: tokio::task::spawn_blocking + await", |b| {
        b.to_async(&rt)
            .iter(|| async { tokio::task::spawn_blocking(|| 1).await.unwrap() })
    });
    group.bench_function("task::sync_to_async", |b| {
        b.to_async(&rt)
            .iter(|| contextvars::task::sync_to_async(|| VAR.get()))
    });
    group.bench_function("task::sync_to_async, one set written back", |b| {
        b.to_async(&rt).iter(|| {
            contextvars::task::sync_to_async(|| {
                VAR.set(2);
            })
        })
    });
    // sync -> async -> sync: the inner sync code runs on the thread blocked in async_to_sync.
    group.bench_function(
        "task::sync_to_async(async_to_sync(sync_to_async)) nested",
        |b| {
            b.to_async(&rt).iter(|| {
                contextvars::task::sync_to_async(|| {
                    contextvars::task::async_to_sync(contextvars::task::sync_to_async(|| VAR.get()))
                })
            })
        },
    );
    group.finish();
}

criterion_group!(benches, poll_overhead, spawn_join, bridges);
criterion_main!(benches);
