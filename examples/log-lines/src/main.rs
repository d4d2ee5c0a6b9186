//! `log-lines MODE LINES`: writes LINES `info!` lines to `io::sink` through tracing-subscriber's
//! `fmt`, ANSI off, each carrying a request id, and exits. Under callgrind, run at two values
//! of LINES, it gives the instructions per line (BENCHMARKS.md, *Logging*); `benches/tracing.rs`
//! times the same lines.
//!
//! - `text`: the default text format, the id passed as an event field (`request_id = %id`): what
//!   a service without this crate writes.
//! - `text-context`: the same format behind `ContextFields::var(&REQUEST_ID)`, the id set in the
//!   current context, `info!("handling")`.
//! - `text-own`: `text-context` with the format behind a formatter type of the program's own,
//!   which `ContextFields` does not know.
//! - `json`, `json-context`: `text` and `text-context` with the JSON format.

use std::hint::black_box;
use std::process::ExitCode;

use contextvars::tracing::ContextFields;
use contextvars::{Context, ContextVar};
use tracing_subscriber::fmt::format::{self, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

const USAGE: &str = "usage: log-lines MODE LINES\n\
                     MODE: text, text-context, text-own, json or json-context";

/// tracing-subscriber's default format behind a type of the program's own.
struct OwnFormat(Format);

impl<S, N> FormatEvent<S, N> for OwnFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
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

/// Writes `lines` lines through a subscriber with `format`, the id as an event field.
fn with_field<F>(format: F, lines: usize, id: &str)
where
    F: for<'w> FormatEvent<tracing_subscriber::Registry, format::DefaultFields>
        + Send
        + Sync
        + 'static,
{
    tracing::subscriber::with_default(subscriber(format), || {
        for _ in 0..lines {
            tracing::info!(request_id = %black_box(id), "handling");
        }
    });
}

/// Writes `lines` lines through a subscriber with `format`, in `context`.
fn in_context<F>(format: F, lines: usize, context: &mut Context)
where
    F: for<'w> FormatEvent<tracing_subscriber::Registry, format::DefaultFields>
        + Send
        + Sync
        + 'static,
{
    tracing::subscriber::with_default(subscriber(format), || {
        context.run(|| {
            for _ in 0..lines {
                tracing::info!("handling");
            }
        })
    });
}

fn subscriber<F>(format: F) -> impl tracing::Subscriber + Send + Sync
where
    F: for<'w> FormatEvent<tracing_subscriber::Registry, format::DefaultFields>
        + Send
        + Sync
        + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .event_format(format)
        .finish()
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(lines)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let id = "req-0123456789".to_string();
    let mut context = Context::new().with_value(&REQUEST_ID, id.clone());
    let fields = || ContextFields::new().var(&REQUEST_ID);
    match mode.as_str() {
        "text" => with_field(format::format(), lines, &id),
        "text-context" => in_context(fields().wrap(format::format()), lines, &mut context),
        "text-own" => in_context(
            fields().wrap(OwnFormat(format::format())),
            lines,
            &mut context,
        ),
        "json" => with_field(format::format().json(), lines, &id),
        "json-context" => in_context(fields().wrap(format::format().json()), lines, &mut context),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
