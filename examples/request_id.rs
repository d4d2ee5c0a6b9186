//! A simulated server that tags every log line with the id of the request that produced it.
//!
//! Eight requests are served concurrently on a multi-thread runtime. A "middleware" sets
//! `REQUEST_ID`; the handler awaits, fans out to a sub-task (`task::spawn`) and a blocking
//! "database" call (`task::spawn_blocking`), and logs at every step without ever being passed
//! the id. Then the same server is run with a `thread_local!` instead: tasks share worker
//! threads, so its log lines carry other requests' ids.
//!
//! Run with `cargo run --example request_id`.

use std::cell::RefCell;
use std::sync::Mutex;
use std::time::Duration;

use contextvars::{ContextVar, task};

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

/// Every log line as (the request that really produced it, the id the line shows).
static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The logger: reads the ambient request id, as a `tracing` layer or a log formatter would.
/// `produced_by` is only here so that the example can count wrong lines at the end.
fn log(produced_by: &str, message: &str) {
    let shown = REQUEST_ID.with(|id| id.cloned().unwrap_or_else(|| "-".into()));
    let mark = if shown == produced_by {
        String::new()
    } else {
        format!("   <- wrong, really {produced_by}")
    };
    println!("[{shown:>6}] {message}{mark}");
    LINES.lock().unwrap().push((produced_by.to_string(), shown));
}

/// Middleware: takes the id from the request (here: generates it) and runs the handler with it
/// set. `task::spawn` gave this request its own copy of the context, so the `set` stays here.
async fn middleware(n: u64) {
    let id = format!("req-{n}");
    REQUEST_ID.set(id.clone());
    handler(&id, n).await;
}

async fn handler(me: &str, n: u64) {
    log(me, "handler: start");
    tokio::time::sleep(Duration::from_millis(10 * (8 - n))).await; // requests interleave

    // Fan out: a sub-task and a blocking database call both inherit the request id.
    let me_owned = me.to_string();
    let enrich = task::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        log(&me_owned, "sub-task: enriched the user profile");
    });
    let me_owned = me.to_string();
    let query = task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(3));
        log(&me_owned, "db: SELECT * FROM orders (blocking pool)");
        3
    });
    enrich.await.unwrap();
    let rows = query.await.unwrap();
    log(me, &format!("handler: done, {rows} rows"));
}

// ----- the same server with a thread-local -----

thread_local! {
    static THREAD_REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn log_thread_local(produced_by: &str, message: &str) {
    let shown = THREAD_REQUEST_ID.with(|id| id.borrow().clone().unwrap_or_else(|| "-".into()));
    let mark = if shown == produced_by {
        String::new()
    } else {
        format!("   <- wrong, really {produced_by}")
    };
    println!("[{shown:>6}] {message}{mark}");
    LINES.lock().unwrap().push((produced_by.to_string(), shown));
}

async fn thread_local_middleware(n: u64) {
    let id = format!("req-{n}");
    THREAD_REQUEST_ID.with(|slot| *slot.borrow_mut() = Some(id.clone()));
    log_thread_local(&id, "handler: start");
    tokio::time::sleep(Duration::from_millis(10 * (8 - n))).await;
    let me = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        log_thread_local(&me, "sub-task: enriched the user profile");
    })
    .await
    .unwrap();
    let me = id.clone();
    tokio::task::spawn_blocking(move || log_thread_local(&me, "db: SELECT * FROM orders"))
        .await
        .unwrap();
    log_thread_local(&id, "handler: done");
}

/// Counts the lines whose shown id is not the id of the request that produced them.
fn wrong_lines() -> (usize, usize) {
    let mut lines = LINES.lock().unwrap();
    let wrong = lines.iter().filter(|(real, shown)| real != shown).count();
    let total = lines.len();
    lines.clear();
    (wrong, total)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");

    println!("== contextvars::ContextVar");
    runtime.block_on(async {
        let requests: Vec<_> = (1..=8).map(|n| task::spawn(middleware(n))).collect();
        for request in requests {
            request.await.unwrap();
        }
    });
    let (ctx_wrong, ctx_total) = wrong_lines();

    println!("\n== thread_local!");
    runtime.block_on(async {
        let requests: Vec<_> = (1..=8)
            .map(|n| tokio::spawn(thread_local_middleware(n)))
            .collect();
        for request in requests {
            request.await.unwrap();
        }
    });
    let (tl_wrong, tl_total) = wrong_lines();

    println!();
    println!("contextvars:   {ctx_wrong:>2} of {ctx_total} log lines show the wrong request id");
    println!("thread_local!: {tl_wrong:>2} of {tl_total} log lines show the wrong request id");
    assert_eq!(ctx_wrong, 0, "contextvars must never mix up requests");
}
