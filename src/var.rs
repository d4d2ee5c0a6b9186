//! [`ContextVar`]: a typed key into the current [`Context`], with its [`Token`], [`VarKey`]
//! and [`Inherit`] policy.

use std::any::Any;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use crate::context::{self, Binding, Context, ContextId, Forker, Merge, Policy, Value};
use crate::current;
use crate::error::ResetError;
use crate::id;
use crate::map::MapKey;

/// Ids are never reused (S1): a var created at run time never aliases another one.
static NEXT_VAR_ID: AtomicU64 = AtomicU64::new(1);

/// A context variable: a typed key whose value depends on the current [`Context`].
///
/// Declare variables as `static`s; each one is a distinct key, even if another has the same
/// name and type (S1). Never as a `const` (nor a trait's associated `const`): each mention of a
/// `const` is a new variable, so a value `set` through one mention is not seen through the
/// next, and rustc does not warn (clippy's `declare_interior_mutable_const` does). For a
/// variable per implementing type, give the trait a method that returns
/// `&'static ContextVar<Self>` and declare a `static` in each impl's method. A value is stored
/// as an `Arc<T>`, so reading it is a reference-count increment ([`get`](ContextVar::get)) or
/// a plain borrow ([`with`](ContextVar::with)).
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
/// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
///
/// assert_eq!(REQUEST_ID.get(), None);
/// assert_eq!(RETRIES.get().as_deref(), Some(&3));
///
/// let token = REQUEST_ID.set("req-1".to_string());
/// REQUEST_ID.with(|id| assert_eq!(id.map(String::as_str), Some("req-1")));
/// REQUEST_ID.reset(token).unwrap();
/// assert_eq!(REQUEST_ID.get(), None);
/// ```
pub struct ContextVar<T: 'static> {
    name: &'static str,
    /// 0 until first use; see [`ContextVar::id`].
    id: AtomicU64,
    default: Option<fn() -> T>,
    default_value: OnceLock<Arc<T>>,
    /// What forks and bridges do with this variable's bindings: from [`Inherit`], or `Merge`
    /// for `Local`'s attributes (S18).
    policy: Policy<fn(&T) -> T>,
    /// The erased `Policy::Fork` function, made on the first `set`.
    forker: OnceLock<Forker>,
}

