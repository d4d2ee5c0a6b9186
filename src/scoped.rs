//! [`Scoped`]: a future (or stream, or sink) that runs in its own [`Context`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use crate::context::Context;
use crate::current::{self, Critical, TaskEntry};
use crate::var::ContextVar;

pin_project! {
    /// A future that makes its [`Context`] current for every poll of the inner future and while
    /// the inner future is dropped (S12).
    ///
    /// What the inner future sets stays in the `Scoped`'s context across `.await`s, and no other
    /// task sees it, even on a multi-thread runtime that moves the task between threads. Nothing
    /// is held across `Poll::Pending`: the context is entered at the start of each poll and left
    /// at its end, also when the poll panics.
    ///
    /// Made by [`FutureExt::with_context`], [`FutureExt::with_current_context`],
    /// [`ContextVar::scope`](crate::ContextVar::scope) and [`Context::scope`]; the spawn helpers
    /// in `task` wrap every child in one.
    ///
    /// With the `futures` feature, a `Scoped` stream or sink is a `Stream` or `Sink` that enters
    /// its context the same way; with the `tower` feature, a `Scoped` body is an
    /// `http_body::Body` (a response body polled in the request's context).
    ///
    /// When a `Scoped` is dropped, its inner future is dropped inside its context, and then the
    /// context, with its values, in whatever context is current there: a value whose `Drop`
    /// writes to context variables writes there (and, on a Tokio worker with no context entered,
    /// is refused by S21). Under `runtime::propagate`, a task's own context is dropped in a
    /// context of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, Scoped};
    ///
    /// static STEP: ContextVar<u32> = ContextVar::new("step");
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut fut = std::pin::pin!(Scoped::new(Context::new(), async {
    ///     STEP.set(1);
    ///     tokio::task::yield_now().await; // the value survives the suspension
    ///     *STEP.get().unwrap()
    /// }));
    /// assert_eq!(fut.as_mut().await, 1);
    /// assert_eq!(fut.context().get(&STEP).as_deref(), Some(&1)); // kept in the future's context
    /// assert!(STEP.get().is_none()); // never leaked to the caller
    /// # });
    /// ```
    #[project = ScopedProj]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Scoped<F> {
        context: Context,
        // This task's values of thread-critical `Local`s (S19), entered with the context and
        // never carried anywhere: used when the `Scoped` is the outermost task entry on the
        // thread (a spawned task) or `own_storage` is set; a `Scoped` inside another (a
        // `scope`, a `join!` branch) shares the enclosing task's.
        critical: Critical,
        own_storage: bool,
        // `None` only while `Scoped` is being dropped, so that the inner future is dropped
        // inside the context (as tokio's `TaskLocalFuture` does, tokio#4604).
        #[pin]
        inner: Option<F>,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if std::mem::needs_drop::<F>() && this.inner.is_some() {
                let entry = TaskEntry {
                    context: this.context,
                    critical: this.critical,
                    own: *this.own_storage,
                };
                current::run_in(entry, || this.inner.set(None));
            }
        }
    }
}

impl<F> Scoped<F> {
    /// Wraps `inner` so that it runs in `context`.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, Scoped};
    ///
    /// static USER: ContextVar<&'static str> = ContextVar::new("user");
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let ctx = Context::new().with_value(&USER, "alice");
    /// let user = Scoped::new(ctx, async { USER.get() }).await;
    /// assert_eq!(user.as_deref(), Some(&"alice"));
    /// # });
    /// ```
    pub fn new(context: Context, inner: F) -> Self {
        Scoped {
            context,
            critical: None,
            own_storage: false,
            inner: Some(inner),
        }
    }

    /// [`Scoped::new`] for a future that is a task of its own wherever it is polled, with its
    /// own thread-critical storage even when polled inside another task (S19): a task of
    /// `task::spawn` or `task::spawn_local` (its executor may be driven inside another task: a
    /// runtime in `block_in_place`, a `LocalSet` in a `Scoped`), the future
    /// `task::async_to_sync` drives.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new_task(context: Context, inner: F) -> Self {
        Scoped {
            context,
            critical: None,
            own_storage: true,
            inner: Some(inner),
        }
    }

    /// Calls `call` with `context` entered and wraps the future it returns, so that what `call`
    /// sets before returning and what the future sets later both land in `context`. The
    /// `Scoped` is a task of its own, as a request of `tower::ContextLayer` is: its
    /// thread-critical [`Local`](crate::Local) values (S19) are its own, those `call` sets
    /// included.
    ///
    /// Use it in the per-request middleware of a server that is not tower: actix-web (a
    /// `wrap_fn` closure, or your `Service::call`), poem (the `call` of the `Endpoint` your
    /// `Middleware` returns), salvo (a hoop that awaits
    /// `Scoped::from_call(ctx, || ctrl.call_next(req, depot, res))`), or any framework whose
    /// middleware calls the inner service and returns or awaits its future.
    /// `Scoped::from_call(Context::new(), || inner.call(req))` gives each request a context of
    /// its own, in which the middleware's own `set`s, the inner service's `call` and the handler
    /// all write. `Context::new()` gives each request an empty context;
    /// `Context::current().fork()` gives it the values current where the middleware runs (on
    /// actix-web, the worker thread's: usually none). With `inner.call(req).with_context(ctx)`
    /// instead, `call` runs before `ctx` is entered: a `set` there is refused (S21) or lands in
    /// the context around the middleware.
    ///
    /// # Examples
    ///
    /// actix-web serves each connection in a plain `spawn_local` task of a `LocalSet`, with no
    /// context of its own; here `inner_call` plays the inner service:
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, Scoped};
    ///
    /// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
    ///
    /// /// The inner service's `call`: sets a value, then returns its future.
    /// fn inner_call(id: String) -> impl Future<Output = Option<String>> {
    ///     REQUEST_ID.set(id); // in the request's context: `from_call` entered it
    ///     async {
    ///         tokio::task::yield_now().await; // the other request runs here
    ///         REQUEST_ID.get_cloned()
    ///     }
    /// }
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let local = tokio::task::LocalSet::new();
    /// local.block_on(&rt, async {
    ///     let a = Scoped::from_call(Context::new(), || inner_call("a".into()));
    ///     let b = Scoped::from_call(Context::new(), || inner_call("b".into()));
    ///     let a = tokio::task::spawn_local(a); // plain tasks, as actix-web's connections
    ///     let b = tokio::task::spawn_local(b);
    ///     assert_eq!(a.await.unwrap().as_deref(), Some("a"));
    ///     assert_eq!(b.await.unwrap().as_deref(), Some("b"));
    /// });
    /// ```
    #[inline]
    pub fn from_call(mut context: Context, call: impl FnOnce() -> F) -> Self {
        // `Scoped::new_task` for a future that `call` makes inside the task's entry, so that
        // what it sets on the way, thread-critical values included, is the task's own
        // (`tower::ContextLayer`'s requests come here too).
        let mut critical = None;
        let entry = TaskEntry {
            context: &mut context,
            critical: &mut critical,
            own: true,
        };
        let inner = current::run_in(entry, call);
        Scoped {
            context,
            critical,
            own_storage: true,
            inner: Some(inner),
        }
    }

    /// The future's context as of its last poll: what it has set so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, FutureExt};
    ///
    /// let fut = async {}.with_context(Context::new());
    /// assert!(fut.context().is_empty());
    /// ```
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Borrows the inner future.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, FutureExt};
    ///
    /// let fut = std::future::ready(5).with_context(Context::new());
    /// let _inner: &std::future::Ready<i32> = fut.inner();
    /// ```
    pub fn inner(&self) -> &F {
        self.inner.as_ref().expect(INNER_PRESENT)
    }

    /// Mutably borrows the inner future.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, FutureExt};
    ///
    /// let mut fut = std::future::ready(5).with_context(Context::new());
    /// let _inner: &mut std::future::Ready<i32> = fut.inner_mut();
    /// ```
    pub fn inner_mut(&mut self) -> &mut F {
        self.inner.as_mut().expect(INNER_PRESENT)
    }

    /// Pin-projects to the inner future.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, FutureExt};
    ///
    /// let mut fut = std::pin::pin!(std::future::ready(5).with_context(Context::new()));
    /// let _inner: std::pin::Pin<&mut std::future::Ready<i32>> = fut.as_mut().inner_pin_mut();
    /// ```
    pub fn inner_pin_mut(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().inner.as_pin_mut().expect(INNER_PRESENT)
    }

    /// Unwraps the inner future and the context, in that order.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, FutureExt};
    ///
    /// static V: ContextVar<u8> = ContextVar::new("v");
    /// let (fut, ctx) = async {}.with_context(Context::new().with_value(&V, 1)).into_parts();
    /// assert_eq!(ctx.get(&V).as_deref(), Some(&1));
    /// # drop(fut);
    /// ```
    pub fn into_parts(mut self) -> (F, Context) {
        let inner = self.inner.take().expect(INNER_PRESENT);
        (inner, std::mem::take(&mut self.context))
    }

    /// Unwraps the inner future, dropping the context.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, FutureExt};
    ///
    /// let fut = std::future::ready(5).with_context(Context::new()).into_inner();
    /// # drop(fut);
    /// ```
    pub fn into_inner(self) -> F {
        self.into_parts().0
    }

    /// Runs `f` on the inner future with the context entered.
    #[inline]
    fn enter<R>(self: Pin<&mut Self>, f: impl FnOnce(Pin<&mut F>) -> R) -> R {
        let this = self.project();
        // `inner` is `None` only inside `drop`, which never polls. Checked before entering, so
        // that nothing between entering and leaving can panic but `f`.
        let inner = this.inner.as_pin_mut().expect(INNER_PRESENT);
        let entry = TaskEntry {
            context: this.context,
            critical: this.critical,
            own: *this.own_storage,
        };
        current::run_in(entry, || f(inner))
    }
}

