//! Context variables on every `tracing` event: a formatter for `tracing_subscriber::fmt`.
//!
//! [`ContextFields`] lists the variables (or [`Local`] attributes) to show; [`ContextFields::wrap`]
//! adds them to every line that the formatter you already use writes:
//!
//! - a text formatter (`tracing_subscriber::fmt::format()`, `.compact()`, `.pretty()`, your
//!   own): `name=value` in front of the line;
//! - the JSON formatter (`fmt::format().json()`, tracing-subscriber's `json` feature): top-level
//!   string members of each JSON object, `{"request_id":"req-1","timestamp":…}`, so the line
//!   stays one valid JSON object.
//!
//! Control characters in a value are escaped in text lines, line breaks included, and a value
//! whose formatting panics or fails ends in a placeholder (see [`var`](ContextFields::var)).
//! A line carries the values of the context current where the event is emitted: a value's
//! `Drop` that logs runs where the value is dropped, which for a request's values is after
//! the request's context is left (`Scoped`'s drop), so such lines carry none of them. The same
//! goes for a span closed outside the context: `fut.instrument(span).with_current_context()`
//! (or `task::spawn(fut.instrument(span))`) closes the span inside the task's context, while
//! `fut.with_current_context().instrument(span)` closes it after, so a layer's `on_close` (and
//! `FmtSpan::CLOSE` lines) read none of the request's values.
//!
//! A variable shows its [`Display`](fmt::Display) ([`var`](ContextFields::var)), its
//! [`Debug`](fmt::Debug) ([`var_debug`](ContextFields::var_debug)) or what a formatting function
//! of yours writes ([`var_fmt`](ContextFields::var_fmt)). A variable that is not set in the
//! context of the event (and has no default) is left out: it writes nothing and allocates
//! nothing.
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
//!
//! JSON lines for a log pipeline (enable tracing-subscriber's `json` feature in your own
//! `Cargo.toml`; this crate does not need it):
//!
//! ```
//! use contextvars::ContextVar;
//! use contextvars::tracing::ContextFields;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! let subscriber = tracing_subscriber::fmt()
//!     .json()
//!     .event_format(
//!         ContextFields::new()
//!             .var(&REQUEST_ID)
//!             .wrap(tracing_subscriber::fmt::format().json()),
//!     )
//!     .finish();
//! tracing::subscriber::with_default(subscriber, || {
//!     REQUEST_ID.sync_scope("req-1".to_string(), || tracing::info!("handling"));
//!     // prints: {"request_id":"req-1","timestamp":"…","level":"INFO","fields":{"message":"handling"},…}
//! });
//! ```
//!
//! The builder's (or layer's) `.json()` is needed as well as the formatter's: it makes spans'
//! fields JSON (`JsonFields`), which the JSON formatter reads back: without it, tracing-subscriber
//! panics ("malformed fields", debug builds) on the first event inside any span, and release
//! builds add a `field_error` member to such lines. Its other
//! settings (`.flatten_event(true)`, `.without_time()`, `.with_current_span(false)`) configure
//! the formatter that `event_format` replaces: set them on the one you pass to
//! [`wrap`](ContextFields::wrap). As a layer of a registry:
//!
//! ```
//! use contextvars::ContextVar;
//! use contextvars::tracing::ContextFields;
//! use tracing_subscriber::prelude::*;
//!
//! static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
//!
//! let subscriber = tracing_subscriber::registry().with(
//!     tracing_subscriber::fmt::layer().json().event_format(
//!         ContextFields::new()
//!             .var(&REQUEST_ID)
//!             .wrap(tracing_subscriber::fmt::format().json().flatten_event(true)),
//!     ),
//! );
//! tracing::subscriber::with_default(subscriber, || {
//!     let _span = tracing::info_span!("handler", user = 7).entered();
//!     REQUEST_ID.sync_scope("req-1".to_string(), || tracing::info!("handling"));
//!     // prints: {"request_id":"req-1","timestamp":"…","level":"INFO","message":"handling",…}
//! });
//! ```
//!
//! Values are written as JSON strings. Give the variables names that do not clash with the
//! formatter's own keys (`timestamp`, `level`, `fields`, `target`, `span`, `spans`), nor, with
//! `.flatten_event(true)` (which lifts the event's fields to the top level), with the events'
//! field names: the line would have the key twice, which strict JSON parsers reject.
//!
//! # OpenTelemetry log records, spans and metrics
//!
//! [`ContextFields`] formats `tracing_subscriber::fmt` lines only: it adds nothing to the log
//! records of opentelemetry-appender-tracing's bridge, to tracing-opentelemetry's spans, nor to
//! metrics. Read the variables where the signal is made, on the thread that makes it:
//!
//! - **Log records**: an `opentelemetry_sdk::logs::LogProcessor` whose `emit` adds them. The
//!   SDK calls each processor's `emit` in the order they were added, on the thread that logs
//!   (the bridge logs where the `tracing` event is), so add it *before* the exporting one
//!   (`with_log_processor` before `with_batch_exporter`): a `BatchLogProcessor` keeps a copy
//!   of the record as its `emit` sees it, and exports from a thread of its own, where no
//!   request's values are set; an exporter that reads the variables reads nothing.
//! - **Spans**: a `SpanProcessor` whose `on_start` adds them. tracing-opentelemetry starts
//!   the OpenTelemetry span, not at `span!`, but the first time the `tracing` span is entered
//!   (with the layer's default context activation), gets a child or a `follows_from`, has its
//!   `context()` read, or closes: a span made in a request but started outside its context
//!   (entered only in a streamed body that is not wrapped in [`Scoped`](crate::Scoped)) gets
//!   none.
//! - **Metrics**: read them in the call that records, `counter.add(1, &attributes)`. An
//!   observable instrument's callback runs where the reader collects (a `PeriodicReader`'s
//!   thread) and reads nothing.
//!
//! A signal made outside the request's context (a plain `tokio::spawn`, a streamed body that
//! is not wrapped) carries none of its values, as a log line would.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! use contextvars::ContextVar;
//! use opentelemetry::InstrumentationScope;
//! use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
//! use opentelemetry_sdk::error::OTelSdkResult;
//! use opentelemetry_sdk::logs::{
//!     LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLoggerProvider,
//! };
//!
//! static TENANT: ContextVar<String> = ContextVar::new("tenant");
//!
//! /// Adds the variables to each record, on the thread that logs.
//! #[derive(Debug)]
//! struct ContextAttributes;
//!
//! impl LogProcessor for ContextAttributes {
//!     fn emit(&self, record: &mut SdkLogRecord, _: &InstrumentationScope) {
//!         TENANT.with(|tenant| {
//!             if let Some(tenant) = tenant {
//!                 record.add_attribute(TENANT.name(), tenant.clone());
//!             }
//!         });
//!     }
//!     fn force_flush(&self) -> OTelSdkResult {
//!         Ok(())
//!     }
//!     fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
//!         Ok(())
//!     }
//! }
//!
//! /// Stands in for an OTLP exporter; notes each record's `tenant` and what it reads itself.
//! #[derive(Debug, Default, Clone)]
//! struct Exported(Arc<Mutex<Vec<(Option<String>, bool)>>>);
//!
//! impl LogExporter for Exported {
//!     async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
//!         for (record, _) in batch.iter() {
//!             let tenant = record.attributes_iter().find(|(key, _)| key.as_str() == "tenant");
//!             let tenant = tenant.map(|(_, value)| match value {
//!                 AnyValue::String(tenant) => tenant.to_string(),
//!                 other => format!("{other:?}"),
//!             });
//!             self.0.lock().unwrap().push((tenant, TENANT.is_set()));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let exported = Exported::default();
//! let provider = SdkLoggerProvider::builder()
//!     .with_log_processor(ContextAttributes) // first: it runs where the event is
//!     .with_batch_exporter(exported.clone())
//!     .build();
//! // What the bridge (`OpenTelemetryTracingBridge::new(&provider)`) does for each event.
//! let logger = provider.logger("app");
//! TENANT.sync_scope("acme".to_string(), || {
//!     let mut record = logger.create_log_record();
//!     record.set_body("handling".into());
//!     logger.emit(record);
//! });
//! provider.force_flush().unwrap();
//! // The record carries the tenant; the exporter, on the batch thread, reads none itself.
//! assert_eq!(*exported.0.lock().unwrap(), [(Some("acme".to_string()), false)]);
//! ```

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ::tracing::{Event, Subscriber};
use ::tracing_subscriber::fmt::format::Writer;
use ::tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use ::tracing_subscriber::registry::LookupSpan;

