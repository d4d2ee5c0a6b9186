//! `task::{spawn, spawn_local, spawn_blocking, sync_to_async, async_to_sync}`: S12, S15–S17, S20.
#![cfg(feature = "tokio")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

mod common;

use common::{current_thread, multi_thread};
use contextvars::{Context, ContextVar, FutureExt, Inherit, ResetError, task};

static ID: ContextVar<u64> = ContextVar::new("id");
static OTHER: ContextVar<u64> = ContextVar::new("other");

fn id() -> Option<u64> {
    ID.get().map(|v| *v)
}

/// Runs `fut` as a task in a fresh context, so tests never share the test thread's context.
fn run<F>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut.with_context(Context::new())))
        .unwrap()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A cheap deterministic pseudo-random sequence (xorshift), seeded per task.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

// ---------- S15: spawn takes a fork at the call ----------

#[test]
fn spawned_task_sees_the_parent_at_spawn_and_not_later() {
    run(&multi_thread(2), async {
        ID.set(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let child = task::spawn(async move {
            rx.await.unwrap();
            id()
        });
        ID.set(2);
        tx.send(()).unwrap();
        assert_eq!(child.await.unwrap(), Some(1));
    });
}

#[test]
fn childs_sets_are_not_seen_by_the_parent() {
    run(&multi_thread(2), async {
        ID.set(1);
        task::spawn(async { ID.set(99) }).await.unwrap();
        task::spawn_blocking(|| ID.set(98)).await.unwrap();
        assert_eq!(id(), Some(1));
    });
}

#[test]
fn spawn_applies_inherit_policies() {
    static PRIVATE: ContextVar<u64> = ContextVar::new("private").inherit(Inherit::None);
    static FRESH: ContextVar<Vec<u64>> =
        ContextVar::new("fresh").inherit(Inherit::Fork(|_| Vec::new()));
    run(&multi_thread(2), async {
        PRIVATE.set(1);
        FRESH.set(vec![1]);
        let seen = task::spawn(async { (PRIVATE.get(), FRESH.get()) });
        let (private, fresh) = seen.await.unwrap();
        assert!(private.is_none());
        assert_eq!(fresh.as_deref(), Some(&vec![]));
        let (private, fresh) = task::spawn_blocking(|| (PRIVATE.get(), FRESH.get()))
            .await
            .unwrap();
        assert!(private.is_none());
        assert_eq!(fresh.as_deref(), Some(&vec![]));
    });
}

#[test]
fn spawn_local_runs_in_a_fork() {
    let rt = current_thread();
    let local = tokio::task::LocalSet::new();
    Context::new().run(|| {
        local.block_on(&rt, async {
            ID.set(5);
            let child = task::spawn_local(async {
                let seen = id();
                ID.set(6);
                seen
            });
            assert_eq!(child.await.unwrap(), Some(5));
            assert_eq!(id(), Some(5));
        })
    });
}

// ---------- tokens across polls and tasks ----------

#[test]
fn token_made_in_one_poll_resets_in_a_later_poll_of_the_same_task() {
    let rt = multi_thread(4);
    run(&rt, async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                task::spawn(async move {
                    ID.set(i);
                    let token = ID.set(i + 1000);
                    for _ in 0..10 {
                        tokio::task::yield_now().await; // may resume on another worker
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ID.reset(token).unwrap();
                    id()
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), Some(i as u64));
        }
    });
}

#[test]
fn parents_token_reset_in_a_child_is_wrong_context() {
    run(&multi_thread(2), async {
        let token = ID.set(1);
        let result = task::spawn(async move { ID.reset(token) }).await.unwrap();
        assert_eq!(result, Err(ResetError::WrongContext));
        assert_eq!(id(), Some(1));
    });
}

// ---------- spawn_blocking and the pool thread's own context ----------

#[test]
fn blocking_pool_thread_context_is_clean_before_and_after_each_job() {
    // One blocking thread, so every job below runs on the same pool thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    run(&rt, async {
        ID.set(1);
        task::spawn_blocking(|| {
            assert_eq!(id(), Some(1));
            ID.set(2);
        })
        .await
        .unwrap();
        task::sync_to_async(|| ID.set(3)).await;
        // A plain tokio job sees the pool thread's own context: still empty.
        let leftover = tokio::task::spawn_blocking(|| Context::current().len())
            .await
            .unwrap();
        assert_eq!(leftover, 0);
    });
}