/// The futures side of [`Context`]: kept here so that the core knows no futures.
impl Context {
    /// Wraps `fut` so that every poll runs in this context (S12).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar};
    ///
    /// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let ctx = Context::new().with_value(&REQUEST_ID, 42);
    /// let seen = ctx.scope(async { REQUEST_ID.get() }).await;
    /// assert_eq!(seen.as_deref(), Some(&42));
    /// # });
    /// ```
    pub fn scope<F: Future>(self, fut: F) -> Scoped<F> {
        Scoped::new(self, fut)
    }
}

/// The futures side of [`ContextVar`].
impl<T: Send + Sync + 'static> ContextVar<T> {
    /// Wraps `fut` so that it runs in a copy of the current context (taken now) in which this
    /// variable is `value` (S14). Nothing the future sets leaks out.
    ///
    /// "Now" is the call, not the first poll, and the copy replaces the whole context while
    /// `fut` runs: `A.scope(a, B.scope(b, fut))` runs `fut` without `A`, because the inner
    /// scope was made before the outer one existed. Write
    /// `A.scope(a, async { B.scope(b, fut).await })` instead (see [porting from
    /// `task_local!`](crate#porting-from-task_local)).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    ///
    /// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let id = REQUEST_ID
    ///     .scope("req-1".to_string(), async {
    ///         tokio::task::yield_now().await;
    ///         REQUEST_ID.get()
    ///     })
    ///     .await;
    /// assert_eq!(id.as_deref().map(String::as_str), Some("req-1"));
    /// assert!(REQUEST_ID.get().is_none());
    /// # });
    /// ```
    pub fn scope<F: Future>(&self, value: T, fut: F) -> Scoped<F> {
        Scoped::new(self.scoped_context(value), fut)
    }
}