impl<T: Send + Sync + 'static> ContextVar<T> {
    /// Creates a variable with no default: [`get`](ContextVar::get) returns `None` where it is
    /// not set. `name` is for debugging only.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static USER: ContextVar<String> = ContextVar::new("user");
    /// assert_eq!(USER.name(), "user");
    /// assert!(USER.get().is_none());
    /// ```
    pub const fn new(name: &'static str) -> Self {
        Self::declare(name, None, Policy::Share)
    }

    /// Creates a variable whose value, where it is not set, is `default()`.
    ///
    /// The default is created once, on first use, and shared by every context and thread (S2),
    /// like a Python default object. It is never *bound*: [`is_set`](ContextVar::is_set),
    /// [`Context::get`] and [`Context::len`] do not see it. If `T` has interior mutability,
    /// every reader shares the one default: see
    /// [the shallow-copy pitfall](crate#the-shallow-copy-pitfall).
    ///
    /// # Panics
    ///
    /// A `default` that reads the same variable recurses into its own initialisation, which
    /// panics or deadlocks like a re-entrant [`OnceLock::get_or_init`].
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static RETRIES: ContextVar<u32> = ContextVar::with_default("retries", || 3);
    /// assert_eq!(RETRIES.get().as_deref(), Some(&3));
    /// assert!(!RETRIES.is_set());
    /// ```
    pub const fn with_default(name: &'static str, default: fn() -> T) -> Self {
        Self::declare(name, Some(default), Policy::Share)
    }

    /// Sets what [`Context::fork`] — and so every spawn helper — gives a child (S20).
    ///
    /// A builder for declarations (`ContextVar::new(..).inherit(..)`): the result is a new
    /// variable, distinct from any variable `self` was already used as.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{ContextVar, Inherit};
    /// use std::sync::Mutex;
    ///
    /// // Each child gets its own empty buffer instead of sharing the parent's.
    /// static LOG: ContextVar<Mutex<Vec<String>>> =
    ///     ContextVar::new("log").inherit(Inherit::Fork(|_| Mutex::new(Vec::new())));
    /// // A secret that children must not see.
    /// static TOKEN: ContextVar<String> = ContextVar::new("token").inherit(Inherit::None);
    ///
    /// LOG.set(Mutex::new(vec!["parent".into()]));
    /// TOKEN.set("s3cr3t".into());
    /// let child = contextvars::Context::current().fork();
    /// assert!(child.get(&LOG).unwrap().lock().unwrap().is_empty());
    /// assert!(!child.contains(&TOKEN));
    /// assert_eq!(LOG.get().unwrap().lock().unwrap().len(), 1); // the parent's is untouched
    /// ```
    pub const fn inherit(self, policy: Inherit<T>) -> Self {
        let (name, default) = (self.name, self.default);
        // A `const fn` may not drop `self` (it owns `OnceLock`s). In a declaration they are
        // empty, so forgetting `self` leaks nothing; a variable already in use leaks its cached
        // default and the result is a new variable (see the docs above).
        std::mem::forget(self);
        let policy = match policy {
            Inherit::Share => Policy::Share,
            Inherit::Fork(fork) => Policy::Fork(fork),
            Inherit::None => Policy::Drop,
        };
        Self::declare(name, default, policy)
    }

    /// The name given at creation, for debugging.
    ///
    /// # Examples
    ///
    /// ```
    /// static V: contextvars::ContextVar<u8> = contextvars::ContextVar::new("v");
    /// assert_eq!(V.name(), "v");
    /// ```
    #[inline]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The identity of this variable, as found in [`Context::iter`] and [`Token::var`].
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static A: ContextVar<u8> = ContextVar::new("same");
    /// static B: ContextVar<u8> = ContextVar::new("same");
    /// assert_ne!(A.key(), B.key());
    /// assert_eq!(A.key(), A.key());
    /// assert_eq!(A.key().name(), "same");
    /// ```
    #[inline]
    pub fn key(&self) -> VarKey {
        VarKey {
            id: self.id(),
            name: self.name,
        }
    }

    /// Returns the value in the current context, else the default, else `None` (S2).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static LEVEL: ContextVar<u8> = ContextVar::with_default("level", || 1);
    /// assert_eq!(LEVEL.get().as_deref(), Some(&1));
    /// LEVEL.set(2);
    /// assert_eq!(LEVEL.get().as_deref(), Some(&2));
    /// ```
    #[inline]
    pub fn get(&self) -> Option<Arc<T>> {
        match current::get_arc(self) {
            Some(value) => Some(value),
            None => self.default_value().cloned(),
        }
    }

    /// Whether the variable is bound in the current context; a default does not count.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static LEVEL: ContextVar<u8> = ContextVar::with_default("level", || 1);
    /// assert!(!LEVEL.is_set());
    /// LEVEL.set(1);
    /// assert!(LEVEL.is_set());
    /// ```
    #[inline]
    pub fn is_set(&self) -> bool {
        current::is_bound(self)
    }

    /// Calls `f` with a borrow of the value [`get`](ContextVar::get) would return, without
    /// cloning the `Arc` (S3).
    ///
    /// `f` may use any API of this crate, including `set` of this very variable and
    /// [`Context::run`]: it keeps seeing the value it was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static USER: ContextVar<String> = ContextVar::new("user");
    ///
    /// USER.set("alice".to_string());
    /// let len = USER.with(|user| user.map_or(0, |u| u.len()));
    /// assert_eq!(len, 5);
    ///
    /// USER.with(|user| {
    ///     USER.set("bob".to_string()); // allowed: `user` still borrows "alice"
    ///     assert_eq!(user.map(String::as_str), Some("alice"));
    /// });
    /// ```
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        current::read_value(self, |value| match value {
            Some(value) => f(Some(value)),
            None => f(self.default_value().map(|value| &**value)),
        })
    }

    /// Sets the value in the current context and returns a [`Token`] to undo it (S4).
    ///
    /// Only the current context changes: every earlier copy keeps its value. The token holds
    /// the previous value (`None` if the variable was not set; a default does not count).
    ///
    /// While the thread's thread-local storage is being destroyed, with no context entered (the
    /// thread's own context is gone by then), the value is dropped and the returned token is
    /// refused by [`reset`](ContextVar::reset). Inside an entered context it is set as usual.
    ///
    /// # Panics
    ///
    /// Inside a Tokio task that has no context of its own — spawned with a plain
    /// `tokio::spawn` (or a plain `spawn_blocking`) and not wrapped in a [`Scoped`](crate::Scoped), a
    /// [`run`](Context::run) or a [`sync_scope`](ContextVar::sync_scope), on a runtime without
    /// `runtime::propagate` — the write would land in the worker thread's context, shared by
    /// every such task, so it panics instead (S21). The root future of `block_on` /
    /// `#[tokio::main]` is not a task: writes there are allowed. The ways to give a task a
    /// context of its own: [isolation by default](crate#isolation-by-default). On a thread that
    /// called [`thread::refuse_own_context_writes`](crate::thread::refuse_own_context_writes),
    /// wherever no context is entered, in a Tokio task or not.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{copy_context, ContextVar};
    ///
    /// static STAGE: ContextVar<&'static str> = ContextVar::new("stage");
    ///
    /// let first = STAGE.set("parse");
    /// assert!(first.old_value().is_none());
    /// let snapshot = copy_context();
    /// let second = STAGE.set("plan");
    /// assert_eq!(second.old_value().map(|v| **v), Some("parse"));
    /// assert_eq!(snapshot.get(&STAGE).as_deref(), Some(&"parse")); // copies keep theirs
    /// ```
    #[inline]
    pub fn set(&self, value: T) -> Token<T> {
        self.set_arc_as(Arc::new(value), "ContextVar::set")
    }

    /// Like [`set`](ContextVar::set), with a value already in an `Arc` (no new allocation).
    ///
    /// # Panics
    ///
    /// Where [`set`](ContextVar::set) does: inside a Tokio task with no context of its own (S21).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use std::sync::Arc;
    ///
    /// static CONFIG: ContextVar<String> = ContextVar::new("config");
    /// let shared = Arc::new("prod".to_string());
    /// CONFIG.set_arc(shared.clone());
    /// assert!(Arc::ptr_eq(&CONFIG.get().unwrap(), &shared));
    /// ```
    #[inline]
    pub fn set_arc(&self, value: Arc<T>) -> Token<T> {
        self.set_arc_as(value, "ContextVar::set_arc")
    }

    /// [`set_arc`](ContextVar::set_arc), with the public API that called it named in the S21
    /// panic.
    #[inline]
    pub(crate) fn set_arc_as(&self, value: Arc<T>, call: &'static str) -> Token<T> {
        let key = self.key();
        let bound = Arc::as_ptr(&value);
        let (context, old) = current::modify_binding(call, self, bound, |ctx| {
            let old = ctx.replace_value(key, value, || self.policy());
            (ctx.token_id(), old)
        })
        .unwrap_or((0, None));
        Token {
            var: key,
            context,
            old_value: old.map(context::downcast_arc),
        }
    }

    /// Restores the value `token` recorded: the variable is as it was before the `set` that
    /// made the token, whatever was set in between (S5).
    ///
    /// # Errors
    ///
    /// - [`ResetError::WrongVar`] if the token came from another variable;
    /// - [`ResetError::WrongContext`] if it was made in another context than the current one
    ///   (a copy counts as another context).
    ///
    /// When both apply, `WrongVar` is returned. A failed reset consumes the token and changes
    /// nothing. Since `reset` takes the token by value, it cannot be used twice.
    ///
    /// # Panics
    ///
    /// Where [`set`](ContextVar::set) does: inside a Tokio task with no context of its own
    /// (S21), before the token is checked.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, ResetError};
    ///
    /// static MODE: ContextVar<&'static str> = ContextVar::new("mode");
    ///
    /// let token = MODE.set("fast");
    /// MODE.set("faster");
    /// MODE.reset(token).unwrap();
    /// assert_eq!(MODE.get(), None);
    ///
    /// // A token only resets the context it was made in.
    /// let token = MODE.set("outer");
    /// let err = Context::new().run(|| MODE.reset(token)).unwrap_err();
    /// assert_eq!(err, ResetError::WrongContext);
    /// ```
    pub fn reset(&self, token: Token<T>) -> Result<(), ResetError> {
        let wrong_var = token.var.id != self.id();
        let key = token.var;
        let restored = token.old_value.map(|value| value as Value);
        // The S21 check comes first: a misplaced reset panics whatever its token.
        let outcome = current::modify("ContextVar::reset", |ctx| {
            if wrong_var {
                return (Err(ResetError::WrongVar), restored);
            }
            if !ctx.is_token_context(token.context) {
                return (Err(ResetError::WrongContext), restored);
            }
            let displaced = match restored {
                Some(value) => ctx.replace_value(key, value, || self.policy()),
                None => ctx.remove(key.id).map(|binding| binding.value),
            };
            (Ok(()), displaced)
        });
        // Displaced or refused values drop here, after the write has let go of the context.
        match outcome {
            Some((result, _displaced)) => result,
            None if wrong_var => Err(ResetError::WrongVar),
            None => Err(ResetError::WrongContext),
        }
    }

    /// Runs `f` in a copy of the current context in which this variable is `value` (S14).
    ///
    /// Nothing `f` sets leaks out.
    ///
    /// Called from a thread-local's destructor during thread teardown with no context entered,
    /// the copy starts from an empty context (the thread's own is gone, see [`Context::run`]
    /// under *Thread teardown*): `f` sees this variable set, and none of the thread's others.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
    ///
    /// let seen = TENANT.sync_scope("acme", || TENANT.get());
    /// assert_eq!(seen.as_deref(), Some(&"acme"));
    /// assert_eq!(TENANT.get(), None);
    /// ```
    pub fn sync_scope<R>(&self, value: T, f: impl FnOnce() -> R) -> R {
        self.scoped_context(value).run(f)
    }

    // ----- crate-internal -----

    /// A variable whose value a bridge's write-back merges with the caller's through `merge`
    /// instead of replacing it (S18): `Local`'s attributes.
    pub(crate) const fn new_merged(name: &'static str, merge: Merge) -> Self {
        Self::declare(name, None, Policy::Merge(merge))
    }

    /// A new variable: what every constructor above makes.
    const fn declare(
        name: &'static str,
        default: Option<fn() -> T>,
        policy: Policy<fn(&T) -> T>,
    ) -> Self {
        ContextVar {
            name,
            id: AtomicU64::new(0),
            default,
            default_value: OnceLock::new(),
            policy,
            forker: OnceLock::new(),
        }
    }

    /// The copy of the current context that `scope` and `sync_scope` run in.
    pub(crate) fn scoped_context(&self, value: T) -> Context {
        let mut ctx = Context::current();
        drop(ctx.insert(self.key(), self.binding(Arc::new(value))));
        ctx
    }

    /// This variable's id, assigned from a global counter on first use.
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        id::get_or_assign(&self.id, &NEXT_VAR_ID)
    }

    #[inline]
    fn default_value(&self) -> Option<&Arc<T>> {
        let make = self.default?;
        Some(self.default_value.get_or_init(|| Arc::new(make())))
    }

    /// Wraps a value with this variable's fork policy, ready to store.
    #[inline]
    pub(crate) fn binding(&self, value: Arc<T>) -> Binding {
        Binding {
            value: value as Value,
            policy: self.policy(),
        }
    }

    /// This variable's policy in the form its bindings hold.
    #[inline]
    pub(crate) fn policy(&self) -> Policy {
        self.policy.erase(|fork| self.forker(*fork))
    }

    #[cold]
    fn forker(&self, fork: fn(&T) -> T) -> Forker {
        self.forker
            .get_or_init(|| {
                Arc::new(Box::new(move |value: &(dyn Any + Send + Sync)| -> Value {
                    // Cannot fail: only this variable stores values under its id.
                    let value = value
                        .downcast_ref::<T>()
                        .unwrap_or_else(|| unreachable!("a binding always holds its own type"));
                    Arc::new(fork(value))
                }))
            })
            .clone()
    }
}

