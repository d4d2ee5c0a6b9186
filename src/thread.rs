//! Threads that start in a copy of the caller's context.
//!
//! ```
//! use contextvars::ContextVar;
//!
//! static USER: ContextVar<&'static str> = ContextVar::new("user");
//!
//! USER.set("alice");
//! let seen = contextvars::thread::spawn(|| USER.get()).join().unwrap();
//! assert_eq!(seen.as_deref(), Some(&"alice"));
//! let seen = std::thread::spawn(|| USER.get()).join().unwrap();
//! assert_eq!(seen, None); // a plain thread starts empty (S6)
//! ```

use crate::context::Context;

/// Spawns an OS thread that runs `f` in a fork of the caller's current context (S15, S20).
///
/// The fork is taken at the call, like `asyncio.create_task`: later changes in the parent are
/// not seen by the thread, and what the thread sets is not seen by the parent. A thread started
/// with [`std::thread::spawn`] starts with an empty context instead (S6).
///
/// To configure the thread (name, stack size), bind the closure yourself:
/// `std::thread::Builder::new().spawn(Context::current().fork().bind(f))`. The same works for
/// scoped threads, whose closures may borrow ([`Context::bind`] needs no `'static`):
///
/// ```
/// use contextvars::{Context, ContextVar};
///
/// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
///
/// TENANT.set("acme");
/// let rows = vec![1, 2, 3];
/// let seen = std::thread::scope(|s| {
///     s.spawn(Context::current().fork().bind(|| format!("{}:{}", TENANT.value(), rows.len())))
///         .join()
///         .unwrap()
/// });
/// assert_eq!(seen, "acme:3");
/// ```
///
/// # Panics
///
/// Panics if the OS fails to create a thread, like [`std::thread::spawn`]. Propagates a panic
/// of an [`Inherit::Fork`](crate::Inherit::Fork) function, run by the fork taken at the call.
///
/// # Examples
///
/// ```
/// use contextvars::ContextVar;
///
/// static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
///
/// REQUEST_ID.set(7);
/// let handle = contextvars::thread::spawn(|| {
///     let inherited = REQUEST_ID.get();
///     REQUEST_ID.set(8); // stays in the thread
///     inherited
/// });
/// assert_eq!(handle.join().unwrap().as_deref(), Some(&7));
/// assert_eq!(REQUEST_ID.get().as_deref(), Some(&7));
///
/// // A plain std thread starts empty.
/// assert!(std::thread::spawn(|| REQUEST_ID.get()).join().unwrap().is_none());
/// ```
pub fn spawn<F, R>(f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    std::thread::spawn(Context::current_fork().bind(f))
}
