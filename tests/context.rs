//! `Context`: S7–S11 and S20 (fork policies).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use contextvars::{Context, ContextVar, Inherit, copy_context};

static A: ContextVar<u32> = ContextVar::new("a");
static B: ContextVar<u32> = ContextVar::new("b");
static WITH_DEFAULT: ContextVar<u32> = ContextVar::with_default("with_default", || 100);

fn a() -> Option<u32> {
    A.get().map(|v| *v)
}

// ---------- S7: copies are O(1) snapshots, independent both ways ----------

#[test]
fn current_is_a_snapshot_independent_both_ways() {
    Context::new().run(|| {
        A.set(1);
        let mut snapshot = Context::current();
        A.set(2);
        assert_eq!(snapshot.get(&A).as_deref(), Some(&1));
        snapshot.run(|| A.set(3));
        assert_eq!(a(), Some(2));
        assert_eq!(snapshot.get(&A).as_deref(), Some(&3));
    });
}

#[test]
fn copies_of_a_large_context_are_independent() {
    let vars: Vec<ContextVar<usize>> = (0..1_000).map(|_| ContextVar::new("many")).collect();
    let mut ctx = Context::new();
    ctx.run(|| {
        for (i, var) in vars.iter().enumerate() {
            var.set(i);
        }
    });
    let mut copy = ctx.clone();
    copy.run(|| {
        for var in &vars[..500] {
            var.set(0);
        }
    });
    for (i, var) in vars.iter().enumerate() {
        assert_eq!(ctx.get(var).as_deref(), Some(&i));
        let expected = if i < 500 { 0 } else { i };
        assert_eq!(copy.get(var).as_deref(), Some(&expected));
    }
}

// ---------- S8: shallow copies ----------

#[test]
fn copies_share_values_so_interior_mutation_is_seen_by_all() {
    static LIST: ContextVar<Mutex<Vec<u32>>> = ContextVar::new("list");
    Context::new().run(|| {
        LIST.set(Mutex::new(vec![]));
        let mut copy = copy_context();
        copy.run(|| LIST.with(|l| l.unwrap().lock().unwrap().push(1)));
        LIST.with(|l| assert_eq!(*l.unwrap().lock().unwrap(), vec![1]));
        assert!(Arc::ptr_eq(&copy.get(&LIST).unwrap(), &LIST.get().unwrap()));
    });
}

// ---------- S9: run ----------

#[test]
fn run_makes_the_context_current_and_keeps_what_f_sets() {
    let mut ctx = Context::new().with_value(&A, 1);
    Context::new().run(|| {
        B.set(5);
        let inside = ctx.run(|| {
            assert_eq!(B.get(), None, "the caller's vars are not visible");
            A.set(2);
            B.set(3);
            a()
        });
        assert_eq!(inside, Some(2));
        assert_eq!(a(), None);
        assert_eq!(B.get().as_deref(), Some(&5));
    });
    assert_eq!(ctx.get(&A).as_deref(), Some(&2));
    assert_eq!(ctx.get(&B).as_deref(), Some(&3));
}

#[test]
fn run_restores_after_panic_and_keeps_sets_before_it() {
    let mut ctx = Context::new();
    Context::new().run(|| {
        A.set(1);
        let result = catch_unwind(AssertUnwindSafe(|| {
            ctx.run(|| {
                A.set(10);
                panic!("in run");
            })
        }));
        assert!(result.is_err());
        assert_eq!(a(), Some(1), "the previous context is current again");
        A.set(2);
        assert_eq!(a(), Some(2), "and still usable");
    });
    assert_eq!(ctx.get(&A).as_deref(), Some(&10));
}

#[test]
fn run_returns_the_closure_result() {
    assert_eq!(Context::new().run(|| 41 + 1), 42);
}

#[test]
fn run_inside_with_closure_restores_correctly() {
    let mut inner = Context::new().with_value(&A, 7);
    Context::new().run(|| {
        A.set(1);
        A.with(|outer| {
            let seen = inner.run(|| {
                A.set(8);
                a()
            });
            assert_eq!(seen, Some(8));
            assert_eq!(outer.copied(), Some(1));
        });
        assert_eq!(a(), Some(1));
    });
    assert_eq!(inner.get(&A).as_deref(), Some(&8));
}

// ---------- S10: Context views see only bound values ----------

#[test]
fn context_get_contains_len_iter_ignore_defaults() {
    let ctx = Context::new();
    assert_eq!(ctx.get(&WITH_DEFAULT), None);
    assert!(!ctx.contains(&WITH_DEFAULT));
    assert_eq!(ctx.len(), 0);
    assert!(ctx.is_empty());
    assert_eq!(ctx.iter().count(), 0);
    let _ = WITH_DEFAULT.get(); // materialise the default: still not bound anywhere
    assert!(Context::current().get(&WITH_DEFAULT).is_none());
}

