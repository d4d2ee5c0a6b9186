//! The traits users rely on, checked at compile time: losing one (a `Send` through a new
//! private field, a `Debug` left off a new type) is a breaking change, so it must fail here
//! rather than in a user's build.

#![allow(dead_code)]

use std::error::Error;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use contextvars::{
    Context, ContextVar, FutureExt, Inherit, Iter, Local, LocalError, ResetError, Scoped, SetGuard,
    Token, VarKey,
};

fn send_sync<T: Send + Sync>() {}
fn debug<T: Debug>() {}
fn clone<T: Clone>() {}
fn error<T: Error + Send + Sync + Clone + PartialEq + 'static>() {}
fn key<T: Copy + Eq + Hash + Debug + Send + Sync + 'static>() {}

// A value type that is `Send + Sync` but not `Clone`, `Debug` or `Copy`.
struct Opaque;

#[test]
fn core_types() {
    send_sync::<ContextVar<Opaque>>();
    debug::<ContextVar<Opaque>>();
    send_sync::<Token<Opaque>>();
    debug::<Token<Opaque>>();
    key::<VarKey>();
    send_sync::<Context>();
    debug::<Context>();
    clone::<Context>();
    fn context<T: Default + Eq>() {}
    context::<Context>();
    send_sync::<Iter<'static>>();
    debug::<Iter<'static>>();
    send_sync::<SetGuard<'static, Opaque>>();
    debug::<SetGuard<'static, Opaque>>();
    send_sync::<Local>();
    debug::<Local>();
    fn inherit<T: Copy + Debug + Default + Send + Sync>() {}
    inherit::<Inherit<Opaque>>();
    error::<ResetError>();
    error::<LocalError>();
}

#[test]
fn scoped_is_as_send_and_sync_as_its_future() {
    fn future<F: Future + Send + Sync + Debug>(_: &F) {}
    let fut = std::future::ready(1).with_context(Context::new());
    future(&fut);
    send_sync::<Scoped<std::future::Ready<u8>>>();
}

#[cfg(feature = "tokio")]
#[test]
fn task_outputs() {
    fn future<F: Future + Send + 'static>(_: F) {}
    future(contextvars::task::sync_to_async(|| 1));
}

#[cfg(feature = "tower")]
#[test]
fn tower_types() {
    fn layer<T: Clone + Debug + Default + Send + Sync + 'static>() {}
    layer::<contextvars::tower::ContextLayer>();
    send_sync::<contextvars::tower::ContextService<()>>();
    clone::<contextvars::tower::ContextService<()>>();
    debug::<contextvars::tower::ContextService<()>>();
}

#[cfg(feature = "opentelemetry")]
#[test]
fn propagation_types() {
    fn baggage<T: Clone + Debug + Default + Send + Sync + 'static>() {}
    baggage::<contextvars::propagation::Baggage>();
    fn propagator<T: opentelemetry::propagation::TextMapPropagator + Clone + Send + Sync>() {}
    propagator::<contextvars::propagation::BaggageTextMapPropagator>();
}

#[cfg(all(feature = "opentelemetry", feature = "tower"))]
#[test]
fn propagate_layer() {
    fn layer<T: Clone + Debug + Send + Sync + 'static>() {}
    layer::<contextvars::tower::PropagateLayer>();
    send_sync::<contextvars::tower::PropagateService<()>>();
    clone::<contextvars::tower::PropagateService<()>>();
}

#[cfg(feature = "tracing")]
#[test]
fn tracing_types() {
    fn fields<T: Debug + Default + Send + Sync + 'static>() {}
    fields::<contextvars::tracing::ContextFields>();
    send_sync::<contextvars::tracing::WithContextFields<()>>();
    debug::<contextvars::tracing::WithContextFields<()>>();
}
