//! `thread::spawn` and plain threads: S6, S15, S20.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;

use contextvars::{Context, ContextVar, Inherit};

static ID: ContextVar<u32> = ContextVar::new("id");

fn id() -> Option<u32> {
    ID.get().map(|v| *v)
}

#[test]
fn plain_std_threads_start_with_an_empty_context() {
    ID.set(1);
    let seen = std::thread::spawn(|| (id(), Context::current().len()))
        .join()
        .unwrap();
    assert_eq!(seen, (None, 0));
}

#[test]
fn spawned_thread_sees_the_parent_values_at_spawn() {
    ID.set(1);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let child = contextvars::thread::spawn(move || {
        go_rx.recv().unwrap();
        id()
    });
    ID.set(2); // after the fork: not seen by the child
    go_tx.send(()).unwrap();
    assert_eq!(child.join().unwrap(), Some(1));
}

#[test]
fn child_sets_are_not_seen_by_the_parent() {
    ID.set(1);
    contextvars::thread::spawn(|| {
        ID.set(99);
        assert_eq!(id(), Some(99));
    })
    .join()
    .unwrap();
    assert_eq!(id(), Some(1));
}

#[test]
fn nested_spawned_threads_inherit_transitively() {
    ID.set(1);
    let seen = contextvars::thread::spawn(|| {
        ID.set(2);
        contextvars::thread::spawn(id).join().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(seen, Some(2));
}

#[test]
fn thread_spawn_applies_inherit_policies() {
    static PRIVATE: ContextVar<u32> = ContextVar::new("private").inherit(Inherit::None);
    static FRESH: ContextVar<Vec<u32>> =
        ContextVar::new("fresh").inherit(Inherit::Fork(|_| Vec::new()));
    PRIVATE.set(1);
    FRESH.set(vec![1, 2]);
    let (private, fresh) = contextvars::thread::spawn(|| (PRIVATE.get(), FRESH.get()))
        .join()
        .unwrap();
    assert_eq!(private, None);
    assert_eq!(fresh.as_deref(), Some(&vec![]));
}

#[test]
fn values_are_dropped_when_the_spawned_thread_ends() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    static V: ContextVar<Counted> = ContextVar::new("counted");
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    contextvars::thread::spawn(move || {
        V.set(Counted(d.clone()));
        V.set(Counted(d));
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn many_threads_each_see_only_their_own_value() {
    // Smaller under Miri (`.ci/run`), which runs threads a thousand times slower.
    let (threads, rounds) = if cfg!(miri) { (4, 20) } else { (32, 1_000) };
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            ID.sync_scope(i, || {
                contextvars::thread::spawn(move || {
                    for _ in 0..rounds {
                        assert_eq!(id(), Some(i));
                        let t = ID.set(i + 1_000);
                        assert_eq!(id(), Some(i + 1_000));
                        ID.reset(t).unwrap();
                    }
                    id()
                })
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), Some(i as u32));
    }
}
