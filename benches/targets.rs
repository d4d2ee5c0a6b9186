//! Every row of the performance targets, each next to its baseline in the same criterion run.
//!
//! `cargo bench --bench targets` (figures, ratios and targets in BENCHMARKS.md). Ratios, not
//! nanoseconds, are what to compare: the machine is noisy, a baseline in the same run is not.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use contextvars::{Context, ContextVar, Local, copy_context};
use criterion::{Criterion, criterion_group, criterion_main};

/// An OpenTelemetry context is keyed by type: `Key<N>` gives as many distinct keys as needed.
#[derive(Debug, Clone, Copy)]
struct Key<const N: usize>(#[allow(dead_code)] u64);

/// Adds `Key<N>` values to an OpenTelemetry context, for each listed `N`.
macro_rules! otel_with_keys {
    ($cx:expr; $($n:literal)*) => {{
        let cx = $cx;
        $(let cx = cx.with_value(Key::<$n>($n));)*
        cx
    }};
}

fn otel_context(keys: usize) -> opentelemetry::Context {
    let cx = opentelemetry::Context::new();
    match keys {
        10 => otel_with_keys!(cx; 0 1 2 3 4 5 6 7 8 9),
        100 => {
            otel_with_keys!(cx; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99)
        }
        _ => unimplemented!("10 or 100 keys"),
    }
}

/// `n` fresh variables, each bound in the bench thread's own context.
fn bind_vars(n: usize) -> &'static [ContextVar<u64>] {
    let vars: &'static [ContextVar<u64>] =
        Box::leak((0..n).map(|_| ContextVar::new("bench")).collect());
    for (i, var) in vars.iter().enumerate() {
        var.set(i as u64);
    }
    vars
}

tokio::task_local! {
    static TASK_LOCAL: Arc<u64>;
    static TASK_LOCAL_U64: u64;
}

thread_local! {
    static TL_CELL: Cell<u64> = const { Cell::new(0) };
    static TL_MAP: RefCell<std::collections::HashMap<String, Arc<dyn std::any::Any + Send + Sync>>> =
        RefCell::new(std::collections::HashMap::new());
}

/// Runs `f` in a fresh context, so that each group starts with exactly the vars it binds.
fn in_fresh_context(f: impl FnOnce()) {
    Context::new().run(f)
}

fn reads(c: &mut Criterion) {
    in_fresh_context(|| {
        let mut group = c.benchmark_group("read, 10 vars set");
        let vars = bind_vars(10);
        let var = &vars[3];
        let otel = otel_context(10).attach();
        TASK_LOCAL.sync_scope(Arc::new(3), || {
            group.bench_function("tokio task_local with (borrow the Arc)", |b| {
                b.iter(|| TASK_LOCAL.with(|v| black_box(**v)))
            });
            group.bench_function("tokio task_local with + Arc clone", |b| {
                b.iter(|| TASK_LOCAL.with(|v| v.clone()))
            });
        });
        group.bench_function("opentelemetry Context::current() + get", |b| {
            b.iter(|| opentelemetry::Context::current().get::<Key<3>>().copied())
        });
        group.bench_function("ContextVar::with", |b| b.iter(|| var.with(|v| v.copied())));
        group.bench_function("ContextVar::get", |b| b.iter(|| var.get()));
        drop(otel);
        group.finish();
    });
}

fn writes(c: &mut Criterion) {
    in_fresh_context(|| {
        let mut group = c.benchmark_group("write, 10 vars set");
        let vars = bind_vars(10);
        let var = &vars[3];
        group.bench_function(
            "opentelemetry current_with_value().attach() + detach",
            |b| {
                let _base = otel_context(10).attach();
                b.iter(|| drop(opentelemetry::Context::current_with_value(Key::<3>(7)).attach()))
            },
        );
        group.bench_function("ContextVar set + reset (unshared)", |b| {
            b.iter(|| var.reset(var.set(black_box(7))))
        });
        group.finish();
    });
    for n in [10, 100] {
        in_fresh_context(|| {
            let mut group = c.benchmark_group(format!("write with a snapshot alive, {n} vars"));
            let vars = bind_vars(n);
            let var = &vars[3];
            group.bench_function("opentelemetry current_with_value", |b| {
                let _base = otel_context(n).attach();
                b.iter(|| opentelemetry::Context::current_with_value(Key::<3>(7)))
            });
            group.bench_function("copy_context + ContextVar::set", |b| {
                // The snapshot makes the set copy; dropping it is part of the cost, as dropping
                // the new context is part of OpenTelemetry's.
                b.iter(|| {
                    let snapshot = copy_context();
                    var.set(black_box(7));
                    snapshot
                })
            });
            group.finish();
        });
    }
}