#[test]
fn iter_yields_every_binding_with_its_value() {
    static S: ContextVar<String> = ContextVar::new("s");
    let ctx = Context::new()
        .with_value(&A, 1)
        .with_value(&B, 2)
        .with_value(&S, "x".to_string());
    let mut seen: Vec<(String, String)> = ctx
        .iter()
        .map(|(key, value)| {
            let shown = if let Some(n) = value.downcast_ref::<u32>() {
                n.to_string()
            } else {
                value.downcast_ref::<String>().unwrap().clone()
            };
            (key.name().to_string(), shown)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("s".into(), "x".into())
        ]
    );
    assert_eq!(ctx.len(), 3);
    assert_eq!((&ctx).into_iter().count(), 3);
}

// ---------- S11: nesting ----------

#[test]
fn nested_runs_restore_in_lifo_order() {
    let mut one = Context::new().with_value(&A, 1);
    let mut two = Context::new().with_value(&A, 2);
    let mut three = Context::new().with_value(&A, 3);
    let mut trail = vec![];
    one.run(|| {
        trail.push(a());
        two.run(|| {
            trail.push(a());
            three.run(|| trail.push(a()));
            trail.push(a());
        });
        trail.push(a());
    });
    trail.push(a());
    assert_eq!(trail, [Some(1), Some(2), Some(3), Some(2), Some(1), None]);
}

#[test]
fn nested_runs_restore_after_inner_panic() {
    let mut outer = Context::new().with_value(&A, 1);
    let mut inner = Context::new().with_value(&A, 2);
    outer.run(|| {
        let r = catch_unwind(AssertUnwindSafe(|| inner.run(|| panic!("inner"))));
        assert!(r.is_err());
        assert_eq!(a(), Some(1));
    });
    assert_eq!(a(), None);
}

// ---------- with_value, bind, Clone, PartialEq, Debug ----------

#[test]
fn with_value_leaves_the_original_unchanged() {
    let base = Context::new().with_value(&A, 1);
    let derived = base.with_value(&A, 2).with_value(&B, 3);
    assert_eq!(base.get(&A).as_deref(), Some(&1));
    assert!(!base.contains(&B));
    assert_eq!(derived.get(&A).as_deref(), Some(&2));
    assert_eq!(derived.len(), 2);
}

#[test]
fn bind_runs_in_the_context_and_is_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let job = assert_send(Context::new().with_value(&A, 5).bind(|| {
        A.set(6);
        a()
    }));
    assert_eq!(std::thread::spawn(job).join().unwrap(), Some(6));
    assert_eq!(a(), None);
}

#[test]
fn equality_is_by_binding_identity() {
    let ctx = Context::new().with_value(&A, 1);
    let copy = ctx.clone();
    assert_eq!(ctx, copy);
    assert_eq!(ctx, ctx.fork());
    assert_ne!(
        ctx,
        Context::new().with_value(&A, 1),
        "equal values, other allocation"
    );
    assert_ne!(ctx, ctx.with_value(&B, 2));
    assert_eq!(Context::new(), Context::default());
    // The same bindings reached by different edits are equal.
    let shared = Arc::new(9);
    let mut x = Context::new();
    x.run(|| A.set_arc(shared.clone()));
    let mut y = Context::new().with_value(&B, 0);
    y.run(|| {
        A.set_arc(shared.clone());
        B.set(1);
    });
    assert_ne!(x, y);
    let mut y = y;
    y.run(|| {
        let token = B.set(2);
        drop(token);
    });
    let z = {
        let mut z = Context::new();
        z.run(|| {
            let t = B.set(0);
            A.set_arc(shared.clone());
            B.reset(t).unwrap();
        });
        z
    };
    assert_eq!(x, z);
}

#[test]
fn debug_lists_var_names() {
    let ctx = Context::new().with_value(&A, 1);
    let shown = format!("{ctx:?}");
    assert!(
        shown.contains("Context") && shown.contains("\"a\""),
        "{shown}"
    );
}

// ---------- S20: fork and Inherit ----------

#[test]
fn fork_shares_values_by_default() {
    let ctx = Context::new().with_value(&A, 1);
    assert!(Arc::ptr_eq(
        &ctx.fork().get(&A).unwrap(),
        &ctx.get(&A).unwrap()
    ));
}

#[test]
fn fork_policy_gives_the_child_its_own_value() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static BUF: ContextVar<Vec<u32>> = ContextVar::new("buf").inherit(Inherit::Fork(|parent| {
        CALLS.fetch_add(1, SeqCst);
        let mut v = parent.clone();
        v.push(0);
        v
    }));
    let parent = Context::new().with_value(&BUF, vec![1]);
    let child = parent.fork();
    assert_eq!(child.get(&BUF).as_deref(), Some(&vec![1, 0]));
    assert_eq!(parent.get(&BUF).as_deref(), Some(&vec![1]));
    assert_eq!(child.fork().get(&BUF).as_deref(), Some(&vec![1, 0, 0]));
    assert_eq!(CALLS.load(SeqCst), 2);
    assert!(
        parent.clone().get(&BUF).is_some_and(|v| *v == [1]),
        "clone ignores policies"
    );
}

