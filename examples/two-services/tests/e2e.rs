//! End to end: billing and edge on 127.0.0.1 (free ports), 500 concurrent requests with
//! distinct tenants from a real HTTP client to edge, which calls billing over loopback through
//! its propagating client. Every response carries its own tenant, as edge saw it and as billing
//! saw it; every billing log line carries its own tenant (read from billing's context by the
//! log format) and it matches the `baggage` header that request arrived with. The log is
//! captured in memory; everything is bounded by timeouts and the servers are stopped at the end.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use two_services::{TENANT_HEADER, billing, edge, log_format};

const REQUESTS: usize = 500;
/// Lines billing logs per request: invoicing, ledger (a spawned child task), done.
const BILLING_LINES: usize = 3;
/// Lines edge logs per request: calling billing, billing answered.
const EDGE_LINES: usize = 2;

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

/// The value of `key` in a log line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()
}

#[test]
fn every_tenant_arrives_in_billing_in_its_own_request() {
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
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let billing_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let invoice = format!("http://{}/invoice", billing_listener.local_addr().unwrap());
            let edge_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", edge_listener.local_addr().unwrap());
            let billing_server =
                tokio::spawn(async move { axum::serve(billing_listener, billing()).await });
            let edge_server = tokio::spawn(async move {
                axum::serve(edge_listener, edge(invoice.parse().unwrap())).await
            });
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
                .unwrap();

            let mut requests = tokio::task::JoinSet::new();
            for i in 0..REQUESTS {
                let (client, url) = (client.clone(), url.clone());
                requests.spawn(async move {
                    let tenant = format!("tenant-{i:04}");
                    let response = client
                        .get(&url)
                        .header(TENANT_HEADER, &tenant)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                    let body = response.text().await.unwrap();
                    assert_eq!(
                        body,
                        format!("edge tenant={tenant}; billing tenant={tenant}\n"),
                        "the response carries its own tenant, on both sides"
                    );
                });
            }
            while let Some(done) = requests.join_next().await {
                done.expect("request task");
            }

            // Without `x-tenant`, nothing is set and nothing travels.
            let body = client.get(&url).send().await.unwrap().text().await.unwrap();
            assert_eq!(body, "edge tenant=; billing tenant=\n");

            edge_server.abort();
            billing_server.abort();
        })
        .await
        .expect("the test finishes within its time limit")
    });

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let mut billing_lines: HashMap<String, usize> = HashMap::new();
    let mut edge_lines: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        if line.contains("billing:") {
            let wire = field(line, "wire=").unwrap_or_default();
            let Some(sent) = wire.strip_prefix("tenant=") else {
                assert!(
                    !line.contains("tenant="),
                    "no tenant sent, none shown: {line}"
                );
                continue;
            };
            let shown = field(line, "tenant=").unwrap_or_else(|| panic!("no tenant on: {line}"));
            assert_eq!(shown, sent, "a billing line carries another tenant: {line}");
            assert_eq!(line.matches(" wire=").count(), 1, "{line}");
            *billing_lines.entry(shown.to_owned()).or_default() += 1;
        } else if line.contains("edge:") {
            if let Some(shown) = field(line, "tenant=") {
                *edge_lines.entry(shown.to_owned()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        billing_lines.len(),
        REQUESTS,
        "every request reached billing"
    );
    for (tenant, lines) in &billing_lines {
        assert_eq!(
            *lines, BILLING_LINES,
            "{tenant} logged {lines} billing lines"
        );
        assert_eq!(
            edge_lines.get(tenant),
            Some(&EDGE_LINES),
            "{tenant} at the edge"
        );
    }
    println!(
        "e2e: {REQUESTS} requests through edge and billing, {} billing log lines, each with its own tenant",
        REQUESTS * BILLING_LINES
    );
}
