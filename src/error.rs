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

/// Why [`Local::get`](crate::Local::get) or [`Local::remove`](crate::Local::remove) failed:
/// Python's `AttributeError`, plus a type check Python does not have.
///
/// # Examples
///
/// ```
/// use contextvars::{Local, LocalError};
///
/// static LOCAL: Local = Local::new();
///
/// assert_eq!(
///     LOCAL.get::<u32>("missing").unwrap_err(),
///     LocalError::Missing { name: "missing".into() }
/// );
/// LOCAL.set("count", 1u32);
/// let err = LOCAL.get::<String>("count").unwrap_err();
/// assert_eq!(
///     err,
///     LocalError::WrongType { name: "count".into(), expected: "alloc::string::String", found: "u32" }
/// );
/// assert_eq!(
///     err.to_string(),
///     "Local attribute \"count\" holds a value of type u32, not alloc::string::String: \
///      ask for the type it was set with"
/// );
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalError {
    /// No attribute of that name is set in the current context.
    Missing {
        /// The attribute asked for.
        name: String,
    },
    /// The attribute holds a value of another type than the one asked for.
    WrongType {
        /// The attribute asked for.
        name: String,
        /// The type asked for (`std::any::type_name`).
        expected: &'static str,
        /// The type of the value the attribute holds (`std::any::type_name`).
        found: &'static str,
    },
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalError::Missing { name } => write!(f, "Local has no attribute {name:?}"),
            LocalError::WrongType {
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "Local attribute {name:?} holds a value of type {found}, not {expected}: \
                     ask for the type it was set with"
                )?;
                // The usual mix-up: `set(name, "text")` stores a `&'static str`.
                if *found == std::any::type_name::<&str>() {
                    f.write_str(" (a string literal is set as a `&'static str`)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LocalError {}
