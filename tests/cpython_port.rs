//! The applicable cases of CPython's `Lib/test/test_context.py`, restated for this crate.
//!
//! Where Python raises at run time and Rust refuses at compile time (entering a context that is
//! already entered, using a token twice), the compile-time check lives in a `compile_fail`
//! doctest on `Context::run` and `Token`. Python's `ctx[var]` inside `ctx.run` becomes
//! `Context::current().get(&var)`, since `run` borrows the context mutably.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;

use contextvars::{Context, ContextVar, ResetError, copy_context};

fn current_get<T: Send + Sync + 'static + Clone>(var: &ContextVar<T>) -> Option<T> {
    Context::current().get(var).map(|v| (*v).clone())
}

#[test]
fn var_new_keeps_its_name() {
    let c = ContextVar::<u8>::new("aa");
    assert_eq!(c.name(), "aa");
}

#[test]
fn new_context_is_empty() {
    let ctx = Context::new();
    assert_eq!(ctx.len(), 0);
    assert!(!ctx.contains(&ContextVar::<u8>::new("x")));
}

#[test]
fn run_returns_the_result_and_propagates_panics() {
    let mut ctx = Context::new();
    assert_eq!(ctx.run(|| "spam"), "spam");
    let err = catch_unwind(AssertUnwindSafe(|| ctx.run(|| panic!("ZeroDivisionError"))));
    assert!(err.is_err());
}

#[test]
fn run_in_two_contexts_nested() {
    let var = ContextVar::<&str>::new("var");
    let mut ctx1 = Context::new();
    let mut ctx2 = Context::new();
    let returned = ctx1.run(|| {
        assert!(var.get().is_none());
        var.set("spam");
        ctx2.run(|| assert!(var.get().is_none()));
        assert_eq!(var.get().as_deref(), Some(&"spam"));
        let cur = copy_context();
        assert_eq!(cur.len(), 1);
        assert_eq!(cur.get(&var).as_deref(), Some(&"spam"));
        cur
    });
    assert_eq!(ctx1, returned);
    assert_eq!(returned.get(&var).as_deref(), Some(&"spam"));
    assert!(returned.contains(&var));
}

#[test]
fn set_before_a_panic_in_run_does_not_leak_to_the_caller() {
    let var = ContextVar::<&str>::new("var");
    let mut ctx = Context::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        ctx.run(|| {
            assert!(var.get().is_none());
            var.set("spam");
            panic!("1/0");
        })
    }));
    assert!(r.is_err());
    assert!(var.get().is_none());
    assert_eq!(ctx.get(&var).as_deref(), Some(&"spam"));
}

#[test]
fn run_sees_default_then_bound_value() {
    let c = ContextVar::<i32>::with_default("a", || 0);
    let mut ctx = Context::new();
    ctx.run(|| {
        assert_eq!(c.get().as_deref(), Some(&0));
        assert!(current_get(&c).is_none());
        c.set(42);
        assert_eq!(c.get().as_deref(), Some(&42));
        assert_eq!(current_get(&c), Some(42));
    });
}

#[test]
fn getset_basic() {
    let c = ContextVar::<i32>::new("c");
    Context::new().run(|| {
        assert!(c.get().is_none());
        let t0 = c.set(42);
        assert_eq!(c.get().as_deref(), Some(&42));
        assert_eq!(t0.var(), c.key());
        assert!(t0.old_value().is_none());

        let mut ctx = copy_context();
        let t = c.set(43);
        assert_eq!(c.get().as_deref(), Some(&43));
        assert_eq!(t.old_value().map(|v| **v), Some(42));
        assert_eq!(ctx.run(|| c.get()).as_deref(), Some(&42));

        c.reset(t).unwrap();
        assert_eq!(c.get().as_deref(), Some(&42));
        c.reset(t0).unwrap();
        assert!(c.get().is_none());
    });
}

