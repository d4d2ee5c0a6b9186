//! Inject and extract of 1, 10 and 50 propagated vars (S25), beside opentelemetry_sdk's
//! `BaggagePropagator` doing the same work on its own `Baggage`, in the same run and group.
//!
//! `cargo bench --bench propagation --features opentelemetry` (figures in BENCHMARKS.md).
//!
//! Each var holds a 16-byte string. "contextvars" reads the bound vars from the current
//! context, percent-encodes them, and renders the header through `BaggagePropagator`; on the
//! way in it extracts through `BaggagePropagator` and parses each value into a typed context.
//! "opentelemetry" injects an `opentelemetry::Context` that already holds a `Baggage` of the same
//! key-value pairs, and extracts into one; both sides use a `HashMap` carrier, and ours also a
//! `http::HeaderMap`.

use std::collections::HashMap;
use std::hint::black_box;

use contextvars::propagation::Baggage;
use contextvars::{Context, ContextVar};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::BaggagePropagator;

struct Setup {
    keys: Vec<&'static str>,
    baggage: Baggage,
    context: Context,
    otel: opentelemetry::Context,
}

fn setup(n: usize) -> Setup {
    let mut keys = Vec::new();
    let mut baggage = Baggage::new();
    let mut context = Context::new();
    let mut otel = opentelemetry::baggage::Baggage::new();
    for i in 0..n {
        let key: &'static str = Box::leak(format!("var{i}").into_boxed_str());
        let var: &'static ContextVar<String> = Box::leak(Box::new(ContextVar::new(key)));
        let value = format!("value-{i:010}");
        baggage = baggage.var(var);
        context = context.with_value(var, value.clone());
        otel.insert(key, value);
        keys.push(key);
    }
    Setup {
        keys,
        baggage,
        context,
        otel: opentelemetry::Context::new().with_baggage(otel),
    }
}

fn inject(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagation: inject");
    let propagator = BaggagePropagator::new();
    for n in [1, 10, 50] {
        let mut s = setup(n);
        group.bench_function(BenchmarkId::new("opentelemetry (HashMap)", n), |b| {
            b.iter(|| {
                let mut carrier: HashMap<String, String> = HashMap::new();
                propagator.inject_context(black_box(&s.otel), &mut carrier);
                carrier
            })
        });
        let baggage = s.baggage.clone();
        s.context.run(|| {
            group.bench_function(BenchmarkId::new("contextvars (HashMap)", n), |b| {
                b.iter(|| {
                    let mut carrier: HashMap<String, String> = HashMap::new();
                    black_box(&baggage).inject(&mut carrier);
                    carrier
                })
            });
            group.bench_function(BenchmarkId::new("contextvars (HeaderMap)", n), |b| {
                b.iter(|| {
                    let mut headers = HeaderMap::new();
                    black_box(&baggage).inject_headers(&mut headers);
                    headers
                })
            });
        });
    }
    group.finish();
}

fn extract(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagation: extract");
    let propagator = BaggagePropagator::new();
    for n in [1, 10, 50] {
        let s = setup(n);
        let mut carrier: HashMap<String, String> = HashMap::new();
        propagator.inject_context(&s.otel, &mut carrier);
        let mut headers = HeaderMap::new();
        headers.insert(
            "baggage",
            HeaderValue::from_str(&carrier["baggage"]).unwrap(),
        );
        let empty = opentelemetry::Context::new();
        group.bench_function(BenchmarkId::new("opentelemetry (HashMap)", n), |b| {
            b.iter(|| {
                let cx = propagator.extract_with_context(&empty, black_box(&carrier));
                // Read every value out, as a service would.
                let baggage = cx.baggage();
                for key in &s.keys {
                    black_box(baggage.get(key));
                }
                cx
            })
        });
        group.bench_function(BenchmarkId::new("contextvars (HashMap)", n), |b| {
            b.iter(|| s.baggage.extract(black_box(&carrier)))
        });
        group.bench_function(BenchmarkId::new("contextvars (HeaderMap)", n), |b| {
            b.iter(|| s.baggage.extract_headers(black_box(&headers)))
        });
    }
    group.finish();
}

criterion_group!(benches, inject, extract);
criterion_main!(benches);
