//! End to end: the server on 127.0.0.1 (a free port), 500 concurrent requests with distinct ids
//! from a real HTTP client, the log captured in memory. Every request's log lines carry its id,
//! no line carries another request's id, every response echoes its own id. Loopback only,
//! bounded by timeouts, and the server is stopped at the end.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_request_id::{HEADER, app, log_format};
use tracing_subscriber::fmt::MakeWriter;

const REQUESTS: usize = 500;
/// Lines the handler logs per request: start, sub-task, db, done.
const LINES_PER_REQUEST: usize = 4;
/// A client-chosen id that, written raw, would add a `truth=` field to the server's log lines.
const FORGED: &str = "evil truth=req-0001";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The value of `key=` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()
}

#[test]
fn concurrent_requests_each_log_only_their_own_id() {
    let logs = Captured::default();
    // `subscriber()` with no colours, whatever features the build unifies (`cargo test
    // --workspace` turns on tracing-subscriber's `ansi`): the checks read `key=value` text.
    tracing_subscriber::fmt()
        .with_ansi(false)
        .event_format(log_format())
        .with_writer(logs.clone())
        .init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let generated = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            let server = tokio::spawn(async move { axum::serve(listener, app()).await });
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
                .unwrap();

            let mut requests = tokio::task::JoinSet::new();
            for i in 0..REQUESTS {
                let (client, url) = (client.clone(), url.clone());
                requests.spawn(async move {
                    let id = format!("req-{i:04}");
                    let response = client.get(&url).header(HEADER, &id).send().await.unwrap();
                    assert!(response.status().is_success());
                    let echoed = response.headers()[HEADER].to_str().unwrap().to_owned();
                    let body = response.text().await.unwrap();
                    assert_eq!(echoed, id, "the response echoes its own id");
                    assert_eq!(body, format!("served {id} with 3 rows\n"));
                });
            }
            while let Some(done) = requests.join_next().await {
                done.expect("request task");
            }

            // Without the header, the server makes an id and echoes it.
            let response = client.get(&url).send().await.unwrap();
            let generated = response.headers()[HEADER].to_str().unwrap().to_owned();
            // An id that would write a field of the client's choosing into the log lines is
            // replaced by a new one, as is one with bytes outside the allowed set.
            let overlong = "x".repeat(201);
            for forged in [FORGED, "caf\u{e9}", "a\tb", overlong.as_str()] {
                let request = client.get(&url).header(HEADER, forged.as_bytes());
                let response = request.send().await.unwrap();
                let echoed = response.headers()[HEADER].to_str().unwrap_or("(not text)");
                assert!(
                    echoed.starts_with("gen-"),
                    "{forged:?} was echoed as {echoed:?}"
                );
            }
            server.abort();
            generated
        })
        .await
        .expect("the test finishes within its time limit")
    });
    assert!(generated.starts_with("gen-"), "{generated}");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains("evil"), "a client wrote into the log lines");
    let mut lines_per_id: HashMap<String, usize> = HashMap::new();
    for line in text.lines().filter(|line| line.contains("truth=")) {
        let truth = field(line, "truth=").unwrap_or_default();
        if truth.is_empty() || !truth.starts_with("req-") {
            continue; // the request without a header logs an empty truth
        }
        let shown = field(line, "request_id=").unwrap_or_else(|| panic!("no id on: {line}"));
        assert_eq!(shown, truth, "a line carries another request's id: {line}");
        assert_eq!(line.matches("request_id=").count(), 1, "{line}");
        *lines_per_id.entry(truth.to_owned()).or_default() += 1;
    }
    assert_eq!(lines_per_id.len(), REQUESTS, "every request logged");
    for (id, lines) in &lines_per_id {
        assert_eq!(
            *lines, LINES_PER_REQUEST,
            "request {id} logged {lines} lines"
        );
    }
    println!(
        "e2e: {REQUESTS} requests, {} log lines, every one carrying its own request's id",
        REQUESTS * LINES_PER_REQUEST
    );
}
