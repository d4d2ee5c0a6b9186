//! `Local` (S18, S19): the applicable cases of asgiref's `tests/test_local.py`, restated, plus
//! concurrency and type checks.
//!
//! Not ported: `test_local_cycle` (no GC cycles in Rust), `test_data_name_protected` (attribute
//! names never clash with the storage here) and `test_new_returns_specialized_subclass` (one
//! type).
#![cfg(feature = "tokio")]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use contextvars::{Context, FutureExt, Local, LocalError, task};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `fut` as a task in a fresh context.
fn run<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime();
    rt.block_on(rt.spawn(fut.with_context(Context::new())))
        .unwrap()
}

fn get_i64(local: &Local, name: &str) -> Result<i64, LocalError> {
    local.get::<i64>(name).map(|v| *v)
}

fn get_str(local: &Local, name: &str) -> Result<&'static str, LocalError> {
    local.get::<&'static str>(name).map(|v| *v)
}

fn missing(name: &str) -> LocalError {
    LocalError::Missing { name: name.into() }
}

// ---------- basics ----------

#[test]
fn task_basics_set_get_remove_and_missing_errors() {
    static L: Local = Local::new();
    run(async {
        assert_eq!(get_i64(&L, "foo"), Err(missing("foo")));
        L.set("foo", 1i64);
        assert_eq!(get_i64(&L, "foo"), Ok(1));
        L.remove("foo").unwrap();
        assert_eq!(get_i64(&L, "foo"), Err(missing("foo")));
        assert_eq!(L.remove("foo"), Err(missing("foo")));
    });
}

#[test]
fn thread_basics_set_get_remove() {
    static L: Local = Local::new();
    std::thread::spawn(|| {
        assert!(get_i64(&L, "foo").is_err());
        L.set("foo", 2i64);
        assert_eq!(get_i64(&L, "foo"), Ok(2));
        L.remove("foo").unwrap();
        assert!(!L.contains("foo"));
    })
    .join()
    .unwrap();
}

#[test]
fn plain_threads_do_not_share_attributes_either_way() {
    static L: Local = Local::new();
    Context::new().run(|| {
        L.set("foo", 8i64);
        let inside = std::thread::spawn(|| {
            let leaked = L.contains("foo");
            L.set("foo", 123i64);
            (leaked, get_i64(&L, "foo"))
        })
        .join()
        .unwrap();
        assert_eq!(inside, (false, Ok(123)));
        assert_eq!(get_i64(&L, "foo"), Ok(8));
    });
}

#[test]
fn thread_run_in_a_copy_of_the_context_sees_the_copy_and_writes_only_to_it() {
    // asgiref `test_local_not_inherited_by_new_thread` forces a copied context on the child; in
    // this crate that is what `thread::spawn` does on purpose, so the child *does* see the value
    // (S18: children see the parent's attributes at fork time), and never writes back.
    static L: Local = Local::new();
    Context::new().run(|| {
        L.set("value", "parent");
        let child = contextvars::thread::spawn(|| {
            let seen = get_str(&L, "value");
            L.set("value", "child");
            (seen, get_str(&L, "value"))
        })
        .join()
        .unwrap();
        assert_eq!(child, (Ok("parent"), Ok("child")));
        assert_eq!(get_str(&L, "value"), Ok("parent"));
    });
}

