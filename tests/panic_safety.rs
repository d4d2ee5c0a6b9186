//! A panic anywhere the crate runs user code leaves every thread's current context exactly as it
//! was (same bindings, same `Arc`s) and the crate fully usable afterwards.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::{Context as TaskContext, Waker};

use contextvars::{Context, ContextVar, FutureExt, task};

static ID: ContextVar<u32> = ContextVar::new("id");

/// Runs `panicking` in a fresh thread context holding `ID = 1`, then checks that the context is
/// exactly as before and that `set`/`get`/`reset`/`run` all still work.
fn assert_panic_leaves_context_intact(panicking: impl FnOnce()) {
    Context::new().run(|| {
        ID.set(1);
        let before = Context::current();
        let outcome = catch_unwind(AssertUnwindSafe(panicking));
        assert!(outcome.is_err(), "the case under test must panic");
        assert_eq!(
            Context::current(),
            before,
            "the thread's context is exactly as before"
        );
        let token = ID.set(2);
        assert_eq!(ID.get().as_deref(), Some(&2));
        ID.reset(token).unwrap();
        assert_eq!(
            Context::new()
                .with_value(&ID, 3)
                .run(|| ID.get())
                .as_deref(),
            Some(&3)
        );
        assert_eq!(ID.get().as_deref(), Some(&1));
    });
}

fn blocking_pool_of_one() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn panic_inside_run() {
    assert_panic_leaves_context_intact(|| {
        Context::new().run(|| {
            ID.set(10);
            panic!("in run")
        })
    });
}

#[test]
fn panic_inside_nested_runs() {
    assert_panic_leaves_context_intact(|| {
        Context::new().run(|| Context::new().run(|| Context::new().run(|| panic!("deep"))))
    });
}

#[test]
fn panic_inside_with() {
    assert_panic_leaves_context_intact(|| ID.with(|_| panic!("in with")));
}

#[test]
fn panic_inside_run_inside_with() {
    assert_panic_leaves_context_intact(|| {
        ID.with(|_| Context::new().run(|| panic!("run inside with")))
    });
}

#[test]
fn panic_inside_sync_scope() {
    assert_panic_leaves_context_intact(|| ID.sync_scope(5, || panic!("in sync_scope")));
}

#[test]
fn panic_inside_a_poll() {
    assert_panic_leaves_context_intact(|| {
        let mut fut = pin!(
            async {
                ID.set(10);
                panic!("in poll")
            }
            .with_context(Context::new())
        );
        let _ = fut
            .as_mut()
            .poll(&mut TaskContext::from_waker(Waker::noop()));
    });
}

#[test]
fn panic_inside_the_inner_futures_drop() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            ID.set(666);
            panic!("in drop");
        }
    }
    assert_panic_leaves_context_intact(|| {
        let guard = PanicsOnDrop;
        drop(async move { drop(guard) }.with_context(Context::new()));
    });
}

#[test]
fn panic_inside_sync_to_async_closure() {
    let rt = blocking_pool_of_one();
    // The awaiting task's context: what the closure set before panicking is written back
    // (S16); everything else is as before.
    rt.block_on(
        async {
            ID.set(1);
            let outcome =
                futures::FutureExt::catch_unwind(AssertUnwindSafe(task::sync_to_async(|| {
                    ID.set(2);
                    panic!("in sync_to_async")
                })))
                .await;
            assert!(outcome.is_err());
            assert_eq!(ID.get().as_deref(), Some(&2));
            // The blocking pool thread that ran the closure is clean.
            let leftover = tokio::task::spawn_blocking(|| Context::current().len())
                .await
                .unwrap();
            assert_eq!(leftover, 0);
            // And the bridge is usable again.
            assert_eq!(task::sync_to_async(|| ID.get()).await.as_deref(), Some(&2));
        }
        .with_context(Context::new()),
    );
    // The thread that drove the runtime is untouched.
    assert_panic_leaves_context_intact(|| {
        blocking_pool_of_one().block_on(task::sync_to_async(|| panic!("in sync_to_async")))
    });
}

#[test]
fn panic_inside_async_to_sync_future() {
    assert_panic_leaves_context_intact(|| {
        std::thread::spawn(|| {
            let outcome = catch_unwind(|| {
                task::async_to_sync(async {
                    ID.set(7);
                    panic!("in async_to_sync")
                })
            });
            assert!(outcome.is_err());
            assert_eq!(
                ID.get().as_deref(),
                Some(&7),
                "written back before resuming"
            );
            // The private runtime and the bridge still work.
            assert_eq!(task::async_to_sync(async { ID.get() }).as_deref(), Some(&7));
        })
        .join()
        .unwrap();
        panic!("propagate, so that the helper sees a panic")
    });
}

#[test]
fn panic_inside_an_inherit_fork_function() {
    static EXPLODES: ContextVar<u32> = ContextVar::new("explodes")
        .inherit(contextvars::Inherit::Fork(|_| panic!("in Inherit::Fork")));
    assert_panic_leaves_context_intact(|| {
        let ctx = Context::new().with_value(&EXPLODES, 1);
        let _ = ctx.fork();
    });
}