use crate::local::Local;
use crate::var::ContextVar;

/// Calls the sink with the field's value if it is set in the current context, else does nothing.
type Show =
    Box<dyn Fn(&mut dyn FnMut(&dyn fmt::Display) -> fmt::Result) -> fmt::Result + Send + Sync>;

struct Field {
    name: &'static str,
    show: Show,
}

/// The context variables to show on every event; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use contextvars::{ContextVar, Local};
/// use contextvars::tracing::ContextFields;
///
/// #[derive(Debug)]
/// struct User { id: u64 }
///
/// static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");
/// static TENANT: ContextVar<&'static str> = ContextVar::new("tenant");
/// static USER: ContextVar<User> = ContextVar::new("user");
/// static REQUEST: Local = Local::new();
///
/// let fields = ContextFields::new()
///     .var(&REQUEST_ID)
///     .var(&TENANT)
///     .var_fmt(&USER, |user, f| write!(f, "u{}", user.id))
///     .local::<u64>(&REQUEST, "attempt");
/// assert_eq!(fields.names(), ["request_id", "tenant", "user", "attempt"]);
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

    /// Shows `var`'s [`Display`](fmt::Display) when it has a value (set, or its default).
    ///
    /// In a text line, the value's control characters are escaped (`\n`, `\x1b`, `\u{9b}`, and
    /// the Unicode line separators and bidirectional controls, `\u{2028}`, `\u{202e}`), so that
    /// a value from a client (a header, a baggage member) can neither start a line of its own,
    /// drive the terminal, nor reorder what a viewer shows. That is more than tracing-subscriber escapes in its
    /// messages (the terminal's escape characters, not line breaks), and it is turned off with
    /// them by the subscriber's `with_ansi_sanitization(false)`. The rest
    /// is written as it is, as tracing-subscriber's `%field` is: a value with a space and `=`
    /// reads as fields of its own (`request_id=a truth=b`). Check such values where they are
    /// set (the axum example's middleware replaces an id outside `A–Z a–z 0–9 + / = - _ . :`),
    /// or show them with [`var_debug`](ContextFields::var_debug), quoted as `?field` is. JSON
    /// lines are always escaped.
    ///
    /// A value whose `Display` panics or returns an error is written up to there, then
    /// `<panicked>` or `<fmt error>`, and the line goes on (the panic still reaches the panic
    /// hook). The same holds for [`var_debug`](ContextFields::var_debug),
    /// [`var_fmt`](ContextFields::var_fmt) and [`local`](ContextFields::local).
    ///
    /// # Panics
    ///
    /// If a field of the same name is already in the list (two variables of one name, S1, or a
    /// [`local`](ContextFields::local) attribute named like a variable): the line would have
    /// the name twice, which strict JSON parsers reject.
    ///
    /// # Examples
    ///
    /// ```
    /// static USER: contextvars::ContextVar<String> = contextvars::ContextVar::new("user");
    /// let fields = contextvars::tracing::ContextFields::new().var(&USER);
    /// assert_eq!(fields.names(), ["user"]);
    /// ```
    pub fn var<T>(self, var: &'static ContextVar<T>) -> ContextFields
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        self.field(var.name(), move |sink| {
            var.with(|value| value.map_or(Ok(()), |value| sink(value)))
        })
    }

    /// Shows `var`'s [`Debug`](fmt::Debug), for types that are not `Display`.
    ///
    /// # Panics
    ///
    /// If a field of the same name is already in the list, as [`var`](ContextFields::var).
    ///
    /// # Examples
    ///
    /// ```
    /// static ROLES: contextvars::ContextVar<Vec<&'static str>> = contextvars::ContextVar::new("roles");
    /// let fields = contextvars::tracing::ContextFields::new().var_debug(&ROLES);
    /// assert_eq!(fields.names(), ["roles"]);
    /// // with ROLES = ["admin"], lines show: roles=["admin"]
    /// ```
    pub fn var_debug<T>(self, var: &'static ContextVar<T>) -> ContextFields
    where
        T: fmt::Debug + Send + Sync + 'static,
    {
        self.field(var.name(), move |sink| {
            var.with(|value| value.map_or(Ok(()), |value| sink(&DebugAsDisplay(value))))
        })
    }

    /// Shows what `format` writes for `var`'s value: the shape of [`Display::fmt`](fmt::Display::fmt),
    /// for types that are neither `Display` nor `Debug`, or to show a part of a value.
    ///
    /// # Panics
    ///
    /// If a field of the same name is already in the list, as [`var`](ContextFields::var).
    ///
    /// # Examples
    ///
    /// ```
    /// use contextvars::ContextVar;
    /// use contextvars::tracing::ContextFields;
    ///
    /// struct Session { user: String, secret: String }
    /// static SESSION: ContextVar<Session> = ContextVar::new("user");
    ///
    /// // Only the user name goes to the logs, never the secret.
    /// let fields = ContextFields::new().var_fmt(&SESSION, |s, f| f.write_str(&s.user));
    /// assert_eq!(fields.names(), ["user"]);
    /// ```
    pub fn var_fmt<T, F>(self, var: &'static ContextVar<T>, format: F) -> ContextFields
    where
        T: Send + Sync + 'static,
        F: Fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result + Send + Sync + 'static,
    {
        self.field(var.name(), move |sink| {
            var.with(|value| value.map_or(Ok(()), |value| sink(&FnAsDisplay(value, &format))))
        })
    }

    /// Shows attribute `name` of `local`, read as a `T`, when it is set and is a `T`.
    ///
    /// # Panics
    ///
    /// If a field of the same name is already in the list, as [`var`](ContextFields::var).
    ///
    /// # Examples
    ///
    /// ```
    /// static REQUEST: contextvars::Local = contextvars::Local::new();
    /// let fields = contextvars::tracing::ContextFields::new().local::<String>(&REQUEST, "id");
    /// assert_eq!(fields.names(), ["id"]);
    /// ```
    pub fn local<T>(self, local: &'static Local, name: &'static str) -> ContextFields
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        self.field(name, move |sink| match local.get_if::<T>(name) {
            Some(value) => sink(&*value),
            None => Ok(()),
        })
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
    /// `.compact()`, `.pretty()` or `.json()` variants, or your own), to add the fields to
    /// each line: in front of a text line, as top-level members of a JSON object.
    ///
    /// A line is JSON when `inner` is tracing-subscriber's JSON formatter, or when `inner` is
    /// a formatter of your own, the writer has ANSI colours off and the line `inner` writes
    /// starts with `{`. tracing-subscriber's text formats always write text lines (a message
    /// that starts with `{` included), and they write straight to the output: the fields cost
    /// what writing them costs (`benches/tracing.rs`).
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
            kind: FormatKind::of::<F>(),
            inner,
        }
    }

    fn field(
        mut self,
        name: &'static str,
        show: impl Fn(&mut dyn FnMut(&dyn fmt::Display) -> fmt::Result) -> fmt::Result
        + Send
        + Sync
        + 'static,
    ) -> ContextFields {
        assert!(
            self.fields.iter().all(|field| field.name != name),
            "ContextFields: a field named {name:?} is already in the list: a line would have \
             the name twice (two variables of one name, or a `local` attribute named like a \
             variable); give one of them another name"
        );
        self.fields.push(Field {
            name,
            show: Box::new(show),
        });
        self
    }

    /// Whether at least one field has a value here; formats nothing.
    fn any_set(&self) -> Result<bool, fmt::Error> {
        let mut any = false;
        for field in &self.fields {
            (field.show)(&mut |_| {
                any = true;
                Ok(())
            })?;
            if any {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `name=value ` for each field with a value; with `sanitize` (the writer's
    /// [`sanitizes_ansi_escapes`](Writer::sanitizes_ansi_escapes), on unless turned off), the
    /// value's control characters escaped.
    fn write_text(&self, out: &mut dyn fmt::Write, sanitize: bool) -> fmt::Result {
        for field in &self.fields {
            let name = field.name;
            (field.show)(&mut |value| {
                // Piece by piece: one `write!` of the whole would parse a format string.
                out.write_str(name)?;
                out.write_char('=')?;
                if sanitize {
                    write_value(&mut TextEscape(&mut *out), value)?;
                } else {
                    write_value(&mut *out, value)?;
                }
                out.write_char(' ')
            })?;
        }
        Ok(())
    }

    /// Writes `line`, which the inner formatter wrote, with the fields added: after the `{` of
    /// a JSON object (followed by a comma unless the object closes right away), in front of
    /// anything else.
    fn write_into_line(&self, line: &str, out: &mut Writer<'_>) -> fmt::Result {
        match line.strip_prefix('{') {
            Some(rest) => {
                out.write_char('{')?;
                if self.write_json(out)? && !rest.starts_with('}') {
                    out.write_char(',')?;
                }
                out.write_str(rest)
            }
            None => {
                let sanitize = out.sanitizes_ansi_escapes();
                self.write_text(out, sanitize)?;
                out.write_str(line)
            }
        }
    }

    /// `"name":"value"` for each field with a value, separated by commas; whether any was written.
    fn write_json(&self, out: &mut dyn fmt::Write) -> Result<bool, fmt::Error> {
        let mut first = true;
        for field in &self.fields {
            let name = field.name;
            (field.show)(&mut |value| {
                if !first {
                    out.write_char(',')?;
                }
                first = false;
                out.write_char('"')?;
                JsonEscape(&mut *out).write_str(name)?;
                out.write_str("\":\"")?;
                write_value(&mut JsonEscape(&mut *out), value)?;
                out.write_char('"')
            })?;
        }
        Ok(!first)
    }
}

impl fmt::Debug for ContextFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextFields")
            .field("names", &self.names())
            .finish()
    }
}

/// An event formatter that adds [`ContextFields`] to what `F` writes; made by
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
    kind: FormatKind,
    inner: F,
}