impl<T> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextVar")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> PartialEq for ContextVar<T> {
    /// Identity: a variable equals only itself (S1).
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<T: Send + Sync + 'static> Eq for ContextVar<T> {}

impl<T: Send + Sync + 'static> Hash for ContextVar<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

/// Returned by [`ContextVar::set`]; gives the variable back its previous value through
/// [`ContextVar::reset`].
///
/// A token belongs to one variable and to the context it was made in. It is not `Clone`:
/// `reset` consumes it, so it cannot be used twice.
///
/// Dropping a token resets nothing: the value stays set. A future cancelled between its `set`
/// and its `reset` (a `select!` loser, a `timeout` that expired, a request whose client hung up)
/// drops its token there. In a future with a context of its own (a [`Scoped`](crate::Scoped),
/// a task spawned through this crate, a request behind `tower::ContextLayer`) the value goes
/// with that context; in one that shares its caller's (an unwrapped `join!` or `select!`
/// branch) the caller reads it afterwards. Give the branch its own context
/// (`.with_current_context()`), or use [`set_guarded`](ContextVar::set_guarded), whose guard
/// resets when the cancelled future drops it.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
///
/// static DEPTH: ContextVar<u32> = ContextVar::new("depth");
///
/// DEPTH.set(1);
/// let token = DEPTH.set(2);
/// assert_eq!(token.old_value().map(|v| **v), Some(1));
/// assert_eq!(token.var(), DEPTH.key());
/// DEPTH.reset(token).unwrap();
/// assert_eq!(DEPTH.get().as_deref(), Some(&1));
/// ```
///
/// Using a token twice does not compile (Python raises `RuntimeError` at run time):
///
/// ```compile_fail
/// static DEPTH: contextvars::ContextVar<u32> = contextvars::ContextVar::new("depth");
/// let token = DEPTH.set(1);
/// DEPTH.reset(token).unwrap();
/// DEPTH.reset(token).unwrap(); // error: use of moved value
/// ```
///
/// A `select!` loser dropped before its `reset`:
///
/// ```
/// use contextvars::{ContextVar, FutureExt};
/// use std::time::Duration;
///
/// static BUDGET_MS: ContextVar<u64> = ContextVar::new("budget_ms");
///
/// async fn narrowed_call() {
///     let token = BUDGET_MS.set(5);
///     tokio::time::sleep(Duration::from_secs(5)).await; // cancelled here
///     BUDGET_MS.reset(token).unwrap();                  // never reached
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// BUDGET_MS.set(2000);
/// tokio::select! {
///     _ = narrowed_call() => {}
///     _ = tokio::task::yield_now() => {}
/// }
/// assert_eq!(*BUDGET_MS.value(), 5); // the loser shared this context: its value stayed
///
/// BUDGET_MS.set(2000);
/// tokio::select! {
///     _ = narrowed_call().with_current_context() => {}
///     _ = tokio::task::yield_now() => {}
/// }
/// assert_eq!(*BUDGET_MS.value(), 2000); // its own context went with it
///
/// tokio::select! {
///     _ = async {
///         let _budget = BUDGET_MS.set_guarded(5);
///         tokio::time::sleep(Duration::from_secs(5)).await;
///     } => {}
///     _ = tokio::task::yield_now() => {}
/// }
/// assert_eq!(*BUDGET_MS.value(), 2000); // the guard reset it as the loser dropped
/// # });
/// ```
pub struct Token<T> {
    var: VarKey,
    context: ContextId,
    old_value: Option<Arc<T>>,
}

