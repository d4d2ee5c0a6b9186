//! `cargo run -p two-services -- [EDGE_PORT] [BILLING_PORT]` starts billing (default 3001) and
//! edge (default 3000) on 127.0.0.1 in one process, and prints how to call them.

use std::net::{Ipv4Addr, SocketAddr};

fn port(arg: Option<String>, default: u16) -> std::io::Result<u16> {
    match arg {
        Some(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "usage: two-services [EDGE_PORT] [BILLING_PORT]",
            )
        }),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    two_services::subscriber().init();
    let mut args = std::env::args().skip(1);
    let edge_port = port(args.next(), 3000)?;
    let billing_port = port(args.next(), 3001)?;

    let billing = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, billing_port)).await?;
    let billing_addr: SocketAddr = billing.local_addr()?;
    let edge = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, edge_port)).await?;
    let edge_addr = edge.local_addr()?;
    let invoice = format!("http://{billing_addr}/invoice")
        .parse()
        .expect("a valid URL");

    println!("billing listening on http://{billing_addr}/invoice");
    println!("edge    listening on http://{edge_addr}/ (calls billing with the tenant as baggage)");
    println!();
    println!("try:  curl -H 'x-tenant: acme' http://{edge_addr}/");
    println!("      curl -H 'baggage: tenant=acme%2C%20inc.' http://{billing_addr}/invoice");
    println!("Ctrl-C stops both.");

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let billing = tokio::spawn(async move {
        axum::serve(billing, two_services::billing())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    axum::serve(edge, two_services::edge(invoice))
        .with_graceful_shutdown(shutdown)
        .await?;
    billing.await.expect("billing server task")
}
