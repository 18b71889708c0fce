//! A minimal HTTP/1.1 responder for four GET endpoints: `/` (the status
//! page for people, [`crate::status_page`]), `/metrics` (Prometheus text
//! format 0.0.4), `/healthz` (the process runs) and `/readyz` (the
//! repository is open and every capture has started).
//!
//! Hand-written (about 70 lines) rather than axum or hyper's server: the
//! tree has axum only as tonic's router without its server features, and
//! four fixed GET routes with `Connection: close` need no more. Requests
//! are read up to 8 KiB and 5 seconds; anything else is 404 or 405. The
//! status page is sent with a Content-Security-Policy that allows nothing
//! but its inline style: no script, no request anywhere, even if a value
//! escaped its escaping.

use crate::{Metrics, status_page};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bind `addr` (fails at once when it is taken), then answer until `stop` turns true.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answer requests on `listener` until `stop` turns true.
pub async fn run(listener: TcpListener, metrics: Arc<Metrics>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((conn, _)) = accepted {
                    let m = metrics.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), handle(conn, &m)).await;
                    });
                }
            }
            _ = stop.changed() => return,
        }
    }
}

async fn handle(mut conn: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/") => {
            ("200 OK", "text/html; charset=utf-8", status_page::render(&metrics.snapshot(), chrono::Utc::now()))
        }
        ("GET", "/metrics") => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render(chrono::Utc::now()))
        }
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => match metrics.not_ready() {
            None => ("200 OK", "text/plain", "ready\n".to_string()),
            Some(why) => ("503 Service Unavailable", "text/plain", format!("not ready: {why}\n")),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try / (the status page), /metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let policy = match ctype.starts_with("text/html") {
        true => "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n",
        false => "",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{policy}Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}
