//! `Baggage::inject_headers` with N variables bound, run M times: a program to count
//! instructions per injection with callgrind (BENCHMARKS.md, *Across processes*):
//!
//! ```text
//! cargo build --release --example baggage_inject --features opentelemetry
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/baggage_inject 10 1100
//! ```
//!
//! Run at two counts (100 and 1,100, say): the difference over 1,000 is the cost of one
//! injection, without the program's start-up.

use std::hint::black_box;

use contextvars::propagation::Baggage;
use contextvars::{Context, ContextVar};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut number = |default: usize| args.next().map_or(default, |a| a.parse().expect("a count"));
    let (vars, runs) = (number(3), number(1_000));
    let mut baggage = Baggage::new();
    let mut context = Context::new();
    for i in 0..vars {
        // Leaked once, as a `static` would be: one variable per key.
        let key: &'static str = Box::leak(format!("var{i}").into_boxed_str());
        let var: &'static ContextVar<String> = Box::leak(Box::new(ContextVar::new(key)));
        baggage = baggage.var(var);
        context = context.with_value(var, format!("value-{i:010}"));
    }
    let header = context.run(|| {
        let mut last = http::HeaderMap::new();
        for _ in 0..runs {
            let mut headers = http::HeaderMap::new();
            black_box(&baggage).inject_headers(&mut headers);
            last = black_box(headers);
        }
        last
    });
    if let Some(header) = header.get("baggage") {
        println!("{} bytes: {:?}", header.len(), header);
    }
}