/// What [`WithContextFields`] knows of its inner formatter's output from its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FormatKind {
    /// tracing-subscriber's text formatters (`Format<Full | Compact | Pretty, _>`): a text
    /// line, whatever it starts with.
    Text,
    /// tracing-subscriber's JSON formatter, which ignores ANSI settings.
    Json,
    /// Another formatter: its first bytes tell (a JSON object or a text line).
    Other,
}

impl FormatKind {
    /// The kind of `F`, from its type name: the first parameter of `Format<L, T>` (left out of
    /// the name when both are the defaults, `Full` and `SystemTime`).
    fn of<F>() -> FormatKind {
        let name = std::any::type_name::<F>();
        if name == "tracing_subscriber::fmt::format::Format" {
            return FormatKind::Text;
        }
        let Some(parameters) = name.strip_prefix("tracing_subscriber::fmt::format::Format<") else {
            return FormatKind::Other;
        };
        match parameters.split([',', '>']).next() {
            Some(
                "tracing_subscriber::fmt::format::Full"
                | "tracing_subscriber::fmt::format::Compact"
                | "tracing_subscriber::fmt::format::pretty::Pretty",
            ) => FormatKind::Text,
            Some("tracing_subscriber::fmt::format::json::Json") => FormatKind::Json,
            _ => FormatKind::Other,
        }
    }
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
        if self.kind == FormatKind::Text {
            // A text line: the fields in front, then the inner formatter writes straight to the
            // output, with nothing in between (BENCHMARKS.md, *Logging*).
            let sanitize = writer.sanitizes_ansi_escapes();
            self.fields.write_text(&mut writer, sanitize)?;
            return self.inner.format_event(ctx, writer, event);
        }
        if !self.fields.any_set()? {
            // Nothing to add: the inner formatter writes straight to the output.
            return self.inner.format_event(ctx, writer, event);
        }
        if writer.has_ansi_escapes() && self.kind != FormatKind::Json {
            // A coloured text line: the inner formatter keeps the writer and its colours.
            let sanitize = writer.sanitizes_ansi_escapes();
            self.fields.write_text(&mut writer, sanitize)?;
            return self.inner.format_event(ctx, writer, event);
        }
        // Another formatter, or JSON: the line is formatted first, then its first byte decides
        // where the fields go (a JSON object or a text line).
        let mut line = LINE.try_with(Cell::take).unwrap_or_default();
        line.clear();
        let result = self
            .inner
            .format_event(ctx, Writer::new(&mut line), event)
            .and_then(|()| self.fields.write_into_line(&line, &mut writer));
        if line.capacity() <= MAX_KEPT_LINE {
            let _ = LINE.try_with(|kept| kept.set(line));
        }
        result
    }
}

