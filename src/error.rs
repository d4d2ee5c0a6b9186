//! Error types returned by the crate.

use std::fmt;

/// Why [`ContextVar::reset`](crate::ContextVar::reset) refused a [`Token`](crate::Token).
///
/// A failed reset consumes the token and changes nothing.
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, ResetError};
///
/// static A: ContextVar<u32> = ContextVar::new("a");
/// static B: ContextVar<u32> = ContextVar::new("b");
///
/// let token = A.set(1);
/// assert_eq!(B.reset(token), Err(ResetError::WrongVar));
/// assert_eq!(A.get().as_deref(), Some(&1)); // nothing changed
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetError {
    /// The token was returned by a `set` of another variable.
    WrongVar,
    /// The token was made in another context than the current one. A copy of a context
    /// (`clone`, [`copy_context`](crate::copy_context), [`fork`](crate::Context::fork)) is
    /// another context.
    WrongContext,
}

impl fmt::Display for ResetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResetError::WrongVar => "token was created by a different ContextVar",
            ResetError::WrongContext => "token was created in a different Context",
        })
    }
}

impl std::error::Error for ResetError {}