impl<T> Token<T> {
    /// The value before the `set` that made this token; `None` if the variable was not set
    /// (Python's `Token.MISSING`).
    ///
    /// # Examples
    ///
    /// ```
    /// static V: contextvars::ContextVar<u8> = contextvars::ContextVar::new("v");
    /// assert!(V.set(1).old_value().is_none());
    /// assert_eq!(V.set(2).old_value().map(|v| **v), Some(1));
    /// ```
    #[inline]
    pub fn old_value(&self) -> Option<&Arc<T>> {
        self.old_value.as_ref()
    }

    /// The variable that made this token.
    ///
    /// # Examples
    ///
    /// ```
    /// static V: contextvars::ContextVar<u8> = contextvars::ContextVar::new("v");
    /// assert_eq!(V.set(1).var().name(), "v");
    /// ```
    #[inline]
    pub fn var(&self) -> VarKey {
        self.var
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("var", &self.var.name)
            .field("had_old_value", &self.old_value.is_some())
            .finish_non_exhaustive()
    }
}

/// The identity of one [`ContextVar`], without its type.
///
/// Two keys are equal exactly when they belong to the same variable.
///
/// # Examples
///
/// ```
/// use contextvars::{Context, ContextVar};
///
/// static USER: ContextVar<String> = ContextVar::new("user");
/// let ctx = Context::new().with_value(&USER, "alice".into());
/// let (key, _) = ctx.iter().next().unwrap();
/// assert_eq!(key, USER.key());
/// assert_eq!(key.name(), "user");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct VarKey {
    id: u64,
    name: &'static str,
}

