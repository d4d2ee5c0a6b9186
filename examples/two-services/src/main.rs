//! `cargo run -p two-services -- [EDGE_PORT] [BILLING_PORT]` starts billing (default 3001) and
//! edge (default 3000) on 127.0.0.1 in one process, and prints how to call them.
//!
//! With `--no-propagation` (first argument) both run without the propagation layers (plain
//! `ContextLayer` only, no `baggage` header): the baseline `scripts/load.sh` measures against.

use std::net::{Ipv4Addr, SocketAddr};

fn port(arg: Option<String>, default: u16) -> std::io::Result<u16> {
    match arg {
        Some(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "usage: two-services [--no-propagation] [EDGE_PORT] [BILLING_PORT]",
            )
        }),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    two_services::subscriber().init();
    let mut args = std::env::args().skip(1).peekable();
    let propagation = args.next_if(|arg| arg == "--no-propagation").is_none();
    let edge_port = port(args.next(), 3000)?;
    let billing_port = port(args.next(), 3001)?;

    let billing = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, billing_port)).await?;
    let billing_addr: SocketAddr = billing.local_addr()?;
    let edge = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, edge_port)).await?;
    let edge_addr = edge.local_addr()?;
    let invoice = format!("http://{billing_addr}/invoice")
        .parse()
        .expect("a valid URL");

    if !propagation {
        println!("propagation off: no baggage header, billing extracts nothing");
    }
    println!("billing listening on http://{billing_addr}/invoice");
    println!("edge    listening on http://{edge_addr}/ (calls billing with the tenant as baggage)");
    println!();
    println!("try:  curl -H 'x-tenant: acme' http://{edge_addr}/");
    println!("      curl -H 'baggage: tenant=acme%2C%20inc.' http://{billing_addr}/invoice");
    println!("Ctrl-C stops both.");

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let (billing_app, edge_app) = if propagation {
        (two_services::billing(), two_services::edge(invoice))
    } else {
        (
            two_services::billing_without_propagation(),
            two_services::edge_without_propagation(invoice),
        )
    };
    let billing = tokio::spawn(async move {
        axum::serve(billing, billing_app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    axum::serve(edge, edge_app)
        .with_graceful_shutdown(shutdown)
        .await?;
    billing.await.expect("billing server task")
}