#[test]
fn none_policy_hides_the_value_from_children() {
    static SECRET: ContextVar<u32> =
        ContextVar::with_default("secret", || 0).inherit(Inherit::None);
    let parent = Context::new().with_value(&SECRET, 42).with_value(&A, 1);
    let child = parent.fork();
    assert!(!child.contains(&SECRET));
    assert_eq!(child.get(&A).as_deref(), Some(&1));
    let mut child = child;
    assert_eq!(
        child.run(|| SECRET.get()).as_deref(),
        Some(&0),
        "the default applies"
    );
    assert!(parent.clone().contains(&SECRET), "clone keeps it");
}

#[test]
fn policies_never_touch_defaults() {
    static SHARED_DEFAULT: ContextVar<AtomicU32> =
        ContextVar::with_default("d", || AtomicU32::new(0))
            .inherit(Inherit::Fork(|_| AtomicU32::new(0)));
    let mut child = Context::current().fork();
    child.run(|| SHARED_DEFAULT.with(|c| c.unwrap().fetch_add(1, SeqCst)));
    SHARED_DEFAULT.with(|c| assert_eq!(c.unwrap().load(SeqCst), 1));
}

#[test]
fn fork_without_special_vars_equals_clone_and_after_reset_too() {
    static F: ContextVar<u32> = ContextVar::new("f").inherit(Inherit::Fork(|v| v + 1));
    let mut ctx = Context::new().with_value(&A, 1);
    assert_eq!(ctx.fork(), ctx);
    let token = ctx.run(|| F.set(1));
    assert_ne!(ctx.fork(), ctx, "the Fork var is rebound in the child");
    ctx.run(|| F.reset(token)).unwrap();
    assert_eq!(ctx.fork(), ctx, "no special binding left");
}

#[test]
fn policy_is_kept_when_a_special_var_is_overwritten() {
    static F: ContextVar<u32> = ContextVar::new("f").inherit(Inherit::None);
    let mut ctx = Context::new();
    ctx.run(|| {
        F.set(1);
        F.set(2);
    });
    assert!(!ctx.fork().contains(&F));
    ctx.run(|| {
        let t = F.set(3);
        F.reset(t).unwrap();
    });
    assert!(!ctx.fork().contains(&F));
}

#[test]
fn writes_over_a_shared_context_keep_policies_and_copies_through_layer_and_flatten() {
    // Eight bindings: a write while a copy shares them goes into a layer over the shared map
    // (two changes at most), and a third changed var flattens it; `set` and `reset` swap
    // values in place there. Policies, the copy and the fork must not notice any of it.
    static HIDDEN: ContextVar<u32> = ContextVar::new("hidden").inherit(Inherit::None);
    static FORKED: ContextVar<u32> = ContextVar::new("forked").inherit(Inherit::Fork(|v| v + 100));
    let plain: Vec<ContextVar<u32>> = (0..6).map(|_| ContextVar::new("plain")).collect();
    let mut ctx = Context::new();
    ctx.run(|| {
        HIDDEN.set(1);
        FORKED.set(1);
        for (i, var) in plain.iter().enumerate() {
            var.set(i as u32);
        }
        let snapshot = copy_context();
        let hidden = HIDDEN.set(2); // the first write over the shared map: a layer
        let forked = FORKED.set(2); // the layer's second change
        let plain_0 = plain[0].set(10); // a third: the layer flattens
        let forked_again = FORKED.set(3); // rebinding in place after the flatten
        let fork = Context::current().fork();
        assert!(
            !fork.contains(&HIDDEN),
            "None policy kept through the layer"
        );
        assert_eq!(fork.get(&FORKED).as_deref(), Some(&103), "Fork policy kept");
        assert_eq!(fork.get(&plain[0]).as_deref(), Some(&10));
        assert_eq!(
            snapshot.get(&HIDDEN).as_deref(),
            Some(&1),
            "the copy never sees a write"
        );
        assert_eq!(snapshot.get(&FORKED).as_deref(), Some(&1));
        assert_eq!(snapshot.get(&plain[0]).as_deref(), Some(&0));
        FORKED.reset(forked_again).unwrap();
        assert_eq!(FORKED.get().as_deref(), Some(&2));
        plain[0].reset(plain_0).unwrap();
        FORKED.reset(forked).unwrap();
        HIDDEN.reset(hidden).unwrap();
        assert_eq!(
            Context::current(),
            snapshot,
            "every value restored, by identity"
        );
        let fork = Context::current().fork();
        assert!(!fork.contains(&HIDDEN));
        assert_eq!(fork.get(&FORKED).as_deref(), Some(&101));
        assert_eq!(Context::current().len(), 8);
    });
}

#[test]
fn context_is_send_sync_default() {
    fn check<T: Send + Sync + Default + Clone + std::fmt::Debug>() {}
    check::<Context>();
}
