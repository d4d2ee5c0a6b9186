//! The misuse, refused: the same middleware (a plain `REQUEST_ID.set(id)`) served *without*
//! `ContextLayer`. hyper serves each connection in a plain `tokio::spawn`ed task, so the `set`
//! would land in the worker thread's context and leak into the next request on that thread.
//! The crate refuses the write (S21): the connection task panics, the client gets no response,
//! and no response ever carries another request's id.
//!
//! A file of its own, so that its panic hook (which records the panics instead of printing
//! them) runs in a process of its own.

use std::panic;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum_request_id::{HEADER, routes};

const REQUESTS: usize = 200;

/// What one request got back: a response (echoed id, body) or the client's error.
type Outcome = Result<(String, String), String>;

#[test]
fn without_the_layer_the_middlewares_set_is_refused_instead_of_leaking() {
    let panics = Arc::new(Mutex::new(Vec::<String>::new()));
    let previous = panic::take_hook();
    let recorded = panics.clone();
    panic::set_hook(Box::new(move |info| {
        recorded.lock().unwrap().push(info.to_string());
    }));
    let outcomes = panic::catch_unwind(serve_without_layer);
    drop(panic::take_hook());
    panic::set_hook(previous);
    let outcomes = outcomes.unwrap_or_else(|panic| panic::resume_unwind(panic));
    let panics = panics.lock().unwrap().clone();

    let mut failed = 0;
    for (id, outcome) in &outcomes {
        match outcome {
            Ok((echoed, body)) => {
                assert_eq!(echoed, id, "a response carries another request's id");
                assert!(body.contains(id.as_str()), "{id} got the body {body:?}");
            }
            Err(_) => failed += 1,
        }
    }
    assert_eq!(
        failed,
        REQUESTS,
        "every request is refused; responses: {:?}",
        outcomes.iter().find(|(_, outcome)| outcome.is_ok())
    );
    assert!(
        panics.len() >= REQUESTS,
        "one refused write per request, got {} panics",
        panics.len()
    );
    for message in &panics {
        assert!(
            message.contains("has no context of its own") && message.contains("`ContextVar::set`"),
            "an unexpected panic: {message}"
        );
    }
    println!(
        "without the layer: {REQUESTS} requests refused, {} panics naming `ContextVar::set`",
        panics.len()
    );
}

/// Serves [`routes`] (no `ContextLayer`) on a free loopback port and sends `REQUESTS`
/// concurrent requests with distinct ids.
fn serve_without_layer() -> Vec<(String, Outcome)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/", listener.local_addr().unwrap());
            let server = tokio::spawn(async move { axum::serve(listener, routes()).await });
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
                    let outcome = async {
                        let response = client.get(&url).header(HEADER, &id).send().await?;
                        let echoed = response.headers().get(HEADER).map_or_else(
                            || "<none>".to_owned(),
                            |v| v.to_str().unwrap_or("<invalid>").to_owned(),
                        );
                        Ok((echoed, response.text().await?))
                    }
                    .await
                    .map_err(|error: reqwest::Error| error.to_string());
                    (id, outcome)
                });
            }
            let outcomes = requests.join_all().await;
            server.abort();
            outcomes
        })
        .await
        .expect("the test finishes within its time limit")
    })
}
