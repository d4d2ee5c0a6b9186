//! The thread's current context: what the crate's one `unsafe` module (`src/current.rs`) must
//! get right. Every test here also runs under Miri in `.ci/run`, which checks the pointer
//! discipline (no dangling current context, no value freed while `with` reads it, no aliasing
//! of a context being written), so they use no runtime and no timing.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use contextvars::{Context, ContextVar, FutureExt, Local, copy_context};

static NAME: ContextVar<String> = ContextVar::new("name");
static OTHER: ContextVar<String> = ContextVar::new("other");

#[test]
fn a_value_read_by_with_outlives_writes_made_while_reading_it() {
    Context::new().run(|| {
        NAME.set("first".to_owned());
        NAME.with(|name| {
            let name = name.expect("set");
            // Replace it, reset it, replace it again and drop every token: the only other
            // owner of "first" is the context, which no longer holds it.
            let token = NAME.set("second".to_owned());
            NAME.reset(token).unwrap();
            drop(NAME.set("third".to_owned()));
            assert_eq!(name, "first");
            assert_eq!(NAME.get().as_deref().map(String::as_str), Some("third"));
        });
        assert_eq!(NAME.get().as_deref().map(String::as_str), Some("third"));
    });
}

#[test]
fn a_value_read_by_with_outlives_the_map_growing_into_a_trie() {
    let many: Vec<ContextVar<u64>> = (0..40).map(|_| ContextVar::new("many")).collect();
    Context::new().run(|| {
        NAME.set("kept".to_owned());
        NAME.with(|name| {
            for (i, var) in many.iter().enumerate() {
                var.set(i as u64);
            }
            drop(NAME.set("replaced".to_owned()));
            assert_eq!(name.map(String::as_str), Some("kept"));
        });
        assert_eq!(*many[39].get().unwrap(), 39);
    });
}

#[test]
fn nested_reads_keep_values_until_the_outermost_ends() {
    Context::new().run(|| {
        NAME.set("outer".to_owned());
        OTHER.set("inner".to_owned());
        NAME.with(|outer| {
            OTHER.with(|inner| {
                drop(NAME.set("changed".to_owned()));
                drop(OTHER.set("changed".to_owned()));
                assert_eq!(inner.map(String::as_str), Some("inner"));
            });
            // The inner read ended; the outer one still reads the value it found.
            assert_eq!(outer.map(String::as_str), Some("outer"));
        });
    });
}

#[test]
fn copies_kept_for_a_read_are_released_when_it_ends() {
    static COUNTED: ContextVar<Arc<()>> = ContextVar::new("counted");
    let witness = Arc::new(());
    Context::new().run(|| {
        COUNTED.set(witness.clone());
        COUNTED.with(|_| {
            drop(COUNTED.set(Arc::new(())));
            // The context no longer holds `witness`; the copy kept for this read does.
            assert_eq!(Arc::strong_count(&witness), 2);
        });
        assert_eq!(Arc::strong_count(&witness), 1, "the kept copy is dropped");
    });
}

#[test]
fn many_writes_inside_one_read_drop_what_they_replace_as_they_go() {
    // Only the storage a read may point into is kept: the first write inside a read keeps a
    // copy, and the writes after it change storage no read points into. Before, every write
    // kept another copy until the read ended, so a loop of writes inside one `with` held
    // every value it replaced.
    static COUNTED: ContextVar<Arc<()>> = ContextVar::new("counted");
    let writes = if cfg!(miri) { 20 } else { 1_000 };
    Context::new().run(|| {
        NAME.set("read".to_owned());
        NAME.with(|name| {
            let mut replaced = Vec::new();
            for _ in 0..writes {
                let value = Arc::new(());
                replaced.push(Arc::downgrade(&value));
                drop(COUNTED.set(value));
                drop(NAME.set("written".to_owned())); // the variable being read, too
            }
            let alive = replaced.iter().filter(|w| w.strong_count() > 0).count();
            assert!(alive <= 2, "{alive} of {writes} replaced values still held");
            assert_eq!(name.map(String::as_str), Some("read"));
        });
    });
}

#[test]
fn reads_started_between_writes_keep_what_they_read() {
    // A read that starts after a write (and so points into storage that write made) makes
    // the next write keep a copy again; so does a write to another context in between.
    Context::new().run(|| {
        NAME.set("0".to_owned());
        NAME.with(|first| {
            drop(NAME.set("1".to_owned()));
            drop(NAME.set("2".to_owned()));
            NAME.with(|second| {
                drop(NAME.set("3".to_owned()));
                Context::new().run(|| drop(NAME.set("elsewhere".to_owned())));
                OTHER.with(|_| ());
                drop(NAME.set("4".to_owned()));
                NAME.with(|third| {
                    drop(NAME.set("5".to_owned()));
                    assert_eq!(third.map(String::as_str), Some("4"));
                });
                drop(NAME.set("6".to_owned()));
                assert_eq!(second.map(String::as_str), Some("2"));
            });
            assert_eq!(first.map(String::as_str), Some("0"));
        });
        assert_eq!(NAME.get().as_deref().map(String::as_str), Some("6"));
    });
}