#[test]
fn reset_with_other_vars_token_fails() {
    let v1 = ContextVar::<i32>::new("v1");
    let v2 = ContextVar::<i32>::new("v2");
    Context::new().run(|| {
        let t1 = v1.set(42);
        assert_eq!(v2.reset(t1), Err(ResetError::WrongVar));
    });
}

#[test]
fn context_views_follow_sets_and_resets_inside_run() {
    let c = ContextVar::<i32>::with_default("c", || 42);
    let mut ctx = Context::new();
    ctx.run(|| {
        assert_eq!(c.get().as_deref(), Some(&42));
        let view = Context::current();
        assert!(view.get(&c).is_none());
        assert!(!view.contains(&c));
        assert_eq!(view.iter().count(), 0);

        let t = c.set(1);
        let view = Context::current();
        assert_eq!(view.get(&c).as_deref(), Some(&1));
        let items: Vec<_> = view
            .iter()
            .map(|(k, v)| (k, *v.downcast_ref::<i32>().unwrap()))
            .collect();
        assert_eq!(items, [(c.key(), 1)]);
        assert_eq!(view.len(), 1);

        c.reset(t).unwrap();
        let view = Context::current();
        assert_eq!(view.iter().count(), 0);
        assert!(view.get(&c).is_none());
    });
}

#[test]
fn reset_outside_the_context_of_the_token_fails() {
    let c = ContextVar::<i32>::with_default("c", || 42);
    let mut ctx = Context::new();
    let tok = ctx.run(|| c.set(1));
    assert_eq!(c.reset(tok), Err(ResetError::WrongContext));
}

#[test]
fn set_in_a_copy_with_fresh_mutable_value() {
    let c = ContextVar::<Mutex<Vec<i32>>>::new("c");
    Context::new().run(|| {
        c.set(Mutex::new(vec![]));
        copy_context().run(|| {
            c.set(Mutex::new(vec![]));
            c.with(|v| v.unwrap().lock().unwrap().push(42));
            c.with(|v| assert_eq!(*v.unwrap().lock().unwrap(), [42]));
        });
        c.with(|v| assert!(v.unwrap().lock().unwrap().is_empty()));
    });
}

#[test]
fn copy_of_an_entered_context() {
    let c = ContextVar::<i32>::with_default("c", || 42);
    let mut ctx1 = Context::new();
    let mut ctx2 = ctx1.run(|| {
        c.set(10);
        let mut ctx2 = copy_context();
        assert_eq!(ctx2.get(&c).as_deref(), Some(&10));
        c.set(20);
        assert_eq!(current_get(&c), Some(20));
        assert_eq!(ctx2.get(&c).as_deref(), Some(&10));
        ctx2.run(|| {
            assert_eq!(c.get().as_deref(), Some(&10));
            c.set(30);
            assert_eq!(c.get().as_deref(), Some(&30));
        });
        assert_eq!(current_get(&c), Some(20));
        assert_eq!(ctx2.get(&c).as_deref(), Some(&30));
        ctx2
    });
    assert_eq!(ctx1.get(&c).as_deref(), Some(&20));
    assert_eq!(ctx2.run(|| c.get()).as_deref(), Some(&30));
}

#[test]
fn threads_each_keep_their_own_value_across_sleeps() {
    static CVAR: ContextVar<u64> = ContextVar::new("cvar");
    // A pool of 10 threads running 10 jobs, each job in its own copy of the caller's context,
    // as `ThreadPoolExecutor.map` with `contextvars.copy_context().run` does.
    let jobs: Vec<_> = (0..10u64)
        .map(|num| {
            copy_context().bind(move || {
                for i in 0..10 {
                    CVAR.set(num + i);
                    std::thread::sleep(Duration::from_micros(100 + (num * 37 + i * 11) % 900));
                    assert_eq!(CVAR.get().as_deref(), Some(&(num + i)));
                }
                num
            })
        })
        .collect();
    let results: Vec<u64> = jobs
        .into_iter()
        .map(std::thread::spawn)
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results, (0..10).collect::<Vec<_>>());
}