#[test]
fn plain_tokio_spawn_blocking_cannot_leave_the_pool_thread_dirty() {
    // The contrast the crate exists for: a plain blocking job's write would stay on the pool
    // thread for the next job; S21 refuses it, so the next job starts clean.
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    run(&rt, async {
        let refused = tokio::task::spawn_blocking(|| ID.set(7)).await.unwrap_err();
        assert!(panic_message(&*refused.into_panic()).contains("has no context of its own"));
        let next_job = tokio::task::spawn_blocking(id).await.unwrap();
        assert_eq!(next_job, None);
    });
}

// ---------- S16: sync_to_async ----------

#[test]
fn sync_to_async_writes_back_set_and_changed_bindings_only() {
    static NEW: ContextVar<u64> = ContextVar::new("new");
    static SAME_VALUE: ContextVar<u64> = ContextVar::new("same_value");
    run(&multi_thread(2), async {
        ID.set(1);
        OTHER.set(3);
        SAME_VALUE.set(4);
        let other_before = OTHER.get().unwrap();
        let seen = task::sync_to_async(|| {
            let seen = id();
            ID.set(10); // changed
            NEW.set(11); // set
            let t = SAME_VALUE.set(40);
            SAME_VALUE.reset(t).unwrap(); // back to the handed Arc: no change to write
            seen
        })
        .await;
        assert_eq!(seen, Some(1));
        assert_eq!(id(), Some(10));
        assert_eq!(NEW.get().as_deref(), Some(&11));
        assert_eq!(SAME_VALUE.get().as_deref(), Some(&4));
        assert!(
            Arc::ptr_eq(&OTHER.get().unwrap(), &other_before),
            "untouched stays as is"
        );
    });
}

#[test]
fn sync_to_async_does_not_write_back_what_the_fork_policy_changed() {
    static FORKED: ContextVar<Vec<u64>> =
        ContextVar::new("forked").inherit(Inherit::Fork(|v| v.clone()));
    run(&multi_thread(2), async {
        FORKED.set(vec![1]);
        let before = FORKED.get().unwrap();
        task::sync_to_async(|| ID.set(1)).await;
        assert!(Arc::ptr_eq(&FORKED.get().unwrap(), &before));
        assert_eq!(id(), Some(1));
    });
}

#[test]
fn sync_to_async_panic_writes_back_then_resumes() {
    run(&multi_thread(2), async {
        ID.set(1);
        let joined = task::spawn(async {
            task::sync_to_async(|| {
                ID.set(2);
                panic!("in sync code");
            })
            .await
        });
        let err = joined.await.unwrap_err();
        assert!(panic_message(&*err.into_panic()).contains("in sync code"));
        // The panicking call was in the child; check write-back in place instead:
        let caught = AssertUnwindSafe(task::sync_to_async(|| {
            ID.set(3);
            panic!("again");
        }));
        let outcome = futures::FutureExt::catch_unwind(caught).await;
        assert!(outcome.is_err());
        assert_eq!(id(), Some(3), "what f set before the panic is written back");
    });
}

// ---------- S17: async_to_sync ----------

#[test]
fn async_to_sync_on_a_plain_thread_uses_a_private_runtime_and_writes_back() {
    std::thread::spawn(|| {
        ID.set(1);
        for round in 0..3 {
            let seen = task::async_to_sync(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let seen = id();
                ID.set(100 + round);
                seen
            });
            assert_eq!(seen, Some(if round == 0 { 1 } else { 99 + round }));
            assert_eq!(id(), Some(100 + round));
        }
    })
    .join()
    .expect("thread, including its private runtime's teardown, must not panic");
}

#[test]
fn async_to_sync_panic_writes_back_then_resumes() {
    std::thread::spawn(|| {
        let r = catch_unwind(|| {
            task::async_to_sync(async {
                ID.set(5);
                panic!("in async code");
            })
        });
        assert!(panic_message(&*r.unwrap_err()).contains("in async code"));
        assert_eq!(id(), Some(5));
    })
    .join()
    .unwrap();
}

#[test]
fn async_to_sync_inside_a_task_panics_naming_itself() {
    let rt = multi_thread(2);
    let err = rt
        .block_on(rt.spawn(async { task::async_to_sync(async { 1 }) }))
        .unwrap_err();
    assert!(panic_message(&*err.into_panic()).contains("async_to_sync"));
}

#[test]
fn async_to_sync_inside_block_on_panics_naming_itself() {
    let rt = current_thread();
    let r = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async { task::async_to_sync(async { 1 }) })
    }));
    assert!(panic_message(&*r.unwrap_err()).contains("async_to_sync"));
}

