//! S21, no silent sharing: writes from a Tokio task with no context of its own are refused;
//! writes everywhere else, and every read, are allowed.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::sync::Arc;

mod common;

use common::{current_thread, multi_thread};
use contextvars::{Context, ContextVar, FutureExt, Local, task};
use tokio::task::JoinError;

static ID: ContextVar<u64> = ContextVar::new("id");
static OTHER: ContextVar<u64> = ContextVar::new("other");
static LOCAL: Local = Local::new();
static CRITICAL: Local = Local::thread_critical();

fn message(err: JoinError) -> String {
    let payload = err.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `fut` as a plain `tokio::spawn`ed task (no context of its own) and returns the panic
/// message it died with.
fn refused_in_plain_task<F>(fut: F) -> String
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = current_thread();
    let err = rt
        .block_on(rt.spawn(fut))
        .err()
        .expect("the write must panic");
    message(err)
}

fn assert_s21(message: &str, call: &str) {
    assert!(
        message.contains("has no context of its own"),
        "not the S21 panic: {message}"
    );
    assert!(
        message.contains(&format!("`{call}`")),
        "does not name {call}: {message}"
    );
    for fix in [
        "contextvars::task::spawn",
        ".with_current_context()",
        "contextvars::tower::ContextLayer",
        "contextvars::Scoped::from_call",
        "contextvars::runtime::propagate",
        "contextvars::FutureExt",
        "a job sent through a channel",
        ".with_context(ctx)",
        "cargo tree -d",
    ] {
        assert!(
            message.contains(fix),
            "does not name the fix {fix}: {message}"
        );
    }
}

// ---------- refused ----------

#[test]
fn the_message_says_how_to_carry_a_request_into_a_websocket_upgrade_callback() {
    // axum's `on_upgrade` runs its callback in a plain `tokio::spawn`ed task, after the
    // response: the layer is there, one version is linked, and the write is still refused.
    // The message must say what to do there, and warn that `.with_current_context()` inside
    // the callback forks the worker's context.
    let message = refused_in_plain_task(async { ID.set(1) });
    for hint in [
        "on_upgrade",
        "Context::current().fork()",
        ".with_context(ctx)",
        "forks the worker's context, not the request's",
    ] {
        assert!(message.contains(hint), "does not say {hint:?}: {message}");
    }
}

#[test]
fn the_message_says_what_to_do_in_a_task_a_library_spawns() {
    // A Leptos `Resource`'s future runs in a task `any_spawner` starts with a plain
    // `tokio::spawn`: the user spawned nothing, so "a task you spawn" does not point there.
    let message = refused_in_plain_task(async { ID.set(1) });
    for hint in [
        "a Leptos `Resource`",
        "wrap the future you hand it",
        "`contextvars::task::spawn` as its spawner",
        "Libraries that take a spawner",
    ] {
        assert!(message.contains(hint), "does not say {hint:?}: {message}");
    }
}

#[test]
fn the_message_says_how_to_serve_a_warp_filter() {
    // `warp::serve` takes no tower layer, and a warp filter cannot wrap the futures of the
    // filters after it: the fix is `ContextLayer` around `warp::service(filter)`, served with
    // hyper-util (the `tower` module docs).
    let message = refused_in_plain_task(async { ID.set(1) });
    for hint in [
        "warp",
        "`warp::serve` takes no layer",
        "warp::service(filter)",
    ] {
        assert!(message.contains(hint), "does not say {hint:?}: {message}");
    }
}

#[test]
fn the_message_says_where_a_value_per_connection_goes() {
    // A hyper accept loop in a plain `tokio::spawn`ed task that sets the peer's address before
    // `serve_connection`: `task::spawn` silences the panic but the value reaches no HTTP/2
    // request (tests/tower.rs); the connection's service is where it belongs.
    let message = refused_in_plain_task(async { ID.set(1) });
    for hint in [
        "a value per connection",
        "a middleware of the connection's own service, below `ContextLayer`",
    ] {
        assert!(message.contains(hint), "does not say {hint:?}: {message}");
    }
}

