//! The bridges under the load and in the places a Django-style service uses them: nested
//! bridges never deadlock (S17), `async_to_sync` works wherever Tokio allows blocking, and
//! `sync_to_async` forks at the call (S15, S16). Deadlocks fail by deadline, never hang CI.
#![cfg(feature = "tokio")]

use std::sync::mpsc;
use std::time::Duration;

use contextvars::{Context, ContextVar, FutureExt, task};

static ID: ContextVar<u64> = ContextVar::new("id");
static DEPTH: ContextVar<u32> = ContextVar::new("depth");

/// How long a scenario may take before it counts as a deadlock.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `scenario` on a thread of its own and fails if it does not finish by the deadline
/// (the hung thread is left behind: the test fails instead of stalling the run).
fn within_deadline<R: Send + 'static>(
    what: &str,
    scenario: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario));
        let _ = done.send(outcome);
    });
    match result.recv_timeout(DEADLINE) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("deadlock: {what} did not finish within {DEADLINE:?}"),
    }
}

fn runtime(multi_thread: bool, blocking_threads: usize) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    if multi_thread {
        builder.worker_threads(2);
    }
    builder
        .max_blocking_threads(blocking_threads)
        .enable_all()
        .build()
        .unwrap()
}

/// sync → async → sync … `levels` deep, from async code; each level sets `DEPTH` and checks it
/// sees its parent's, and the deepest `DEPTH` is written back all the way up.
async fn nest_from_async(levels: u32) -> u32 {
    task::sync_to_async(move || nest_from_sync(levels)).await
}

fn nest_from_sync(levels: u32) -> u32 {
    let parent = DEPTH.get().map_or(0, |d| *d);
    DEPTH.set(parent + 1);
    if levels <= 1 {
        return parent + 1;
    }
    task::async_to_sync(async move {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        nest_from_async(levels - 1).await
    })
}

fn nested_levels(multi_thread: bool, blocking_threads: usize, levels: u32) {
    let what = format!(
        "{levels} nested bridges, {} runtime, pool of {blocking_threads}",
        if multi_thread {
            "multi-thread"
        } else {
            "current-thread"
        }
    );
    let deepest = within_deadline(&what, move || {
        let rt = runtime(multi_thread, blocking_threads);
        rt.block_on(
            async move {
                let deepest = nest_from_async(levels).await;
                assert_eq!(
                    DEPTH.get().as_deref(),
                    Some(&levels),
                    "written back to the top"
                );
                deepest
            }
            .with_context(Context::new()),
        )
    });
    assert_eq!(deepest, levels);
}

#[test]
fn one_nesting_level_on_a_pool_of_one_finishes() {
    nested_levels(true, 1, 2);
    nested_levels(false, 1, 2);
}

#[test]
fn ten_nesting_levels_on_a_multi_thread_runtime_with_a_pool_of_one_or_two_finish() {
    nested_levels(true, 1, 10);
    nested_levels(true, 2, 10);
}

#[test]
fn ten_nesting_levels_on_a_current_thread_runtime_with_a_pool_of_one_or_two_finish() {
    nested_levels(false, 1, 10);
    nested_levels(false, 2, 10);
}

#[test]
fn ten_nesting_levels_from_a_plain_thread_finish() {
    let deepest = within_deadline("10 nested bridges from a plain thread", || {
        let deepest = nest_from_sync(10);
        assert_eq!(
            DEPTH.get().as_deref(),
            Some(&10),
            "written back to the plain thread"
        );
        deepest
    });
    assert_eq!(deepest, 10);
}

#[test]
fn a_thousand_concurrent_requests_each_nesting_once_on_a_pool_of_four_finish() {
    let seen = within_deadline("1,000 nested requests on a pool of 4", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let requests: Vec<_> = (0..1_000u64)
                .map(|n| {
                    task::spawn(async move {
                        ID.set(n);
                        // a sync view calling async code calling sync code
                        task::sync_to_async(move || {
                            task::async_to_sync(async move {
                                tokio::task::yield_now().await;
                                task::sync_to_async(move || {
                                    assert_eq!(ID.get().as_deref(), Some(&n));
                                    ID.set(n + 1_000_000);
                                })
                                .await;
                            })
                        })
                        .await;
                        *ID.get().unwrap()
                    })
                })
                .collect();
            let mut correct = 0;
            for (n, request) in requests.into_iter().enumerate() {
                if request.await.unwrap() == n as u64 + 1_000_000 {
                    correct += 1;
                }
            }
            correct
        })
    });
    assert_eq!(seen, 1_000);
}

// ---------- async_to_sync wherever Tokio allows blocking ----------

#[test]
fn async_to_sync_works_on_a_thread_that_entered_a_multi_thread_runtime() {
    let rt = runtime(true, 4);
    let _entered = rt.enter();
    let out = within_deadline("async_to_sync after rt.enter()", {
        let handle = rt.handle().clone();
        move || {
            let _entered = handle.enter();
            task::async_to_sync(async {
                // the runtime's timers and a spawn onto it both work
                tokio::time::sleep(Duration::from_millis(2)).await;
                tokio::spawn(async { 7 }).await.unwrap()
            })
        }
    });
    assert_eq!(out, 7);
}

