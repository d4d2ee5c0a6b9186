//! `Scoped`, `FutureExt`, `ContextVar::scope`, `Context::scope`: S11–S14.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context as TaskContext, Poll, Waker};

mod common;

use common::current_thread;
use contextvars::{Context, ContextVar, FutureExt, Scoped};

static ID: ContextVar<u32> = ContextVar::new("id");

fn id() -> Option<u32> {
    ID.get().map(|v| *v)
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut TaskContext::from_waker(Waker::noop()))
}

/// Records the `ID` it sees when dropped.
struct SeesOnDrop(Arc<AtomicUsize>);

impl Drop for SeesOnDrop {
    fn drop(&mut self) {
        self.0.store(id().unwrap_or(0) as usize, SeqCst);
    }
}

/// A future that is pending `n` times before it completes.
struct YieldTimes(u32);
impl Future for YieldTimes {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

// ---------- S12 ----------

#[test]
fn sets_stay_in_the_scoped_context_across_awaits() {
    let mut fut = pin!(Scoped::new(Context::new(), async {
        ID.set(1);
        YieldTimes(1).await;
        let after_first = id();
        ID.set(2);
        YieldTimes(1).await;
        (after_first, id())
    }));
    Context::new().run(|| {
        ID.set(100);
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(id(), Some(100), "the caller's value is back between polls");
        assert_eq!(fut.context().get(&ID).as_deref(), Some(&1));
        ID.set(101);
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(poll_once(fut.as_mut()), Poll::Ready((Some(1), Some(2))));
        assert_eq!(id(), Some(101));
    });
}

#[test]
fn context_accessor_shows_what_the_future_set_so_far() {
    let mut fut = pin!(
        async {
            ID.set(5);
            YieldTimes(1).await;
        }
        .with_context(Context::new())
    );
    assert!(fut.context().is_empty());
    let _ = poll_once(fut.as_mut());
    assert_eq!(fut.context().get(&ID).as_deref(), Some(&5));
}

#[test]
fn other_tasks_never_see_a_scoped_futures_values_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                tokio::spawn(
                    async move {
                        for _ in 0..20 {
                            ID.set(i);
                            tokio::task::yield_now().await;
                            assert_eq!(id(), Some(i));
                        }
                    }
                    .with_context(Context::new()),
                )
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(id(), None);
    });
}

#[test]
fn inner_future_is_dropped_inside_its_context() {
    let seen = Arc::new(AtomicUsize::new(0));
    let guard = SeesOnDrop(seen.clone());
    let fut = async move {
        let _guard = guard;
        YieldTimes(1).await;
    }
    .with_context(Context::new().with_value(&ID, 42));
    let mut fut = Box::pin(fut);
    assert!(poll_once(fut.as_mut()).is_pending());
    Context::new().run(|| {
        ID.set(7);
        drop(fut);
        assert_eq!(id(), Some(7), "the caller's context is back after the drop");
    });
    assert_eq!(seen.load(SeqCst), 42);
}

#[test]
fn dropping_a_never_polled_scoped_future_enters_too() {
    let seen = Arc::new(AtomicUsize::new(0));
    let guard = SeesOnDrop(seen.clone());
    drop(ID.scope(9, async move { drop(guard) }));
    assert_eq!(seen.load(SeqCst), 9);
}

// ---------- panics ----------

#[test]
fn panic_inside_a_poll_leaves_the_thread_context_intact() {
    let mut fut = pin!(
        async {
            ID.set(1);
            panic!("in poll");
        }
        .with_context(Context::new())
    );
    Context::new().run(|| {
        ID.set(100);
        let r = catch_unwind(AssertUnwindSafe(|| poll_once(fut.as_mut())));
        assert!(r.is_err());
        assert_eq!(id(), Some(100));
        ID.set(101);
        assert_eq!(id(), Some(101), "still usable");
    });
    assert_eq!(
        fut.context().get(&ID).as_deref(),
        Some(&1),
        "sets before the panic stay"
    );
}

#[test]
fn panic_inside_the_inner_futures_drop_leaves_the_thread_context_intact() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            ID.set(666);
            panic!("in drop");
        }
    }
    let guard = PanicsOnDrop;
    let fut = async move {
        let _guard = guard;
        YieldTimes(1).await;
    }
    .with_context(Context::new());
    let mut fut = Box::pin(fut);
    assert!(poll_once(fut.as_mut()).is_pending());
    Context::new().run(|| {
        ID.set(100);
        let r = catch_unwind(AssertUnwindSafe(|| drop(fut)));
        assert!(r.is_err());
        assert_eq!(id(), Some(100));
    });
}

// ---------- S11: nesting ----------

#[test]
fn nested_scoped_polls_restore_in_lifo_order() {
    let fut = async {
        let outer_before = id();
        let inner = async {
            let inner_seen = id();
            YieldTimes(1).await;
            (inner_seen, id())
        }
        .with_context(Context::new().with_value(&ID, 2))
        .await;
        (outer_before, inner, id())
    }
    .with_context(Context::new().with_value(&ID, 1));
    let out = current_thread().block_on(fut);
    assert_eq!(out, (Some(1), (Some(2), Some(2)), Some(1)));
    assert_eq!(id(), None);
}

// ---------- S13: unwrapped futures ----------