#[test]
fn set_in_a_plain_spawned_task_panics_naming_set_and_the_fixes() {
    assert_s21(
        &refused_in_plain_task(async { ID.set(1) }),
        "ContextVar::set",
    );
}

#[test]
fn set_arc_in_a_plain_spawned_task_panics() {
    let message = refused_in_plain_task(async { ID.set_arc(Arc::new(1)) });
    assert_s21(&message, "ContextVar::set_arc");
}

#[test]
fn reset_in_a_plain_spawned_task_panics_before_checking_the_token() {
    // A token of another var would be WrongVar; the S21 check comes first.
    let token = Context::new().run(|| OTHER.set(1));
    let message = refused_in_plain_task(async move { ID.reset(token) });
    assert_s21(&message, "ContextVar::reset");
}

#[test]
fn local_set_and_remove_in_a_plain_spawned_task_panic() {
    assert_s21(
        &refused_in_plain_task(async { LOCAL.set("a", 1) }),
        "Local::set",
    );
    // Even when there is nothing to remove: misuse is refused either way.
    let message = refused_in_plain_task(async { LOCAL.remove("missing") });
    assert_s21(&message, "Local::remove");
}

#[test]
fn thread_critical_local_set_and_remove_in_a_plain_spawned_task_panic() {
    assert_s21(
        &refused_in_plain_task(async { CRITICAL.set("db", 1) }),
        "Local::set",
    );
    assert_s21(
        &refused_in_plain_task(async { CRITICAL.remove("db") }),
        "Local::remove",
    );
}

#[test]
fn set_in_a_plain_spawn_blocking_job_panics() {
    let rt = current_thread();
    let err = rt
        .block_on(rt.spawn_blocking(|| ID.set(1)))
        .expect_err("a plain blocking job is a task: its write is refused");
    assert_s21(&message(err), "ContextVar::set");
}

#[test]
fn sync_to_async_write_back_into_a_plain_task_panics_only_with_changes() {
    let rt = multi_thread(2);
    // Nothing changed: nothing to write back, no panic.
    let seen = rt.block_on(rt.spawn(task::sync_to_async(|| ID.get())));
    assert_eq!(seen.unwrap(), None);
    // A change has nowhere to go but the worker's context: refused.
    let err = rt
        .block_on(rt.spawn(task::sync_to_async(|| {
            ID.set(5);
        })))
        .unwrap_err();
    assert_s21(&message(err), "task::sync_to_async");
}

#[test]
fn a_bridged_panic_is_not_replaced_by_the_refusal_of_its_write_back() {
    let rt = multi_thread(2);
    // `f` set something, then panicked, in a plain task: the caller gets `f`'s panic (which
    // says what went wrong), not the S21 refusal of the write-back; the change is dropped.
    let err = rt
        .block_on(rt.spawn(task::sync_to_async(|| {
            ID.set(5);
            LOCAL.set("a", 1);
            panic!("f's own failure");
        })))
        .unwrap_err();
    assert_eq!(message(err), "f's own failure");
    // The same for `async_to_sync` in a plain blocking job (a task with no context).
    let err = rt
        .block_on(rt.spawn_blocking(|| {
            task::async_to_sync(async {
                ID.set(6);
                panic!("the future's own failure");
            })
        }))
        .unwrap_err();
    assert_eq!(message(err), "the future's own failure");
    // Nothing landed in a worker's context or a pool thread's.
    let (on_worker, in_pool) = rt.block_on(async {
        let on_worker = tokio::spawn(async { (ID.get(), LOCAL.get::<i32>("a").is_ok()) });
        let in_pool = tokio::task::spawn_blocking(|| ID.get());
        (on_worker.await.unwrap(), in_pool.await.unwrap())
    });
    assert_eq!(on_worker, (None, false));
    assert_eq!(in_pool, None);
}