std::thread_local! {
    /// The buffer [`WithContextFields`] formats a line into, kept for the thread's next line
    /// (taken out while in use, so a log call made while formatting gets a new one).
    static LINE: Cell<String> = const { Cell::new(String::new()) };
}

/// A line buffer with more capacity than this (a line that long) is dropped, not kept.
const MAX_KEPT_LINE: usize = 16 * 1024;

/// Writes `value` to `out`. A value whose formatting panics or fails ends with a placeholder,
/// `<panicked>` or `<fmt error>`, and the line goes on: a panic must not leave a half-written
/// line in the subscriber's buffer, where it would start the thread's next line (another
/// request's), nor an error drop the whole event. An error of `out` itself is taken for the
/// value's: tracing-subscriber's writers over a `String` never fail, and a writer that does
/// fails the placeholder too (the error then goes on up).
fn write_value(out: &mut dyn fmt::Write, value: &dyn fmt::Display) -> fmt::Result {
    match catch_unwind(AssertUnwindSafe(|| write!(out, "{value}"))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => out.write_str("<fmt error>"),
        Err(_) => out.write_str("<panicked>"),
    }
}

/// Writes what it is given with every control character escaped, so that a value from a
/// client can neither drive the terminal the log is read on nor start a line of its own:
/// `\n`, `\r` and `\t` as such, other C0 controls and DEL as `\x1b`, C1 controls as
/// `\u{9b}` (the spellings tracing-subscriber uses for the few it escapes in a message). The
/// Unicode line and paragraph separators (which some viewers break lines at) and the
/// bidirectional controls (which reorder what a viewer shows) are escaped as `\u{2028}`.
struct TextEscape<'a>(&'a mut dyn fmt::Write);

