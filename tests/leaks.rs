//! Values are dropped when the last context holding them goes; cancelled futures and tasks never
//! leave their context installed on a thread.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context as TaskContext, Poll, Waker};

mod common;

use common::current_thread;
use contextvars::{Context, ContextVar, FutureExt, Local, task};

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

static VALUE: ContextVar<Counted> = ContextVar::new("counted");
static ID: ContextVar<u32> = ContextVar::new("id");

fn counter() -> (Arc<AtomicUsize>, impl Fn() -> Counted) {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    (drops, move || Counted(d.clone()))
}

// ---------- leaks ----------

#[test]
fn value_set_inside_run_is_dropped_with_its_context() {
    let (drops, make) = counter();
    let mut ctx = Context::new();
    ctx.run(|| VALUE.set(make()));
    assert_eq!(drops.load(SeqCst), 0, "kept by the context after run");
    drop(ctx);
    assert_eq!(drops.load(SeqCst), 1);
}

/// A dropped context's storage is reused by the thread's next contexts: what it held must be
/// dropped with it, and never show up in a context made later.
#[test]
fn contexts_made_after_others_are_dropped_start_empty_and_drop_what_they_held() {
    let (drops, make) = counter();
    for round in 1..=20 {
        let mut ctx = Context::new();
        ctx.run(|| {
            assert!(VALUE.get().is_none() && ID.get().is_none(), "round {round}");
            VALUE.set(make());
            if round % 2 == 0 {
                ID.set(round);
            }
        });
        assert_eq!(ctx.len(), 1 + usize::from(round % 2 == 0));
        drop(ctx);
        assert_eq!(
            drops.load(SeqCst),
            round as usize,
            "dropped with its context"
        );
    }
}

/// Dropping a context can run a value's `Drop`, which may make and drop contexts of its own.
#[test]
fn a_value_whose_drop_makes_and_drops_contexts_is_dropped_with_its_context() {
    struct MakesContexts(Arc<AtomicUsize>);
    impl Drop for MakesContexts {
        fn drop(&mut self) {
            for _ in 0..3 {
                let mut inner = Context::new();
                inner.run(|| ID.set(1));
                assert_eq!(inner.len(), 1);
            }
            self.0.fetch_add(1, SeqCst);
        }
    }
    static MAKER: ContextVar<MakesContexts> = ContextVar::new("makes contexts");

    let drops = Arc::new(AtomicUsize::new(0));
    for round in 1..=3 {
        let mut ctx = Context::new();
        ctx.run(|| MAKER.set(MakesContexts(drops.clone())));
        drop(ctx);
        assert_eq!(drops.load(SeqCst), round);
    }
}