#[test]
fn async_to_sync_nested_in_its_own_future_panics_instead_of_deadlocking() {
    let r = std::thread::spawn(|| task::async_to_sync(async { task::async_to_sync(async { 1 }) }))
        .join();
    assert!(panic_message(&*r.unwrap_err()).contains("async_to_sync"));
}

#[test]
fn bridges_round_trip_values_from_the_bottom_to_the_top() {
    let rt = multi_thread(2);
    run(&rt, async {
        ID.set(1);
        let from_bottom = task::sync_to_async(|| {
            assert_eq!(id(), Some(1));
            ID.set(2);
            task::async_to_sync(async {
                assert_eq!(id(), Some(2));
                ID.set(3);
                task::sync_to_async(|| {
                    assert_eq!(id(), Some(3));
                    ID.set(4);
                    OTHER.set(40);
                })
                .await;
                assert_eq!(id(), Some(4));
            });
            assert_eq!(OTHER.get().as_deref(), Some(&40));
            id()
        })
        .await;
        assert_eq!(from_bottom, Some(4));
        assert_eq!(id(), Some(4));
        assert_eq!(OTHER.get().as_deref(), Some(&40));
    });
}

#[test]
fn async_to_sync_inside_spawn_blocking_uses_the_enclosing_runtime() {
    let rt = multi_thread(2);
    run(&rt, async {
        let outer = tokio::runtime::Handle::current().id();
        let inner = task::spawn_blocking(|| {
            task::async_to_sync(async { tokio::runtime::Handle::current().id() })
        })
        .await
        .unwrap();
        assert_eq!(inner, outer);
    });
}

#[test]
fn async_to_sync_inside_spawn_blocking_on_a_current_thread_runtime_uses_that_runtime() {
    // S17: "on the runtime of the enclosing sync_to_async or spawn_blocking if any". On a
    // current-thread runtime the blocking job must say which runtime it belongs to: the pool
    // thread alone would lead to the private runtime. The same holds for sync code that such an
    // `async_to_sync` runs on its thread (a nested `sync_to_async`).
    let rt = current_thread();
    let (outer, direct, nested) = run(&rt, async {
        let outer = tokio::runtime::Handle::current().id();
        let (direct, nested) = task::spawn_blocking(|| {
            let direct = task::async_to_sync(async { tokio::runtime::Handle::current().id() });
            let nested = task::async_to_sync(task::sync_to_async(|| {
                task::async_to_sync(async { tokio::runtime::Handle::current().id() })
            }));
            (direct, nested)
        })
        .await
        .unwrap();
        (outer, direct, nested)
    });
    assert_eq!(
        direct, outer,
        "async_to_sync in the job runs on the job's runtime"
    );
    assert_eq!(
        nested, outer,
        "and so does one in sync code nested inside it"
    );
}

