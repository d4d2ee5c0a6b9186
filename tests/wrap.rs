//! S23: `Context::wrap` runs each call of an `Fn` in its own fork of the captured context —
//! the way into rayon, thread pools and callbacks.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use contextvars::{Context, ContextVar, Inherit};
use rayon::prelude::*;

static REQUEST: ContextVar<String> = ContextVar::new("request");
static ITEM: ContextVar<u64> = ContextVar::new("item");

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// What every thread of `pool` has in its own context right now.
fn pool_leftovers(pool: &rayon::ThreadPool) -> Vec<usize> {
    pool.broadcast(|_| Context::current().len())
}

#[test]
fn rayon_par_iter_over_10000_items_sees_the_request_and_never_another_items_value() {
    let pool = pool(4);
    let mismatches = AtomicU32::new(0);
    let ctx = Context::new().with_value(&REQUEST, "req-7".to_string());
    let job = ctx.wrap(|n: u64| {
        // A value left by an earlier call on this pool thread would show here.
        if ITEM.get().is_some() || REQUEST.get().as_deref().map(String::as_str) != Some("req-7") {
            mismatches.fetch_add(1, Relaxed);
        }
        ITEM.set(n);
        std::thread::yield_now();
        if ITEM.get().as_deref() != Some(&n) {
            mismatches.fetch_add(1, Relaxed);
        }
        n
    });
    let total: u64 = pool.install(|| (0..10_000u64).into_par_iter().map(job).sum());
    assert_eq!(total, (0..10_000u64).sum::<u64>());
    assert_eq!(mismatches.load(Relaxed), 0);
    assert_eq!(
        pool_leftovers(&pool),
        vec![0; 4],
        "nothing stays on the pool threads"
    );
}

/// The guide's rayon section: a pool thread waiting in a nested `join` / `par_iter` runs other
/// items' jobs meanwhile; wrapped, each enters its own context and the interrupted call finds
/// its own values when the join returns.
#[test]
fn nested_join_and_par_iter_wrapped_keep_each_item_apart_while_threads_steal() {
    let pool = pool(4);
    let mismatches = AtomicU32::new(0);
    let check = |seen: u64, want: u64| {
        if seen != want {
            mismatches.fetch_add(1, Relaxed);
        }
    };
    pool.install(|| {
        (0..3_000u64)
            .into_par_iter()
            .for_each(Context::new().wrap(|n: u64| {
                ITEM.set(n);
                let (a, b) = rayon::join(
                    Context::current().fork().bind(|| {
                        std::thread::yield_now();
                        *ITEM.value()
                    }),
                    Context::current().fork().bind(|| {
                        (0..4u64)
                            .into_par_iter()
                            .map(Context::current().wrap(|_: u64| {
                                std::thread::yield_now();
                                *ITEM.value()
                            }))
                            .sum::<u64>()
                    }),
                );
                check(a, n);
                check(b, 4 * n);
                check(*ITEM.value(), n); // after the join: this item's value, not a stolen one's
            }));
    });
    assert_eq!(mismatches.load(Relaxed), 0);
    assert_eq!(pool_leftovers(&pool), vec![0; 4]);
}

#[test]
fn without_wrap_a_rayon_closure_sees_nothing_of_the_caller() {
    // The contrast S23 fixes: pool threads have their own (empty) contexts.
    let pool = pool(2);
    REQUEST.sync_scope("req-1".to_string(), || {
        let seen: Vec<bool> =
            pool.install(|| (0..100).into_par_iter().map(|_| REQUEST.is_set()).collect());
        assert!(seen.iter().all(|set| !set));
    });
}

#[test]
fn what_one_call_sets_is_seen_by_no_other_call_nor_the_caller() {
    let ctx = Context::new().with_value(&ITEM, 0);
    let call = ctx.wrap(|n: u64| {
        let before = *ITEM.get().unwrap();
        ITEM.set(n);
        before
    });
    assert_eq!(call(1), 0);
    assert_eq!(call(2), 0);
    let clone = call.clone();
    assert_eq!(clone(3), 0);
    assert!(ITEM.get().is_none());
}

#[test]
fn thread_critical_values_set_in_a_call_stay_in_that_call() {
    // S23 over S19: each call is a task of its own, so a thread-critical `Local` starts empty
    // in every call and what a call sets ends with it, on a pool thread as on the caller's.
    static CONNECTION: contextvars::Local = contextvars::Local::thread_critical();
    CONNECTION.set("conn", 0_u64); // the calling thread's own
    let call = Context::new().wrap(|n: u64| {
        let before = CONNECTION.contains("conn");
        CONNECTION.set("conn", n);
        before
    });
    assert!(!call(1), "a call does not see the thread's");
    assert!(!call(2), "nor an earlier call's");
    assert_eq!(CONNECTION.get::<u64>("conn").map(|v| *v), Ok(0));
    let pool = pool(2);
    let seen: Vec<bool> = pool.install(|| (0..100).into_par_iter().map(&call).collect());
    assert!(seen.iter().all(|seen| !seen), "{seen:?}");
    let left: Vec<bool> = pool.broadcast(|_| CONNECTION.contains("conn"));
    assert_eq!(left, [false, false], "nothing left on the pool threads");
}