#[test]
fn refused_writes_leave_every_worker_clean() {
    let rt = multi_thread(4);
    rt.block_on(async {
        let mut refused = 0;
        let handles: Vec<_> = (0..200u64)
            .map(|n| {
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    ID.set(n);
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.await.unwrap_err().is_panic());
            refused += 1;
        }
        assert_eq!(refused, 200);
        // Every plain task after them, on any worker, reads nothing left behind.
        let reads: Vec<_> = (0..200)
            .map(|_| tokio::spawn(async { ID.get().map(|v| *v) }))
            .collect();
        for read in reads {
            assert_eq!(read.await.unwrap(), None);
        }
    });
}

// ---------- allowed ----------

#[test]
fn reads_in_a_plain_spawned_task_are_never_refused() {
    let rt = current_thread();
    let seen = rt.block_on(rt.spawn(async {
        (
            ID.get(),
            ID.is_set(),
            ID.with(|v| v.copied()),
            Context::current().len(),
            LOCAL.contains("a"),
            LOCAL.get::<u32>("a").is_err(),
        )
    }));
    assert_eq!(seen.unwrap(), (None, false, None, 0, false, true));
}

#[test]
fn writes_in_the_block_on_root_future_are_allowed() {
    for rt in [current_thread(), multi_thread(2)] {
        let outside = std::thread::spawn(move || {
            rt.block_on(async {
                ID.set(1);
                let token = ID.set(2);
                ID.reset(token).unwrap();
                LOCAL.set("a", 1u8);
                LOCAL.remove("a").unwrap();
            });
            ID.get().map(|v| *v) // the root future shares the calling thread's context
        });
        assert_eq!(outside.join().unwrap(), Some(1));
    }
}

#[tokio::test]
async fn writes_in_a_tokio_test_body_are_allowed() {
    ID.set(3);
    assert_eq!(ID.get().as_deref(), Some(&3));
}

#[test]
fn writes_on_plain_threads_are_allowed() {
    std::thread::spawn(|| {
        ID.set(4);
        LOCAL.set("x", 1);
        CRITICAL.set("y", 2);
    })
    .join()
    .unwrap();
}

#[test]
fn writes_inside_run_sync_scope_and_scoped_within_a_plain_task_are_allowed() {
    let rt = multi_thread(2);
    let seen = rt.block_on(rt.spawn(async {
        let in_run = Context::new().run(|| {
            ID.set(1);
            ID.get().map(|v| *v)
        });
        let in_sync_scope = OTHER.sync_scope(0, || {
            ID.set(2);
            ID.get().map(|v| *v)
        });
        let in_scoped = async {
            ID.set(3);
            tokio::task::yield_now().await;
            ID.get().map(|v| *v)
        }
        .with_current_context()
        .await;
        (in_run, in_sync_scope, in_scoped, ID.get().map(|v| *v))
    }));
    assert_eq!(seen.unwrap(), (Some(1), Some(2), Some(3), None));
}

#[test]
fn writes_in_the_crates_spawned_tasks_and_blocking_jobs_are_allowed() {
    let rt = multi_thread(2);
    rt.block_on(async {
        ID.set(1);
        let child = task::spawn(async {
            ID.set(2);
            tokio::task::yield_now().await;
            *ID.get().unwrap()
        });
        let job = task::spawn_blocking(|| {
            ID.set(3);
            *ID.get().unwrap()
        });
        let bridged = task::sync_to_async(|| ID.set(4)).await;
        drop(bridged);
        assert_eq!(child.await.unwrap(), 2);
        assert_eq!(job.await.unwrap(), 3);
        assert_eq!(ID.get().as_deref(), Some(&4)); // written back into the root
    });
}

#[test]
fn the_check_is_per_entered_context_not_per_thread() {
    // Leaving a `run` inside a plain task makes writes there refused again.
    let message = refused_in_plain_task(async {
        Context::new().run(|| ID.set(1));
        ID.set(2);
    });
    assert_s21(&message, "ContextVar::set");
}
