//! `ContextVar`, `Token` and `VarKey`: S1–S5, S14 (`sync_scope`).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use contextvars::{Context, ContextVar, ResetError, Token, copy_context};

static NAME: ContextVar<String> = ContextVar::new("name");

fn s(v: &str) -> String {
    v.to_string()
}

fn name() -> Option<String> {
    NAME.get().map(|v| (*v).clone())
}

// ---------- S1: identity ----------

#[test]
fn vars_with_same_name_and_type_are_distinct_keys() {
    static A: ContextVar<u32> = ContextVar::new("same");
    static B: ContextVar<u32> = ContextVar::new("same");
    Context::new().run(|| {
        A.set(1);
        assert_eq!(B.get(), None);
        B.set(2);
        assert_eq!(A.get().as_deref(), Some(&1));
        assert_ne!(A.key(), B.key());
        assert_ne!(A, B);
        assert_eq!(A, A);
    });
}

#[test]
fn runtime_vars_never_share_an_id_even_after_drop() {
    let mut keys = HashSet::new();
    let mut ctx = Context::new();
    for i in 0..1_000u32 {
        let var = ContextVar::<u32>::new("runtime");
        ctx.run(|| var.set(i));
        assert!(keys.insert(var.key()), "id reused at iteration {i}");
        // `var` is dropped here; its id must not come back.
    }
    assert_eq!(ctx.len(), 1_000);
}

#[test]
fn var_is_hashable_by_identity() {
    let a = ContextVar::<u8>::new("a");
    let b = ContextVar::<u8>::new("a");
    let mut set = HashSet::new();
    set.insert(a.key());
    assert!(set.contains(&a.key()));
    assert!(!set.contains(&b.key()));
    // The lazily assigned id is the only interior mutability, and it never changes once read.
    #[allow(clippy::mutable_key_type)]
    let vars: HashSet<&ContextVar<u8>> = [&a, &b, &a].into_iter().collect();
    assert_eq!(vars.len(), 2);
}

#[test]
fn debug_shows_the_name() {
    static V: ContextVar<u8> = ContextVar::new("visible_name");
    assert!(format!("{V:?}").contains("visible_name"));
    assert!(format!("{:?}", V.key()).contains("visible_name"));
    let token = Context::new().run(|| V.set(1));
    assert!(format!("{token:?}").contains("visible_name"));
}

#[test]
fn var_and_token_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ContextVar<String>>();
    check::<Token<String>>();
    check::<Context>();
}

// ---------- S2: get ----------

#[test]
fn get_without_value_or_default_is_none() {
    Context::new().run(|| assert_eq!(NAME.get(), None));
}

#[test]
fn get_returns_the_value_set() {
    Context::new().run(|| {
        NAME.set(s("x"));
        assert_eq!(name().as_deref(), Some("x"));
    });
}

#[test]
fn default_is_created_once_and_shared_across_threads() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static V: ContextVar<Vec<u8>> = ContextVar::with_default("v", || {
        CALLS.fetch_add(1, SeqCst);
        vec![1]
    });
    let here = V.get().unwrap();
    let there = std::thread::spawn(|| V.get().unwrap()).join().unwrap();
    assert!(Arc::ptr_eq(&here, &there));
    V.with(|v| assert!(std::ptr::eq(v.unwrap(), &*here)));
    assert_eq!(CALLS.load(SeqCst), 1);
}

#[test]
fn set_value_hides_the_default() {
    static V: ContextVar<u8> = ContextVar::with_default("v", || 1);
    Context::new().run(|| {
        V.set(2);
        assert_eq!(V.get().as_deref(), Some(&2));
    });
    assert_eq!(V.get().as_deref(), Some(&1));
}

// ---------- S3: with ----------

#[test]
fn with_borrows_the_same_allocation_as_get() {
    Context::new().run(|| {
        NAME.set(s("x"));
        let arc = NAME.get().unwrap();
        NAME.with(|v| assert!(std::ptr::eq(v.unwrap(), &*arc)));
    });
}