#[test]
fn a_panic_inside_with_leaves_no_read_in_progress() {
    static COUNTED: ContextVar<Arc<()>> = ContextVar::new("counted");
    let witness = Arc::new(());
    Context::new().run(|| {
        COUNTED.set(witness.clone());
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            COUNTED.with(|_| {
                drop(COUNTED.set(Arc::new(())));
                panic!("inside with");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(Arc::strong_count(&witness), 1, "released while unwinding");
        // No read is left in progress: a write now keeps nothing.
        COUNTED.set(witness.clone());
        drop(COUNTED.set(Arc::new(())));
        assert_eq!(Arc::strong_count(&witness), 1);
    });
}

#[test]
fn run_inside_with_and_with_inside_run() {
    let mut entered = Context::new().with_value(&NAME, "entered".to_owned());
    Context::new().run(|| {
        NAME.set("outer".to_owned());
        NAME.with(|outer| {
            entered.run(|| {
                NAME.with(|inner| {
                    drop(NAME.set("entered, changed".to_owned()));
                    assert_eq!(inner.map(String::as_str), Some("entered"));
                    assert_eq!(
                        NAME.get().as_deref().map(String::as_str),
                        Some("entered, changed")
                    );
                });
            });
            drop(NAME.set("outer, changed".to_owned()));
            assert_eq!(outer.map(String::as_str), Some("outer"));
        });
    });
    assert_eq!(
        entered.get(&NAME).as_deref().map(String::as_str),
        Some("entered, changed")
    );
}

#[test]
fn cached_lookups_follow_every_enter_leave_and_write() {
    // More variables than cache slots, so that some share a slot.
    let vars: Vec<ContextVar<usize>> = (0..20).map(|_| ContextVar::new("v")).collect();
    let mut other = Context::new();
    Context::new().run(|| {
        for (i, var) in vars.iter().enumerate() {
            assert!(var.get().is_none());
            var.set(i);
            // A `set` caches the value it binds: every variable, including those sharing its
            // slot, still reads its own.
            for (j, earlier) in vars[..=i].iter().enumerate().rev() {
                assert_eq!(earlier.get().map(|v| *v), Some(j));
            }
        }
        for round in 0..3 {
            for (i, var) in vars.iter().enumerate() {
                assert_eq!(*var.get().unwrap(), i + round * 100);
                assert!(var.is_set());
                var.with(|v| assert_eq!(v, Some(&(i + round * 100))));
                other.run(|| {
                    assert_eq!(var.get().map(|v| *v), (round > 0).then_some(i + 1000));
                    var.set(i + 1000);
                    assert_eq!(*var.get().unwrap(), i + 1000);
                });
                assert_eq!(*var.get().unwrap(), i + round * 100);
            }
            for (i, var) in vars.iter().enumerate() {
                var.set(i + (round + 1) * 100);
            }
        }
        let snapshot = copy_context();
        vars[0].set(7);
        assert_eq!(snapshot.get(&vars[0]).map(|v| *v), Some(300));
        assert_eq!(vars[0].get().map(|v| *v), Some(7));
    });
    assert_eq!(other.get(&vars[19]).map(|v| *v), Some(1019));
}

#[test]
fn a_panic_inside_run_restores_the_previous_context() {
    let mut inner = Context::new();
    Context::new().run(|| {
        NAME.set("outer".to_owned());
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            inner.run(|| {
                NAME.set("inner".to_owned());
                panic!("inside run");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(NAME.get().as_deref().map(String::as_str), Some("outer"));
    });
    assert_eq!(
        inner.get(&NAME).as_deref().map(String::as_str),
        Some("inner")
    );
}

/// Sets `NAME` on its first poll, reads it on its second.
struct TwoPolls(bool);

impl Future for TwoPolls {
    type Output = Option<String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if !self.0 {
            self.0 = true;
            NAME.set("in the future".to_owned());
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(NAME.get().map(|name| (*name).clone()))
    }
}

#[test]
fn a_scoped_future_keeps_its_writes_between_polls_and_leaks_none() {
    let mut cx = TaskContext::from_waker(Waker::noop());
    Context::new().run(|| {
        NAME.set("caller".to_owned());
        let mut fut = pin!(TwoPolls(false).with_context(Context::new()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(NAME.get().as_deref().map(String::as_str), Some("caller"));
        let seen = fut.as_mut().poll(&mut cx);
        assert_eq!(seen, Poll::Ready(Some("in the future".to_owned())));
        assert_eq!(NAME.get().as_deref().map(String::as_str), Some("caller"));
    });
}

#[test]
fn a_scoped_future_dropped_unpolled_drops_inside_its_context() {
    struct SeesName(Cell<Option<String>>);
    impl Drop for SeesName {
        fn drop(&mut self) {
            self.0.set(NAME.get().map(|name| (*name).clone()));
            assert_eq!(self.0.take().as_deref(), Some("scoped"));
        }
    }
    let fut = std::future::ready(SeesName(Cell::new(None)))
        .with_context(Context::new().with_value(&NAME, "scoped".to_owned()));
    drop(fut);
    assert!(NAME.get().is_none());
}

#[test]
fn local_writes_inside_a_read_keep_the_attribute_read() {
    static LOCAL: Local = Local::new();
    Context::new().run(|| {
        LOCAL.set("user", "alice".to_owned());
        let seen = LOCAL.get::<String>("user").unwrap();
        LOCAL.set("user", "bob".to_owned());
        assert_eq!(*seen, "alice");
        assert_eq!(*LOCAL.get::<String>("user").unwrap(), "bob");
    });
}

#[test]
fn thread_teardown_reads_empty_discards_writes_and_still_runs_contexts() {
    thread_local! {
        static AT_EXIT: AtExit = const { AtExit };
    }
    struct AtExit;
    impl Drop for AtExit {
        fn drop(&mut self) {
            // Destroyed after the crate's thread-local (registered later, destroyed first):
            // the thread's own context is gone.
            assert!(NAME.get().is_none());
            NAME.set("discarded".to_owned());
            assert!(NAME.get().is_none());
            NAME.with(|name| assert!(name.is_none()));
            let mut ctx = Context::new();
            ctx.run(|| {
                NAME.set("entered".to_owned());
                assert_eq!(NAME.get().as_deref().map(String::as_str), Some("entered"));
            });
            assert!(NAME.get().is_none());
            assert_eq!(
                ctx.get(&NAME).as_deref().map(String::as_str),
                Some("entered")
            );
            // `sync_scope` enters a copy of the (empty) current context with NAME set.
            let seen = NAME.sync_scope("scoped".to_owned(), || {
                (NAME.get().map(|name| (*name).clone()), OTHER.get())
            });
            assert_eq!(seen, (Some("scoped".to_owned()), None));
            assert!(NAME.get().is_none());
        }
    }
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    std::thread::spawn(|| {
        AT_EXIT.with(|_| {});
        OTHER.set(1);
        NAME.set("own".to_owned());
        assert_eq!(NAME.get().as_deref().map(String::as_str), Some("own"));
    })
    .join()
    .unwrap();
}

/// A value whose drop uses the crate: reads, copies the current context and writes.
struct UsesCrateOnDrop(u32);

static PROBE: ContextVar<u32> = ContextVar::new("probe");

thread_local! {
    static STASHED: std::cell::RefCell<Vec<Context>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for UsesCrateOnDrop {
    fn drop(&mut self) {
        let _ = PROBE.get();
        STASHED.with(|stash| stash.borrow_mut().push(Context::current()));
        PROBE.set(self.0);
    }
}

#[test]
fn a_value_whose_last_reference_a_write_retires_drops_after_the_write() {
    static DROPS: ContextVar<UsesCrateOnDrop> = ContextVar::new("drops");
    let vars: Vec<ContextVar<u32>> = (0..7).map(|_| ContextVar::new("v")).collect();
    Context::new().run(|| {
        for var in &vars[..5] {
            var.set(1);
        }
        DROPS.set(UsesCrateOnDrop(1));
        let snapshot = copy_context();
        // Six bindings shared with the snapshot: a layer over them holds the new value, and
        // the old one stays in the layer's base.
        drop(DROPS.set(UsesCrateOnDrop(2)));
        drop(snapshot);
        // Two more new bindings fill the layer and flatten it: the base, the old value's last
        // owner, is dropped, and its drop uses the crate.
        vars[5].set(1);
        vars[6].set(1);
        assert_eq!(PROBE.get().map(|v| *v), Some(1), "the drop's write landed");
        let stashed = STASHED
            .with(|stash| stash.borrow_mut().pop())
            .expect("dropped");
        assert_eq!(stashed.len(), 8, "the copy made during the drop is whole");
        assert_eq!(DROPS.get().map(|v| v.0), Some(2));
    });
}

#[test]
fn a_local_value_retired_from_a_large_context_drops_after_the_write() {
    static LOCAL: Local = Local::new();
    let vars: Vec<ContextVar<u32>> = (0..20).map(|_| ContextVar::new("v")).collect();
    Context::new().run(|| {
        // Past the flat array: a trie, changed in place through a layer.
        for var in &vars[..18] {
            var.set(1);
        }
        LOCAL.set("k", UsesCrateOnDrop(1));
        LOCAL.set("k", UsesCrateOnDrop(2));
        vars[18].set(1);
        vars[19].set(1);
        assert_eq!(LOCAL.get::<UsesCrateOnDrop>("k").map(|v| v.0).ok(), Some(2));
        STASHED.with(|stash| stash.borrow_mut().clear());
    });
}
