//! Five workers, five universes.
//!
//! Each worker sets `who_am_i`, takes a snapshot of its context with `copy_context()`, and runs
//! a closure in the snapshot that overwrites the value. The snapshot changes; the worker's own
//! value does not: a copied context is a parallel universe.
//!
//! Run with `cargo run --example universes`.

use contextvars::{ContextVar, copy_context};

static WHO_AM_I: ContextVar<String> = ContextVar::new("who_am_i");

fn who() -> String {
    WHO_AM_I.with(|v| v.cloned().unwrap_or_else(|| "nobody".into()))
}

fn main() {
    let workers: Vec<_> = (1..=5)
        .map(|n| {
            contextvars::thread::spawn(move || {
                WHO_AM_I.set(format!("worker-{n}"));

                let mut snapshot = copy_context();
                snapshot.run(|| WHO_AM_I.set(format!("worker-{n} in another universe")));

                let in_snapshot = snapshot.get(&WHO_AM_I).expect("set in the snapshot");
                let line = format!(
                    "{:<9} snapshot says {:<32} my own value is still {}",
                    who(),
                    format!("{in_snapshot:?},"),
                    who()
                );
                assert_eq!(who(), format!("worker-{n}"));
                assert_eq!(*in_snapshot, format!("worker-{n} in another universe"));
                line
            })
        })
        .collect();

    for worker in workers {
        println!("{}", worker.join().expect("worker panicked"));
    }
    println!("main thread: {}", who());
}