/// A context dropped while the thread's thread-locals are destroyed still drops its values.
#[test]
fn a_context_dropped_at_thread_exit_drops_its_values() {
    thread_local! {
        static KEPT: std::cell::RefCell<Option<Context>> = const { std::cell::RefCell::new(None) };
    }
    let (drops, make) = counter();
    std::thread::spawn(move || {
        // One context goes first, so that the thread keeps its storage for reuse...
        Context::new().run(|| ID.set(1));
        // ...and one is dropped with the thread's thread-locals.
        let mut ctx = Context::new();
        ctx.run(|| VALUE.set(make()));
        KEPT.with(|kept| *kept.borrow_mut() = Some(ctx));
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn reset_drops_the_value_it_removes() {
    let (drops, make) = counter();
    Context::new().run(|| {
        let first = VALUE.set(make());
        let second = VALUE.set(make());
        assert_eq!(
            drops.load(SeqCst),
            0,
            "the first value lives on in `second`"
        );
        drop(second); // the only owner of the first value left
        assert_eq!(drops.load(SeqCst), 1);
        VALUE.reset(first).unwrap(); // unbinds the second value
        assert_eq!(drops.load(SeqCst), 2);
    });
}

#[test]
fn value_is_dropped_when_a_task_completes() {
    let (drops, make) = counter();
    let rt = current_thread();
    rt.block_on(async {
        task::spawn(async move { VALUE.set(make()) }).await.unwrap();
    });
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn value_is_dropped_when_a_task_is_aborted() {
    let (drops, make) = counter();
    let rt = current_thread();
    rt.block_on(async {
        let handle = task::spawn(async move {
            VALUE.set(make());
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await; // let it set the value
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
    });
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn value_is_dropped_when_the_runtime_shuts_down() {
    let (drops, make) = counter();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(
        async move {
            VALUE.set(make());
            tx.send(()).unwrap();
            std::future::pending::<()>().await;
        }
        .with_context(Context::new()),
    );
    rx.recv().unwrap();
    drop(rt);
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn value_is_dropped_when_a_thread_exits() {
    let (drops, make) = counter();
    let make = Arc::new(make);
    let m = make.clone();
    contextvars::thread::spawn(move || VALUE.set(m()))
        .join()
        .unwrap();
    assert_eq!(
        drops.load(SeqCst),
        1,
        "thread::spawn's fork is dropped at the end"
    );
    let m = make.clone();
    std::thread::spawn(move || VALUE.set(m())).join().unwrap();
    assert_eq!(
        drops.load(SeqCst),
        2,
        "a plain thread's own context is dropped at exit"
    );
}

#[test]
fn values_written_back_by_a_bridge_are_dropped_with_the_caller() {
    let (drops, make) = counter();
    let rt = current_thread();
    rt.block_on(Context::new().scope(async move {
        task::sync_to_async(move || VALUE.set(make())).await;
        assert!(VALUE.is_set(), "written back into the caller's context");
    }));
    assert_eq!(
        drops.load(SeqCst),
        1,
        "the Scoped context went with the future"
    );
}

#[test]
fn local_attributes_are_dropped_with_their_context() {
    static LOCAL: Local = Local::new();
    let (drops, make) = counter();
    let mut ctx = Context::new();
    ctx.run(|| {
        LOCAL.set("a", make());
        LOCAL.set("a", make()); // the first is replaced: dropped now
    });
    assert_eq!(drops.load(SeqCst), 1);
    drop(ctx);
    assert_eq!(drops.load(SeqCst), 2);
}

// ---------- cancellation ----------

/// A future that sets `ID` and then never completes.
struct SetThenPend(u32);

impl Future for SetThenPend {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        ID.set(self.0);
        Poll::Pending
    }
}

#[test]
fn dropping_a_scoped_future_mid_flight_restores_the_callers_context() {
    let (drops, make) = counter();
    Context::new().run(|| {
        ID.set(1);
        let before = Context::current();
        let mut fut = Box::pin(
            async move {
                VALUE.set(make());
                SetThenPend(2).await
            }
            .with_context(Context::new()),
        );
        assert!(
            fut.as_mut()
                .poll(&mut TaskContext::from_waker(Waker::noop()))
                .is_pending()
        );
        drop(fut);
        assert_eq!(Context::current(), before);
        assert_eq!(ID.get().as_deref(), Some(&1));
    });
    assert_eq!(
        drops.load(SeqCst),
        1,
        "the future's context is gone with it"
    );
}

#[test]
fn aborting_a_task_never_leaves_its_context_on_the_worker_thread() {
    let rt = current_thread();
    Context::new().run(|| {
        rt.block_on(async {
            let handles: Vec<_> = (10..20).map(|i| task::spawn(SetThenPend(i))).collect();
            tokio::task::yield_now().await;
            for h in &handles {
                h.abort();
            }
            for h in handles {
                assert!(h.await.unwrap_err().is_cancelled());
            }
            // A plain task on the same thread sees the thread's own, untouched context.
            let seen = tokio::spawn(async { (ID.get(), Context::current().len()) })
                .await
                .unwrap();
            assert_eq!(seen, (None, 0));
        });
        assert_eq!(ID.get(), None);
    });
}

#[test]
fn dropping_a_sync_to_async_future_before_completion_changes_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(
        async {
            ID.set(1);
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let bridge = task::sync_to_async(move || {
                ID.set(2);
                let _ = rx.recv(); // wait until the caller gave up
            });
            // Poll once so the job starts, then drop the bridge future.
            let mut bridge = Box::pin(bridge);
            let _ = futures::poll!(bridge.as_mut());
            drop(bridge);
            drop(tx);
            assert_eq!(ID.get().as_deref(), Some(&1), "nothing written back");
        }
        .with_context(Context::new()),
    );
}