#[test]
fn unwrapped_future_writes_into_the_threads_context() {
    // Documented hazard: a future that is not wrapped in `Scoped` runs in whatever context its
    // thread has, so its `set` lands in the thread's own context and outlives the future.
    let rt = current_thread();
    Context::new().run(|| {
        rt.block_on(async {
            tokio::spawn(async { ID.set(13) }).await.unwrap();
            let seen_by_another_plain_task = tokio::spawn(async { id() }).await.unwrap();
            assert_eq!(seen_by_another_plain_task, Some(13));
        });
        assert_eq!(id(), Some(13), "leaked into the thread's context");
    });
}

#[test]
fn with_current_context_keeps_sets_inside_the_future() {
    let rt = current_thread();
    Context::new().run(|| {
        rt.block_on(async {
            tokio::spawn(async { ID.set(13) }.with_current_context())
                .await
                .unwrap();
            let seen = tokio::spawn(async { id() }.with_current_context())
                .await
                .unwrap();
            assert_eq!(seen, None);
        });
        assert_eq!(id(), None);
    });
}

#[test]
fn with_current_context_forks_at_the_call() {
    Context::new().run(|| {
        ID.set(1);
        let fut = async { id() }.with_current_context();
        ID.set(2);
        assert_eq!(current_thread().block_on(fut), Some(1));
    });
}

// ---------- S14: scope ----------

#[test]
fn var_scope_sets_in_a_copy_and_nothing_leaks() {
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    Context::new().run(|| {
        OTHER.set(1);
        let fut = ID.scope(5, async {
            let seen = (id(), OTHER.get().map(|v| *v));
            OTHER.set(2);
            YieldTimes(2).await;
            seen
        });
        assert_eq!(current_thread().block_on(fut), (Some(5), Some(1)));
        assert_eq!(id(), None);
        assert_eq!(OTHER.get().as_deref(), Some(&1));
    });
}

#[test]
fn var_scope_copies_the_context_at_the_call_not_at_the_first_poll() {
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    Context::new().run(|| {
        OTHER.set(1);
        let fut = ID.scope(5, async { (id(), OTHER.get().map(|v| *v)) });
        OTHER.set(2); // after the call, before the first poll
        assert_eq!(current_thread().block_on(fut), (Some(5), Some(1)));
        assert_eq!(OTHER.get().as_deref(), Some(&2));
    });
}

#[test]
fn context_scope_runs_in_that_context() {
    let ctx = Context::new().with_value(&ID, 3);
    assert_eq!(
        current_thread().block_on(ctx.scope(async { id() })),
        Some(3)
    );
}

#[test]
fn into_parts_returns_the_context_with_what_was_set() {
    // `into_parts` needs an unpinned `Scoped`: box the inner future to make it `Unpin`.
    let mut fut = Box::pin(async {
        ID.set(4);
        YieldTimes(1).await;
    })
    .with_context(Context::new());
    let _ = poll_once(Pin::new(&mut fut));
    let (_inner, ctx) = fut.into_parts();
    assert_eq!(ctx.get(&ID).as_deref(), Some(&4));
}

#[test]
fn debug_shows_context_and_inner() {
    let fut = std::future::ready(1).with_context(Context::new().with_value(&ID, 1));
    let shown = format!("{fut:?}");
    assert!(
        shown.contains("Scoped") && shown.contains("\"id\""),
        "{shown}"
    );
}

#[test]
fn scoped_is_send_when_the_future_is() {
    fn check<T: Send>(_: &T) {}
    check(&async {}.with_current_context());
}

// ---------- Stream and Sink ----------

#[cfg(feature = "futures")]
mod streams {
    use super::*;
    use futures::{SinkExt, StreamExt};

    #[test]
    fn stream_items_are_produced_inside_the_context() {
        let stream = futures::stream::iter(0..3)
            .then(|i| async move {
                let seen = id();
                ID.set(i);
                seen
            })
            .boxed();
        let scoped = Scoped::new(Context::new().with_value(&ID, 10), stream);
        let seen: Vec<_> = current_thread().block_on(scoped.collect());
        assert_eq!(seen, [Some(10), Some(0), Some(1)]);
        assert_eq!(id(), None);
    }

    #[test]
    fn size_hint_runs_inside_the_context() {
        /// A stream whose size hint is the value of `ID`.
        struct HintsId;
        impl futures::Stream for HintsId {
            type Item = ();
            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<()>> {
                std::task::Poll::Ready(None)
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                let n = id().unwrap_or(0) as usize;
                (n, Some(n))
            }
        }
        let scoped = Scoped::new(Context::new().with_value(&ID, 7), HintsId);
        assert_eq!(futures::Stream::size_hint(&scoped), (7, Some(7)));
        assert_eq!(id(), None);
    }

    #[test]
    fn sink_operations_run_inside_the_context() {
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let record = seen.clone();
        let sink = futures::sink::unfold((), move |(), item: u32| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((item, id()));
                Ok::<_, std::convert::Infallible>(())
            }
        });
        let mut scoped = Box::pin(Scoped::new(Context::new().with_value(&ID, 77), sink));
        current_thread().block_on(async {
            scoped.send(1).await.unwrap();
            scoped.send(2).await.unwrap();
            scoped.close().await.unwrap();
        });
        assert_eq!(*seen.lock().unwrap(), [(1, Some(77)), (2, Some(77))]);
    }
}