#[test]
fn a_bound_job_is_a_task_of_its_own_and_leaves_the_pool_thread_nothing() {
    // `bind` is `wrap` for an `FnOnce`: a thread-critical value set by one request's job on a
    // pool thread must not be seen by the next request's job on that thread.
    static CONNECTION: contextvars::Local = contextvars::Local::thread_critical();
    let pool = pool(1);
    let alice = Context::new().with_value(&REQUEST, "alice".to_string());
    let set_by_alice = pool.install(alice.bind(|| {
        CONNECTION.set("conn", "alice's connection".to_string());
        CONNECTION.contains("conn")
    }));
    assert!(set_by_alice);
    let bob = Context::new().with_value(&REQUEST, "bob".to_string());
    let seen_by_bob = pool.install(bob.bind(|| CONNECTION.get::<String>("conn").ok()));
    assert_eq!(seen_by_bob, None, "bob's job saw alice's connection");
    assert_eq!(pool.broadcast(|_| CONNECTION.contains("conn")), [false]);
}

#[test]
fn a_bound_job_in_a_plain_spawn_blocking_may_write_thread_critical_values() {
    static CONNECTION: contextvars::Local = contextvars::Local::thread_critical();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let job = Context::new().bind(|| {
        CONNECTION.set("conn", 1_u32);
        REQUEST.set("in the job".to_string());
        (
            CONNECTION.get::<u32>("conn").map(|v| *v),
            REQUEST.get_cloned(),
        )
    });
    let seen = rt.block_on(rt.spawn_blocking(job)).unwrap();
    assert_eq!(seen, (Ok(1), Some("in the job".to_string())));
}

#[test]
fn the_captured_context_is_taken_at_wrap_not_at_each_call() {
    REQUEST.set("before".to_string());
    let call = Context::current().wrap(|()| REQUEST.get().map(|r| (*r).clone()));
    REQUEST.set("after".to_string());
    assert_eq!(call(()).as_deref(), Some("before"));
    assert_eq!(
        std::thread::spawn(move || call(()))
            .join()
            .unwrap()
            .as_deref(),
        Some("before")
    );
}

#[test]
fn each_call_applies_the_fork_policies() {
    static BUFFER: ContextVar<Mutex<Vec<u64>>> =
        ContextVar::new("buffer").inherit(Inherit::Fork(|_| Mutex::new(Vec::new())));
    let ctx = Context::new().with_value(&BUFFER, Mutex::new(vec![99]));
    let call = ctx.clone().wrap(|n: u64| {
        let buffer = BUFFER.get().unwrap();
        let mut buffer = buffer.lock().unwrap();
        buffer.push(n);
        buffer.clone()
    });
    let results: Vec<Vec<u64>> = pool(3).install(|| (0..50).into_par_iter().map(call).collect());
    for (n, seen) in results.into_iter().enumerate() {
        assert_eq!(
            seen,
            vec![n as u64],
            "each call got a fresh buffer of its own"
        );
    }
    assert_eq!(*ctx.get(&BUFFER).unwrap().lock().unwrap(), vec![99]);
}

#[test]
fn wrap_is_send_sync_and_clone_when_f_is() {
    fn assert_pool_ready<F: Fn(u8) -> u8 + Send + Sync + Clone + 'static>(_: &F) {}
    let call = Context::new().wrap(|n: u8| n + 1);
    assert_pool_ready(&call);
    assert_eq!(call(1), 2);
}

#[test]
fn a_panicking_call_leaves_the_pool_thread_clean() {
    let pool = pool(2);
    let call = Context::new().wrap(|n: u64| {
        ITEM.set(n);
        assert!(n % 2 == 0, "odd item");
        n
    });
    let outcomes: Vec<bool> = pool.install(|| {
        (0..20u64)
            .into_par_iter()
            .map(|n| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(n))).is_ok())
            .collect()
    });
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 10);
    assert_eq!(pool_leftovers(&pool), vec![0; 2]);
}

#[test]
fn many_callers_wrapping_their_own_contexts_stay_apart() {
    let pool = pool(4);
    let seen = Mutex::new(HashSet::new());
    pool.install(|| {
        (0..200u64).into_par_iter().for_each(|request| {
            let ctx = Context::new().with_value(&REQUEST, format!("req-{request}"));
            let tag = ctx.wrap(|i: u64| format!("{}#{i}", REQUEST.get().unwrap()));
            let tags: Vec<String> = (0..10u64).into_par_iter().map(tag).collect();
            for (i, t) in tags.iter().enumerate() {
                assert_eq!(t, &format!("req-{request}#{i}"));
            }
            seen.lock().unwrap().insert(request);
        });
    });
    assert_eq!(seen.lock().unwrap().len(), 200);
}

#[test]
fn a_pool_whose_threads_refuse_own_context_writes_refuses_an_unwrapped_job_only() {
    static JOB: ContextVar<u32> = ContextVar::new("job");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(|_| contextvars::thread::refuse_own_context_writes())
        .build()
        .unwrap();
    // An unwrapped job at the top of a pool thread: refused, naming the fix.
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| JOB.set(1));
    }))
    .expect_err("an unwrapped job's set is refused");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("`ContextVar::set` in work that has no context of its own")
            && message.contains("`contextvars::Context::current().fork().bind(job)`"),
        "{message}"
    );
    // Wrapped and bound jobs write in contexts of their own, and leave the threads nothing.
    let sum: u32 = pool.install(|| {
        (0..1_000u32)
            .into_par_iter()
            .map(Context::current().wrap(|i: u32| {
                assert!(JOB.get().is_none(), "another item's value");
                JOB.set(i);
                *JOB.get().unwrap()
            }))
            .sum()
    });
    assert_eq!(sum, (0..1_000u32).sum::<u32>());
    assert_eq!(
        pool.install(Context::new().bind(|| {
            JOB.set(7);
            JOB.get().map(|v| *v)
        })),
        Some(7)
    );
    let left: Vec<bool> = pool.broadcast(|_| JOB.get().is_none());
    assert_eq!(left, [true, true], "a pool thread kept a value");
}
