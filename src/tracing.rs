//! Context variables on every `tracing` event: a formatter for `tracing_subscriber::fmt`.
//!
//! [`ContextFields`] lists the variables (or [`Local`] attributes) to show; [`ContextFields::wrap`]
//! puts them, as `name=value`, in front of every line that the formatter you already use writes.
//! A variable that is not set in the context of the event is left out.
//!
//! ```
//! use contextvars::ContextVar;
//! use contextvars::tracing::ContextFields;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! let subscriber = tracing_subscriber::fmt()
//!     .event_format(
//!         ContextFields::new()
//!             .var(&REQUEST_ID)
//!             .wrap(tracing_subscriber::fmt::format().without_time()),
//!     )
//!     .finish();
//! tracing::subscriber::with_default(subscriber, || {
//!     REQUEST_ID.sync_scope("req-1".to_string(), || tracing::info!("handling"));
//!     // prints: request_id=req-1  INFO rust_out: handling
//! });
//! ```

use std::fmt;

use ::tracing::{Event, Subscriber};
use ::tracing_subscriber::fmt::format::Writer;
use ::tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use ::tracing_subscriber::registry::LookupSpan;

use crate::local::Local;
use crate::var::ContextVar;

/// Writes one field if it is set; `Ok(false)` if it is not.
type WriteField = Box<dyn Fn(&mut Writer<'_>) -> Result<bool, fmt::Error> + Send + Sync>;

struct Field {
    name: &'static str,
    write: WriteField,
}

/// The context variables to show on every event; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, Local};
/// use contextvars::tracing::ContextFields;
///
/// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
/// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
/// static REQUEST: Local = Local::new();
///
/// let fields = ContextFields::new()
///     .var(&REQUEST_ID)
///     .var(&TENANT)
///     .local::<u64>(&REQUEST, "user_id");
/// assert_eq!(fields.names(), ["request_id", "tenant", "user_id"]);
/// ```
#[derive(Default)]
pub struct ContextFields {
    fields: Vec<Field>,
}

impl ContextFields {
    /// No fields yet.
    ///
    /// # Examples
    ///
    /// ```
    /// let fields = contextvars::tracing::ContextFields::new();
    /// assert!(fields.names().is_empty());
    /// ```
    pub fn new() -> ContextFields {
        ContextFields::default()
    }

    /// Shows `var` as `name=value` (its [`Display`](fmt::Display)) when it is set.
    ///
    /// # Examples
    ///
    /// ```
    /// static USER: contextvars::ContextVar<String> = contextvars::ContextVar::new("user");
    /// let fields = contextvars::tracing::ContextFields::new().var(&USER);
    /// assert_eq!(fields.names(), ["user"]);
    /// ```
    pub fn var<T>(mut self, var: &'static ContextVar<T>) -> ContextFields
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        let name = var.name();
        self.fields.push(Field {
            name,
            write: Box::new(move |writer| {
                var.with(|value| match value {
                    Some(value) => write!(writer, "{name}={value} ").map(|()| true),
                    None => Ok(false),
                })
            }),
        });
        self
    }

    /// Shows attribute `name` of `local`, read as a `T`, when it is set and is a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// static REQUEST: contextvars::Local = contextvars::Local::new();
    /// let fields = contextvars::tracing::ContextFields::new().local::<String>(&REQUEST, "id");
    /// assert_eq!(fields.names(), ["id"]);
    /// ```
    pub fn local<T>(mut self, local: &'static Local, name: &'static str) -> ContextFields
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        self.fields.push(Field {
            name,
            write: Box::new(move |writer| match local.get::<T>(name) {
                Ok(value) => write!(writer, "{name}={value} ").map(|()| true),
                Err(_) => Ok(false),
            }),
        });
        self
    }

    /// The names of the fields, in the order they are written.
    ///
    /// # Examples
    ///
    /// ```
    /// static A: contextvars::ContextVar<u8> = contextvars::ContextVar::new("a");
    /// assert_eq!(contextvars::tracing::ContextFields::new().var(&A).names(), ["a"]);
    /// ```
    pub fn names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|field| field.name).collect()
    }

    /// Wraps `inner`, the event formatter in use (`tracing_subscriber::fmt::format()`, its
    /// `.compact()` or `.json()`-free variants, or your own), to write the fields first.
    ///
    /// # Examples
    ///
    /// ```
    /// static REQUEST_ID: contextvars::ContextVar<u64> = contextvars::ContextVar::new("request_id");
    ///
    /// let format = contextvars::tracing::ContextFields::new()
    ///     .var(&REQUEST_ID)
    ///     .wrap(tracing_subscriber::fmt::format().compact());
    /// let _subscriber = tracing_subscriber::fmt().event_format(format).finish();
    /// ```
    pub fn wrap<F>(self, inner: F) -> WithContextFields<F> {
        WithContextFields {
            fields: self,
            inner,
        }
    }
}

impl fmt::Debug for ContextFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextFields")
            .field("names", &self.names())
            .finish()
    }
}

/// An event formatter that writes [`ContextFields`] before what `F` writes; made by
/// [`ContextFields::wrap`].
///
/// # Examples
///
/// ```
/// use contextvars::tracing::{ContextFields, WithContextFields};
///
/// static V: contextvars::ContextVar<u8> = contextvars::ContextVar::new("v");
/// let format: WithContextFields<_> = ContextFields::new().var(&V).wrap(tracing_subscriber::fmt::format());
/// # drop(format);
/// ```
#[derive(Debug)]
pub struct WithContextFields<F> {
    fields: ContextFields,
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for WithContextFields<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        for field in &self.fields.fields {
            (field.write)(&mut writer)?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}