#[test]
fn get_with_the_wrong_type_is_wrong_type_names_both_types_and_changes_nothing() {
    static L: Local = Local::new();
    Context::new().run(|| {
        L.set("n", 5u32);
        let err = L.get::<String>("n").unwrap_err();
        assert_eq!(
            err,
            LocalError::WrongType {
                name: "n".into(),
                expected: std::any::type_name::<String>(),
                found: "u32",
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "Local attribute \"n\" holds a value of type u32, not {}: ask for the type it \
                 was set with",
                std::any::type_name::<String>()
            ),
            "no string-literal hint: the value is not a `&str`"
        );
        assert_eq!(*L.get::<u32>("n").unwrap(), 5);
        let before = Context::current();
        let _ = L.get::<i64>("n");
        assert_eq!(before, Context::current(), "a failed get changes nothing");

        // The usual mix-up: a string literal is stored as a `&'static str`.
        L.set("user", "alice");
        assert_eq!(
            L.get::<String>("user").unwrap_err().to_string(),
            format!(
                "Local attribute \"user\" holds a value of type &str, not {}: ask for the type \
                 it was set with (a string literal is set as a `&'static str`)",
                std::any::type_name::<String>()
            )
        );
        assert_eq!(*L.get::<&str>("user").unwrap(), "alice");

        // Past the flat array (16 attributes) the values sit in a hash map: named the same.
        for i in 0..20u64 {
            L.set(&format!("attr{i}"), i);
        }
        assert_eq!(
            L.get::<u32>("attr19").unwrap_err(),
            LocalError::WrongType {
                name: "attr19".into(),
                expected: "u32",
                found: "u64",
            }
        );
        // An `Arc` set as a value is named as the `Arc`, not as what it points to.
        L.set("shared", std::sync::Arc::new(1u8));
        assert!(matches!(
            L.get::<u8>("shared").unwrap_err(),
            LocalError::WrongType { found, .. } if found == std::any::type_name::<std::sync::Arc<u8>>()
        ));
    });
}

#[test]
fn a_local_uses_one_entry_of_the_context() {
    static L: Local = Local::new();
    Context::new().run(|| {
        for i in 0..10i64 {
            L.set(&format!("attr{i}"), i);
        }
        assert_eq!(Context::current().len(), 1);
    });
}

#[test]
fn two_locals_are_independent() {
    static A: Local = Local::new();
    static B: Local = Local::new();
    Context::new().run(|| {
        A.set("x", 1i64);
        assert!(!B.contains("x"));
        assert!(format!("{A:?}").contains("\"x\""));
    });
}

// ---------- bridges (S16, S17) ----------

#[test]
fn task_to_sync_carries_values_both_ways() {
    static L: Local = Local::new();
    run(async {
        L.set("foo", 3i64);
        task::sync_to_async(|| {
            assert_eq!(get_i64(&L, "foo"), Ok(3));
            L.set("foo", "phew, done");
        })
        .await;
        assert_eq!(get_str(&L, "foo"), Ok("phew, done"));
    });
}

#[test]
fn thread_to_async_carries_values_both_ways() {
    static L: Local = Local::new();
    std::thread::spawn(|| {
        L.set("foo", 12i64);
        task::async_to_sync(async {
            assert_eq!(get_i64(&L, "foo"), Ok(12));
            L.set("foo", "inside");
        });
        assert_eq!(get_str(&L, "foo"), Ok("inside"));
    })
    .join()
    .unwrap();
}

#[test]
fn task_to_sync_to_task_round_trip() {
    static L: Local = Local::new();
    run(async {
        L.set("foo", 756i64);
        task::sync_to_async(|| {
            task::async_to_sync(async {
                assert_eq!(get_i64(&L, "foo"), Ok(756));
                L.set("foo", "dragons");
            })
        })
        .await;
        assert_eq!(get_str(&L, "foo"), Ok("dragons"));
    });
}

#[test]
fn four_layer_round_trip() {
    static L: Local = Local::new();
    run(async {
        L.set("foo", 8374i64);
        task::sync_to_async(|| {
            task::async_to_sync(async {
                task::sync_to_async(|| {
                    task::async_to_sync(async {
                        assert_eq!(get_i64(&L, "foo"), Ok(8374));
                        L.set("foo", "miracles");
                    })
                })
                .await
            })
        })
        .await;
        assert_eq!(get_str(&L, "foo"), Ok("miracles"));
    });
}

#[test]
fn removal_in_a_bridge_is_written_back() {
    static L: Local = Local::new();
    run(async {
        L.set("gone", 1i64);
        L.set("kept", 2i64);
        task::sync_to_async(|| L.remove("gone").unwrap()).await;
        assert_eq!(get_i64(&L, "gone"), Err(missing("gone")));
        assert_eq!(get_i64(&L, "kept"), Ok(2));
    });
}

