//! `log-lines MODE LINES`: writes LINES `info!` lines to `io::sink` through tracing-subscriber's
//! `fmt`, ANSI off, each carrying a request id, and exits. Under callgrind, run at two values
//! of LINES, it gives the instructions per line (BENCHMARKS.md, *Logging*); `benches/tracing.rs`
//! times the same lines ([`lines`]).
//!
//! - `text`: the default text format, the id passed as an event field (`request_id = %id`): what
//!   a service without this crate writes.
//! - `text-context`: the same format behind `ContextFields::var(&REQUEST_ID)`, the id set in the
//!   current context, `info!("handling")`.
//! - `text-own`: `text-context` with the format behind a formatter type of the program's own,
//!   which `ContextFields` does not know.
//! - `json`, `json-context`: `text` and `text-context` with the JSON format.

mod lines;

use std::process::ExitCode;

use contextvars::Context;
use contextvars::tracing::ContextFields;
use tracing_subscriber::fmt::FormatEvent;
use tracing_subscriber::fmt::format::{DefaultFields, format};

use lines::{ID, OwnFormat, REQUEST_ID, line_from_context, line_with_field, subscriber};

const USAGE: &str = "usage: log-lines MODE LINES\n\
                     MODE: text, text-context, text-own, json or json-context";

/// Writes `count` lines with `line` through a subscriber with `format`.
fn write<F>(format: F, count: usize, line: fn())
where
    F: for<'w> FormatEvent<tracing_subscriber::Registry, DefaultFields> + Send + Sync + 'static,
{
    tracing::subscriber::with_default(subscriber(format), || {
        for _ in 0..count {
            line();
        }
    });
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(count)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut context = Context::new().with_value(&REQUEST_ID, ID.to_string());
    let fields = || ContextFields::new().var(&REQUEST_ID);
    match mode.as_str() {
        "text" => write(format(), count, line_with_field),
        "text-context" => context.run(|| write(fields().wrap(format()), count, line_from_context)),
        "text-own" => {
            context.run(|| write(fields().wrap(OwnFormat(format())), count, line_from_context))
        }
        "json" => write(format().json(), count, line_with_field),
        "json-context" => {
            context.run(|| write(fields().wrap(format().json()), count, line_from_context))
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
