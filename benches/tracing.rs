//! What one log line costs with `tracing::ContextFields`: tracing-subscriber's text and JSON
//! formats writing to `io::sink`, the request id read from the context, against the same line
//! with the id passed as an event field (what a service without this crate writes), in the same
//! run and format. `examples/log-lines` writes the same lines for counting instructions.
//!
//! `cargo bench --bench tracing --features tracing` (see BENCHMARKS.md for the figures).

use std::hint::black_box;

use contextvars::tracing::ContextFields;
use contextvars::{Context, ContextVar};
use criterion::{Criterion, criterion_group, criterion_main};
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{self, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

/// tracing-subscriber's default format behind a type of its own: a formatter
/// `ContextFields` does not know, whose line's first byte tells it where the fields go.
struct OwnFormat(Format);

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

fn subscriber<F>(format: F) -> impl Subscriber + Send + Sync
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

fn one_line(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracing: one INFO line, text format, to io::sink");
    let id = "req-0123456789".to_string();
    let mut context = Context::new().with_value(&REQUEST_ID, id.clone());

    tracing::subscriber::with_default(subscriber(format()), || {
        group.bench_function("baseline: the id as an event field", |b| {
            b.iter(|| tracing::info!(request_id = %black_box(&id), "handling"))
        });
    });
    tracing::subscriber::with_default(
        subscriber(ContextFields::new().var(&REQUEST_ID).wrap(format())),
        || {
            context.run(|| {
                group.bench_function("ContextFields: the id from the context", |b| {
                    b.iter(|| tracing::info!("handling"))
                });
            });
            group.bench_function("ContextFields: the id not set", |b| {
                b.iter(|| tracing::info!("handling"))
            });
        },
    );
    tracing::subscriber::with_default(
        subscriber(
            ContextFields::new()
                .var(&REQUEST_ID)
                .wrap(OwnFormat(format())),
        ),
        || {
            context.run(|| {
                group.bench_function(
                    "ContextFields: the id from the context, own formatter",
                    |b| b.iter(|| tracing::info!("handling")),
                );
            });
        },
    );
    group.finish();

    let mut group = c.benchmark_group("tracing: one INFO line, JSON format, to io::sink");
    tracing::subscriber::with_default(subscriber(format().json()), || {
        group.bench_function("baseline: the id as an event field", |b| {
            b.iter(|| tracing::info!(request_id = %black_box(&id), "handling"))
        });
    });
    tracing::subscriber::with_default(
        subscriber(ContextFields::new().var(&REQUEST_ID).wrap(format().json())),
        || {
            context.run(|| {
                group.bench_function("ContextFields: the id from the context", |b| {
                    b.iter(|| tracing::info!("handling"))
                });
            });
        },
    );
    group.finish();
}

fn format() -> Format {
    tracing_subscriber::fmt::format()
}

criterion_group!(benches, one_line);
criterion_main!(benches);
