//! The log lines that `log-lines` counts and `benches/tracing.rs` times (the bench includes this
//! file with `#[path]`), so that both measure the same lines.

use std::hint::black_box;

use contextvars::ContextVar;
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The variable the lines show.
pub static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

/// The request id every line carries.
pub const ID: &str = "req-0123456789";

/// tracing-subscriber's default format behind a type of the program's own: a formatter that
/// `ContextFields` does not know, whose line's first byte tells it where the fields go.
pub struct OwnFormat(pub Format);

impl<S, N> FormatEvent<S, N> for OwnFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        self.0.format_event(ctx, writer, event)
    }
}

/// tracing-subscriber's `fmt` subscriber with `format`, writing to `io::sink`, ANSI off.
pub fn subscriber<F>(format: F) -> impl Subscriber + Send + Sync
where
    F: for<'w> FormatEvent<tracing_subscriber::Registry, DefaultFields> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .event_format(format)
        .finish()
}

/// The baseline line: the id passed as an event field, as a service without this crate
/// writes it.
pub fn line_with_field() {
    tracing::info!(request_id = %black_box(ID), "handling");
}

/// The line whose id `ContextFields` reads from the current context.
pub fn line_from_context() {
    tracing::info!("handling");
}