#[test]
fn async_to_sync_works_on_a_thread_that_entered_a_current_thread_runtime() {
    let rt = runtime(false, 4);
    let handle = rt.handle().clone();
    let out = within_deadline(
        "async_to_sync after entering a current-thread runtime",
        move || {
            let _entered = handle.enter();
            // Nobody drives `rt`: a private runtime must, or this sleep would never end.
            task::async_to_sync(async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                8
            })
        },
    );
    assert_eq!(out, 8);
    drop(rt);
}

#[test]
fn async_to_sync_works_inside_block_in_place() {
    let rt = runtime(true, 4);
    let out = within_deadline("async_to_sync inside block_in_place", move || {
        let _entered = rt.enter();
        rt.block_on(task::spawn(async {
            ID.set(1);
            let seen = tokio::task::block_in_place(|| {
                task::async_to_sync(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ID.set(2);
                    9
                })
            });
            (seen, *ID.get().unwrap())
        }))
        .unwrap()
    });
    assert_eq!(out, (9, 2), "result and write-back");
}

#[test]
fn async_to_sync_on_a_thread_that_entered_a_multi_thread_runtime_runs_on_that_runtime() {
    // S17 and the docs: a thread that entered a multi-thread runtime uses *that* runtime (not a
    // private one), so a task the future leaves running goes on without another call.
    let rt = runtime(true, 4);
    let expected = rt.handle().id();
    let (used, left_running_finished) = within_deadline("async_to_sync after rt.enter()", {
        let handle = rt.handle().clone();
        move || {
            let _entered = handle.enter();
            let (done, finished) = mpsc::channel();
            let used = task::async_to_sync(async move {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let _ = done.send(());
                });
                tokio::runtime::Handle::current().id()
            });
            (used, finished.recv_timeout(Duration::from_secs(10)).is_ok())
        }
    });
    assert_eq!(used, expected);
    assert!(
        left_running_finished,
        "the runtime's workers run the task left running"
    );
}

#[test]
fn after_async_to_sync_on_an_entered_runtime_a_plain_thread_is_back_on_its_private_runtime() {
    // Which runtime a call uses is decided per call: once the thread no longer has the runtime
    // entered, it is a plain thread again (S17: a private runtime), even if sync code ran on
    // it as a job of the earlier call.
    let rt = runtime(true, 4);
    let entered_id = rt.handle().id();
    let (private_before, during, private_after) = within_deadline("runtime choice per call", {
        let handle = rt.handle().clone();
        move || {
            let private_before =
                task::async_to_sync(async { tokio::runtime::Handle::current().id() });
            let during = {
                let _entered = handle.enter();
                // a nested job: sync code on this thread, run by the call's loop
                task::async_to_sync(task::sync_to_async(|| ()));
                task::async_to_sync(async { tokio::runtime::Handle::current().id() })
            };
            let private_after =
                task::async_to_sync(async { tokio::runtime::Handle::current().id() });
            (private_before, during, private_after)
        }
    });
    assert_eq!(during, entered_id);
    assert_ne!(private_before, entered_id);
    assert_eq!(private_after, private_before);
}

#[test]
fn sync_to_async_on_a_thread_after_its_async_to_sync_returned_runs_on_the_pool() {
    // Only futures driven by a running `async_to_sync` hand their sync code to its thread;
    // once the call has returned, a `sync_to_async` polled on that thread goes to the pool.
    let out = within_deadline(
        "sync_to_async after async_to_sync on the same thread",
        || {
            assert_eq!(task::async_to_sync(async { 1 }), 1);
            let rt = runtime(false, 4);
            let caller = std::thread::current().id();
            rt.block_on(task::sync_to_async(move || {
                std::thread::current().id() != caller
            }))
        },
    );
    assert!(out, "f ran on a pool thread");
}

