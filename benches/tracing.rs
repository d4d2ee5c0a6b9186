//! What one log line costs with `tracing::ContextFields`: tracing-subscriber's text and JSON
//! formats writing to `io::sink`, the request id read from the context, against the same line
//! with the id passed as an event field (what a service without this crate writes), in the same
//! run and format. The lines are `examples/log-lines`' (which counts their instructions).
//!
//! `cargo bench --bench tracing --features tracing` (see BENCHMARKS.md for the figures).

#[path = "../examples/log-lines/src/lines.rs"]
mod lines;

use contextvars::Context;
use contextvars::tracing::ContextFields;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tracing_subscriber::fmt::FormatEvent;
use tracing_subscriber::fmt::format::{DefaultFields, format};

use lines::{ID, OwnFormat, REQUEST_ID, line_from_context, line_with_field, subscriber};

/// Times `line` through a subscriber with `format`, under `name`.
fn bench<F>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, format: F, line: fn())
where
    F: for<'w> FormatEvent<tracing_subscriber::Registry, DefaultFields> + Send + Sync + 'static,
{
    tracing::subscriber::with_default(subscriber(format), || {
        group.bench_function(name, |b| b.iter(line));
    });
}

fn one_line(c: &mut Criterion) {
    let mut context = Context::new().with_value(&REQUEST_ID, ID.to_string());
    let fields = || ContextFields::new().var(&REQUEST_ID);

    let mut group = c.benchmark_group("tracing: one INFO line, text format, to io::sink");
    bench(
        &mut group,
        "baseline: the id as an event field",
        format(),
        line_with_field,
    );
    context.run(|| {
        let name = "ContextFields: the id from the context";
        bench(&mut group, name, fields().wrap(format()), line_from_context);
    });
    let name = "ContextFields: the id not set";
    bench(&mut group, name, fields().wrap(format()), line_from_context);
    context.run(|| {
        let name = "ContextFields: the id from the context, own formatter";
        bench(
            &mut group,
            name,
            fields().wrap(OwnFormat(format())),
            line_from_context,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("tracing: one INFO line, JSON format, to io::sink");
    bench(
        &mut group,
        "baseline: the id as an event field",
        format().json(),
        line_with_field,
    );
    context.run(|| {
        let name = "ContextFields: the id from the context";
        bench(
            &mut group,
            name,
            fields().wrap(format().json()),
            line_from_context,
        );
    });
    group.finish();
}

criterion_group!(benches, one_line);
criterion_main!(benches);