#[test]
fn many_attributes_past_the_flat_array_set_get_remove_and_merge_back() {
    // A `Local` holds a few attributes in a flat array and switches to a hash map past 16:
    // everything must work the same on both sides of the switch, bridges included.
    static L: Local = Local::new();
    let name = |i: i64| format!("attr{i}");
    run(async move {
        for i in 0..40 {
            L.set(&name(i), i);
            for j in 0..=i {
                assert_eq!(get_i64(&L, &name(j)), Ok(j), "after setting {i} attributes");
            }
        }
        task::sync_to_async(move || {
            for i in (0..40).step_by(2) {
                L.remove(&name(i)).unwrap();
            }
            L.set("attr1", 100i64);
        })
        .await;
        for i in 0..40 {
            let expected = match i {
                1 => Ok(100),
                i if i % 2 == 0 => Err(missing(&name(i))),
                i => Ok(i),
            };
            assert_eq!(get_i64(&L, &name(i)), expected);
        }
        for i in (1..40).step_by(2) {
            L.remove(&name(i)).unwrap();
        }
        assert!(!L.contains("attr1"));
        L.set("again", 1i64);
        assert_eq!(get_i64(&L, "again"), Ok(1));
    });
}

// ---------- thread-critical (S19) ----------

#[test]
fn thread_critical_values_do_not_cross_sync_to_async() {
    static L: Local = Local::thread_critical();
    run(async {
        L.set("foo", 86i64);
        task::sync_to_async(|| {
            assert_eq!(get_i64(&L, "foo"), Err(missing("foo")));
            L.set("foo", "secret");
            assert_eq!(get_str(&L, "foo"), Ok("secret"));
            L.remove("foo").unwrap();
            assert!(L.remove("foo").is_err());
            L.set("other", 1i64); // set at the end: must not come back either
        })
        .await;
        assert_eq!(get_i64(&L, "foo"), Ok(86));
        assert!(!L.contains("other"));
    });
}

#[test]
fn thread_critical_values_do_not_cross_async_to_sync() {
    static L: Local = Local::thread_critical();
    std::thread::spawn(|| {
        L.set("foo", 89i64);
        task::async_to_sync(async {
            assert!(get_i64(&L, "foo").is_err());
            L.set("foo", "numbers");
            assert_eq!(get_str(&L, "foo"), Ok("numbers"));
        });
        assert_eq!(get_i64(&L, "foo"), Ok(89));
    })
    .join()
    .unwrap();
}

#[test]
fn thread_critical_values_are_not_inherited_by_spawns() {
    static L: Local = Local::thread_critical();
    run(async {
        L.set("conn", 1i64);
        let in_task = task::spawn(async { L.contains("conn") }).await.unwrap();
        let in_blocking = task::spawn_blocking(|| L.contains("conn")).await.unwrap();
        let in_thread = contextvars::thread::spawn(|| L.contains("conn"))
            .join()
            .unwrap();
        assert_eq!((in_task, in_blocking, in_thread), (false, false, false));
        assert!(L.contains("conn"));
    });
}

