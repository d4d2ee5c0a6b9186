//! What isolation by default costs (issue 10): the S21 write check and `runtime::propagate`'s
//! poll hooks, each beside its baseline in the same run.
//!
//! `cargo bench --bench isolation -- --warm-up-time 1 --measurement-time 3`; with
//! `RUSTFLAGS="--cfg tokio_unstable"` the hooked-poll rows are measured too. Figures in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use contextvars::{Context, ContextVar, FutureExt};
use criterion::{Criterion, criterion_group, criterion_main};

static VAR: ContextVar<u64> = ContextVar::new("bench");

/// `set` + `reset` of one var: the write path S21 guards.
fn set_reset() {
    let token = VAR.set(black_box(1));
    VAR.reset(token).unwrap();
}

fn write_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("write path (S21 check)");
    // No context entered: the check asks Tokio whether this is a task (it is not).
    group.bench_function("set + reset, thread's own context", |b| b.iter(set_reset));
    // A context entered: the check is one counter read.
    Context::new().run(|| {
        group.bench_function("set + reset, inside run", |b| b.iter(set_reset));
    });
    // What the check adds at most, alone.
    group.bench_function("tokio::task::try_id() alone", |b| {
        b.iter(|| black_box(tokio::task::try_id()))
    });
    // Inside a task's Scoped poll, as a request handler writes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.bench_function("set + reset, inside a Scoped task poll", |b| {
        b.iter_custom(|iters| {
            rt.block_on(
                rt.spawn(
                    async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            set_reset();
                        }
                        start.elapsed()
                    }
                    .with_context(Context::new()),
                ),
            )
            .unwrap()
        })
    });
    group.finish();
}

/// Time per poll of a task that yields `iters` times on `rt`, spawned by `spawn`.
fn per_poll(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    wrap: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> tokio::task::JoinHandle<()>,
) -> Duration {
    let _entered = rt.enter();
    let start = Instant::now();
    let task = wrap(Box::pin(async move {
        for _ in 0..iters {
            tokio::task::yield_now().await;
        }
    }));
    rt.block_on(task).unwrap();
    start.elapsed()
}

fn task_polls(c: &mut Criterion) {
    let mut group = c.benchmark_group("task poll (yield_now, current-thread runtime)");
    let plain = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.bench_function("plain task", |b| {
        b.iter_custom(|iters| per_poll(&plain, iters, tokio::spawn))
    });
    group.bench_function("task in a Scoped (task::spawn)", |b| {
        b.iter_custom(|iters| per_poll(&plain, iters, contextvars::task::spawn))
    });
    #[cfg(tokio_unstable)]
    {
        let hooked =
            contextvars::runtime::propagate(&mut tokio::runtime::Builder::new_current_thread())
                .build()
                .unwrap();
        group.bench_function("plain task, runtime::propagate", |b| {
            b.iter_custom(|iters| per_poll(&hooked, iters, tokio::spawn))
        });
        let multi =
            contextvars::runtime::propagate(&mut tokio::runtime::Builder::new_multi_thread())
                .worker_threads(2)
                .build()
                .unwrap();
        let multi_plain = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        group.bench_function("plain task, multi-thread", |b| {
            b.iter_custom(|iters| per_poll(&multi_plain, iters, tokio::spawn))
        });
        group.bench_function("plain task, multi-thread, runtime::propagate", |b| {
            b.iter_custom(|iters| per_poll(&multi, iters, tokio::spawn))
        });
    }
    group.finish();
}

criterion_group!(benches, write_path, task_polls);
criterion_main!(benches);