impl VarKey {
    /// The variable's name.
    ///
    /// # Examples
    ///
    /// ```
    /// static V: contextvars::ContextVar<u8> = contextvars::ContextVar::new("v");
    /// assert_eq!(V.key().name(), "v");
    /// ```
    #[inline]
    pub fn name(&self) -> &'static str {
        self.name
    }

    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

// Identity is the id alone (the name is not unique).
impl PartialEq for VarKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for VarKey {}

impl Hash for VarKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// A [`VarKey`] as a context's map stores it: looked up by the bare id, which `VarKey` keeps to
/// the crate. It hashes as the id alone, as `Borrow<u64>` requires.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StoredKey(pub(crate) VarKey);

impl Borrow<u64> for StoredKey {
    #[inline]
    fn borrow(&self) -> &u64 {
        &self.0.id
    }
}

impl MapKey for StoredKey {}

/// What a child context gets from [`Context::fork`] for a variable bound in the parent (S20).
///
/// Set it with [`ContextVar::inherit`]. Policies apply to bound values only: a default is
/// never bound, so it stays one shared object.
///
/// # Examples
///
/// ```
/// use contextvars::{Context, ContextVar, Inherit};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// static HITS: ContextVar<AtomicU32> =
///     ContextVar::new("hits").inherit(Inherit::Fork(|_| AtomicU32::new(0)));
///
/// HITS.set(AtomicU32::new(5));
/// contextvars::thread::spawn(|| {
///     // The child counts from its own zero; the parent's counter is untouched.
///     HITS.with(|h| h.unwrap().fetch_add(1, Ordering::Relaxed));
/// })
/// .join()
/// .unwrap();
/// assert_eq!(HITS.with(|h| h.unwrap().load(Ordering::Relaxed)), 5);
/// ```
#[derive(Default)]
pub enum Inherit<T> {
    /// The child shares the parent's `Arc` (the default, as in Python).
    #[default]
    Share,
    /// The child gets its own value, computed from the parent's.
    Fork(fn(&T) -> T),
    /// The child does not see the value (its default applies).
    None,
}

impl<T> Clone for Inherit<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Inherit<T> {}

impl<T> fmt::Debug for Inherit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inherit::Share => "Share",
            Inherit::Fork(_) => "Fork(..)",
            Inherit::None => "None",
        })
    }
}