#[test]
fn async_to_sync_resumes_its_futures_own_nested_runtime_panic_after_the_write_back() {
    // A future that itself calls `block_on` gets Tokio's refusal as its own panic: S17's
    // "blocking is not allowed" panic is for the `async_to_sync` call itself, and S16/S17's
    // write-back of what the future set before panicking still happens.
    std::thread::spawn(|| {
        let r = catch_unwind(|| {
            task::async_to_sync(async {
                ID.set(6);
                tokio::runtime::Handle::current().block_on(async {});
            })
        });
        let message = panic_message(&*r.unwrap_err());
        assert!(
            message.contains("Cannot start a runtime from within a runtime"),
            "{message}"
        );
        assert_eq!(
            id(),
            Some(6),
            "what the future set before the panic is written back"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn async_to_sync_during_thread_teardown_panics_naming_the_teardown() {
    // Documented panic: "if called from a thread-local destructor while the thread is being torn
    // down". It must say so, not claim that blocking is not allowed here.
    struct CallsOnDrop(std::sync::mpsc::Sender<String>);
    impl Drop for CallsOnDrop {
        fn drop(&mut self) {
            let r = catch_unwind(|| task::async_to_sync(async { 1 }));
            let _ = self.0.send(match r {
                Ok(_) => "no panic".to_string(),
                Err(panic) => panic_message(&*panic),
            });
        }
    }
    thread_local! {
        static ON_EXIT: std::cell::RefCell<Option<CallsOnDrop>> = const { std::cell::RefCell::new(None) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Registered before the private runtime, so destroyed after it.
        ON_EXIT.with(|slot| *slot.borrow_mut() = Some(CallsOnDrop(tx)));
        assert_eq!(task::async_to_sync(async { 2 }), 2);
    })
    .join()
    .unwrap();
    let message = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    if message == "no panic" {
        // The private runtime outlived `ON_EXIT`: destructor order is the platform's. Linux
        // runs them last registered, first; elsewhere (and under Miri) nothing to check.
        #[cfg(all(target_os = "linux", not(miri)))]
        panic!("ON_EXIT was destroyed before the private runtime on Linux");
        #[cfg(not(all(target_os = "linux", not(miri))))]
        return;
    }
    assert!(message.contains("during thread teardown"), "{message}");
}

#[test]
fn sync_to_async_polled_after_its_runtime_shut_down_panics_saying_so() {
    // Documented panic: "if the runtime shuts down before f ran"; f never runs.
    let rt = multi_thread(1);
    let handle = rt.handle().clone();
    drop(rt);
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = {
        let ran = ran.clone();
        let _entered = handle.enter();
        catch_unwind(AssertUnwindSafe(|| {
            futures::executor::block_on(task::sync_to_async(move || ran.store(true, Relaxed)))
        }))
    };
    let message = panic_message(&*r.unwrap_err());
    assert!(
        message.contains("the runtime shut down before f ran"),
        "{message}"
    );
    assert!(!ran.load(Relaxed));
}

// ---------- isolation under load ----------

#[test]
fn ten_thousand_tasks_only_ever_see_their_own_values() {
    const TASKS: u64 = 10_000;
    let checks = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let rt = multi_thread(4);
    let (c, m) = (checks.clone(), mismatches.clone());
    run(&rt, async move {
        let check = move |expected: u64| {
            c.fetch_add(1, Relaxed);
            if id() != Some(expected) {
                m.fetch_add(1, Relaxed);
            }
        };
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let check = check.clone();
                task::spawn(async move {
                    ID.set(i);
                    let mut rng = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..4 {
                        match next_random(&mut rng) % 4 {
                            0 => {
                                tokio::time::sleep(Duration::from_micros(
                                    next_random(&mut rng) % 500,
                                ))
                                .await
                            }
                            _ => tokio::task::yield_now().await,
                        }
                        check(i);
                    }
                    let child_check = check.clone();
                    let child = task::spawn(async move {
                        child_check(i);
                        ID.set(i + TASKS);
                        tokio::task::yield_now().await;
                        child_check(i + TASKS);
                    });
                    let blocking_check = check.clone();
                    let blocking = task::spawn_blocking(move || {
                        blocking_check(i);
                        ID.set(i + 2 * TASKS);
                        blocking_check(i + 2 * TASKS);
                    });
                    tokio::task::yield_now().await;
                    check(i);
                    child.await.unwrap();
                    blocking.await.unwrap();
                    check(i); // the parent sees none of the children's changes
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        check(u64::MAX - 1); // the root task never set ID: this one must mismatch
    });
    assert_eq!(checks.load(Relaxed), TASKS * 10 + 1);
    assert_eq!(mismatches.load(Relaxed), 1, "only the deliberate mismatch");
}

#[test]
fn spawned_tasks_have_their_own_thread_critical_values_wherever_their_executor_runs() {
    // S19: a task of `task::spawn` / `task::spawn_local` is a task of its own even when its
    // executor is driven inside another task: a runtime's `block_on` in `block_in_place`, a
    // `LocalSet` run inside a `Scoped` future.
    static CONNECTION: contextvars::Local = contextvars::Local::thread_critical();
    fn connection() -> Option<u32> {
        CONNECTION.get::<u32>("conn").ok().map(|v| *v)
    }
    let seen = multi_thread(2).block_on(async {
        task::spawn(async {
            let second = tokio::task::block_in_place(|| {
                current_thread().block_on(async {
                    task::spawn(async { CONNECTION.set("conn", 1_u32) })
                        .await
                        .unwrap();
                    task::spawn(async { connection() }).await.unwrap()
                })
            });
            (second, connection())
        })
        .await
        .unwrap()
    });
    assert_eq!(seen, (None, None), "(the next task, the enclosing task)");

    async fn two_local_tasks() -> (Option<u32>, Option<u32>) {
        task::spawn_local(async { CONNECTION.set("conn", 1_u32) })
            .await
            .unwrap();
        let second = task::spawn_local(async { connection() }).await.unwrap();
        (second, connection())
    }
    let rt = current_thread();
    let local_set = tokio::task::LocalSet::new();
    let seen = rt.block_on(
        local_set
            .run_until(two_local_tasks())
            .with_current_context(),
    );
    assert_eq!(
        seen,
        (None, None),
        "(the next task, the future driving the LocalSet)"
    );
}