#[test]
fn with_takes_no_reference_count_while_get_takes_one() {
    // S3: `with` borrows the value in place; `get` hands out a new `Arc`.
    Context::new().run(|| {
        let value = Arc::new(s("x"));
        NAME.set_arc(value.clone());
        assert_eq!(Arc::strong_count(&value), 2, "ours and the context's");
        NAME.with(|v| {
            assert_eq!(v.map(String::as_str), Some("x"));
            assert_eq!(Arc::strong_count(&value), 2, "`with` cloned the Arc");
        });
        let got = NAME.get().unwrap();
        assert_eq!(Arc::strong_count(&value), 3);
        drop(got);
    });
}

#[test]
fn with_sees_none_when_unset() {
    Context::new().run(|| assert!(NAME.with(|v| v.is_none())));
}

#[test]
fn with_closure_may_set_the_same_var_and_keeps_its_value_alive() {
    struct Loud(Arc<AtomicUsize>);
    impl Drop for Loud {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    static V: ContextVar<Loud> = ContextVar::new("loud");
    let drops = Arc::new(AtomicUsize::new(0));
    Context::new().run(|| {
        V.set(Loud(drops.clone()));
        V.with(|first| {
            // Replacing the only other owner must not free what `first` points to.
            V.set(Loud(drops.clone()));
            assert_eq!(drops.load(SeqCst), 0);
            assert!(Arc::ptr_eq(&first.unwrap().0, &drops));
            V.with(|second| assert!(!std::ptr::eq(first.unwrap(), second.unwrap())));
        });
        assert_eq!(
            drops.load(SeqCst),
            1,
            "the first value is freed once `with` returns"
        );
    });
}

#[test]
fn with_closure_may_use_every_api_without_panic_or_deadlock() {
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    Context::new().run(|| {
        NAME.set(s("outer"));
        NAME.with(|v| {
            let token = OTHER.set(1);
            assert_eq!(OTHER.get().as_deref(), Some(&1));
            let mut copy = copy_context();
            copy.run(|| {
                NAME.set(s("in copy"));
                NAME.with(|inner| assert_eq!(inner.map(String::as_str), Some("in copy")));
            });
            let seen = NAME.sync_scope(s("scoped"), name);
            assert_eq!(seen.as_deref(), Some("scoped"));
            OTHER.reset(token).unwrap();
            assert!(!OTHER.is_set());
            let _ = contextvars::thread::spawn(|| NAME.get()).join();
            assert_eq!(v.map(String::as_str), Some("outer"));
        });
        assert_eq!(name().as_deref(), Some("outer"));
    });
}

#[test]
fn panic_inside_with_leaves_the_context_usable() {
    Context::new().run(|| {
        NAME.set(s("kept"));
        let result = catch_unwind(AssertUnwindSafe(|| {
            NAME.with(|_| {
                NAME.set(s("set before panic"));
                panic!("boom")
            })
        }));
        assert!(result.is_err());
        // The write made inside `with` is a write to the current context, as anywhere else.
        assert_eq!(name().as_deref(), Some("set before panic"));
        NAME.set(s("after"));
        assert_eq!(name().as_deref(), Some("after"));
    });
}

// ---------- S4: set ----------

#[test]
fn set_changes_only_the_current_context() {
    Context::new().run(|| {
        NAME.set(s("a"));
        let before = copy_context();
        NAME.set(s("b"));
        assert_eq!(before.get(&NAME).as_deref().map(String::as_str), Some("a"));
        assert_eq!(name().as_deref(), Some("b"));
    });
}

#[test]
fn token_records_missing_then_previous_value() {
    static V: ContextVar<u8> = ContextVar::with_default("v", || 9);
    Context::new().run(|| {
        let first = V.set(1);
        assert!(
            first.old_value().is_none(),
            "a default does not count as set"
        );
        let second = V.set(2);
        assert_eq!(second.old_value().map(|v| **v), Some(1));
        assert_eq!(second.var(), V.key());
    });
}

#[test]
fn set_arc_stores_the_given_allocation() {
    Context::new().run(|| {
        let arc = Arc::new(s("shared"));
        NAME.set_arc(arc.clone());
        assert!(Arc::ptr_eq(&NAME.get().unwrap(), &arc));
    });
}

#[test]
fn is_set_ignores_defaults() {
    static V: ContextVar<u8> = ContextVar::with_default("v", || 9);
    Context::new().run(|| {
        assert!(!V.is_set());
        V.set(9);
        assert!(V.is_set());
    });
}

// ---------- S5: reset ----------

#[test]
fn reset_restores_previous_value_whatever_was_set_between() {
    Context::new().run(|| {
        NAME.set(s("a"));
        let token = NAME.set(s("b"));
        NAME.set(s("c"));
        NAME.set(s("d"));
        NAME.reset(token).unwrap();
        assert_eq!(name().as_deref(), Some("a"));
    });
}

#[test]
fn reset_of_first_set_unbinds_the_var() {
    static V: ContextVar<u8> = ContextVar::with_default("v", || 9);
    Context::new().run(|| {
        let token = V.set(1);
        V.reset(token).unwrap();
        assert!(!V.is_set());
        assert_eq!(V.get().as_deref(), Some(&9));
        assert!(copy_context().is_empty());
    });
}

#[test]
fn reset_with_token_of_another_var_is_wrong_var_and_changes_nothing() {
    static OTHER: ContextVar<String> = ContextVar::new("other");
    Context::new().run(|| {
        NAME.set(s("mine"));
        let token = OTHER.set(s("theirs"));
        assert_eq!(NAME.reset(token), Err(ResetError::WrongVar));
        assert_eq!(name().as_deref(), Some("mine"));
        assert_eq!(OTHER.get().as_deref().map(String::as_str), Some("theirs"));
    });
}

#[test]
fn reset_with_token_from_other_context_is_wrong_context() {
    let token = Context::new().run(|| NAME.set(s("elsewhere")));
    Context::new().run(|| {
        NAME.set(s("here"));
        assert_eq!(NAME.reset(token), Err(ResetError::WrongContext));
        assert_eq!(name().as_deref(), Some("here"));
    });
}

#[test]
fn reset_in_a_copy_is_wrong_context_for_clone_copy_context_and_fork() {
    type MakeCopy = fn(&mut Context) -> Context;
    let copies: [(&str, MakeCopy); 3] = [
        ("clone", |ctx| ctx.clone()),
        ("fork", |ctx| ctx.fork()),
        ("copy_context", |ctx| ctx.run(copy_context)),
    ];
    for (kind, make_copy) in copies {
        let mut ctx = Context::new();
        let token = ctx.run(|| NAME.set(s("original")));
        let mut copy = make_copy(&mut ctx);
        let result = copy.run(|| NAME.reset(token));
        assert_eq!(result, Err(ResetError::WrongContext), "{kind}");
        assert_eq!(
            copy.get(&NAME).as_deref().map(String::as_str),
            Some("original"),
            "{kind}: a failed reset changes nothing"
        );
    }
}

#[test]
fn clone_and_fork_are_other_contexts_for_tokens() {
    let mut ctx = Context::new();
    let t1 = ctx.run(|| NAME.set(s("1")));
    let mut cloned = ctx.clone();
    assert_eq!(cloned.run(|| NAME.reset(t1)), Err(ResetError::WrongContext));
    let t2 = ctx.run(|| NAME.set(s("2")));
    let mut forked = ctx.fork();
    assert_eq!(forked.run(|| NAME.reset(t2)), Err(ResetError::WrongContext));
    let t3 = ctx.run(|| NAME.set(s("3")));
    assert_eq!(ctx.run(|| NAME.reset(t3)), Ok(()));
    assert_eq!(ctx.get(&NAME).as_deref().map(String::as_str), Some("2"));
}

#[test]
fn wrong_var_wins_over_wrong_context() {
    static OTHER: ContextVar<String> = ContextVar::new("other");
    let token = Context::new().run(|| OTHER.set(s("x")));
    assert_eq!(
        Context::new().run(|| NAME.reset(token)),
        Err(ResetError::WrongVar)
    );
}

#[test]
fn token_made_in_a_context_resets_in_a_later_run_of_it() {
    let mut ctx = Context::new();
    let token = ctx.run(|| NAME.set(s("first")));
    ctx.run(|| NAME.set(s("second")));
    assert_eq!(ctx.run(|| NAME.reset(token)), Ok(()));
    assert_eq!(ctx.get(&NAME), None);
}

#[test]
fn token_from_thread_context_is_refused_on_another_thread() {
    let token = std::thread::spawn(|| NAME.set(s("there"))).join().unwrap();
    assert_eq!(NAME.reset(token), Err(ResetError::WrongContext));
}

#[test]
fn reset_error_displays_and_is_an_error() {
    let err: Box<dyn std::error::Error> = Box::new(ResetError::WrongContext);
    assert!(err.to_string().contains("different Context"));
    assert!(
        ResetError::WrongVar
            .to_string()
            .contains("different ContextVar")
    );
}

// ---------- values whose Drop uses the crate ----------

#[test]
fn dropping_a_value_that_reads_and_sets_vars_does_not_panic() {
    struct Reentrant;
    impl Drop for Reentrant {
        fn drop(&mut self) {
            let _ = NAME.get();
            NAME.set(s("from drop"));
            let _ = copy_context();
        }
    }
    static V: ContextVar<Reentrant> = ContextVar::new("reentrant");
    Context::new().run(|| {
        let token = V.set(Reentrant);
        V.set(Reentrant); // the old value moves into nothing: the token still holds None
        V.reset(token).unwrap(); // drops the second value here
        assert_eq!(name().as_deref(), Some("from drop"));
        let t = V.set(Reentrant);
        let wrong = Context::new().run(|| V.reset(t)); // refused: drops the token's value
        assert_eq!(wrong, Err(ResetError::WrongContext));
    });
}

#[test]
fn vars_used_while_thread_locals_are_destroyed_act_unset() {
    struct ReadsOnDrop;
    impl Drop for ReadsOnDrop {
        fn drop(&mut self) {
            // Runs during thread teardown, maybe after the crate's own thread-local is gone.
            let _ = NAME.get();
            NAME.with(|_| ());
            let token = NAME.set(s("late"));
            let _ = NAME.reset(token);
            Context::new().run(|| NAME.get());
            let _ = copy_context();
        }
    }
    thread_local!(static GUARD: ReadsOnDrop = const { ReadsOnDrop });
    std::thread::spawn(|| {
        GUARD.with(|_| ());
        NAME.set(s("live"));
    })
    .join()
    .expect("thread teardown must not panic");
    std::thread::spawn(|| {
        NAME.set(s("live"));
        GUARD.with(|_| ());
    })
    .join()
    .expect("thread teardown must not panic");
}

// ---------- S14: sync_scope ----------

#[test]
fn sync_scope_sets_in_a_copy_and_nothing_leaks() {
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    Context::new().run(|| {
        OTHER.set(1);
        let inside = NAME.sync_scope(s("scoped"), || {
            assert_eq!(
                OTHER.get().as_deref(),
                Some(&1),
                "sees the caller's other vars"
            );
            OTHER.set(2);
            name()
        });
        assert_eq!(inside.as_deref(), Some("scoped"));
        assert_eq!(name(), None);
        assert_eq!(OTHER.get().as_deref(), Some(&1));
    });
}

#[test]
fn sync_scope_restores_after_panic() {
    Context::new().run(|| {
        NAME.set(s("outer"));
        let r = catch_unwind(|| NAME.sync_scope(s("inner"), || panic!("inside scope")));
        assert!(r.is_err());
        assert_eq!(name().as_deref(), Some("outer"));
    });
}
