//! `cargo run -p axum-request-id -- 3000` serves on 127.0.0.1:3000 (port 0 picks a free one).
//! Try `curl -H 'x-request-id: abc' http://127.0.0.1:3000/`.

use std::net::{Ipv4Addr, SocketAddr};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    axum_request_id::subscriber().init();
    let port = match std::env::args().nth(1) {
        Some(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "usage: axum-request-id [PORT]",
            )
        })?,
        None => 3000,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, axum_request_id::app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