/// U+2028, U+2029, and Unicode's bidirectional controls (`Bidi_Control`: the marks,
/// embeddings, overrides and isolates).
fn is_line_or_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

impl fmt::Write for TextEscape<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // The usual value has none: one pass over its bytes, then a plain write. In UTF-8 a
        // control character is a byte below 0x20, DEL, or 0xC2 followed by 0x80–0x9F; the
        // separators and bidirectional controls start with 0xE2, but U+061C (0xD8).
        if !s
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b == 0xc2 || b == 0xd8 || b == 0xe2)
        {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            if !c.is_control() && !is_line_or_bidi_control(c) {
                continue;
            }
            self.0.write_str(&s[plain..i])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if (c as u32) < 0x80 => write!(self.0, "\\x{:02x}", c as u32)?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

/// Writes what it is given as the inside of a JSON string.
struct JsonEscape<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for JsonEscape<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escaped = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if (c as u32) < 0x20 => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

/// A value's `Debug`, shown through `Display`.
struct DebugAsDisplay<'a, T>(&'a T);

impl<T: fmt::Debug> fmt::Display for DebugAsDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// A value shown through a formatting function.
struct FnAsDisplay<'a, T, F>(&'a T, &'a F);

impl<T, F: Fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for FnAsDisplay<'_, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.1)(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::FormatKind;
    use tracing_subscriber::fmt::format;

    fn kind_of<F>(_: &F) -> FormatKind {
        FormatKind::of::<F>()
    }

    #[test]
    fn tracing_subscribers_formats_are_known_by_type() {
        assert_eq!(kind_of(&format()), FormatKind::Text);
        assert_eq!(kind_of(&format().without_time()), FormatKind::Text);
        assert_eq!(kind_of(&format().compact()), FormatKind::Text);
        assert_eq!(kind_of(&format().pretty()), FormatKind::Text);
        assert_eq!(kind_of(&format().json()), FormatKind::Json);
        assert_eq!(kind_of(&format().json().without_time()), FormatKind::Json);
        // Anything else is told by its output.
        assert_eq!(kind_of(&()), FormatKind::Other);
        assert_eq!(
            FormatKind::of::<super::WithContextFields<format::Format>>(),
            FormatKind::Other
        );
    }
}