#[test]
fn thread_critical_value_belongs_to_its_task_across_awaits() {
    static L: Local = Local::thread_critical();
    run(async {
        let tasks: Vec<_> = (0..50i64)
            .map(|i| {
                tokio::spawn(
                    async move {
                        L.set("mine", i);
                        for _ in 0..10 {
                            tokio::task::yield_now().await; // may move to another worker
                            assert_eq!(get_i64(&L, "mine"), Ok(i));
                        }
                    }
                    .with_context(Context::new()),
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn thread_critical_in_plain_code_is_a_thread_local() {
    static L: Local = Local::thread_critical();
    Context::new().run(|| {
        L.set("x", 1i64);
        assert_eq!(get_i64(&L, "x"), Ok(1));
        let other = std::thread::spawn(|| L.contains("x")).join().unwrap();
        assert!(!other);
    });
}

// ---------- threads and tasks together ----------

#[test]
fn threads_and_tasks_count_together_without_interfering() {
    static L: Local = Local::new();
    run(async {
        L.set("counter", 0i64);
        fn sync_step(expected: i64) {
            assert_eq!(get_i64(&L, "counter"), Ok(expected));
            L.set("counter", expected + 1);
        }
        async fn async_step(expected: i64) {
            assert_eq!(get_i64(&L, "counter"), Ok(expected));
            L.set("counter", expected + 1);
        }
        task::sync_to_async(|| sync_step(0)).await;
        assert_eq!(get_i64(&L, "counter"), Ok(1));
        async_step(1).await;
        assert_eq!(get_i64(&L, "counter"), Ok(2));
        task::sync_to_async(|| sync_step(2)).await;
        assert_eq!(get_i64(&L, "counter"), Ok(3));

        let threads: Vec<_> = (0..5)
            .map(|_| {
                std::thread::spawn(|| {
                    assert!(get_i64(&L, "counter").is_err());
                    L.set("counter", -1i64);
                })
            })
            .collect();
        task::sync_to_async(|| sync_step(3)).await;
        assert_eq!(get_i64(&L, "counter"), Ok(4));
        async_step(4).await;
        for t in threads {
            t.join().unwrap();
        }
        task::sync_to_async(|| sync_step(5)).await;
        assert_eq!(get_i64(&L, "counter"), Ok(6));
    });
}

// ---------- visibility in child tasks ----------

#[test]
fn child_task_set_does_not_reach_the_parent() {
    static L: Local = Local::new();
    run(async {
        L.set("value", 0i64);
        task::spawn(async {
            assert_eq!(get_i64(&L, "value"), Ok(0));
            L.set("value", 1i64);
            assert_eq!(get_i64(&L, "value"), Ok(1));
        })
        .await
        .unwrap();
        assert_eq!(get_i64(&L, "value"), Ok(0));
    });
}

#[test]
fn child_task_remove_does_not_reach_the_parent() {
    static L: Local = Local::new();
    run(async {
        L.set("value", 123i64);
        task::spawn(async {
            assert_eq!(get_i64(&L, "value"), Ok(123));
            L.remove("value").unwrap();
            assert!(!L.contains("value"));
        })
        .await
        .unwrap();
        assert_eq!(get_i64(&L, "value"), Ok(123));
    });
}

// ---------- concurrency ----------

#[test]
fn concurrent_set_get_from_8_threads_and_1000_tasks_never_loses_or_crosses_values() {
    static L: Local = Local::new();
    let mismatches = Arc::new(AtomicU64::new(0));
    let checks = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(9));

    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (m, c, b) = (mismatches.clone(), checks.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                for round in 0..2_000u64 {
                    let mine = t * 1_000_000 + round;
                    L.set("id", mine);
                    L.set(&format!("extra{}", round % 7), round);
                    c.fetch_add(1, Relaxed);
                    if L.get::<u64>("id").map(|v| *v) != Ok(mine) {
                        m.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();

    let rt = runtime();
    let (m, c) = (mismatches.clone(), checks.clone());
    barrier.wait();
    rt.block_on(async move {
        let tasks: Vec<_> = (0..1_000u64)
            .map(|i| {
                let (m, c) = (m.clone(), c.clone());
                task::spawn(async move {
                    let mine = 100_000_000 + i;
                    L.set("id", mine);
                    for step in 0..10u64 {
                        if step % 3 == 0 {
                            tokio::time::sleep(Duration::from_micros(step * 50)).await;
                        } else {
                            tokio::task::yield_now().await;
                        }
                        c.fetch_add(1, Relaxed);
                        if L.get::<u64>("id").map(|v| *v) != Ok(mine) {
                            m.fetch_add(1, Relaxed);
                        }
                        L.set("step", step);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(checks.load(Relaxed), 8 * 2_000 + 1_000 * 10);
    assert_eq!(mismatches.load(Relaxed), 0);
}

// ---------- S19: thread-critical, in plain code a thread local ----------

#[test]
fn thread_critical_value_set_on_a_thread_is_seen_in_any_context_entered_on_it() {
    static L: Local = Local::thread_critical();
    std::thread::spawn(|| {
        L.set("conn", 1i64);
        assert_eq!(Context::new().run(|| get_i64(&L, "conn")), Ok(1));
        let mut copy = contextvars::copy_context();
        assert_eq!(copy.run(|| get_i64(&L, "conn")), Ok(1));
        // And what a run sets is the thread's too.
        Context::new().run(|| L.set("conn", 2i64));
        assert_eq!(get_i64(&L, "conn"), Ok(2));
    })
    .join()
    .unwrap();
}

#[test]
fn thread_critical_value_never_reaches_another_thread_through_a_copied_context() {
    static L: Local = Local::thread_critical();
    let mut copy = std::thread::spawn(|| {
        L.set("conn", 1i64);
        contextvars::copy_context()
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        assert!(
            copy.run(|| !L.contains("conn")),
            "the copy does not carry it"
        );
        L.set("conn", 7i64);
        assert_eq!(copy.run(|| get_i64(&L, "conn")), Ok(7), "this thread's own");
    })
    .join()
    .unwrap();
}

#[test]
fn thread_critical_local_not_context_dependent_in_sync_thread() {
    // asgiref's test of the same name: sync code reached through async_to_sync ->
    // sync_to_async runs on the calling thread and sees its thread-critical values.
    static L: Local = Local::thread_critical();
    std::thread::spawn(|| {
        L.set("test_value", "_123_");
        task::async_to_sync(async { task::sync_to_async(|| get_str(&L, "test_value")).await })
    })
    .join()
    .map(|seen| assert_eq!(seen, Ok("_123_")))
    .unwrap();
}

#[test]
fn thread_critical_value_inside_a_scoped_future_is_the_tasks_own() {
    static L: Local = Local::thread_critical();
    std::thread::spawn(|| {
        L.set("x", 1i64);
        let rt = runtime();
        let seen = rt.block_on(async {
            let in_task = async {
                let before = L.contains("x");
                L.set("x", 2i64);
                tokio::task::yield_now().await;
                (before, get_i64(&L, "x"))
            }
            .with_context(Context::new())
            .await;
            (in_task, get_i64(&L, "x"))
        });
        assert_eq!(seen, ((false, Ok(2)), Ok(1)));
    })
    .join()
    .unwrap();
}

#[test]
fn thread_critical_values_set_in_blocking_jobs_never_stay_on_the_pool_thread() {
    static L: Local = Local::thread_critical();
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        task::sync_to_async(|| L.set("conn", 1i64)).await;
        task::spawn_blocking(|| L.set("conn", 2i64)).await.unwrap();
        // The same (only) pool thread, a later job:
        assert!(!task::sync_to_async(|| L.contains("conn")).await);
        assert!(!task::spawn_blocking(|| L.contains("conn")).await.unwrap());
    });
}

#[test]
fn thread_critical_write_inside_run_in_a_plain_task_is_refused() {
    // `run` gives a context but not storage of its own: the worker's would be shared (S21).
    static L: Local = Local::thread_critical();
    let rt = runtime();
    let refused = rt.block_on(rt.spawn(async { Context::new().run(|| L.set("x", 1i64)) }));
    assert!(refused.unwrap_err().is_panic());
}

// ---------- S18: write-back merges attribute by attribute ----------

#[test]
fn write_back_merges_attributes_with_a_sibling_futures_changes() {
    static L: Local = Local::new();
    run(async {
        L.set("untouched", 0i64);
        let bridge = task::sync_to_async(|| {
            std::thread::sleep(Duration::from_millis(20));
            L.set("a", 1i64);
        });
        let sibling = async {
            tokio::task::yield_now().await;
            L.set("b", 2i64); // in the same task, while the bridge runs
        };
        tokio::join!(bridge, sibling);
        assert_eq!(get_i64(&L, "a"), Ok(1), "the bridge's attribute");
        assert_eq!(get_i64(&L, "b"), Ok(2), "the sibling's attribute is kept");
        assert_eq!(get_i64(&L, "untouched"), Ok(0));
    });
}

#[test]
fn write_back_applies_only_the_attributes_the_other_side_touched() {
    static L: Local = Local::new();
    run(async {
        L.set("changed_by_caller", 1i64);
        L.set("removed_by_bridge", 2i64);
        L.set("kept", 3i64);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let bridge = task::sync_to_async(move || {
            rx.recv().unwrap(); // the caller changes its attribute first
            L.remove("removed_by_bridge").unwrap();
            L.set("new", 4i64);
        });
        let caller = async move {
            L.set("changed_by_caller", 10i64);
            tx.send(()).unwrap();
        };
        tokio::join!(bridge, caller);
        assert_eq!(get_i64(&L, "changed_by_caller"), Ok(10));
        assert_eq!(
            get_i64(&L, "removed_by_bridge"),
            Err(missing("removed_by_bridge"))
        );
        assert_eq!(get_i64(&L, "kept"), Ok(3));
        assert_eq!(get_i64(&L, "new"), Ok(4));
    });
}

#[test]
fn async_to_sync_write_back_merges_attributes_too() {
    static L: Local = Local::new();
    std::thread::spawn(|| {
        L.set("x", 1i64);
        task::async_to_sync(async {
            L.set("y", 2i64);
            L.remove("x").unwrap();
        });
        assert_eq!(get_i64(&L, "y"), Ok(2));
        assert!(!L.contains("x"));
    })
    .join()
    .unwrap();
}

#[test]
fn thread_critical_value_set_by_a_task_on_a_thread_with_none_stays_with_the_task() {
    // Neither the task nor the thread had thread-critical values when the task was entered.
    static L: Local = Local::thread_critical();
    std::thread::spawn(|| {
        let rt = runtime();
        let seen = rt.block_on(async {
            let in_task = async {
                L.set("x", 1i64);
                tokio::task::yield_now().await; // left and re-entered
                get_i64(&L, "x")
            }
            .with_context(Context::new())
            .await;
            (in_task, L.contains("x"))
        });
        assert_eq!(
            seen,
            (Ok(1), false),
            "the task kept it; the thread never saw it"
        );
        assert!(!L.contains("x"));
    })
    .join()
    .unwrap();
}

#[test]
fn thread_critical_values_are_shared_with_scopes_and_branches_inside_their_task() {
    // A `scope` or a `join!` branch is part of the task, not a task of its own (S19).
    static L: Local = Local::thread_critical();
    static STEP: contextvars::ContextVar<u32> = contextvars::ContextVar::new("step");
    run(async {
        let seen = task::spawn(async {
            L.set("conn", 1i64);
            let in_scope = STEP
                .scope(1, async {
                    tokio::task::yield_now().await;
                    L.set("in_scope", 2i64);
                    get_i64(&L, "conn")
                })
                .await;
            let (a, b) = tokio::join!(
                async { get_i64(&L, "conn") }.with_current_context(),
                async { get_i64(&L, "in_scope") }.with_current_context(),
            );
            (in_scope, a, b)
        })
        .await
        .unwrap();
        assert_eq!(seen, (Ok(1), Ok(1), Ok(2)));
    });
}

#[test]
fn thread_critical_values_never_cross_async_to_sync_inside_a_pool_job() {
    static L: Local = Local::thread_critical();
    run(async {
        let (inside, after) = task::sync_to_async(|| {
            L.set("conn", 1i64);
            let inside = task::async_to_sync(async { L.contains("conn") });
            (inside, get_i64(&L, "conn"))
        })
        .await;
        assert!(!inside, "the driven future is a task of its own");
        assert_eq!(after, Ok(1));
    });
}