#[test]
fn a_sync_to_async_future_returned_before_it_completed_still_gets_its_result() {
    // A `sync_to_async` future first polled inside `async_to_sync` and returned (sent
    // elsewhere) before completing: its sync code was handed to the async_to_sync thread and
    // still runs there before the call returns; awaiting the future later gives the result.
    let out = within_deadline("a bridged future outliving its async_to_sync", || {
        // Returned inside an `Option`: the future itself is what the test carries out.
        let pending = task::async_to_sync(async {
            let mut bridged = Box::pin(task::sync_to_async(|| 5));
            assert!(futures::poll!(bridged.as_mut()).is_pending());
            Some(bridged)
        });
        futures::executor::block_on(pending.unwrap())
    });
    assert_eq!(out, 5);
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn async_to_sync_directly_in_a_task_poll_panics_naming_itself() {
    let err = within_deadline("async_to_sync inside a task", || {
        let rt = runtime(true, 4);
        let _entered = rt.enter();
        rt.block_on(task::spawn(async { task::async_to_sync(async { 1 }) }))
            .unwrap_err()
    });
    let message = panic_message(err.into_panic());
    assert!(
        message.contains("async_to_sync called where blocking is not allowed"),
        "{message}"
    );
}

#[test]
fn sync_to_async_polled_outside_a_runtime_panics_naming_itself() {
    let caught =
        std::panic::catch_unwind(|| futures::executor::block_on(task::sync_to_async(|| 1)));
    let message = panic_message(caught.unwrap_err());
    assert!(
        message.contains("sync_to_async polled outside a Tokio runtime"),
        "{message}"
    );
}

#[test]
fn async_to_sync_inside_a_block_on_panics_naming_itself() {
    for multi_thread in [true, false] {
        let message = within_deadline("async_to_sync inside block_on", move || {
            let rt = runtime(multi_thread, 4);
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(async { task::async_to_sync(async { 1 }) })
            }));
            panic_message(caught.unwrap_err())
        });
        assert!(
            message.contains("async_to_sync called where blocking is not allowed"),
            "{message}"
        );
    }
}

#[test]
fn async_to_sync_inside_a_future_it_drives_panics_instead_of_deadlocking() {
    let message = within_deadline("nested async_to_sync inside the driven future", || {
        let caught = std::panic::catch_unwind(|| {
            task::async_to_sync(async { task::async_to_sync(async { 1 }) })
        });
        panic_message(caught.unwrap_err())
    });
    assert!(
        message.contains("async_to_sync called where blocking is not allowed"),
        "{message}"
    );
}

// ---------- S15: the fork is taken at the call ----------

#[test]
fn sync_to_async_forks_at_the_call_not_at_the_first_poll() {
    let rt = runtime(true, 4);
    rt.block_on(
        async {
            ID.set(1);
            let bridged = task::sync_to_async(|| ID.get().map(|v| *v));
            ID.set(2); // after the call, before the first poll
            assert_eq!(bridged.await, Some(1));
            // The job did not write `ID`: the caller's later write survives the write-back,
            // which copies only what the job changed in its fork.
            assert_eq!(ID.get().as_deref(), Some(&2));
        }
        .with_context(Context::new()),
    );
}

#[test]
fn nested_sync_code_runs_on_the_thread_blocked_in_async_to_sync() {
    let rt = runtime(true, 1);
    let (outer, inner) = within_deadline("thread-sensitive nesting", move || {
        rt.block_on(task::sync_to_async(|| {
            let outer = std::thread::current().id();
            let inner = task::async_to_sync(task::sync_to_async(|| std::thread::current().id()));
            (outer, inner)
        }))
    });
    assert_eq!(outer, inner);
}

#[test]
fn tasks_left_on_the_private_runtime_pause_between_calls_and_serve_the_next() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::{mpsc, oneshot};

    let (answer, ran_between) = within_deadline("leftover tasks", || {
        let ticked = Arc::new(AtomicBool::new(false));
        let tick = ticked.clone();
        // A driver task, as a database client spawns for its connection, and a timer.
        let requests = task::async_to_sync(async move {
            let (requests, mut incoming) = mpsc::unbounded_channel::<(u32, oneshot::Sender<u32>)>();
            task::spawn(async move {
                while let Some((n, reply)) = incoming.recv().await {
                    let _ = reply.send(n * 2);
                }
            });
            task::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                tick.store(true, Ordering::SeqCst);
            });
            requests
        });
        std::thread::sleep(Duration::from_millis(100));
        let ran_between = ticked.load(Ordering::SeqCst);
        // The next call drives the same runtime: the driver serves it.
        let answer = task::async_to_sync(async move {
            let (reply, answer) = oneshot::channel();
            requests
                .send((21, reply))
                .expect("the driver task is there");
            answer.await.expect("the driver task answers")
        });
        (answer, ran_between)
    });
    assert_eq!(answer, 42);
    assert!(
        !ran_between,
        "the private runtime ran without a call driving it"
    );
}

#[test]
fn a_blocking_job_left_running_does_not_hold_up_the_call() {
    let elapsed = within_deadline("leftover blocking job", || {
        let start = std::time::Instant::now();
        task::async_to_sync(async {
            task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(2)));
            tokio::task::yield_now().await;
        });
        start.elapsed()
    });
    assert!(elapsed < Duration::from_secs(2), "waited {elapsed:?}");
}

#[test]
fn on_the_private_runtime_a_spawned_tasks_sync_code_runs_on_the_calling_thread() {
    // The private runtime polls its tasks on the thread blocked in `async_to_sync`, so sync code
    // a spawned task reaches runs there too (on a runtime with workers it goes to the pool).
    let (caller, spawned) = within_deadline("spawned task's sync code", || {
        let caller = std::thread::current().id();
        let spawned = task::async_to_sync(async {
            task::spawn(task::sync_to_async(|| std::thread::current().id()))
                .await
                .unwrap()
        });
        (caller, spawned)
    });
    assert_eq!(caller, spawned);
}
