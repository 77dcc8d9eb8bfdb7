//! HTTP/1.1 at the byte level for tests that must see what the server does with requests
//! no client library would send (shared by `tests/limits.rs` and `tests/hostile.rs`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the wire.
#[derive(Debug)]
pub struct Response {
    /// 0 when no complete status line arrived.
    pub status: u16,
    /// Status line and headers, lower-cased.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        format!("{}\n\n{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

/// A request head as sent on the wire.
pub fn head(method: &str, path: &str, h: &http::HeaderMap) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in h {
        req.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    req.push_str("\r\n");
    req
}

/// Reads one response (head and Content-Length body), or what arrived within `wait`.
pub async fn read_response(s: &mut TcpStream, wait: Duration) -> Response {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    let mut split = None;
    loop {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        if buf.len() >= end + 4 + len {
            split = Some((end, len));
            break;
        }
    }
    match split {
        Some((end, len)) => {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            Response {
                status,
                head,
                body: buf[end + 4..end + 4 + len].to_vec(),
            }
        }
        None => Response {
            status: 0,
            head: String::from_utf8_lossy(&buf).into_owned(),
            body: Vec::new(),
        },
    }
}

/// Sends `head` on a new connection and reads the response (10 s at most).
pub async fn one_request(addr: SocketAddr, head: &str) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    read_response(&mut s, Duration::from_secs(10)).await
}
