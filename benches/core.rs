//! Core operations next to a `thread_local!` baseline measured in the same run.
//!
//! `cargo bench --bench core` (see BENCHMARKS.md for the figures and the exact command).

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::sync::Arc;

use contextvars::{Context, ContextVar, copy_context};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

thread_local! {
    static TL_VALUE: RefCell<Option<Arc<u64>>> = const { RefCell::new(None) };
    static TL_CELL: Cell<u64> = const { Cell::new(0) };
}

/// Makes a fresh context with `n` vars bound, entered as the bench thread's current context
/// for the length of `f`; `f` gets the first var.
fn with_vars(n: usize, f: impl FnOnce(&'static ContextVar<u64>)) {
    let vars: &'static [ContextVar<u64>] =
        Box::leak((0..n.max(1)).map(|_| ContextVar::new("bench")).collect());
    let mut ctx = Context::new();
    ctx.run(|| {
        for (i, var) in vars.iter().enumerate().take(n) {
            var.set(i as u64);
        }
        f(&vars[0]);
    });
}

fn read(c: &mut Criterion) {
    TL_VALUE.with(|v| *v.borrow_mut() = Some(Arc::new(1)));
    let mut group = c.benchmark_group("read (10 vars set)");
    group.bench_function("baseline: thread_local RefCell borrow", |b| {
        b.iter(|| TL_VALUE.with(|v| v.borrow().as_deref().copied()))
    });
    group.bench_function("baseline: thread_local RefCell + Arc clone", |b| {
        b.iter(|| TL_VALUE.with(|v| v.borrow().clone()))
    });
    with_vars(10, |var| {
        group.bench_function("ContextVar::with", |b| b.iter(|| var.with(|v| v.copied())));
        group.bench_function("ContextVar::get", |b| b.iter(|| var.get()));
    });
    group.finish();
}

fn set(c: &mut Criterion) {
    let mut group = c.benchmark_group("set");
    group.bench_function("baseline: thread_local RefCell replace", |b| {
        b.iter(|| TL_VALUE.with(|v| v.borrow_mut().replace(Arc::new(black_box(2)))))
    });
    for n in [1, 10, 100] {
        with_vars(n, |var| {
            group.bench_with_input(BenchmarkId::new("unshared", n), &n, |b, _| {
                b.iter(|| var.set(black_box(2)))
            });
            // Every iteration takes a snapshot, so every `set` copies the path it changes; the
            // snapshot is dropped outside the timing. Includes the O(1) copy itself.
            group.bench_with_input(BenchmarkId::new("copy_context + set", n), &n, |b, _| {
                b.iter_with_large_drop(|| {
                    let snapshot = copy_context();
                    var.set(black_box(2));
                    snapshot
                })
            });
        });
    }
    with_vars(10, |var| {
        group.bench_function("set+reset (10 vars)", |b| {
            b.iter(|| var.reset(var.set(black_box(3))))
        });
    });
    group.finish();
}

fn copy(c: &mut Criterion) {
    let mut group = c.benchmark_group("copy_context");
    let arc = Arc::new(0u64);
    group.bench_function("baseline: Arc::clone", |b| b.iter(|| arc.clone()));
    group.bench_function("baseline: thread_local RefCell + Arc clone", |b| {
        b.iter(|| TL_VALUE.with(|v| v.borrow().clone()))
    });
    for n in [0, 10, 1000] {
        with_vars(n, |_| {
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(copy_context)
            });
        });
    }
    group.finish();
}

fn run(c: &mut Criterion) {
    let mut group = c.benchmark_group("run(empty closure)");
    group.bench_function("baseline: thread_local Cell swap in + out", |b| {
        b.iter(|| {
            let previous = TL_CELL.replace(black_box(1));
            TL_CELL.set(previous);
        })
    });
    let mut ctx = Context::new();
    group.bench_function("Context::run", |b| b.iter(|| ctx.run(|| black_box(1))));
    group.finish();
}

/// The first `set` in a new context, as every request's context makes (it allocates the
/// value's `Arc`, puts it in the array a dropped context left on the thread, and takes the
/// context's token id), on one thread, and while a second thread does the same: the figure
/// shows whether the two threads contend on shared state. The baseline allocates and frees an
/// `Arc`, which the first `set` does for its value.
fn first_set(c: &mut Criterion) {
    use std::sync::atomic::{AtomicBool, Ordering};

    static VAR: ContextVar<u64> = ContextVar::new("bench");
    fn first_set_in_new_context() {
        let mut ctx = Context::new();
        ctx.run(|| drop(black_box(VAR.set(black_box(1)))));
        drop(black_box(ctx));
    }

    let mut group = c.benchmark_group("first set in a new context");
    group.bench_function("baseline: Arc::new + drop", |b| {
        b.iter(|| drop(black_box(Arc::new(black_box(1_u64)))))
    });
    group.bench_function("one thread", |b| b.iter(first_set_in_new_context));
    let stop = Arc::new(AtomicBool::new(false));
    let other = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1_000 {
                    first_set_in_new_context();
                }
            }
        }
    });
    group.bench_function("while another thread does the same", |b| {
        b.iter(first_set_in_new_context)
    });
    stop.store(true, Ordering::Relaxed);
    other.join().expect("the other thread");
    group.finish();
}

criterion_group!(benches, read, set, copy, run, first_set);
criterion_main!(benches);
