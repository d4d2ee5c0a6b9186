//! `Local::get` / `set` next to a `thread_local!` `RefCell<HashMap<String, Arc<…>>>` doing the
//! same work, in the same run.
//!
//! `cargo bench --bench local` (see BENCHMARKS.md for the figures and the exact command).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use contextvars::Local;
use criterion::{Criterion, criterion_group, criterion_main};

type Attributes = HashMap<String, Arc<dyn Any + Send + Sync>>;

thread_local! {
    static BASELINE: RefCell<Attributes> = RefCell::new(HashMap::new());
}

static LOCAL: Local = Local::new();

fn baseline_get(name: &str) -> Option<Arc<u64>> {
    BASELINE.with(|attributes| {
        attributes
            .borrow()
            .get(name)
            .cloned()
            .and_then(|value| value.downcast::<u64>().ok())
    })
}

fn local(c: &mut Criterion) {
    // Ten attributes each, as a request-scoped Local typically holds a handful.
    for i in 0..10u64 {
        let name = format!("attr{i}");
        BASELINE.with(|a| a.borrow_mut().insert(name.clone(), Arc::new(i)));
        LOCAL.set(&name, i);
    }
    let mut group = c.benchmark_group("Local (10 attributes)");
    group.bench_function("baseline: thread_local RefCell<HashMap> get", |b| {
        b.iter(|| baseline_get(black_box("attr3")))
    });
    group.bench_function("Local::get", |b| {
        b.iter(|| LOCAL.get::<u64>(black_box("attr3")))
    });
    group.bench_function("baseline: thread_local RefCell<HashMap> set", |b| {
        b.iter(|| {
            BASELINE.with(|a| {
                a.borrow_mut()
                    .insert(black_box("attr3").to_owned(), Arc::new(black_box(7u64)))
            })
        })
    });
    group.bench_function("Local::set", |b| {
        b.iter(|| LOCAL.set(black_box("attr3"), black_box(7u64)))
    });
    group.finish();
}

criterion_group!(benches, local);
criterion_main!(benches);
