//! The shallow-copy pitfall, and its two fixes.
//!
//! Copies of a context share their values (`Arc`s). A value with interior mutability, here a
//! `Mutex<Counter>`, is therefore shared by every copy — and a *default* is one object for the
//! whole program. Python users meet the same thing with a mutable default.
//!
//! Run with `cargo run --example shallow_copy`.

use std::sync::Mutex;

use contextvars::{ContextVar, Inherit};

#[derive(Debug, Default)]
struct Counter {
    hits: u32,
}

/// Three workers each count "their" hits.
fn three_workers(var: &'static ContextVar<Mutex<Counter>>) -> Vec<u32> {
    let workers: Vec<_> = (0..3)
        .map(|_| {
            contextvars::thread::spawn(move || {
                var.with(|counter| {
                    counter
                        .expect("a default or a binding")
                        .lock()
                        .unwrap()
                        .hits += 1
                });
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    // What each worker's counter says now (they may all be one counter).
    (0..3)
        .map(|_| var.with(|c| c.expect("a default or a binding").lock().unwrap().hits))
        .collect()
}

// 1. The pitfall: the default counter is created once and shared by everybody.
static SHARED: ContextVar<Mutex<Counter>> =
    ContextVar::with_default("shared", || Mutex::new(Counter::default()));

// 2. Fix one: bind a fresh value where each unit of work starts.
static PER_WORKER: ContextVar<Mutex<Counter>> = ContextVar::new("per_worker");

// 3. Fix two: bind once in the parent and let every fork get its own fresh counter.
static FORKED: ContextVar<Mutex<Counter>> =
    ContextVar::new("forked").inherit(Inherit::Fork(|_parent| Mutex::new(Counter::default())));

fn main() {
    let seen = three_workers(&SHARED);
    println!("pitfall  (shared default):      every counter reads {seen:?}  <- all 3, one object");
    assert_eq!(seen, [3, 3, 3]);

    let per_worker: Vec<u32> = (0..3)
        .map(|_| {
            contextvars::thread::spawn(|| {
                PER_WORKER.set(Mutex::new(Counter::default())); // fresh value per worker
                PER_WORKER.with(|c| {
                    let mut c = c.expect("just set").lock().unwrap();
                    c.hits += 1;
                    c.hits
                })
            })
        })
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    println!("fix 1    (bind per worker):     each worker counted   {per_worker:?}");
    assert_eq!(per_worker, [1, 1, 1]);

    FORKED.set(Mutex::new(Counter::default())); // bound, so the Fork policy applies
    let forked: Vec<u32> = (0..3)
        .map(|_| {
            contextvars::thread::spawn(|| {
                FORKED.with(|c| {
                    let mut c = c.expect("forked from the parent").lock().unwrap();
                    c.hits += 1;
                    c.hits
                })
            })
        })
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    let parent = FORKED.with(|c| c.expect("bound above").lock().unwrap().hits);
    println!(
        "fix 2    (Inherit::Fork):       each worker counted   {forked:?}, parent still {parent}"
    );
    assert_eq!(forked, [1, 1, 1]);
    assert_eq!(parent, 0);
}
