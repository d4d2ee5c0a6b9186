//! `ContextVar::get_cloned`, `value` and `set_guarded` / `SetGuard` (S2, S4, S5, S12, S21).
#![cfg(feature = "tokio")]

use contextvars::{Context, ContextVar, FutureExt, task};

static USER: ContextVar<String> = ContextVar::new("user");
static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);

#[test]
fn get_cloned_is_the_value_or_the_default_or_none() {
    Context::new().run(|| {
        assert_eq!(USER.get_cloned(), None);
        assert_eq!(RETRIES.get_cloned(), Some(3));
        USER.set("alice".into());
        assert_eq!(USER.get_cloned().as_deref(), Some("alice"));
    });
}

#[test]
fn value_reads_the_default_of_a_with_default_var() {
    Context::new().run(|| {
        assert_eq!(*RETRIES.value(), 3);
        RETRIES.set(5);
        assert_eq!(*RETRIES.value(), 5);
    });
}

#[test]
#[should_panic(expected = "`ContextVar::value` on `user`")]
fn value_of_an_unset_var_without_default_panics_naming_it() {
    Context::new().run(|| USER.value());
}

#[test]
fn guard_resets_at_the_end_of_the_block() {
    Context::new().run(|| {
        USER.set("outer".into());
        {
            let guard = USER.set_guarded("inner".into());
            assert_eq!(guard.old_value().map(|v| v.as_str()), Some("outer"));
            assert_eq!(USER.get_cloned().as_deref(), Some("inner"));
        }
        assert_eq!(USER.get_cloned().as_deref(), Some("outer"));
    });
}

#[test]
fn guard_of_an_unset_var_removes_it() {
    Context::new().run(|| {
        drop(USER.set_guarded("x".into()));
        assert!(!USER.is_set());
        drop(RETRIES.set_guarded(9));
        assert!(!RETRIES.is_set());
        assert_eq!(*RETRIES.value(), 3);
    });
}

#[test]
fn guard_resets_on_early_return() {
    fn parse(input: &str) -> Result<u32, std::num::ParseIntError> {
        let _user = USER.set_guarded("parser".into());
        let n = input.parse()?;
        Ok(n)
    }
    Context::new().run(|| {
        assert!(parse("x").is_err());
        assert!(!USER.is_set());
        assert_eq!(parse("4"), Ok(4));
        assert!(!USER.is_set());
    });
}

#[test]
fn guard_resets_while_a_panic_unwinds() {
    let mut ctx = Context::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.run(|| {
            USER.set("before".into());
            let _guard = USER.set_guarded("during".into());
            panic!("boom");
        })
    }));
    assert!(result.is_err());
    assert_eq!(
        ctx.get(&USER).as_deref().map(String::as_str),
        Some("before")
    );
}

#[test]
fn guard_resets_whatever_was_set_in_between() {
    Context::new().run(|| {
        let guard = USER.set_guarded("a".into());
        USER.set("b".into());
        USER.set("c".into());
        drop(guard);
        assert!(!USER.is_set());
    });
}

#[test]
fn nested_guards_restore_in_lifo_order() {
    Context::new().run(|| {
        let a = USER.set_guarded("a".into());
        let b = USER.set_guarded("b".into());
        assert_eq!(USER.get_cloned().as_deref(), Some("b"));
        drop(b);
        assert_eq!(USER.get_cloned().as_deref(), Some("a"));
        drop(a);
        assert!(!USER.is_set());
    });
}

#[test]
fn into_token_keeps_the_value_and_the_token_resets() {
    Context::new().run(|| {
        let token = USER.set_guarded("kept".into()).into_token();
        assert_eq!(USER.get_cloned().as_deref(), Some("kept"));
        USER.reset(token).unwrap();
        assert!(!USER.is_set());
    });
}

#[test]
fn guard_dropped_in_another_context_changes_nothing() {
    let mut made_in = Context::new();
    let guard = made_in.run(|| USER.set_guarded("mine".into()));
    // Dropped where another context is current: refused, nothing written there.
    let mut other = Context::new().with_value(&USER, "other".to_string());
    other.run(|| drop(guard));
    assert_eq!(
        other.get(&USER).as_deref().map(String::as_str),
        Some("other")
    );
    // The context of the `set` keeps the value: the guard did not reach it.
    assert_eq!(
        made_in.get(&USER).as_deref().map(String::as_str),
        Some("mine")
    );
}

#[test]
fn guard_moved_to_another_thread_changes_nothing_there() {
    let mut made_in = Context::new();
    let guard = made_in.run(|| USER.set_guarded("mine".into()));
    let seen = contextvars::thread::spawn(move || {
        USER.set("thread".into());
        drop(guard);
        USER.get_cloned()
    })
    .join()
    .unwrap();
    assert_eq!(seen.as_deref(), Some("thread"));
    assert_eq!(
        made_in.get(&USER).as_deref().map(String::as_str),
        Some("mine")
    );
}

#[test]
fn guard_held_across_await_in_tasks_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                task::spawn(async move {
                    USER.set(format!("base-{i}"));
                    {
                        let _guard = USER.set_guarded(format!("inner-{i}"));
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                            assert_eq!(USER.get_cloned(), Some(format!("inner-{i}")));
                        }
                    }
                    tokio::task::yield_now().await;
                    USER.get_cloned()
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), Some(format!("base-{i}")));
        }
    });
}

#[test]
fn guard_in_a_future_dropped_before_completion_resets_in_its_context() {
    // A cancelled future drops its guard inside its own context (S12: `Scoped` enters it for
    // the drop), so the reset lands there and the caller's value is untouched.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        USER.set("caller".into());
        let fut = async {
            let _guard = USER.set_guarded("cancelled".into());
            std::future::pending::<()>().await;
        }
        .with_current_context();
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(1), fut).await;
        assert!(timed_out.is_err());
        assert_eq!(USER.get_cloned().as_deref(), Some("caller"));
    });
}

#[test]
#[should_panic(expected = "has no context of its own")]
fn guarded_set_in_an_unwrapped_task_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let handle = tokio::spawn(async {
            let _guard = USER.set_guarded("leak".into());
        });
        if let Err(e) = handle.await {
            std::panic::resume_unwind(e.into_panic());
        }
    });
}

#[test]
fn guard_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    Context::new().run(|| {
        let guard = USER.set_guarded("x".into());
        assert_send_sync(&guard);
        assert!(format!("{guard:?}").contains("user"));
    });
}

#[test]
fn a_guard_dropped_while_unwinding_in_a_task_without_a_context_does_not_abort() {
    // Its reset would be refused (S21); during unwinding that must not be a second panic.
    static UNWOUND: ContextVar<u32> = ContextVar::new("unwound");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let guard = UNWOUND.set_guarded(1);
    let err = rt
        .block_on(rt.spawn(async move {
            let _guard = guard;
            panic!("the task's own panic");
        }))
        .unwrap_err();
    let payload = err.into_panic();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the task's own panic")
    );
}

#[test]
fn a_guard_moved_into_a_task_without_a_context_drops_without_panicking() {
    static MOVED: ContextVar<u32> = ContextVar::new("moved");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let guard = MOVED.set_guarded(1);
    rt.block_on(rt.spawn(async move {
        let _guard = guard; // its reset would be refused here (S21): skipped, no panic
    }))
    .unwrap();
    assert_eq!(MOVED.get().as_deref(), Some(&1), "nothing changed");
}