fn copies(c: &mut Criterion) {
    in_fresh_context(|| {
        let mut group = c.benchmark_group("copy, 1000 vars set");
        let arc = Arc::new(0u64);
        group.bench_function("Arc::clone", |b| b.iter(|| arc.clone()));
        bind_vars(1000);
        group.bench_function("copy_context", |b| b.iter(copy_context));
        group.finish();
    });
}

fn runs(c: &mut Criterion) {
    let mut group = c.benchmark_group("enter and leave");
    // The same shape as `run(|| black_box(1))`: swap in, run the closure's body, swap out.
    // Without the `black_box` in between, nothing observes the value swapped in and the
    // compiler removes both swaps: the loop measured nothing but itself (0.28 ns).
    group.bench_function("thread_local Cell swap in + out around black_box", |b| {
        b.iter(|| {
            let previous = TL_CELL.replace(black_box(1));
            black_box(1);
            TL_CELL.set(previous);
        })
    });
    // The same shape in a library: a value swapped into another crate's thread-local and back
    // (the `Cell` above is this crate's own, which the compiler reaches without a call).
    group.bench_function("tokio task_local sync_scope(empty closure)", |b| {
        b.iter(|| TASK_LOCAL_U64.sync_scope(black_box(1), || black_box(1)))
    });
    let mut ctx = Context::new();
    group.bench_function("Context::run(empty closure)", |b| {
        b.iter(|| ctx.run(|| black_box(1)))
    });
    group.finish();
}

/// A future that is always pending and does nothing: what is measured is the wrapper.
struct Pending;

impl Future for Pending {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        Poll::Pending
    }
}

fn polls(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll");
    let mut cx = TaskContext::from_waker(Waker::noop());
    let mut task_local = pin!(TASK_LOCAL.scope(Arc::new(1), Pending));
    group.bench_function("tokio TaskLocalFuture", |b| {
        b.iter(|| task_local.as_mut().poll(&mut cx))
    });
    let mut otel = pin!(opentelemetry::context::FutureExt::with_context(
        Pending,
        otel_context(10)
    ));
    group.bench_function("opentelemetry WithContext", |b| {
        b.iter(|| otel.as_mut().poll(&mut cx))
    });
    let vars: Vec<ContextVar<u64>> = (0..10).map(|_| ContextVar::new("v")).collect();
    let mut ctx = Context::new();
    for var in &vars {
        ctx = ctx.with_value(var, 1);
    }
    let mut scoped = pin!(contextvars::FutureExt::with_context(Pending, ctx));
    group.bench_function("contextvars Scoped", |b| {
        b.iter(|| scoped.as_mut().poll(&mut cx))
    });
    group.finish();
}

fn spawns(c: &mut Criterion) {
    in_fresh_context(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut group = c.benchmark_group("spawn + join, current-thread runtime");
        group.bench_function("tokio::spawn", |b| {
            b.to_async(&rt)
                .iter(|| async { tokio::spawn(async { 1 }).await.unwrap() })
        });
        bind_vars(10);
        group.bench_function("contextvars::task::spawn (10 vars set)", |b| {
            b.to_async(&rt)
                .iter(|| async { contextvars::task::spawn(async { 1 }).await.unwrap() })
        });
        group.finish();
    });
}

fn locals(c: &mut Criterion) {
    in_fresh_context(|| {
        static LOCAL: Local = Local::new();
        for i in 0..10u64 {
            let name = format!("attr{i}");
            TL_MAP.with(|m| m.borrow_mut().insert(name.clone(), Arc::new(i)));
            LOCAL.set(&name, i);
        }
        let mut group = c.benchmark_group("Local, 10 attributes");
        group.bench_function("thread_local RefCell<HashMap<String, Arc>> get", |b| {
            b.iter(|| {
                TL_MAP.with(|m| {
                    m.borrow()
                        .get(black_box("attr3"))
                        .cloned()
                        .and_then(|v| v.downcast::<u64>().ok())
                })
            })
        });
        group.bench_function("Local::get", |b| {
            b.iter(|| LOCAL.get::<u64>(black_box("attr3")))
        });
        group.bench_function("thread_local RefCell<HashMap<String, Arc>> insert", |b| {
            b.iter(|| {
                TL_MAP.with(|m| {
                    m.borrow_mut()
                        .insert(black_box("attr3").to_owned(), Arc::new(black_box(3u64)))
                })
            })
        });
        group.bench_function("Local::set", |b| {
            b.iter(|| LOCAL.set(black_box("attr3"), black_box(3u64)))
        });
        group.finish();
    });
}

criterion_group!(benches, reads, writes, copies, runs, polls, spawns, locals);
criterion_main!(benches);