/// Why the `expect`s on `Scoped::inner` cannot fail.
const INNER_PRESENT: &str = "Scoped's inner value is only taken by drop or into_parts";

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.enter(|inner| inner.poll(cx))
    }
}

impl<F: fmt::Debug> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("context", &self.context)
            .field("inner", &self.inner)
            .finish()
    }
}

#[cfg(feature = "futures")]
#[cfg_attr(docsrs, doc(cfg(feature = "futures")))]
impl<S: futures_core::Stream> futures_core::Stream for Scoped<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        self.enter(|inner| inner.poll_next(cx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Only `&self` here: run in a copy of the context (O(1)), so that the stream's own
        // code sees its values, as in every other method.
        let inner = self.inner();
        self.context.clone().run(|| inner.size_hint())
    }
}

#[cfg(feature = "futures")]
#[cfg_attr(docsrs, doc(cfg(feature = "futures")))]
impl<S: futures_sink::Sink<Item>, Item> futures_sink::Sink<Item> for Scoped<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.enter(|inner| inner.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Item) -> Result<(), S::Error> {
        self.enter(|inner| inner.start_send(item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.enter(|inner| inner.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.enter(|inner| inner.poll_close(cx))
    }
}

/// With the `tower` feature a `Scoped` body is an [`http_body::Body`] that polls its frames in
/// its context, so a response body runs in the request's context after the response future has
/// finished (see the `tower` module's "Streamed bodies"). Size hint and end of stream are the
/// inner body's; trailers pass through.
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
impl<B: http_body::Body> http_body::Body for Scoped<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.enter(|inner| inner.poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        let inner = self.inner();
        self.context.clone().run(|| inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // As for `Stream::size_hint`: a copy of the context (O(1)) for the body's own code.
        let inner = self.inner();
        self.context.clone().run(|| inner.size_hint())
    }
}

/// Extension methods that put a future in a [`Context`]: the counterpart of tracing's
/// `Instrument`.
///
/// Implemented for every [`Future`]. Import it as `use contextvars::FutureExt as _;` if another
/// `FutureExt` is in scope.
///
/// OpenTelemetry's `opentelemetry::trace::FutureExt` has methods of the same names
/// (`with_context`, `with_current_context`) that attach an OpenTelemetry context, not this
/// crate's. With only that trait imported, `fut.with_current_context()` compiles and gives the
/// future no context of this crate; with both imported, the call is ambiguous. Call this one
/// as `contextvars::FutureExt::with_current_context(fut)` where both are in use.
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, FutureExt};
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// REQUEST_ID.set(7);
/// // A fork of the caller's context, taken now, travels with the future.
/// let child = tokio::spawn(async { REQUEST_ID.get() }.with_current_context());
/// assert_eq!(child.await.unwrap().as_deref(), Some(&7));
/// # });
/// ```
pub trait FutureExt: Future + Sized {
    /// Runs this future in `context`.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{Context, ContextVar, FutureExt};
    ///
    /// static V: ContextVar<u8> = ContextVar::new("v");
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let got = async { V.get() }.with_context(Context::new().with_value(&V, 1)).await;
    /// assert_eq!(got.as_deref(), Some(&1));
    /// # });
    /// ```
    fn with_context(self, context: Context) -> Scoped<Self> {
        Scoped::new(context, self)
    }

    /// Runs this future in a fork of the current context, taken now
    /// (`with_context(Context::current().fork())`).
    ///
    /// Use it on a future you hand to another executor or to `tokio::spawn`, so that it neither
    /// sees later changes of the caller nor writes into the thread it happens to run on (S13).
    /// One difference from `task::spawn`: polled inside another task (its executor driven in
    /// `block_in_place` or inside a `Scoped`), it shares that task's thread-critical `Local`
    /// values (S19), where a task of `task::spawn` has its own.
    ///
    /// # Panics
    ///
    /// Propagates a panic of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the
    /// fork.
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::{ContextVar, FutureExt};
    ///
    /// static V: ContextVar<u8> = ContextVar::new("v");
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// V.set(1);
    /// let fut = async { V.get() }.with_current_context();
    /// V.set(2); // after the fork: not seen
    /// assert_eq!(fut.await.as_deref(), Some(&1));
    /// # });
    /// ```
    fn with_current_context(self) -> Scoped<Self> {
        Scoped::new(Context::current_fork(), self)
    }
}

impl<F: Future> FutureExt for F {}
