//! One `Local`, three workers: each stores a unique id and reads back its own.
//!
//! First with threads, then with tasks on a runtime that runs them all on one thread. The same
//! program with a `thread_local!` works for the threads but reads the wrong id under tasks,
//! because the tasks share the thread.
//!
//! Run with `cargo run --example local`.

use std::cell::RefCell;
use std::time::Duration;

use contextvars::{Local, task};

static WORKER: Local = Local::new();

thread_local! {
    static THREAD_WORKER: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Different sleep times make the workers interleave.
fn sleep_for(n: u64) -> Duration {
    Duration::from_millis(30 - 10 * n)
}

fn main() {
    println!("== threads, contextvars::Local");
    let threads: Vec<_> = (0..3)
        .map(|n| {
            std::thread::spawn(move || {
                WORKER.set("id", format!("thread-{n}"));
                std::thread::sleep(sleep_for(n));
                let mine = WORKER.get::<String>("id").expect("set above");
                println!("worker {n} reads {mine}");
                assert_eq!(*mine, format!("thread-{n}"));
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a Tokio runtime");

    println!("\n== tasks on one thread, contextvars::Local");
    runtime.block_on(async {
        let tasks: Vec<_> = (0..3)
            .map(|n| {
                task::spawn(async move {
                    WORKER.set("id", format!("task-{n}"));
                    tokio::time::sleep(sleep_for(n)).await;
                    let mine = WORKER.get::<String>("id").expect("set above");
                    println!("worker {n} reads {mine}");
                    assert_eq!(*mine, format!("task-{n}"));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });

    println!("\n== tasks on one thread, thread_local!");
    let wrong = runtime.block_on(async {
        let tasks: Vec<_> = (0..3)
            .map(|n| {
                tokio::spawn(async move {
                    THREAD_WORKER.with(|w| *w.borrow_mut() = Some(format!("task-{n}")));
                    tokio::time::sleep(sleep_for(n)).await;
                    let read = THREAD_WORKER
                        .with(|w| w.borrow().clone())
                        .unwrap_or_default();
                    let ok = read == format!("task-{n}");
                    println!(
                        "worker {n} reads {read}{}",
                        if ok { "" } else { "   <- wrong" }
                    );
                    !ok
                })
            })
            .collect();
        let mut wrong = 0;
        for t in tasks {
            wrong += usize::from(t.await.unwrap());
        }
        wrong
    });
    println!("\nthread_local! gave {wrong} of 3 tasks another task's id; Local gave none.");
}
