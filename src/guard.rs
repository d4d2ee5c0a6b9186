//! Reading and writing a [`ContextVar`] the way std and Tokio users expect: a cloned read
//! ([`ContextVar::get_cloned`]), a read that counts on the default ([`ContextVar::value`]), and a
//! `set` undone when its [`SetGuard`] drops ([`ContextVar::set_guarded`], Python 3.14's
//! `with var.set(v):`).
//!
//! Everything here is built on the public core (`get`, `with`, `set`, `reset`), so the rules of
//! the crate (S2–S5, S21) apply unchanged.

use std::fmt;
use std::sync::Arc;

use crate::current;
use crate::var::{ContextVar, Token};

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// Returns a clone of the value [`get`](ContextVar::get) would return (S2): the value in the
    /// current context, else the default, else `None`.
    ///
    /// The clone is made from a borrow ([`with`](ContextVar::with)), so no `Arc` count is
    /// touched. Like [`Option::cloned`]; use [`get`](ContextVar::get) to share the value instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
    ///
    /// assert_eq!(REQUEST_ID.get_cloned().unwrap_or_default(), "");
    /// REQUEST_ID.set("req-1".to_string());
    /// let id: String = REQUEST_ID.get_cloned().unwrap_or_default();
    /// assert_eq!(id, "req-1");
    /// ```
    #[inline]
    pub fn get_cloned(&self) -> Option<T>
    where
        T: Clone,
    {
        self.with(|value| value.cloned())
    }

    /// Returns the value in the current context, else the default — for a variable made with
    /// [`with_default`](ContextVar::with_default), which always has one (S2).
    ///
    /// Python's `var.get()` without an argument: it raises `LookupError` where the variable has
    /// neither a value nor a default; this panics there. Use [`get`](ContextVar::get) where the
    /// variable may be missing.
    ///
    /// # Panics
    ///
    /// If the variable is not set in the current context and has no default (it was made with
    /// [`new`](ContextVar::new)). The message names the variable. A variable made with
    /// `with_default` never panics here.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    ///
    /// assert_eq!(*RETRIES.value(), 3);
    /// RETRIES.sync_scope(5, || assert_eq!(*RETRIES.value(), 5));
    /// ```
    ///
    /// A variable with no default panics where it is not set:
    ///
    /// ```should_panic
    /// static USER: contextvars::ContextVar<String> = contextvars::ContextVar::new("user");
    /// let _ = USER.value(); // panics: `user` is not set and has no default
    /// ```
    #[inline]
    #[track_caller]
    pub fn value(&self) -> Arc<T> {
        match self.get() {
            Some(value) => value,
            None => missing(self.name()),
        }
    }

    /// Sets the value in the current context, like [`set`](ContextVar::set), and returns a
    /// guard that resets it when dropped: Python 3.14's `with var.set(value):`.
    ///
    /// The guard holds the [`Token`] of the `set` and gives it to [`reset`](ContextVar::reset)
    /// when it drops — at the end of the block, on an early `return` or `?`, and while a panic
    /// unwinds — so the variable is back to what it was before, whatever was set in between
    /// (S5). [`SetGuard::into_token`] keeps the value and hands the token over instead.
    ///
    /// # The guard and its context
    ///
    /// The reset happens in the context that is current where the guard drops. That is the
    /// context of the `set` when the guard stays in the block that made it, including across
    /// `.await`s in a future that has a context of its own (a [`Scoped`](crate::Scoped), a task
    /// spawned through this crate, a request behind `tower::ContextLayer`): such a future enters
    /// its context on every poll and for its drop, whichever thread polls it (S12). The guard is
    /// therefore `Send` and may be held across `.await` there.
    ///
    /// Dropped in *another* context — returned out of a [`Context::run`](crate::Context::run)
    /// closure, moved into another thread or task — the token is refused
    /// ([`ResetError::WrongContext`](crate::ResetError::WrongContext)) and nothing changes: the
    /// guard never writes into a context it was not made in, and the value stays in the context
    /// of the `set`. Keep the guard where it was made.
    ///
    /// In a future with *no* context of its own (a branch of a `join!` without
    /// `.with_current_context()`), other futures share the context, so guards held across an
    /// `.await` there can drop out of order and restore each other's values, exactly as Python
    /// tokens do in one context. Give each branch its own context (see
    /// [`join!` and `select!`](crate#join-and-select-asynciogather-and-its-kin)).
    ///
    /// # Panics
    ///
    /// Where [`set`](ContextVar::set) does: inside a Tokio task with no context of its own (S21).
    /// The guard's drop never panics: where a [`reset`](ContextVar::reset) would be refused by
    /// S21 (a guard moved into such a task, or dropped by a runtime shutting down outside the
    /// task's polls), it changes nothing, as a reset refused for another context does.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static USER: ContextVar<String> = ContextVar::new("user");
    ///
    /// fn handle(user: &str) -> Result<usize, std::num::ParseIntError> {
    ///     let _user = USER.set_guarded(user.to_string());
    ///     let n: usize = "not a number".parse()?; // early return: the guard resets USER
    ///     Ok(n)
    /// }
    ///
    /// assert!(handle("alice").is_err());
    /// assert_eq!(USER.get(), None);
    ///
    /// {
    ///     let _user = USER.set_guarded("bob".to_string());
    ///     assert_eq!(USER.get_cloned().as_deref(), Some("bob"));
    /// }
    /// assert_eq!(USER.get(), None);
    /// ```
    ///
    /// Across `.await` in a task of its own:
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] { // `task` needs the `tokio` feature
    /// use contextvars::{ContextVar, task};
    ///
    /// static STAGE: ContextVar<&'static str> = ContextVar::new("stage");
    ///
    /// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
    /// let seen = task::spawn(async {
    ///     STAGE.set("request");
    ///     {
    ///         let _stage = STAGE.set_guarded("db");
    ///         tokio::task::yield_now().await; // may resume on another worker
    ///         assert_eq!(*STAGE.value(), "db");
    ///     }
    ///     *STAGE.value()
    /// })
    /// .await
    /// .unwrap();
    /// assert_eq!(seen, "request");
    /// # });
    /// # }
    /// ```
    ///
    /// The guard borrows the variable, so it cannot outlive it:
    ///
    /// ```compile_fail
    /// use contextvars::ContextVar;
    ///
    /// let guard = {
    ///     let var: ContextVar<u32> = ContextVar::new("short-lived");
    ///     var.set_guarded(1) // error: `var` does not live long enough
    /// };
    /// ```
    ///
    /// And a guard handed over as a token cannot reset a second time:
    ///
    /// ```compile_fail
    /// static V: contextvars::ContextVar<u32> = contextvars::ContextVar::new("v");
    /// let guard = V.set_guarded(1);
    /// let token = guard.into_token();
    /// drop(guard); // error: use of moved value: `guard`
    /// ```
    #[inline]
    pub fn set_guarded(&self, value: T) -> SetGuard<'_, T> {
        SetGuard {
            var: self,
            token: Some(self.set(value)),
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn missing(name: &'static str) -> ! {
    panic!(
        "contextvars: `ContextVar::value` on `{name}`, which is not set in the current context \
         and has no default; use `get` where it may be missing, or `ContextVar::with_default`"
    )
}

/// Resets a [`ContextVar`] when dropped; made by [`ContextVar::set_guarded`].
///
/// The `with var.set(value):` of Python 3.14. See [`set_guarded`](ContextVar::set_guarded)
/// for what happens where the guard drops.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
///
/// static DEPTH: ContextVar<u32> = ContextVar::with_default("depth", || 0);
///
/// fn descend(levels: u32) -> u32 {
///     if levels == 0 {
///         return *DEPTH.value();
///     }
///     let _depth = DEPTH.set_guarded(*DEPTH.value() + 1);
///     descend(levels - 1)
/// }
///
/// assert_eq!(descend(3), 3);
/// assert_eq!(*DEPTH.value(), 0);
/// assert!(!DEPTH.is_set());
/// ```
#[must_use = "the guard resets the variable as soon as it is dropped, and `let _ = ...` drops it at once; bind it with `let _guard = ...`"]
pub struct SetGuard<'a, T: Send + Sync + 'static> {
    var: &'a ContextVar<T>,
    /// `None` only after [`SetGuard::into_token`] took it.
    token: Option<Token<T>>,
}

impl<T: Send + Sync + 'static> SetGuard<'_, T> {
    /// The value before the `set`; `None` if the variable was not set. As [`Token::old_value`].
    ///
    /// # Examples
    ///
    /// ```
    /// static V: contextvars::ContextVar<u8> = contextvars::ContextVar::new("v");
    /// V.set(1);
    /// let guard = V.set_guarded(2);
    /// assert_eq!(guard.old_value().map(|v| **v), Some(1));
    /// ```
    pub fn old_value(&self) -> Option<&Arc<T>> {
        self.token.as_ref().and_then(Token::old_value)
    }

    /// Keeps the value and returns the token instead of resetting: the variable stays set until
    /// you [`reset`](ContextVar::reset) it with the token, or for good.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static MODE: ContextVar<&'static str> = ContextVar::new("mode");
    ///
    /// let token = MODE.set_guarded("fast").into_token();
    /// assert_eq!(*MODE.value(), "fast"); // still set: the guard did not reset
    /// MODE.reset(token).unwrap();
    /// assert_eq!(MODE.get(), None);
    /// ```
    pub fn into_token(mut self) -> Token<T> {
        self.token
            .take()
            .unwrap_or_else(|| unreachable!("the token is only taken here, which consumes self"))
    }
}

impl<T: Send + Sync + 'static> Drop for SetGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            // A destructor must not panic (while unwinding that would abort): where S21 would
            // refuse the reset, it is skipped, which changes nothing, as a refused reset would.
            if !current::writable() {
                return;
            }
            // Refused (another context, S5): nothing changes, by design — see `set_guarded`.
            let _ = self.var.reset(token);
        }
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for SetGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetGuard")
            .field("var", &self.var.name())
            .finish_non_exhaustive()
    }
}
